"""Decide what `sync --delete` removes on the cluster: only what sbatchman pushed, nobody changed
since, is gone locally (not merely excluded) and is reached without following a symlink.

`rsync --delete` removes whatever the source lacks, a job's outputs and checkpoints included.
This planner never looks at what the cluster has beyond the paths the record names: a path is a
candidate only if an earlier push recorded it (rule 1), it is kept if the cluster's copy differs
from the record in kind, size or mtime (rule 2), it must be absent from the local folder and not
excluded there (rule 3, judged by the caller, who can read the local tree), and every folder on
its way down from the remote folder must be a real folder in the listings (rule 4). Folders go
only when what is removed leaves them empty. Pure: the backends list and remove, this decides.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

from sbatchman.model import Outcome
from sbatchman.plan import DestStat, seconds
from sbatchman.records import Record, Recorded
from sbatchman.selection.walk import Entry, Selection

MAX_DELETE = 1000
"""More planned deletions than this stop the target, deleting nothing (--max-delete)."""

# Why a recorded path stays on the cluster (the words reports, --json and docs/cli.md use).
CHANGED = "changed on the cluster since sbatchman pushed it"
NOT_EMPTY = "folder holds files sbatchman did not push"
THROUGH_LINK = "reached through a symlink on the cluster"
OTHER_KIND = "something else stands there on the cluster now"

Listings = Mapping[str, Mapping[str, DestStat] | None]  # folder -> entries (None: missing)


@dataclass
class DeletePlan:
    """What to remove, what is kept and why, and which recorded paths are gone anyway."""

    files: list[str] = field(default_factory=list)  # files and links
    folders: list[str] = field(default_factory=list)  # deepest first: each empty by its turn
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    gone: list[str] = field(default_factory=list)  # recorded, no longer on the cluster

    @property
    def count(self) -> int:
        return len(self.files) + len(self.folders)


def candidates(
    record: Mapping[str, Recorded], selection: Selection, protected: Callable[[str, bool], bool]
) -> list[str]:
    """Recorded paths the local selection no longer has and `protected` (path, is_dir) does not
    keep: the caller says True for what still exists locally or an exclude matches."""
    kinds = {e.path: e.kind for e in selection.entries}
    out = []
    for path in sorted(record.keys() - kinds.keys()):
        if _under_non_dir(path, kinds):
            continue
        if not protected(path, record[path].kind == "dir"):
            out.append(path)
    return out


def _under_non_dir(path: str, kinds: Mapping[str, str]) -> bool:
    """Below a path that is now a file or link locally: the push replaces what is there."""
    parent = posixpath.dirname(path)
    while parent:
        if kinds.get(parent, "dir") != "dir":
            return True
        parent = posixpath.dirname(parent)
    return False


def folders_to_list(record: Mapping[str, Recorded], paths: Iterable[str]) -> list[str]:
    """Every folder whose listing the plan reads: each path's parents ("" is the remote folder)
    and each recorded folder itself (is it empty once the rest is gone?). Shallowest first."""
    wanted: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while True:
            wanted.add(parent)
            if not parent:
                break
            parent = posixpath.dirname(parent)
        if record[path].kind == "dir":
            wanted.add(path)
    return sorted(wanted, key=lambda p: (p.count("/") + bool(p), p))


def plan_deletes(
    record: Mapping[str, Recorded], paths: Sequence[str], listings: Listings
) -> DeletePlan:
    """Apply rules 1, 2 and 4 (rule 3 chose `paths`) to what the cluster's listings show.

    Every folder of folders_to_list(record, paths) must be in `listings` (None: missing);
    a listing the caller could not read must stop the delete before this is called.
    """
    result = DeletePlan()
    dirs: list[str] = []
    for path in paths:
        found = _reached(path, listings)
        if found is THROUGH:
            result.kept.append((path, THROUGH_LINK))
            continue
        if found is None:
            result.gone.append(path)
            continue
        assert isinstance(found, DestStat)
        recorded = record[path]
        if recorded.kind != found.kind:
            result.kept.append((path, OTHER_KIND))
        elif recorded.kind == "dir":
            dirs.append(path)
        elif (
            found.size != recorded.size
            or (recorded.kind == "file" and found.mtime != recorded.mtime)
            or (recorded.kind == "link" and found.target != recorded.target)
        ):
            result.kept.append((path, CHANGED))
        else:
            result.files.append(path)
    removed = set(result.files)
    for folder in sorted(dirs, key=lambda p: (-p.count("/"), p)):
        inside = listings.get(folder)
        if inside is None:  # gone since its parent was listed
            result.gone.append(folder)
        elif all(_join(folder, name) in removed for name in inside):
            result.folders.append(folder)
            removed.add(folder)
        else:
            result.kept.append((folder, NOT_EMPTY))
    result.kept.sort()
    return result


THROUGH = object()  # a folder on the way is a symlink (or not a folder) on the cluster


def _reached(path: str, listings: Listings) -> DestStat | object | None:
    """What the cluster has at `path`, found without following any symlink; None: nothing."""
    parts = path.split("/")
    folder = ""
    for depth, name in enumerate(parts):
        listing = listings.get(folder)
        if listing is None:
            return None
        found = listing.get(name)
        if found is None:
            return None
        if depth == len(parts) - 1:
            return found
        if found.kind != "dir":
            return THROUGH
        folder = _join(folder, name)
    raise AssertionError("unreachable")  # pragma: no cover


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def recorded(entry: Entry) -> Recorded:
    """What a push of `entry` leaves on the cluster, as the record keeps it."""
    if entry.kind == "file":
        return Recorded("file", entry.size, seconds(entry.mtime_ns))
    if entry.kind == "link":
        return Recorded("link", entry.size, target=entry.target)
    return Recorded("dir")


def as_pushed(selection: Selection, before: Mapping[str, Recorded] | None = None) -> Record:
    """Every selected entry as recorded(entry) has it: what the record holds after a push that
    sent it all. It depends on the walk alone, so it can be built while the transfer runs.

    A value equal to the one in `before` is that very object: a push of an unchanged tree then
    makes no new ones (the garbage collector never untracks a tuple subclass: 50,000 new
    Recordeds cost a full collection) and comparing the records compares identities."""
    was = (before or {}).get
    make = tuple.__new__  # Recorded(...) minus its Python-level __new__
    out: Record = {}
    for e in selection.entries:
        if e.kind == "file":
            now: tuple[str, int, int, str | None] = (
                "file",
                e.size,
                e.mtime_ns // 1_000_000_000,  # plan.seconds
                None,
            )
        elif e.kind == "link":
            now = ("link", e.size, 0, e.target)
        else:
            now = _DIR
        same = was(e.path)
        out[e.path] = same if same == now else make(Recorded, now)
    return out


_DIR = Recorded("dir")


def next_record(
    old: Mapping[str, Recorded] | None,
    selection: Selection,
    outcome: Outcome,
    plan: DeletePlan | None = None,
    deleted: Iterable[str] = (),
    *,
    pushed: Mapping[str, Recorded] | None = None,
) -> Record:
    """The record after a push that succeeded: the files it sent, the folders and links it made
    sure of (a link holds no data: an identical one is as good as ours), and what was
    recorded before and is still the same file (so still sbatchman's). A file kept
    because the cluster's copy is newer, or in conflict, is not ours any more; neither is a
    path the delete found changed, removed, or already gone. Unselected recorded paths that
    were not looked at (delete off, or protected) stay: a later delete still checks them.

    `pushed` is as_pushed(selection), when it was built ahead."""
    old = old or {}
    pushed = pushed if pushed is not None else as_pushed(selection)
    new = dict(pushed)
    for path in chain(outcome.skipped_newer, (path for path, _ in outcome.conflicts)):
        new.pop(path, None)
    if not new.items() <= old.items():  # else every file is as recorded: all stay ours
        sent = {path for path, _ in outcome.sent}
        for path in [p for p in new if p not in sent]:
            now = new[path]
            if now.kind == "file" and old.get(path) != now:  # not sent, not ours before
                del new[path]
    dropped = set(deleted)
    if plan is not None:
        dropped |= {path for path, _ in plan.kept} | set(plan.gone)
    for path in sorted(old.keys() - pushed.keys() - dropped):  # pushed.keys(): the selection
        new[path] = old[path]
    return new
