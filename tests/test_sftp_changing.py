"""Files that change while they are sent, and times SFTP cannot carry (issue 10, items 7 and 11).

A file truncated, grown or rewritten during its upload must fail, never land as a mix reported
ok; the change is made at an exact point of the push (the first confirmed write of the file,
or between the folder walk and the upload) through the events stream, so nothing depends on
timing. Real OpenSSH servers; the local copier is held to the same rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sbatchman.model import PartialTransfer
from sbatchman.plan import PART_SUFFIX
from tests.support.project import Recorder
from tests.support.sftpkit import T0, Remote, set_mtime
from tests.support.sshd import SshServer
from tests.support.trees import make_tree

BIG = 32 << 20  # well past the 8 MiB in flight, so reading goes on after the first reply
Change = Callable[[Path], None]


def _truncate(path: Path) -> None:
    os.truncate(path, 0)


def _grow(path: Path) -> None:
    with path.open("ab") as out:
        out.write(b"more data appended during the upload\n")


def _remove(path: Path) -> None:
    path.unlink()


def _touch(path: Path) -> None:
    set_mtime(path, T0 + 86_400_000_000_000)  # same bytes, another time


CHANGES: dict[str, tuple[Change, str]] = {
    "truncated": (_truncate, f"it shrank from {BIG} to 0 bytes"),
    "grown": (_grow, f"it grew from {BIG} to"),
    "touched": (_touch, "its modification time changed"),
}  # removed: a note, not a failure (test_a_file_removed_after_the_walk_is_a_note)


class ChangeOnce(Recorder):
    """Applies `change` to `path` once, at the first event named `when`."""

    def __init__(self, when: str, change: Change, path: Path) -> None:
        super().__init__()
        self.when, self.change, self.path = when, change, path
        self.done = False

    def _maybe(self, name: str) -> None:
        if name == self.when and not self.done:
            self.done = True
            self.change(self.path)

    def progress(self, nbytes: int) -> None:
        super().progress(nbytes)
        self._maybe("progress")

    def totals(self, files: int, nbytes: int) -> None:
        super().totals(files, nbytes)
        self._maybe("totals")


def _big_project(root: Path) -> Path:
    make_tree(root, {"small.txt": "small\n", "sub/other.txt": "other\n"})
    with (root / "big.bin").open("wb") as out:
        for _ in range(BIG >> 20):
            out.write(os.urandom(1 << 20))
    set_mtime(root / "big.bin", T0 + 10_000_000_000)
    return root


def _push_changing(remote: Remote, events: ChangeOnce) -> str:
    with pytest.raises(PartialTransfer) as failed:
        remote.push(events=events)
    assert events.done
    outcome = failed.value.outcome
    assert sorted(p for p, _ in outcome.sent) == ["small.txt", "sub/other.txt"]
    assert outcome.bytes_sent == len("small\n") + len("other\n")  # only what landed
    return str(failed.value)


WHEN = [("progress", how) for how in CHANGES]
WHEN += [("totals", "truncated")]


@pytest.mark.parametrize(("when", "how"), WHEN)
def test_a_file_that_changes_while_it_is_sent_fails_and_the_cluster_keeps_its_copy(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    when: str,
    how: str,
) -> None:
    server = three_clusters[0]
    local = _big_project(tmp_path / "p")
    dest = cluster_roots[server.name]
    (dest / "big.bin").write_bytes(b"the old version")
    set_mtime(dest / "big.bin", T0)
    change, words = CHANGES[how]  # "totals": after the walk, before its upload began
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        message = _push_changing(remote, ChangeOnce(when, change, local / "big.bin"))
        assert message.startswith("big.bin: changed while being sent (")
        assert words in message
        assert (dest / "big.bin").read_bytes() == b"the old version"
        assert not [p for p in dest.rglob("*") if p.name.endswith(PART_SUFFIX)]

        again, _ = remote.push()  # the file holds still now: it lands whole
        assert [p for p, _ in again.sent] == ["big.bin"]
        assert (dest / "big.bin").read_bytes() == (local / "big.bin").read_bytes()
    finally:
        remote.close()


@pytest.mark.parametrize("how", list(CHANGES))
def test_the_local_copier_fails_a_file_that_changed_after_the_walk(
    tmp_path: Path, how: str
) -> None:
    local = _big_project(tmp_path / "p")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "big.bin").write_bytes(b"the old version")
    set_mtime(dest / "big.bin", T0)
    change, words = CHANGES[how]
    remote = Remote(None, local, str(dest), tmp_path / "c.toml")
    message = _push_changing(remote, ChangeOnce("totals", change, local / "big.bin"))
    assert message.startswith("big.bin: changed while being sent (") and words in message
    assert (dest / "big.bin").read_bytes() == b"the old version"
    assert sorted(p.name for p in dest.iterdir()) == ["big.bin", "small.txt", "sub"]
    again, _ = remote.push()
    assert [p for p, _ in again.sent] == ["big.bin"]
    assert (dest / "big.bin").read_bytes() == (local / "big.bin").read_bytes()


@pytest.mark.parametrize("over", ["sftp", "local copier"])
def test_a_file_removed_after_the_walk_is_a_note(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path, over: str
) -> None:
    """Removed before it is opened (once open, it reads on): nothing of it is sent, the
    cluster keeps its copy, no temporary is left, and the push says so without failing."""
    server = three_clusters[0] if over == "sftp" else None
    local = _big_project(tmp_path / "p")
    dest = cluster_roots[three_clusters[0].name] if server else tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    (dest / "big.bin").write_bytes(b"the old version")
    set_mtime(dest / "big.bin", T0)
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        events = ChangeOnce("totals", _remove, local / "big.bin")
        outcome, _ = remote.push(events=events)
        assert events.done
        assert sorted(p for p, _ in outcome.sent) == ["small.txt", "sub/other.txt"]
        assert outcome.bytes_sent == len("small\n") + len("other\n")
        assert "big.bin: vanished before it was sent" in outcome.warnings
        assert (dest / "big.bin").read_bytes() == b"the old version"
        assert not [p for p in dest.rglob("*") if p.name.endswith(PART_SUFFIX)]
        again, _ = remote.push()
        assert again.sent == []
    finally:
        remote.close()


# --------------------------------------------------------------------------- times


def test_times_sftp_cannot_carry_are_compared_as_stored_and_named_once(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """SFTP v3 times are unsigned 32-bit seconds: 1960 is stored as 1970, 2200 as 2106. The
    second push must send nothing (not re-send 2200, not keep 1960 as "newer on the cluster")
    and each report says once which times could not be kept."""
    server = three_clusters[1]
    local = make_tree(tmp_path / "p", {"old.txt": "1960\n", "future.txt": "2200\n", "now.txt": "n"})
    (local / "old dir").mkdir()
    set_mtime(local / "old.txt", -315_619_200 * 10**9 + 5)  # 1960-01-01, a fraction past
    set_mtime(local / "future.txt", 7_258_118_400 * 10**9)  # 2200-01-01
    set_mtime(local / "now.txt", T0)
    set_mtime(local / "old dir", -315_619_200 * 10**9)
    dest = cluster_roots[server.name] / "dest"
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        first, _ = remote.push()
        again, events = remote.push()
    finally:
        remote.close()
    assert sorted(p for p, _ in first.sent) == ["future.txt", "now.txt", "old.txt"]
    assert int((dest / "old.txt").stat().st_mtime) == 0  # the nearest time SFTP can store
    assert int((dest / "future.txt").stat().st_mtime) == 0xFFFFFFFF
    assert again.sent == [] and again.skipped_newer == [] and events.kept == []
    for outcome in (first, again):
        notes = [w for w in outcome.warnings if "1970 to 2106" in w]
        assert len(notes) == 1, outcome.warnings
        for name in ("old.txt", "future.txt", "old dir"):
            assert name in notes[0]
        assert "now.txt" not in notes[0]
