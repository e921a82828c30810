"""The push core without a terminal: what each target is handed, driven with the real local
copier and a reporter of the test's own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sbatchman.backends import Events
from sbatchman.config import load
from sbatchman.push import Request, Target, exit_code, sync
from tests.support.project import Recorder, make_tree, write_config


class DeletingReporter:
    """Deletes `victim` as soon as the first alias sends a file: a user editing meanwhile."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def notice(self, message: str) -> None:
        pass

    def events(self, target: Target) -> Events:
        victim = self.victim

        class Deleting(Recorder):
            def sent(self, path: str, nbytes: int, why: str) -> None:
                super().sent(path, nbytes, why)
                if target.sync_dir.alias == "first":
                    victim.unlink(missing_ok=True)

        return Deleting()

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        yield


def test_each_folder_is_walked_when_its_turn_comes(tmp_path: Path) -> None:
    """Connecting (and a 2FA prompt) can take long: a file deleted before its folder's turn
    is simply not sent, instead of failing that folder."""
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
