"""Decide, per selected entry, what a push must do to the destination: rsync --update semantics.

The local and SFTP engines both list the destination and then ask this module; keeping the rule in
one place is what makes them agree with each other and with rsync.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sbatchman.selection import Entry, Selection
from sbatchman.temporaries import SUFFIX, Temporaries, is_temporary

Kind = Literal["dir", "file", "link", "other"]
Op = Literal["mkdir", "send", "link", "skip-newer"]


@dataclass(frozen=True)
class DestStat:
    """What the destination has at a path; mtime in whole seconds, as SFTP v3 reports it."""

    kind: Kind
    size: int
    mtime: int
    mode: int = 0
    target: str | None = None


@dataclass(frozen=True)
class Action:
    entry: Entry
    op: Op
    reason: str  # "new", "newer", "size differs", "remote is newer", "link changed", ...
    clear: Kind | None = None  # what is in the way and must be removed first, as rsync does


def seconds(mtime_ns: int) -> int:
    """Whole seconds, as both rsync's quick check and SFTP v3 see a time (floor, not round)."""
    return mtime_ns // 1_000_000_000


def decide(entry: Entry, dest: DestStat | None) -> Action | None:
    """rsync -rlpt --update: None means the destination is already up to date for this entry.

    Something of another kind in the way is replaced, as rsync replaces it: a file or link
    where a folder goes is removed, and so is an empty folder where a file or link goes (a
    folder that is not empty stays, and that entry fails, like rsync's exit 23).
    """
    if entry.kind == "dir":
        if dest is None:
            return Action(entry, "mkdir", "new")
        if dest.kind != "dir":
            return Action(entry, "mkdir", f"replaces a {dest.kind}", clear=dest.kind)
        return None
    op: Op = "link" if entry.kind == "link" else "send"
    if dest is None:
        return Action(entry, op, "new")
    if dest.kind == "dir":
        return Action(entry, op, "replaces a folder", clear="dir")
    if entry.kind == "link":
        if dest.kind == "link" and dest.target == entry.target:
            return None
        return Action(entry, "link", "link changed")
    if dest.kind != "file":
        return Action(entry, "send", f"replaces a {dest.kind}")
    local = seconds(entry.mtime_ns)
    if dest.mtime > local:
        return Action(entry, "skip-newer", "remote is newer")
    if dest.mtime < local:
        return Action(entry, "send", "newer")
    if dest.size != entry.size:
        return Action(entry, "send", "size differs")
    return None


def trusted(
    listings: Mapping[str, Mapping[str, DestStat] | None],
) -> dict[str, Mapping[str, DestStat] | None]:
    """Keep a folder's listing only where its parent's listing shows a real folder there.

    Listing a path follows symlinks: a link on the cluster where the tree has a folder would
    otherwise be planned (and written) through, outside the destination. Such a folder counts
    as missing: the link is replaced by a real folder first, as rsync does.
    """
    out: dict[str, Mapping[str, DestStat] | None] = {}
    for folder in sorted(listings, key=lambda f: f.count("/") if f else -1):
        listing = listings[folder]
        if folder:
            parent, name = posixpath.split(folder)
            above = out.get(parent)
            here = above.get(name) if above else None
            if here is None or here.kind != "dir":
                listing = None
        out[folder] = listing
    return out


# Files are written under a temporary name and renamed into place; sbatchman.temporaries says
# which such names a push may remove (only provably abandoned ones, never another run's).
PART_SUFFIX = SUFFIX


def part_name(name: str) -> str:
    """A temporary name for `name`, as a push of this process writes it now."""
    return Temporaries().name(name)


def is_part(name: str) -> bool:
    return is_temporary(name)


def listing_failure(
    listings: Mapping[str, Mapping[str, DestStat] | None], errors: Mapping[str, str]
) -> str | None:
    """The first folder that could not be listed and really is one, or None.

    Such a folder must fail the push, never count as missing: its files would be planned as
    new and overwrite copies that are newer on the cluster. A folder that is not one (the
    parent's trusted listing shows a file or link there, or nothing) is replaced or made by
    the plan, as rsync does, so its error does not matter.
    """
    valid = trusted(listings)
    for folder, message in errors.items():
        if not folder:
            return message
        parent, name = posixpath.split(folder)
        above = valid.get(parent)
        here = above.get(name) if above else None
        if here is not None and here.kind == "dir":
            return message
    return None


@dataclass
class Plan:
    """Everything one push has to do, in an order that is safe to carry out front to back."""

    actions: list[Action] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def to_send(self) -> list[Action]:
        return [a for a in self.actions if a.op == "send"]

    @property
    def skipped_newer(self) -> list[str]:
        return [a.entry.path for a in self.actions if a.op == "skip-newer"]


def folders(selection: Selection) -> list[str]:
    """Every destination folder a plan needs listed: the root ("") and each selected folder."""
    return ["", *(e.path for e in selection.entries if e.kind == "dir")]


def build(
    selection: Selection,
    listings: Mapping[str, Mapping[str, DestStat] | None],
    temporaries: Temporaries | None = None,
) -> Plan:
    """Compare the selection with destination listings (None: that folder does not exist yet).

    One listing per folder instead of one stat per file is what keeps SFTP fast on slow links.
    `temporaries` (the push's own) judges which temporaries found are abandoned leftovers.
    """
    plan = Plan()
    listings = trusted(listings)
    selected = {e.path for e in selection.entries}
    judge = temporaries or Temporaries()
    for folder, listing in listings.items():
        for name, found in (listing or {}).items():
            if (
                name.endswith(SUFFIX)
                and found.kind in ("file", "link")  # never a folder named like one
                and judge.abandoned(name)
            ):
                path = posixpath.join(folder, name)
                if path not in selected:  # a user's own file is never a leftover
                    plan.leftovers.append(path)
    for entry in selection.entries:
        parent, name = posixpath.split(entry.path)
        listing = listings.get(parent)
        action = decide(entry, listing.get(name) if listing else None)
        if action is not None:
            plan.actions.append(action)
    return plan


def attribute_fixes(
    selection: Selection, listings: Mapping[str, Mapping[str, DestStat] | None]
) -> tuple[list[Entry], list[tuple[Entry, DestStat | None]]]:
    """What rsync -pt also corrects besides content, from the listings in hand.

    Returns the up-to-date files whose mode differs on the cluster, and every folder with
    what the cluster has there (None: missing), to be checked once the transfer is done.
    """
    chmods: list[Entry] = []
    dirs: list[tuple[Entry, DestStat | None]] = []
    listings = trusted(listings)
    for entry in selection.entries:
        kind = entry.kind
        if kind == "link":
            continue
        parent, _, name = entry.path.rpartition("/")
        listing = listings.get(parent)
        dest = listing.get(name) if listing else None
        if kind == "dir":
            dirs.append((entry, dest))
        elif (
            dest is not None
            and dest.kind == "file"
            and dest.mode != entry.mode
            and dest.size == entry.size
            and dest.mtime == seconds(entry.mtime_ns)
        ):
            chmods.append(entry)
    return chmods, dirs


def locked_folders(actions: list[Action], dirs: list[tuple[Entry, DestStat | None]]) -> list[Entry]:
    """Existing folders the push writes into that their owner may not write (a read-only
    folder pushed earlier). As rsync does, they are made owner-writable first; their real mode
    comes back with the folder attributes at the end (stale_folders lists them as touched)."""
    written = {posixpath.dirname(a.entry.path) for a in actions if a.op != "skip-newer"}
    return [
        entry
        for entry, dest in dirs
        if dest is not None and dest.kind == "dir" and entry.path in written
        and not dest.mode & 0o200
    ]  # fmt: skip


def stale_folders(
    dirs: list[tuple[Entry, DestStat | None]], touched: set[str], failed: set[str]
) -> list[Entry]:
    """Folders (not the root, as with rsync) that are new (also where something else stood),
    were written into, or whose mode or mtime is not the local one."""
    out = []
    for entry, dest in dirs:
        if entry.path in failed:
            continue
        if (
            dest is None
            or dest.kind != "dir"
            or entry.path in touched
            or (
                dest.kind == "dir"
                and (dest.mode != entry.mode or dest.mtime != seconds(entry.mtime_ns))
            )
        ):
            out.append(entry)
    return out
