"""The words every layer shares: what was asked, what each target is, what happened to it.

Kept low in the tree so that backends, the fan-out and the report agree on one vocabulary
without importing each other: a backend never needs the coordinator to know what a Job is.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from sbatchman.config import Cluster, FetchDir, SyncDir
from sbatchman.errors import ExitCode, Interrupted, TransferError
from sbatchman.selection.rules import Rule
from sbatchman.selection.walk import Selection
from sbatchman.ssh.endpoint import SshOptions

JOBS = 8
"""Clusters pushed at once unless -j says otherwise (the CLI and every other caller)."""


@dataclass(frozen=True)
class Request:
    """What the user asked `sync` to do, already parsed from the command line."""

    clusters: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    backend: str | None = None
    gitignore: bool | None = None
    dry_run: bool = False
    jobs: int = JOBS
    delete: bool = False  # sync --delete: on for every target this run (config: delete = true)
    max_delete: int = 1000  # more planned deletions fail the target and delete nothing
    ssh: SshOptions = field(default_factory=SshOptions)


Direction = Literal["push", "fetch"]


@dataclass(frozen=True)
class Target:
    """One sync_dir bound for one cluster (or a fetch_dir coming back from it), with everything
    decided that the config decides."""

    cluster: Cluster
    sync_dir: SyncDir  # a FetchDir for a fetch
    backend: str
    rules: tuple[Rule, ...]
    gitignore: bool

    @property
    def direction(self) -> Direction:
        return "fetch" if isinstance(self.sync_dir, FetchDir) else "push"


Status = Literal["ok", "failed", "dry-run", "interrupted"]


@dataclass
class Result:
    cluster: str
    alias: str
    backend: str
    status: Status = "ok"
    files_sent: int = 0
    bytes_sent: int = 0
    sent: list[tuple[str, str]] = field(default_factory=list)
    skipped_newer: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # removed (dry run: would be) by --delete
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, why) --delete kept
    seconds: float = 0.0
    error: str | None = None


class Reporter(Protocol):
    """Where the core sends what a person or a script might want to see."""

    def notice(self, message: str) -> None: ...
    def events(self, target: Target) -> Events: ...
    def prompting(self) -> AbstractContextManager[None]:
        """Around the phase that may ask the user something: live output must hold still."""
        ...


@dataclass(frozen=True)
class Job:
    """One sync_dir going to one cluster; `remote` is already normalised (see paths.remote_path)."""

    cluster: Cluster
    sync_dir: SyncDir
    remote: str
    selection: Selection
    dry_run: bool
    delete: bool = False  # remove what earlier pushes landed and is gone locally (deletes.py)
    max_delete: int = 1000


@dataclass(frozen=True)
class FetchJob:
    """One fetch_dir coming back from one cluster into `local`; `remote` as for Job.

    No selection yet: what is selected is known only once the cluster's tree is listed.
    """

    cluster: Cluster
    fetch_dir: FetchDir
    remote: str
    local: Path
    rules: tuple[Rule, ...]
    dry_run: bool


@dataclass
class Outcome:
    """What a push or fetch did (or, on a dry run, would do); `skipped_newer` are files kept
    because the destination's copy is newer."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (path, why) per file
    bytes_sent: int = 0
    skipped_newer: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Kept on the cluster although the tree has something else there: (path, why), see plan.
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # see Result
    kept: list[tuple[str, str]] = field(default_factory=list)


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


def exit_code(results: Sequence[Result]) -> ExitCode:
    """0 only when every target succeeded; an interruption outranks a failure."""
    if any(r.status == "interrupted" for r in results):
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED if any(r.status == "failed" for r in results) else ExitCode.OK
