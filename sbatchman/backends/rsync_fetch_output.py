"""Read what a fetch's rsync prints: itemized lines into the Outcome, names back to bytes.

Apart from the fetch itself (rsync_fetch) because this is the part that follows rsync's output
rules (`--out-format=%i %l %M %n%L` with %M in UTC, \\#ooo escapes, "is newer" lines), and the
dry runs read the same lines.
"""

from __future__ import annotations

import calendar
import re
from pathlib import Path

from sbatchman.backends import rsync_fetch_local as here
from sbatchman.backends.rsync_guard import kept_folder
from sbatchman.backends.rsync_output import SKIP, Progress, itemized_why, unescape
from sbatchman.backends.transfer import conflict_words, kept_newer
from sbatchman.model import Events, Outcome
from sbatchman.plan import FULL_FOLDER

# --out-format=%i %l %M %n%L, %M in UTC (TZ=UTC0): what a landed file must look like.
FORMAT = "--out-format=%i %l %M %n%L"
ITEM = re.compile(
    r"^([<>ch.*][fdLDS][^ ]{9}) (\d+) (\d{4})/(\d\d)/(\d\d)-(\d\d):(\d\d):(\d\d) (.*)$", re.S
)


class Reader:
    """rsync's itemized output of the fetch: what started, what was kept as newer."""

    def __init__(self, outcome: Outcome, events: Events) -> None:
        self.outcome = outcome
        self.events = events
        self.progress = Progress(events)
        self.started: list[tuple[str, int, int]] = []  # (name, size, mtime second)

    def line(self, text: str) -> None:
        if self.progress.line(text.encode("utf-8", "surrogateescape")):
            return
        item = item_of(text)
        if item is not None:
            flags, size, mtime, name = item
            if flags[1] == "f" and flags[0] in "<>":
                why = itemized_why(flags)
                self.started.append((name, size, mtime))
                self.outcome.sent.append((name, why))
                self.outcome.bytes_sent += size
                self.progress.start(name, size, why)
            else:
                self.progress.finish()
            return
        folder = kept_folder(text)
        if folder is not None:  # a local folder with files in it where the cluster has a file
            name = name_of(folder)
            self.outcome.conflicts.append((name, conflict_words(FULL_FOLDER, "local")))
            self.events.skipped(name, f"conflict: {conflict_words(FULL_FOLDER, 'local')}")
            return
        skip = SKIP.match(text)
        if skip:
            name = name_of(skip[1])
            self.outcome.skipped_newer.append(name)
            self.events.skipped(name, kept_newer("local"))

    def settle(self, root: Path) -> None:
        """After a failure or Ctrl-C, keep only the files that landed: rsync names a file
        before its data comes, and the local folder says which are now in place."""
        self.progress.pending = None
        gone = {n for n, size, mtime in self.started if not here.landed(root, n, size, mtime)}
        self.started = [s for s in self.started if s[0] not in gone]
        self.outcome.sent = [(n, why) for n, why in self.outcome.sent if n not in gone]
        sizes = {n: size for n, size, _ in self.started}
        self.outcome.bytes_sent = sum(sizes.get(n, 0) for n, _ in self.outcome.sent)


def name_of(text: str) -> str:
    """A name as rsync printed it (\\#ooo escapes) back to the file system's bytes."""
    return unescape(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def item_of(text: str) -> tuple[str, int, int, str] | None:
    """(flags, size, mtime second, name) of one itemized line, or None."""
    item = ITEM.match(text)
    if item is None:
        return None
    when = calendar.timegm((*(int(item[i]) for i in range(3, 9)), 0, 0, 0))
    return item[1], int(item[2]), when, name_of(item[9])
