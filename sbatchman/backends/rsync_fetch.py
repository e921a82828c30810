"""Fetch with the system rsync: the cluster's folder into a local one (not built yet)."""

from __future__ import annotations

from sbatchman.backends.rsync_info import RsyncInfo
from sbatchman.errors import TransferError
from sbatchman.model import Events, FetchJob, Outcome
from sbatchman.ssh.master import Master


def fetch(
    info: RsyncInfo, master: Master | None, stall_timeout: float, job: FetchJob, events: Events
) -> Outcome:
    raise TransferError("fetch through rsync is not built yet; use -b sftp")
