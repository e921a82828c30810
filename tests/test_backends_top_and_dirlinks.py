"""The destination folder itself, and cluster links to scratch, on rsync, SFTP and the local copier.

`rsync -rlpt src/ host:dst/` gives dst the mode and mtime of src, new or not: a 0700 project must
not land as 0755 on a shared login node. And HPC users link `data -> /scratch/$USER/data` on the
cluster: with keep_dirlinks (rsync -K) files go through such a link; without it the link is
replaced by a folder, and the report names it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sbatchman.config import parse
from sbatchman.precedence import keep_dirlinks_for
from tests.support.backends import three_ways
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree, snapshot, stamp

LOCAL_TIME = 1_000_000_000  # 2001: the project folder's own mtime


def plain_rsync(server: SshServer, src: Path, dest: Path) -> None:
    """What a user would type: the yardstick for the destination folder's mode and mtime."""
    rsh = f"ssh -F {server.ssh_config}"
    subprocess.run(
        ["rsync", "-rlpt", "-e", rsh, f"{src}/", f"{server.name}:{dest}/"],
        check=True,
        capture_output=True,
    )


def mode_and_time(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), int(st.st_mtime)


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
def test_the_destination_folder_gets_the_local_folders_mode_and_mtime(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    exists: bool,
) -> None:
    server = three_clusters[1]
    local = make_tree(tmp_path / "project", {"a.txt": "a\n", "sub/b.txt": "b\n"})
    local.chmod(0o700)
    stamp(local, LOCAL_TIME)
    root = cluster_roots[server.name]
    dests = {"rsync": root / "top-r", "sftp": root / "top-s", "local": tmp_path / "top-l"}
    yardstick = root / "plain"
    if exists:
        for dest in [*dests.values(), yardstick]:
            make_tree(dest, {"a.txt": "a\n"})  # same size; older time: re-sent
            stamp(dest / "a.txt", LOCAL_TIME - 10)
            dest.chmod(0o755)
            stamp(dest, LOCAL_TIME + 500)
    plain_rsync(server, local, yardstick)
    assert mode_and_time(yardstick) == (0o700, LOCAL_TIME)
    config = three_ways(server, local, dests, tmp_path / "c.toml")
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    for name, dest in dests.items():
        assert mode_and_time(dest) == mode_and_time(yardstick), name
    # and nothing changes on the next run: the folder's time is not taken for a change
    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert all(t["files_sent"] == 0 for t in json.loads(again.out)["targets"])
    for name, dest in dests.items():
        assert mode_and_time(dest) == (0o700, LOCAL_TIME), name


def scratch_layout(tmp_path: Path, dests: dict[str, Path]) -> dict[str, Path]:
    """Each destination has `data -> <its own scratch folder>`, holding the cluster's results."""
    scratches = {}
    for name, dest in dests.items():
        scratch = tmp_path / f"scratch-{name}"
        make_tree(scratch, {"results.txt": "the cluster's\n"})
        dest.mkdir(parents=True)
        (dest / "data").symlink_to(scratch)
        scratches[name] = scratch
    return scratches


def project(tmp_path: Path) -> Path:
    local = make_tree(tmp_path / "project", {"data/input.txt": "in\n", "run.sh": "#!/bin/sh\n"})
    for path in [*local.rglob("*"), local]:
        stamp(path, LOCAL_TIME)
    return local


def test_keep_dirlinks_writes_through_a_cluster_link_to_a_folder(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[2]
    local = project(tmp_path)
    root = cluster_roots[server.name]
    dests = {"rsync": root / "kd-r", "sftp": root / "kd-s", "local": tmp_path / "kd-l"}
    scratches = scratch_layout(tmp_path, dests)
    config = three_ways(server, local, dests, tmp_path / "c.toml", keep_dirlinks=True)
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    for target in json.loads(run.out)["targets"]:
        assert target["warnings"] == [], target
        assert sorted(f["path"] for f in target["files"]) == ["data/input.txt", "run.sh"]
    for name, dest in dests.items():
        assert (dest / "data").is_symlink(), name
        assert os.readlink(dest / "data") == str(scratches[name]), name
    landed = {n: snapshot(scratch) for n, scratch in scratches.items()}
    assert landed["rsync"] == landed["sftp"] == landed["local"]
    assert set(landed["sftp"]) == {"results.txt", "input.txt"}
    for name, scratch in scratches.items():  # the folder stays the cluster's own, as with -K
        assert mode_and_time(scratch)[1] != LOCAL_TIME, name
    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert all(t["files_sent"] == 0 for t in json.loads(again.out)["targets"])


def test_without_keep_dirlinks_a_replaced_cluster_link_is_reported(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[2]
    local = project(tmp_path)
    root = cluster_roots[server.name]
    dests = {"rsync": root / "nk-r", "sftp": root / "nk-s", "local": tmp_path / "nk-l"}
    scratches = scratch_layout(tmp_path, dests)
    config = three_ways(server, local, dests, tmp_path / "c.toml")
    dry = run_cli(capsys, "sync", "--config", str(config), "-n", "--json")
    assert dry.code == 0, dry.out + dry.err
    for target in json.loads(dry.out)["targets"]:
        assert any(w.startswith("data: the link on the cluster is replaced by a folder")
                   for w in target["warnings"]), target  # fmt: skip
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    for cluster in ("r", "s", "l"):
        assert f"{cluster}/proj: data: the link on the cluster is replaced by a folder" in run.out
    trees = {name: snapshot(dest) for name, dest in dests.items()}
    assert trees["rsync"] == trees["sftp"] == trees["local"]
    assert trees["sftp"]["data"].kind == "dir" and "data/input.txt" in trees["sftp"]
    for name, scratch in scratches.items():  # what the link pointed at is untouched
        assert sorted(p.name for p in scratch.iterdir()) == ["results.txt"], name


def test_keep_dirlinks_of_the_sync_dir_beats_the_clusters(tmp_path: Path) -> None:
    text = """
[[clusters]]
name = "a"
host = "h"
keep_dirlinks = true
[[clusters.sync_dirs]]
alias = "on"
local = "/x"
[[clusters.sync_dirs]]
alias = "off"
local = "/y"
keep_dirlinks = false
[[clusters]]
name = "b"
host = "h"
[[clusters.sync_dirs]]
alias = "default"
local = "/z"
"""
    config = parse(text, tmp_path / "c.toml")
    a, b = config.clusters
    assert [keep_dirlinks_for(a, d) for d in a.sync_dirs] == [True, False]
    assert keep_dirlinks_for(b, b.sync_dirs[0]) is False


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_a_push_into_the_login_folder_never_changes_its_mode(
    sshd_factory: SshdFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    """`remote = "~"` with a group-writable project must not make home 0775: sshd's StrictModes
    would then refuse every key login. Plain rsync would copy the mode; we keep home's."""
    server = sshd_factory(f"home-{backend}", home_in_root=True)
    home = server.root
    home.chmod(0o755)
    stamp(home, LOCAL_TIME + 500)
    local = make_tree(tmp_path / "project", {"job.sh": "#!/bin/sh\n"})
    local.chmod(0o775)
    stamp(local, LOCAL_TIME)
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(local), "remote": "~"}])],
        transfer_backend=backend,
    )
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert (home / "job.sh").read_text() == "#!/bin/sh\n"
    assert mode_and_time(home)[0] == 0o755  # its time moves: a new file went into it
