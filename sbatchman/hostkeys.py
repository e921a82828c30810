"""Check a server's host key against known_hosts as OpenSSH does, and store a new one on request.

paramiko's HostKeys skips or mis-parses lines it does not know (`@cert-authority`, `@revoked`,
negated patterns, keys of types it cannot load), and a skipped `@revoked` line is a silent
security hole. So we read the files ourselves, keeping every line as text + key blob: matching
needs no crypto, only bytes comparison, and nothing in a file can make loading fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sbatchman.errors import ConnectError

_MARKERS = ("@cert-authority", "@revoked")


@dataclass(frozen=True)
class Entry:
    """One usable known_hosts line; `marker` is "", "@cert-authority" or "@revoked"."""

    path: Path
    line: int
    marker: str
    patterns: str
    keytype: str
    blob: bytes

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def load(paths: Iterable[Path]) -> list[Entry]:
    """Every parseable entry of the files that exist; an odd line skips that line only."""
    entries: list[Entry] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            continue
        for number, raw in enumerate(text.splitlines(), start=1):
            entry = _parse(path, number, raw)
            if entry is not None:
                entries.append(entry)
    return entries


def _parse(path: Path, number: int, raw: str) -> Entry | None:
    fields = raw.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = ""
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker not in _MARKERS:
            return None
    if len(fields) < 3:
        return None
    patterns, keytype, encoded = fields[0], fields[1], fields[2]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Entry(path, number, marker, patterns, keytype, blob)


def host_matches(patterns: str, name: str) -> bool:
    """OpenSSH's rule: a hashed `|1|salt|hash`, or a comma list where any `!neg` match vetoes."""
    if patterns.startswith("|1|"):
        return _hashed_matches(patterns, name)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _glob(pattern.lstrip("!"), name):
            if negated:
                return False
            matched = True
    return matched


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH wildcards: only `*` and `?`; `[` is literal (as in `[host]:port`), no case."""
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch("".join(parts), name, re.IGNORECASE | re.DOTALL) is not None


def _hashed_matches(field: str, name: str) -> bool:
    parts = field.split("|")
    if len(parts) != 4:
        return False
    try:
        salt = base64.b64decode(parts[2])
        expected = base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(digest, expected)


def blob_type(blob: bytes) -> str:
    """The key type named inside a public key blob (the first SSH string)."""
    if len(blob) < 4:
        return ""
    size = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + size].decode("ascii", "replace")


def fingerprint(blob: bytes) -> str:
    """`SHA256:...`, byte for byte what `ssh-keygen -lf` and ssh's messages show."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def describe(blob: bytes) -> str:
    """`ED25519 key SHA256:...`: the words OpenSSH uses, so users can compare with its output."""
    return f"{short_type(blob_type(blob))} key {fingerprint(blob)}"


def short_type(keytype: str) -> str:
    """ED25519 / ECDSA / RSA, as ssh's messages name key types."""
    if keytype.startswith("ssh-ed25519"):
        return "ED25519"
    if keytype.startswith("ecdsa-"):
        return "ECDSA"
    if keytype.startswith(("ssh-rsa", "rsa-")):
        return "RSA"
    return keytype


def known_types(entries: Sequence[Entry], name: str) -> list[str]:
    """Key types already trusted for `name`, so the handshake can ask for one of those first."""
    found: list[str] = []
    for entry in entries:
        if entry.marker == "" and host_matches(entry.patterns, name):
            keytype = blob_type(entry.blob)
            if keytype not in found:
                found.append(keytype)
    return found


def verify(
    entries: Sequence[Entry],
    name: str,
    blob: bytes,
    *,
    accept_new: bool,
    store: Path | None,
    hash_names: bool = False,
) -> None:
    """Return only if `blob` is the key known for `name` (or is new and `accept_new` stores it).

    Outcomes, as OpenSSH's StrictHostKeyChecking=yes / accept-new:
    revoked → refused; same type known with another key → CHANGED, refused even with
    accept_new; nothing known for this type → unknown, refused unless accept_new. Every refusal
    is a ConnectError with one line that names the fingerprint and what to do.
    """
    keytype = blob_type(blob)
    seen = describe(blob)
    for entry in entries:
        if entry.marker == "@revoked" and entry.blob == blob:
            raise ConnectError(
                f"host key for {name} is REVOKED ({entry.where}): {seen}; refusing to connect"
            )
    mine = [e for e in entries if e.marker == "" and host_matches(e.patterns, name)]
    if any(e.blob == blob for e in mine):
        return
    same_type = [e for e in mine if blob_type(e.blob) == keytype]
    if same_type:
        old = same_type[0]
        raise ConnectError(changed_message(name, seen, old.where, fingerprint(old.blob)))
    if not accept_new:
        raise ConnectError(unknown_message(name, seen, store))
    if store is None:
        raise ConnectError(
            f"unknown host key for {name}: {seen}; no UserKnownHostsFile to store it"
        )
    add(store, name, blob, hash_names=hash_names)


def check_ip(entries: Sequence[Entry], ip_name: str, blob: bytes) -> None:
    """CheckHostIP yes: known_hosts must not file another key of this type under the address
    (OpenSSH refuses then, as it may be DNS spoofing). An unknown address is fine."""
    keytype = blob_type(blob)
    for entry in entries:
        if (
            entry.marker == ""
            and host_matches(entry.patterns, ip_name)
            and blob_type(entry.blob) == keytype
            and entry.blob != blob
        ):
            raise ConnectError(
                changed_message(ip_name, describe(blob), entry.where, fingerprint(entry.blob))
            )


def unknown_message(name: str, seen: str | None, store: Path | None = None) -> str:
    """The one line for an unknown host key; shared by both backends so they read the same."""
    key = f": {seen}" if seen else ""
    where = f" to store it in {store}" if store is not None else " to store it"
    return (
        f"unknown host key for {name}{key}; verify this fingerprint with the cluster's admins,"
        f" then rerun with --accept-new-host-keys{where}"
    )


def changed_message(name: str, seen: str, where: str | None, old: str | None = None) -> str:
    """The one line for a changed host key: a warning, the evidence, and the way out."""
    known = (
        f"{where} has {old}"
        if where and old
        else f"{where} has another key"
        if where
        else ("known_hosts has another key")
    )
    file = f" -f {where.rsplit(':', 1)[0]}" if where else ""
    return (
        f"WARNING: HOST KEY CHANGED for {name}: the server sent {seen}, but {known}. Someone may"
        " be intercepting the connection (or the host was reinstalled); nothing was sent. If the"
        f" change is expected, remove the old key with `ssh-keygen -R '{name}'{file}` and connect"
        " again"
    )


def add(path: Path, name: str, blob: bytes, *, hash_names: bool = False) -> None:
    """Append `name type key` (hashed if HashKnownHosts says so), as ssh's accept-new does."""
    host = _hash_name(name) if hash_names else name
    line = f"{host} {blob_type(blob)} {base64.b64encode(blob).decode()}\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and not _ends_with_newline(path, size):
                line = "\n" + line
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise ConnectError(f"cannot store the new host key in {path}: {err.strerror}") from None


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def _hash_name(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
