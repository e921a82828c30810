"""A file deleted between the one walk and its transfer is a note, never a failed target.

Each backend is driven through sync() against real servers; the file goes at the fan-out's
"waiting" phase, which comes after the walk (made while the clusters connect) and before any
byte moves (no timing).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.config import load
from sbatchman.model import Request, Target, exit_code
from sbatchman.push import sync
from tests.support.project import OnPhase, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree

FILES = {"keep.txt": "kept\n", "sub/gone.txt": "deleted after the walk\n", "sub/b.txt": "b\n"}
NOTE = "sub/gone.txt: vanished before it was sent"


def _deleting(victim: Path) -> OnPhase:
    def hook(phase: str, target: Target) -> None:
        if phase == "waiting":
            victim.unlink(missing_ok=True)

    return OnPhase(hook)


def _check(config: Path, request: Request, dest: Path, local: Path) -> None:
    results = sync(load(config), request, _deleting(local / "sub/gone.txt"))
    assert [(r.status, r.error) for r in results] == [("ok", None)]
    assert exit_code(results) == 0
    assert NOTE in results[0].warnings, results[0].warnings
    assert sorted(p for p, _ in results[0].sent) == ["keep.txt", "sub/b.txt"]
    assert (dest / "keep.txt").read_text() == "kept\n"
    assert (dest / "sub/b.txt").read_text() == "b\n"
    assert not (dest / "sub/gone.txt").exists()
    assert sorted(p.name for p in dest.rglob("*")) == ["b.txt", "keep.txt", "sub"]


def test_the_local_copier_notes_a_file_deleted_after_the_walk(tmp_path: Path) -> None:
    local = make_tree(tmp_path / "p", FILES)
    dest = tmp_path / "dest"
    dirs = [{"alias": "a", "local": str(local), "remote": str(dest)}]
    config = write_config(
        tmp_path / "c.toml", [{"name": "here", "transfer_backend": "sftp", "sync_dirs": dirs}]
    )
    _check(config, Request(), dest, local)


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_a_cluster_notes_a_file_deleted_after_the_walk(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    server = three_clusters[0]
    local = make_tree(tmp_path / "p", FILES)
    dest = cluster_roots[server.name] / "dest"
    dirs = [{"alias": "a", "local": str(local), "remote": str(dest)}]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    _check(config, Request(backend=backend), dest, local)


def test_local_rsync_notes_a_file_deleted_after_the_walk(tmp_path: Path) -> None:
    local = make_tree(tmp_path / "p", FILES)
    dest = tmp_path / "dest"
    dirs = [{"alias": "a", "local": str(local), "remote": str(dest)}]
    config = write_config(tmp_path / "c.toml", [{"name": "here", "sync_dirs": dirs}])
    _check(config, Request(backend="rsync"), dest, local)
