"""What a watch shows after each pass: a line per target that moved, or one JSON object per line.

A watch runs for hours, so nothing may pile up or go silent: text mode prints one line per
target a pass pushed (and one per cluster that is away), the live bars keep one line per
target; --json prints JSON Lines, each the sync report's document plus "pass" and "changed",
the first one being the initial sync.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from sbatchman.names import json_name, show_name, show_text
from sbatchman.report import human_bytes, to_json
from sbatchman.watch import Pass

NAMED = 3  # changed files a text line names before it only counts the rest


class WatchView:
    """Prints each Pass (watch.watch's `on_pass`)."""

    def __init__(
        self,
        json_lines: bool,
        quiet: bool,
        out: Console | None = None,
        clock: Callable[[], str] = lambda: time.strftime("%H:%M:%S"),
    ) -> None:
        self.json_lines = json_lines
        self.quiet = quiet
        self.out = out or Console(highlight=False, soft_wrap=True)
        self.clock = clock
        self.away: dict[str, str] = {}

    def __call__(self, done: Pass) -> None:
        if self.json_lines:
            document = to_json(done.results, False)
            document["pass"] = done.number
            document["changed"] = [json_name(p) for p in done.changed]
            document["reconnecting"] = dict(sorted(done.reconnecting.items()))
            sys.stdout.write(json.dumps(document) + "\n")  # one line, whatever its length
            sys.stdout.flush()
            return
        stamp = self.clock()
        for r in done.results:
            where = show_text(f"{r.cluster}/{r.alias}")
            if r.status == "ok" and not self.quiet and (r.files_sent or done.number == 0):
                names = ", ".join(show_name(p) for p, _ in r.sent[:NAMED])
                more = f" and {r.files_sent - NAMED} more" if r.files_sent > NAMED else ""
                sent = f": {names}{more}" if r.files_sent else ""
                self.out.print(
                    Text(
                        f"{stamp} {where}: up to date, {r.files_sent} file(s),"
                        f" {human_bytes(r.bytes_sent)} pushed{sent}"
                    )
                )
            elif r.status != "ok":
                error = show_text(r.error or r.status)
                self.out.print(Text.assemble(f"{stamp} ", ("✗", "red"), f" {where}: {error}"))
            for warning in r.warnings:
                self.out.print(Text.assemble(("!", "yellow"), f" {where}: {show_text(warning)}"))
        for name, why in done.reconnecting.items():
            if self.away.get(name) != why:
                self.out.print(Text(f"{stamp} {show_text(name)}: reconnecting ({show_text(why)})"))
        for name in set(self.away) - set(done.reconnecting):
            self.out.print(Text(f"{stamp} {show_text(name)}: back"))
        self.away = dict(done.reconnecting)
