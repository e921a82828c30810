"""Push one sync_dir through a backend session in this process, as the SFTP and copier tests do.

Sessions are opened the production way (`open_sftp` on a config read from TOML); `events` lets a
test act at an exact point of a push (after the first confirmed write, after the Nth file), which
is how races are made deterministic without sleeps.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from sbatchman.backends.local import LocalSession
from sbatchman.backends.sftp.session import open_sftp
from sbatchman.config import load
from sbatchman.model import Job, Outcome
from sbatchman.selection.walk import select
from sbatchman.ssh.endpoint import Endpoint
from sbatchman.ssh.master import SshOptions
from tests.support.project import Recorder, ssh_cluster, write_config
from tests.support.sshd import SshServer

BATCH = SshOptions(batch=True, connect_timeout=10, stall_timeout=30)
T0 = 1_700_000_000 * 1_000_000_000  # a fixed past time, so "newer" cases are deterministic


def state(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a tree: kind, mode, size, mtime in ns, content, link target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return out


def pushed_view(root: Path) -> dict[str, tuple[object, ...]]:
    """What a push must reproduce: files' mode, size, mtime second and content; link targets;
    folders and their modes."""
    out: dict[str, tuple[object, ...]] = {}
    for rel, facts in state(root).items():
        if facts[0] == "file":
            _, mode, size, mtime_ns, digest = facts
            out[rel] = ("file", mode, size, int(str(mtime_ns)) // 1_000_000_000, digest)
        elif facts[0] == "dir":
            out[rel] = ("dir", facts[1])
        else:
            out[rel] = facts
    return out


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
