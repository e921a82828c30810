"""Host keys: unknown refused with its fingerprint, accept-new stores it, changed always refused.

Each scenario runs on both backends against a real sshd: `sshconnect.connect()` (paramiko) and
`ssh.Master` (the system ssh under rsync). The known_hosts file is per test.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sbatchman import hostkeys
from sbatchman.config import Cluster, Settings
from sbatchman.errors import ConnectError
from sbatchman.ssh import Master, SshOptions, cause
from sbatchman.sshconnect import connect
from tests.conftest import SshdFactory
from tests.support.hostkeytypes import HostKey, make_key, sshd_with_host_keys
from tests.support.project import make_tree, run_cli, write_config
from tests.support.sshd import SshServer, generate_key
from tests.support.sshkit import config_block, host_key_line, make_cluster

STRICT = SshOptions(batch=True, connect_timeout=10)
ACCEPT = SshOptions(batch=True, connect_timeout=10, accept_new_host_keys=True)


def via_paramiko(cluster: Cluster, settings: Settings, options: SshOptions) -> None:
    connect(cluster, settings, options).close()


def via_ssh(cluster: Cluster, settings: Settings, options: SshOptions) -> None:
    master = Master(cluster, settings, options)
    try:
        master.open()
    finally:
        master.close()


BACKENDS = pytest.mark.parametrize("reach", [via_paramiko, via_ssh], ids=["paramiko", "ssh"])
Reach = Callable[[Cluster, Settings, SshOptions], None]


def setup(
    server: SshServer, tmp_path: Path, known: str = "", **overrides: str
) -> tuple[Path, Settings]:
    """A known_hosts file holding `known`, and settings whose ssh config uses it for `server`."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known)
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, known_hosts=known_hosts, **overrides))
    return known_hosts, Settings(ssh_config=config)


def other_key_line(tmp_path: Path, name: str) -> str:
    """A known_hosts line filing some other ed25519 key under `name`."""
    pub = generate_key(tmp_path / "impostor").with_name("impostor.pub").read_text().split()
    return f"{name} {pub[0]} {pub[1]}\n"


@BACKENDS
def test_unknown_key_refused_with_fingerprint(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("hk")
    known_hosts, settings = setup(server, tmp_path)
    with pytest.raises(ConnectError) as caught:
        reach(make_cluster("h", "hk"), settings, STRICT)
    message = str(caught.value)
    assert message.startswith(f"unknown host key for [127.0.0.1]:{server.port}: ED25519 key ")
    assert server.host_key_fingerprint in message
    assert "--accept-new-host-keys" in message
    assert "\n" not in message
    assert known_hosts.read_text() == ""
    assert "Accepted publickey" not in server.log_text()  # refused before logging in


@BACKENDS
def test_accept_new_stores_key_then_strict_works(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("hk")
    known_hosts, settings = setup(server, tmp_path)
    reach(make_cluster("h", "hk"), settings, ACCEPT)
    stored = known_hosts.read_text().splitlines()
    assert stored == [host_key_line(server).strip()]  # `[127.0.0.1]:port ssh-ed25519 AAAA...`
    reach(make_cluster("h", "hk"), settings, STRICT)


def test_accept_new_hashes_when_config_says_so(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    known_hosts, settings = setup(sshd_factory("hk"), tmp_path, HashKnownHosts="yes")
    via_paramiko(make_cluster("h", "hk"), settings, ACCEPT)
    line = known_hosts.read_text()
    assert line.startswith("|1|") and "127.0.0.1" not in line
    via_ssh(make_cluster("h", "hk"), settings, STRICT)  # OpenSSH reads what we wrote


@BACKENDS
def test_changed_key_refused_even_with_accept_new(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("hk")
    name = f"[127.0.0.1]:{server.port}"
    known = other_key_line(tmp_path, name)
    known_hosts, settings = setup(server, tmp_path, known)
    with pytest.raises(ConnectError) as caught:
        reach(make_cluster("h", "hk"), settings, ACCEPT)
    message = str(caught.value)
    assert message.startswith(f"WARNING: HOST KEY CHANGED for {name}: the server sent ED25519 key")
    assert server.host_key_fingerprint in message
    assert f"{known_hosts}:1" in message
    assert "ssh-keygen -R" in message
    assert "\n" not in message
    assert known_hosts.read_text() == known  # nothing added or replaced
    assert "Accepted publickey" not in server.log_text()


@BACKENDS
def test_messy_known_hosts_still_verifies(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """Hashed entry, `[host]:port`, @cert-authority, @revoked (other key), junk: all loadable."""
    server = sshd_factory("hk")
    name = f"[127.0.0.1]:{server.port}"
    hashed = tmp_path / "hashed"
    hashed.write_text(host_key_line(server))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    impostor = other_key_line(tmp_path, "*").split(None, 1)[1]
    messy = (
        "# comment line\n\n"
        f"@cert-authority *.example.org,{name} {impostor}"
        f"@revoked * {impostor}"
        "this line is not a key\n"
        f"!{name},* ssh-ed25519 not-base64!!\n"
        "@weird-marker host ssh-ed25519 AAAA\n"
        f"{hashed.read_text()}"
    )
    assert messy.count("|1|") == 1
    _, settings = setup(server, tmp_path, messy)
    reach(make_cluster("h", "hk"), settings, STRICT)


def test_revoked_key_refused(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory("hk")
    line = host_key_line(server)
    known = line + "@revoked " + line
    _, settings = setup(server, tmp_path, known)
    with pytest.raises(ConnectError, match=r"REVOKED .*known_hosts:2\)"):
        via_paramiko(make_cluster("h", "hk"), settings, ACCEPT)
    with pytest.raises(ConnectError, match=r"REVOKED"):  # not "unknown ... --accept-new"
        via_ssh(make_cluster("h", "hk"), settings, ACCEPT)


@BACKENDS
def test_a_tunnel_to_localhost_is_checked_too(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """NoHostAuthenticationForLocalhost yes (common for HPC tunnels) must not switch the
    check off: a changed key behind a localhost tunnel is still refused."""
    server = sshd_factory("hk")
    impostor = other_key_line(tmp_path, f"[127.0.0.1]:{server.port}")
    _, settings = setup(server, tmp_path, impostor, NoHostAuthenticationForLocalhost="yes")
    with pytest.raises(ConnectError, match="CHANGED"):
        reach(make_cluster("h", "hk"), settings, ACCEPT)


@BACKENDS
def test_known_hosts_files_with_spaces_and_none(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ssh -G` prints file lists unquoted: a path with a space must stay one path, and
    `none` means no file (never a file called ./none)."""
    server = sshd_factory("hk")
    spaced = tmp_path / "sp ace" / "kh"
    spaced.parent.mkdir()
    spaced.write_text(host_key_line(server))
    _, settings = setup(server, tmp_path, UserKnownHostsFile=f'"{spaced}"')
    reach(make_cluster("h", "hk"), settings, STRICT)  # verified from the spaced file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "none").write_text(host_key_line(server))  # a trap: must not be read
    _, settings = setup(server, tmp_path, UserKnownHostsFile="none")
    with pytest.raises(ConnectError, match="unknown host key"):
        reach(make_cluster("h", "hk"), settings, STRICT)


@BACKENDS
def test_revoked_host_keys_file_is_honoured_or_refused(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """ssh honours RevokedHostKeys; the sftp backend cannot, so it refuses to connect
    rather than check less than ssh would."""
    server = sshd_factory("hk")
    revoked = tmp_path / "revoked_keys"
    revoked.write_text(host_key_line(server).split(None, 1)[1])
    _, settings = setup(server, tmp_path, host_key_line(server), RevokedHostKeys=str(revoked))
    with pytest.raises(ConnectError, match=r"REVOKED|revokedhostkeys"):
        reach(make_cluster("h", "hk"), settings, STRICT)


def test_host_patterns() -> None:
    """OpenSSH's matching: `*`/`?` wildcards, literal brackets, negation vetoes, no case."""
    assert hostkeys.host_matches("[127.0.0.1]:2222", "[127.0.0.1]:2222")
    assert not hostkeys.host_matches("[127.0.0.1]:2222", "1")
    assert hostkeys.host_matches("*.Example.org,other", "login.example.org")
    assert hostkeys.host_matches("login?.example.org", "login1.example.org")
    assert not hostkeys.host_matches("*.example.org,!bad.example.org", "bad.example.org")
    assert not hostkeys.host_matches("|1|bad|hash", "host")


def test_loading_never_fails_on_odd_files(tmp_path: Path) -> None:
    """Odd lines are skipped, as ssh skips them: one that counted would make a host "changed"."""
    odd = tmp_path / "odd"
    odd.write_bytes(
        b"\xff\xfe garbage\n@cert-authority\n@revoked * ssh-ed25519\nhost only\n"
        b"host ssh-ed25519 AAAA\n"  # valid base64, but no key of the type it names
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    assert hostkeys.load([odd, folder, tmp_path / "missing"]) == []


def test_cause_reads_changed_key_from_ssh_stderr() -> None:
    """The wording ssh prints for a changed key becomes our one line, fingerprint included."""
    stderr = (
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "The fingerprint for the ED25519 key sent by the remote host is\n"
        "SHA256:abcDEF123+/xyz.\n"
        "Offending ED25519 key in /home/u/.ssh/known_hosts:7\n"
        "Host key for hpc.example.org has changed and you have requested strict checking.\n"
        "Host key verification failed.\n"
    )
    assert cause(stderr) == hostkeys.changed_message(
        "hpc.example.org", "ED25519 key SHA256:abcDEF123+/xyz", "/home/u/.ssh/known_hosts:7"
    )


@BACKENDS
def test_jump_host_key_follows_the_same_policy(
    reach: Reach, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """An unknown bastion key: refused with its fingerprint, then stored by accept-new.

    The bastion's stanza leaves StrictHostKeyChecking and BatchMode to ssh's defaults ("ask"),
    so the run's policy must reach the jump too (system ssh does not pass -o to its jump).
    """
    bastion = sshd_factory("bastion")
    target = sshd_factory("target")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(target.known_hosts.read_text())
    config = tmp_path / "ssh_config"
    config.write_text(
        config_block(bastion, known_hosts=known_hosts, StrictHostKeyChecking=None, BatchMode=None)
        + config_block(target, known_hosts=known_hosts, ProxyJump="bastion")
    )
    settings = Settings(ssh_config=config)
    with pytest.raises(ConnectError) as caught:
        reach(make_cluster("t", "target"), settings, STRICT)
    message = str(caught.value)
    assert f"unknown host key for [127.0.0.1]:{bastion.port}: ED25519 key" in message
    assert bastion.host_key_fingerprint in message
    reach(make_cluster("t", "target"), settings, ACCEPT)
    assert host_key_line(bastion) in known_hosts.read_text()
    reach(make_cluster("t", "target"), settings, STRICT)


def test_check_host_ip_refuses_another_key_filed_under_the_address(tmp_path: Path) -> None:
    """CheckHostIP yes (sftp backend; ssh does it itself): the name may be right while the
    address holds another key, which OpenSSH refuses as possible DNS spoofing."""
    ours = generate_key(tmp_path / "ours").with_name("ours.pub").read_text().split()
    theirs = other_key_line(tmp_path, "10.1.2.3")
    known = tmp_path / "known_hosts"
    known.write_text(f"login.example {ours[0]} {ours[1]}\n{theirs}")
    entries = hostkeys.load([known])
    blob = hostkeys.load([known])[0].blob
    hostkeys.check_ip(entries, "10.9.9.9", blob)  # an address nobody filed: fine
    hostkeys.verify(entries, "login.example", blob, accept_new=False, store=None)
    with pytest.raises(ConnectError, match="CHANGED"):
        hostkeys.check_ip(entries, "10.1.2.3", blob)


# --- several host key types: OpenSSH's rule is per host, not per key type --------------------


Server = tuple[SshServer, dict[str, HostKey]]


@pytest.fixture
def keytypes(
    tmp_path_factory: pytest.TempPathFactory, client_key: Path, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """A server offering the host key types the test names with `kinds(...)`."""
    workdir = tmp_path_factory.mktemp("kt")
    with sshd_with_host_keys(workdir, "kt", client_key, request.param) as found:
        yield found


def kinds(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("keytypes", [names], indirect=True, ids=["+".join(names)])


@BACKENDS
@kinds("ed25519")
def test_a_host_known_by_another_key_type_has_changed_not_become_new(
    reach: Reach, keytypes: Server, tmp_path: Path
) -> None:
    """known_hosts has an ECDSA key for the host, the server has only ED25519: OpenSSH says
    REMOTE HOST IDENTIFICATION HAS CHANGED and refuses, accept-new or not; nothing is stored."""
    server, _ = keytypes
    name = f"[127.0.0.1]:{server.port}"
    known = make_key(tmp_path / "foreign", "ecdsa").line(name)
    known_hosts, settings = setup(server, tmp_path, known)
    for options in (ACCEPT, STRICT):
        with pytest.raises(ConnectError) as caught:
            reach(make_cluster("h", "kt"), settings, options)
        message = str(caught.value)
        assert message.startswith(f"WARNING: HOST KEY CHANGED for {name}: the server sent ED25519")
        assert f"{known_hosts}:1" in message and "\n" not in message
    assert known_hosts.read_text() == known
    assert "Accepted publickey" not in server.log_text()


@BACKENDS
@kinds("ed25519", "ecdsa")
def test_the_known_key_type_is_asked_for_first(
    reach: Reach, keytypes: Server, tmp_path: Path
) -> None:
    """A server with both types, known by its ECDSA key: that key is negotiated and verifies
    (ED25519, everyone's first choice, would look changed); a wrong ECDSA key is refused."""
    server, keys = keytypes
    name = f"[127.0.0.1]:{server.port}"
    known_hosts, settings = setup(server, tmp_path, keys["ecdsa"].line(name))
    reach(make_cluster("h", "kt"), settings, STRICT)
    reach(make_cluster("h", "kt"), settings, ACCEPT)
    assert known_hosts.read_text() == keys["ecdsa"].line(name)  # nothing added
    known = make_key(tmp_path / "foreign", "ecdsa").line(name)
    known_hosts.write_text(known)
    with pytest.raises(ConnectError, match=r"^WARNING: HOST KEY CHANGED .* sent ECDSA key"):
        reach(make_cluster("h", "kt"), settings, ACCEPT)
    assert known_hosts.read_text() == known


@BACKENDS
@kinds("ed25519")
def test_one_matching_key_is_enough_whatever_else_is_filed(
    reach: Reach, keytypes: Server, tmp_path: Path
) -> None:
    server, keys = keytypes
    name = f"[127.0.0.1]:{server.port}"
    foreign = make_key(tmp_path / "foreign", "ecdsa").line(name)
    _, settings = setup(server, tmp_path, foreign + keys["ed25519"].line(name))
    reach(make_cluster("h", "kt"), settings, STRICT)


@BACKENDS
@kinds("ed25519")
def test_a_key_filed_without_the_port_is_accepted_as_ssh_does(
    reach: Reach, keytypes: Server, tmp_path: Path
) -> None:
    """On a port other than 22, ssh also accepts the host's key filed under the bare name
    (and stores nothing); another key filed there makes the host new, not changed."""
    server, keys = keytypes
    bare = keys["ed25519"].line("127.0.0.1")
    known_hosts, settings = setup(server, tmp_path, bare)
    reach(make_cluster("h", "kt"), settings, STRICT)
    reach(make_cluster("h", "kt"), settings, ACCEPT)
    assert known_hosts.read_text() == bare
    other = make_key(tmp_path / "other", "ed25519").line("127.0.0.1")
    known_hosts.write_text(other)
    with pytest.raises(ConnectError, match=r"^unknown host key"):
        reach(make_cluster("h", "kt"), settings, STRICT)
    reach(make_cluster("h", "kt"), settings, ACCEPT)
    assert known_hosts.read_text() == other + keys["ed25519"].line(f"[127.0.0.1]:{server.port}")


@BACKENDS
@kinds("ed25519", "ecdsa")
def test_host_key_algorithms_limit_what_the_server_may_show(
    reach: Reach, keytypes: Server, tmp_path: Path
) -> None:
    """HostKeyAlgorithms in the ssh config is honoured: the server must show an ECDSA key,
    and a host known only by its ED25519 key has then changed (ssh says so too)."""
    server, keys = keytypes
    name = f"[127.0.0.1]:{server.port}"
    both = keys["ed25519"].line(name) + keys["ecdsa"].line(name)
    _, settings = setup(server, tmp_path, both, HostKeyAlgorithms="ecdsa-sha2-nistp256")
    reach(make_cluster("h", "kt"), settings, STRICT)
    known = keys["ed25519"].line(name)
    _, settings = setup(server, tmp_path, known, HostKeyAlgorithms="ecdsa-sha2-nistp256")
    with pytest.raises(ConnectError, match=r"^WARNING: HOST KEY CHANGED .* sent ECDSA key"):
        reach(make_cluster("h", "kt"), settings, ACCEPT)


@pytest.mark.parametrize("backend", ["sftp", "rsync"])
@kinds("ed25519")
def test_sync_refuses_a_host_known_by_another_key_type(
    backend: str,
    keytypes: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The whole CLI, --accept-new-host-keys given: exit 1, the CHANGED line, nothing stored,
    nothing sent, on both backends."""
    server, _ = keytypes
    name = f"[127.0.0.1]:{server.port}"
    known = make_key(tmp_path / "foreign", "ecdsa").line(name)
    known_hosts, settings = setup(server, tmp_path, known)
    make_tree(tmp_path / "src", {"a.txt": "a"})
    remote = server.root / "dst"
    cluster = {
        "name": "kt",
        "host": "kt",
        "ssh_config": str(settings.ssh_config),
        "sync_dirs": [{"alias": "p", "local": str(tmp_path / "src"), "remote": str(remote)}],
    }
    config = write_config(tmp_path / "sbatchman.toml", [cluster])
    args = ["sync", "--config", str(config), "-b", backend, "--accept-new-host-keys", "--json"]
    run = run_cli(capsys, *args)
    assert run.code == 1
    report = json.loads(run.out)
    error = report["targets"][0]["error"]
    assert error.startswith(f"WARNING: HOST KEY CHANGED for {name}: the server sent ED25519 key")
    assert known_hosts.read_text() == known
    assert not remote.exists()


def test_check_host_ip_wants_the_key_among_those_filed_under_the_address(tmp_path: Path) -> None:
    """As ssh: a key of another type filed under the address also counts against it, and a
    matching key there is enough whatever else is filed (checked with ssh 9.2)."""
    ours = make_key(tmp_path / "ours", "ed25519")
    foreign = make_key(tmp_path / "foreign", "ecdsa")
    known = tmp_path / "known_hosts"
    known.write_text(foreign.line("10.1.2.3"))
    blob = base64.b64decode(ours.base64)
    with pytest.raises(ConnectError, match=r"CHANGED for 10\.1\.2\.3: .* has ECDSA key SHA256:"):
        hostkeys.check_ip(hostkeys.load([known]), "10.1.2.3", blob)
    known.write_text(foreign.line("10.1.2.3") + ours.line("10.1.2.3"))
    hostkeys.check_ip(hostkeys.load([known]), "10.1.2.3", blob)


@pytest.mark.parametrize("where", ["/dev/null", "none", "under-a-file"])
def test_accept_new_says_why_a_key_cannot_be_stored(
    where: str, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """Never "store it in /dev/null": when the key cannot be kept, the line says why, and the
    flag refuses too (a swallowed key would make every later run meet a "new" host)."""
    server = sshd_factory("hk")
    (tmp_path / "a-file").write_text("")
    target = {"under-a-file": str(tmp_path / "a-file" / "kh")}.get(where, where)
    _, settings = setup(server, tmp_path, UserKnownHostsFile=target)
    reason = {
        "/dev/null": "(your ssh config's UserKnownHostsFile is /dev/null)",
        "none": "(your ssh config sets UserKnownHostsFile none)",
        "under-a-file": f"({target}: Not a directory)",
    }[where]
    for options in (STRICT, ACCEPT) if where != "under-a-file" else (ACCEPT,):
        with pytest.raises(ConnectError) as caught:
            via_paramiko(make_cluster("h", "hk"), settings, options)
        message = str(caught.value)
        assert message.startswith(f"unknown host key for [127.0.0.1]:{server.port}: ED25519 key")
        assert f"--accept-new-host-keys cannot store it {reason}" in message
        assert "rerun" not in message and "store it in" not in message
    assert "Accepted publickey" not in server.log_text()
