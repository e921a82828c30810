"""Host keys: unknown refused with its fingerprint, accept-new stores it, changed always refused.

Each scenario runs on both backends against a real sshd: `ssh.connect.connect()` (paramiko) and
`ssh.master.Master` (the system ssh under rsync). The known_hosts file is per test.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from sbatchman.config import Settings
from sbatchman.errors import ConnectError
from sbatchman.ssh import hostkeys
from sbatchman.ssh.words import cause
from tests.support.hostkeytypes import (
    ACCEPT,
    STRICT,
    Reach,
    make_key,
    setup,
    via_paramiko,
    via_ssh,
)
from tests.support.sshd import SshdFactory, generate_key
from tests.support.sshkit import config_block, host_key_line, make_cluster

BACKENDS = pytest.mark.parametrize("reach", [via_paramiko, via_ssh], ids=["paramiko", "ssh"])


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
