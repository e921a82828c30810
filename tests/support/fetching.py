"""Clusters with fetch_dirs on the test bed's servers, and `sbatchman fetch --json` run on them.

The fetch integration tests state each promise once and run it on every way a fetch reads a
cluster: rsync or SFTP over a real sshd, or a cluster without `host` (this machine, the local
engine) whose remote folders are the same folders under the servers' roots.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Run, run_cli, ssh_cluster
from tests.support.sshd import SshServer

BACKENDS = ["local", "rsync", "sftp"]  # "local": the clusters have no host


def fetch_cluster(
    server: SshServer, backend: str, fetch_dirs: Iterable[dict[str, object]], **extra: object
) -> dict[str, Any]:
    """A [[clusters]] table named after `server` that only fetches (no sync_dirs)."""
    dirs = list(fetch_dirs)
    if backend == "local":
        return {"name": server.name, "transfer_backend": "sftp", **extra, "fetch_dirs": dirs}
    return ssh_cluster(server, [], transfer_backend=backend, **extra, fetch_dirs=dirs)


@dataclass
class Fetched:
    """What one `sbatchman fetch --json` said."""

    run: Run
    document: dict[str, Any]

    @property
    def code(self) -> int:
        return self.run.code

    def why(self) -> str:
        return self.run.out + self.run.err

    def target(self, cluster: str, alias: str) -> dict[str, Any]:
        found = [
            t for t in self.document["targets"] if (t["cluster"], t["alias"]) == (cluster, alias)
        ]
        assert len(found) == 1, self.why()
        target: dict[str, Any] = found[0]
        return target

    def names(self) -> list[tuple[str, str]]:
        return sorted((t["cluster"], t["alias"]) for t in self.document["targets"])

    def sent(self, cluster: str, alias: str) -> list[str]:
        return sorted(f["path"] for f in self.target(cluster, alias)["files"])


def fetch(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Fetched:
    """`sbatchman fetch --config CONFIG --json ARGS` in this process."""
    run = run_cli(capsys, "fetch", "--config", str(config), "--json", *args)
    try:
        document = json.loads(run.out)
    except ValueError:
        raise AssertionError(f"no JSON document: {run.out!r} {run.err!r}") from None
    return Fetched(run, document)


def logins(server: SshServer) -> int:
    """How many times a client has logged in to `server` so far (its own log says)."""
    return server.log_text().count("Accepted publickey")


def identities(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry below `root` (and root itself): inode and mtime in nanoseconds, which
    change when a file is rewritten even with the same bytes and times."""
    out = {".": (root.lstat().st_ino, root.lstat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[path.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def everything_below(root: Path) -> list[str]:
    """Every path below `root`, folders included ([] when root does not exist)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []
