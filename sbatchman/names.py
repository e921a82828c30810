"""How a name (or a message quoting names) is written where people or JSON parsers read it.

One escaping, rsync's: a byte is written `\\#ooo` (three octal digits). For people, every byte of
an unprintable character (ESC, newline, DEL, C1 controls, bidi overrides, bytes that are not
UTF-8) is escaped, so a name can neither drive the terminal nor break a line or a table. For
JSON only bytes that are not UTF-8 are escaped (JSON carries control characters exactly), so
the document is strict UTF-8. In a name, a backslash that would read as an escape is itself
written `\\#134`, as rsync does, so every escaped name decodes back to exactly one name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_LOOKS_ESCAPED = re.compile(r"\\(?=#[0-9]{3})")


def _raw(char: str) -> bytes:
    try:  # a byte that was not UTF-8 arrives as a lone surrogate (os.fsdecode)
        return char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # any other lone surrogate: its own three bytes
        return char.encode("utf-8", "surrogatepass")


def _escape(text: str, keep: Callable[[str], bool]) -> str:
    return "".join(c if keep(c) else _octal(c) for c in text)


def _utf8(char: str) -> bool:
    return not 0xD800 <= ord(char) <= 0xDFFF


def _octal(char: str) -> str:
    return "".join(f"\\#{byte:03o}" for byte in _raw(char))


def show_text(text: str) -> str:
    """A message on one printable line: unprintable characters and stray bytes as \\#ooo."""
    return text if text.isprintable() else _escape(text, str.isprintable)


def show_name(name: str) -> str:
    """A name on one printable line, as rsync writes it, decodable back to the one name."""
    if "\\#" in name:
        name = _LOOKS_ESCAPED.sub(r"\\#134", name)
    return show_text(name)


def json_text(text: str) -> str:
    """A message as strict UTF-8 for JSON: only bytes that are not UTF-8 as \\#ooo."""
    return _escape(text, _utf8) if any(not _utf8(c) for c in text) else text


def json_name(name: str) -> str:
    """A name as strict UTF-8 for JSON, decodable back to the one name (see the module doc)."""
    if "\\#" in name:
        name = _LOOKS_ESCAPED.sub(r"\\#134", name)
    return json_text(name)
