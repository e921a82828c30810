"""Host-key test tools: reach a server on either backend, known_hosts set-ups, key types.

OpenSSH decides "changed" versus "unknown" across key types (a host known only by its ECDSA
key that presents ED25519 has changed, not become new), so those tests need a server that
offers chosen types. `start_sshd` writes one HostKey line; the servers here list their own
keys instead, generated before the server starts. Plain module, like `sshd.py`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.config import Cluster, Settings
from sbatchman.ssh.connect import connect
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master
from tests.support.sshd import SshServer, start_sshd
from tests.support.sshkit import config_block

STRICT = SshOptions(batch=True, connect_timeout=10)
ACCEPT = SshOptions(batch=True, connect_timeout=10, accept_new_host_keys=True)
Reach = Callable[[Cluster, Settings, SshOptions], None]


def via_paramiko(cluster: Cluster, settings: Settings, options: SshOptions) -> None:
    """Connect and verify as the sftp backend does."""
    connect(Endpoint.of(cluster, settings, options)).close()


def via_ssh(cluster: Cluster, settings: Settings, options: SshOptions) -> None:
    """Connect and verify as the rsync backend does (its ssh master)."""
    master = Master(Endpoint.of(cluster, settings, options))
    try:
        master.open()
    finally:
        master.close()


def setup(
    server: SshServer, tmp_path: Path, known: str = "", **overrides: str
) -> tuple[Path, Settings]:
    """A known_hosts file holding `known`, and settings whose ssh config uses it for `server`."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known)
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, known_hosts=known_hosts, **overrides))
    return known_hosts, Settings(ssh_config=config)


KEYGEN_TYPES = {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa", "-b", "256"]}


@dataclass(frozen=True)
class HostKey:
    """One public key: its type as ssh names it (`ssh-ed25519`) and its base64 text."""

    keytype: str
    base64: str

    def line(self, name: str) -> str:
        """A known_hosts line filing this key under `name`."""
        return f"{name} {self.keytype} {self.base64}\n"


def make_key(path: Path, kind: str) -> HostKey:
    """A new unencrypted key pair of `kind` (ed25519, ecdsa) at `path`; its public half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", *KEYGEN_TYPES[kind], "-N", "", "-C", kind, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path.chmod(0o600)
    keytype, text = path.with_name(path.name + ".pub").read_text().split()[:2]
    return HostKey(keytype, text)


@contextlib.contextmanager
def sshd_with_host_keys(
    workdir: Path, name: str, client_key: Path, kinds: Sequence[str]
) -> Iterator[tuple[SshServer, dict[str, HostKey]]]:
    """A running sshd offering exactly the host key types `kinds`, and those keys by kind.

    The server's own known_hosts (and `host_key_fingerprint`) still name the ed25519 key
    `start_sshd` made, which it may not offer: tests write their own known_hosts.
    """
    keys = {kind: make_key(workdir / "keys" / f"host_{kind}", kind) for kind in kinds}
    # sshd takes one HostKey line per key; the config writer puts "key value" on a line, so a
    # value holding a newline and another "HostKey" keyword yields several lines.
    paths = [str(workdir / "keys" / f"host_{kind}") for kind in kinds]
    server = start_sshd(
        workdir / "sshd",
        name,
        client_key=client_key,
        extra_config={"HostKey": "\nHostKey ".join(paths)},
    )
    try:
        yield server, keys
    finally:
        server.stop()
