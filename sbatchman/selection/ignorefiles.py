"""Where ignore rules come from: .sbatchmanignore, .gitignore, .git/info/exclude.

Ignore files count in and below the sync_dir, and (with gitignore = true) from the work-tree
root down to it, plus info/exclude. Split from selection.py, which walks the sync_dir and
decides each entry; this module finds and reads the files those decisions draw on, as git does
(which work tree, which git dir, which folders above the sync_dir), and fixes the per-call
Context the walk and `explain` share.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.errors import ConfigError
from sbatchman.selection.patterns import (
    PatternError,
    compile_git,
    compile_rsync,
    split_lines,
    to_bytes,
)
from sbatchman.selection.rules import (
    BUILTIN_DOT_GIT,
    BUILTIN_IGNORE_FILE,
    GITIGNORE,
    IGNORE_FILE,
    Note,
    Rule,
    by_rule,
    compile_exclude,
    show,
)
from sbatchman.selection.rulesets import ExcludeSet, IgnoreLine, IgnoreStack

__all__ = ["Context", "Stack", "context", "folder_lines"]

_Line = IgnoreLine[Rule]
Stack = IgnoreStack[Rule]


# --------------------------------------------------------------------------- ignore files


def _read_ignore_file(path: str, label: str) -> bytes | None:
    """The bytes of an ignore file; None unless it is a regular file (git skips symlinks).

    An unreadable ignore file is an error rather than a problem: pushing without its rules
    could upload exactly what the user meant to keep local.
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(
            f"cannot read ignore file {label}: {err.strerror}; fix its permissions"
        ) from None


def _parse_ignore_file(
    data: bytes, label: str, folder: bytes, strict: bool, problems: list[str]
) -> list[_Line]:
    """Lines of one ignore file in `folder` (work-tree relative, '/'-terminated or b"").

    A line that can never match is a ConfigError in our own .sbatchmanignore (strict); in a
    .gitignore it is only reported, since git accepts it and the repository is not ours.
    """
    out: list[_Line] = []
    for lineno, line in split_lines(data):
        text = line.decode("utf-8", "surrogateescape")
        source = f"{label}:{lineno}"
        try:
            pat = compile_git(line)
        except PatternError as err:
            if strict:
                raise ConfigError(
                    f"bad pattern {show(text)} in {source}: {err.why}; {err.fix}"
                ) from None
            problems.append(Note(f"{source}: pattern {show(text)} is ignored ({err.why})"))
            continue
        out.append(IgnoreLine.of(Rule(text, source), pat, folder))
    return out


# --------------------------------------------------------------------------- git context


def _git_dir(dotgit: str) -> str | None:
    """The git dir that `dotgit` (a `.git` folder or gitfile) stands for, if it is one."""
    try:
        st = os.stat(dotgit)
        if stat.S_ISDIR(st.st_mode):
            return dotgit if os.path.exists(os.path.join(dotgit, "HEAD")) else None
        if stat.S_ISREG(st.st_mode):
            with open(dotgit, "rb") as fh:
                head = fh.read(4096).decode("utf-8", "surrogateescape")
            if head.startswith("gitdir:"):
                target = os.path.join(os.path.dirname(dotgit), head[7:].strip())
                return target if os.path.isdir(target) else None
    except OSError:
        pass
    return None


def _find_work_tree(start: str) -> tuple[str, str] | None:
    """(work-tree root, git dir) for `start`, found as git does: nearest folder with .git."""
    d = start
    while True:
        gd = _git_dir(os.path.join(d, ".git"))
        if gd is not None:
            return d, gd
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _info_exclude(git_dir: str) -> str:
    """info/exclude lives in the common dir, which linked work trees name in `commondir`."""
    common = git_dir
    try:
        with open(os.path.join(git_dir, "commondir"), "rb") as fh:
            common = os.path.join(git_dir, fh.read().decode("utf-8", "surrogateescape").strip())
    except OSError:
        pass
    return os.path.join(common, "info", "exclude")


@dataclass(frozen=True)
class Context:
    """Everything fixed for one select/explain call."""

    root: Path
    root_s: str
    excludes: ExcludeSet[Rule]
    ignore_names: tuple[str, ...]  # read in this order; the later one wins in its folder
    tree_prefix: bytes  # the sync_dir's path in its work tree, '/'-terminated, or b""
    base: Stack  # built-in rule, info/exclude, ancestors' .gitignore
    blocked: tuple[str, Rule] | None  # git ignores the sync_dir or a folder above it
    problems: tuple[str, ...]


def context(root: Path, excludes: Sequence[Rule], gitignore: bool) -> Context:
    compiled = [(r, compile_exclude(r)) for r in excludes]
    if gitignore:
        compiled.append((BUILTIN_DOT_GIT, compile_rsync(BUILTIN_DOT_GIT.pattern)))
    root_s = os.fspath(root)
    try:
        is_dir = stat.S_ISDIR(os.stat(root_s).st_mode)
    except OSError as err:
        raise ConfigError(
            f"sync_dir {root_s} cannot be used: {err.strerror}; create it or fix its path"
        ) from None
    if not is_dir:
        raise ConfigError(f"sync_dir {root_s} is not a directory; point it at a folder")
    builtin = IgnoreLine.of(BUILTIN_IGNORE_FILE, compile_git(to_bytes(IGNORE_FILE)), b"")
    base: Stack = IgnoreStack((), (to_bytes(IGNORE_FILE), builtin))
    problems: list[str] = []
    prefix = b""
    blocked = None
    if gitignore:
        prefix, base, blocked = _from_above(root_s, base, problems)
    names = (GITIGNORE, IGNORE_FILE) if gitignore else (IGNORE_FILE,)
    return Context(
        root, root_s, ExcludeSet(compiled), names, prefix, base, blocked, tuple(problems)
    )


def _from_above(
    root_s: str, base: Stack, problems: list[str]
) -> tuple[bytes, Stack, tuple[str, Rule] | None]:
    """What git applies inside the sync_dir from outside it: info/exclude and the .gitignore
    files of the folders from the work-tree root down to the sync_dir's parent.

    Also finds the first of those folders (or the sync_dir itself) that git ignores, since
    git then ignores everything in the sync_dir.
    """
    real = os.path.realpath(root_s)
    found = _find_work_tree(real)
    if found is None:
        return b"", base, None
    top, git_dir = found
    parts = [] if real == top else os.path.relpath(real, top).split(os.sep)
    if ".git" in parts:  # inside the repository's own metadata, not its work tree
        return b"", base, None

    def label(path: str) -> str:
        return os.path.relpath(path, real).replace(os.sep, "/")

    excl = _info_exclude(git_dir)
    data = _read_ignore_file(excl, label(excl))
    if data is not None:
        base = base.plus(_parse_ignore_file(data, label(excl), b"", False, problems))
    folder = top
    tree = b""
    for part in parts:
        gi = os.path.join(folder, GITIGNORE)
        data = _read_ignore_file(gi, label(gi))
        if data is not None:
            base = base.plus(_parse_ignore_file(data, label(gi), tree, False, problems))
        name = to_bytes(part)
        hit = base.last_match(name, tree + name, True)
        folder = os.path.join(folder, part)
        tree += name + b"/"
        if hit is not None and not hit.negated:
            inner = tree[:-1].decode("utf-8", "surrogateescape")
            where = "the sync_dir" if folder == real else f"the folder {inner} above the sync_dir"
            problems.append(
                f"nothing is pushed: {where} is {by_rule(hit.tag, 'ignored')}, and git ignores "
                "everything inside an ignored folder"
            )
            return tree, base, (where, hit.tag)
    return tree, base, None


def folder_lines(
    ctx: Context, names: Sequence[str], abs_dir: str, rel: str, rel_b: bytes, problems: list[str]
) -> list[_Line]:
    """Lines of the ignore files among `names` (a folder's listing), .gitignore first so that
    our own file has the last word in its folder."""
    out: list[_Line] = []
    for name in ctx.ignore_names:
        if name not in names:
            continue
        label = f"{rel}/{name}" if rel else name
        path = os.path.join(abs_dir, name)
        if os.path.islink(path):
            if name == IGNORE_FILE:  # pushing without the user's own rules could leak secrets
                raise ConfigError(
                    f"{label} is a symlink, and ignore files are read only as regular files"
                    " (git does the same); replace the link with a copy of the file"
                )
            problems.append(
                Note(f"{label}: is a symlink, so its rules are not read (git does the same)")
            )
            continue
        data = _read_ignore_file(path, label)
        if data is not None:
            strict = name == IGNORE_FILE
            out += _parse_ignore_file(data, label, ctx.tree_prefix + rel_b, strict, problems)
    return out
