"""Several host key types: OpenSSH's rule is per host, not per key type, on both backends.

A host is known as soon as known_hosts files any key for it; a server key that is not among
them is CHANGED whatever its type, never "new" for accept-new to store. Checked against ssh 9.2
itself (the rsync backend runs it) with real sshd servers offering chosen key types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbatchman.errors import ConnectError
from tests.support.hostkeytypes import (
    ACCEPT,
    STRICT,
    HostKey,
    Reach,
    make_key,
    setup,
    sshd_with_host_keys,
    via_paramiko,
    via_ssh,
)
from tests.support.project import run_cli, write_config
from tests.support.sshd import SshServer
from tests.support.sshkit import make_cluster
from tests.support.trees import make_tree

BACKENDS = pytest.mark.parametrize("reach", [via_paramiko, via_ssh], ids=["paramiko", "ssh"])


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
