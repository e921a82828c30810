"""Turn the core's events and results into what people (rich) and scripts (--json) read.

Progress and notices go to stderr; the summary, dry-run listings and JSON go to stdout, so
`sbatchman sync --json | jq` always gets exactly one JSON document.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from sbatchman.model import Direction, Events
from sbatchman.names import json_name, json_text, show_name, show_text

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from sbatchman.model import Result, Target

JSON_SCHEMA_VERSION = 1
_GOOD = frozenset({"ok", "dry-run"})  # statuses that are not a problem


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Style:
    """How much the user asked to see."""

    verbose: bool = False
    quiet: bool = False
    json: bool = False
    dry_run: bool = False
    direction: Direction = "push"  # fetch: files come here, and a newer copy is the local one

    @property
    def fetching(self) -> bool:
        return self.direction == "fetch"


class _TargetEvents:
    """Events for one cluster x alias: moves its progress bar and prints per-file lines."""

    def __init__(self, reporter: ConsoleReporter, label: str) -> None:
        self.reporter = reporter
        self.label = show_text(label)
        self.task: TaskID | None = None
        self.files_done = 0
        self.files_total = 0
        self.credit = 0  # bytes already shown by progress() for files not yet reported sent
        progress = reporter.progress
        if progress is not None:
            self.task = progress.add_task(self.label, total=None, phase="waiting", files="")

    def _update(self, **fields: Any) -> None:
        if self.reporter.progress is not None and self.task is not None:
            self.reporter.progress.update(self.task, **fields)

    def phase(self, name: str) -> None:
        self._update(phase=name)

    def totals(self, files: int, nbytes: int) -> None:
        self.files_total = files
        self._update(total=max(nbytes, 1), files=f"0/{files} files")

    def sent(self, path: str, nbytes: int, why: str) -> None:
        self.files_done += 1
        shown = min(self.credit, nbytes)  # a big file may have reported its bytes as it went
        self.credit -= shown
        if self.task is not None:  # no bar (-q, --json, no terminal): nothing to format
            files = f"{self.files_done}/{self.files_total} files"
            self._update(advance=nbytes - shown, files=files)
        style = self.reporter.style
        if style.dry_run and not style.json and not style.quiet:
            verb = "fetch" if style.fetching else "send"
            self.reporter.line(f"would {verb} {self.label}: {show_name(path)} ({show_text(why)})")
        elif style.verbose and not style.json:
            self.reporter.line(f"{self.label}: {show_name(path)} ({show_text(why)})")

    def progress(self, nbytes: int) -> None:
        self.credit += nbytes
        self._update(advance=nbytes)

    def skipped(self, path: str, why: str) -> None:
        style = self.reporter.style
        shown = f"{show_name(path)} ({show_text(why)})"
        conflict = why.startswith("conflict")
        if conflict and style.dry_run and not style.json and not style.quiet:
            self.reporter.line(f"would keep {self.label}: {shown}")
        elif style.verbose and not style.json and style.fetching and not conflict:
            # whatever words the backend used: in a fetch, the copy kept is the local one
            self.reporter.line(f"{self.label}: {show_name(path)} (kept, newer locally)")
        elif style.verbose and not style.json:
            self.reporter.line(f"{self.label}: kept {shown}")


class ConsoleReporter:
    """The Reporter the CLI uses; a context manager around the live progress display.

    A reader that leaves (`sync -v | head`) or a full disk never reaches rich (whose answer
    would be SystemExit in a worker thread): cli.main writes through output.Guarded."""

    def __init__(self, style: Style, out: Console | None = None, err: Console | None = None):
        self.style = style
        self.out = out or Console(highlight=False, soft_wrap=True)
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ConsoleReporter:
        if self.err.is_terminal and not self.style.quiet and not self.style.json:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )
            from rich.table import Column

            self.progress = Progress(
                # a name is never markup, and folds rather than ending in "…" on a narrow screen
                TextColumn(
                    "{task.description}", markup=False, table_column=Column(overflow="fold")
                ),
                TextColumn("[dim]{task.fields[phase]}"),
                BarColumn(),
                TextColumn("{task.fields[files]}"),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                console=self.err,
                transient=True,
                # stdout may be a file (`sync -n > plan.txt`): never reroute it to the bars
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def line(self, text: str) -> None:
        """A listing line for stdout; above the live bars when both share the terminal.

        Printed as a Text: a str would be read as rich markup (`[bold]`, `[/]`) and emoji codes.
        """
        shown = Text(text)
        with self._lock:
            if self.progress is not None and self.out.is_terminal:
                self.progress.console.print(shown)
            else:
                self.out.print(shown)

    @contextmanager
    def prompting(self) -> Iterator[None]:
        """Hide the live bars while ssh or sbatchman may prompt: a redraw would erase the
        question the user is reading."""
        progress = self.progress
        if progress is None:
            yield
            return
        overflow = progress.live.vertical_overflow  # rich's stop() changes it for good
        progress.stop()
        try:
            yield
        finally:
            progress.start()
            progress.live.vertical_overflow = overflow

    def notice(self, message: str) -> None:
        self.err.print(Text(show_text(f"sbatchman: {message}")))

    def refused(self, error: str, exit_code: int) -> None:
        """Nothing ran (a config or usage error, or Ctrl-C first): with --json, still one
        document on stdout, saying why; the one line on stderr is the CLI's."""
        if self.style.json:
            self.out.out(refusal(error, exit_code, self.style.dry_run))

    def events(self, target: Target) -> Events:
        return _TargetEvents(self, f"{target.cluster.name}/{target.sync_dir.alias}")

    def summary(self, results: Sequence[Result]) -> None:
        if self.style.json:
            document = to_json(results, self.style.dry_run, self.style.direction)
            self.out.out(json.dumps(document, indent=2))
            return
        ordered = sorted(results, key=lambda r: (r.status in _GOOD, r.cluster, r.alias))
        shown = [r for r in ordered if r.status not in _GOOD] if self.style.quiet else ordered
        if not shown:
            return
        self.out.print(self._table(shown), crop=False)
        for r in shown:
            where = show_text(f"{r.cluster}/{r.alias}")
            if r.error:
                self.out.print(Text.assemble(("✗", "red"), f" {where}: {show_text(r.error)}"))
            for warning in r.warnings:
                self.out.print(Text.assemble(("!", "yellow"), f" {where}: {show_text(warning)}"))
            if r.skipped_newer:
                names = ", ".join(show_name(n) for n in r.skipped_newer[:5])
                more = " …" if len(r.skipped_newer) > 5 else ""
                self.out.print(
                    Text.assemble(
                        ("!", "yellow"),
                        f" {where}: kept {len(r.skipped_newer)} file(s) that are newer"
                        f" {'locally' if self.style.fetching else 'on the cluster'}:"
                        f" {names}{more}",
                    )
                )
            for path, why in r.conflicts:
                self.out.print(
                    Text.assemble(
                        ("!", "yellow"), f" {where}: conflict, kept {show_name(path)} ({why})"
                    )
                )
            self._deletes(r, where)

    def _deletes(self, r: Result, where: str) -> None:
        """--delete's lines: every path a dry run would delete, a count (every path with -v)
        for a real one, and each recorded path kept on the cluster, with why."""
        if self.style.dry_run:
            for path in r.deleted:
                self.out.print(Text(f"would delete {where}: {show_name(path)}"))
        elif r.deleted:
            shown = "".join(f"\n  {show_name(p)}" for p in r.deleted) if self.style.verbose else ""
            count = f"deleted {len(r.deleted)} path(s) on the cluster"
            self.out.print(Text(f"  {where}: {count}{shown}"))
        for path, why in r.kept:
            self.out.print(
                Text.assemble(("!", "yellow"), f" {where}: kept {show_name(path)} ({why})")
            )

    def _table(self, shown: Sequence[Result]) -> Table:
        """Names are never cut: into a file or pipe the table is as wide as it needs; on a
        terminal too narrow for it, a long name folds onto more lines instead of ending in "…"
        (two login nodes that differ only at the end stay two)."""
        table = Table(box=None, pad_edge=False)
        for column in ("cluster", "alias", "backend", "status", "files", "bytes", "seconds"):
            if column in ("cluster", "alias"):
                table.add_column(column, overflow="fold")
            else:
                right = column in ("files", "bytes", "seconds")
                table.add_column(column, justify="right" if right else "left", no_wrap=True)
        for r in shown:
            table.add_row(
                Text(show_text(r.cluster)),
                Text(show_text(r.alias)),
                Text(show_text(r.backend)),
                Text(r.status) if r.status in _GOOD else Text(r.status.upper(), style="red"),
                str(r.files_sent),
                human_bytes(r.bytes_sent),
                f"{r.seconds:.1f}",
            )
        if not self.out.is_terminal:
            wide = self.out.options.update_width(1 << 20)
            table.width = Measurement.get(self.out, wide, table).maximum
        return table


def refusal(error: str, exit_code: int, dry_run: bool) -> str:
    """The --json document of a run that pushed nothing: the schema of to_json, no targets."""
    document = {
        "schema": JSON_SCHEMA_VERSION,
        "dry_run": dry_run,
        "exit_code": int(exit_code),
        "error": json_text(error),
        "targets": [],
    }
    return json.dumps(document, indent=2)


def to_json(
    results: Sequence[Result], dry_run: bool, direction: Direction = "push"
) -> dict[str, Any]:
    """The --json document; its schema is documented in docs/cli.md and checked by the tests.

    A fetch's document has the same shape; only the kept-newer keys say which side is newer
    (`..._newer_local`), so a script reading both commands cannot mistake one for the other.
    """
    from sbatchman.model import exit_code

    newer = "local" if direction == "fetch" else "remote"

    return {
        "schema": JSON_SCHEMA_VERSION,
        "dry_run": dry_run,
        "exit_code": int(exit_code(results)),
        "error": None,
        "targets": [
            {
                "cluster": json_text(r.cluster),
                "alias": json_text(r.alias),
                "backend": r.backend,
                "status": r.status,
                "files_sent": r.files_sent,
                "bytes_sent": r.bytes_sent,
                f"files_skipped_newer_{newer}": len(r.skipped_newer),
                f"skipped_newer_{newer}": [json_name(p) for p in r.skipped_newer],
                "conflicts": [{"path": json_name(p), "why": why} for p, why in r.conflicts],
                "paths_deleted": len(r.deleted),
                "deleted": [json_name(p) for p in r.deleted],
                "paths_kept_on_cluster": len(r.kept),
                "kept_on_cluster": [{"path": json_name(p), "why": why} for p, why in r.kept],
                "seconds": round(r.seconds, 3),
                "error": None if r.error is None else json_text(r.error),
                "warnings": [json_text(w) for w in r.warnings],
                "files": [{"path": json_name(p), "why": why} for p, why in r.sent],
            }
            for r in results
        ],
    }
