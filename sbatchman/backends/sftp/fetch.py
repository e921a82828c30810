"""Fetch over SFTP: the cluster's folder into a local one (not built yet)."""

from __future__ import annotations

import threading

from sbatchman.backends.sftp.pool import ChannelPool
from sbatchman.errors import TransferError
from sbatchman.model import Events, FetchJob, Outcome


def fetch(pool: ChannelPool, stop: threading.Event, job: FetchJob, events: Events) -> Outcome:
    raise TransferError("fetch over SFTP is not built yet")
