"""A long list that the config's excludes alone chose goes to rsync as those excludes, and rsync
walks the folder itself: the same set lands, and what was made since the walk is judged by
the same excludes. Where an ignore file took part, the names go instead. Real sshd and rsync;
only the size from which a list is long is lowered.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from sbatchman.backends import rsync_guard, rsync_names
from sbatchman.selection.walk import Rule, Selection, select
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sides import Side, awkward_tree
from tests.support.sshd import SshServer
from tests.support.trees import make_tree, snapshot

EXCLUDES = ["*.pyc", "build/", ".git"]
RULES = tuple(Rule(p, "config") for p in EXCLUDES)


@pytest.fixture
def long_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every list is long: it goes as rules where it may (else as arguments), whatever the
    cluster has."""
    monkeypatch.setattr(rsync_names, "BY_ARGUMENT_FROM", 0)
    monkeypatch.setattr(rsync_names, "WALKS", True)


def _rules(root: Path, *, gitignore: bool = False) -> list[str] | None:
    return rsync_names.walk_rules(select(root, RULES, gitignore=gitignore), [])  # nothing there


def test_the_excludes_stand_for_the_walk_only_where_they_alone_chose(
    tmp_path: Path, long_lists: None
) -> None:
    tree = make_tree(tmp_path / "p", {"a.py": "a", "b.pyc": "b", "build/o": "o", "sub/c.py": "c"})
    assert _rules(tree) == [
        "--exclude=*.pyc",
        "--exclude=build/",
        "--exclude=.git",
        "--exclude=.sbatchmanignore",  # the built-in rule: a new one made meanwhile stays here
    ]
    (tree / "sub" / ".sbatchmanignore").write_text("# nothing but a comment\n")
    assert _rules(tree) is not None  # an ignore file without a rule decides nothing
    (tree / "sub" / ".sbatchmanignore").write_text("*.tmp\n")
    assert _rules(tree) is None  # a git-style rule: only the names say what goes


def test_git_s_rules_from_above_the_folder_take_the_walk_away(
    tmp_path: Path, long_lists: None
) -> None:
    repo = make_tree(tmp_path / "repo", {".git/HEAD": "ref: refs/heads/main\n", "p/a.py": "a"})
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert _rules(repo / "p", gitignore=True) == [
        *(f"--exclude={p}" for p in EXCLUDES),
        "--exclude=.git",  # respect_gitignore's own rule
        "--exclude=.sbatchmanignore",
    ]
    (repo / ".gitignore").write_text("*.log\n")
    assert _rules(repo / "p", gitignore=True) is None


def test_a_watch_s_changed_files_and_kept_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_tree(tmp_path / "p", {"a.py": "a", "odd/we*rd[1]": "w"})
    selection = select(tree, RULES)
    changed = replace(selection, changed=frozenset({"a.py"}))
    assert rsync_names.walk_rules(changed, []) is None  # only those files go
    kept = rsync_names.walk_rules(selection, ["odd/we*rd[1]", "plain dir"])
    assert kept is not None
    assert kept[-2:] == ["--exclude=/odd/we\\*rd\\[1]", "--exclude=/plain dir"]
    monkeypatch.setattr(rsync_names, "WALKS", False)
    assert rsync_names.walk_rules(selection, []) is None


def test_rsync_walks_where_the_cluster_lacks_most_of_the_folders(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "p", {f"d{i}/f.py": "f" for i in range(4)})
    selection = select(tree, RULES)
    assert rsync_names.walk_rules(selection, []) is not None  # a first push: rsync walks
    assert rsync_names.walk_rules(selection, [], {"d0"}) is not None
    assert rsync_names.walk_rules(selection, [], {"d0", "d1"}) is None  # an update: names
    flat = select(make_tree(tmp_path / "flat", {"a.py": "a"}), RULES)
    assert rsync_names.walk_rules(flat, []) is None  # no folder: walking gains nothing


def _config(tmp_path: Path, server: SshServer, source: Path, dest: Path) -> Path:
    cluster = ssh_cluster(server, [{"alias": "p", "local": str(source), "remote": str(dest)}])
    return write_config(
        tmp_path / "c.toml", [cluster], transfer_backend="rsync", sync_excludes=EXCLUDES
    )


@pytest.mark.ssh
def test_an_awkward_tree_lands_whole_with_its_times(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    long_lists: None,
) -> None:
    source = awkward_tree(Side(tmp_path / "p"))
    os.remove(source.path("logs/.sbatchmanignore"))  # so the config's excludes alone choose
    assert select(source.root, RULES).rules is not None
    server = three_clusters[0]
    dest = Side(cluster_roots[server.name] / "walked")
    config = _config(tmp_path, server, source.root, dest.root)

    first = run_cli(capsys, "sync", "--config", str(config))
    assert first.code == 0, first.out + first.err
    expected = source.snapshot(times=True)
    for excluded in ("src/model.pyc", "build", "build/out.o", ".git", ".git/HEAD"):
        expected.pop(excluded)
    assert dest.snapshot(times=True) == expected
    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert again.code == 0, again.err
    assert '"files_sent": 0' in again.out


@pytest.mark.ssh
def test_what_was_made_since_the_walk_is_judged_by_the_same_excludes(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    long_lists: None,
) -> None:
    source = make_tree(tmp_path / "p", {"a.py": "a\n"})
    server = three_clusters[0]
    dest = cluster_roots[server.name] / "late"
    config = _config(tmp_path, server, source, dest)
    real_guard = rsync_guard.guard

    def guard_then_save(selection: Selection, *rest: object) -> rsync_guard.Guarded:
        """Files saved after the walk, before rsync starts (the guard runs in between)."""
        make_tree(source, {"late.py": "l\n", "late.pyc": "x", "build/late.o": "x"})
        make_tree(source, {".git/HEAD": "x", "sub/.sbatchmanignore": "*.py\n", "sub/s.py": "s"})
        return real_guard(selection, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(rsync_guard, "guard", guard_then_save)
    done = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert done.code == 0, done.out + done.err
    # a new file goes as it would with plain rsync; nothing an exclude names ever does (an
    # ignore file made meanwhile is read by the next sync, as with a walk before it)
    assert sorted(snapshot(dest)) == ["a.py", "late.py", "sub", "sub/s.py"]
    assert '"files_sent": 3' in done.out  # counts say what landed, the late ones too


@pytest.mark.ssh
@pytest.mark.parametrize("walks", [True, False], ids=["rules", "names"])
def test_with_an_ignore_file_the_names_go_and_a_late_file_waits(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    long_lists: None,
    walks: bool,
) -> None:
    files = {"a.py": "a\n", "x.tmp": "t"}
    if not walks:
        files[".sbatchmanignore"] = "*.tmp\n"
    source = make_tree(tmp_path / "p", files)
    server = three_clusters[0]
    dest = cluster_roots[server.name] / "ignored"
    config = _config(tmp_path, server, source, dest)
    real_guard = rsync_guard.guard

    def guard_then_save(selection: Selection, *rest: object) -> rsync_guard.Guarded:
        make_tree(source, {"late.py": "l\n"})
        return real_guard(selection, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(rsync_guard, "guard", guard_then_save)
    done = run_cli(capsys, "sync", "--config", str(config))
    assert done.code == 0, done.out + done.err
    landed = sorted(snapshot(dest))
    assert landed == (["a.py", "late.py", "x.tmp"] if walks else ["a.py"])


@pytest.mark.ssh
def test_a_file_deleted_since_the_walk_is_a_warning_not_a_failure(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    long_lists: None,
) -> None:
    source = make_tree(tmp_path / "p", {"a.py": "a\n", "gone.py": "g\n", "old/b.py": "b\n"})
    server = three_clusters[0]
    dest = cluster_roots[server.name] / "gone"
    config = _config(tmp_path, server, source, dest)
    real_guard = rsync_guard.guard

    def guard_then_delete(selection: Selection, *rest: object) -> rsync_guard.Guarded:
        assert selection.rules is not None  # rsync walks
        os.remove(source / "gone.py")
        os.remove(source / "old" / "b.py")
        os.rmdir(source / "old")
        return real_guard(selection, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(rsync_guard, "guard", guard_then_delete)
    done = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert done.code == 0, done.out + done.err
    assert sorted(snapshot(dest)) == ["a.py"]
    warnings = json.loads(done.out)["targets"][0]["warnings"]
    assert warnings == [
        "gone.py: vanished before it was sent",
        "old: vanished before it was sent",
        "old/b.py: vanished before it was sent",
    ]
