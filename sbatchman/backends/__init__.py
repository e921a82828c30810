"""The contract every transfer backend keeps, and the events it reports through.

A backend opens one Session per cluster (one connection, one prompt) and pushes each of that
cluster's sync_dirs through it. It never prints: it tells an Events object what happens, and the
report layer decides what a person or a script sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sbatchman.config import Cluster, SyncDir
from sbatchman.errors import Interrupted, TransferError
from sbatchman.selection import Selection


@dataclass(frozen=True)
class Job:
    """One sync_dir going to one cluster; `remote` is already normalised (see paths.remote_path)."""

    cluster: Cluster
    sync_dir: SyncDir
    remote: str
    selection: Selection
    dry_run: bool


@dataclass
class Outcome:
    """What a push did (or, on a dry run, would do)."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (path, why) per file
    bytes_sent: int = 0
    skipped_newer: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Kept on the cluster although the tree has something else there: (path, why), see plan.
    conflicts: list[tuple[str, str]] = field(default_factory=list)


class PartialTransfer(TransferError):
    """Some files could not be written and the rest were; `outcome` says what landed.

    The report shows both: a failed target that still sent 900 of 1,000 files should say so.
    """

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


class InterruptedPart(Interrupted):
    """Ctrl-C stopped a push after some files landed; `outcome` says which, for the report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


class Events(Protocol):
    """Progress of one cluster x alias target; called from worker threads."""

    def phase(self, name: str) -> None: ...
    def totals(self, files: int, nbytes: int) -> None: ...
    def sent(self, path: str, nbytes: int, why: str) -> None: ...
    def progress(self, nbytes: int) -> None: ...
    def skipped(self, path: str, why: str) -> None: ...


class Session(Protocol):
    """One open connection to one cluster, reused for all of its sync_dirs."""

    name: str  # the backend's name as shown in reports: rsync, sftp, local

    def push(self, job: Job, events: Events) -> Outcome: ...

    def abort(self) -> None:
        """Stop a running push at once (Ctrl-C); called from another thread, then close()."""

    def close(self) -> None: ...
