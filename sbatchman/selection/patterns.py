"""Glob-to-regex compilation for selection: rsync's and git's wildmatch, byte for byte.

Kept apart from selection.py because this is the part that must agree exactly with two C
implementations (rsync's exclude.c + lib/wildmatch.c, git's dir.c + wildmatch.c); every quirk
reproduced here is named after the C code it mirrors so it can be checked line by line. The
compiled rule sets the walk consults per entry (ExcludeSet, IgnoreStack) are in rulesets.py.

Matching works on bytes (UTF-8 with surrogateescape, i.e. what the file system holds) because
both tools do: `?` matches one byte, not one character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Flavour = Literal["rsync", "git"]

_SLASH = 0x2F
_BSLASH = 0x5C
_STAR = 0x2A
_QMARK = 0x3F
_LBRACK = 0x5B
_RBRACK = 0x5D
_COLON = 0x3A
_BANG = 0x21
_CARET = 0x5E
_DASH = 0x2D

_DIGIT = frozenset(range(0x30, 0x3A))
_UPPER = frozenset(range(0x41, 0x5B))
_LOWER = frozenset(range(0x61, 0x7B))
_ALPHA = _UPPER | _LOWER
_ALNUM = _ALPHA | _DIGIT
_GRAPH = frozenset(range(0x21, 0x7F))
# C-locale classes: what glibc answers for single bytes, and what git's sane_ctype answers,
# except that git's isspace() leaves out \v and \f.
_POSIX: dict[bytes, frozenset[int]] = {
    b"alnum": _ALNUM,
    b"alpha": _ALPHA,
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset(range(0x20)) | {0x7F},
    b"digit": _DIGIT,
    b"graph": _GRAPH,
    b"lower": _LOWER,
    b"print": frozenset(range(0x20, 0x7F)),
    b"punct": _GRAPH - _ALNUM,
    b"space": frozenset(b" \t\n\r\v\f"),
    b"upper": _UPPER,
    b"xdigit": _DIGIT | frozenset(b"abcdefABCDEF"),
}
_GIT_SPACE = frozenset(b" \t\n\r")


class PatternError(ValueError):
    """A pattern that can never match what its author meant; says why and how to fix it."""

    def __init__(self, why: str, fix: str) -> None:
        super().__init__(f"{why}; {fix}")
        self.why = why
        self.fix = fix


def to_bytes(text: str) -> bytes:
    """The bytes the file system holds for `text` (os.fsencode's rule, without the call)."""
    return text.encode("utf-8", "surrogateescape")


def _unbalanced() -> PatternError:
    return PatternError(
        "it has a '[' without a closing ']', so it can never match",
        r"close the bracket, or write '\[' for a literal '['",
    )


def _parse_class(pat: bytes, p: int, flavour: Flavour) -> tuple[frozenset[int], bool, int]:
    """Port of the `case '['` loop of wildmatch.c (identical in rsync and git).

    Returns the set of bytes listed in the class, whether it is negated, and the index just
    past the closing ']'.
    """
    n = len(pat)

    def at(k: int) -> int:
        return pat[k] if k < n else 0

    p += 1
    ch = at(p)
    if ch == _CARET:
        ch = _BANG
    negated = ch == _BANG
    if negated:
        p += 1
        ch = at(p)
    prev = 0
    members: set[int] = set()
    while True:
        if not ch:
            raise _unbalanced()
        if ch == _BSLASH:
            p += 1
            ch = at(p)
            if not ch:
                raise _unbalanced()
            members.add(ch)
        elif ch == _DASH and prev and at(p + 1) and at(p + 1) != _RBRACK:
            p += 1
            ch = at(p)
            if ch == _BSLASH:
                p += 1
                ch = at(p)
                if not ch:
                    raise _unbalanced()
            members.update(range(prev, ch + 1))
            ch = 0
        elif ch == _LBRACK and at(p + 1) == _COLON:
            s = p + 2
            q = s
            while at(q) and at(q) != _RBRACK:
                q += 1
            if not at(q):
                raise _unbalanced()
            length = q - s - 1
            if length < 0 or at(q - 1) != _COLON:
                # Didn't find ":]", so the '[' is an ordinary member.
                p = s - 2
                ch = _LBRACK
                members.add(ch)
            else:
                cname = pat[s : s + length]
                cls = _POSIX.get(cname)
                if cls is None:
                    raise PatternError(
                        f"'[:{cname.decode('utf-8', 'replace')}:]' is not a character class, "
                        "so it can never match",
                        "use one of alnum alpha blank cntrl digit graph lower print punct "
                        "space upper xdigit",
                    )
                if flavour == "git" and cname == b"space":
                    cls = _GIT_SPACE
                members |= cls
                p = q
                ch = 0
        else:
            members.add(ch)
        prev = ch
        p += 1
        ch = at(p)
        if ch == _RBRACK:
            return frozenset(members), negated, p + 1


def _class_regex(members: frozenset[int], negated: bool) -> bytes:
    """A regex class for the bytes a wildmatch class accepts; it never accepts '/'."""
    accepted = (set(range(256)) - members) if negated else set(members)
    accepted.discard(_SLASH)
    if not accepted:
        return b"(?!)"
    if len(accepted) == 1:
        return re.escape(bytes(accepted))
    parts: list[bytes] = []
    start = prev = -2
    for b in [*sorted(accepted), -1]:
        if b == prev + 1:
            prev = b
            continue
        if start >= 0:
            parts.append(
                b"\\x%02x" % start if start == prev else b"\\x%02x-\\x%02x" % (start, prev)
            )
        start = prev = b
    return b"[" + b"".join(parts) + b"]"


def glob_regex(pat: bytes, flavour: Flavour) -> bytes:
    """Translate a wildmatch pattern to a regex for `fullmatch` (compiled with re.DOTALL).

    Both tools: `*` never crosses '/', `?` and classes match one byte other than '/', a
    backslash makes the next byte literal. rsync: any run of two or more '*' matches
    anything. git: such a run is special only when it fills a whole path component at the
    start, end or middle of the pattern (then "**/" may also match nothing); elsewhere it is
    a plain '*'.
    """
    out: list[bytes] = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == _BSLASH:
            if i + 1 == n:
                raise PatternError(
                    "it ends in a lone backslash, so it can never match",
                    r"remove it, or write '\\' for a literal backslash",
                )
            out.append(re.escape(pat[i + 1 : i + 2]))
            i += 2
        elif c == _QMARK:
            out.append(b"[^/]")
            i += 1
        elif c == _STAR:
            j = i
            while j < n and pat[j] == _STAR:
                j += 1
            if j - i == 1:
                out.append(b"[^/]*")
            elif flavour == "rsync":
                out.append(b".*")
            else:
                at_boundary = i == 0 or pat[i - 1] == _SLASH
                if at_boundary and j < n and pat[j] == _SLASH:
                    out.append(b"(?:.*/)?")
                    j += 1
                elif at_boundary and (
                    j == n or (pat[j] == _BSLASH and j + 1 < n and pat[j + 1] == _SLASH)
                ):
                    out.append(b".*")
                else:
                    out.append(b"[^/]*")
            i = j
        elif c == _LBRACK:
            members, negated, i = _parse_class(pat, i, flavour)
            out.append(_class_regex(members, negated))
        else:
            out.append(re.escape(pat[i : i + 1]))
            i += 1
    return b"".join(out)


def _slashes_outside_classes(pat: bytes) -> int:
    """Path separators of a wildcard pattern: its '/' bytes, less those inside a [class]."""
    count, i = 0, 0
    while i < len(pat):
        c = pat[i]
        if c == _BSLASH:  # an escaped '/' is still a separator: wildmatch reads it literally
            count += i + 1 < len(pat) and pat[i + 1] == _SLASH
            i += 2
        elif c == _LBRACK:
            i = _parse_class(pat, i, "rsync")[2]
        else:
            count += c == _SLASH
            i += 1
    return count


@dataclass(frozen=True, slots=True)
class RsyncPattern:
    """One `--exclude` pattern, as rsync's add_rule() + rule_matches() see it.

    Name-mode patterns are matched against the final component. Path-mode regexes are matched
    against "/" + path for files and "/" + path + "/" for directories; that one subject
    covers anchoring, rsync's "match the end of the path" and its "**"-prefix and "/***"
    suffix tricks, so all path-mode patterns can share one combined regex.
    """

    name_mode: bool
    dir_only: bool
    file_rx: bytes | None  # None: never matches a non-directory
    dir_rx: bytes
    # How many components an entry's path can have for this to match it; lets the walk skip
    # patterns like "/data" below the top level.
    min_depth: int = 1
    max_depth: int | None = None


def compile_rsync(pattern: str) -> RsyncPattern:
    """Compile one config exclude; PatternError for patterns rsync would read differently."""
    raw = to_bytes(pattern)
    if not raw:
        raise PatternError(
            "it is empty, and rsync ignores empty excludes", "remove it or write a pattern"
        )
    if raw == b"!":
        raise PatternError(
            "rsync reads a lone '!' as 'clear all earlier excludes'",
            "remove it; sbatchman excludes cannot be cleared",
        )
    if raw[:2] in (b"- ", b"+ "):
        raise PatternError(
            f"rsync reads a leading '{raw[:2].decode()}' as a rule prefix, not as part of the name",
            "remove the prefix (every entry is an exclude), or use '[-] x' / '[+] x' to match "
            "that name literally",
        )
    dir_only = False
    if len(raw) > 1 and raw.endswith(b"/"):
        raw = raw[:-1]
        dir_only = True
    slash_cnt = raw.count(b"/")
    wild = any(c in raw for c in b"*[?")
    wild2 = wild and b"**" in raw
    wild2_prefix = wild2 and raw.startswith(b"**")
    wild3_suffix = wild2 and raw.endswith(b"***")
    anchored = raw.startswith(b"/")
    body = raw[1:] if anchored else raw
    # Without a wildcard rsync compares bytes, so a backslash is an ordinary character.
    rx = glob_regex(body, "rsync") if wild else re.escape(body)
    if not slash_cnt and not wild2:
        return RsyncPattern(True, dir_only, None if dir_only else rx, rx)
    min_depth, max_depth = 1, None
    real = _slashes_outside_classes(body) if wild else body.count(b"/")
    if anchored:
        core = b"/" + rx
        if not wild2:  # neither '*', '?' nor a class matches '/': exactly this many parts
            min_depth = max_depth = real + 1
    elif wild2_prefix:
        core = rx  # rsync matches it against "/" + path
    elif real < slash_cnt and not wild2:
        # rsync matches the last slash_cnt+1 components, counting a '/' inside a class too;
        # no class matches '/', so such a pattern never matches anything.
        core = b"(?!)"
    else:
        core = b".*/" + rx  # at the start or after any '/': the end of the path
        if not wild2:
            min_depth = slash_cnt + 1
    dir_rx = core if wild3_suffix else core + b"/"
    return RsyncPattern(False, dir_only, None if dir_only else core, dir_rx, min_depth, max_depth)


@dataclass(frozen=True, slots=True)
class GitPattern:
    """One .gitignore-syntax line, as git's parse_path_pattern() + match_*() see it.

    Name-mode regexes match the final component. Path-mode regexes match the path relative
    to the ignore file's own folder (the caller prefixes that folder).
    """

    negated: bool
    name_mode: bool
    dir_only: bool
    rx: bytes


def split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """The (line number, pattern) pairs git takes from an ignore file.

    Mirrors add_patterns_from_buffer(): skip a UTF-8 BOM, skip empty lines and lines that
    start with '#', drop one '\\r' before '\\n', then trim trailing spaces that are not
    escaped with a backslash.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out: list[tuple[int, bytes]] = []
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line or line.startswith(b"#"):
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
        line = _trim_trailing_spaces(line)
        out.append((lineno, line))
    return out


def _trim_trailing_spaces(line: bytes) -> bytes:
    """Port of git's trim_trailing_spaces(): only ' ', and '\\ ' protects a space."""
    last_space = -1
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            if last_space < 0:
                last_space = i
        elif c == _BSLASH:
            i += 1
            if i >= n:
                return line
            last_space = -1
        else:
            last_space = -1
        i += 1
    return line[:last_space] if last_space >= 0 else line


def compile_git(line: bytes) -> GitPattern:
    """Compile one ignore-file line (already split and trimmed); PatternError if it can't match."""
    negated = line.startswith(b"!")
    p = line[1:] if negated else line
    dir_only = False
    if p.endswith(b"/"):
        p = p[:-1]
        dir_only = True
    name_mode = b"/" not in p
    if name_mode:
        return GitPattern(negated, True, dir_only, glob_regex(p, "git"))
    if p.startswith(b"/"):
        p = p[1:]
    # match_pathname() compares the literal prefix (up to the first of `*?[\`) itself and
    # hands only the rest to wildmatch, so a '**' right after that prefix counts as being
    # at the start of the pattern.
    prefix = len(p)
    for k, c in enumerate(p):
        if c in b"*?[\\":
            prefix = k
            break
    return GitPattern(
        negated, False, dir_only, re.escape(p[:prefix]) + glob_regex(p[prefix:], "git")
    )
