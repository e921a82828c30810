"""Read files from the cluster over SFTP into local temporaries, many files and reads in flight.

The `Files` source of a fetch's local Folder (backends.local): each file is OPENed on the
cluster, read with several READs outstanding, written with pwrite into a new local temporary
(O_EXCL, O_NOFOLLOW, mode 0600 until it is complete), given its mode and mtime, and handed to
`landed`, which renames it into place. Hundreds of files are open at once on one channel, and a
big fetch spreads its files over a few channels (one sftp-server process each), as a push does.

A file that changes while it is read is not landed: its size and mtime must still be the
listing's in an FSTAT sent after the last read came back, and the last read asks for one byte
more than the listed size (a file that grew answers it). That is a job still writing the
file: sources.StillBeingWritten, a warning, and the local copy stays as it was.

Ctrl-C (`stop`) starts no new file and reads no more: the temporaries of files in flight are
removed and `landed` is not called for them. A lost connection removes them too and raises.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.backends.local import Landed
from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.pool import ChannelPool
from sbatchman.backends.sftp.scan import join
from sbatchman.backends.sources import StillBeingWritten, Vanished
from sbatchman.errors import TransferError
from sbatchman.model import Events
from sbatchman.plan import Action, seconds

MAX_CHUNK = 256 << 10  # largest READ we ask for, even if the server would give more
MOST_FILES = 512  # files open at once per channel: each small file costs three round trips
SPREAD = 3  # channels one fetch spreads its files over
SPREAD_FROM = 64  # files to fetch before more than one channel is worth it
PROGRESS_FROM = 1 << 20  # files at least this big report bytes as they arrive
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_CREATE = _NEW | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class ReadLimits:
    """How much one channel keeps in flight."""

    files: int = 128  # open handles on the server (when it does not say how many it allows)
    read_bytes: int = 8 << 20  # READ data asked for and not yet arrived (the channel window)
    chunk: int = 32 << 10  # bytes per READ: the protocol's guaranteed minimum unless told more


def read_limits(wire: w.Wire) -> ReadLimits:
    """The server's own limits (limits@openssh.com) where it states them, else safe ones."""
    if wire.limits is None:
        return ReadLimits()
    _packet, read_len, _write_len, handles = wire.limits
    chunk = min(MAX_CHUNK, read_len) if read_len else ReadLimits.chunk
    files = max(8, min(MOST_FILES, handles // 2)) if handles else ReadLimits.files
    return ReadLimits(files=files, chunk=chunk)


class SftpFiles:
    """File contents from the cluster's folder `root`, over `wire` and idle channels of `pool`."""

    def __init__(
        self, pool: ChannelPool, wire: w.Wire, root: str, stop: threading.Event, events: Events
    ) -> None:
        self.pool = pool
        self.wire = wire
        self.root = root
        self.stop = stop
        self.events = events

    def write(self, wanted: Sequence[tuple[Action, Path]], landed: Landed) -> None:
        lock = threading.Lock()

        def one_at_a_time(action: Action, part: Path, error: BaseException | None) -> None:
            with lock:  # the Folder's counts and lists are not meant for several threads
                landed(action, part, error)

        queue: deque[tuple[Action, Path]] = deque(wanted)
        extra = self.pool.take_idle(SPREAD - 1) if len(wanted) >= SPREAD_FROM else []
        channels = [_Channel(self, wire, queue, one_at_a_time) for wire in [self.wire, *extra]]
        errors: list[BaseException] = []

        def work(channel: _Channel) -> None:
            try:
                channel.run()
            except BaseException as err:
                errors.append(err)

        threads = [
            threading.Thread(target=work, args=(ch,), name="sftp-fetch") for ch in channels[1:]
        ]
        for thread in threads:
            thread.start()
        work(channels[0])
        for thread in threads:
            thread.join()
        for channel in channels[1:]:
            self.pool.give_back(channel.wire, channel.clean)
        if errors:
            raise errors[0]


class _Channel:
    """The downloads of one channel, pumped by one thread, taking files from a shared queue."""

    def __init__(
        self, files: SftpFiles, wire: w.Wire, queue: deque[tuple[Action, Path]], landed: Landed
    ) -> None:
        self.files = files
        self.wire = wire
        self.queue = queue
        self.landed = landed
        self.limits = read_limits(wire)
        self.in_flight = 0  # bytes asked for and not yet arrived
        self.active: set[_Download] = set()
        self.readers: deque[_Download] = deque()  # open files with more to ask for
        self.clean = False

    def run(self) -> None:
        try:
            self.wire.pump(self.more)
            self.clean = True
        finally:
            for download in list(self.active):  # a lost link: no temporary stays behind
                download.abandon()

    def more(self) -> bool:
        stop = self.files.stop.is_set()
        if stop:
            self.readers.clear()
            for download in list(self.active):
                download.abandon()
        while self.readers and self.in_flight < self.limits.read_bytes:
            download = self.readers.popleft()
            if download.read_more():
                self.readers.append(download)
        while not stop and len(self.active) < self.limits.files:
            try:
                action, part = self.queue.popleft()
            except IndexError:
                break
            _Download(self, action, part).start()
        return bool(self.active)


class _Download:
    """One file: OPEN, READs into the local temporary, FSTAT, then `landed` (CLOSE behind)."""

    def __init__(self, channel: _Channel, action: Action, part: Path) -> None:
        self.channel = channel
        self.action = action
        self.entry = action.entry
        self.part = part
        self.remote = join(channel.files.root, self.entry.path)
        self.handle = b""
        self.fd = -1
        self.asked = 0  # offset of the next READ; past the size once the last one is sent
        self.reads = 0
        self.done = False

    def start(self) -> None:
        self.channel.active.add(self)
        payload = c.path(self.remote) + c.u32(c.O_READ) + c.u32(0)
        self.channel.wire.call(c.OPEN, payload, self.on_open)

    def on_open(self, reply: c.Reply) -> None:
        handle = reply.handle()
        if handle is None:
            code, _ = reply.status()
            if code == c.NO_SUCH_FILE:
                self.finish(Vanished())
            else:
                self.finish(TransferError(f"cannot read it on the cluster: {c.describe(reply)}"))
            return
        self.handle = handle
        if self.done:  # abandoned while the OPEN was on its way
            self._close_remote()
            return
        try:
            self.fd = os.open(self.part, _CREATE, 0o600)
        except OSError as err:
            self.finish(err)
            return
        if self.read_more():
            self.channel.readers.append(self)

    def read_more(self) -> bool:
        """Ask for more while the channel has room; True when there is more to ask for."""
        channel, size = self.channel, self.entry.size
        while not self.done and self.asked <= size:
            if channel.in_flight >= channel.limits.read_bytes:
                return True
            left = size - self.asked
            length = channel.limits.chunk if left >= channel.limits.chunk else left + 1
            self._read(self.asked, length)
            self.asked += length
        return False

    def _read(self, offset: int, length: int) -> None:
        self.reads += 1
        self.channel.in_flight += length
        payload = c.string(self.handle) + c.u64(offset) + c.u32(length)

        def on_data(reply: c.Reply) -> None:
            self.reads -= 1
            self.channel.in_flight -= length
            if not self.done:
                self._arrived(reply, offset, length)
            if not self.done and not self.reads and self.asked > self.entry.size:
                self._check()

        self.channel.wire.call(c.READ, payload, on_data)

    def _arrived(self, reply: c.Reply, offset: int, length: int) -> None:
        size = self.entry.size
        data = reply.data()
        if data is None:
            code, _ = reply.status()
            if code != c.EOF:
                self.finish(TransferError(f"read failed on the cluster: {c.describe(reply)}"))
            elif offset < size:
                self.finish(StillBeingWritten(f"it shrank below {size} bytes while being read"))
            return
        if offset + len(data) > size:
            self.finish(StillBeingWritten(f"it grew beyond {size} bytes while being read"))
            return
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as err:
            self.finish(err)
            return
        if size >= PROGRESS_FROM and data:
            self.channel.files.events.progress(len(data))
        if len(data) < min(length, size - offset):
            # The server gave less than asked (it may cap a READ): ask for the rest; a file
            # that shrank answers that with an end of file.
            self._read(offset + len(data), length - len(data))

    def _check(self) -> None:
        """All bytes are in: the file must still be the listed one, then it lands."""

        def on_stat(reply: c.Reply) -> None:
            if self.done:
                return
            attrs = reply.attrs()
            if attrs is None:
                self.finish(TransferError(f"cannot read it on the cluster: {c.describe(reply)}"))
                return
            size, listed = attrs.size, self.entry.size
            if size is not None and size != listed:
                verb = "grew" if size > listed else "shrank"
                self.finish(StillBeingWritten(f"it {verb} from {listed} to {size} bytes"))
            elif attrs.mtime is not None and attrs.mtime != seconds(self.entry.mtime_ns):
                self.finish(StillBeingWritten("its modification time changed"))
            else:
                self.finish(None)

        self.reads += 1  # keeps the file from being checked twice

        def counted(reply: c.Reply) -> None:
            self.reads -= 1
            on_stat(reply)

        self.channel.wire.call(c.FSTAT, c.string(self.handle), counted)

    def finish(self, error: BaseException | None) -> None:
        """Give the temporary its mode and mtime and hand it over, or hand over why not."""
        if self.done:
            return
        self.done = True
        self.channel.active.discard(self)
        if self.fd >= 0:
            try:
                if error is None:
                    os.fchmod(self.fd, self.entry.mode)
                    os.utime(self.fd, ns=(self.entry.mtime_ns, self.entry.mtime_ns))
            except OSError as err:
                error = err
            finally:
                os.close(self.fd)
                self.fd = -1
        self._close_remote()
        self.channel.landed(self.action, self.part, error)

    def abandon(self) -> None:
        """Ctrl-C or a lost link: remove the temporary; nothing is handed over."""
        if self.done:
            return
        self.done = True
        self.channel.active.discard(self)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):
                self.part.unlink()
        self._close_remote()

    def _close_remote(self) -> None:
        if self.handle:
            self.channel.wire.call(c.CLOSE, c.string(self.handle), None, background=True)
            self.handle = b""
