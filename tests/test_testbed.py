"""Proof that the integration test bed is real: if these pass, the fixtures can be trusted.

Each test checks one promise of `tests/support` with a real client (OpenSSH, rsync,
paramiko, raw sockets) and includes the negative side where one exists (wrong key,
unknown host key, stopped server), so a bed that silently "works" by accident fails here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from tests.support.delayproxy import DelayProxy, SilentServer, refused_port
from tests.support.sshd import SshdFactory, SshServer, generate_key, ssh_config_block


def run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client command with a hard timeout so a broken bed fails instead of hanging."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=cwd,
        env=env,
    )


def banner(host: str, port: int) -> bytes:
    """The server's identification line, read the way an SSH client does (to CRLF)."""
    data = b""
    with socket.create_connection((host, port), timeout=5) as sock:
        while b"\n" not in data and (chunk := sock.recv(256)):
            data += chunk
    return data


# --- servers --------------------------------------------------------------------------


def test_three_servers_up_at_once(
    three_clusters: list[SshServer], request: pytest.FixtureRequest
) -> None:
    assert [s.name for s in three_clusters] == ["alpha", "beta", "gamma"]
    assert len({s.port for s in three_clusters}) == 3
    assert len({s.root for s in three_clusters}) == 3
    assert len({s.host_key_fingerprint for s in three_clusters}) == 3
    for server in three_clusters:
        assert server.is_running()
        assert server.root.is_absolute() and server.root.is_dir()
        assert banner(server.host, server.port).startswith(b"SSH-2.0-OpenSSH")
    assert request.node.get_closest_marker("ssh") is not None, "ssh marker not auto-applied"


def test_ssh_true_on_every_cluster(three_clusters: list[SshServer]) -> None:
    for server in three_clusters:
        result = run([*server.ssh_argv(), "true"])
        assert result.returncode == 0, result.stderr
        assert "Accepted publickey for " + server.user in server.log_text()
    who = run([*three_clusters[0].ssh_argv(), "id -un"])
    assert who.stdout.strip() == pwd.getpwuid(os.getuid()).pw_name


def test_host_key_fingerprint_matches_ssh_keygen(three_clusters: list[SshServer]) -> None:
    server = three_clusters[0]
    out = run(["ssh-keygen", "-lf", str(server.workdir / "ssh_host_ed25519_key.pub")])
    assert out.stdout.split()[1] == server.host_key_fingerprint
    line = server.known_hosts.read_text()
    assert line.startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")


def test_ssh_config_is_hermetic(three_clusters: list[SshServer]) -> None:
    """`ssh -F` must use only our key and known_hosts, never ~/.ssh or an agent."""
    server = three_clusters[0]
    effective = run(["ssh", "-G", "-F", str(server.ssh_config), server.name]).stdout
    settings = dict(line.split(" ", 1) for line in effective.splitlines() if " " in line)
    assert settings["userknownhostsfile"] == str(server.known_hosts)
    assert settings["globalknownhostsfile"] == "/dev/null"
    assert settings["identityfile"] == str(server.client_key)
    assert settings["identitiesonly"] == "yes"
    assert settings["identityagent"] == "none"
    assert settings["stricthostkeychecking"] == "true"
    assert settings["batchmode"] == "yes"

    real_known_hosts = Path(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "known_hosts")
    before = real_known_hosts.stat().st_mtime_ns if real_known_hosts.exists() else None
    assert run([*server.ssh_argv(), "true"]).returncode == 0
    after = real_known_hosts.stat().st_mtime_ns if real_known_hosts.exists() else None
    assert before == after, "ssh touched the real ~/.ssh/known_hosts"


def test_isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    real_home = pwd.getpwuid(os.getuid()).pw_dir
    assert Path.home() != Path(real_home)
    assert str(Path.home()).startswith(str(tmp_path_factory.getbasetemp()))
    config = Path(os.environ["SBATCHMAN_CONFIG"])
    assert config.is_absolute() and not config.exists()
    assert "SSH_AUTH_SOCK" not in os.environ


def test_rsync_lands_files(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(200_000),
        "sub/deep/c with space.txt": b"spaces ok\n",
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)

    server = three_clusters[0]
    dst = cluster_roots[server.name] / "dst"
    result = run(["rsync", "-a", "-e", server.rsync_rsh(), f"{src}/", f"{server.name}:{dst}/"])
    assert result.returncode == 0, result.stderr
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    assert (dst / "run.sh").stat().st_mode & 0o777 == 0o755
    listing = run([*server.ssh_argv(), f"cd {shlex.quote(str(dst))} && find . -type f | sort"])
    assert listing.stdout.split("\n")[:-1] == sorted(
        ["./a.txt", "./run.sh", "./sub/b.bin", "./sub/deep/c with space.txt"]
    )
    # The other clusters' roots were not touched.
    for other in three_clusters[1:]:
        assert list(cluster_roots[other.name].iterdir()) == []


def test_combined_ssh_config_reaches_all(
    three_clusters: list[SshServer], clusters_ssh_config: Path
) -> None:
    for server in three_clusters:
        result = run(["ssh", "-F", str(clusters_ssh_config), server.name, "echo", server.name])
        assert (result.returncode, result.stdout.strip()) == (0, server.name), result.stderr


def _paramiko_client(server: SshServer, known_hosts: Path) -> paramiko.SSHClient:
    """Connect like a careful SFTP backend would: pinned known_hosts, one key, no agent."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            server.host,
            port=server.port,
            username=server.user,
            key_filename=str(server.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
    except BaseException:
        client.close()  # a failed connect leaves the transport (and server session) open
        raise
    return client


def test_paramiko_sftp_with_known_hosts(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path]
) -> None:
    server = three_clusters[1]
    remote = cluster_roots[server.name]
    (remote / "hello.txt").write_text("hi")
    client = _paramiko_client(server, server.known_hosts)
    try:
        sftp = client.open_sftp()
        assert sftp.listdir(str(remote)) == ["hello.txt"]
        with sftp.open(str(remote / "up.txt"), "w") as fh:
            fh.write(b"from paramiko")
        sftp.close()
    finally:
        client.close()
    assert (remote / "up.txt").read_bytes() == b"from paramiko"


def test_paramiko_rejects_unknown_host_key(three_clusters: list[SshServer]) -> None:
    """RejectPolicy really bites: beta's known_hosts has no entry for alpha's port."""
    alpha, beta = three_clusters[0], three_clusters[1]
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _paramiko_client(alpha, beta.known_hosts).close()


def test_changed_host_key_is_refused(three_clusters: list[SshServer], tmp_path: Path) -> None:
    """A known_hosts entry for alpha's port holding beta's key must fail (both clients)."""
    alpha, beta = three_clusters[0], three_clusters[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.1]:{alpha.port} {beta.known_hosts.read_text().split(None, 1)[1]}")
    with pytest.raises(paramiko.BadHostKeyException):
        _paramiko_client(alpha, forged).close()
    result = run([*alpha.ssh_argv(), "-o", f"UserKnownHostsFile={forged}", "true"])
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_wrong_client_key_is_refused(
    sshd_factory: SshdFactory, client_key: Path, tmp_path: Path
) -> None:
    server = sshd_factory("locked", client_key=generate_key(tmp_path / "other_key"))
    assert run([*server.ssh_argv(), "true"]).returncode == 0
    wrong = tmp_path / "wrong_key_ssh_config"
    wrong.write_text(ssh_config_block(replace(server, client_key=client_key)))
    denied = run(["ssh", "-F", str(wrong), server.name, "true"])
    assert denied.returncode == 255
    assert "Permission denied" in denied.stderr


def test_extra_config_overrides_defaults(sshd_factory: SshdFactory) -> None:
    server = sshd_factory("strict", extra_config={"allowusers": "no-such-user"})
    config = (server.workdir / "sshd_config").read_text()
    assert "allowusers no-such-user" in config
    result = run([*server.ssh_argv(), "true"])
    assert result.returncode == 255, "AllowUsers override was not applied"


def test_home_in_root_keeps_relative_paths_inside(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """With home_in_root, relative remote paths (ssh, rsync, SFTP) resolve inside root."""
    server = sshd_factory("homed", home_in_root=True)
    where = run([*server.ssh_argv(), 'pwd; echo "$HOME"'])
    assert where.stdout.split() == [str(server.root)] * 2, where.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("relative")
    synced = run(["rsync", "-a", "-e", server.rsync_rsh(), f"{src}/", f"{server.name}:rel/"])
    assert synced.returncode == 0, synced.stderr
    assert (server.root / "rel" / "f.txt").read_text() == "relative"
    client = _paramiko_client(server, server.known_hosts)
    try:
        sftp = client.open_sftp()
        assert sftp.normalize(".") == str(server.root)
        assert sftp.listdir("rel") == ["f.txt"]
        sftp.close()
    finally:
        client.close()


def test_stopped_server_refuses_connections(sshd_factory: SshdFactory) -> None:
    server = sshd_factory("solo")
    assert run([*server.ssh_argv(), "true"]).returncode == 0
    pid = server.pid
    assert pid is not None
    server.stop()
    server.stop()  # idempotent
    assert not server.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5)
    assert run([*server.ssh_argv(), "true"]).returncode == 255


def _alive(pid: int) -> bool:
    """Running (zombies excluded: a dead process whose reaping is PID 1's business)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0, which also sees zombies
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(")") + 2] != "Z"


def test_stop_kills_open_sessions(sshd_factory: SshdFactory) -> None:
    """Sessions still open at stop() time, authenticated or not, must not outlive the
    server, or every test run would leak processes."""
    server = sshd_factory("busy")
    session = subprocess.Popen(
        [*server.ssh_argv(), "echo started; exec sleep 300"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    with socket.create_connection((server.host, server.port), timeout=5) as preauth:
        try:
            assert preauth.recv(8) == b"SSH-2.0-"
            assert session.stdout is not None
            assert session.stdout.readline().strip() == "started"
            spawned = server.session_pids()
            assert len(spawned) >= 3, "ssh session (with its sleep) + preauth connection"
            server.stop()
            assert session.wait(timeout=10) != 0  # connection torn down from the server side
            preauth.settimeout(5)
            while preauth.recv(1 << 16):  # rest of the banner, then EOF: closed by stop()
                pass
        finally:
            session.kill()
            session.wait()
            assert session.stdout is not None
            session.stdout.close()
    deadline = time.monotonic() + 5
    while (left := {pid for pid in spawned if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


# --- network misbehaviour helpers -----------------------------------------------------


class EchoServer:
    """Threaded TCP echo; on the client's EOF it half-closes back (tests FIN relaying)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.sock.close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def test_delay_proxy_adds_latency(echo_server: EchoServer) -> None:
    """One small round trip through the proxy takes at least 2 * delay (correctness)."""
    delay = 0.010
    with (
        DelayProxy("127.0.0.1", echo_server.port, delay_s=delay) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(b"ping")
        reply = b""
        while len(reply) < 4:
            reply += sock.recv(4 - len(reply))
        elapsed = time.perf_counter() - start
        assert reply == b"ping"
        assert proxy.connections == 1
    assert elapsed >= 2 * delay - 0.001, f"round trip {elapsed * 1000:.1f} ms"
    assert elapsed < 5, "proxy stalled"


def test_delay_proxy_bulk_data_intact(echo_server: EchoServer) -> None:
    """20 MB each way (with half-close at the end) arrive byte-identical."""
    payload = os.urandom(20 * 1024 * 1024)
    received = hashlib.sha256()
    total = 0
    with (
        DelayProxy("127.0.0.1", echo_server.port, delay_s=0.010) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock,
    ):

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        while chunk := sock.recv(1 << 20):
            received.update(chunk)
            total += len(chunk)
        sender.join(timeout=30)
    assert total == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_delay_proxy_carries_ssh(three_clusters: list[SshServer], tmp_path: Path) -> None:
    server = three_clusters[2]
    with DelayProxy(server.host, server.port, delay_s=0.010) as proxy:
        view = server.via_port(proxy.port)
        result = run([*view.ssh_argv(), "echo", "through-proxy"])
        assert (result.returncode, result.stdout.strip()) == (0, "through-proxy"), result.stderr
        assert proxy.connections == 1
        client = _paramiko_client(view, view.known_hosts)
        client.close()
        assert proxy.connections == 2


def test_silent_server_accepts_and_stays_silent() -> None:
    with (
        SilentServer() as silent,
        socket.create_connection(("127.0.0.1", silent.port), timeout=5) as sock,
    ):
        sock.sendall(b"SSH-2.0-probe\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert silent.accepted == 1


def test_ssh_times_out_against_silent_server() -> None:
    with SilentServer() as silent:
        start = time.monotonic()
        result = run(
            [
                "ssh",
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=1",
                "-p",
                str(silent.port),
                "127.0.0.1",
                "true",
            ]
        )
        assert result.returncode == 255
        assert time.monotonic() - start < 10
        assert silent.accepted == 1


def test_refused_port_refuses() -> None:
    port = refused_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


# --- the CI guard ---------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "expected"), [("", "1 skipped"), ("true", "1 error")])
def test_missing_sshd_skips_locally_fails_in_ci(ci: str, expected: str, tmp_path: Path) -> None:
    """Without sshd, ssh tests skip on a laptop but fail when CI is set."""
    env = {**os.environ, "SBATCHMAN_TEST_SSHD": "/nonexistent/sshd", "CI": ci}
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--basetemp={tmp_path / 'inner'}",
            f"{Path(__file__).name}::test_stopped_server_refuses_connections",
        ],
        cwd=Path(__file__).parent,
        env=env,
    )
    assert expected in result.stdout, result.stdout + result.stderr
