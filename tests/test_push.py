"""The push core without a terminal: what each target is handed, driven with the real local
copier and a reporter of the test's own."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbatchman.backends.local import LocalSession
from sbatchman.config import load
from sbatchman.model import Events, InterruptedPart, Job, Request, Target, exit_code
from sbatchman.push import sync
from sbatchman.selection.walk import select
from tests.support.project import Recorder, write_config
from tests.support.trees import make_tree


class DeletingReporter:
    """Deletes `victim` when the first alias waits for its turn, after the walk and before any
    transfer (aliases run side by side, so "after the first alias sent" is no fixed moment)."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def notice(self, message: str) -> None:
        pass

    def events(self, target: Target) -> Events:
        victim = self.victim

        class Deleting(Recorder):
            def phase(self, name: str) -> None:
                super().phase(name)
                if target.sync_dir.alias == "first" and name == "waiting":
                    victim.unlink(missing_ok=True)

        return Deleting()

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        yield


def test_a_file_deleted_before_its_folders_turn_is_a_note(tmp_path: Path) -> None:
    """Connecting (and a 2FA prompt) can take long, and each folder is walked once, up front:
    a file deleted before its folder's turn is simply not sent (a note), instead of failing
    that folder."""
    first = make_tree(tmp_path / "first", {"a.py": "a\n"})
    second = make_tree(tmp_path / "second", {"b.py": "b\n", "tmp.out": "scratch\n"})
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "here",
                "transfer_backend": "sftp",  # a local cluster: the built-in copier
                "sync_dirs": [
                    {"alias": "first", "local": str(first), "remote": str(tmp_path / "d1")},
                    {"alias": "second", "local": str(second), "remote": str(tmp_path / "d2")},
                ],
            }
        ],
    )
    results = sync(load(config), Request(), DeletingReporter(second / "tmp.out"))
    assert [(r.alias, r.status, r.error) for r in results] == [
        ("first", "ok", None),
        ("second", "ok", None),
    ]
    assert exit_code(results) == 0
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == ["b.py"]
    assert results[1].warnings == ["tmp.out: vanished before it was sent"]


def test_an_interrupted_local_push_puts_unlocked_folders_back(tmp_path: Path) -> None:
    """Ctrl-C while files go into a read-only folder: the push reports an interruption (not
    some later error) and the folder is read-only again."""
    src = make_tree(tmp_path / "src", {f"ro/f{i}": "x\n" for i in range(5)} | {"zz/g": "g\n"})
    (src / "ro").chmod(0o555)
    dest = tmp_path / "dest"
    (dest / "ro").mkdir(parents=True)
    (dest / "ro").chmod(0o555)
    config = write_config(
        tmp_path / "c.toml",
        [{"name": "l", "sync_dirs": [{"alias": "p", "local": str(src), "remote": str(dest)}]}],
    )
    cluster = load(config).clusters[0]
    session = LocalSession()

    class StopAfterOne(Recorder):
        def sent(self, path: str, nbytes: int, why: str) -> None:
            super().sent(path, nbytes, why)
            session.abort()

    job = Job(cluster, cluster.sync_dirs[0], str(dest), select(src, ()), False)
    try:
        with pytest.raises(InterruptedPart):
            session.push(job, StopAfterOne())
        assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    finally:
        (src / "ro").chmod(0o755)


def test_a_folder_pushed_to_several_clusters_is_walked_once(tmp_path: Path) -> None:
    """The walk before connecting is the one pushed, and one folder with the same rules is
    walked once for all its clusters; other rules make another walk."""
    from sbatchman.push import walk
    from sbatchman.targets import resolve_targets

    src = make_tree(tmp_path / "src", {"a.py": "a\n", "b.log": "b\n"})
    clusters = [
        {"name": name, "transfer_backend": "sftp", "sync_excludes": excludes, "sync_dirs": [
            {"alias": "p", "local": str(src), "remote": str(tmp_path / name)}]}
        for name, excludes in (("one", []), ("two", []), ("three", ["*.log"]))
    ]  # fmt: skip
    config = load(write_config(tmp_path / "c.toml", clusters))
    targets = resolve_targets(config, Request())
    selections = walk(targets)
    one, two, three = (selections[id(t)] for t in targets)
    assert one is two
    assert three is not one
    assert [e.path for e in three.files] == ["a.py"]
