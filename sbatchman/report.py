"""Turn the core's events and results into what people (rich) and scripts (--json) read.

Progress and notices go to stderr; the summary, dry-run listings and JSON go to stdout, so
`sbatchman sync --json | jq` always gets exactly one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sbatchman.backends import Events

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from sbatchman.push import Result, Target

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


class _TargetEvents:
    """Events for one cluster x alias: moves its progress bar and prints per-file lines."""

    def __init__(self, reporter: ConsoleReporter, label: str) -> None:
        self.reporter = reporter
        self.label = label
        self.task: TaskID | None = None
        self.files_done = 0
        self.files_total = 0
        self.credit = 0  # bytes already shown by progress() for files not yet reported sent
        progress = reporter.progress
        if progress is not None:
            self.task = progress.add_task(label, total=None, phase="waiting", files="")

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
        self._update(advance=nbytes - shown, files=f"{self.files_done}/{self.files_total} files")
        style = self.reporter.style
        if style.dry_run and not style.json and not style.quiet:
            self.reporter.line(f"would send {self.label}: {escape(path)} ({why})")
        elif style.verbose and not style.json:
            self.reporter.line(f"{self.label}: {escape(path)} ({why})")

    def progress(self, nbytes: int) -> None:
        self.credit += nbytes
        self._update(advance=nbytes)

    def skipped(self, path: str, why: str) -> None:
        style = self.reporter.style
        if why.startswith("conflict") and style.dry_run and not style.json and not style.quiet:
            self.reporter.line(f"would keep {self.label}: {escape(path)} ({why})")
        elif style.verbose and not style.json:
            self.reporter.line(f"{self.label}: kept {escape(path)} ({why})")


class _Console(Console):
    """A console whose reader may leave (`sync -v | head`) without stopping the transfer.

    rich's own answer to a broken pipe is SystemExit(1), raised in whichever worker thread
    printed: the push would die half-way. Here the output is dropped instead; the exit
    status still says how the sync went.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())


class ConsoleReporter:
    """The Reporter the CLI uses; a context manager around the live progress display."""

    def __init__(self, style: Style, out: Console | None = None, err: Console | None = None):
        self.style = style
        self.out = out or _Console(highlight=False, soft_wrap=True)
        self.err = err or _Console(stderr=True, highlight=False, soft_wrap=True)
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

            self.progress = Progress(
                TextColumn("{task.description}"),
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
        """A listing line for stdout; above the live bars when both share the terminal."""
        with self._lock:
            if self.progress is not None and self.out.is_terminal:
                self.progress.console.print(text)
            else:
                self.out.print(text)

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
        self.err.print(f"sbatchman: {escape(message)}")

    def events(self, target: Target) -> Events:
        return _TargetEvents(self, f"{target.cluster.name}/{target.sync_dir.alias}")

    def summary(self, results: Sequence[Result]) -> None:
        if self.style.json:
            self.out.out(json.dumps(to_json(results, self.style.dry_run), indent=2))
            return
        ordered = sorted(results, key=lambda r: (r.status in _GOOD, r.cluster, r.alias))
        shown = [r for r in ordered if r.status not in _GOOD] if self.style.quiet else ordered
        if not shown:
            return
        table = Table(box=None, pad_edge=False)
        for column in ("cluster", "alias", "backend", "status", "files", "bytes", "seconds"):
            table.add_column(column, justify="right" if column in "files bytes seconds" else "left")
        for r in shown:
            status = r.status if r.status in _GOOD else f"[red]{r.status.upper()}[/]"
            table.add_row(
                r.cluster,
                r.alias,
                r.backend,
                status,
                str(r.files_sent),
                human_bytes(r.bytes_sent),
                f"{r.seconds:.1f}",
            )
        self.out.print(table)
        for r in shown:
            where = f"{r.cluster}/{r.alias}"
            if r.error:
                self.out.print(f"[red]✗[/] {where}: {escape(r.error)}")
            for warning in r.warnings:
                self.out.print(f"[yellow]![/] {where}: {escape(warning)}")
            if r.skipped_newer:
                names = ", ".join(r.skipped_newer[:5]) + (" …" if len(r.skipped_newer) > 5 else "")
                self.out.print(
                    f"[yellow]![/] {where}: kept {len(r.skipped_newer)} file(s) that are newer"
                    f" on the cluster: {escape(names)}"
                )
            for path, why in r.conflicts:
                self.out.print(f"[yellow]![/] {where}: conflict, kept {escape(path)} ({why})")


def to_json(results: Sequence[Result], dry_run: bool) -> dict[str, Any]:
    """The --json document; its schema is documented in docs/cli.md and checked by the tests."""
    from sbatchman.push import exit_code

    return {
        "schema": JSON_SCHEMA_VERSION,
        "dry_run": dry_run,
        "exit_code": exit_code(results),
        "targets": [
            {
                "cluster": r.cluster,
                "alias": r.alias,
                "backend": r.backend,
                "status": r.status,
                "files_sent": r.files_sent,
                "bytes_sent": r.bytes_sent,
                "files_skipped_newer_remote": len(r.skipped_newer),
                "skipped_newer_remote": r.skipped_newer,
                "conflicts": [{"path": p, "why": why} for p, why in r.conflicts],
                "seconds": round(r.seconds, 3),
                "error": r.error,
                "warnings": r.warnings,
                "files": [{"path": p, "why": why} for p, why in r.sent],
            }
            for r in results
        ],
    }
