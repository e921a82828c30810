"""The SFTP backend's session: one connection per cluster, each push planned as rsync --update.

Used where rsync is missing. It follows the same plan as the local engine (plan.build over one
listing per folder) and the same safety rules: temporary name, then rename; mode and mtime on
every file; a dry run that writes nothing at all on the cluster. The wire protocol, the reading
of the destination and the carrying out of the plan live in sftp_wire, sftp_scan, sftp_folders
and sftp_apply.
"""

from __future__ import annotations

import posixpath

import paramiko

from sbatchman.backends import Events, Job, Outcome, PartialTransfer, Session
from sbatchman.backends import sftp_wire as w
from sbatchman.backends.sftp_apply import Apply, Limits, transfer
from sbatchman.backends.sftp_folders import (
    clear_the_way,
    make_folders,
    make_root,
    remove_leftovers,
    set_folder_attrs,
    unlock_folders,
)
from sbatchman.backends.sftp_pool import ChannelPool
from sbatchman.backends.sftp_scan import Scan, root_path, scan
from sbatchman.config import Cluster, Settings
from sbatchman.errors import Interrupted, TransferError
from sbatchman.plan import (
    Plan,
    attribute_fixes,
    build,
    folders,
    locked_folders,
    root_entry,
    stale_folders,
)
from sbatchman.precedence import keep_dirlinks_for
from sbatchman.ssh import SshOptions

MAX_CHUNK = 256 << 10  # largest WRITE we send, even if the server would take more
SPREAD = 3  # channels one push spreads its files over (one sftp-server process each)
SPREAD_FROM = 64  # files to send before more than one channel is worth it


def open_sftp(cluster: Cluster, settings: Settings, options: SshOptions) -> Session:
    """Connect (prompts included) and return the session every sync_dir of `cluster` uses."""
    from sbatchman.sshconnect import connect

    return SftpSession(connect(cluster, settings, options), options.stall_timeout)


class FilesFailed(PartialTransfer):
    """Some files could not be written (the rest were); the connection itself is fine."""


class SftpSession:
    """One authenticated transport and its pool of SFTP channels.

    A channel (and its request ids) belongs to one thread at a time, which is why pushes do
    not share one: paramiko's own SFTPClient hangs when threads share it.
    """

    name = "sftp"

    def __init__(
        self, transport: paramiko.Transport, stall_timeout: float = 120.0, *, warm: int = SPREAD
    ) -> None:
        self.transport = transport
        self.pool = ChannelPool(transport, stall_timeout, warm)
        self._aborted = False

    def push(self, job: Job, events: Events) -> Outcome:
        wire = self.pool.take()
        clean = False
        try:
            outcome = _Push(self.pool, wire, job, events).run()
            clean = True
            return outcome
        except FilesFailed:
            clean = True  # the channel is fine; its cleanup requests still get answered
            raise
        except TransferError:
            if self._aborted:
                raise Interrupted("interrupted") from None
            raise
        finally:
            self.pool.give_back(wire, clean)

    def abort(self) -> None:
        """Stop every push now (Ctrl-C): the connection closes under them, so they fail at once;
        temporaries they leave are removed by the next run."""
        self._aborted = True
        self.pool.stop()
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
    """One sync_dir to one cluster over one channel: scan, plan, then (unless dry) apply."""

    def __init__(self, pool: ChannelPool, wire: w.Wire, job: Job, events: Events) -> None:
        self.pool = pool
        self.wire = wire
        self.job = job
        self.events = events
        self.root = root_path(job.remote)
        self.dirlinks = keep_dirlinks_for(job.cluster, job.sync_dir)

    def run(self) -> Outcome:
        job, events = self.job, self.events
        events.phase("scanning")
        found = scan(self.wire, self.root, job.selection, folders(job.selection), self.dirlinks)
        plan = build(job.selection, found.listings, self.dirlinks)
        outcome = Outcome(
            skipped_newer=plan.skipped_newer, conflicts=plan.conflicts, warnings=plan.warnings
        )
        for path in outcome.skipped_newer:
            events.skipped(path, "remote is newer")
        for path, why in outcome.conflicts:
            events.skipped(path, f"conflict: {why}")
        events.totals(len(plan.to_send), sum(a.entry.size for a in plan.to_send))
        events.phase("sending")
        if job.dry_run:
            for action in plan.to_send:
                outcome.sent.append((action.entry.path, action.reason))
                outcome.bytes_sent += action.entry.size
                events.sent(action.entry.path, action.entry.size, action.reason)
            return outcome
        self._apply(plan, found, outcome)
        return outcome

    def _apply(self, plan: Plan, found: Scan, outcome: Outcome) -> None:
        run = Apply(
            self.wire, self.root, self.job.selection.root, self.events, outcome, _limits(self.wire)
        )
        if found.root is None:
            make_root(run, _ancestors(self.root))
            if run.failures:
                raise TransferError(run.failures[0][1])
        top = (root_entry(self.job.selection.root), found.root)
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
            transfer([run, *helpers], moving, chmods)
            clean = True
        finally:
            for wire in extra:
                self.pool.give_back(wire, clean)
        for helper in helpers:
            run.absorb(helper)
        failed = run.failed_dirs | {rel for rel, _ in run.failures}
        set_folder_attrs(run, stale_folders(dirs, run.changed, failed))
        if run.failures:
            rel, message = run.failures[0]
            count = len(run.failures)
            others = f" (and {count - 1} more failed)" if count > 1 else ""
            sent = len(outcome.sent)
            raise FilesFailed(f"{rel}: {message}{others}; {sent} file(s) were sent", outcome)


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
