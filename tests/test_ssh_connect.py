"""Both backends reach real sshd servers the way the user's own `ssh` would.

The paramiko side is `ssh.connect.connect()`, the rsync side `ssh.master.Master`; every test
here runs against real OpenSSH servers from the test bed (no mocks), with config files
written per test.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from sbatchman.config import Settings
from sbatchman.errors import ConfigError, ConnectError
from sbatchman.ssh.connect import connect
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master
from sbatchman.ssh.resolve import require_user, resolve_cluster
from tests.support.sshd import SshdFactory, SshServer, current_user, generate_key
from tests.support.sshkit import config_block, jump_config, make_cluster

BATCH = SshOptions(batch=True, connect_timeout=10)


def run(transport: paramiko.Transport, command: str) -> str:
    """Run a command over an authenticated Transport; its stdout."""
    channel = transport.open_session()
    try:
        channel.exec_command(command)
        return channel.makefile("rb").read().decode()
    finally:
        channel.close()


def run_master(master: Master, command: str) -> str:
    argv = [*master.client_argv(), master.host, command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def forwarded_to(server: SshServer, port: int) -> int:
    """How often `server` (a bastion) opened a direct-tcpip channel to 127.0.0.1:port."""
    pattern = rf"server_request_direct_tcpip: .*target 127\.0\.0\.1 port {port}\b"
    return len(re.findall(pattern, server.log_text()))


def logins(server: SshServer) -> int:
    return server.log_text().count("Accepted publickey")


# --- host aliases and precedence -------------------------------------------------------------


def test_alias_only_in_ssh_config_connects(
    three_clusters: list[SshServer], clusters_ssh_config: Path, cluster_roots: dict[str, Path]
) -> None:
    """HostName, Port, User and IdentityFile come from the fixture config alone."""
    settings = Settings(ssh_config=clusters_ssh_config)
    transport = connect(Endpoint.of(make_cluster("a", "alpha"), settings, BATCH))
    try:
        assert transport.is_authenticated()
        assert transport.getpeername()[1] == three_clusters[0].port
        assert transport.remote_cipher == "aes128-gcm@openssh.com"  # paramiko's fastest
        assert run(transport, f"ls -d {cluster_roots['alpha']}").strip() == str(
            cluster_roots["alpha"]
        )
    finally:
        transport.close()
    assert not transport.is_active()


def test_alias_only_in_ssh_config_rsync_master(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    """The rsync path: one master connection, commands ride on it, socket folder private."""
    server = sshd_factory("solo")
    settings = Settings(ssh_config=server.ssh_config)
    master = Master(Endpoint.of(make_cluster("s", "solo"), settings, BATCH))
    try:
        master.open()
        assert stat.S_IMODE(master.folder.stat().st_mode) == 0o700
        assert master.socket.is_socket()
        for _ in range(3):
            assert run_master(master, "echo ride").strip() == "ride"
        assert logins(server) == 1  # three commands, one login
    finally:
        master.close()
    assert not master.folder.exists()


def test_toml_values_win_over_ssh_config(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    """A config that names a wrong port and user is overridden by the cluster's TOML values."""
    server = sshd_factory("prec")
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, Port="1", User="nobody-here"))
    cluster = make_cluster("p", "prec", port=server.port, user=server.user)
    settings = Settings(ssh_config=config)
    resolved = resolve_cluster(Endpoint.of(cluster, settings, BATCH))
    assert (resolved.port, resolved.user) == (server.port, server.user)
    transport = connect(Endpoint.of(cluster, settings, BATCH))
    transport.close()
    with pytest.raises(ConnectError, match="connection refused"):
        connect(
            Endpoint.of(make_cluster("p", "prec"), settings, BATCH)
        )  # the config's port 1 alone


def test_resolution_defaults_and_key_path(tmp_path: Path) -> None:
    """ssh config beats defaults; key_path goes first; an unknown name keeps OpenSSH defaults."""
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host cfg\n  HostName real.example\n  Port 2200\n  User cfguser\n"
        "  IdentityFile /keys/from-config\n  ProxyJump hop1,hop2\n"
    )
    settings = Settings(ssh_config=config)
    cfg = resolve_cluster(Endpoint.of(make_cluster("c", "cfg"), settings, BATCH))
    assert (cfg.hostname, cfg.port, cfg.user) == ("real.example", 2200, "cfguser")
    assert cfg.identity_files == (Path("/keys/from-config"),)
    assert cfg.proxy_jump == "hop1,hop2"
    assert cfg.known_hosts_name == "[real.example]:2200"
    key = tmp_path / "toml_key"
    key.write_text("")
    toml = resolve_cluster(Endpoint.of(make_cluster("c", "cfg", key_path=key), settings, BATCH))
    assert toml.identity_files[0] == key
    plain = resolve_cluster(Endpoint.of(make_cluster("c", "elsewhere.example"), settings, BATCH))
    assert (plain.hostname, plain.port, plain.user) == ("elsewhere.example", 22, current_user())
    assert plain.known_hosts_name == "elsewhere.example"


def test_include_and_match_resolve_as_openssh_does(tmp_path: Path) -> None:
    """Include (relative to ~/.ssh, as OpenSSH reads it), Match blocks and first-value-wins,
    through the same resolution both backends use."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "hpc.conf").write_text(
        "Host leo\n  HostName login.leo.example\n  User inc\n"
    )
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Include {tmp_path}/conf.d/*.conf\n"
        "Match host login.leo.example\n  Port 2222\n  User matched\n"
        "Host *\n  Port 22\n  User fallback\n"
    )
    settings = Settings(ssh_config=config)
    leo = resolve_cluster(Endpoint.of(make_cluster("c", "leo"), settings, BATCH))
    assert (leo.hostname, leo.port, leo.user) == ("login.leo.example", 2222, "inc")
    other = resolve_cluster(Endpoint.of(make_cluster("c", "other.example"), settings, BATCH))
    assert (other.hostname, other.port, other.user) == ("other.example", 22, "fallback")
    toml = resolve_cluster(
        Endpoint.of(make_cluster("c", "leo", user="me", port=2022), settings, BATCH)
    )
    assert (toml.port, toml.user) == (2022, "me")  # the TOML wins over both


# --- jump hosts ------------------------------------------------------------------------------


@pytest.fixture
def bastion_pair(
    sshd_factory: SshdFactory, tmp_path: Path
) -> tuple[SshServer, SshServer, SshServer, Path]:
    """Two bastions, a target, and a config: `target` hops over bastion1."""
    forwarding = {"AllowTcpForwarding": "yes"}  # sshd's default, said out loud
    b1 = sshd_factory("bastion1", extra_config=forwarding)
    b2 = sshd_factory("bastion2", extra_config=forwarding)
    target = sshd_factory("target")
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts.read_text() for s in (b1, b2, target)))
    config = tmp_path / "ssh_config"
    config.write_text(
        config_block(b1, known_hosts=known)
        + config_block(b2, known_hosts=known)
        + config_block(target, known_hosts=known, ProxyJump="bastion1")
        + config_block(target, known_hosts=known, name="chained", ProxyJump="bastion1,bastion2")
        + config_block(
            target,
            known_hosts=known,
            name="proxied",
            ProxyCommand=f"ssh -F {config} -W %h:%p bastion1",
        )
    )
    return b1, b2, target, config


def test_proxyjump_paramiko(bastion_pair: tuple[SshServer, SshServer, SshServer, Path]) -> None:
    b1, _, target, config = bastion_pair
    transport = connect(
        Endpoint.of(make_cluster("t", "target"), Settings(ssh_config=config), BATCH)
    )
    try:
        assert run(transport, "echo through").strip() == "through"
    finally:
        transport.close()
    assert forwarded_to(b1, target.port) == 1
    assert logins(b1) == 1 and logins(target) == 1


def test_proxyjump_chain_paramiko(
    bastion_pair: tuple[SshServer, SshServer, SshServer, Path],
) -> None:
    """`ProxyJump bastion1,bastion2`: bastion1 carries bastion2, which carries the target."""
    b1, b2, target, config = bastion_pair
    transport = connect(
        Endpoint.of(make_cluster("t", "chained"), Settings(ssh_config=config), BATCH)
    )
    try:
        assert run(transport, "echo chained").strip() == "chained"
    finally:
        transport.close()
    assert forwarded_to(b1, b2.port) == 1
    assert forwarded_to(b2, target.port) == 1
    assert forwarded_to(b1, target.port) == 0


def test_proxycommand_paramiko(bastion_pair: tuple[SshServer, SshServer, SshServer, Path]) -> None:
    b1, _, target, config = bastion_pair
    transport = connect(
        Endpoint.of(make_cluster("t", "proxied"), Settings(ssh_config=config), BATCH)
    )
    try:
        assert run(transport, "echo proxied").strip() == "proxied"
    finally:
        transport.close()
    assert forwarded_to(b1, target.port) == 1


def test_proxyjump_rsync_master(bastion_pair: tuple[SshServer, SshServer, SshServer, Path]) -> None:
    b1, _, target, config = bastion_pair
    master = Master(Endpoint.of(make_cluster("t", "target"), Settings(ssh_config=config), BATCH))
    try:
        master.open()
        assert run_master(master, "echo hop").strip() == "hop"
    finally:
        master.close()
    assert forwarded_to(b1, target.port) == 1


def test_jump_host_refusing_to_forward_is_one_clear_line(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    bastion = sshd_factory("closed-bastion", extra_config={"AllowTcpForwarding": "no"})
    target = sshd_factory("target")
    config = jump_config(tmp_path, bastion, target)
    with pytest.raises(ConnectError) as caught:
        connect(Endpoint.of(make_cluster("t", "target"), Settings(ssh_config=config), BATCH))
    message = str(caught.value)
    assert "jump host did not forward to 127.0.0.1:" in message
    assert "\n" not in message


# --- agent and identities ----------------------------------------------------------------------


@pytest.fixture
def agent(client_key: Path, tmp_path: Path) -> Iterator[Path]:
    """A real ssh-agent holding the test bed's client key; yields its socket."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(client_key)], env=env, check=True, timeout=10)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_agent_keys_are_used(
    sshd_factory: SshdFactory, tmp_path: Path, agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No IdentityFile at all: the agent's key logs in (socket from IdentityAgent or env)."""
    server = sshd_factory("agent")
    config = tmp_path / "ssh_config"
    loose = {"IdentityFile": None, "IdentitiesOnly": "no"}
    config.write_text(
        config_block(server, name="via-path", IdentityAgent=str(agent), **loose)
        + config_block(server, name="via-env", IdentityAgent=None, **loose)
        + config_block(server, name="no-agent", **loose)
    )
    settings = Settings(ssh_config=config)
    connect(Endpoint.of(make_cluster("a", "via-path"), settings, BATCH)).close()
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    connect(Endpoint.of(make_cluster("a", "via-env"), settings, BATCH)).close()
    with pytest.raises(ConnectError, match="authentication failed"):
        connect(Endpoint.of(make_cluster("a", "no-agent"), settings, BATCH))  # IdentityAgent none


def test_identities_only_hides_other_agent_keys(
    sshd_factory: SshdFactory, tmp_path: Path, agent: Path
) -> None:
    """With IdentitiesOnly, an agent key that matches no IdentityFile is not offered."""
    server = sshd_factory("only")
    other = generate_key(tmp_path / "other_key")
    config = tmp_path / "ssh_config"
    config.write_text(
        config_block(server, name="strict", IdentityFile=str(other), IdentityAgent=str(agent))
        + config_block(
            server,
            name="loose",
            IdentityFile=str(other),
            IdentityAgent=str(agent),
            IdentitiesOnly="no",
        )
    )
    settings = Settings(ssh_config=config)
    with pytest.raises(ConnectError, match="authentication failed"):
        connect(Endpoint.of(make_cluster("o", "strict"), settings, BATCH))
    connect(Endpoint.of(make_cluster("o", "loose"), settings, BATCH)).close()


# --- failures that are not about keys ----------------------------------------------------------


def test_refused_and_unknown_name_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host closed\n  HostName 127.0.0.1\n  Port 1\n"
        "Host nowhere\n  HostName no-such-host.invalid\n"
        f"Host *\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"  # never the real ~/.ssh
    )
    settings = Settings(ssh_config=config)
    with pytest.raises(ConnectError, match=r"^127\.0\.0\.1:1: connection refused$"):
        connect(Endpoint.of(make_cluster("c", "closed"), settings, BATCH))
    with pytest.raises(ConnectError, match=r"cannot resolve host name 'no-such-host\.invalid'"):
        connect(Endpoint.of(make_cluster("c", "nowhere"), settings, BATCH))


# --- require_user -------------------------------------------------------------------------------


def test_require_user(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host named\n  User alice\n"
        f"Host me\n  User {current_user()}\n"
        "Host bare\n  HostName 10.0.0.1\n"
    )
    settings = Settings(ssh_config=config)
    require_user(make_cluster("n", "named"), settings)
    require_user(make_cluster("m", "me"), settings)  # says the login name explicitly: fine
    require_user(make_cluster("b", "bare", user="bob"), settings)
    require_user(make_cluster("l", None), settings)
    toml = tmp_path / "remotes.toml"
    with pytest.raises(ConfigError) as caught:
        require_user(make_cluster("b", "bare", where="clusters[2]"), settings, toml)
    assert str(caught.value) == (
        f"{toml}: clusters[2].user: missing, and {config} has no User for host 'bare';"
        ' add user = "..." or a User line'
    )


def test_silent_server_times_out_in_one_line(tmp_path: Path) -> None:
    """A port that accepts TCP but never speaks SSH fails after the connect timeout."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host silent\n  HostName 127.0.0.1\n  Port {port}\n"
            f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"  # never the real ~/.ssh
        )
        start = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            connect(
                Endpoint.of(
                    make_cluster("s", "silent"),
                    Settings(ssh_config=config),
                    SshOptions(batch=True, connect_timeout=1),
                )
            )
        assert time.monotonic() - start < 5
    # paramiko's banner timer and the handshake timer race; either way it says "too slow".
    message = str(caught.value)
    assert (
        message.startswith(f"127.0.0.1:{port}: ") and "(not an SSH server, or too slow)" in message
    )
