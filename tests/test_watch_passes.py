"""What one watch pass pushes for a batch of changed paths (no network: the pure parts)."""

from __future__ import annotations

from pathlib import Path

from sbatchman.config import SyncDir
from sbatchman.model import Target
from sbatchman.plan import DestStat, decide
from sbatchman.selection.rules import Rule
from sbatchman.selection.walk import Entry
from sbatchman.watch import FULL_FROM, _changed_files
from tests.support.trees import make_tree


def _target(root: Path, *excludes: str) -> Target:
    from sbatchman.config import Cluster

    sync_dir = SyncDir("app", root, "app", (), None, "clusters[0].sync_dirs[0]")
    cluster = Cluster(
        "c", None, None, None, None, None, (), (), (), None, None, (sync_dir,), (), "clusters[0]"
    )
    return Target(cluster, sync_dir, "rsync", tuple(Rule(e, "test") for e in excludes), False)


def test_a_save_in_the_second_of_the_last_push_still_goes() -> None:
    entry = Entry("a.py", "file", 2, 1_700_000_000_600_000_000, 0o644)
    there = DestStat("file", 2, 1_700_000_000, 0o644)
    assert decide(entry, there) is None  # the quick check alone cannot see it
    action = decide(entry, there, changed=True)
    assert action is not None and (action.op, action.reason) == ("send", "changed")
    newer = DestStat("file", 2, 1_700_000_001, 0o644)
    assert decide(entry, newer, changed=True).op == "skip-newer"  # type: ignore[union-attr]


def test_changed_files_keep_the_rules_and_bring_their_folders(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "p", {"src/deep/a.py": "a", "run.log": "x", "b.py": "b"})
    selection = _changed_files(
        _target(root, "*.log"), ["src/deep/a.py", "run.log", "b.py", "gone.py"]
    )
    assert selection is not None
    assert [e.path for e in selection.entries] == ["b.py", "src", "src/deep", "src/deep/a.py"]
    assert selection.changed == {"b.py", "src/deep/a.py"}


def test_what_only_a_full_pass_can_judge(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "p", {"new/f.py": "f", ".sbatchmanignore": "*.tmp\n"})
    target = _target(root)
    assert _changed_files(target, ["new"]) is None  # a folder: its contents too
    assert _changed_files(target, [".sbatchmanignore"]) is None  # the selection changed
    many = [f"f{i}.py" for i in range(FULL_FROM + 1)]
    assert _changed_files(target, many) is None
