"""The fetch operation: bring each target's fetch_dir back from its cluster into its local folder.

The core of `sbatchman fetch`, the mirror of push.py: it runs without argv, never prints, and
uses the same fan-out (one login per cluster, clusters in parallel, Ctrl-C) and the same
Result. What is selected is decided on the cluster's tree, by the backend that reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sbatchman.backends import Session
from sbatchman.config import Config, FetchDir
from sbatchman.fanout import Fleet, Operation, Stopped, ended
from sbatchman.model import Events, FetchJob, Outcome, Reporter, Request, Result, Target
from sbatchman.outcomes import attempt
from sbatchman.ssh.endpoint import Answers
from sbatchman.targets import resolve_fetch_targets


def fetch(config: Config, request: Request, reporter: Reporter) -> list[Result]:
    """Fetch every target; a failing cluster or alias never stops the others."""
    request = replace(request, ssh=replace(request.ssh, answers=Answers()))  # config read once
    targets = resolve_fetch_targets(config, request)
    try:
        with Fleet(targets, config.settings, request, reporter) as fleet:
            return fleet.run(fetcher(request))
    except Stopped as stop:
        return stop.results
    except KeyboardInterrupt:  # between two steps: nothing of it was recorded
        return [ended(t, "interrupted", "interrupted") for t in targets]


def fetcher(request: Request) -> Operation:
    """The fetch of one target, as a Fleet operation."""

    def fetch_one(target: Target, session: Session, events: Events) -> Result:
        fetch_dir = target.sync_dir
        assert isinstance(fetch_dir, FetchDir)

        def transfer() -> tuple[Outcome, Sequence[str], Sequence[str]]:
            job = FetchJob(
                target.cluster,
                fetch_dir,
                fetch_dir.remote,
                fetch_dir.local,
                target.rules,
                request.dry_run,
            )
            return session.fetch(job, events), (), ()

        return attempt(target, session, request.dry_run, events, transfer)

    return fetch_one
