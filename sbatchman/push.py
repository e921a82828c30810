"""Fan out over clusters x sync_dirs: connect each cluster once, push its folders, collect results.

This is the core of `sbatchman sync`. It runs without argv and never prints: it returns Results
and hands progress to a Reporter, so the CLI, tests and scripts all drive the same code.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

from sbatchman.backends import Session
from sbatchman.config import Config, Settings, SyncDir
from sbatchman.errors import AuthError, ConfigError, Interrupted, SbatchmanError, UsageError
from sbatchman.model import (
    Events,
    InterruptedPart,
    Job,
    Outcome,
    PartialTransfer,
    Reporter,
    Request,
    Result,
    Status,
    Target,
)
from sbatchman.precedence import backend_for, gitignore_for, merge_excludes
from sbatchman.selection.walk import Rule, Selection, check_patterns, select
from sbatchman.ssh.endpoint import Answers
from sbatchman.ssh.resolve import require_user


def resolve_targets(config: Config, request: Request, *, connecting: bool = True) -> list[Target]:
    """Everything that can be wrong before a connection is opened fails here, as exit 2.

    `connecting=False` (ls) skips what only a connection needs: a user name to log in as.
    """
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
        if (
            connecting
            and not cluster.is_local
            and any(_chosen(d, request) for d in cluster.sync_dirs)
        ):
            require_user(cluster, config.settings, config.path, request.ssh)
        for sync_dir in cluster.sync_dirs:
            if not _chosen(sync_dir, request):
                continue
            if not sync_dir.local.is_dir():
                state = "is not a folder" if sync_dir.local.exists() else "does not exist"
                raise ConfigError(
                    f"{config.path}: {sync_dir.where}.local: {sync_dir.local} {state};"
                    " fix the path or create the folder"
                )
            if cluster.is_local:
                _refuse_nesting(sync_dir, config)
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


def _refuse_nesting(sync_dir: SyncDir, config: Config) -> None:
    """A local cluster whose folder holds its own copy would copy itself deeper every run."""
    from sbatchman.backends.local import destination

    source = sync_dir.local.resolve()
    dest = destination(sync_dir.remote).resolve()
    if dest == source or dest.is_relative_to(source) or source.is_relative_to(dest):
        raise ConfigError(
            f"{config.path}: {sync_dir.where}.remote: {dest} overlaps the local folder {source};"
            " a copy inside its own source would grow on every sync. Choose a remote folder"
            " outside it"
        )


def _chosen(sync_dir: SyncDir, request: Request) -> bool:
    return not request.aliases or sync_dir.alias in request.aliases


def sync(config: Config, request: Request, reporter: Reporter) -> list[Result]:
    """Push every target; a failing cluster or alias never stops the others.

    Ctrl-C aborts every running transfer (backends leave no partial file at a final path) and
    returns what finished, the rest marked "interrupted".
    """
    request = replace(request, ssh=replace(request.ssh, answers=Answers()))  # config read once
    targets = resolve_targets(config, request)
    # Selecting needs no network, so a bad .sbatchmanignore is a config error (exit 2) before
    # anything connects. Each push walks its folder again when its turn comes: connecting
    # (and a 2FA prompt) can take long, and files change meanwhile.
    _check_selections(targets)
    groups: dict[str, list[Target]] = {}
    for target in targets:
        groups.setdefault(target.cluster.name, []).append(target)
    events = {id(t): reporter.events(t) for t in targets}
    results: dict[int, Result] = {}
    sessions: dict[str, Session] = {}
    try:
        for target in targets:
            events[id(target)].phase("connecting")
        sessions.update(_connect(groups, config.settings, request, reporter, results))
        _transfer([groups[name] for name in sessions], sessions, request, events, results)
    except KeyboardInterrupt:
        for session in sessions.values():
            session.abort()
    finally:
        for session in sessions.values():
            session.close()
    return [results.get(id(t)) or _ended(t, "interrupted", "interrupted") for t in targets]


def _connect(
    groups: dict[str, list[Target]],
    settings: Settings,
    request: Request,
    reporter: Reporter,
    results: dict[int, Result],
) -> dict[str, Session]:
    """Open one session per cluster: all at once without prompts, then serially with them.

    The parallel pass never asks anything, so a user with keys in an agent waits for the slowest
    cluster only. Clusters that need a passphrase, password or 2FA code get a second try, one
    at a time, so prompts never interleave (skipped in batch mode: nothing may prompt).
    """
    from sbatchman.backends.open import open_session

    quiet = replace(request, ssh=replace(request.ssh, batch=True))
    sessions: dict[str, Session] = {}
    failures: dict[str, SbatchmanError] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(request.jobs, len(groups))))
    futures: dict[str, Future[Session]] = {}
    try:
        for name, group in groups.items():
            futures[name] = pool.submit(open_session, group[0], settings, quiet, reporter)
        for name, future in futures.items():
            try:
                sessions[name] = future.result()
            except SbatchmanError as err:
                failures[name] = err
    except KeyboardInterrupt:
        request.ssh.cancel.cancel()  # connections still being made fail now, not at timeout
        pool.shutdown(wait=False, cancel_futures=True)
        for future in futures.values():  # now, or when a connect still running gets there
            future.add_done_callback(_close_opened)
        _let_finish(list(futures.values()))
        raise
    pool.shutdown()
    retry = any(isinstance(f, AuthError) for f in failures.values()) and not request.ssh.batch
    try:
        with reporter.prompting() if retry else contextlib.nullcontext():
            for name, failure in failures.items():
                if retry and isinstance(failure, AuthError):
                    try:
                        sessions[name] = open_session(groups[name][0], settings, request, reporter)
                        continue
                    except SbatchmanError as again:
                        failure = again
                for target in groups[name]:
                    results[id(target)] = _ended(target, "failed", str(failure))
    except KeyboardInterrupt:  # at a prompt: the clusters already connected are closed too
        for session in sessions.values():
            session.close()
        raise
    return sessions


def _let_finish(futures: list[Future[Session]], most: float = 10.0) -> None:
    """Wait (a bounded time) for cancelled connects to end, taking any further Ctrl-C here.

    Python joins worker threads at exit; a second Ctrl-C during that join is a traceback.
    Here it is simply the same request to stop, already being carried out.
    """
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        try:
            wait(futures, timeout=deadline - time.monotonic())
            return
        except KeyboardInterrupt:
            continue


def _close_opened(future: Future[Session]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _transfer(
    groups: list[list[Target]],
    sessions: dict[str, Session],
    request: Request,
    events: dict[int, Events],
    results: dict[int, Result],
) -> None:
    """Clusters in parallel (at most --jobs), each cluster's sync_dirs one after another."""
    if not groups:
        return
    lock = threading.Lock()

    def run_cluster(group: list[Target]) -> None:
        session = sessions[group[0].cluster.name]
        for target in group:
            result = _push_one(target, session, request, events[id(target)])
            with lock:
                results[id(target)] = result

    pool = ThreadPoolExecutor(max_workers=max(1, min(request.jobs, len(groups))))
    try:
        for future in [pool.submit(run_cluster, group) for group in groups]:
            future.result()
    except KeyboardInterrupt:
        for session in sessions.values():
            session.abort()  # unblocks the workers, so the wait below is short
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def _ended(target: Target, status: Status, error: str) -> Result:
    return Result(target.cluster.name, target.sync_dir.alias, target.backend, status, error=error)


def _check_selections(targets: Sequence[Target]) -> None:
    """Walk each distinct folder + rules once, for the ConfigErrors only a walk can find."""
    seen: set[tuple[object, ...]] = set()
    for target in targets:
        key = (target.sync_dir.local, tuple(r.pattern for r in target.rules), target.gitignore)
        if key not in seen:
            seen.add(key)
            select(target.sync_dir.local, target.rules, gitignore=target.gitignore)


def _push_one(target: Target, session: Session, request: Request, events: Events) -> Result:
    start = time.monotonic()
    result = Result(target.cluster.name, target.sync_dir.alias, session.name)
    selection = Selection(target.sync_dir.local, ())
    try:
        events.phase("scanning")
        selection = select(target.sync_dir.local, target.rules, gitignore=target.gitignore)
        job = Job(
            target.cluster, target.sync_dir, target.sync_dir.remote, selection, request.dry_run
        )
        outcome = session.push(job, events)
    except PartialTransfer as err:
        _record(result, err.outcome)
        result.status, result.error = "failed", str(err)
    except InterruptedPart as err:  # what landed before Ctrl-C still counts
        _record(result, err.outcome)
        result.status, result.error = "interrupted", str(err)
    except SbatchmanError as err:
        result.status = "interrupted" if isinstance(err, Interrupted) else "failed"
        result.error = str(err)
    except Exception as err:  # a bug of ours: fail this target, let every other one finish
        result.status = "failed"
        result.error = f"internal error, please report it: {type(err).__name__}: {err}"
    else:
        _record(result, outcome)
        result.status = "dry-run" if request.dry_run else "ok"
        if selection.problems:
            # Unreadable local files are a failure (rsync says exit 23), but the rest was sent.
            more = len(selection.problems) - 1
            result.status = "failed"
            result.error = selection.problems[0] + (f" (and {more} more)" if more else "")
    result.backend = session.name  # rsync missing on the cluster: the session went sftp
    result.warnings += selection.notes
    events.phase("done" if result.status in ("ok", "dry-run") else result.status)
    result.seconds = time.monotonic() - start
    return result


def _record(result: Result, outcome: Outcome) -> None:
    result.sent, result.bytes_sent = outcome.sent, outcome.bytes_sent
    result.files_sent = len(outcome.sent)
    result.skipped_newer = outcome.skipped_newer
    result.conflicts = outcome.conflicts
    result.warnings = list(outcome.warnings)
