"""rsync, SFTP and the local copier land the same tree from the same sync_dir, via `sbatchman sync`.

Users switch backends (rsync missing on a login node, a laptop without it); what ends up on the
cluster must not depend on that choice. One awkward tree (exec scripts, symlinks of every kind,
empty and nested folders, odd names, excluded files) goes through the real CLI three times.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sbatchman.backends import rsync_guard
from sbatchman.plan import FULL_FOLDER, NEWER_FILE
from tests.support.backends import three_ways
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import Node, digest, make_tree, snapshot, stamp

OLD, NEW = 1_000_000_000, 1_900_000_000  # 2001 and 2030

EXCLUDES = ["*.pyc", "build/", ".git"]


def awkward_tree(root: Path) -> Path:
    make_tree(
        root,
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
        },
        links={
            "latest": "src/model.py",
            "src/up": "..",
            "dangling": "no/such/file",
            "absolute": "/etc/hostname",
            "folder link": "src/deep",
        },
    )
    (root / "empty" / "nested" / "deeper").mkdir(parents=True)
    (root / "private").mkdir()
    (root / "private" / "key").write_text("k\n")
    (root / "private" / "key").chmod(0o600)
    (root / "private").chmod(0o750)
    (root / "tools").mkdir()
    (root / "tools" / "x").write_text("#!/bin/sh\n")
    (root / "tools" / "x").chmod(0o751)
    stamp = 1_700_000_000_000_000_000
    for i, path in enumerate(sorted(root.rglob("*"), reverse=True)):  # children first
        ns = stamp + i * 7_000_000_000 + 250_000_000  # fractional seconds on purpose
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
    return root


def test_rsync_sftp_and_local_land_identical_trees(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[0]
    local = awkward_tree(tmp_path / "project")
    root = cluster_roots[server.name]
    dests = {
        "rsync": root / "via rsync" / "proj",  # missing parents, a space
        "sftp": root / "via sftp" / "proj",
        "local": tmp_path / "via local" / "proj",
    }
    sync_dir = {"alias": "proj", "local": str(local)}
    config = write_config(
        tmp_path / "remotes.toml",
        [
            ssh_cluster(
                server,
                [{**sync_dir, "remote": str(dests["rsync"])}],
                name="with-rsync",
                transfer_backend="rsync",
            ),
            ssh_cluster(
                server,
                [{**sync_dir, "remote": str(dests["sftp"])}],
                name="with-sftp",
                transfer_backend="sftp",
            ),
            {
                "name": "on-this-machine",
                "transfer_backend": "sftp",  # a local cluster: the built-in copier
                "sync_dirs": [{**sync_dir, "remote": str(dests["local"])}],
            },
        ],
        common_excludes=EXCLUDES,
    )

    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    report = {t["cluster"]: t for t in json.loads(run.out)["targets"]}
    assert {c: t["backend"] for c, t in report.items()} == {
        "with-rsync": "rsync",
        "with-sftp": "sftp",
        "on-this-machine": "local",
    }
    sent = {c: sorted(f["path"] for f in t["files"]) for c, t in report.items()}
    assert sent["with-sftp"] == sent["with-rsync"] == sent["on-this-machine"]

    full = {
        name: snapshot(dest, folder_times=True, link_times=True) for name, dest in dests.items()
    }
    assert full["sftp"] == full["rsync"] == full["local"]  # folder and link mtimes included
    content_only = {
        name: snapshot(dest, folder_times=False, link_times=False) for name, dest in dests.items()
    }
    assert not any(name.endswith((".pyc", ".o", "HEAD")) for name in full["sftp"])
    expected = snapshot(local, folder_times=False, link_times=False)
    for excluded in (
        "src/model.pyc",
        "build",
        "build/out.o",
        ".git",
        ".git/HEAD",
        "logs/.sbatchmanignore",
        "logs/run.log",
    ):
        expected.pop(excluded)
    assert content_only["sftp"] == expected

    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert again.code == 0
    assert all(t["files_sent"] == 0 for t in json.loads(again.out)["targets"])
    assert snapshot(dests["sftp"], folder_times=True, link_times=True) == full["sftp"]


def put_obstacles(dest: Path, outside: Path) -> None:
    """What an earlier layout left on the cluster where the tree now has something else (all
    older than the tree: type changes win over them, as in rsync)."""
    make_tree(dest, {"was a file": "old\n", "kept/inside": "mine\n", "empty now": "old\n"})
    (dest / "was a link").symlink_to(outside)  # a folder goes here: never write through it
    (dest / "was a folder").mkdir()  # empty: a file goes here
    (dest / "src").mkdir()
    (dest / "src" / "model.py").mkdir()  # not empty: kept, a conflict
    (dest / "src" / "model.py" / "notes").write_text("n\n")
    for path in dest.rglob("*"):
        stamp(path, OLD)


def test_things_in_the_way_are_replaced_as_rsync_does(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[1]
    local = make_tree(
        tmp_path / "project",
        {
            "was a file/inner.txt": "i\n",
            "was a link/through.txt": "t\n",
            "was a folder": "now a file\n",
            "src/model.py": "print('model')\n",
            "ok.txt": "fine\n",
        },
    )
    (local / "empty now").mkdir()  # an empty folder where the cluster has a file
    (local / "empty now").chmod(0o751)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = cluster_roots[server.name]
    dests = {
        "rsync": root / "rsync",
        "sftp": root / "sftp",
        "local": tmp_path / "local-dest",
    }
    for dest in dests.values():
        put_obstacles(dest, outside)
    config = three_ways(server, local, dests, tmp_path / "remotes.toml")
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err  # the non-empty folder is kept: a conflict
    report = {t["cluster"]: t for t in json.loads(run.out)["targets"]}
    for target in report.values():
        assert target["status"] == "ok"
        assert target["conflicts"] == [{"path": "src/model.py", "why": FULL_FOLDER}]
        assert any("was a link: the link on the cluster is replaced" in w
                   for w in target["warnings"])  # fmt: skip
    assert list(outside.iterdir()) == []  # nothing was written through the link
    trees = {
        name: snapshot(dest, folder_times=False, link_times=False) for name, dest in dests.items()
    }
    assert trees["sftp"] == trees["rsync"] == trees["local"]
    landed = trees["sftp"]
    assert landed["was a link"].kind == "dir" and "was a link/through.txt" in landed
    assert landed["was a file"].kind == "dir" and "was a file/inner.txt" in landed
    assert landed["was a folder"].kind == "file"
    assert landed["src/model.py"].kind == "dir" and "src/model.py/notes" in landed
    assert "kept/inside" in landed and "ok.txt" in landed
    assert (landed["empty now"].kind, landed["empty now"].mode) == (
        "dir",
        0o751,
    )  # its own mode, as rsync gives it


@pytest.mark.parametrize("look", ["stat", "rsync --list-only"])
def test_a_newer_file_on_the_cluster_is_never_destroyed_by_a_type_change(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    look: str,
) -> None:
    """Issue 10 item 1: a local link or folder where the cluster has a newer regular file
    keeps the file (a conflict: summary, -v, --json, dry run); older things are replaced.
    The rsync backend looks with the cluster's stat, or (a cluster without GNU stat) with
    rsync --list-only."""
    if look != "stat":
        monkeypatch.setattr(rsync_guard, "STAT_COMMAND", "sbm-there-is-no-such-command")
    server = three_clusters[0]
    local = make_tree(
        tmp_path / "project",
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
    for path in local.rglob("*"):
        stamp(path, 1_700_000_000)
    root = cluster_roots[server.name]
    dests = {"rsync": root / "tc-r", "sftp": root / "tc-s", "local": tmp_path / "tc-l"}
    for dest in dests.values():
        make_tree(
            dest,
            {"notes.txt": "cluster notes\n", "results": "cluster results\n", "old.txt": "o\n"},
        )
        make_tree(dest, {"olddir": "old file\n", "full/keep.txt": "mine\n"})
        (dest / "emptyd").mkdir()
        (dest / "lnk").symlink_to("somewhere")
        for path in dest.rglob("*"):
            stamp(path, OLD)
        for name in ("notes.txt", "results", "lnk"):
            stamp(dest / name, NEW)
    config = three_ways(server, local, dests, tmp_path / "remotes.toml")
    before = {
        name: snapshot(dest, folder_times=True, link_times=True) for name, dest in dests.items()
    }
    conflicts = [
        {"path": "full", "why": FULL_FOLDER},
        {"path": "notes.txt", "why": NEWER_FILE},
        {"path": "results", "why": NEWER_FILE},
    ]

    dry = run_cli(capsys, "sync", "--config", str(config), "-n")
    assert dry.code == 0, dry.out + dry.err
    for cluster in ("r", "s", "l"):
        assert f"would keep {cluster}/proj: notes.txt (conflict: {NEWER_FILE})" in dry.out
        assert f"would keep {cluster}/proj: results (conflict: {NEWER_FILE})" in dry.out
        assert f"would keep {cluster}/proj: full (conflict: {FULL_FOLDER})" in dry.out
    assert {
        name: snapshot(dest, folder_times=True, link_times=True) for name, dest in dests.items()
    } == before

    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    report = {t["cluster"]: t for t in json.loads(run.out)["targets"]}
    for target in report.values():
        assert target["status"] == "ok", target
        assert sorted(target["conflicts"], key=lambda c: c["path"]) == conflicts, target
    trees = {
        name: snapshot(dest, folder_times=False, link_times=False) for name, dest in dests.items()
    }
    assert trees["sftp"] == trees["rsync"] == trees["local"]
    landed = trees["sftp"]
    assert landed["notes.txt"].kind == "file" and landed["notes.txt"].digest == digest(
        b"cluster notes\n"
    )
    assert landed["results"].kind == "file" and landed["results"].digest == digest(
        b"cluster results\n"
    )
    assert not any(path.startswith("results/") for path in landed)
    assert landed["full"].kind == "dir" and landed["full/keep.txt"].digest == digest(b"mine\n")
    assert landed["old.txt"] == Node("link", target="real.txt")  # older: replaced, as rsync does
    assert landed["olddir"].kind == "dir" and "olddir/in.txt" in landed
    assert landed["emptyd"].kind == "file" and landed["lnk"].kind == "file"  # a link is no file

    summary = run_cli(capsys, "sync", "--config", str(config), "-v")
    assert summary.code == 0
    for cluster in ("r", "s", "l"):
        assert f"{cluster}/proj: kept notes.txt (conflict: {NEWER_FILE})" in summary.out
        assert f"{cluster}/proj: conflict, kept results ({NEWER_FILE})" in summary.out


def test_a_looping_link_in_the_way_is_replaced_everywhere(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[2]
    local = make_tree(tmp_path / "project", {"a/x.txt": "x\n", "ok.txt": "ok\n"})
    root = cluster_roots[server.name]
    dests = {"rsync": root / "loop-r", "sftp": root / "loop-s", "local": tmp_path / "loop-l"}
    for dest in dests.values():
        dest.mkdir(parents=True)
        (dest / "a").symlink_to("a")  # listing it fails with ELOOP
    run = run_cli(capsys, "sync", "--config", str(three_ways(server, local, dests, tmp_path / "c")))
    assert run.code == 0, run.out + run.err
    trees = {
        name: snapshot(dest, folder_times=False, link_times=False) for name, dest in dests.items()
    }
    assert trees["sftp"] == trees["rsync"] == trees["local"]
    assert trees["local"]["a"].kind == "dir" and "a/x.txt" in trees["local"]


def test_a_failed_replacement_leaves_read_only_folders_read_only_everywhere(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file that cannot be removed (immutable) where the tree has a folder, inside a 0555
    folder: that entry fails, the rest lands, and the folder's mode comes back."""
    server = three_clusters[2]
    local = make_tree(tmp_path / "project", {"ro/new.txt": "n\n", "ro/blk/in.txt": "i\n"})
    (local / "ro").chmod(0o555)
    root = cluster_roots[server.name]
    dests = {"rsync": root / "imm-r", "sftp": root / "imm-s", "local": tmp_path / "imm-l"}
    locked: list[Path] = []
    try:
        for dest in dests.values():
            (dest / "ro").mkdir(parents=True)
            (dest / "ro" / "blk").write_text("in the way\n")
            chattr = subprocess.run(
                ["chattr", "+i", str(dest / "ro" / "blk")], capture_output=True, check=False
            )
            if chattr.returncode != 0:
                pytest.skip(f"chattr +i is not possible here: {chattr.stderr.decode().strip()}")
            locked.append(dest / "ro" / "blk")
            (dest / "ro").chmod(0o555)
        run = run_cli(
            capsys, "sync", "--config", str(three_ways(server, local, dests, tmp_path / "c"))
        )
    finally:
        for path in locked:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        (local / "ro").chmod(0o755)
    assert run.code == 1
    for name, dest in dests.items():
        assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555, name
        assert (dest / "ro" / "new.txt").read_text() == "n\n", name
        assert (dest / "ro" / "blk").read_text() == "in the way\n", name
