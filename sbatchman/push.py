"""The push operation: send each target's walked selection through its cluster's session.

This is the core of `sbatchman sync`. It runs without argv and never prints: it returns Results
and hands progress to a Reporter, so the CLI, tests and scripts all drive the same code. The
fan-out over clusters (connecting, parallelism, Ctrl-C) is fanout.Fleet's; only what one push
does is here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from sbatchman.backends import Session
from sbatchman.config import Config
from sbatchman.errors import Interrupted, SbatchmanError
from sbatchman.fanout import Fleet, Operation, Stopped, ended
from sbatchman.model import (
    Events,
    InterruptedPart,
    Job,
    Outcome,
    PartialTransfer,
    Reporter,
    Request,
    Result,
    Target,
)
from sbatchman.selection.walk import Selection, select
from sbatchman.ssh.endpoint import Answers
from sbatchman.targets import resolve_targets


def sync(config: Config, request: Request, reporter: Reporter) -> list[Result]:
    """Push every target; a failing cluster or alias never stops the others.

    Ctrl-C aborts every running transfer (backends leave no partial file at a final path) and
    returns what finished, the rest marked "interrupted".
    """
    request = replace(request, ssh=replace(request.ssh, answers=Answers()))  # config read once
    targets = resolve_targets(config, request)
    # Selecting needs no network, so a bad .sbatchmanignore is a config error (exit 2) before
    # anything connects; that one walk is also what is pushed. A file gone by its turn is a
    # note (as rsync's exit 24), one added meanwhile goes with the next sync.
    selections = walk(targets)
    try:
        with Fleet(targets, config.settings, request, reporter) as fleet:
            return fleet.run(pusher(request, selections))
    except Stopped as stop:
        return stop.results
    except KeyboardInterrupt:  # between two steps: nothing of it was recorded
        return [ended(t, "interrupted", "interrupted") for t in targets]


def walk(targets: Sequence[Target]) -> dict[int, Selection]:
    """Each target's selection (by id), walking each distinct folder + rules once."""
    walked: dict[tuple[object, ...], Selection] = {}
    selections: dict[int, Selection] = {}
    for target in targets:
        key = (target.sync_dir.local, target.rules, target.gitignore)
        if key not in walked:
            walked[key] = select(target.sync_dir.local, target.rules, gitignore=target.gitignore)
        selections[id(target)] = walked[key]
    return selections


def pusher(request: Request, selections: dict[int, Selection]) -> Operation:
    """The push of one target, as a Fleet operation."""

    def push(target: Target, session: Session, events: Events) -> Result:
        return _push_one(target, selections[id(target)], session, request, events)

    return push


def _push_one(
    target: Target, selection: Selection, session: Session, request: Request, events: Events
) -> Result:
    start = time.monotonic()
    result = Result(target.cluster.name, target.sync_dir.alias, session.name)
    try:
        events.phase("scanning")
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
