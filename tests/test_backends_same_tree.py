"""What every backend promises about the destination tree, stated once and run for each.

Users switch backends (rsync missing on a login node, a laptop without it); what ends up on the
cluster, and what a fetch brings back here, must not depend on that choice. Each test below is
one promise about a source tree and a destination tree, run through the real CLI by the local
copier, rsync over a real sshd and SFTP over a real sshd (the `sync` fixture's parameter), in
both directions (the `direction` fixture: push the project, or fetch the cluster's folder).
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from sbatchman.backends import rsync_guard, rsync_names
from sbatchman.plan import FULL_FOLDER, NEWER_FILE
from tests.support.sides import ALIAS, CLUSTER, Report, Side, Sync, awkward_tree
from tests.support.sshd import SshServer
from tests.support.trees import Node, digest, stamp

OLD, NEW = 1_000_000_000, 1_900_000_000  # 2001 and 2030
TARGET = f"{CLUSTER}/{ALIAS}"

EXCLUDES = ["*.pyc", "build/", ".git"]
BY_EXCLUDES = ("src/model.pyc", "build", "build/out.o", ".git", ".git/HEAD")
EXCLUDED = {  # a push also by the tree's own logs/.sbatchmanignore, never read on a cluster
    "fetch": BY_EXCLUDES,
    "push": (*BY_EXCLUDES, "logs/.sbatchmanignore", "logs/run.log"),
}


@pytest.fixture(params=["push", "fetch"])
def direction(request: pytest.FixtureRequest) -> str:
    """Push the project to the cluster, or fetch the cluster's folder (ignore files are not
    read on the cluster, so a fetch brings logs/run.log)."""
    return str(request.param)


@pytest.fixture(
    params=[
        "local",
        pytest.param("rsync", marks=pytest.mark.ssh),
        pytest.param("rsync, names as arguments", marks=pytest.mark.ssh),
        pytest.param("rsync, walking the folder", marks=pytest.mark.ssh),
        pytest.param("sftp", marks=pytest.mark.ssh),
    ]
)
def sync(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    direction: str,
) -> Sync:
    """A fresh source tree and a not yet existing destination (missing parents, a space); in
    a fetch the source is on the cluster and the destination here."""
    backend: str = request.param
    if backend == "rsync, names as arguments":  # what a long list takes, cut into many rsyncs
        monkeypatch.setattr(rsync_names, "BY_ARGUMENT_FROM", 0)
        monkeypatch.setattr(rsync_names, "SHARE", 200 / rsync_names.arg_max())
        monkeypatch.setattr(rsync_names, "WALKS", False)
        backend = "rsync"
    if backend == "rsync, walking the folder":  # a long list the config's excludes alone chose
        monkeypatch.setattr(rsync_names, "BY_ARGUMENT_FROM", 0)
        monkeypatch.setattr(rsync_names, "WALKS", True)
        backend = "rsync"
    server: SshServer | None = None
    if backend == "local":
        remote = tmp_path / "via local" / "proj"
    else:
        server = request.getfixturevalue("three_clusters")[0]
        root = request.getfixturevalue("cluster_roots")[server.name]
        remote = root / f"via {backend}" / "proj"
    local = tmp_path / "project"
    source, dest = (remote, tmp_path / "results here" / "proj") if direction == "fetch" else (
        local, remote)  # fmt: skip
    source.mkdir(parents=True)
    config = tmp_path / "sync.toml"
    return Sync(backend, Side(source), Side(dest), config, server, capsys, direction)


def why(sync: Sync, words: str) -> str:
    """A push's words for a conflict or warning, which name the cluster; a fetch's are the
    report's to choose for this machine, so only what precedes them is pinned here."""
    return "" if sync.fetching else words


def conflicts(report: Report, sync: Sync) -> list[tuple[str, str]]:
    got = sorted(report.target["conflicts"], key=lambda c: str(c["path"]))
    return [(c["path"], why(sync, c["why"])) for c in got]


def without_excluded(tree: dict[str, Node], direction: str) -> dict[str, Node]:
    for excluded in EXCLUDED[direction]:
        tree.pop(excluded)
    return tree


def test_the_same_tree_lands_and_a_second_run_sends_nothing(sync: Sync) -> None:
    awkward_tree(sync.source)

    run = sync.run("--json", excludes=EXCLUDES)
    assert run.code == 0, run.out + run.run.err
    expected_full = without_excluded(sync.source.snapshot(times=True), sync.direction)
    full = sync.dest.snapshot(times=True)
    assert full == expected_full  # folder and link mtimes included
    assert not any(name.endswith((".pyc", ".o", "HEAD")) for name in full)
    assert sync.dest.snapshot() == without_excluded(sync.source.snapshot(), sync.direction)
    assert run.sent() == sorted(p for p, node in expected_full.items() if node.kind == "file")
    assert sync.dest.temporaries() == []

    again = sync.run("--json", excludes=EXCLUDES)
    assert again.code == 0
    assert again.target["files_sent"] == 0
    assert sync.dest.snapshot(times=True) == full


def test_modes_times_and_exec_bits_are_kept(sync: Sync) -> None:
    awkward_tree(sync.source)
    assert sync.run(excludes=EXCLUDES).code == 0
    landed, source = sync.dest.snapshot(), sync.source.snapshot()
    assert landed["run.sh"].mode == 0o755 and landed["tools/x"].mode == 0o751
    assert landed["private"].mode == 0o750 and landed["private/key"].mode == 0o600
    for path in ("run.sh", "src/deep/er/est/util.py", "empty file"):
        assert landed[path].mtime == source[path].mtime, path  # the whole second
    assert landed["latest"] == Node("link", target="src/model.py")
    assert landed["folder link"] == Node("link", target="src/deep")  # a link, not a copy


def test_a_dry_run_writes_nothing_and_says_what_it_would_send(sync: Sync) -> None:
    sync.source.write({"a.txt": "a\n", "sub/b.sh": "#!/bin/sh\n"}, links={"l": "a.txt"})
    dry = sync.run("--json", "-n")
    assert dry.code == 0, dry.out + dry.run.err
    assert not sync.dest.path().parent.exists()  # not even the missing parent folder
    assert dry.sent() == ["a.txt", "sub/b.sh"]  # files; a link is no file to send
    assert dry.target["files_sent"] == 2
    assert dry.target["bytes_sent"] == len("a\n") + len("#!/bin/sh\n")


def test_counts_are_what_was_sent(sync: Sync) -> None:
    sync.source.write({"a.txt": "a" * 1000, "b.txt": "b" * 10, "sub/c.txt": ""})
    first = sync.run("--json")
    assert first.code == 0, first.out + first.run.err
    assert first.sent() == ["a.txt", "b.txt", "sub/c.txt"]
    assert first.target["files_sent"] == 3
    assert first.target["bytes_sent"] == 1010, first.target

    sync.source.write({"b.txt": "changed\n"})
    again = sync.run("--json")
    assert again.sent() == ["b.txt"] and again.target["files_sent"] == 1
    assert again.target["bytes_sent"] == len("changed\n")
    assert sync.dest.read("b.txt") == b"changed\n"


def test_a_newer_file_on_the_destination_is_kept(sync: Sync) -> None:
    sync.source.write({"a.txt": "from the source\n", "b.txt": "b\n"})
    sync.source.stamp_all(OLD)
    sync.dest.write({"a.txt": "edited on the cluster\n"})
    sync.dest.stamp_all(NEW)
    run = sync.run("--json")
    assert run.code == 0, run.out + run.run.err
    assert run.sent() == ["b.txt"]
    assert run.kept_newer(sync.direction) == ["a.txt"]
    assert sync.dest.read("a.txt") == b"edited on the cluster\n"


def put_obstacles(dest: Side, outside: Path) -> None:
    """What an earlier layout left on the cluster where the tree now has something else (all
    older than the tree: type changes win over them, as in rsync)."""
    dest.write(
        {
            "was a file": "old\n",
            "kept/inside": "mine\n",
            "empty now": "old\n",
            "was a folder/": "",  # empty: a file goes here
            "src/model.py/notes": "n\n",  # a folder, not empty: kept, a conflict
        },
        links={"was a link": str(outside)},  # a folder goes here: never write through it
    )
    dest.stamp_all(OLD)


def test_things_in_the_way_are_replaced_as_rsync_does(sync: Sync, tmp_path: Path) -> None:
    sync.source.write(
        {
            "was a file/inner.txt": "i\n",
            "was a link/through.txt": "t\n",
            "was a folder": "now a file\n",
            "src/model.py": "print('model')\n",
            "ok.txt": "fine\n",
            "empty now/": "",  # an empty folder where the cluster has a file
        }
    )
    sync.source.path("empty now").chmod(0o751)
    outside = tmp_path / "outside"
    outside.mkdir()
    put_obstacles(sync.dest, outside)
    before = sync.dest.snapshot()

    run = sync.run("--json")
    assert run.code == 0, run.out + run.run.err  # the non-empty folder is kept: a conflict
    assert run.target["status"] == "ok"
    assert conflicts(run, sync) == [("src/model.py", why(sync, FULL_FOLDER))]
    replaced = f"was a link: {why(sync, 'the link on the cluster is replaced')}"
    assert any(replaced in w for w in run.target["warnings"]), run.target
    assert list(outside.iterdir()) == []  # nothing was written through the link
    landed = sync.dest.snapshot()
    kept = ("kept", "kept/inside", "src/model.py", "src/model.py/notes")
    source = sync.source.snapshot()
    del source["src/model.py"]
    assert landed == source | {path: before[path] for path in kept}
    assert landed["was a link"].kind == "dir" and "was a link/through.txt" in landed
    assert landed["was a file"].kind == "dir" and "was a file/inner.txt" in landed
    assert landed["was a folder"].kind == "file"
    assert landed["src/model.py"].kind == "dir" and "src/model.py/notes" in landed
    assert "kept/inside" in landed and "ok.txt" in landed
    assert (landed["empty now"].kind, landed["empty now"].mode) == ("dir", 0o751)  # as rsync
    assert sync.dest.temporaries() == []


@pytest.mark.parametrize("look", ["stat", "rsync --list-only"])
def test_a_newer_file_on_the_cluster_is_never_destroyed_by_a_type_change(
    sync: Sync, monkeypatch: pytest.MonkeyPatch, look: str
) -> None:
    """Issue 10 item 1: a local link or folder where the cluster has a newer regular file
    keeps the file (a conflict: summary, -v, --json, dry run); older things are replaced.
    The rsync backend looks with the cluster's stat, or (a cluster without GNU stat) with
    rsync --list-only. A fetch is the mirror: a newer file here survives a cluster's link or
    folder."""
    if look != "stat":
        if sync.backend != "rsync" or sync.fetching:  # a fetch's rsync looks here, with lstat
            pytest.skip("only the rsync backend has a second way to look")
        monkeypatch.setattr(rsync_guard, "STAT_COMMAND", "sbm-there-is-no-such-command")
    sync.source.write(
        {
            "real.txt": "real\n",
            "results/a.txt": "a\n",
            "results/deep/b.txt": "b\n",
            "olddir/in.txt": "in\n",
            "full": "a file\n",
            "emptyd": "a file\n",
            "lnk": "a file\n",
            "ok.txt": "ok\n",
        },
        links={"notes.txt": "real.txt", "old.txt": "real.txt"},
    )
    sync.source.stamp_all(1_700_000_000)
    sync.dest.write(
        {
            "notes.txt": "cluster notes\n",
            "results": "cluster results\n",
            "old.txt": "o\n",
            "olddir": "old file\n",
            "full/keep.txt": "mine\n",
            "emptyd/": "",
        },
        links={"lnk": "somewhere"},
    )
    sync.dest.stamp_all(OLD)
    for name in ("notes.txt", "results", "lnk"):
        stamp(sync.dest.path(name), NEW)
    before = sync.dest.snapshot(times=True)
    cluster_had = sync.dest.snapshot()
    newer, full = why(sync, NEWER_FILE), why(sync, FULL_FOLDER)
    expected = [("full", full), ("notes.txt", newer), ("results", newer)]

    dry = sync.run("-n")
    assert dry.code == 0, dry.out + dry.run.err
    assert f"would keep {TARGET}: notes.txt (conflict: {newer}" in dry.out
    assert f"would keep {TARGET}: results (conflict: {newer}" in dry.out
    assert f"would keep {TARGET}: full (conflict: {full}" in dry.out
    assert sync.dest.snapshot(times=True) == before

    run = sync.run("--json")
    assert run.code == 0, run.out + run.run.err
    assert run.target["status"] == "ok", run.target
    assert conflicts(run, sync) == expected, run.target
    landed = sync.dest.snapshot()
    kept = {path: cluster_had[path] for path in ("notes.txt", "results", "full", "full/keep.txt")}
    source = {p: n for p, n in sync.source.snapshot().items() if not p.startswith("results/")}
    assert landed == source | kept  # the tree, but for what the cluster keeps
    assert landed["notes.txt"].kind == "file"
    assert landed["notes.txt"].digest == digest("cluster notes\n")
    assert landed["results"].kind == "file"
    assert landed["results"].digest == digest("cluster results\n")
    assert not any(path.startswith("results/") for path in landed)
    assert landed["full"].kind == "dir" and landed["full/keep.txt"].digest == digest("mine\n")
    assert landed["old.txt"] == Node("link", target="real.txt")  # older: replaced, as rsync does
    assert landed["olddir"].kind == "dir" and "olddir/in.txt" in landed
    assert landed["emptyd"].kind == "file" and landed["lnk"].kind == "file"  # a link is no file

    summary = sync.run("-v")
    assert summary.code == 0
    assert f"{TARGET}: kept notes.txt (conflict: {newer}" in summary.out
    assert f"{TARGET}: conflict, kept results ({newer}" in summary.out


def test_a_looping_link_in_the_way_is_replaced(sync: Sync) -> None:
    sync.source.write({"a/x.txt": "x\n", "ok.txt": "ok\n"})
    sync.dest.path().mkdir(parents=True)
    sync.dest.path("a").symlink_to("a")  # listing it fails with ELOOP
    run = sync.run()
    assert run.code == 0, run.out + run.run.err
    landed = sync.dest.snapshot()
    assert landed == sync.source.snapshot()
    assert landed["a"].kind == "dir" and "a/x.txt" in landed


def test_a_failed_replacement_leaves_read_only_folders_read_only(sync: Sync) -> None:
    """A file that cannot be removed (immutable) where the tree has a folder, inside a 0555
    folder: that entry fails, the rest lands, and the folder's mode comes back."""
    sync.source.write({"ro/new.txt": "n\n", "ro/blk/in.txt": "i\n"})
    sync.source.path("ro").chmod(0o555)
    blocker = sync.dest.write({"ro/blk": "in the way\n"}).path("ro/blk")
    chattr = subprocess.run(["chattr", "+i", str(blocker)], capture_output=True, check=False)
    try:
        if chattr.returncode != 0:
            pytest.skip(f"chattr +i is not possible here: {chattr.stderr.decode().strip()}")
        sync.dest.path("ro").chmod(0o555)
        run = sync.run()
    finally:
        subprocess.run(["chattr", "-i", str(blocker)], check=False)
        sync.source.path("ro").chmod(0o755)
    assert run.code == 1
    assert "ro/blk" in run.out, run.out + run.run.err  # the entry that failed is named
    assert stat.S_IMODE(sync.dest.path("ro").stat().st_mode) == 0o555
    assert sync.dest.read("ro/new.txt") == b"n\n"
    assert sync.dest.read("ro/blk") == b"in the way\n"
