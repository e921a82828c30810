"""`sbatchman ls`: which files a sync would consider, and why a path is or is not pushed.

No network: this answers from the config and the local tree alone, with the same targets and the
same selection engine `sync` uses, so what `ls` shows is what `sync` considers. `ls --fetch` is
the exception: a fetch_dir's selection is made on the cluster's tree, so it connects, and shows
what a fetch into an empty folder would bring (a dry run of exactly that fetch).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from sbatchman.backends import Session
from sbatchman.config import Config, FetchDir
from sbatchman.errors import ExitCode, UsageError
from sbatchman.fanout import Fleet, Stopped, ended
from sbatchman.model import (
    Events,
    FetchJob,
    Outcome,
    Reporter,
    Request,
    Result,
    Target,
    exit_code,
)
from sbatchman.names import show_name, show_text
from sbatchman.outcomes import attempt
from sbatchman.precedence import batch_for
from sbatchman.report import ConsoleReporter, Style, human_bytes
from sbatchman.selection.walk import explain, path_below, select
from sbatchman.ssh.endpoint import Answers, SshOptions
from sbatchman.targets import resolve_fetch_targets, resolve_targets


def ls_lines(config: Config, request: Request, explain_paths: Sequence[str]) -> Iterator[str]:
    """Lines to print, per target: its files and totals, or the verdict on each path in turn.

    Every line is one printable line (names escaped as rsync does), whatever the names hold.
    """
    targets = resolve_targets(config, request, connecting=False)
    if explain_paths:
        yield from _explained(targets, explain_paths)
        return
    for target in targets:
        label = f"{target.cluster.name}/{target.sync_dir.alias}"
        root = target.sync_dir.local
        selection = select(root, target.rules, gitignore=target.gitignore)
        yield show_text(f"{label}: {root} -> {target.sync_dir.remote}")
        for entry in selection.entries:
            suffix = "/" if entry.kind == "dir" else f" -> {entry.target}" if entry.target else ""
            yield f"  {show_name(entry.path)}{show_name(suffix)}"
        for problem in (*selection.problems, *selection.notes):
            yield show_text(f"  ! {problem}")
        files = len(selection.files)
        yield f"  {files} file(s), {human_bytes(selection.total_bytes)}"


def _explained(targets: Sequence[Target], paths: Sequence[str]) -> Iterator[str]:
    """Each path in the order given, as `git check-ignore` takes many; a path in no selected
    sync_dir is a usage error before anything is printed."""
    here = Path.cwd()
    in_a_root = any(_inside(here, t.sync_dir.local) for t in targets)  # as a shell user means it
    wanted: list[tuple[str, list[Target]]] = []
    for given in paths:
        path = given
        if in_a_root and not os.path.isabs(path):
            path = os.path.join(here, path) + ("/" if path.endswith("/") else "")
        holders = [t for t in targets if _as_given(t.sync_dir.local, path) is not None]
        if not holders:
            roots = ", ".join(sorted({str(t.sync_dir.local) for t in targets}))
            raise UsageError(f"{path} is in no selected sync_dir ({roots})")
        wanted.append((path, holders))
    for path, holders in wanted:
        for target in holders:
            root = target.sync_dir.local
            verdict = explain(root, target.rules, path, gitignore=target.gitignore)
            label = show_text(f"{target.cluster.name}/{target.sync_dir.alias}")
            yield f"{label}: {show_name(verdict.path)}: {show_text(verdict.reason)}"


def _as_given(root: Path, path: str) -> str | None:
    """An absolute path only for the sync_dir that holds it; a relative one is taken from
    each sync_dir's root (when the user stands inside none of them)."""
    if os.path.isabs(path) and not _inside(Path(path), root):
        return None
    return path


def _inside(path: Path, root: Path) -> bool:
    return path_below(str(root), str(path)) is not None  # links above root followed


def fetch_ls(
    config: Config, request: Request, explain_paths: Sequence[str], interactive: bool
) -> tuple[list[str], ExitCode]:
    """`ls --fetch`: the lines to print and the exit status (1 when a target could not be read).

    Connects as fetch does (prompting only when someone is at the terminal), with the waits
    of the config; notices (a backend that fell back) go to stderr.
    """
    if explain_paths or request.gitignore is not None:
        flag = "--explain" if explain_paths else "--gitignore"
        raise UsageError(f"{flag} does not go with --fetch (it judges local sync_dirs)")
    ssh = SshOptions(
        batch=batch_for(False, interactive),
        connect_timeout=config.settings.connect_timeout,
        stall_timeout=config.settings.stall_timeout,
    )
    with ConsoleReporter(Style(quiet=True, direction="fetch")) as reporter:
        lines, results = _fetch_selections(config, replace(request, ssh=ssh), reporter)
    return lines, exit_code(results)


def _fetch_selections(
    config: Config, request: Request, reporter: Reporter
) -> tuple[list[str], list[Result]]:
    """Per fetch target: each file its fetch would bring into an empty folder, and totals.

    The same targets, excludes and backend as `fetch`, run as a dry run into a folder that does
    not exist (inside a fresh temporary folder), so every selected file shows as new and
    nothing is written anywhere.
    """
    request = replace(request, dry_run=True, ssh=replace(request.ssh, answers=Answers()))
    targets = resolve_fetch_targets(config, request)
    with tempfile.TemporaryDirectory(prefix="sbatchman-ls-") as empty:
        absent = Path(empty) / "absent"

        def list_one(target: Target, session: Session, events: Events) -> Result:
            fetch_dir = target.sync_dir
            assert isinstance(fetch_dir, FetchDir)

            def transfer() -> tuple[Outcome, Sequence[str], Sequence[str]]:
                job = FetchJob(
                    target.cluster, fetch_dir, fetch_dir.remote, absent, target.rules, True
                )
                return session.fetch(job, events), (), ()

            return attempt(target, session, True, events, transfer)

        try:
            with Fleet(targets, config.settings, request, reporter) as fleet:
                results = fleet.run(list_one)
        except Stopped as stop:
            results = stop.results
        except KeyboardInterrupt:
            results = [ended(t, "interrupted", "interrupted") for t in targets]
    lines: list[str] = []
    for target, result in zip(targets, results, strict=True):
        label = f"{target.cluster.name}/{target.sync_dir.alias}"
        lines.append(show_text(f"{label}: {target.sync_dir.remote} -> {target.sync_dir.local}"))
        lines += [f"  {show_name(path)}" for path, _ in result.sent]
        problems = (*([result.error] if result.error else []), *result.warnings)
        lines += [show_text(f"  ! {problem}") for problem in problems]
        lines.append(f"  {len(result.sent)} file(s), {human_bytes(result.bytes_sent)}")
    return lines, results
