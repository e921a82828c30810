"""Fan out over clusters x sync_dirs: connect each cluster once, push its folders, collect results.

This is the core of `sbatchman sync`. It runs without argv and never prints: it returns Results
and hands progress to a Reporter, so the CLI, tests and scripts all drive the same code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sbatchman.backends import Events, Job, Session
from sbatchman.config import Cluster, Config, SyncDir, backend_for, gitignore_for, merge_excludes
from sbatchman.errors import ConfigError, SbatchmanError, UsageError
from sbatchman.selection import Rule, check_patterns, select
from sbatchman.ssh import SshOptions


@dataclass(frozen=True)
class Request:
    """What the user asked `sync` to do, already parsed from the command line."""

    clusters: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    backend: str | None = None
    gitignore: bool | None = None
    dry_run: bool = False
    jobs: int = 4
    ssh: SshOptions = field(default_factory=SshOptions)


@dataclass(frozen=True)
class Target:
    """One sync_dir bound for one cluster, with everything decided that the config decides."""

    cluster: Cluster
    sync_dir: SyncDir
    backend: str
    rules: tuple[Rule, ...]
    gitignore: bool


Status = Literal["ok", "failed", "dry-run"]


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
    seconds: float = 0.0
    error: str | None = None


class Reporter(Protocol):
    """Where the core sends what a person or a script might want to see."""

    def notice(self, message: str) -> None: ...
    def events(self, target: Target) -> Events: ...


def resolve_targets(config: Config, request: Request) -> list[Target]:
    """Everything that can be wrong before a connection is opened fails here, as exit 2."""
    if request.backend is not None and request.backend not in ("rsync", "sftp"):
        raise UsageError(f"unknown backend {request.backend!r}; choose rsync or sftp")
    known = [c.name for c in config.clusters]
    for name in request.clusters:
        if name not in known:
            raise UsageError(f"-c {name}: no such cluster; known: {', '.join(known) or '(none)'}")
    clusters = [c for c in config.clusters if not request.clusters or c.name in request.clusters]
    aliases = sorted({d.alias for c in clusters for d in c.sync_dirs})
    for alias in request.aliases:
        if alias not in aliases:
            raise UsageError(f"-a {alias}: no such alias; known: {', '.join(aliases) or '(none)'}")
    check_patterns([Rule(p, "-e") for p in request.excludes])
    targets: list[Target] = []
    for cluster in clusters:
        for sync_dir in cluster.sync_dirs:
            if request.aliases and sync_dir.alias not in request.aliases:
                continue
            if not sync_dir.local.is_dir():
                state = "is not a folder" if sync_dir.local.exists() else "does not exist"
                raise ConfigError(
                    f"{config.path}: {sync_dir.where}.local: {sync_dir.local} {state};"
                    " fix the path or create the folder"
                )
            rules = merge_excludes(config.settings, cluster, sync_dir, request.excludes)
            check_patterns(rules)
            targets.append(
                Target(
                    cluster,
                    sync_dir,
                    backend_for(config.settings, cluster, request.backend),
                    rules,
                    gitignore_for(config.settings, cluster, sync_dir, request.gitignore),
                )
            )
    if not targets:
        raise UsageError(f"nothing to sync: no cluster in {config.path} has a sync_dir selected")
    return targets


def sync(config: Config, request: Request, reporter: Reporter) -> list[Result]:
    """Push every target; a failing cluster or alias never stops the others."""
    from sbatchman.backends.open import open_session

    targets = resolve_targets(config, request)
    by_cluster: dict[str, list[Target]] = {}
    for target in targets:
        by_cluster.setdefault(target.cluster.name, []).append(target)
    results: dict[int, Result] = {}
    sessions: dict[str, Session] = {}
    try:
        # Connect one cluster at a time, so password / 2FA / host-key prompts never interleave.
        for name, group in by_cluster.items():
            try:
                sessions[name] = open_session(group[0], config.settings, request, reporter)
            except SbatchmanError as err:
                for target in group:
                    results[id(target)] = _failed(target, str(err))
        live = [g for name, g in by_cluster.items() if name in sessions]
        lock = threading.Lock()

        def run_cluster(group: list[Target]) -> None:
            session = sessions[group[0].cluster.name]
            for target in group:
                result = _push_one(target, session, request, reporter.events(target))
                with lock:
                    results[id(target)] = result

        with ThreadPoolExecutor(max_workers=max(1, request.jobs)) as pool:
            for future in [pool.submit(run_cluster, g) for g in live]:
                future.result()
    finally:
        for session in sessions.values():
            session.close()
    return [results[id(t)] for t in targets]


def _failed(target: Target, error: str) -> Result:
    return Result(target.cluster.name, target.sync_dir.alias, target.backend, "failed", error=error)


def _push_one(target: Target, session: Session, request: Request, events: Events) -> Result:
    start = time.monotonic()
    result = Result(target.cluster.name, target.sync_dir.alias, session.name)
    try:
        events.phase("scanning")
        selection = select(target.sync_dir.local, target.rules, gitignore=target.gitignore)
        job = Job(
            target.cluster, target.sync_dir, target.sync_dir.remote, selection, request.dry_run
        )
        outcome = session.push(job, events)
    except SbatchmanError as err:
        result.status, result.error = "failed", str(err)
        events.phase("failed")
    else:
        result.status = "dry-run" if request.dry_run else "ok"
        result.sent, result.bytes_sent = outcome.sent, outcome.bytes_sent
        result.files_sent = len(outcome.sent)
        result.skipped_newer = outcome.skipped_newer
        result.warnings = [*selection.problems, *outcome.warnings]
        events.phase("done")
    result.seconds = time.monotonic() - start
    return result


def exit_code(results: Sequence[Result]) -> int:
    """0 only when every target succeeded."""
    return 1 if any(r.status == "failed" for r in results) else 0
