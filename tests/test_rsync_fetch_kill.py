"""An rsync fetch killed mid-file, a server killed mid-fetch, and the temporaries they leave.

rsync writes into a temp folder of the fetch's own (named by sbatchman.temporaries rules) in
the destination root; the next fetch removes only the ones provably abandoned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sbatchman.temporaries import MAX_AGE_S, Temporaries
from tests.support.procs import alive, children, comm
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree

REPO = Path(__file__).resolve().parent.parent
BIG = 192 << 20


def _temp_folders(local: Path) -> list[Path]:
    return sorted(p for p in local.iterdir() if p.name.startswith(".rsync-fetch."))


def _start_fetch(config: Path, sockets: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "fetch", "--config", str(config), "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(sockets)},
    )


def _mid_file(local: Path, proc: subprocess.Popen[bytes]) -> None:
    """Wait until rsync's temporary in the fetch's temp folder holds a MiB."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for folder in _temp_folders(local) if local.is_dir() else []:
            for part in folder.iterdir() if folder.is_dir() else []:
                try:
                    if part.stat().st_size >= 1 << 20:
                        return
                except FileNotFoundError:
                    continue
        time.sleep(0.002)
    raise AssertionError("the fetch was never caught mid-file")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pids and /proc are Linux's")
def test_kill_9_mid_file_leaves_no_partial_file_and_the_next_fetch_completes_and_cleans(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "job", {"small.txt": "s\n"})
    with open(remote / "big.bin", "wb") as big:
        big.truncate(BIG)  # sparse: cheap to make, as slow as any file to fetch
    local = tmp_path / "res"
    fetch_dir = {"alias": "res", "remote": str(remote), "local": str(local)}
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, [], fetch_dirs=[fetch_dir])])
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    proc = _start_fetch(config, sockets)
    try:
        _mid_file(local, proc)
        rsyncs = {p for p in children(proc.pid) if comm(p) == "rsync"}
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while any(alive(p) for p in rsyncs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (local / "big.bin").exists(), "a partial file at the final path"
        (left,) = _temp_folders(local)  # the killed fetch's folder stays for the next one

        code = run_cli(capsys, "fetch", "--config", str(config), "--json")
        assert code.code == 0, code.err
        assert (local / "big.bin").stat().st_size == BIG
        assert (local / "small.txt").read_text() == "s\n"
        assert _temp_folders(local) == [], "the abandoned temp folder was not removed"
        assert json.loads(code.out)["targets"][0]["warnings"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        masters = subprocess.run(
            ["pgrep", "-f", f"ControlPath={sockets}"], capture_output=True, text=True
        )
        for pid in masters.stdout.split():  # the master ends on its own after ControlPersist
            os.kill(int(pid), signal.SIGTERM)
    assert not left.exists()


def _dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_only_provably_abandoned_temp_folders_are_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    remote = make_tree(tmp_path / "cluster", {"a.txt": "a\n"})
    local = tmp_path / "res"
    local.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = local / Temporaries(pid=_dead_pid()).name("rsync-fetch")
        old = local / Temporaries(created=int(time.time()) - 2 * MAX_AGE_S).name("rsync-fetch")
        running = local / Temporaries(pid=sleeper.pid).name("rsync-fetch")
        foreign = local / Temporaries(pid=_dead_pid(), origin_id="a" * 12).name("rsync-fetch")
        user = local / ".results.0123abcd-0123456789ab-1-01234567-01234567.sbm-part"
        for folder in (dead, old, running, foreign, user):
            folder.mkdir()
            (folder / ".big.bin.Ab12Cd").write_text("partial\n")
        lookalike = local / Temporaries(pid=_dead_pid()).name("rsync-fetch")
        lookalike.mkdir()  # named like ours, but holding what rsync never puts there
        (lookalike / "keep.txt").write_text("mine\n")
        fetch_dir = {"alias": "res", "remote": str(remote), "local": str(local)}
        config = write_config(tmp_path / "c.toml", [{"name": "here", "fetch_dirs": [fetch_dir]}])
        run = run_cli(capsys, "fetch", "--config", str(config), "--json")
        assert run.code == 0, run.err
        # Killed after rsync gave the folder the cluster's time, before the temp folder went:
        # the folder's time says nothing changed, the temp folder is still there.
        again = local / Temporaries(pid=_dead_pid()).name("rsync-fetch")
        times = local.stat()
        again.mkdir()
        (again / ".a.txt.Zz12Yy").write_text("partial\n")
        os.utime(local, ns=(times.st_atime_ns, times.st_mtime_ns))
        idle = run_cli(capsys, "fetch", "--config", str(config))  # nothing to bring, still
        assert idle.code == 0, idle.err
        assert not again.exists(), "a fetch with nothing to bring left a killed one's folder"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not dead.exists() and not old.exists()
    assert (running / ".big.bin.Ab12Cd").exists(), "a running fetch's temporary was removed"
    assert (foreign / ".big.bin.Ab12Cd").exists(), "another machine's temporary was removed"
    assert (user / ".big.bin.Ab12Cd").exists(), "a user's folder was emptied"
    assert (lookalike / "keep.txt").read_text() == "mine\n"
    assert json.loads(run.out)["targets"][0]["warnings"] == []
    assert (local / "a.txt").read_text() == "a\n"


def test_a_server_killed_mid_fetch_counts_only_what_landed(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("fetchkilled")
    remote = server.root / "job"
    remote.mkdir()
    block = os.urandom(4 << 20)
    for i in range(40):
        (remote / f"f{i:02d}.bin").write_bytes(block)
    local = tmp_path / "res"
    fetch_dir = {"alias": "res", "remote": str(remote), "local": str(local)}
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, [], fetch_dirs=[fetch_dir])])
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    proc = _start_fetch(config, sockets)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if local.is_dir() and len([p for p in local.iterdir() if p.name[0] != "."]) >= 2:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the fetch ended before the server could be killed"
        server.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    target = json.loads(out)["targets"][0]
    assert target["status"] == "failed"
    landed = {p.name for p in local.iterdir() if not p.name.startswith(".")}
    assert {f["path"] for f in target["files"]} == landed
    assert target["files_sent"] == len(landed) < 40
    assert target["bytes_sent"] == len(landed) * (4 << 20)
    assert _temp_folders(local) == []
