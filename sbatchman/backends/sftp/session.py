"""The SFTP backend's session: one connection per cluster, each push planned as rsync --update.

Used where rsync is missing. It runs the same steps as the local engine (backends.transfer: one
listing per folder, then plan.build) with the same safety rules: temporary name, then rename;
mode and mtime on every file; a dry run that writes nothing at all on the cluster. The wire
protocol, the reading of the destination and the carrying out of the plan live in wire, scan,
folders and apply (beside this module).

What a push reports is what landed: a file counts once its rename is confirmed, also when the
connection dies or Ctrl-C stops the push part way (renames sent but never answered are named as
a count that may also have landed). Ctrl-C lets each push finish the renames of files already
written and remove its other temporaries, for at most GRACE_S, before the connection is cut.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Sequence

import paramiko

from sbatchman.backends import Session
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.apply import Apply, Limits, transfer
from sbatchman.backends.sftp.delete import WireRemover
from sbatchman.backends.sftp.fetch import fetch
from sbatchman.backends.sftp.folders import (
    clear_the_way,
    make_folders,
    make_root,
    remove_leftovers,
    set_folder_attrs,
    unlock_folders,
)
from sbatchman.backends.sftp.lost import FilesFailed, LinkLost
from sbatchman.backends.sftp.pool import ChannelPool
from sbatchman.backends.sftp.remote_tree import WireLister
from sbatchman.backends.sftp.scan import Scan, listing, out_of_range, root_path, scan
from sbatchman.backends.transfer import Listed
from sbatchman.backends.transfer import run as run_transfer
from sbatchman.configschema import STALL_TIMEOUT
from sbatchman.errors import Interrupted, TransferError
from sbatchman.model import Events, FetchJob, InterruptedPart, Job, Outcome, PartialTransfer
from sbatchman.plan import (
    Plan,
    attribute_fixes,
    is_login_folder,
    locked_folders,
    root_entry,
    stale_folders,
)
from sbatchman.precedence import keep_dirlinks_for
from sbatchman.ssh.endpoint import Endpoint
from sbatchman.temporaries import Temporaries

MAX_CHUNK = 256 << 10  # largest WRITE we send, even if the server would take more
SPREAD = 3  # channels one push spreads its files over (one sftp-server process each)
SPREAD_FROM = 64  # files to send before more than one channel is worth it
GRACE_S = 2.0  # Ctrl-C: time pushes get to finish renames and remove temporaries
NAMED = 5  # files a note names before it only counts the rest


def open_sftp(endpoint: Endpoint) -> Session:
    """Connect (prompts included) and return the session every sync_dir of `cluster` uses."""
    from sbatchman.ssh.connect import connect

    return SftpSession(connect(endpoint), endpoint.options.stall_timeout)


class SftpSession:
    """One authenticated transport and its pool of SFTP channels.

    A channel (and its request ids) belongs to one thread at a time, which is why pushes do
    not share one: paramiko's own SFTPClient hangs when threads share it.
    """

    name = "sftp"

    def __init__(
        self,
        transport: paramiko.Transport,
        stall_timeout: float = STALL_TIMEOUT,
        *,
        warm: int = SPREAD,
    ) -> None:
        self.transport = transport
        self.pool = ChannelPool(transport, stall_timeout, warm)
        self.stopping = threading.Event()
        self._aborted = False
        self._pushes = 0
        self._idle = threading.Condition()

    def push(self, job: Job, events: Events) -> Outcome:
        with self._idle:
            self._pushes += 1
        try:
            return self._push(job, events)
        finally:
            with self._idle:
                self._pushes -= 1
                self._idle.notify_all()

    def _push(self, job: Job, events: Events) -> Outcome:
        wire = self.pool.take()
        clean = False
        try:
            outcome = _Push(self.pool, wire, job, events, self.stopping).run()
            clean = True
            return outcome
        except (FilesFailed, InterruptedPart):
            clean = True  # the channel is fine; its cleanup requests still get answered
            raise
        except LinkLost as err:
            if self._aborted:
                raise InterruptedPart(err.outcome) from None
            raise
        except TransferError:
            if self._aborted:
                raise Interrupted("interrupted") from None
            raise
        finally:
            self.pool.give_back(wire, clean)

    def fetch(self, job: FetchJob, events: Events) -> Outcome:
        with self._idle:  # counted as a push: Ctrl-C gives it the same grace to clean up
            self._pushes += 1
        try:
            return fetch(self.pool, self.stopping, job, events)
        finally:
            with self._idle:
                self._pushes -= 1
                self._idle.notify_all()

    def remover(self, job: Job) -> WireRemover:
        wire = self.pool.take()
        return WireRemover(wire, job.remote, lambda clean: self.pool.give_back(wire, clean))

    def lister(self, remote: str) -> WireLister:
        wire = self.pool.take()
        return WireLister(
            wire,
            root_path(remote),
            lambda clean: self.pool.give_back(wire, clean),
            lambda: self._aborted,
        )

    def abort(self) -> None:
        """Stop every push (Ctrl-C) without waiting: each finishes the renames of files it has
        written and removes its other temporaries; the connection is cut once they are done,
        or after GRACE_S whatever they are doing. A second call cuts it at once."""
        if self._aborted:
            self.transport.close()
            return
        self._aborted = True
        self.stopping.set()
        self.pool.stop()
        threading.Thread(target=self._close_when_idle, name="sftp-abort", daemon=True).start()

    def _close_when_idle(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: not self._pushes, GRACE_S)
        self.transport.close()

    def close(self) -> None:
        for wire in self.pool.stop():
            wire.close()
        self.transport.close()


def _limits(wire: w.Wire) -> Limits:
    """The server's own limits (limits@openssh.com) where it states them, else safe defaults."""
    if wire.limits is None:
        return Limits()
    _packet, _read, write_len, handles = wire.limits
    chunk = min(MAX_CHUNK, write_len) if write_len else Limits.chunk
    files = max(8, min(Limits.files, handles // 2)) if handles else Limits.files
    return Limits(files=files, chunk=chunk)


class _Push:
    """One sync_dir to one cluster over one channel: the destination of a transfer.run."""

    side = "remote"

    def __init__(
        self, pool: ChannelPool, wire: w.Wire, job: Job, events: Events, stop: threading.Event
    ) -> None:
        self.pool = pool
        self.wire = wire
        self.job = job
        self.events = events
        self.stop = stop
        self.root = root_path(job.remote)
        self.dirlinks = keep_dirlinks_for(job.cluster, job.sync_dir)

    def run(self) -> Outcome:
        job = self.job
        return run_transfer(job.selection, self, self.dirlinks, job.dry_run, self.events)

    def scan(self, folders: Sequence[str]) -> Scan:
        found = scan(self.wire, self.root, self.job.selection, folders)
        odd_times = out_of_range(self.job.selection, found.listings)
        if odd_times:
            found.notes.append(_times_note(odd_times))
        return found

    def list_folders(self, folders: Sequence[str]) -> Listed:
        return listing(self.wire, self.root, folders)

    def apply(self, plan: Plan, found: Scan, outcome: Outcome, temporaries: Temporaries) -> None:
        if self.stop.is_set():
            raise InterruptedPart(outcome)
        run = Apply(
            self.wire,
            self.root,
            self.job.selection.root,
            self.events,
            outcome,
            _limits(self.wire),
            temporaries,
            self.stop,
        )
        try:
            self._apply(plan, found, run)
        except PartialTransfer:
            raise
        except TransferError as err:
            if run.renaming:
                outcome.warnings.append(
                    f"{run.renaming} more file(s) may have landed: their rename was sent"
                    " but never confirmed"
                )
            sent = len(outcome.sent)
            raise LinkLost(f"{err}; {sent} file(s) were sent", outcome) from None
        if self.stop.is_set():
            raise InterruptedPart(outcome)

    def _apply(self, plan: Plan, found: Scan, run: Apply) -> None:
        outcome = run.outcome
        if found.root is None:
            make_root(run, _ancestors(self.root))
            if run.failures:
                raise FilesFailed(run.failures[0][1], outcome)
        job = self.job
        top = None if is_login_folder(job.remote) else (root_entry(job.selection.root), found.root)
        conflicts = [path for path, _ in plan.conflicts]
        chmods, dirs = attribute_fixes(
            self.job.selection, found.listings, self.dirlinks, conflicts, top
        )
        unlock_folders(run, locked_folders(plan.actions, dirs))
        remove_leftovers(run, plan.leftovers)
        blocked = clear_the_way(run, plan.actions)
        make_folders(run, [a.entry for a in plan.actions if a.op == "mkdir"])
        moving = []
        for action in plan.actions:
            if action.op not in ("send", "link") or action.entry.path in blocked:
                continue
            if posixpath.dirname(action.entry.path) in run.failed_dirs:  # never write through
                run.fail(action.entry.path, "its folder could not be made")
                continue
            moving.append(action)
        extra = self.pool.take_idle(SPREAD - 1) if len(moving) >= SPREAD_FROM else []
        helpers = [run.helper(wire, _limits(wire)) for wire in extra]
        clean = False
        try:
            if not self.stop.is_set():
                transfer([run, *helpers], moving, chmods)
            clean = True
        finally:
            for wire in extra:
                self.pool.give_back(wire, clean)
            for helper in helpers:
                run.absorb(helper)
        failed = run.failed_dirs | {rel for rel, _ in run.failures}
        set_folder_attrs(run, stale_folders(dirs, run.changed, failed))
        if run.failures and not self.stop.is_set():
            rel, message = run.failures[0]
            count = len(run.failures)
            others = f" (and {count - 1} more failed)" if count > 1 else ""
            sent = len(outcome.sent)
            raise FilesFailed(f"{rel}: {message}{others}; {sent} file(s) were sent", outcome)


def _times_note(paths: list[str]) -> str:
    """One line for every file whose time the cluster cannot hold (see scan.out_of_range)."""
    named = ", ".join(paths[:NAMED])
    more = f" (and {len(paths) - NAMED} more)" if len(paths) > NAMED else ""
    return (
        f"SFTP stores times from 1970 to 2106 only, so these keep the nearest time it can:"
        f" {named}{more}"
    )


def _ancestors(root: str) -> list[str]:
    """Each folder on the way to `root`, outermost first ("/" and the login folder excluded);
    "." and ".." steps are followed, never created."""
    out: list[str] = []
    current = "/" if root.startswith("/") else ""
    for part in root.split("/"):
        if part in ("", "."):
            continue
        current = posixpath.join(current, part) if current else part
        if part != "..":
            out.append(current)
    return out
