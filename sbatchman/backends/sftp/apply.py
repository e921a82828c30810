"""Send files and links over SFTP, many of them in flight at once, on one or several channels.

Every file is written to a temporary name beside its final path, given its mode and mtime, closed,
and only then renamed into place, and each step waits for the server's OK of the one before: a
killed run or a full disk can leave a temporary file (see sbatchman.temporaries for who removes
it), never a partial file under the real name. A local file that changes while it is read fails
instead of landing (see sources). Replies are checked one by one; a failure fails that file
only, and the caller hears about all of them at the end.

When the push is told to stop (Ctrl-C), no new file is started and no more data is read; files
whose data is all written still get their close and rename, the others' temporaries are
removed, so an interruption leaves neither half-written nor finished-but-unrenamed temporaries.
"""

from __future__ import annotations

import posixpath
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.scan import join
from sbatchman.backends.sources import Changed, Source, Vanished, vanished_note
from sbatchman.model import Events, Outcome
from sbatchman.plan import Action, seconds
from sbatchman.selection.walk import Entry
from sbatchman.temporaries import Temporaries

POSIX_RENAME = "posix-rename@openssh.com"
LSETSTAT = "lsetstat@openssh.com"
PROGRESS_FROM = 1 << 20  # files at least this big report bytes as their writes are confirmed


@dataclass(frozen=True)
class Limits:
    """How much may be in flight on one channel."""

    files: int = 128  # open handles on the server
    write_bytes: int = 8 << 20  # unconfirmed WRITE data
    chunk: int = 32 << 10  # bytes per WRITE: the protocol's guaranteed minimum unless told more


@dataclass
class Apply:
    """The shared state of one push while its plan is carried out."""

    wire: w.Wire
    root: str
    source: Path
    events: Events
    outcome: Outcome
    limits: Limits
    temporaries: Temporaries
    stop: threading.Event  # set on Ctrl-C: finish what is written, start nothing new
    failures: list[tuple[str, str]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # folders whose entries we changed
    failed_dirs: set[str] = field(default_factory=set)  # folders that could not be made
    in_flight_files: int = 0
    in_flight_bytes: int = 0
    renaming: int = 0  # renames sent and not answered: they may land unseen if the link dies

    def helper(self, wire: w.Wire, limits: Limits) -> Apply:
        """State for another channel of the same push; `absorb` merges it back."""
        return Apply(
            wire,
            self.root,
            self.source,
            self.events,
            Outcome(),
            limits,
            self.temporaries,
            self.stop,
        )

    def absorb(self, other: Apply) -> None:
        self.outcome.sent += other.outcome.sent
        self.outcome.bytes_sent += other.outcome.bytes_sent
        self.outcome.warnings += other.outcome.warnings
        self.failures += other.failures
        self.changed |= other.changed
        self.renaming += other.renaming

    def part(self, dest: str) -> str:
        """The temporary beside the remote path `dest`."""
        folder, name = posixpath.split(dest)
        return posixpath.join(folder, self.temporaries.name(name))

    def fail(self, rel: str, message: str) -> None:
        self.failures.append((rel, message))

    def remote(self, rel: str) -> str:
        return join(self.root, rel)

    def touched(self, rel: str) -> None:
        self.changed.add(posixpath.dirname(rel))

    def rename(self, part: str, dest: str, callback: w.Callback) -> None:
        """Replace `dest` by `part` in one step (posix-rename), or remove-then-rename."""
        self.renaming += 1
        if POSIX_RENAME in self.wire.extensions:
            payload = c.string(POSIX_RENAME.encode()) + c.path(part) + c.path(dest)
            self.wire.call(c.EXTENDED, payload, callback)
            return
        # Plain SFTP RENAME refuses an existing target; removing it first leaves the final
        # path briefly absent, never partial.
        self.wire.call(c.REMOVE, c.path(dest), None)
        self.wire.call(c.RENAME, c.path(part) + c.path(dest), callback)

    def discard(self, part: str) -> None:
        self.wire.call(c.REMOVE, c.path(part), None, cleanup=True)

    def call_ok(self, kind: int, payload: bytes, rel: str, what: str) -> None:
        """A request whose only interest is success; a failure fails `rel` with `what`."""

        def check(reply: c.Reply) -> None:
            if not reply.ok():
                self.fail(rel, f"{what}: {c.describe(reply)}")

        self.wire.call(kind, payload, check)


def transfer(runs: Sequence[Apply], actions: Sequence[Action], chmods: Sequence[Entry]) -> None:
    """Send files and links (temp name, then rename) and fix modes of up-to-date files.

    With several channels, each takes every n-th file in its own thread: the folders all
    exist by now, so the files are independent of each other.
    """
    if len(runs) == 1:
        _transfer(runs[0], actions, chmods)
        return
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            _transfer(runs[index], actions[index :: len(runs)], chmods if index == 0 else ())
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=work, args=(i,), name=f"sftp-send-{i}") for i in range(1, len(runs))
    ]
    for thread in threads:
        thread.start()
    work(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _transfer(run: Apply, actions: Sequence[Action], chmods: Sequence[Entry]) -> None:
    waiting: deque[Action] = deque(actions)
    writers: deque[_Upload] = deque()
    for entry in chmods:
        payload = c.path(run.remote(entry.path)) + c.attrs(perm=entry.mode)
        run.call_ok(c.SETSTAT, payload, entry.path, "cannot set mode")

    def more() -> bool:
        if run.stop.is_set():  # Ctrl-C: files not started never will be, the rest wind down
            waiting.clear()
            while writers:
                writers.popleft().abandon()
        while writers and run.in_flight_bytes < run.limits.write_bytes:
            writer = writers.popleft()
            if writer.write_more():
                writers.append(writer)
        while waiting and run.in_flight_files < run.limits.files:
            action = waiting.popleft()
            run.in_flight_files += 1
            if action.op == "link":
                _link(run, action)
            else:
                _Upload(run, action, writers.append).start()
        return bool(waiting or writers)

    run.wire.pump(more)


def _link(run: Apply, action: Action) -> None:
    """SYMLINK at a temporary name, its mtime (where the server can), rename into place.

    OpenSSH's sftp-server reads SYMLINK's two paths in the opposite order to the draft
    (target first, then the new link's path); every widely used server follows OpenSSH.
    """
    entry = action.entry
    dest = run.remote(entry.path)
    part = run.part(dest)

    def done(reply: c.Reply) -> None:
        run.in_flight_files -= 1
        run.renaming -= 1
        if reply.ok():
            run.touched(entry.path)
        else:
            run.fail(entry.path, f"cannot put the link in place: {c.describe(reply)}")
            run.discard(part)

    def on_symlink(reply: c.Reply) -> None:
        if not reply.ok():
            run.in_flight_files -= 1
            run.fail(entry.path, f"cannot create link: {c.describe(reply)}")
            return
        if LSETSTAT in run.wire.extensions:
            times = c.attrs(mtime=seconds(entry.mtime_ns))
            payload = c.string(LSETSTAT.encode()) + c.path(part) + times
            run.wire.call(c.EXTENDED, payload, None)  # a link's mtime is cosmetic
        run.rename(part, dest, done)

    target = (entry.target or "").encode("utf-8", "surrogateescape")
    run.wire.call(c.SYMLINK, c.string(target) + c.path(part), on_symlink)


class _Upload:
    """One file: OPEN temp, WRITEs, then FSETSTAT + CLOSE, then rename, each after an OK."""

    def __init__(self, run: Apply, action: Action, want_writes: Callable[[_Upload], None]):
        self.run = run
        self.entry = action.entry
        self.reason = action.reason
        self.want_writes = want_writes
        self.dest = run.remote(self.entry.path)
        self.part = run.part(self.dest)
        self.handle = b""
        self.local: Source | None = None
        self.offset = 0
        self.writes = 0
        self.eof = False
        self.error = ""
        self.vanished = False  # deleted after the walk: see sources.Vanished
        self.closing = 0

    def start(self) -> None:
        flags = c.O_WRITE | c.O_CREAT | c.O_EXCL
        payload = c.path(self.part) + c.u32(flags) + c.attrs(perm=0o600)
        self.run.wire.call(c.OPEN, payload, self.on_open)

    def on_open(self, reply: c.Reply) -> None:
        handle = reply.handle()
        if handle is None:
            self.run.in_flight_files -= 1
            self.run.fail(self.entry.path, f"cannot create a file: {c.describe(reply)}")
            return
        self.handle = handle
        if self.run.stop.is_set():
            self.error = "interrupted"
            self.finish()
            return
        try:
            self.local = Source(self.run.source, self.entry)
        except Vanished as err:  # a note once its temporary is gone, not a failure
            self.vanished = True
            self.error = str(err)
        except Changed as err:
            self.error = str(err)
        except OSError as err:
            self.error = f"cannot read the local file: {err.strerror or err}"
        if self.error:
            self.finish()
            return
        if self.write_more():
            self.want_writes(self)

    def write_more(self) -> bool:
        """Queue WRITEs while the channel has room; True when this file has more to send."""
        run, local = self.run, self.local
        assert local is not None
        while not self.eof and run.in_flight_bytes < run.limits.write_bytes:
            if self.error:  # a write already failed: stop sending this file
                self.eof = True
                if not self.writes:
                    self.finish()
                return False
            try:
                data = local.read(run.limits.chunk)
            except Changed as err:
                self.error = str(err)
                data = b""
            except OSError as err:
                self.error = f"cannot read the local file: {err.strerror or err}"
                data = b""
            if not data:
                self.eof = True
                if not self.writes:
                    self.finish()
                return False
            payload = c.string(self.handle) + c.u64(self.offset) + c.string(data)
            self.offset += len(data)
            self.writes += 1
            run.in_flight_bytes += len(data)
            run.wire.call(c.WRITE, payload, self._written(len(data)))
        return not self.eof

    def abandon(self) -> None:
        """Stop reading this file (Ctrl-C): its temporary goes once its writes are answered."""
        self.error = self.error or "interrupted"
        self.eof = True
        if not self.writes:
            self.finish()

    def _written(self, size: int) -> w.Callback:
        def on_reply(reply: c.Reply) -> None:
            self.writes -= 1
            self.run.in_flight_bytes -= size
            if not reply.ok() and not self.error:
                self.error = f"write failed: {_write_words(reply)}"
            elif self.entry.size >= PROGRESS_FROM:
                self.run.events.progress(size)
            if self.eof and not self.writes:
                self.finish()

        return on_reply

    def finish(self) -> None:
        """All data confirmed (or a failure): set mode and mtime, close, then rename or clean."""
        if self.local is not None:
            self.local.close()
        if not self.error:
            times = c.attrs(perm=self.entry.mode, mtime=seconds(self.entry.mtime_ns))
            self.closing += 1
            self.run.wire.call(c.FSETSTAT, c.string(self.handle) + times, self.on_closing)
        self.closing += 1
        self.run.wire.call(c.CLOSE, c.string(self.handle), self.on_closing)

    def on_closing(self, reply: c.Reply) -> None:
        self.closing -= 1
        if not reply.ok() and not self.error:
            self.error = f"could not finish the file: {_write_words(reply)}"
        if self.closing:
            return
        if self.error:
            self.run.in_flight_files -= 1
            if self.vanished:
                self.run.outcome.warnings.append(vanished_note(self.entry.path))
                self.run.touched(self.entry.path)  # its temporary came and went: fix the time
            else:
                self.run.fail(self.entry.path, self.error)
            self.run.discard(self.part)
            return
        self.run.rename(self.part, self.dest, self.on_renamed)

    def on_renamed(self, reply: c.Reply) -> None:
        run = self.run
        run.in_flight_files -= 1
        run.renaming -= 1
        if not reply.ok():
            run.fail(self.entry.path, f"cannot put the file in place: {c.describe(reply)}")
            run.discard(self.part)
            return
        run.touched(self.entry.path)
        run.outcome.sent.append((self.entry.path, self.reason))
        run.outcome.bytes_sent += self.offset
        run.events.sent(self.entry.path, self.offset, self.reason)


def _write_words(reply: c.Reply) -> str:
    """OpenSSH says only "Failure" for ENOSPC and EDQUOT: name the likely causes."""
    code, message = reply.status()
    if code == c.FAILURE:
        return f"{message} (disk full or quota exceeded on the cluster?)"
    return message
