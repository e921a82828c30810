"""Push one sync_dir through a backend session in this process, as the SFTP and copier tests do.

Sessions are opened the production way (`open_sftp` on a config read from TOML); `events` lets a
test act at an exact point of a push (after the first confirmed write, after the Nth file), which
is how races are made deterministic without sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

from sbatchman.backends.local import LocalSession
from sbatchman.backends.sftp.session import open_sftp
from sbatchman.config import load
from sbatchman.model import Job, Outcome
from sbatchman.selection.walk import select
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from tests.support.project import Recorder, ssh_cluster, write_config
from tests.support.sshd import SshServer

BATCH = SshOptions(batch=True, connect_timeout=10, stall_timeout=30)
T0 = 1_700_000_000 * 1_000_000_000  # a fixed past time, so "newer" cases are deterministic


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


class Remote:
    """One sync_dir on one server, pushed through an SFTP session opened from a TOML config.

    With `server=None` the cluster is a local one, pushed by the built-in copier.
    """

    def __init__(self, server: SshServer | None, local: Path, remote: str, config: Path) -> None:
        dirs: list[dict[str, object]] = [{"alias": "a", "local": str(local), "remote": remote}]
        if server is None:
            write_config(config, [{"name": "here", "transfer_backend": "sftp", "sync_dirs": dirs}])
        else:
            write_config(config, [ssh_cluster(server, dirs)])
        self.config = load(config)
        self.cluster = self.config.clusters[0]
        self.sync_dir = self.cluster.sync_dirs[0]
        self.session = (
            LocalSession()
            if server is None
            else open_sftp(Endpoint.of(self.cluster, self.config.settings, BATCH))
        )

    def push(
        self, *, dry_run: bool = False, events: Recorder | None = None
    ) -> tuple[Outcome, Recorder]:
        events = Recorder() if events is None else events
        selection = select(self.sync_dir.local, ())
        job = Job(self.cluster, self.sync_dir, self.sync_dir.remote, selection, dry_run)
        return self.session.push(job, events), events

    def close(self) -> None:
        self.session.close()
