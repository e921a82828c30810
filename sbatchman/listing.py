"""`sbatchman ls`: which files a sync would consider, and why a path is or is not pushed.

No network: this answers from the config and the local tree alone, with the same targets and the
same selection engine `sync` uses, so what `ls` shows is what `sync` considers. `ls --fetch`
(fetchlisting.py) is the exception: a fetch_dir's selection is made on the cluster's tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from sbatchman.config import Config
from sbatchman.errors import UsageError
from sbatchman.model import (
    Request,
    Target,
)
from sbatchman.names import show_name, show_text
from sbatchman.report import human_bytes
from sbatchman.selection.walk import explain, path_below, select
from sbatchman.targets import resolve_targets


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
