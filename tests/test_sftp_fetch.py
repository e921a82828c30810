"""`sbatchman fetch -b sftp` against a real OpenSSH server: what arrives, what never does.

Each test pins one promise of issue 12 on the real sftp-server: a tree arrives exactly (modes,
exec bits, mtimes, links as links, odd names), a second fetch brings nothing, excludes are
never listed nor fetched, a newer local file is kept, a local link in the way is never written
through, a file still being written never lands half, a missing remote folder fails its target
alone, a dry run creates nothing. Killed runs are in test_sftp_fetch_killed.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from sbatchman.backends.sftp.remote_tree import RemoteTree
from sbatchman.backends.sftp.session import SftpSession, open_sftp
from sbatchman.config import load
from sbatchman.fetch import fetch
from sbatchman.model import Events, Request, Target, exit_code
from sbatchman.plan import PART_SUFFIX
from sbatchman.selection.rules import Rule
from sbatchman.selection.tree import Found, select_tree
from sbatchman.ssh.endpoint import Endpoint
from tests.support.project import OnPhase, Recorder, run_cli, ssh_cluster, write_config
from tests.support.sftpkit import BATCH, T0, set_mtime
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree, snapshot


def fetch_config(
    path: Path, server: SshServer, dirs: list[dict[str, object]], **cluster: object
) -> Path:
    return write_config(path, [ssh_cluster(server, [], fetch_dirs=dirs, **cluster)])


def fetch_cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, dict]:
    run = run_cli(capsys, "fetch", "--config", str(config), "-b", "sftp", "--json", *args)
    return run.code, json.loads(run.out)


def cluster_tree(root: Path) -> Path:
    """Every kind of entry, odd names, fixed times, a private folder and a 3 MiB file."""
    make_tree(
        root,
        {
            "run.sh": "#!/bin/sh\necho run\n",
            "out/deep/er/log.txt": "log\n",
            'with space/it\'s "quoted".txt': "q\n",
            "new\nline.txt": "n\n",
            "unicodé/ünï.txt": "u\n",
            **{f"many/f{i:03d}.txt": f"{i}\n" * (i % 5) for i in range(150)},
            "empty/nested/": "",
        },
        links={"latest": "out/deep/er/log.txt", "etc": "/etc", "dangling": "no/such"},
    )
    (root / os.fsdecode(b"bad\xff.txt")).write_bytes(b"not utf-8\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "private").mkdir()
    (root / "private" / "key").write_text("k\n")
    (root / "private" / "key").chmod(0o600)
    (root / "private").chmod(0o750)
    for i, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        set_mtime(path, T0 + i * 1_000_000_000)
    return root


def test_a_tree_arrives_exactly_and_a_second_fetch_brings_nothing(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = cluster_tree(cluster_roots[server.name] / "results")
    local = tmp_path / "here" / "results"
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "r", "remote": str(remote), "local": str(local)}]
    )
    code, report = fetch_cli(capsys, config)
    assert code == 0, report
    (target,) = report["targets"]
    assert target["status"] == "ok"
    assert snapshot(local) == snapshot(remote)
    assert (local / "etc").is_symlink() and os.readlink(local / "etc") == "/etc"
    assert os.stat(local / "run.sh").st_mode & 0o111
    assert target["files_sent"] == sum(
        1 for p in remote.rglob("*") if p.is_file() and not p.is_symlink()
    )
    code, report = fetch_cli(capsys, config)
    assert code == 0
    assert report["targets"][0]["files_sent"] == 0
    assert snapshot(local) == snapshot(remote)


def test_excluded_names_paths_and_folders_are_never_fetched(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = make_tree(
        cluster_roots[server.name] / "job",
        {
            "keep.txt": "k\n",
            "model.ckpt": "big\n",
            "sub/model.ckpt": "big\n",
            "sub/scratch/kept.txt": "deeper, so not anchored\n",
            "scratch/gone.txt": "x\n",
            "sub/tmp": "a file named tmp: dir-only pattern keeps it\n",
            "tmp/gone.txt": "x\n",
            "locked/secret.txt": "x\n",
        },
    )
    local = tmp_path / "job"
    dirs = [{"alias": "j", "remote": str(remote), "local": str(local), "excludes": ["locked/"]}]
    config = fetch_config(tmp_path / "c.toml", server, dirs, fetch_excludes=["/scratch/"])
    code, report = fetch_cli(capsys, config, "-e", "*.ckpt", "-e", "tmp/")
    assert code == 0, report
    assert sorted(snapshot(local)) == ["keep.txt", "sub", "sub/scratch", "sub/scratch/kept.txt",
                                       "sub/tmp"]  # fmt: skip


def test_excluded_folders_are_never_listed_on_the_cluster(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """The lister is asked for every folder a fetch lists: an excluded one is never among them
    (its million files would cost a listing each), nor anything below it."""
    server = three_clusters[0]
    remote = make_tree(
        cluster_roots[server.name] / "job",
        {"a/keep.txt": "k\n", "a/.git/objects/x": "x\n", "results/r1/x": "x\n", "b/c/d": "d\n"},
    )
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "j", "remote": str(remote), "local": "x"}]
    )
    loaded = load(config)
    session = open_sftp(Endpoint.of(loaded.clusters[0], loaded.settings, BATCH))
    assert isinstance(session, SftpSession)
    asked: list[str] = []
    wire = session.pool.take()
    try:
        tree = RemoteTree(wire, str(remote))

        def lister(folders: Sequence[str]) -> Mapping[str, Sequence[Found] | str]:
            asked.extend(folders)
            return tree(folders)

        rules = (Rule(".git", "test"), Rule("/results/", "test"))
        selection = select_tree(remote, tree.open(), lister, rules)
    finally:
        session.pool.give_back(wire, True)
        session.close()
    assert sorted(asked) == ["", "a", "b", "b/c"]
    assert [e.path for e in selection.entries] == ["a", "a/keep.txt", "b", "b/c", "b/c/d"]


def test_a_newer_local_file_is_kept_and_reported(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "r", {"notes.txt": "cluster\n", "a": "a\n"})
    set_mtime(remote / "notes.txt", T0)
    local = make_tree(tmp_path / "r", {"notes.txt": "edited on the laptop\n"})
    set_mtime(local / "notes.txt", T0 + 5_000_000_000)
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "r", "remote": str(remote), "local": str(local)}]
    )
    code, report = fetch_cli(capsys, config)
    assert code == 0
    assert report["targets"][0]["skipped_newer_local"] == ["notes.txt"]
    assert [f["path"] for f in report["targets"][0]["files"]] == ["a"]
    assert (local / "notes.txt").read_text() == "edited on the laptop\n"


def test_a_local_link_in_the_way_is_never_written_through(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "r", {"out/log.txt": "log\n", "f": "f\n"})
    outside = make_tree(tmp_path / "outside", {})
    local = tmp_path / "r"
    local.mkdir()
    (local / "out").symlink_to(outside)
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "r", "remote": str(remote), "local": str(local)}]
    )
    code, report = fetch_cli(capsys, config)
    assert code == 0, report
    assert list(outside.iterdir()) == []
    assert not (local / "out").is_symlink()
    assert (local / "out" / "log.txt").read_text() == "log\n"


class Growing(OnPhase):
    """Once the big file's first bytes have arrived, a writer on the cluster appends to it."""

    def __init__(self, victim: Path) -> None:
        super().__init__()
        self.victim = victim
        self.appended = threading.Event()

    def events(self, target: Target) -> Events:
        grower = self

        class Hooked(Recorder):
            def progress(self, nbytes: int) -> None:
                super().progress(nbytes)
                if not grower.appended.is_set():
                    grower.appended.set()
                    writer = threading.Thread(target=grower.append)
                    writer.start()
                    writer.join()  # the read goes on only once the file has grown

        return Hooked()

    def append(self) -> None:
        with self.victim.open("ab") as out:
            out.write(b"more output\n" * 1000)


def test_a_file_growing_on_the_cluster_warns_and_never_lands_half(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "r", {"small.txt": "s\n"})
    (remote / "job.log").write_bytes(os.urandom(8 << 20))
    local = tmp_path / "r"
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "r", "remote": str(remote), "local": str(local)}]
    )
    reporter = Growing(remote / "job.log")
    (result,) = fetch(load(config), Request(backend="sftp"), reporter)
    assert reporter.appended.is_set()
    assert exit_code([result]) == 0, result.error
    assert [w for w in result.warnings if "job.log" in w] == [
        w for w in result.warnings if "still being written on the cluster" in w
    ]
    assert len(result.warnings) == 1
    assert sorted(p.name for p in local.iterdir()) == ["small.txt"]  # no half, no temporary
    (again,) = fetch(load(config), Request(backend="sftp"), OnPhase())
    assert again.status == "ok" and not again.warnings
    assert (local / "job.log").read_bytes() == (remote / "job.log").read_bytes()


def test_a_missing_remote_folder_fails_that_target_alone(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    there = make_tree(cluster_roots[server.name] / "there", {"a": "a\n"})
    missing = cluster_roots[server.name] / "missing"
    dirs = [
        {"alias": "gone", "remote": str(missing), "local": str(tmp_path / "gone")},
        {"alias": "ok", "remote": str(there), "local": str(tmp_path / "ok")},
    ]
    config = fetch_config(tmp_path / "c.toml", server, dirs)
    run = run_cli(capsys, "fetch", "--config", str(config), "-b", "sftp")
    assert run.code == 1
    assert sum("does not exist" in line for line in run.out.splitlines()) == 1
    assert "Traceback" not in run.err + run.out
    code, report = fetch_cli(capsys, config)
    assert code == 1
    gone, ok = report["targets"]
    assert (gone["status"], gone["error"]) == (
        "failed",
        f"the remote folder {missing} does not exist",
    )
    assert ok["status"] == "ok"
    assert (tmp_path / "ok" / "a").read_text() == "a\n"
    assert not (tmp_path / "gone").exists()


def test_a_remote_file_in_place_of_the_folder_says_so(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    file = cluster_roots[server.name] / "file"
    file.write_text("x\n")
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "f", "remote": str(file), "local": str(tmp_path)}]
    )
    code, report = fetch_cli(capsys, config)
    assert code == 1
    assert report["targets"][0]["error"].startswith(f"the remote path {file} is a file")


def test_a_dry_run_lists_what_would_come_and_creates_nothing(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "r", {"a": "a\n", "d/b": "b\n"})
    local = tmp_path / "deep" / "r"
    config = fetch_config(
        tmp_path / "c.toml", server, [{"alias": "r", "remote": str(remote), "local": str(local)}]
    )
    code, report = fetch_cli(capsys, config, "-n")
    assert code == 0
    assert sorted(f["path"] for f in report["targets"][0]["files"]) == ["a", "d/b"]
    assert not (tmp_path / "deep").exists()
    code, report = fetch_cli(capsys, config)
    assert sorted(f["path"] for f in report["targets"][0]["files"]) == ["a", "d/b"]
    assert not [p for p in local.rglob("*") if p.name.endswith(PART_SUFFIX)]


def test_relative_and_home_paths_mean_the_login_folder(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = sshd_factory("homed", home_in_root=True)
    make_tree(server.root / "x y", {"f": "f\n"})
    dirs = [
        {"alias": "a", "remote": "x y", "local": str(tmp_path / "a")},
        {"alias": "b", "remote": "~/x y", "local": str(tmp_path / "b")},
    ]
    config = fetch_config(tmp_path / "c.toml", server, dirs)
    code, report = fetch_cli(capsys, config)
    assert code == 0, report
    assert (tmp_path / "a" / "f").read_text() == (tmp_path / "b" / "f").read_text() == "f\n"
