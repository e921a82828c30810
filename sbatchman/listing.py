"""`sbatchman ls`: which files a sync would consider, and why a path is or is not pushed.

No network: this answers from the config and the local tree alone, with the same targets and the
same selection engine `sync` uses, so what `ls` shows is what `sync` considers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sbatchman.config import Config
from sbatchman.errors import UsageError
from sbatchman.push import Request, resolve_targets
from sbatchman.report import human_bytes
from sbatchman.selection import explain, path_below, select


def ls_lines(config: Config, request: Request, explain_path: str | None) -> Iterator[str]:
    """Lines to print, per target: its files and totals, or the verdict on one path."""
    targets = resolve_targets(config, request, connecting=False)
    if explain_path is not None and not os.path.isabs(explain_path):
        here = Path.cwd()
        if any(_inside(here, t.sync_dir.local) for t in targets):  # as a shell user means it
            tail = "/" if explain_path.endswith("/") else ""
            explain_path = os.path.join(here, explain_path) + tail
    explained = 0
    for target in targets:
        label = f"{target.cluster.name}/{target.sync_dir.alias}"
        root = target.sync_dir.local
        if explain_path is not None:
            path = _as_given(root, explain_path)
            if path is None:
                continue  # an absolute path in another sync_dir
            verdict = explain(root, target.rules, path, gitignore=target.gitignore)
            explained += 1
            yield f"{label}: {show_name(verdict.path)}: {verdict.reason}"
            continue
        selection = select(root, target.rules, gitignore=target.gitignore)
        yield f"{label}: {root} -> {target.sync_dir.remote}"
        for entry in selection.entries:
            suffix = "/" if entry.kind == "dir" else f" -> {entry.target}" if entry.target else ""
            yield f"  {show_name(entry.path)}{show_name(suffix)}"
        for problem in (*selection.problems, *selection.notes):
            yield f"  ! {problem}"
        files = len(selection.files)
        yield f"  {files} file(s), {human_bytes(selection.total_bytes)}"
    if explain_path is not None and not explained:
        roots = ", ".join(sorted({str(t.sync_dir.local) for t in targets}))
        raise UsageError(f"{explain_path} is in no selected sync_dir ({roots})")


def _as_given(root: Path, path: str) -> str | None:
    """An absolute path only for the sync_dir that holds it; a relative one is taken from
    each sync_dir's root (when the user stands inside none of them)."""
    if os.path.isabs(path) and not _inside(Path(path), root):
        return None
    return path


def _inside(path: Path, root: Path) -> bool:
    return path_below(str(root), str(path)) is not None  # links above root followed


def show_name(name: str) -> str:
    """A name on one line, as rsync writes it: unprintable characters as \\#ooo (octal)."""
    if name.isprintable():
        return name
    raw = name.encode("utf-8", "surrogateescape")
    out = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\#{ord(c):03o}" for c in out)
