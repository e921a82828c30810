"""`sbatchman ls`: which files a sync would consider, and why a path is or is not pushed.

No network: this answers from the config and the local tree alone, with the same targets and the
same selection engine `sync` uses, so what `ls` shows is what `sync` considers.
"""

from __future__ import annotations

from collections.abc import Iterator

from sbatchman.config import Config
from sbatchman.push import Request, resolve_targets
from sbatchman.report import human_bytes
from sbatchman.selection import explain, select


def ls_lines(config: Config, request: Request, explain_path: str | None) -> Iterator[str]:
    """Lines to print, per target: its files and totals, or the verdict on one path."""
    for target in resolve_targets(config, request):
        label = f"{target.cluster.name}/{target.sync_dir.alias}"
        root = target.sync_dir.local
        if explain_path is not None:
            verdict = explain(root, target.rules, explain_path, gitignore=target.gitignore)
            yield f"{label}: {verdict.path}: {verdict.reason}"
            continue
        selection = select(root, target.rules, gitignore=target.gitignore)
        yield f"{label}: {root} -> {target.sync_dir.remote}"
        for entry in selection.entries:
            suffix = "/" if entry.kind == "dir" else f" -> {entry.target}" if entry.target else ""
            yield f"  {entry.path}{suffix}"
        for problem in selection.problems:
            yield f"  ! {problem}"
        files = len(selection.files)
        yield f"  {files} file(s), {human_bytes(selection.total_bytes)}"
