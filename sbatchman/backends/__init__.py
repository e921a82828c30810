"""The contract every transfer backend keeps, and the events it reports through.

A backend opens one Session per cluster (one connection, one prompt) and pushes each of that
cluster's sync_dirs through it, or fetches its fetch_dirs: put and get side by side. It never
prints: it tells an Events object what happens, and the report layer decides what a person or
a script sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sbatchman.backends.removal import Remover
from sbatchman.model import Events, FetchJob, Job, Outcome
from sbatchman.selection.tree import Listed


class TreeLister(Protocol):
    """A cluster's folder, listed as a fetch lists it (a selection.tree Lister); `close` ends
    whatever it opened."""

    def __call__(self, folders: Sequence[str]) -> Listed: ...

    def close(self) -> None: ...


class Session(Protocol):
    """One open connection to one cluster, reused for all of its sync_dirs."""

    name: str  # the backend's name as shown in reports: rsync, sftp, local

    def push(self, job: Job, events: Events) -> Outcome: ...

    def fetch(self, job: FetchJob, events: Events) -> Outcome:
        """The other direction over the same connection: the cluster's folder into job.local."""
        ...

    def remover(self, job: Job) -> Remover:
        """What `sync --delete` lists and removes through, in job's remote folder (removal)."""
        ...

    def lister(self, remote: str) -> TreeLister:
        """The cluster's folder `remote` folder by folder, as its fetch would read it (lstat,
        links' targets read), for `ls --fetch --explain`: no transfer, just the listings."""
        ...

    def abort(self) -> None:
        """Stop a running push at once (Ctrl-C); called from another thread, then close()."""

    def close(self) -> None: ...
