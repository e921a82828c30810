"""Fetch over SFTP: the cluster's folder into a local one, planned as rsync --update.

The cluster's tree is listed round by round (remote_tree, excludes judged before a folder is
ever listed), then the same transfer.run as every other engine brings the local Folder up to
it, its file contents read over SFTP (download). The local side keeps all of a local copy's
rules: temporary name then rename, never through a local link, leftovers of killed runs
removed. A dry run only lists the cluster: nothing is created locally, not even the folder.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sbatchman.backends.local import Folder, fetched
from sbatchman.backends.sftp.download import SftpFiles
from sbatchman.backends.sftp.lost import LinkLost
from sbatchman.backends.sftp.pool import ChannelPool
from sbatchman.backends.sftp.remote_tree import RemoteTree
from sbatchman.backends.sftp.scan import root_path
from sbatchman.backends.transfer import Listed
from sbatchman.backends.transfer import run as run_transfer
from sbatchman.errors import Interrupted, TransferError
from sbatchman.model import Events, FetchJob, InterruptedPart, Outcome, PartialTransfer
from sbatchman.plan import Plan
from sbatchman.selection.tree import select_tree
from sbatchman.temporaries import Temporaries


def fetch(pool: ChannelPool, stop: threading.Event, job: FetchJob, events: Events) -> Outcome:
    """One fetch_dir from the cluster into job.local; raises as a push does (PartialTransfer
    with what landed, InterruptedPart on Ctrl-C, TransferError when nothing could start)."""
    wire = pool.take()
    clean = False
    try:
        root = root_path(job.remote)
        tree = RemoteTree(wire, root)
        events.phase("scanning")
        selection = select_tree(Path(root), tree.open(), tree, job.rules)
        if stop.is_set():  # Ctrl-C while listing: nothing local is touched
            raise Interrupted("interrupted")
        files = SftpFiles(pool, wire, root, stop, events)
        folder = _Into(job.local, selection, False, events, stop, "local", files=files)
        outcome = run_transfer(selection, folder, False, job.dry_run, events)
        clean = True
        return fetched(outcome, selection)
    except LinkLost as err:
        if stop.is_set():
            raise InterruptedPart(err.outcome) from None
        raise
    except (PartialTransfer, InterruptedPart):
        clean = True  # the channel is fine
        raise
    except TransferError:
        if stop.is_set():
            raise Interrupted("interrupted") from None
        raise
    finally:
        pool.give_back(wire, clean)


class _Into(Folder):
    """The local Folder, with a connection lost while files came named as such."""

    def apply(self, plan: Plan, listed: Listed, outcome: Outcome, temporaries: Temporaries) -> None:
        try:
            super().apply(plan, listed, outcome, temporaries)
        except PartialTransfer:
            raise
        except TransferError as err:
            sent = len(outcome.sent)
            raise LinkLost(f"{err}; {sent} file(s) were fetched", outcome) from None
