"""A fetch killed (kill -9) in the middle of a big file: nothing half-written at the final path,
and the next fetch completes and removes the temporary the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.running import REPO, wait_for_temporary
from tests.support.sshd import SshServer

BIG = 256 << 20


def test_a_killed_fetch_leaves_no_partial_file_and_the_next_one_cleans_up(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = cluster_roots[server.name] / "r"
    remote.mkdir()
    with (remote / "big.bin").open("wb") as out:  # sparse: quick to make, real bytes to read
        out.truncate(BIG)
    local = tmp_path / "r"
    dirs = [{"alias": "r", "remote": str(remote), "local": str(local)}]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, [], fetch_dirs=dirs)])
    child = subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "fetch", "--config", str(config), "-b", "sftp"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        part = wait_for_temporary(local, 1 << 20, lambda: child.poll() is None)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert part.exists()
    assert not (local / "big.bin").exists()
    run = run_cli(capsys, "fetch", "--config", str(config), "-b", "sftp")
    assert run.code == 0, run.out + run.err
    assert sorted(p.name for p in local.iterdir()) == ["big.bin"]
    assert (local / "big.bin").stat().st_size == BIG
