"""Turn what one transfer did, or the error that stopped it, into the Result a report shows.

Push and fetch (and every watch pass) fail the same ways: some files landed before an error,
Ctrl-C part way, a bug of ours. One function decides what each of those looks like, so a
fetch that sent 900 of 1,000 files says so exactly as a push does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sbatchman.backends import Session
from sbatchman.errors import Interrupted, SbatchmanError
from sbatchman.model import (
    Events,
    InterruptedPart,
    Outcome,
    PartialTransfer,
    Result,
    Target,
)


def attempt(
    target: Target,
    session: Session,
    dry_run: bool,
    events: Events,
    transfer: Callable[[], tuple[Outcome, Sequence[str], Sequence[str]]],
) -> Result:
    """Run `transfer` (which returns its outcome, the problems and the notes of what it read)
    and report it; nothing it raises escapes, so one target never stops the others."""
    start = time.monotonic()
    result = Result(target.cluster.name, target.sync_dir.alias, session.name)
    notes: Sequence[str] = ()
    try:
        events.phase("scanning")
        outcome, problems, notes = transfer()
    except PartialTransfer as err:
        record(result, err.outcome)
        result.status, result.error = "failed", str(err)
    except InterruptedPart as err:  # what landed before Ctrl-C still counts
        record(result, err.outcome)
        result.status, result.error = "interrupted", str(err)
    except SbatchmanError as err:
        result.status = "interrupted" if isinstance(err, Interrupted) else "failed"
        result.error = str(err)
    except Exception as err:  # a bug of ours: fail this target, let every other one finish
        result.status = "failed"
        result.error = f"internal error, please report it: {type(err).__name__}: {err}"
    else:
        record(result, outcome)
        result.status = "dry-run" if dry_run else "ok"
        if problems:
            # What could not be read is a failure (rsync says exit 23), but the rest was sent.
            more = len(problems) - 1
            result.status = "failed"
            result.error = problems[0] + (f" (and {more} more)" if more else "")
    result.backend = session.name  # rsync missing on the cluster: the session went sftp
    result.warnings += notes
    events.phase("done" if result.status in ("ok", "dry-run") else result.status)
    result.seconds = time.monotonic() - start
    return result


def record(result: Result, outcome: Outcome) -> None:
    result.sent, result.bytes_sent = outcome.sent, outcome.bytes_sent
    result.files_sent = len(outcome.sent)
    result.skipped_newer = outcome.skipped_newer
    result.conflicts = outcome.conflicts
    result.deleted, result.kept = outcome.deleted, outcome.kept
    result.warnings = list(outcome.warnings)
