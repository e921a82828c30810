"""Which files a sync_dir pushes: one walk that applies config excludes and ignore files.

Every backend transfers exactly the set `select` returns (rsync gets it as names or rules),
so this module is the one place where rsync's `--exclude` meaning and git's `.gitignore`
meaning are applied. docs/filters.md is the spec; the tests hold both to the real tools.
Pattern compilation lives in patterns, the compiled rule sets in rulesets, finding and reading
ignore files in ignorefiles, and Rule in rules (all beside this module).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import Literal, NamedTuple

from sbatchman.errors import UsageError
from sbatchman.selection.ignorefiles import Context, Stack, context, folder_lines
from sbatchman.selection.patterns import to_bytes
from sbatchman.selection.rules import BUILTIN_DOT_GIT as BUILTIN_DOT_GIT
from sbatchman.selection.rules import BUILTIN_IGNORE_FILE as BUILTIN_IGNORE_FILE
from sbatchman.selection.rules import GITIGNORE as GITIGNORE
from sbatchman.selection.rules import IGNORE_FILE, Note, Rule, by_rule, compile_exclude

__all__ = [
    "IGNORE_FILE",
    "Entry",
    "Rule",
    "Selection",
    "Verdict",
    "check_patterns",
    "explain",
    "select",
]

Kind = Literal["dir", "file", "link"]


class Entry(NamedTuple):
    """One pushed path with the lstat facts the backends compare against the remote.

    A NamedTuple, not a frozen dataclass: a walk makes one per pushed path, and building a
    tuple costs a quarter of a frozen dataclass's field-by-field __init__ (45 ms per 50,000).
    """

    path: str
    kind: Kind
    size: int
    mtime_ns: int
    mode: int
    target: str | None = None


@dataclass(frozen=True)
class Selection:
    """The exact push set of one sync_dir; entries are in parent-before-child order."""

    root: Path
    entries: tuple[Entry, ...]
    problems: tuple[str, ...] = ()  # what could not be read: the push of it fails (rsync: 23)
    notes: tuple[str, ...] = ()  # worth saying, not a failure (see rules.Note)
    top: Entry | None = None  # the root folder itself, when it is not on this machine (fetch)
    changed: frozenset[str] = frozenset()  # files known to have changed (see plan.decide)
    # Set when these excludes alone decided every entry (no ignore file or git exclude took
    # part, nothing was unreadable): they have rsync's meaning, so rsync walking the folder
    # with them sends this same set, plus only what was made since. None: the entries alone
    # say what goes.
    rules: tuple[Rule, ...] | None = None

    @classmethod
    def of(cls, root: Path, entries: Sequence[Entry], found: Sequence[str],
           rules: tuple[Rule, ...] | None = None) -> Selection:  # fmt: skip
        notes = tuple(f for f in found if isinstance(f, Note))
        problems = tuple(f for f in found if not isinstance(f, Note))
        return cls(root, tuple(entries), problems, notes, rules=None if problems else rules)

    # Cached (in the instance __dict__, which frozen does not guard): a push asks for these
    # several times, and each answer is a pass over every entry.
    @cached_property
    def files(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.kind == "file")

    @cached_property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)


@dataclass(frozen=True)
class Verdict:
    """Why one path is or is not pushed, naming the rule that decided."""

    path: str
    pushed: bool
    rule: Rule | None
    reason: str


def check_patterns(rules: Sequence[Rule]) -> None:
    """Raise ConfigError for the first exclude that rsync would not read as a plain exclude."""
    for rule in rules:
        compile_exclude(rule)


# --------------------------------------------------------------------------- the walk


class _Unreadable(Exception):
    """A folder whose entries cannot be stat'ed: reported and left out as a whole."""


def _dir_ok(path: str, mode: int) -> bool:
    """Whether we may list and enter a folder; access() only when the mode bits say no."""
    return (mode & 0o005) == 0o005 or os.access(path, os.R_OK | os.X_OK)


def _file_ok(path: str, mode: int) -> bool:
    return bool(mode & 0o004) or os.access(path, os.R_OK)


def _denied(rel: str, err: BaseException) -> str:
    what = "permission denied"
    if isinstance(err, OSError) and not isinstance(err, PermissionError) and err.strerror:
        what = err.strerror.lower()
    return f"{rel}: {what} (not pushed)"


_by_name = attrgetter("name")

# A folder still to list: its Entry, absolute path, '/'-terminated relative path as bytes,
# and the ignore stack of its parent (its own ignore files are read when it is listed).
_Pending = tuple[Entry, str, bytes, Stack]
_Item = Entry | _Pending


def _list(
    ctx: Context,
    abs_dir: str,
    rel: str,
    rel_b: bytes,
    ign: Stack,
    problems: list[str],
    ruled: list[str],
) -> list[_Item]:
    """The pushed children of one folder, sorted by name. This loop is the hot path: one
    regex call per applicable rule set and one lstat per kept entry, nothing for the rest.
    A folder whose ignore files have rules is added to `ruled`."""
    with os.scandir(abs_dir) as it:
        des = list(it)
    names = [de.name for de in des if de.name in ctx.ignore_names]
    if names:
        ign = ign.plus(folder_lines(ctx, names, abs_dir, rel, rel_b, problems))
        if ign.layers:
            ruled.append(rel)
    des.sort(key=_by_name)

    ex = ctx.excludes
    x_nf, x_nd = ex.name_file, ex.name_dir
    x_pf, _, x_pd, _ = ex.at_depth(rel_b.count(b"/") + 1)
    dir_views, file_views = ign.dir_views, ign.file_views
    fallback = ign.fallback[0] if ign.fallback is not None else None
    slash_pre = b"/" + rel_b
    tree_pre = ctx.tree_prefix + rel_b
    prefix = rel + "/" if rel else ""
    out: list[_Item] = []
    append = out.append
    new = tuple.__new__  # Entry's own __new__ is one more Python call per entry
    for de in des:
        if de.is_file(follow_symlinks=False):  # most entries: one d_type test, not two
            is_dir = False
            views = file_views
        elif de.is_dir(follow_symlinks=False):
            is_dir = True
            views = dir_views
        elif de.is_symlink():
            is_dir = False
            views = file_views
        else:
            continue  # fifo, socket, device: rsync -rlpt skips them too
        name = de.name
        nb = name.encode("utf-8", "surrogateescape")
        if is_dir:
            if (x_nd is not None and x_nd(nb)) or (
                x_pd is not None and x_pd(slash_pre + nb + b"/")
            ):
                continue
        elif (x_nf is not None and x_nf(nb)) or (x_pf is not None and x_pf(slash_pre + nb)):
            continue
        for nrx, nmap, prx, pmap, lines in views:  # deepest ignore layer first
            best = -1
            if nrx is not None and (m := nrx(nb)):
                best = nmap[m.lastindex or 0]
            if prx is not None and (m := prx(tree_pre + nb)):
                best = max(best, pmap[m.lastindex or 0])
            if best >= 0:
                ignored = not lines[best].negated
                break
        else:
            ignored = nb == fallback
        if ignored:
            continue
        path = prefix + name
        try:
            st = de.stat(follow_symlinks=False)
            mode = st.st_mode
            if is_dir:
                entry = Entry(path, "dir", 0, st.st_mtime_ns, mode & 0o7777)
                append((entry, de.path, rel_b + nb + b"/", ign))
            elif S_ISREG(mode):
                if not mode & 0o004 and not os.access(de.path, os.R_OK):
                    problems.append(f"{path}: permission denied (not pushed)")
                    continue
                append(new(Entry, (path, "file", st.st_size, st.st_mtime_ns, mode & 0o7777, None)))
            elif S_ISLNK(mode):
                target = os.readlink(de.path)
                append(Entry(path, "link", st.st_size, st.st_mtime_ns, mode & 0o7777, target))
        except PermissionError:
            raise _Unreadable() from None
        except OSError as err:  # vanished between listing and stat
            problems.append(_denied(path, err))
    return out


def select(root: Path, excludes: Sequence[Rule], *, gitignore: bool = False) -> Selection:
    """Walk `root` once and return exactly what a push of it transfers (docs/filters.md)."""
    ctx = context(root, excludes, gitignore)
    problems = list(ctx.problems)
    ruled: list[str] = []  # folders with ignore rules of their own
    entries: list[Entry] = []
    if ctx.blocked is not None:
        return Selection.of(root, (), problems)
    try:
        stack = _list(ctx, ctx.root_s, "", b"", ctx.base, problems, ruled)
    except (OSError, _Unreadable) as err:
        problems.append(_denied(ctx.root_s, err).replace("(not pushed)", "(nothing pushed)"))
        return Selection.of(root, (), problems)
    stack.reverse()
    pop, push, append = stack.pop, stack.extend, entries.append
    while stack:  # depth-first, in name order: parents before children, as documented
        item = pop()
        if isinstance(item, Entry):
            append(item)
            continue
        entry, abs_dir, rel_b, ign = item
        try:
            if not _dir_ok(abs_dir, entry.mode):
                raise PermissionError
            kids = _list(ctx, abs_dir, entry.path, rel_b, ign, problems, ruled)
        except (OSError, _Unreadable) as err:
            problems.append(_denied(entry.path, err))
            continue
        append(entry)
        kids.reverse()
        push(kids)
    alone = None
    if not ruled and not ctx.base.layers:  # the config's excludes decided it all
        alone = (*excludes, *([BUILTIN_DOT_GIT] if gitignore else []), BUILTIN_IGNORE_FILE)
    return Selection.of(root, entries, problems, alone)


# --------------------------------------------------------------------------- explain


def _relative_parts(ctx: Context, path: str) -> tuple[list[str], bool]:
    """Split a user-given path into components below the sync_dir (absolute paths allowed)."""
    want_dir = path.endswith("/")
    if os.path.isabs(path):
        below = path_below(ctx.root_s, path)
        if below is None:
            raise UsageError(f"{path} is not inside the sync_dir {ctx.root_s}; give a path in it")
        path = below + ("/" if want_dir else "")
    parts = [p for p in path.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"'{path}' climbs out with '..'; give a path inside {ctx.root_s}")
    if not parts:
        raise UsageError(f"'{path}' is the sync_dir itself; give a path inside it")
    return parts, want_dir


def path_below(root: str, path: str) -> str | None:
    """`path` (absolute) relative to the sync_dir `root`, or None when it is not inside.

    Links above the sync_dir are followed (on many systems /home is a link to another file
    system, and either spelling may be in the config or the shell); links inside it are
    kept as given, since they are entries to be judged themselves, never followed.
    """
    given = os.path.abspath(path)
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        if os.path.commonpath([base, given]) == base:
            return os.path.relpath(given, base) if given != base else ""
    real_root = os.path.realpath(root)
    parts = given.split("/")
    for k in range(2, len(parts) + 1):  # the shortest prefix that is the sync_dir itself
        if os.path.realpath("/".join(parts[:k])) == real_root:
            return "/".join(parts[k:])
    return None


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "link" if stat.S_ISLNK(mode) else "special"


def _listing(path: str) -> list[str] | None:
    try:
        with os.scandir(path) as it:
            return [de.name for de in it]
    except OSError:
        return None


def explain(root: Path, excludes: Sequence[Rule], path: str, *, gitignore: bool = False) -> Verdict:
    """Decide one path the way `select` would, and say which rule decided and why."""
    ctx = context(root, excludes, gitignore)
    parts, want_dir = _relative_parts(ctx, path)
    shown = "/".join(parts)

    def no(reason: str, rule: Rule | None = None) -> Verdict:
        return Verdict(shown, False, rule, f"not pushed: {reason}")

    if ctx.blocked is not None:
        where, rule = ctx.blocked
        ignored = by_rule(rule, "ignored")
        return no(
            f"{where} is {ignored}, and git ignores everything inside an ignored folder", rule
        )
    names = _listing(ctx.root_s)
    if names is None:
        return no("the sync_dir cannot be read (permission denied)")
    problems: list[str] = []
    ign = ctx.base.plus(folder_lines(ctx, names, ctx.root_s, "", b"", problems))
    abs_dir = ctx.root_s
    rel_b = b""
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        rel = "/".join(parts[: k + 1])
        abs_path = os.path.join(abs_dir, part)
        missing = ""
        try:
            mode = os.lstat(abs_path).st_mode
            kind = _kind_of(mode)
        except (FileNotFoundError, NotADirectoryError):
            mode = 0
            kind = "dir" if (want_dir or not last) else "file"
            judged = "folder" if kind == "dir" else "file"
            missing = f"; it does not exist locally, so it was judged as a {judged}"
        if kind == "special":
            return no(f"{rel} is a special file (fifo, socket or device), which rsync skips too")
        is_dir = kind == "dir"
        nb = to_bytes(part)
        hit = ctx.excludes.match(nb, b"/" + rel_b + nb, is_dir)
        verb = "excluded"
        line = None
        if hit is None:
            line = ign.last_match(nb, ctx.tree_prefix + rel_b + nb, is_dir)
            if line is not None and not line.negated:
                hit, verb = line.tag, "ignored"
        if hit is not None:
            if last:
                return no(f"{by_rule(hit, verb)}{missing}", hit)
            return no(
                f"its parent folder {rel} is {by_rule(hit, verb)}, so nothing inside it is pushed"
                f"{missing}",
                hit,
            )
        names = []
        if not missing:
            readable = (
                _dir_ok(abs_path, mode) if is_dir else kind != "file" or _file_ok(abs_path, mode)
            )
            listed = _listing(abs_path) if readable and is_dir else []
            if not readable or listed is None:
                where = "it" if last else f"its parent folder {rel}"
                return no(f"{where} cannot be read (permission denied)")
            names = listed
        if last:
            if line is not None:
                why = by_rule(line.tag, "re-included")
                return Verdict(shown, True, line.tag, f"pushed: {why}{missing}")
            return Verdict(
                shown, True, None, f"pushed: no exclude or ignore rule matches it{missing}"
            )
        if kind == "link":
            return no(f"{rel} is a symlink, which is pushed as a link and never followed")
        if kind == "file":
            return no(f"{rel} is a file, not a folder")
        rel_b += nb + b"/"
        ign = ign.plus(folder_lines(ctx, names, abs_path, rel, rel_b, problems))
        abs_dir = abs_path
    raise AssertionError("unreachable")  # pragma: no cover
