"""Which entries of a tree that is listed folder by folder a fetch brings: excludes only.

A fetch reads the cluster's tree, which no local walk can reach, so the walk is given a lister:
each round lists every folder found in the round before, all at once (SFTP keeps many listings
in flight; a local folder is just scandir). An excluded folder is never listed, so a `results/`
or `.git` of a million files costs one name. The rules are the config excludes with rsync
`--exclude` meaning, judged by the same ExcludeSet as a push; ignore files are not read on the
cluster (they say what stays on the laptop, not what comes back).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.errors import TransferError
from sbatchman.selection.patterns import to_bytes
from sbatchman.selection.rules import Rule, compile_exclude
from sbatchman.selection.rulesets import ExcludeSet
from sbatchman.selection.walk import Entry, Kind, Selection


@dataclass(frozen=True)
class Found:
    """One name in a listed folder; `kind` None for what rsync -rlpt skips (fifo, device)."""

    name: str
    kind: Kind | None
    size: int
    mtime_ns: int
    mode: int  # permission bits only
    target: str | None = None  # a link's target, when the lister read it


Listed = Mapping[str, Sequence[Found] | str]
"""Folder (relative, "" the root) -> its names, or why it could not be listed."""
Lister = Callable[[Sequence[str]], Listed]


def select_tree(
    root: Path, top: Found | None, lister: Lister, excludes: Sequence[Rule]
) -> Selection:
    """Every selected entry below `root` (parents before children, in name order).

    `top` is the root folder itself (its mode and mtime go to the destination folder). A
    folder that cannot be listed is a problem, which fails the transfer of that target, and
    its own entry is left out, so nothing below it is planned; when the root cannot be
    listed, TransferError says why (the lister's sentence) and nothing is planned at all.
    """
    rules = ExcludeSet([(r, compile_exclude(r)) for r in excludes])
    entries: list[Entry] = []
    problems: list[str] = []
    wanted: list[Entry] = [Entry("", "dir", 0, 0, 0)]
    while wanted:  # one round per depth: every folder of it listed at once
        listed = lister([folder.path for folder in wanted])
        found_dirs: list[Entry] = []
        for folder in wanted:
            found = listed.get(folder.path, "it was not listed")
            if isinstance(found, str):
                if not folder.path:  # the folder to fetch: nothing can come, nothing is made
                    raise TransferError(found)
                problems.append(f"{folder.path or '.'}: {found} (nothing in it fetched)")
                continue
            if folder.path:
                entries.append(folder)
            _keep(folder.path, found, rules, entries, found_dirs)
        wanted = found_dirs
    entries.sort(key=lambda e: e.path.split("/"))
    top_entry = None if top is None else Entry("", "dir", 0, top.mtime_ns, top.mode)
    return Selection(root, tuple(entries), tuple(problems), top=top_entry)


def _keep(
    folder: str,
    found: Sequence[Found],
    rules: ExcludeSet[Rule],
    entries: list[Entry],
    found_dirs: list[Entry],
) -> None:
    prefix = folder + "/" if folder else ""
    slash = b"/" + to_bytes(prefix)
    for item in found:
        if item.kind is None or item.name in (".", ".."):
            continue
        name = to_bytes(item.name)
        if rules.match(name, slash + name, item.kind == "dir") is not None:
            continue
        path = prefix + item.name
        entry = Entry(path, item.kind, item.size, item.mtime_ns, item.mode, item.target)
        if item.kind == "dir":
            found_dirs.append(entry)  # an entry once its own listing worked
        else:
            entries.append(entry)
