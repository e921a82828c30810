"""The sftp backend's connecting, seen from the command line: our line only, Ctrl-C at once.

Each test runs `python -m sbatchman sync` as a child process, as a user does, because what is
checked is the process's own stderr and how it ends (logging with no handler, signals, threads
left running at exit); pytest's in-process capture would hide all of that.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.project import write_config
from tests.support.running import start_sync
from tests.support.sshd import SshdFactory, SshServer
from tests.support.sshkit import config_block, jump_config
from tests.support.trees import make_tree


def sync(config: Path, *args: str, backend: str = "sftp") -> subprocess.Popen[str]:
    """`sbatchman sync` on `config` with the sftp backend (or another), as a child."""
    return start_sync(config, "-b", backend, *args)


def project(tmp_path: Path, cluster: dict[str, object]) -> Path:
    """A one-file project and a config pushing it to `cluster` (given without sync_dirs)."""
    make_tree(tmp_path / "src", {"a.txt": "a"})
    cluster["sync_dirs"] = [
        {"alias": "p", "local": str(tmp_path / "src"), "remote": str(tmp_path / "dst")}
    ]
    return write_config(tmp_path / "sbatchman.toml", [cluster])


def to(port: int, tmp_path: Path, **extra: object) -> dict[str, object]:
    """A cluster on 127.0.0.1:port whose ssh config reads only files of this test."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host *\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n  IdentityAgent none\n  IdentitiesOnly yes\n"
    )
    return {
        "name": "c",
        "host": "127.0.0.1",
        "port": port,
        "user": "nobody",
        "ssh_config": str(config),
        **extra,
    }


@pytest.fixture
def bad_banner() -> Iterator[int]:
    """A port whose server answers like a web server, then hangs up."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    peer, _ = listener.accept()
                except TimeoutError:
                    continue
                with peer:
                    peer.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        done.set()
        thread.join()


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_a_bad_banner_is_our_one_line_and_nothing_from_paramiko(
    bad_banner: int, tmp_path: Path, json_out: bool
) -> None:
    config = project(tmp_path, to(bad_banner, tmp_path))
    run = sync(config, *(["--json"] if json_out else []))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert err == ""
    assert f"127.0.0.1:{bad_banner}: SSH handshake failed: " in out
    assert "Traceback" not in out and "paramiko" not in out


def test_a_refused_jump_channel_is_our_one_line(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    """A bastion that does not forward: paramiko logs `Secsh channel 1 open FAILED`; only our
    line may reach the user."""
    bastion = sshd_factory("closed-bastion", extra_config={"AllowTcpForwarding": "no"})
    target = sshd_factory("target")
    ssh_config = jump_config(tmp_path, bastion, target)
    config = project(tmp_path, {"name": "t", "host": "target", "ssh_config": str(ssh_config)})
    for extra in ([], ["--json"]):
        run = sync(config, *extra)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1
        assert err == ""
        assert "jump host did not forward to 127.0.0.1:" in out
        assert "Secsh" not in out


# --- Ctrl-C while connecting ----------------------------------------------------------------

CONNECT_TIMEOUT = "60"  # what a stuck connect would wait for without the fix
BOUND = 10.0  # how long the child may take to end after Ctrl-C (a bound, not a measure)
NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads TCP states from Linux's /proc/net/tcp"
)


def _connections_to(port: int, state: str) -> int:
    """Client sockets to 127.0.0.1:port in a TCP state ("01" established, "02" SYN sent)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, st = fields[2], fields[3]
        if remote == f"0100007F:{port:04X}" and st == state:
            count += 1
    return count


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"the child never got to {what}")
        time.sleep(0.05)


def _interrupt(child: subprocess.Popen[str], times: int) -> tuple[str, str]:
    """Ctrl-C `times` times (as a terminal sends SIGINT), then what the child printed."""
    for _ in range(times):
        child.send_signal(signal.SIGINT)
        time.sleep(0.05)
    try:
        return child.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail(f"still connecting {BOUND:g}s after Ctrl-C")


def _assert_interrupted(child: subprocess.Popen[str], out: str, err: str, times: int) -> None:
    # 130, or killed by the second SIGINT itself while Python was already tearing down
    # (after the report): Python restores the default handler then, and shells show 130 too.
    assert child.returncode in (130, -signal.SIGINT), (out, err)
    assert "Traceback" not in err and "Exception" not in err, err
    assert err.strip() in ("", "sbatchman: interrupted"), err
    if times == 1:  # a second Ctrl-C may land while the report is printed, and cut it short
        assert "interrupted" in out


@pytest.fixture
def silent() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never says a word."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1], accepted
        done.set()
        thread.join()
        for peer in accepted:
            peer.close()


@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
def test_ctrl_c_while_waiting_for_a_banner_stops_at_once(
    silent: tuple[int, list[socket.socket]], tmp_path: Path, times: int
) -> None:
    port, accepted = silent
    config = project(tmp_path, to(port, tmp_path))
    child = sync(config, "--connect-timeout", CONNECT_TIMEOUT)
    _wait_until(lambda: bool(accepted), "the server")
    out, err = _interrupt(child, times)
    _assert_interrupted(child, out, err, times)


@NEEDS_PROC
@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
def test_ctrl_c_during_a_tcp_connect_that_gets_no_answer_stops_at_once(
    tmp_path: Path, times: int
) -> None:
    """A listener whose queue is full: the kernel drops the SYN, and connect() just waits."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            while True:  # fill the accept queue until a connect waits
                filler = socket.socket()
                filler.settimeout(0.5)
                fillers.append(filler)
                try:
                    filler.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            config = project(tmp_path, to(port, tmp_path))
            child = sync(config, "--connect-timeout", CONNECT_TIMEOUT)
            _wait_until(lambda: _connections_to(port, "02") > 1, "its connect")
            out, err = _interrupt(child, times)
        finally:
            for filler in fillers:
                filler.close()
    _assert_interrupted(child, out, err, times)


@NEEDS_PROC
def test_ctrl_c_with_a_stopped_sshd_stops_at_once(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server: SshServer = sshd_factory("stopped")
    config = project(
        tmp_path, {"name": "s", "host": "stopped", "ssh_config": str(server.ssh_config)}
    )
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        child = sync(config, "--connect-timeout", CONNECT_TIMEOUT)
        _wait_until(lambda: _connections_to(server.port, "01") > 0, "the server")
        out, err = _interrupt(child, 2)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    _assert_interrupted(child, out, err, 2)


def test_ctrl_c_behind_a_jump_host_stops_at_once(
    sshd_factory: SshdFactory, silent: tuple[int, list[socket.socket]], tmp_path: Path
) -> None:
    """The wait is on a channel through the bastion: closing the chain ends it."""
    port, accepted = silent
    bastion = sshd_factory("bastion")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        config_block(bastion) + f"Host quiet\n  HostName 127.0.0.1\n  Port {port}\n  User nobody\n"
        f"  ProxyJump bastion\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n"
    )
    config = project(tmp_path, {"name": "q", "host": "quiet", "ssh_config": str(ssh_config)})
    child = sync(config, "--connect-timeout", CONNECT_TIMEOUT)
    _wait_until(lambda: bool(accepted), "the server behind the bastion")
    out, err = _interrupt(child, 2)
    _assert_interrupted(child, out, err, 2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_signal_to_sbatchman_alone_while_its_ssh_master_connects_stops_at_once(
    silent: tuple[int, list[socket.socket]], tmp_path: Path, signum: int
) -> None:
    """The rsync backend's ssh master is our child: `kill <pid>` reaches only us (a terminal's
    Ctrl-C would reach ssh too), and the exit must not wait for that ssh's own timeout."""
    port, accepted = silent
    config = project(tmp_path, to(port, tmp_path))
    child = sync(config, "--connect-timeout", CONNECT_TIMEOUT, backend="rsync")
    _wait_until(lambda: bool(accepted), "the server")
    child.send_signal(signum)
    try:
        out, err = child.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail(f"still connecting {BOUND:g}s after the signal")
    _assert_interrupted(child, out, err, 1)
