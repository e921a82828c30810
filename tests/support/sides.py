"""A source tree, a destination tree and one backend between them, for the conformance suite.

tests/test_backends_same_tree.py states each promise once, in terms of `source` and `dest`;
which backend carries the files (the local copier, rsync or SFTP over a real sshd) and which way
(push: the project to the cluster; fetch: the cluster's folder back here) are fixture
parameters. Both ends are folders on this machine (a "remote" one sits under a test server's
root), so a fetch is the same promise with the sides swapped.
"""

from __future__ import annotations

import json
import os
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
        """Leftovers of an interrupted or unfinished write: .sbm-part files, or hidden names
        with a suffix (rsync's .name.XXXXXX; a fetched .sbatchmanignore is none)."""
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if is_temporary(p) and "." in p.name[1:]
        )


# The --json key listing files kept because the destination's copy is newer, per direction.
KEPT_NEWER = {"push": "skipped_newer_remote", "fetch": "skipped_newer_local"}


def kept_newer(target: Mapping[str, Any], direction: str) -> list[str]:
    """The files a --json target says were left alone because the destination's is newer.
    Until the report names fetch's list "skipped_newer_local", it is under push's name."""
    key = KEPT_NEWER[direction]
    return sorted(target[key if key in target else KEPT_NEWER["push"]])


@dataclass
class Report:
    """What one `sbatchman sync` or `fetch` said: exit code, text, with --json its one target."""

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

    def kept_newer(self, direction: str) -> list[str]:
        return kept_newer(self.target, direction)


@dataclass
class Sync:
    """`source` carried to `dest` by `backend` through the real CLI, in this process: pushed
    (`direction` "push": source is the project) or fetched ("fetch": source is on the cluster)."""

    backend: str  # "local" (the built-in copier), "rsync" or "sftp"
    source: Side
    dest: Side
    config: Path
    server: SshServer | None
    capsys: pytest.CaptureFixture[str]
    direction: str = "push"

    @property
    def fetching(self) -> bool:
        return self.direction == "fetch"

    @property
    def local(self) -> Side:
        return self.dest if self.fetching else self.source

    @property
    def remote(self) -> Side:
        return self.source if self.fetching else self.dest

    def write_config(self, excludes: Sequence[str] = ()) -> Path:
        folder: dict[str, object] = {"alias": ALIAS, "local": str(self.local.root)}
        folder["remote"] = str(self.remote.root)
        key = "fetch_dirs" if self.fetching else "sync_dirs"
        if self.server is None:
            # a cluster without a host is this machine: the built-in copier, whatever the backend
            cluster: dict[str, object] = {"name": CLUSTER, "transfer_backend": "sftp"}
            cluster[key] = [folder]
        else:
            pushed: list[dict[str, object]] = [] if self.fetching else [folder]
            fetched = {key: [folder]} if self.fetching else {}
            cluster = ssh_cluster(
                self.server, pushed, name=CLUSTER, transfer_backend=self.backend, **fetched
            )
        extra = {"common_excludes": list(excludes)} if excludes else {}
        return write_config(self.config, [cluster], **extra)

    def run(self, *args: str, excludes: Sequence[str] = ()) -> Report:
        """`sbatchman sync|fetch --config … ARGS`; with --json, the report's one target."""
        self.write_config(excludes)
        command = "fetch" if self.fetching else "sync"
        run = run_cli(self.capsys, command, "--config", str(self.config), *args)
        if "--json" not in args:
            return Report(run)
        targets = json.loads(run.out)["targets"]
        assert len(targets) == 1, run.out
        assert targets[0]["backend"] == self.backend, targets[0]
        return Report(run, targets[0])


def awkward_tree(side: Side) -> Side:
    """Exec scripts, symlinks of every kind, empty and nested folders, odd names, excluded
    files, and fractional-second times on everything."""
    side.write(
        {
            "run.sh": "#!/bin/sh\necho run\n",
            "src/model.py": "print('model')\n",
            "src/deep/er/est/util.py": "x = 1\n",
            "src/model.pyc": "excluded",
            "build/out.o": "excluded",
            ".git/HEAD": "excluded",
            'with space/it\'s "quoted" $(x).txt': "q\n",
            "unicodé/ünï 東京.txt": "u\n",
            "empty file": "",
            "logs/.sbatchmanignore": "*.log\n!keep.log\n",
            "logs/run.log": "ignored",
            "logs/keep.log": "kept\n",
            "empty/nested/deeper/": "",
            "private/key": "k\n",
            "tools/x": "#!/bin/sh\n",
        },
        links={
            "latest": "src/model.py",
            "src/up": "..",
            "dangling": "no/such/file",
            "absolute": "/etc/hostname",
            "folder link": "src/deep",
        },
    )
    (side.path("private/key")).chmod(0o600)
    (side.path("private")).chmod(0o750)
    (side.path("tools/x")).chmod(0o751)
    base = 1_700_000_000_000_000_000
    for i, path in enumerate(sorted(side.path().rglob("*"), reverse=True)):  # children first
        ns = base + i * 7_000_000_000 + 250_000_000  # fractional seconds on purpose
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
    return side
