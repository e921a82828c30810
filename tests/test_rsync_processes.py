"""The rsync backend's processes against real sshd: a frozen cluster, a killed server, a killed
sbatchman (its rsync must not run on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.procs import alive, children, comm, signal_all
from tests.support.project import ssh_cluster, write_config
from tests.support.running import start_sync, wait_for_temporary
from tests.support.sshd import SshdFactory
from tests.support.trees import make_tree


def test_a_stalled_cluster_is_called_stalled_with_the_seconds(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """With --stall-timeout 5 ssh's keepalive (every 1 s, 4 misses) gave up first: `code 255`."""
    server = sshd_factory("stall")
    src = tmp_path / "big"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(128 << 20))
    dest = server.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "big", "local": str(src), "remote": str(dest)}])],
    )
    proc = start_sync(config, "--json", "--stall-timeout", "5")
    stopped: set[int] = set()
    try:
        wait_for_temporary(dest, 1 << 20, lambda: proc.poll() is None)
        stopped = server.session_pids()
        signal_all(stopped, signal.SIGSTOP)
        out, _ = proc.communicate(timeout=90)
    finally:
        signal_all(stopped, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    error = json.loads(out)["targets"][0]["error"]
    assert error.startswith("stalled") and "5 s" in error, error


def test_a_server_killed_mid_run_lists_what_rsync_started_and_says_the_count_is_unknown(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """It reported `files 0` although files had landed: now exactly what landed or, when the
    cluster cannot be asked any more, what rsync started with a warning saying so."""
    server = sshd_factory("killed")
    src = tmp_path / "src"
    src.mkdir()
    block = os.urandom(8 << 20)
    for i in range(40):
        (src / f"f{i:02d}.bin").write_bytes(block)
    dest = server.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(src), "remote": str(dest)}])],
    )
    proc = start_sync(config, "--json")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if dest.exists() and len([p for p in dest.iterdir() if p.name[0] != "."]) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the push ended before the server could be killed"
        server.stop()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    target = json.loads(out)["targets"][0]
    assert target["status"] == "failed"
    assert "interrupted" not in target["error"]  # nobody pressed Ctrl-C
    landed = {p.name for p in dest.iterdir() if not p.name.startswith(".")}
    listed = {f["path"] for f in target["files"]}
    assert target["files_sent"] == len(listed)
    if any("unknown" in w for w in target["warnings"]):
        assert landed <= listed  # the cluster could not be asked: what rsync had started
    else:
        assert landed == listed  # it could still be asked (the server was still going down)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_rsync_dies_with_a_killed_sbatchman(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory("orphan")
    src = tmp_path / "big"
    src.mkdir()
    for i in range(4):
        (src / f"big{i}.bin").write_bytes(os.urandom(64 << 20))
    dest = server.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "big", "local": str(src), "remote": str(dest)}])],
    )
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(sockets)},
    )
    rsyncs: set[int] = set()
    stopped: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not rsyncs and time.monotonic() < deadline and proc.poll() is None:
            rsyncs = {p for p in children(proc.pid) if comm(p) == "rsync"}
            time.sleep(0.02)
        assert rsyncs, "rsync never started"
        helpers = {c for p in rsyncs for c in children(p)}  # rsync's own ssh
        stopped = server.session_pids()  # a frozen cluster: rsync alone would wait 120 s
        signal_all(stopped, signal.SIGSTOP)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while any(alive(p) for p in rsyncs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in rsyncs), "rsync outlived the killed sbatchman"
        while any(alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in helpers), "rsync's ssh outlived the killed sbatchman"
    finally:
        signal_all(stopped, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
        masters = subprocess.run(
            ["pgrep", "-f", f"ControlPath={sockets}"], capture_output=True, text=True
        )
        for pid in masters.stdout.split():  # the master ends on its own after ControlPersist
            os.kill(int(pid), signal.SIGTERM)


@pytest.mark.parametrize("remote", ["/tmp/never", "../never/x"], ids=["plain", "dot-dot"])
def test_a_cluster_that_goes_silent_after_rsync_starts_fails_after_the_stall_timeout(
    sshd_factory: SshdFactory, tmp_path: Path, remote: str
) -> None:
    """The login works (the ssh master connects), then the session's rsync never answers.
    rsync gives up at --timeout; sbatchman must end then too, not when the cluster does. A
    `..` path has its folder made by a separate rsync first: that one is bounded as well."""
    wrapper = tmp_path / "silent-session.sh"
    wrapper.write_text("#!/bin/sh\nexec sleep 60\n")
    wrapper.chmod(0o755)
    server = sshd_factory("mute", extra_config={"ForceCommand": str(wrapper)})
    local = make_tree(tmp_path / "proj", {"a.txt": "a\n"})
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(local), "remote": remote}])],
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "-b", "rsync",
         "--stall-timeout", "3", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = child.communicate(timeout=30)  # a bound well under the 60 s silence
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("still waiting for a silent cluster long after the stall timeout")
    assert child.returncode == 1, err
    assert "Traceback" not in err and "Exception" not in err, err
    target = json.loads(out)["targets"][0]
    assert target["status"] == "failed" and "stalled" in target["error"], target
