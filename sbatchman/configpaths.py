"""What a path written in the config means: `~`, relative locals, literal remotes, placeholders.

Kept apart from config.py (which walks the tables and checks each key's shape) because these
are the rules users reason about when a folder is not where they expected, and each is one
function: `~` expands as a shell would, a relative local is taken from the folder sbatchman runs
in, a remote is kept literal (no shell ever sees it), and a fetch_dir's `local` may name its
cluster and alias as `{cluster}` and `{alias}` (`{{` and `}}` are literal braces).
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path

from sbatchman.errors import ConfigError

# The original sbatchman's default config puts results here; a fetch_dir without `local`
# lands in DEFAULT_LOCAL_BASE/<cluster>/<alias> unless global.local_base says otherwise.
DEFAULT_LOCAL_BASE = "~/SbatchMan"
PLACEHOLDERS = ("cluster", "alias")
_TOKEN = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")


def expand_user(text: str, where: str) -> Path:
    """`~` and `~user` as the shell expands them; an unknown user is the config's mistake."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # no such user, or no home to expand `~` to
        head = text.split("/", 1)[0]
        raise ConfigError(f"{where}: {text!r}: cannot expand {head}: write the full path") from None


def absolute(path: Path, base: Path | None, where: str) -> Path:
    """A relative path is taken from `base`, else from the folder sbatchman runs in."""
    if path.is_absolute():
        return path
    try:
        return (base or Path.cwd()) / path
    except OSError as err:  # the current folder was removed under us
        raise ConfigError(
            f"{where}: {str(path)!r} is relative, but the current folder is gone ({err.strerror})"
        ) from None


def local_path(text: str, base: Path | None, where: str) -> Path:
    """A local folder as written (braces are plain characters): `~` expanded, made absolute."""
    return absolute(expand_user(text, where), base, where)


def remote_path(text: str, where: str) -> str:
    """Relative means under the login directory, as with ssh and rsync; `~/x` says the same.

    The path is kept literal (no shell ever sees it), so `~user` cannot be expanded: we ask
    for the absolute path instead of guessing.
    """
    if text in ("", "~", "~/"):
        return "."
    if text.startswith("~/"):
        return text[2:].lstrip("/") or "."
    if text.startswith("~"):
        raise ConfigError(f"{where}: {text!r}: ~user paths are not expanded; write the full path")
    named = False  # a `..` after a folder name means that folder must exist there first
    for part in text.split("/"):
        if part == ".." and named:
            plain = posixpath.normpath(text)
            raise ConfigError(
                f"{where}: {text!r}: a '..' after a folder name depends on that folder existing"
                f" on the cluster (the backends cannot all check it); write {plain!r}"
            )
        named = named or part not in ("", ".", "..")
    return text


def fetch_local(
    template: str | None, base: Path | None, values: Mapping[str, str], where: str
) -> Path:
    """A fetch_dir's local folder: `template` with its placeholders filled, or, when it gives
    none, `{local_base}/{cluster}/{alias}`.

    A `~` is expanded before the names are put in, so a name is never read as a home folder;
    a name that would add or climb folders (`a/b`, `..`) is refused rather than followed.
    """
    for key, value in values.items():
        if "/" in value or value in (".", ".."):
            raise ConfigError(
                f"{where}: {{{key}}} would be {value!r}, which is not one folder name; rename"
                f" the {key} or write the folder out in full"
            )
    if template is None:
        start = base or expand_user(DEFAULT_LOCAL_BASE, where)
        return absolute(start / values["cluster"] / values["alias"], None, where)
    head, sep, rest = template.partition("/")
    if head.startswith("~") and not _TOKEN.search(head):  # `~` or `~user`, written out
        text = str(expand_user(head, where)) + sep + fill(rest, values, where)
    else:
        text = fill(template, values, where)
    return absolute(Path(text), None, where)


def fill(template: str, values: Mapping[str, str], where: str) -> str:
    """Put each `{name}` of `values` in; `{{` and `}}` are one brace; anything else in braces
    is the user's mistake, named with the fix."""
    out: list[str] = []
    last = 0
    for token in _TOKEN.finditer(template):
        out.append(template[last : token.start()])
        last = token.end()
        word = token.group()
        if word in ("{{", "}}"):
            out.append(word[0])
        elif word[1:-1] in values:
            out.append(values[word[1:-1]])
        else:
            raise ConfigError(f"{where}: {_not_a_placeholder(word, template)}")
    out.append(template[last:])
    return "".join(out)


def _not_a_placeholder(word: str, template: str) -> str:
    known = " and ".join("{" + p + "}" for p in PLACEHOLDERS)
    rest = f"the placeholders are {known}; write {{{{ and }}}} for a literal brace"
    if word in ("{", "}"):
        return f"{template!r}: a lone {word!r} is not a placeholder; {rest}"
    close = difflib.get_close_matches(word[1:-1].strip().lower(), PLACEHOLDERS, n=1, cutoff=0.6)
    hint = f" (did you mean {{{close[0]}}}?)" if close else ""
    return f"{template!r}: {word} is not a placeholder{hint}; {rest}"
