"""A fetch stopped in the middle of a big file: killed (kill -9), nothing half-written is at the
final path and the next fetch completes and removes the temporary the killed one left behind;
interrupted (Ctrl-C), its temporary is removed at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sbatchman.backends.sftp.session import SftpSession, open_sftp
from sbatchman.config import load
from sbatchman.errors import Interrupted
from sbatchman.model import FetchJob
from sbatchman.ssh.endpoint import Endpoint
from tests.support.project import Recorder, run_cli, ssh_cluster, write_config
from tests.support.running import REPO, wait_for_temporary
from tests.support.sftpkit import BATCH
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


class Aborting(Recorder):
    """Ctrl-C (the fan-out calls session.abort) once the big file's first bytes arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.session: SftpSession | None = None

    def progress(self, nbytes: int) -> None:
        super().progress(nbytes)
        if self.session is not None:
            self.session.abort()
            self.session = None


def test_ctrl_c_mid_file_drops_the_temporary_and_lands_nothing_half(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    server = three_clusters[0]
    remote = cluster_roots[server.name] / "r"
    remote.mkdir()
    with (remote / "big.bin").open("wb") as out:
        out.truncate(64 << 20)
    local = tmp_path / "r"
    dirs = [{"alias": "r", "remote": str(remote), "local": str(local)}]
    config = load(write_config(tmp_path / "c.toml", [ssh_cluster(server, [], fetch_dirs=dirs)]))
    cluster = config.clusters[0]
    fetch_dir = cluster.fetch_dirs[0]
    session = open_sftp(Endpoint.of(cluster, config.settings, BATCH))
    assert isinstance(session, SftpSession)
    events = Aborting()
    events.session = session
    job = FetchJob(cluster, fetch_dir, fetch_dir.remote, local, (), False)
    try:
        with pytest.raises(Interrupted):
            session.fetch(job, events)
    finally:
        session.close()
    assert events.progressed > 0
    assert list(local.iterdir()) == []
