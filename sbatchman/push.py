"""The push operation: send each target's walked selection through its cluster's session.

This is the core of `sbatchman sync`. It runs without argv and never prints: it returns Results
and hands progress to a Reporter, so the CLI, tests and scripts all drive the same code. The
fan-out over clusters (connecting, parallelism, Ctrl-C) is fanout.Fleet's; only what one push
does is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sbatchman.backends import Session
from sbatchman.config import Config
from sbatchman.deleting import ReadAhead, after_push, record_landed, refuse_empty
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
from sbatchman.outcomes import attempt
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
    # anything can prompt (the walk runs while the clusters connect without prompts, and a
    # config error closes those connections); that one walk is also what is pushed. A file
    # gone by its turn is a note (as rsync's exit 24), one added meanwhile goes with the
    # next sync.
    selections: dict[int, Selection] = {}

    def walk_all() -> None:
        selections.update(walk(targets))

    try:
        fleet = Fleet(targets, config.settings, request, reporter, meanwhile=walk_all, ready=warm)
        with fleet:
            return fleet.run(pusher(request, selections))
    except Stopped as stop:
        return stop.results
    except KeyboardInterrupt:  # between two steps: nothing of it was recorded
        return [ended(t, "interrupted", "interrupted") for t in targets]


def warm(session: Session) -> None:
    """A session that can start its push's first step early does (rsync: its look at the
    cluster, while the walk still runs)."""
    start = getattr(session, "warm", None)
    if start is not None:
        start()


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
        return push_one(target, selections[id(target)], session, request, events)

    return push


def push_one(
    target: Target,
    selection: Selection,
    session: Session,
    request: Request,
    events: Events,
    *,
    whole: bool = True,
) -> Result:
    """Push one target's selection: a whole walk, or (`whole` False) a watch pass's changed
    files, which never deletes (deletes are judged against a whole walk). The record of the
    pushes before is read on a thread once the backend starts sending (deleting.ReadAhead)."""

    def transfer() -> tuple[Outcome, Sequence[str], Sequence[str]]:
        job = Job(
            target.cluster,
            target.sync_dir,
            target.sync_dir.remote,
            selection,
            request.dry_run,
            delete=whole and (request.delete or target.sync_dir.delete),
            max_delete=request.max_delete,
        )
        refuse_empty(job)
        record = ReadAhead(
            target.cluster, target.sync_dir, selection=None if job.dry_run else selection
        )
        try:
            outcome = session.push(job, _Reading(events, record))
        except (PartialTransfer, InterruptedPart) as stopped:
            record_landed(job, stopped.outcome)
            raise
        after_push(target, job, session, outcome, before=record)
        return outcome, selection.problems, selection.notes

    return attempt(target, session, request.dry_run, events, transfer)


class _Reading:
    """The push's Events, which start reading the record once the backend starts sending."""

    def __init__(self, events: Events, record: ReadAhead) -> None:
        self.events = events
        self.record = record

    def phase(self, name: str) -> None:
        if name == "sending":
            self.record.start()
        self.events.phase(name)

    def totals(self, files: int, nbytes: int) -> None:
        self.events.totals(files, nbytes)

    def sent(self, path: str, nbytes: int, why: str) -> None:
        self.events.sent(path, nbytes, why)

    def progress(self, nbytes: int) -> None:
        self.events.progress(nbytes)

    def skipped(self, path: str, why: str) -> None:
        self.events.skipped(path, why)
