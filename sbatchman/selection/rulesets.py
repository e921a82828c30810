"""Compiled rule sets the selection walk consults per entry: config excludes and ignore layers.

Kept apart from the patterns module, which turns one pattern into one regex the way rsync or
git would; this module groups many such regexes into combined ones, so deciding an entry costs
one regex call per applicable set instead of one per pattern, and answers which rule decided.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sbatchman.selection.patterns import GitPattern, RsyncPattern

T = TypeVar("T")
Matcher = Callable[[bytes], "re.Match[bytes] | None"]


def combine(rxs: Sequence[bytes]) -> Matcher | None:
    """One regex for many: `m.lastindex` is 1 + the index of the alternative that matched."""
    if not rxs:
        return None
    return re.compile(b"|".join(b"(" + rx + b")" for rx in rxs), re.DOTALL).fullmatch


class ExcludeSet(Generic[T]):
    """Config excludes as combined regexes: name/path x file/dir (see RsyncPattern).

    Any match excludes, so one regex call per kind answers. Path-mode regexes are built per
    depth, holding only the patterns that can match at that depth (`at_depth`). `match`
    reports the first matching exclude in the given order, tagged as the caller chose.
    """

    __slots__ = ("_by_depth", "_nd", "_nf", "_paths", "name_dir", "name_file")

    def __init__(self, items: Sequence[tuple[T, RsyncPattern]]) -> None:
        nf: list[tuple[bytes, T]] = []
        nd: list[tuple[bytes, T]] = []
        for tag, pat in items:
            if pat.name_mode:
                nd.append((pat.dir_rx, tag))
                if pat.file_rx is not None:
                    nf.append((pat.file_rx, tag))
        self.name_file = combine([rx for rx, _ in nf])
        self.name_dir = combine([rx for rx, _ in nd])
        self._nf = [None, *(t for _, t in nf)]
        self._nd = [None, *(t for _, t in nd)]
        self._paths = [(tag, pat) for tag, pat in items if not pat.name_mode]
        # A cache on the instance (one select/explain call), filled on first use per depth.
        self._by_depth: dict[
            int, tuple[Matcher | None, list[T | None], Matcher | None, list[T | None]]
        ] = {}

    def at_depth(
        self, depth: int
    ) -> tuple[Matcher | None, list[T | None], Matcher | None, list[T | None]]:
        """(file regex, group -> tag, dir regex, group -> tag) for paths of `depth` parts."""
        view = self._by_depth.get(depth)
        if view is None:
            fit = [
                (tag, pat)
                for tag, pat in self._paths
                if pat.min_depth <= depth and (pat.max_depth is None or depth <= pat.max_depth)
            ]
            files = [(pat.file_rx, tag) for tag, pat in fit if pat.file_rx is not None]
            view = (
                combine([rx for rx, _ in files]),
                [None, *(t for _, t in files)],
                combine([pat.dir_rx for _, pat in fit]),
                [None, *(t for t, _ in fit)],
            )
            self._by_depth[depth] = view
        return view

    def match(self, name: bytes, slash_path: bytes, is_dir: bool) -> T | None:
        """The exclude that removes an entry; `slash_path` is "/" + its path, no "/" after."""
        path_file, pf, path_dir, pd = self.at_depth(slash_path.count(b"/"))
        if is_dir:
            nrx, nmap, prx, pmap, subject = self.name_dir, self._nd, path_dir, pd, slash_path + b"/"
        else:
            nrx, nmap, prx, pmap, subject = self.name_file, self._nf, path_file, pf, slash_path
        if nrx is not None and (m := nrx(name)):
            return nmap[m.lastindex or 0]
        if prx is not None and (m := prx(subject)):
            return pmap[m.lastindex or 0]
        return None


@dataclass(frozen=True, slots=True)
class IgnoreLine(Generic[T]):
    """One compiled ignore-file line. A path-mode `rx` already starts with its file's folder
    (relative to the work tree), so lines from any folder take the same subject."""

    tag: T
    negated: bool
    name_mode: bool
    dir_only: bool
    rx: bytes

    @classmethod
    def of(cls, tag: T, pat: GitPattern, folder: bytes) -> IgnoreLine[T]:
        rx = pat.rx if pat.name_mode else re.escape(folder) + pat.rx
        return cls(tag, pat.negated, pat.name_mode, pat.dir_only, rx)


# Per layer and kind: (name regex, group -> line index, path regex, group -> line index, lines)
LayerView = tuple[Matcher | None, list[int], Matcher | None, list[int], "tuple[IgnoreLine[T], ...]"]


class IgnoreLayer(Generic[T]):
    """The lines of one folder's ignore files (or of info/exclude), compiled once.

    The regexes list the lines in reverse, so the first alternative that matches is the
    last matching line: the one git obeys.
    """

    __slots__ = ("for_dirs", "for_files", "lines")

    def __init__(self, lines: Sequence[IgnoreLine[T]]) -> None:
        self.lines = tuple(lines)
        self.for_dirs = self._view(dir_only_too=True)
        self.for_files = self._view(dir_only_too=False)

    def _view(self, dir_only_too: bool) -> LayerView[T]:
        order = [
            i
            for i in range(len(self.lines) - 1, -1, -1)
            if dir_only_too or not self.lines[i].dir_only
        ]
        names = [i for i in order if self.lines[i].name_mode]
        paths = [i for i in order if not self.lines[i].name_mode]
        return (
            combine([self.lines[i].rx for i in names]),
            [-1, *names],
            combine([self.lines[i].rx for i in paths]),
            [-1, *paths],
            self.lines,
        )


def last_match(
    views: Sequence[LayerView[T]], name: bytes, tree_path: bytes
) -> IgnoreLine[T] | None:
    """The line git obeys: the last matching line of the deepest layer that has one.

    `views` are the layers' `for_dirs` or `for_files`, deepest first; `tree_path` is the
    entry's path relative to the work tree (or to the sync_dir outside a repository).
    """
    for nrx, nmap, prx, pmap, lines in views:
        best = -1
        if nrx is not None and (m := nrx(name)):
            best = nmap[m.lastindex or 0]
        if prx is not None and (m := prx(tree_path)):
            best = max(best, pmap[m.lastindex or 0])
        if best >= 0:
            return lines[best]
    return None


class IgnoreStack(Generic[T]):
    """The layers in force in one folder, deepest first, pre-split by entry kind.

    `fallback` is a line for one exact name that applies below every layer (sbatchman's own
    ignore files): kept out of the layers so the common no-ignore-file case costs a bytes
    comparison instead of a regex call per entry. Immutable: a folder with ignore files gets
    a new stack, its subfolders share it.
    """

    __slots__ = ("dir_views", "fallback", "file_views", "layers")

    def __init__(
        self,
        layers: tuple[IgnoreLayer[T], ...],
        fallback: tuple[bytes, IgnoreLine[T]] | None = None,
    ) -> None:
        self.layers = layers
        self.fallback = fallback
        self.dir_views = [v for v in (la.for_dirs for la in layers) if v[0] or v[2]]
        self.file_views = [v for v in (la.for_files for la in layers) if v[0] or v[2]]

    def plus(self, lines: Sequence[IgnoreLine[T]]) -> IgnoreStack[T]:
        if not lines:
            return self
        return IgnoreStack((IgnoreLayer(lines), *self.layers), self.fallback)

    def last_match(self, name: bytes, tree_path: bytes, is_dir: bool) -> IgnoreLine[T] | None:
        hit = last_match(self.dir_views if is_dir else self.file_views, name, tree_path)
        if hit is None and self.fallback is not None and name == self.fallback[0]:
            return self.fallback[1]
        return hit
