"""Check a server's host key against known_hosts as OpenSSH does, and store a new one on request.

paramiko's HostKeys skips or mis-parses lines it does not know (`@cert-authority`, `@revoked`,
negated patterns, keys of types it cannot load), and a skipped `@revoked` line is a silent
security hole. So we read the files ourselves, keeping every line as text + key blob: matching
needs no crypto, only bytes comparison, and nothing in a file can make loading fail.
"""

from __future__ import annotations

import base64
import binascii
import errno
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
    if blob_type(blob) != keytype:  # ssh skips a line whose key is not what it says it is
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
    bare: str | None = None,
) -> None:
    """Return only if `blob` is a key known for `name` (or is new and `accept_new` stores it).

    OpenSSH's rule (StrictHostKeyChecking=yes / accept-new), checked against ssh 9.2:
    revoked → refused; any plain key filed for `name` equal to `blob` → fine; otherwise any
    key filed for `name`, of whatever type, means the host has CHANGED: refused even with
    accept_new (a host known by its ECDSA key that now shows ED25519 is not a new host). Only
    a host with no key filed at all is unknown: refused unless accept_new stores it. `bare`
    is the name without `:port`: ssh also accepts `blob` filed there, and stores nothing.
    Every refusal is a ConnectError with one line that names the fingerprint and what to do.
    """
    seen = describe(blob)
    for entry in entries:
        if entry.marker == "@revoked" and entry.blob == blob:
            raise ConnectError(
                f"host key for {name} is REVOKED ({entry.where}): {seen}; refusing to connect"
            )
    mine = _plain(entries, name)
    if any(e.blob == blob for e in mine):
        return
    if mine:
        old = _offending(mine, blob)
        raise ConnectError(changed_message(name, seen, old.where, describe(old.blob)))
    if bare is not None and any(e.blob == blob for e in _plain(entries, bare)):
        return
    unstorable = unstorable_reason(store)
    if not accept_new or unstorable:
        raise ConnectError(unknown_message(name, seen, store, unstorable=unstorable))
    assert store is not None
    add(store, name, blob, hash_names=hash_names)


def _plain(entries: Sequence[Entry], name: str) -> list[Entry]:
    """The keys filed for `name` (not @cert-authority or @revoked lines)."""
    return [e for e in entries if e.marker == "" and host_matches(e.patterns, name)]


def _offending(mine: Sequence[Entry], blob: bytes) -> Entry:
    """The entry to name in a CHANGED message: one of the same key type if there is one."""
    keytype = blob_type(blob)
    return next((e for e in mine if blob_type(e.blob) == keytype), mine[0])


def check_ip(entries: Sequence[Entry], ip_name: str, blob: bytes) -> None:
    """CheckHostIP yes: if known_hosts files keys under the address, one must be `blob`
    (OpenSSH refuses otherwise, as it may be DNS spoofing). An unknown address is fine."""
    filed = _plain(entries, ip_name)
    if filed and not any(e.blob == blob for e in filed):
        old = _offending(filed, blob)
        raise ConnectError(changed_message(ip_name, describe(blob), old.where, describe(old.blob)))


def unknown_message(
    name: str,
    seen: str | None,
    store: Path | None = None,
    *,
    accept_new: bool = False,
    unstorable: str | None = None,
) -> str:
    """The one line for an unknown host key; shared by both backends so they read the same.

    `store` is where --accept-new-host-keys would put the key (None: not known here);
    `unstorable` says why it cannot go there (then the flag is no way out, and the line never
    offers it); `accept_new` means the flag was given and the key could still not be stored.
    """
    key = f": {seen}" if seen else ""
    if unstorable:
        return (
            f"unknown host key for {name}{key}; --accept-new-host-keys cannot store it"
            f" ({unstorable}): verify this fingerprint with the cluster's admins, then add it"
            " to a known_hosts file your ssh config reads"
        )
    if accept_new:
        where = f" in {store}" if store is not None else ""
        return (
            f"unknown host key for {name}{key}, and --accept-new-host-keys could not store"
            f" it{where}; check that UserKnownHostsFile in your ssh config names a file you"
            " can write"
        )
    where = f" to store it in {store}" if store is not None else " to store it"
    return (
        f"unknown host key for {name}{key}; verify this fingerprint with the cluster's admins,"
        f" then rerun with --accept-new-host-keys{where}"
    )


def unstorable_reason(store: Path | None) -> str | None:
    """Why accept-new could not keep a key in `store` (the first UserKnownHostsFile), if so.

    With `none` there is no file; /dev/null (or another device) swallows the key, so the next
    run would meet the host as new again and trust whatever it then shows.
    """
    if store is None:
        return "your ssh config sets UserKnownHostsFile none"
    try:
        device = str(store) == os.devnull or store.is_char_device()
    except OSError:  # unreadable: add() will say why when it tries
        device = False
    return f"your ssh config's UserKnownHostsFile is {store}" if device else None


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
        # mkdir's "File exists" means a folder on the way is a file
        code = errno.ENOTDIR if isinstance(err, FileExistsError) else err.errno
        why = f"{path}: {os.strerror(code) if code else err}"
        raise ConnectError(unknown_message(name, describe(blob), path, unstorable=why)) from None


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def _hash_name(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
