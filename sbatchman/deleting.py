"""What a push does after its transfer: keep the record of what landed, and run `--delete`.

The order is the safety: the delete runs only after the transfer succeeded, reads nothing but
the folders the record leads to, and removes only what deletes.plan_deletes chose. Without a
record it deletes nothing (a warning); an empty local folder, an unreadable listing or more
deletions than --max-delete fail the target and delete nothing. The record is written after
every transfer that finished (one with unreadable local files too: what it sent did land),
delete or not; one stopped part way adds what it landed; a dry run writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from itertools import groupby
from pathlib import Path

from sbatchman import records
from sbatchman.backends import Session
from sbatchman.backends.removal import Remover
from sbatchman.backends.transfer import Listed
from sbatchman.config import Cluster, SyncDir
from sbatchman.deletes import (
    DeletePlan,
    as_pushed,
    candidates,
    folders_to_list,
    next_record,
    plan_deletes,
    recorded,
)
from sbatchman.errors import Interrupted, SbatchmanError, TransferError
from sbatchman.model import InterruptedPart, Job, Outcome, PartialTransfer, Target
from sbatchman.records import Record
from sbatchman.selection.walk import Selection, explain


def refuse_empty(job: Job) -> None:
    """A delete from a missing or empty local folder is almost always a mistake (an unmounted
    disk, a wrong path): the target fails before anything is pushed or removed."""
    if not job.delete:
        return
    root = job.sync_dir.local
    if not root.is_dir():
        raise TransferError(
            f"nothing deleted: the local folder {root} is missing; fix the path or sync"
            " without --delete"
        )
    if not job.selection.entries and not job.selection.problems:
        raise TransferError(
            f"nothing deleted: the local folder {root} is empty (or all of it is excluded);"
            " --delete refuses to empty the cluster's copy. Sync without --delete"
        )


def record_landed(job: Job, outcome: Outcome, folder: Path | None = None) -> None:
    """A transfer stopped part way: add the files that did land to the record, and nothing
    else (what it did not reach is judged again by the next push)."""
    if job.dry_run or not outcome.sent:
        return
    local = job.sync_dir.local
    new = dict(records.load(job.cluster, job.remote, folder, local=local) or {})
    entries = {e.path: e for e in job.selection.entries}
    new.update({p: recorded(entries[p]) for p, _ in outcome.sent if p in entries})
    with contextlib.suppress(OSError):  # the push's own error is the one to report
        records.save(job.cluster, job.remote, new, folder, local=local)


class ReadAhead:
    """The record of the pushes before this one, and (given a selection) that selection as the
    record will hold it once sent (deletes.as_pushed), both made on a thread from `start()` on
    (when the transfer begins sending, mostly waiting on the network); calling it waits for
    the pair (starting the work first, if nothing did).

    For a 50,000-file tree the pair is some 0.05 s of work (reading the record alone took
    0.15 s before it was kept in columns): after the transfer it would be wall time added to
    every push; while the push still walks or plans, it slows those (one interpreter lock).
    Anything that goes wrong reading the record means no record, as records.load says.
    """

    def __init__(
        self,
        cluster: Cluster,
        sync_dir: SyncDir,
        folder: Path | None = None,
        selection: Selection | None = None,
    ) -> None:
        self._box: list[Record | None] = []
        remote, local = sync_dir.remote, sync_dir.local

        def work() -> None:
            before = records.load(cluster, remote, folder, local=local)
            self._box.append(before)
            if selection is not None:
                self._box.append(as_pushed(selection, before))

        self._thread = threading.Thread(target=work, name="sbatchman-record", daemon=True)
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def __call__(self) -> tuple[Record | None, Record | None]:
        """(the record before, the selection as pushed: None when not asked for or lost)."""
        self.start()
        self._thread.join()
        box = [*self._box, None, None]
        return box[0], box[1]


def after_push(
    target: Target,
    job: Job,
    session: Session,
    outcome: Outcome,
    folder: Path | None = None,
    *,
    before: ReadAhead | None = None,
) -> None:
    """Record what the push landed and, with --delete, remove what the record allows.

    `before` gives the record (and the selection as pushed) read ahead, else they are made
    here. Raises PartialTransfer (the push's outcome kept) when a safety stop fails the
    target.
    """
    cluster, remote = job.cluster, job.remote
    local = job.sync_dir.local
    if before is not None:
        old, pushed = before()
    else:
        old, pushed = records.load(cluster, remote, folder, local=local), None

    def keep(plan: DeletePlan | None = None) -> None:
        if job.dry_run:
            return
        new = next_record(old, job.selection, outcome, plan, outcome.deleted, pushed=pushed)
        if new == old:  # the usual push, nothing changed: the file already says it
            return
        try:
            records.save(cluster, remote, new, folder, local=local)
        except OSError as err:
            outcome.warnings.append(
                f"could not write the record of this push ({err.strerror or err}): a later"
                " --delete will not remove what it sent"
            )

    if job.delete and job.selection.problems:  # the push fails (exit 1): no deletes on it
        outcome.warnings.append("nothing deleted: part of the local folder could not be read")
    if not job.delete or job.selection.problems:
        keep()
        return
    if old is None:
        outcome.warnings.append(
            "nothing deleted: no record of an earlier push to this folder (it starts with this"
            " push; the next --delete can use it)"
        )
        keep()
        return
    root = job.sync_dir.local

    def protected(path: str, is_dir: bool) -> bool:
        if os.path.lexists(root / path):
            return True  # still here: left out of the selection, so excluded or unreadable
        try:
            verdict = explain(root, target.rules, path + "/" * is_dir, gitignore=target.gitignore)
        except Exception:  # anything unclear about a path keeps it
            return True
        return not verdict.pushed

    paths = candidates(old, job.selection, protected)
    if not paths:
        keep()
        return
    try:
        plan, failed = _delete(job, session, outcome, old, paths)
    except Interrupted:
        keep()
        raise InterruptedPart(outcome) from None
    except SbatchmanError as err:  # the push's counts stay in the report
        keep()
        raise PartialTransfer(f"nothing deleted: {err}", outcome) from None
    keep(plan)
    if failed:
        path, why = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise PartialTransfer(f"could not delete {path} on the cluster: {why}{more}", outcome)


def _delete(
    job: Job, session: Session, outcome: Outcome, old: Record, paths: list[str]
) -> tuple[DeletePlan | None, dict[str, str]]:
    """List, plan, check the limit, remove; (None, {}) when nothing is to change (dry run).
    A stop raises TransferError before anything is removed."""
    remover = session.remover(job)
    try:
        listed = _list_down(remover, folders_to_list(old, paths))
        if listed.errors:
            raise TransferError(next(iter(listed.errors.values())))
        plan = plan_deletes(old, paths, listed.listings)
        outcome.kept = plan.kept
        if plan.count > job.max_delete:
            raise TransferError(
                f"{plan.count} paths would be deleted, more than --max-delete"
                f" {job.max_delete}; check with --dry-run, then raise --max-delete"
            )
        planned = [*plan.files, *plan.folders]
        if job.dry_run:
            outcome.deleted = planned
            return None, {}
        failed = remover.remove(plan.files, plan.folders)
    finally:
        remover.close()
    outcome.deleted = [p for p in planned if p not in failed]
    return plan, failed


def _list_down(remover: Remover, wanted: list[str]) -> Listed:
    """List `wanted` one depth at a time, each folder only where its parent's listing shows a
    real folder: a symlink on the cluster is never opened, let alone read through."""
    listed = Listed()
    depth_of = lambda folder: folder.count("/") + bool(folder)  # noqa: E731
    for _, level in groupby(sorted(wanted, key=depth_of), key=depth_of):
        reachable = [f for f in level if not f or _real_folder(listed, f)]
        got = remover.listings(reachable)
        listed.listings.update(got.listings)
        listed.errors.update(got.errors)
        if listed.errors:
            break
    return listed


def _real_folder(listed: Listed, folder: str) -> bool:
    parent, _, name = folder.rpartition("/")
    above = listed.listings.get(parent)
    found = above.get(name) if above is not None else None
    return found is not None and found.kind == "dir"
