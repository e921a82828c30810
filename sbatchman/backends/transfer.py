"""One transfer from a source tree to a destination, either way: scan, plan, report, apply.

The local copier and the SFTP engine differ only in how they read and write the destination; the
order of the steps, the rule that an unreadable folder fails the transfer, the events and the dry
run must not differ, or the two engines stop agreeing with each other and with rsync. Nothing
here knows which side is the laptop: a push has the cluster as its destination, a fetch the
laptop, and both run `run` with their own Destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sbatchman.errors import TransferError
from sbatchman.model import Events, Outcome
from sbatchman.plan import (
    FULL_FOLDER,
    NEWER_FILE,
    DestStat,
    Plan,
    build,
    folders,
    in_the_way,
    listing_failure,
    replaced_link_warning,
)
from sbatchman.selection.walk import Selection
from sbatchman.temporaries import Temporaries

Listings = dict[str, dict[str, DestStat] | None]  # folder -> its entries (None: missing)


@dataclass
class Listed:
    """What the destination holds, as far as the plan needs it."""

    listings: Listings = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # folder -> why it could not be read
    notes: list[str] = field(default_factory=list)  # warnings the reading itself has to give


L = TypeVar("L", bound=Listed)


class Destination(Protocol[L]):
    """The side a transfer writes to; each engine reaches it its own way."""

    side: str  # what reports call it: "remote" for a push's cluster, "local" for a fetch's

    def scan(self, folders: Sequence[str]) -> L:
        """Check the destination folder itself (TransferError when something other than a
        folder stands there), then list `folders`, with whatever the plan needs beyond a plain
        listing (link targets); "" is the destination folder."""
        ...

    def list_folders(self, folders: Sequence[str]) -> Listed:
        """List more folders, once the scan has shown they are needed."""
        ...

    def apply(self, plan: Plan, listed: L, outcome: Outcome, temporaries: Temporaries) -> None:
        """Carry out the plan; each entry goes into `outcome` once it has landed, so a
        PartialTransfer raised part way still says what did."""
        ...


def run(
    selection: Selection,
    destination: Destination[L],
    keep_dirlinks: bool,
    dry_run: bool,
    events: Events,
) -> Outcome:
    """Bring the destination up to `selection` (rsync --update rules); a dry run writes nothing."""
    events.phase("scanning")
    listed = destination.scan(folders(selection))
    check(listed, keep_dirlinks)
    blocking = in_the_way(selection, listed.listings, keep_dirlinks)
    if blocking:  # rare: only where the destination has a folder in place of a file
        # an unreadable one counts as empty: its removal fails the entry
        listed.listings.update(destination.list_folders(blocking).listings)
    temporaries = Temporaries()
    plan = build(selection, listed.listings, keep_dirlinks, temporaries)
    outcome = Outcome(
        skipped_newer=plan.skipped_newer,
        conflicts=[(path, conflict_words(why, destination.side)) for path, why in plan.conflicts],
        warnings=[
            *(replaced_link_warning(path, destination.side) for path in plan.replaced_links),
            *listed.notes,
        ],
    )
    for path in outcome.skipped_newer:
        events.skipped(path, kept_newer(destination.side))
    for path, why in outcome.conflicts:
        events.skipped(path, f"conflict: {why}")
    events.totals(len(plan.to_send), sum(a.entry.size for a in plan.to_send))
    events.phase("sending")
    if dry_run:
        for action in plan.to_send:
            outcome.sent.append((action.entry.path, action.reason))
            outcome.bytes_sent += action.entry.size
            events.sent(action.entry.path, action.entry.size, action.reason)
        return outcome
    destination.apply(plan, listed, outcome, temporaries)
    return outcome


def check(listed: Listed, keep_dirlinks: bool = False) -> None:
    """Fail on a folder that could not be listed (see plan.listing_failure): counted as
    missing, its files would be planned as new and overwrite newer copies."""
    failure = listing_failure(listed.listings, listed.errors, keep_dirlinks)
    if failure is not None:
        raise TransferError(failure)


def kept_newer(side: str) -> str:
    """Why a file was kept because the destination's copy is newer: rsync's own words for a
    push ("remote is newer"), the report's for a fetch ("newer locally")."""
    return "newer locally" if side == "local" else f"{side} is newer"


def conflict_words(why: str, side: str) -> str:
    """The plan names the cluster as the side that keeps its copy; a fetch keeps the local one."""
    if side != "local":
        return why
    return {NEWER_FILE: "newer file locally", FULL_FOLDER: "folder not empty locally"}.get(why, why)
