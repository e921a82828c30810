"""`~` in ssh's own files is the password database's home on both backends, never $HOME.

OpenSSH reads ~/.ssh/config, known_hosts and identity files from getpwuid()'s home; the test
bed moves $HOME to a temp folder (conftest `isolated_env`), which is the situation users hit
with `sudo -E` or containers. Here that temp $HOME holds ssh files that would change where or
as what a backend connects; both backends must ignore them alike. Nothing here writes to the
real home; where ssh's defaults are the point, ssh may read the real ~/.ssh/config, as any
`ssh` run does, and each test uses names that no real config defines.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sbatchman.config import Cluster, Settings
from sbatchman.errors import ConnectError
from sbatchman.ssh.connect import connect
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master, policy_config
from sbatchman.ssh.resolve import resolve_cluster
from tests.support.env import IsolatedEnv
from tests.support.sshd import SshdFactory
from tests.support.sshkit import config_block, make_cluster

BATCH = SshOptions(batch=True, connect_timeout=10)
ALIAS = "sbm-home-test.invalid"  # resolves nowhere: only the wrong ~/.ssh/config routes it


def via_paramiko(cluster: Cluster, settings: Settings) -> None:
    connect(Endpoint.of(cluster, settings, BATCH)).close()


def via_ssh(cluster: Cluster, settings: Settings) -> None:
    master = Master(Endpoint.of(cluster, settings, BATCH))
    try:
        master.open()
    finally:
        master.close()


PASSWD_HOME = pwd.getpwuid(os.getuid()).pw_dir  # what ssh means by ~

BACKENDS = pytest.mark.parametrize("reach", [via_paramiko, via_ssh], ids=["paramiko", "ssh"])
Reach = Callable[[Cluster, Settings], None]


def test_the_fake_home_is_not_the_passwd_home(isolated_env: IsolatedEnv) -> None:
    assert os.environ["HOME"] == str(isolated_env.home)
    assert str(isolated_env.home) != PASSWD_HOME


@BACKENDS
def test_a_config_under_dollar_home_routes_nothing(
    reach: Reach, sshd_factory: SshdFactory, isolated_env: IsolatedEnv
) -> None:
    """$HOME/.ssh/config would send the alias to a working server; ssh reads the passwd
    home's config instead, so on both backends the alias stays an unresolvable name."""
    server = sshd_factory("home")
    dot_ssh = isolated_env.home / ".ssh"
    dot_ssh.mkdir()
    (dot_ssh / "config").write_text(config_block(server, name=ALIAS))
    cluster = make_cluster("h", ALIAS, user=server.user)
    with pytest.raises(ConnectError, match=r"resolve|unknown host name"):
        reach(cluster, Settings())
    assert "Accepted publickey" not in server.log_text()


@BACKENDS
def test_a_key_under_dollar_home_is_not_offered(
    reach: Reach, sshd_factory: SshdFactory, isolated_env: IsolatedEnv, tmp_path: Path
) -> None:
    """`IdentityFile ~/.ssh/x` is the passwd home's file for ssh; the only authorized key sits
    under $HOME, so both backends must fail to log in alike."""
    server = sshd_factory("home")
    dot_ssh = isolated_env.home / ".ssh"
    dot_ssh.mkdir()
    shutil.copy(server.client_key, dot_ssh / "id_sbm_home_test")
    (dot_ssh / "id_sbm_home_test").chmod(0o600)
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, IdentityFile="~/.ssh/id_sbm_home_test"))
    settings = Settings(ssh_config=config)
    resolved = resolve_cluster(Endpoint.of(make_cluster("h", server.name), settings, BATCH))
    assert resolved.identity_files == (Path(PASSWD_HOME, ".ssh", "id_sbm_home_test"),)
    with pytest.raises(ConnectError, match=r"authentication failed|[Pp]ermission denied"):
        reach(make_cluster("h", server.name), settings)
    assert "Accepted publickey" not in server.log_text()


def test_the_rsync_policy_config_includes_the_passwd_home_config(isolated_env: IsolatedEnv) -> None:
    text = policy_config(Endpoint.of(make_cluster("h", "host"), Settings(), BATCH))
    include = [line for line in text.splitlines() if line.startswith("Include ")]
    assert include == [f"Include {Path(PASSWD_HOME, '.ssh', 'config')} /etc/ssh/ssh_config"]
    assert "~" not in text
