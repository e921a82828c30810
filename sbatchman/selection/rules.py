"""What a selection rule is and how messages name it: Rule, the built-in rules, file names.

Shared by selection.py (the walk and explain) and ignorefiles.py (where rules come from), so
neither has to import the other; selection.py re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass

from sbatchman.errors import ConfigError
from sbatchman.selection.patterns import PatternError, RsyncPattern, compile_rsync

__all__ = [
    "BUILTIN_DOT_GIT",
    "BUILTIN_IGNORE_FILE",
    "GITIGNORE",
    "IGNORE_FILE",
    "Note",
    "Rule",
    "by_rule",
    "compile_exclude",
    "show",
]

IGNORE_FILE = ".sbatchmanignore"
GITIGNORE = ".gitignore"


class Note(str):
    """A finding worth telling that does not fail the push (git would not fail either): a
    .gitignore line that can never match, an ignore file that is a symlink. Findings travel in
    one list; this type is what tells the notes from the real problems (unreadable files)."""


@dataclass(frozen=True)
class Rule:
    """A pattern plus where it came from, so every verdict can point at the line to edit."""

    pattern: str
    source: str


# The ignore-file rule sits below every ignore file, so `!.sbatchmanignore` in any of them
# re-includes it; the .git rule sits with the config excludes, since git never lists .git.
BUILTIN_IGNORE_FILE = Rule(IGNORE_FILE, "built-in (ignore files stay local unless re-included)")
BUILTIN_DOT_GIT = Rule(".git", "built-in (respect_gitignore never pushes .git)")


def show(pattern: str) -> str:
    """Quote a pattern for a one-line message, escaping anything that would break the line."""
    return f"'{pattern}'" if pattern.isprintable() else repr(pattern)


def by_rule(rule: Rule, verb: str) -> str:
    return f"{verb} by {show(rule.pattern)} from {rule.source}"


def compile_exclude(rule: Rule) -> RsyncPattern:
    try:
        return compile_rsync(rule.pattern)
    except PatternError as err:
        raise ConfigError(
            f"bad exclude {show(rule.pattern)} in {rule.source}: {err.why}; {err.fix}"
        ) from None
