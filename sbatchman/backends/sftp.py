"""The paramiko SFTP engine (work in progress: see issue 4)."""

from __future__ import annotations

from sbatchman.backends import Session
from sbatchman.config import Cluster, Settings
from sbatchman.errors import ConnectError
from sbatchman.ssh import SshOptions


def open_sftp(cluster: Cluster, settings: Settings, options: SshOptions) -> Session:
    raise ConnectError("the SFTP backend is not built yet; use -b rsync")
