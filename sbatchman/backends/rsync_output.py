"""Read what rsync prints: its records split right, per-file byte progress, failures in one line.

Kept apart from the session (which builds argv and runs rsync) because this is the part that
must follow rsync's own output rules: names are escaped (`\\#ooo`), progress lines end in `\\r`,
and the exit code alone rarely says what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from sbatchman.errors import TransferError
from sbatchman.model import Events

# rsync's own exit codes, in the words a user can act on.
_EXIT = {
    1: "rsync syntax or usage error",
    2: "rsync protocol incompatibility (old rsync on the cluster?)",
    3: "cannot use the remote folder (missing, or not a folder)",
    5: "could not start rsync on the cluster (is rsync installed there?)",
    10: "socket I/O error",
    11: "file I/O error on the cluster",
    12: "rsync data stream broke (connection lost, or rsync missing on the cluster)",
    20: "rsync was stopped (the connection to the cluster broke?)",  # not by us: see _run
    23: "some files could not be transferred",
    24: "some files vanished while being sent",
    35: "timed out waiting for the cluster",
    127: "rsync not found on the cluster",
}
# One per-file progress line (--info=progress1): bytes so far, percent, rate, time.
_PROGRESS = re.compile(rb"^\s*([\d,.]+)\s+\d{1,3}%\s+\S+/s\s+\d+:\d\d:\d\d\s*(\(xfr#.*\))?\s*$")
_ERRNO = re.compile(r"\s*\(\d+\)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TEMP = re.compile(r"(^|/)\.([^/]+)\.[A-Za-z0-9]{6}$")  # rsync's temporary: .name.XXXXXX
# "not found" as each login shell says it: sh/bash, dash, zsh, csh/tcsh, fish.
_MISSING = re.compile(
    r"rsync: (command )?not found|rsync: No such file or directory|command not found: rsync"
    r"|rsync: Command not found|Unknown command:? '?rsync",
    re.IGNORECASE,
)


# A name of the --files-from list that is gone when rsync builds its list (exit 23), or that
# went while rsync sent it (exit 24): the file was deleted after the walk.
_GONE = re.compile(
    r'^(?:rsync: (?:\[sender\] )?link_stat "((?:[^"\\]|\\.)*)" failed: No such file or directory'
    r'|file has vanished: "((?:[^"\\]|\\.)*)")'
)
_SUMMARY = re.compile(r"^rsync (?:error|warning): some files")
ITEM = re.compile(r"^([<>ch.*][fdLDS][^ ]{9}) (\d+) (.*)$")  # --out-format=%i %l %n%L
SKIP = re.compile(r"^(.*) is newer$")


class RsyncMissing(TransferError):
    """The cluster has no rsync: a push may go over SFTP instead (see backends.open)."""


def unescape(text: bytes) -> bytes:
    r"""rsync writes each byte of a name it deems unprintable (in its locale) as \#ooo.

    It writes a backslash that could be read as the start of one as \#134 too, so the
    reverse is exact.
    """
    return re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m[1], 8)]), text)


def records(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """rsync's stdout cut into records at \\n and at the \\r that ends each progress update.

    A name never contains either byte raw (rsync escapes both), so the cut is exact.
    """
    rest = b""
    for chunk in chunks:
        parts = re.split(rb"[\r\n]", rest + chunk)
        rest = parts.pop()
        yield from (part for part in parts if part)
    if rest:
        yield rest


class Progress:
    """Per-file progress lines as byte events; a file is reported sent once rsync says it
    finished (its 100% line), so the bar moves with the bytes, not with the names."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.pending: tuple[str, int, str] | None = None
        self.shown = 0

    def start(self, name: str, size: int, why: str) -> None:
        self.finish()
        self.pending, self.shown = (name, size, why), 0

    def line(self, raw: bytes) -> bool:
        """Consume one progress line; False when `raw` is not one.

        Read as bytes, without a regular expression: a push of 50,000 small files prints
        100,000 of these, two per file, and they are most of what this process does then.
        """
        # Right-aligned in 15 columns, so a space first, or a digit from 100 GB on; items
        # start with their flags, and a name only comes after them or before " is newer".
        if raw[:1] != b" " and not raw[:1].isdigit():
            return False
        found = _PROGRESS.match(raw)
        if not found:
            return False
        done = int(found[1].replace(b",", b"").replace(b".", b"") or 0)
        if self.pending is not None and done > self.shown:
            self.events.progress(done - self.shown)
            self.shown = done
        if b"(xfr#" in raw:
            self.finish()
        return True

    def finish(self) -> None:
        if self.pending is not None:
            self.events.sent(*self.pending)
            self.pending = None


def is_missing(rc: int, stderr: str) -> bool:
    """rsync is not installed on the cluster (the remote shell could not find it)."""
    return rc in (12, 127) and bool(_MISSING.search(stderr))


def vanished(stderr: bytes, known: Iterable[str]) -> list[str] | None:
    """The selected names rsync found deleted, if that is all it complains of (else None).

    A file deleted after the walk is a note, not a failure, in every backend; anything else
    rsync says keeps its exit 23 or 24 a failure.
    """
    names = sorted(known, key=len, reverse=True)
    gone: list[str] = []
    for line in stderr.decode("utf-8", "surrogateescape").splitlines():
        if not line.strip() or _SUMMARY.match(line):
            continue
        found = _GONE.match(line)
        if found is None:
            return None
        raw = (found[1] or found[2]).encode("utf-8", "surrogateescape")
        path = unescape(raw).decode("utf-8", "surrogateescape")
        name = next((n for n in names if path == n or path.endswith("/" + n)), None)
        if name is None:
            return None
        gone.append(name)
    return list(dict.fromkeys(gone)) or None


def _detail(line: str) -> str:
    """`rsync: [Receiver] mkdir "/x" failed: File exists (17)`: `mkdir "/x" failed: File exists`."""
    line = line.removeprefix("rsync:").strip()
    line = re.sub(r"^\[(?:Receiver|sender|generator|Sender|receiver)\]\s*", "", line)
    return _ERRNO.sub("", line)


def _complaints(stderr: str) -> list[str]:
    """rsync's own lines about what went wrong, without its closing summary."""
    lines = [line.strip() for line in stderr.splitlines()]
    return [
        _detail(line)
        if not line.startswith("file has vanished:")
        else line.removeprefix("file has vanished:").strip() + ": vanished while being sent"
        for line in lines
        if (line.startswith("rsync:") and not line.startswith("rsync error:"))
        or line.startswith("file has vanished:")
        or "Permission denied" in line
        or "No space" in line
    ]


def _short(detail: str, roots: tuple[str, ...]) -> str:
    """A failure about one file, as `name: reason` relative to the pushed folder."""
    quoted = _QUOTED.search(detail)
    reason = detail.rsplit(": ", 1)[-1] if ": " in detail else detail
    if quoted is None:
        return detail
    path = quoted[1]
    for root in roots:
        # rsync names the full path: an absolute root starts it, a relative one (under the
        # login folder) follows a `/`.
        root = root.strip("/")
        if not root or root == ".":
            continue
        at = 0 if path.startswith(f"/{root}/") else path.find(f"/{root}/")
        if at >= 0:
            path = path[at + len(root) + 2 :]
            break
    name = _TEMP.sub(r"\1\2", path) or "."
    return f"{name}: {reason}"


def failure(rc: int, stderr: str, *, stall: float, roots: tuple[str, ...] = ()) -> str:
    """One line: what the exit code means, plus rsync's own reason (several for exit 23).

    `roots` (the local folder, the remote one) are cut from the paths rsync names, so a failed
    file reads as it does in the rest of the report.
    """
    if rc == 30 or (rc in (12, 255) and re.search(r"Timeout, server .* not responding", stderr)):
        return f"stalled: no data moved for {stall:.0f} s (--stall-timeout)"
    if is_missing(rc, stderr):
        return (
            "rsync is not installed on the cluster (command not found); install it, or use -b sftp"
        )
    if rc == 255:
        from sbatchman.ssh.words import cause

        return f"ssh: {cause(stderr)}"
    meaning = _EXIT.get(rc, f"rsync failed (exit {rc})")
    details = list(dict.fromkeys(_complaints(stderr)))
    if rc in (23, 24) and details:
        named = [_short(d, roots) for d in details]
        more = f" (and {len(named) - 3} more)" if len(named) > 3 else ""
        return f"{meaning}: {'; '.join(named[:3])}{more}"
    if not details:
        return f"{meaning} (disk full or quota exceeded?)" if rc == 11 else meaning
    return f"{meaning}: {details[0]}"


def itemized_why(flags: str) -> str:
    """Itemized flags are YXcstpoguax: the same words plan.decide uses for the other backends."""
    if "+++++++" in flags:
        return "new"
    if flags[4] == "t":
        return "newer"
    return "size differs" if flags[3] == "s" else "changed"


def printed_name(text: str, known: set[str]) -> str:
    """A name as rsync printed it, back to the selection's own spelling."""
    if "\\#" not in text:  # nothing escaped: the usual name
        return text
    raw = text.encode("utf-8", "surrogateescape")
    name = unescape(raw).decode("utf-8", "surrogateescape")
    return name if name in known or text not in known else text


def sent_file(raw: bytes) -> tuple[str, int, str] | None:
    """(flags, size, name) when `raw` is the item line of a file being sent (`<f` or `>f`),
    exactly where ITEM would say so; else None, and the line is read the slow way."""
    if len(raw) < 15 or raw[0] not in b"<>" or raw[1] != 0x66:  # 0x66: f
        return None
    parts = raw.split(b" ", 2)
    if len(parts) != 3 or len(parts[0]) != 11 or not parts[1].isdigit():
        return None
    return (
        parts[0].decode("ascii", "replace"),
        int(parts[1]),
        parts[2].decode("utf-8", "surrogateescape"),
    )


def still_to_send(stdout: bytes, known: set[str]) -> set[str]:
    """The files a dry run's output says would still be sent (or are newer there)."""
    still: set[str] = set()
    for raw in records(iter([stdout])):
        text = raw.decode("utf-8", "surrogateescape")
        item, skip = ITEM.match(text), SKIP.match(text)
        if item and item[1][1] == "f":
            still.add(printed_name(item[3], known))
        elif skip:
            still.add(printed_name(skip[1], known))
    return still
