"""Which entries of a tree that is listed folder by folder a fetch brings: excludes only.

A fetch reads the cluster's tree, which no local walk can reach, so the walk is given a lister:
each round lists every folder found in the round before, all at once (SFTP keeps many listings
in flight; a local folder is just scandir). An excluded folder is never listed, so a `results/`
or `.git` of a million files costs one name. The rules are the config excludes with rsync
`--exclude` meaning, judged by the same ExcludeSet as a push; ignore files are not read on the
cluster (they say what stays on the laptop, not what comes back). `judge_path` answers for one
path (`ls --fetch --explain`) by the very same rules, listing only the folders along it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.errors import TransferError
from sbatchman.selection.patterns import to_bytes
from sbatchman.selection.rules import Rule, by_rule, compile_exclude
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


# --------------------------------------------------------------------------- one path


@dataclass(frozen=True)
class Judged:
    """What a fetch does with one path of the cluster's tree, and why, in one sentence."""

    path: str  # below the fetch_dir's remote folder
    fetched: bool
    reason: str
    found: Found | None = None  # the entry on the cluster, when it is fetched
    unreadable: bool = False  # a folder on the way could not be listed: the fetch fails too


def judge_path(
    lister: Lister, excludes: Sequence[Rule], parts: Sequence[str], want_dir: bool
) -> Judged:
    """What select_tree does with the path `parts` (components below the root): each
    component found in its parent's listing and judged with its real kind by the same rules,
    one listing per depth, and no listing of a folder a fetch would not enter either.

    `want_dir` (a trailing `/`) is the kind to judge a path by when it is not on the cluster.
    TransferError when the root cannot be listed, as select_tree: nothing would be fetched.
    """
    rules = ExcludeSet([(r, compile_exclude(r)) for r in excludes])
    shown = "/".join(parts)

    def no(reason: str, unreadable: bool = False) -> Judged:
        return Judged(shown, False, f"not fetched: {reason}", unreadable=unreadable)

    folder = ""
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        listed = _listed(lister, folder)
        if isinstance(listed, str):  # a parent on the way (the root raised)
            return no(f"its parent folder {folder} cannot be listed ({listed})", True)
        rel = f"{folder}/{part}" if folder else part
        item = next((f for f in listed if f.name == part), None)
        if item is None:
            return no(_missing(rules, parts, k, want_dir))
        where = "it" if last else f"its parent {rel}"
        if item.kind is None:
            return no(f"{where} is a special file (fifo, socket or device), which rsync skips too")
        hit = rules.match(to_bytes(part), b"/" + to_bytes(rel), item.kind == "dir")
        if hit is not None:
            if last:
                return no(by_rule(hit, "excluded"))
            return no(
                f"its parent folder {rel} is {by_rule(hit, 'excluded')}, so nothing inside it"
                " is fetched"
            )
        if last:
            if item.kind == "link":
                return Judged(shown, True, "fetched as a link (never followed)", item)
            if item.kind == "dir" and isinstance(inside := _listed(lister, rel), str):
                return no(f"it cannot be listed ({inside}), so nothing in it is fetched", True)
            return Judged(shown, True, "fetched: no exclude matches it", item)
        if item.kind == "link":
            return no(f"{where} is a link, which is fetched as a link and never followed")
        if item.kind == "file":
            return no(f"{where} is a file, not a folder")
        folder = rel
    raise AssertionError("no path to judge")  # pragma: no cover


def _listed(lister: Lister, folder: str) -> Sequence[Found] | str:
    found = lister([folder]).get(folder, "it was not listed")
    if isinstance(found, str) and not folder:
        raise TransferError(found)
    return found


def _missing(rules: ExcludeSet[Rule], parts: Sequence[str], k: int, want_dir: bool) -> str:
    """Component k is not on the cluster: the rest judged by name, as the folders and the
    kind (`want_dir`) the user means, so a pattern that would keep it out is still named."""
    there = "/".join(parts[: k + 1])
    gone = "it" if k == len(parts) - 1 else f"its parent folder {there}"
    judged = f"it was judged as {'a folder' if want_dir else 'a file'}"
    for j in range(k, len(parts)):
        rel = "/".join(parts[: j + 1])
        is_dir = j < len(parts) - 1 or want_dir
        hit = rules.match(to_bytes(parts[j]), b"/" + to_bytes(rel), is_dir)
        if hit is None:
            continue
        if j == len(parts) - 1:
            return f"{by_rule(hit, 'excluded')}; {gone} does not exist on the cluster ({judged})"
        return (
            f"its parent folder {rel} is {by_rule(hit, 'excluded')}, so nothing inside it is"
            f" fetched; {there} does not exist on the cluster"
        )
    return f"{gone} does not exist on the cluster ({judged}: no exclude matches it)"
