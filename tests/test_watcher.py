"""The watcher's polling fallback sees every save, on a real filesystem (no mocks, no timings)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbatchman.watcher import TEST_LIMIT_ENV, Watcher

SECOND_NS = 1_700_000_000 * 10**9  # a whole second, long past
WAIT_S = 10.0


@pytest.fixture
def polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_LIMIT_ENV, "1")  # the first watcher "hits the limit": it polls


@pytest.fixture
def watcher(tmp_path: Path, polling: None) -> Iterator[Watcher]:
    notes: list[str] = []
    watching = Watcher([str(tmp_path)], notes.append)
    try:
        assert watching.polling and "watch limit" in notes[0], notes  # it has fallen back
        yield watching
    finally:
        watching.close()


def _saw(path: Path, watcher: Watcher) -> list[str]:
    """The batches until one names `path` (bounded; never a fixed sleep)."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while str(path) not in seen:
        assert time.monotonic() < deadline, f"{path.name} was never seen; batches: {seen}"
        seen += watcher.next()
    return seen


def test_a_second_save_within_the_same_second_is_seen(tmp_path: Path, polling: None) -> None:
    # watchfiles' own poller compares whole seconds: this save went unseen (a flaky watch test)
    script = tmp_path / "a.py"
    script.write_text("1\n")
    os.utime(script, ns=(SECOND_NS, SECOND_NS))
    watching = Watcher([str(tmp_path)], lambda _: None)
    try:
        assert watching.polling  # its first look is done: ready says so
        script.write_text("2\n")  # the same size, half a second later: the same whole second
        os.utime(script, ns=(SECOND_NS + 5 * 10**8, SECOND_NS + 5 * 10**8))
        _saw(script, watching)
    finally:
        watching.close()


def test_an_exec_bit_set_is_seen(tmp_path: Path, watcher: Watcher) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    _saw(script, watcher)
    script.chmod(0o755)
    _saw(script, watcher)


def test_a_file_made_in_a_new_sub_folder_is_its_folder_s_event_not_the_parent_s(
    tmp_path: Path, watcher: Watcher
) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    _saw(sub, watcher)  # the parent sees the new folder
    watcher.follow([str(tmp_path), str(sub)])
    (sub / "f.py").write_text("f\n")
    seen = _saw(sub / "f.py", watcher)
    assert str(sub) not in seen  # no full pass for a folder whose time changed


def test_a_save_made_while_the_folders_change_is_still_seen(
    tmp_path: Path, watcher: Watcher
) -> None:
    script = tmp_path / "a.py"
    script.write_text("1\n")
    _saw(script, watcher)
    sub = tmp_path / "sub"
    sub.mkdir()
    script.write_text("22\n")  # saved, then the watch moves on to a new set of folders
    watcher.follow([str(tmp_path), str(sub)])
    _saw(script, watcher)
