"""A source tree, a destination tree and one backend between them, for the conformance suite.

tests/test_backends_same_tree.py states each promise once, in terms of `source` and `dest`;
which backend carries the files (the local copier, rsync or SFTP over a real sshd) is a fixture
parameter. Both ends are folders on this machine (a "remote" one sits under a test server's
root), so the same suite can run the other way round (fetch) by swapping what the sides are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Run, run_cli, ssh_cluster, write_config
from tests.support.running import is_temporary
from tests.support.sshd import SshServer
from tests.support.trees import Node, make_tree, snapshot, stamp

CLUSTER, ALIAS = "c", "proj"  # so a text report names the target "c/proj"


@dataclass
class Side:
    """One end of a sync: a folder the test lays out and looks at."""

    root: Path

    def write(
        self, files: Mapping[str, str | bytes], *, links: Mapping[str, str] | None = None
    ) -> Side:
        make_tree(self.root, files, links=links)
        return self

    def path(self, rel: str = "") -> Path:
        return self.root / rel if rel else self.root

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def stamp_all(self, seconds: int) -> None:
        """Every entry's own mtime (links' too) to `seconds`."""
        for path in self.root.rglob("*"):
            stamp(path, seconds)

    def snapshot(self, *, times: bool = False) -> dict[str, Node]:
        """See trees.snapshot; `times` adds folders' and links' own mtimes."""
        return snapshot(self.root, folder_times=times, link_times=times)

    def temporaries(self) -> list[str]:
        """Leftovers of an interrupted or unfinished write: hidden names or .sbm-part files."""
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if is_temporary(p)
        )


@dataclass
class Report:
    """What one `sbatchman sync` said: exit code, text, and with --json its one target."""

    run: Run
    target: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return self.run.code

    @property
    def out(self) -> str:
        return self.run.out

    def sent(self) -> list[str]:
        return sorted(f["path"] for f in self.target["files"])


@dataclass
class Sync:
    """`source` pushed to `dest` by `backend` through the real CLI, in this process."""

    backend: str  # "local" (the built-in copier), "rsync" or "sftp"
    source: Side
    dest: Side
    config: Path
    server: SshServer | None
    capsys: pytest.CaptureFixture[str]

    def write_config(self, excludes: Sequence[str] = ()) -> Path:
        sync_dir = {"alias": ALIAS, "local": str(self.source.root), "remote": str(self.dest.root)}
        if self.server is None:
            # a cluster without a host is this machine: the built-in copier, whatever the backend
            cluster: dict[str, object] = {"name": CLUSTER, "transfer_backend": "sftp"}
            cluster["sync_dirs"] = [sync_dir]
        else:
            cluster = ssh_cluster(
                self.server, [sync_dir], name=CLUSTER, transfer_backend=self.backend
            )
        extra = {"common_excludes": list(excludes)} if excludes else {}
        return write_config(self.config, [cluster], **extra)

    def run(self, *args: str, excludes: Sequence[str] = ()) -> Report:
        """`sbatchman sync --config … ARGS`; with --json, the report's one target."""
        self.write_config(excludes)
        run = run_cli(self.capsys, "sync", "--config", str(self.config), *args)
        if "--json" not in args:
            return Report(run)
        targets = json.loads(run.out)["targets"]
        assert len(targets) == 1, run.out
        assert targets[0]["backend"] == self.backend, targets[0]
        return Report(run, targets[0])
