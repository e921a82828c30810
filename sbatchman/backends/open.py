"""Pick and open the backend session for one cluster; heavy modules are imported only here.

Keeping the imports inside the function keeps `sbatchman --help` fast: paramiko alone costs more
than the whole CLI start-up budget.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sbatchman.backends import Session
from sbatchman.config import Settings

if TYPE_CHECKING:
    from sbatchman.push import Reporter, Request, Target


def open_session(
    target: Target, settings: Settings, request: Request, reporter: Reporter
) -> Session:
    """Connect now (prompts included); the caller serialises calls so prompts never interleave."""
    from sbatchman.backends import rsync

    cluster = target.cluster
    backend = target.backend
    info = rsync.detect() if backend == "rsync" else None
    if backend == "rsync" and (info is None or not info.usable):
        instead = "the built-in copier" if cluster.is_local else "sftp"
        why = "is not on PATH" if info is None else "is openrsync, which lacks --files-from"
        reporter.notice(f"{cluster.name}: rsync {why}; using {instead} instead")
        info = None
    if info is not None:
        master = None
        if not cluster.is_local:
            from sbatchman.ssh import Master

            master = Master(cluster, settings, request.ssh)
            master.open()
        return rsync.RsyncSession(info, master, request.ssh.stall_timeout)
    if cluster.is_local:
        from sbatchman.backends.local import LocalSession

        return LocalSession()
    with _without_invoke():
        from sbatchman.backends.sftp import open_sftp

    return open_sftp(cluster, settings, request.ssh)


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
