"""`sbatchman fetch` over the rsync backend against a real sshd and the real rsync (no mocks).

The cluster's folder is a folder on this machine reached through ssh, so a test lays out the
cluster's tree directly and then checks what arrived in the local folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree, snapshot, stamp

NEWLINE = "new\nline.txt"
LATIN1 = os.fsdecode(b"caf\xe9.txt")  # not UTF-8
RESULTS = {
    "out/metrics.csv": "1,2\n",
    "out/deep/er/log.txt": "log\n",
    "run.sh": "#!/bin/sh\necho run\n",
    "ckpt/model.ckpt": "weights\n",
    "scratch.tmp": "tmp\n",
    "with space/a b.txt": "spaced\n",
    NEWLINE: "nl\n",
    LATIN1: "latin-1\n",
    "empty/": "",
}


def _config(
    tmp_path: Path, server: SshServer, remote: Path | str, local: Path, **dir_: object
) -> Path:
    fetch = {"alias": "res", "remote": str(remote), "local": str(local), **dir_}
    cluster = ssh_cluster(server, [], fetch_dirs=[fetch])
    return write_config(tmp_path / "c.toml", [cluster], fetch_excludes=["*.tmp"])


def _cluster_tree(root: Path) -> Path:
    tree = make_tree(root, RESULTS, links={"latest": "out/metrics.csv", "etc": "/etc"})
    os.chmod(tree / "out/metrics.csv", 0o640)
    os.utime(tree / "out/metrics.csv", ns=(1_700_000_000_250_000_000,) * 2)
    return tree


def _fetch(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, dict, str]:
    run = run_cli(capsys, "fetch", "--config", str(config), "--json", *args)
    return run.code, json.loads(run.out), run.err


@pytest.fixture
def server(three_clusters: list[SshServer]) -> SshServer:
    return three_clusters[0]


def test_a_tree_arrives_whole_and_a_second_fetch_sends_nothing(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = _cluster_tree(cluster_roots[server.name] / "results")
    local = tmp_path / "home" / "results" / "res"  # parents missing: made
    config = _config(tmp_path, server, remote, local, excludes=["ckpt/"])
    code, report, err = _fetch(capsys, config)
    assert code == 0, err
    (target,) = report["targets"]
    assert (target["backend"], target["status"]) == ("rsync", "ok")
    expected = {k: v for k, v in snapshot(remote).items() if not k.startswith("ckpt")}
    expected.pop("scratch.tmp")
    assert snapshot(local) == expected  # modes, mtimes, link targets, the odd names
    assert target["files_sent"] == 6
    assert os.access(local / "run.sh", os.X_OK)
    assert os.readlink(local / "etc") == "/etc" and os.path.islink(local / "etc")
    assert not (local / "ckpt").exists() and not (local / "scratch.tmp").exists()
    assert [p.name for p in local.iterdir() if p.name.startswith(".")] == []  # no temp folder

    code, again, err = _fetch(capsys, config)
    assert code == 0, err
    assert again["targets"][0]["files_sent"] == 0
    assert snapshot(local) == expected


def test_a_newer_local_file_is_kept_and_reported(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = make_tree(cluster_roots[server.name] / "r", {"a.txt": "cluster\n", "b.txt": "b\n"})
    stamp(remote / "a.txt", 1_600_000_000)
    local = make_tree(tmp_path / "local", {"a.txt": "edited on the laptop\n"})
    stamp(local / "a.txt", 1_700_000_000)
    config = _config(tmp_path, server, remote, local)
    code, report, err = _fetch(capsys, config)
    assert code == 0, err
    target = report["targets"][0]
    assert target["skipped_newer_local"] == ["a.txt"]
    assert target["files"] == [{"path": "b.txt", "why": "new"}]
    assert (local / "a.txt").read_text() == "edited on the laptop\n"
    assert (local / "b.txt").read_text() == "b\n"
    code, again, err = _fetch(capsys, config)  # nothing else to bring: the look is the fetch
    assert code == 0, err
    assert again["targets"][0]["skipped_newer_local"] == ["a.txt"]
    assert again["targets"][0]["files"] == []
    verbose = run_cli(capsys, "fetch", "--config", str(config), "-v")
    assert verbose.code == 0, verbose.err
    assert "alpha/res: a.txt (kept, newer locally)" in verbose.out, verbose.out


def test_a_dry_run_creates_nothing(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = _cluster_tree(cluster_roots[server.name] / "r")
    local = tmp_path / "not" / "there"
    code, report, err = _fetch(capsys, _config(tmp_path, server, remote, local), "-n")
    assert code == 0, err
    assert report["targets"][0]["status"] == "dry-run"
    assert report["targets"][0]["files_sent"] == 7
    assert not (tmp_path / "not").exists()
    existing = make_tree(tmp_path / "existing", {"mine.txt": "mine\n"})
    before = snapshot(existing, folder_times=True)
    code, _, err = _fetch(capsys, _config(tmp_path, server, remote, existing), "-n")
    assert code == 0, err
    assert snapshot(existing, folder_times=True) == before
    assert sorted(os.listdir(existing)) == ["mine.txt"]


def test_a_missing_remote_folder_fails_that_target_in_one_line(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = cluster_roots[server.name] / "never"
    local = tmp_path / "new" / "res"
    code, report, err = _fetch(capsys, _config(tmp_path, server, remote, local))
    assert code == 1, err
    target = report["targets"][0]
    assert target["status"] == "failed"
    assert target["error"] == (
        f"the remote folder {remote} does not exist on alpha; check `remote` of this fetch_dir"
    )
    assert not (tmp_path / "new").exists()  # nothing came, nothing was made


def test_a_file_where_the_local_folder_goes_fails_in_one_line(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = make_tree(cluster_roots[server.name] / "r", {"a.txt": "a\n"})
    local = tmp_path / "res"
    local.write_text("a file, not a folder\n")
    code, report, err = _fetch(capsys, _config(tmp_path, server, remote, local))
    assert code == 1, err
    assert report["targets"][0]["error"] == (
        f"the local path {local} exists and is not a folder;"
        " move it away or set another `local` for this fetch_dir"
    )
    assert local.read_text() == "a file, not a folder\n"
    below = tmp_path / "res" / "deeper"  # a file among its parents: cannot be made
    code, report, err = _fetch(capsys, _config(tmp_path, server, remote, below))
    assert code == 1, err
    assert report["targets"][0]["error"] == (
        f"cannot create the local folder {below}: {local} is a file;"
        " move it away or set another `local` for this fetch_dir"
    )


def test_a_local_link_in_the_way_of_a_folder_is_replaced_never_written_through(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    remote = make_tree(cluster_roots[server.name] / "r", {"d/f.txt": "f\n", "g.txt": "g\n"})
    outside = make_tree(tmp_path / "outside", {"g.txt": "not yours\n"})
    stamp(outside / "g.txt", 1_500_000_000)
    local = tmp_path / "res"
    local.mkdir()
    os.symlink(outside, local / "d")
    code, _, err = _fetch(capsys, _config(tmp_path, server, remote, local))
    assert code == 0, err
    assert (local / "d").is_dir() and not (local / "d").is_symlink()
    assert (local / "d/f.txt").read_text() == "f\n"
    assert sorted(os.listdir(outside)) == ["g.txt"]
    assert (outside / "g.txt").read_text() == "not yours\n"


def test_a_local_cluster_fetches_through_rsync_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    remote = _cluster_tree(tmp_path / "cluster")
    local = tmp_path / "res"
    fetch = {"alias": "res", "remote": str(remote), "local": str(local), "excludes": ["ckpt"]}
    config = write_config(tmp_path / "c.toml", [{"name": "here", "fetch_dirs": [fetch]}])
    code, report, err = _fetch(capsys, config)
    assert code == 0, err
    assert report["targets"][0]["backend"] == "rsync"
    expected = {k: v for k, v in snapshot(remote).items() if not k.startswith("ckpt")}
    assert snapshot(local) == expected
    code, report, err = _fetch(capsys, config)
    assert (code, report["targets"][0]["files_sent"]) == (0, 0), err


def test_a_remote_path_no_shell_may_read_arrives_untouched(
    server: SshServer,
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # rsync >= 3.2.4 protects its remote args itself; -s does it for older ones. Checked to
    # fail when rsync is told --old-args (the path then goes through the cluster's shell).
    root = cluster_roots[server.name]
    remote = make_tree(root / "a b;$(touch pwned)'q\"`touch pwned2`", {"f.txt": "f\n"})
    local = tmp_path / "res"
    code, report, err = _fetch(capsys, _config(tmp_path, server, remote, local))
    assert code == 0, err
    assert report["targets"][0]["files_sent"] == 1
    assert (local / "f.txt").read_text() == "f\n"
    assert sorted(os.listdir(root)) == [remote.name]  # nothing ran on the cluster


@pytest.mark.parametrize("remote", ["~/job/out", "job/out", ":colon/out"])
def test_relative_remote_paths_mean_the_login_folder(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path, remote: str
) -> None:
    server = sshd_factory("home", home_in_root=True)
    plain = remote.removeprefix("~/")
    make_tree(server.root / plain, {"r.txt": "result\n"})
    local = tmp_path / "res"
    code, _, err = _fetch(capsys, _config(tmp_path, server, remote, local))
    assert code == 0, err
    assert (local / "r.txt").read_text() == "result\n"
