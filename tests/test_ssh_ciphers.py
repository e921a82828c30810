"""The master connection prefers AES-GCM, unless the user's ssh config chooses its ciphers.

Every byte the rsync backend sends passes through the master, so its cipher is its speed; the
sshd log says which one the two ends agreed on.
"""

from __future__ import annotations

import re
from pathlib import Path

from sbatchman.config import Settings
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master
from tests.support.sshd import SshdFactory, SshServer
from tests.support.sshkit import config_block, make_cluster

BATCH = SshOptions(batch=True, connect_timeout=10)


def agreed_cipher(server: SshServer, config: Path) -> str:
    """Open and close a master through `config`; the cipher sshd logged for it."""
    master = Master(Endpoint.of(make_cluster("c", server.name), Settings(ssh_config=config), BATCH))
    try:
        master.open()
    finally:
        master.close()
    found = re.findall(r"kex: client->server cipher: (\S+)", server.log_text())
    assert found, server.log_text()
    return found[-1]


def test_the_master_prefers_aes_gcm(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory("gcm")
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server))
    assert agreed_cipher(server, config) == "aes128-gcm@openssh.com"


def test_the_users_own_ciphers_win(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory("own")
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, Ciphers="aes256-ctr"))
    assert agreed_cipher(server, config) == "aes256-ctr"
