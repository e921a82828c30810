"""Pick and open the backend session for one cluster; heavy modules are imported only here.

Keeping the imports inside the function keeps `sbatchman --help` fast: paramiko alone costs more
than the whole CLI start-up budget.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from sbatchman.backends import Session, TreeLister
from sbatchman.backends.removal import Remover
from sbatchman.config import Settings
from sbatchman.errors import Interrupted, SbatchmanError
from sbatchman.model import Events, FetchJob, Job, Outcome
from sbatchman.ssh.endpoint import Endpoint

if TYPE_CHECKING:
    from sbatchman.model import Reporter, Request, Target


def open_session(
    target: Target, settings: Settings, request: Request, reporter: Reporter
) -> Session:
    """Connect now (prompts included); the caller serialises calls so prompts never interleave."""
    cluster = target.cluster
    backend = target.backend
    info = None
    if backend == "rsync":  # the rsync modules cost an SFTP run ~20 ms to import: only here
        from sbatchman.backends import rsync_info

        info = rsync_info.detect()
    if backend == "rsync" and (info is None or not info.usable):
        instead = "the built-in copier" if cluster.is_local else "sftp"
        why = "is not on PATH" if info is None else "is openrsync, which lacks --files-from"
        reporter.notice(f"{cluster.name}: rsync {why}; using {instead} instead")
        info = None
    if info is not None:
        from sbatchman.backends import rsync

        if cluster.is_local:
            return rsync.RsyncSession(info, None, request.ssh.stall_timeout)
        from sbatchman.ssh.master import Master

        endpoint = Endpoint.of(cluster, settings, request.ssh)  # once: SFTP fallback too
        master = Master(endpoint)
        master.open()
        session = rsync.RsyncSession(info, master, request.ssh.stall_timeout)
        if request.backend == "rsync":  # asked for by name: a missing rsync fails the cluster
            return session
        # No prompt may appear once transfers run: SFTP then connects without asking.
        quiet = endpoint.with_options(replace(request.ssh, batch=True))
        return _RsyncOrSftp(session, lambda: _sftp(quiet), reporter, cluster.name)
    if cluster.is_local:
        from sbatchman.backends.local import LocalSession

        return LocalSession()
    return _sftp(Endpoint.of(cluster, settings, request.ssh))


def _sftp(endpoint: Endpoint) -> Session:
    with _without_invoke():
        from sbatchman.backends.sftp.session import open_sftp

    return open_sftp(endpoint)


class _RsyncOrSftp:
    """rsync, until the cluster turns out to have none (`command not found`): then SFTP, said
    in one notice, for the rest of the run. Found on the first push rather than probed for,
    so a cluster that has rsync pays nothing."""

    def __init__(
        self, first: Session, fallback: Callable[[], Session], reporter: Reporter, label: str
    ) -> None:
        self.first, self.active = first, first
        self.fallback = fallback
        self.reporter = reporter
        self.label = label
        self.name = first.name
        self.aborted = False
        self.switching = threading.Lock()
        self.unreachable: SbatchmanError | None = None  # SFTP could not connect either

    def warm(self) -> None:
        """Passed on to rsync (see push.warm)."""
        warm = getattr(self.active, "warm", None)
        if warm is not None:
            warm()

    def push(self, job: Job, events: Events) -> Outcome:
        return self._either(lambda session: session.push(job, events))

    def fetch(self, job: FetchJob, events: Events) -> Outcome:
        return self._either(lambda session: session.fetch(job, events))

    def _either(self, transfer: Callable[[Session], Outcome]) -> Outcome:
        from sbatchman.backends.rsync_output import RsyncMissing

        if self.unreachable is not None:
            raise self.unreachable
        active = self.active
        try:
            return transfer(active)
        except RsyncMissing:
            if active is not self.first:
                raise
        with self.switching:  # aliases pushed side by side all find it: switch (and say) once
            if self.unreachable is not None:
                raise self.unreachable
            if self.active is self.first:
                notice = f"{self.label}: rsync is not installed there; using sftp instead"
                self.reporter.notice(notice)
                self.name = "sftp"
                try:
                    self.active = self.fallback()
                except SbatchmanError as err:
                    self.unreachable = err
                    raise
        if self.aborted:
            raise Interrupted("interrupted")
        return transfer(self.active)

    def remover(self, job: Job) -> Remover:
        return self.active.remover(job)

    def lister(self, remote: str) -> TreeLister:
        return self.active.lister(remote)  # over SFTP either way: rsync missing changes nothing

    def abort(self) -> None:
        self.aborted = True
        self.active.abort()

    def close(self) -> None:
        self.first.close()
        if self.active is not self.first:
            self.active.close()


@contextlib.contextmanager
def _without_invoke() -> Iterator[None]:
    """Import paramiko without `invoke`: ~0.15 s saved on every SFTP run.

    paramiko imports invoke only to run `Match exec` lines when paramiko itself parses an ssh
    config; sbatchman has `ssh -G` do that. invoke is hidden only while paramiko is first
    imported (paramiko keeps `invoke = None` for itself) and the marker is removed at once, so
    anything else in the process can still import invoke normally.
    """
    hide = "invoke" not in sys.modules and "paramiko" not in sys.modules
    if hide:
        sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if hide:
            del sys.modules["invoke"]
