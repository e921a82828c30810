"""Decide, per selected entry, what a push must do to the destination: rsync --update semantics.

The local and SFTP engines both list the destination and then ask this module; keeping the rule in
one place is what makes them agree with each other and with rsync.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sbatchman.selection.walk import Entry, Selection
from sbatchman.temporaries import SUFFIX, Temporaries, is_temporary

Kind = Literal["dir", "file", "link", "other"]
Op = Literal["mkdir", "send", "link", "skip-newer", "conflict"]

# Why a conflict keeps what the cluster has (the words reports, --json and docs/cli.md use).
NEWER_FILE = "newer file on the cluster"
FULL_FOLDER = "folder not empty on the cluster"


def kind_of(mode: int | None) -> Kind:
    """What a destination entry is, from its st_mode (None: the server did not say)."""
    if mode is None:
        return "other"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "link" if stat.S_ISLNK(mode) else "other"


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


def decide(
    entry: Entry,
    dest: DestStat | None,
    *,
    through: bool = False,
    empty: bool | None = None,
    changed: bool = False,
) -> Action | None:
    """rsync -rlpt --update, with one promise more: None means already up to date.

    Something of another kind in the way is replaced, as rsync replaces it: a file, link or
    empty folder where something else goes. What rsync would destroy and we keep is a
    conflict: a regular file on the cluster newer (in whole seconds) than the local link or
    folder that would replace it, and a folder that is not empty (`empty` False: the caller
    listed it) where a file or link goes. `through`: the cluster has a link to a folder here
    and keep_dirlinks says to treat it as that folder (rsync -K). `changed`: the file is known
    to have changed since it was last sent (a watch saw it), so equal whole seconds and size
    do not make it up to date: a save in the second of the last push must still go.
    """
    newer_file = dest is not None and dest.kind == "file" and dest.mtime > seconds(entry.mtime_ns)
    if entry.kind == "dir":
        if dest is None:
            return Action(entry, "mkdir", "new")
        if dest.kind == "dir" or (through and dest.kind == "link"):
            return None
        if newer_file:
            return Action(entry, "conflict", NEWER_FILE)
        return Action(entry, "mkdir", _replaces(dest.kind), clear=dest.kind)
    op: Op = "link" if entry.kind == "link" else "send"
    if dest is None:
        return Action(entry, op, "new")
    if dest.kind == "dir":
        if empty is False:
            return Action(entry, "conflict", FULL_FOLDER)
        return Action(entry, op, "replaces a folder", clear="dir")
    if entry.kind == "link":
        if dest.kind == "link" and dest.target == entry.target:
            return None
        if newer_file:
            return Action(entry, "conflict", NEWER_FILE)
        return Action(entry, "link", "link changed")
    if dest.kind != "file":
        return Action(entry, "send", _replaces(dest.kind))
    local = seconds(entry.mtime_ns)
    if dest.mtime > local:
        return Action(entry, "skip-newer", "remote is newer")
    if dest.mtime < local:
        return Action(entry, "send", "newer")
    if dest.size != entry.size:
        return Action(entry, "send", "size differs")
    return Action(entry, "send", "changed") if changed else None


def _replaces(kind: Kind) -> str:
    """The `why` of a replacement, in words (docs/cli.md lists them)."""
    return "replaces a special file" if kind == "other" else f"replaces a {kind}"


def trusted(
    listings: Mapping[str, Mapping[str, DestStat] | None], keep_dirlinks: bool = False
) -> dict[str, Mapping[str, DestStat] | None]:
    """Keep a folder's listing only where its parent's listing shows a real folder there.

    Listing a path follows symlinks: a link on the cluster where the tree has a folder would
    otherwise be planned (and written) through, outside the destination. Such a folder counts
    as missing: the link is replaced by a real folder first, as rsync does. With
    keep_dirlinks (rsync -K) a link whose listing worked leads to a folder, and is trusted.
    """
    out: dict[str, Mapping[str, DestStat] | None] = {}
    for folder in sorted(listings, key=lambda f: f.count("/") if f else -1):
        listing = listings[folder]
        if folder:
            parent, name = posixpath.split(folder)
            above = out.get(parent)
            here = above.get(name) if above else None
            if here is None or not (here.kind == "dir" or (keep_dirlinks and here.kind == "link")):
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
    listings: Mapping[str, Mapping[str, DestStat] | None],
    errors: Mapping[str, str],
    keep_dirlinks: bool = False,
) -> str | None:
    """The first folder that could not be listed and really is one, or None.

    Such a folder must fail the push, never count as missing: its files would be planned as
    new and overwrite copies that are newer on the cluster. A folder that is not one (the
    parent's trusted listing shows a file or link there, or nothing) is replaced or made by
    the plan, as rsync does, so its error does not matter.
    """
    valid = trusted(listings, keep_dirlinks)
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
    replaced_links: list[str] = field(default_factory=list)  # cluster links a folder replaces

    @property
    def to_send(self) -> list[Action]:
        return [a for a in self.actions if a.op == "send"]

    @property
    def skipped_newer(self) -> list[str]:
        return [a.entry.path for a in self.actions if a.op == "skip-newer"]

    @property
    def conflicts(self) -> list[tuple[str, str]]:
        return [(a.entry.path, a.reason) for a in self.actions if a.op == "conflict"]

    @property
    def warnings(self) -> list[str]:
        """What a user must hear about even when all goes well (see replaced_link_warning)."""
        return [replaced_link_warning(path) for path in self.replaced_links]


def replaced_link_warning(path: str, side: str = "remote") -> str:
    """A link where the tree has a folder is replaced, as rsync does; a fetch never writes
    through a local link, a push does under keep_dirlinks."""
    if side == "local":
        return f"{path}: the local link is replaced by a folder (a fetch never writes through it)"
    return (
        f"{path}: the link on the cluster is replaced by a folder"
        " (keep_dirlinks = true writes through a link to a folder instead)"
    )


def folders(selection: Selection) -> list[str]:
    """Every destination folder a plan needs listed: the root ("") and each selected folder."""
    return ["", *(e.path for e in selection.entries if e.kind == "dir")]


def in_the_way(
    selection: Selection,
    listings: Mapping[str, Mapping[str, DestStat] | None],
    keep_dirlinks: bool = False,
) -> list[str]:
    """Cluster folders where the tree has a file or link: each must be listed too, so the
    plan knows whether it is empty (replaced) or not (kept, a conflict)."""
    listings = trusted(listings, keep_dirlinks)
    out = []
    for entry in selection.entries:
        if entry.kind != "dir":
            parent, name = posixpath.split(entry.path)
            listing = listings.get(parent)
            dest = listing.get(name) if listing else None
            if dest is not None and dest.kind == "dir":
                out.append(entry.path)
    return out


def build(
    selection: Selection,
    listings: Mapping[str, Mapping[str, DestStat] | None],
    keep_dirlinks: bool = False,
    temporaries: Temporaries | None = None,
) -> Plan:
    """Compare the selection with destination listings (None: that folder does not exist yet).

    One listing per folder instead of one stat per file is what keeps SFTP fast on slow links.
    `temporaries` (the push's own) judges which temporaries found are abandoned leftovers.
    Listings of the folders `in_the_way` say whether they are empty; nothing below a folder
    kept as a conflict is planned (its place holds the cluster's file).
    """
    plan = Plan()
    listings = trusted(listings, keep_dirlinks)
    selected = {e.path for e in selection.entries}
    judge = temporaries or Temporaries()
    folders = {"", *(e.path for e in selection.entries if e.kind == "dir")}
    for folder, listing in listings.items():
        if folder not in folders:  # a folder in the way is only looked at, never cleaned
            continue
        for name, found in (listing or {}).items():
            if (
                name.endswith(SUFFIX)
                and found.kind in ("file", "link")  # never a folder named like one
                and judge.abandoned(name)
            ):
                path = posixpath.join(folder, name)
                if path not in selected:  # a user's own file is never a leftover
                    plan.leftovers.append(path)
    kept: set[str] = set()  # folders that stay the cluster's file: nothing goes below them
    for entry in selection.entries:
        parent, name = posixpath.split(entry.path)
        if parent in kept:
            kept.add(entry.path)
            continue
        listing = listings.get(parent)
        dest = listing.get(name) if listing else None
        here = listings.get(entry.path)  # its own listing: a folder, or one in the way
        through = keep_dirlinks and dest is not None and dest.kind == "link" and here is not None
        empty = None if entry.kind == "dir" or entry.path not in listings else not here
        changed = entry.path in selection.changed
        action = decide(entry, dest, through=through, empty=empty, changed=changed)
        if action is None:
            continue
        if action.op == "conflict" and entry.kind == "dir":
            kept.add(entry.path)
        if action.clear == "link" and entry.kind == "dir":
            plan.replaced_links.append(entry.path)
        plan.actions.append(action)
    return plan


def is_login_folder(remote: str) -> bool:
    """`remote = "~"`: the push goes into the login directory itself, whose mode it must
    never take from the project (a group-writable home makes sshd refuse key logins)."""
    return posixpath.normpath(remote) == "."


def root_entry(root: Path) -> Entry:
    """The pushed folder itself: rsync's `src/` gives the destination folder its mode and mtime."""
    st = root.stat()
    return Entry("", "dir", 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


def attribute_fixes(
    selection: Selection,
    listings: Mapping[str, Mapping[str, DestStat] | None],
    keep_dirlinks: bool = False,
    conflicts: Sequence[str] = (),
    root: tuple[Entry, DestStat | None] | None = None,
) -> tuple[list[Entry], list[tuple[Entry, DestStat | None]]]:
    """What rsync -pt also corrects besides content, from the listings in hand.

    Returns the up-to-date files whose mode differs on the cluster, and every folder with
    what the cluster has there (None: missing), to be checked once the transfer is done.
    Folders kept as conflicts, and all below them, are the cluster's: left alone, as is the
    folder a cluster link leads to under keep_dirlinks (rsync -K does not touch it). `root`
    (the local folder and what the cluster has at the destination) comes last when given.
    """
    chmods: list[Entry] = []
    dirs: list[tuple[Entry, DestStat | None]] = []
    listings = trusted(listings, keep_dirlinks)
    kept = set(conflicts)
    for entry in selection.entries:
        kind = entry.kind
        if posixpath.dirname(entry.path) in kept:
            kept.add(entry.path)
            continue
        if kind == "link" or entry.path in kept:
            continue
        parent, _, name = entry.path.rpartition("/")
        listing = listings.get(parent)
        dest = listing.get(name) if listing else None
        if kind == "dir":
            through = dest is not None and dest.kind == "link"  # trusted: keep_dirlinks
            if not (through and listings.get(entry.path) is not None):
                dirs.append((entry, dest))  # a followed link's folder keeps its own, as -K
        elif (
            dest is not None
            and dest.kind == "file"
            and dest.mode != entry.mode
            and dest.size == entry.size
            and dest.mtime == seconds(entry.mtime_ns)
        ):
            chmods.append(entry)
    return chmods, [*dirs, root] if root else dirs


def locked_folders(actions: list[Action], dirs: list[tuple[Entry, DestStat | None]]) -> list[Entry]:
    """Existing folders the push writes into that their owner may not write (a read-only
    folder pushed earlier). As rsync does, they are made owner-writable first; their real mode
    comes back with the folder attributes at the end (stale_folders lists them as touched)."""
    written = {
        posixpath.dirname(a.entry.path) for a in actions if a.op not in ("skip-newer", "conflict")
    }
    return [
        entry
        for entry, dest in dirs
        if dest is not None and dest.kind == "dir" and entry.path in written
        and not dest.mode & 0o200
    ]  # fmt: skip


def stale_folders(
    dirs: list[tuple[Entry, DestStat | None]], touched: set[str], failed: set[str]
) -> list[Entry]:
    """Folders that are new (also where something else stood), were written into, or whose
    mode or mtime is not the local one; the root too, when attribute_fixes was given it."""
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
