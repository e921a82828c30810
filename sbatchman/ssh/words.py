"""What OpenSSH's stderr means, in one line a user can act on; and what a key file needs.

Kept apart from master.py (which builds argv and runs the master) because this is the part that
must track OpenSSH's wording, release by release, and is tested line by line against it.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

# The first matching pattern in ssh's stderr becomes the one-line cause shown to the user.
_CAUSES = [
    (r"Connection refused", "connection refused"),
    (r"timed out|Connection timed out", "connection timed out"),
    (r"Could not resolve hostname", "unknown host name (check host, or your ~/.ssh/config)"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED", "HOST KEY CHANGED: possible attack; nothing sent"),
    (
        r"REVOKED HOST KEY|marked as revoked|was revoked|revoked by file",
        "the host key is REVOKED (in your known_hosts or RevokedHostKeys); nothing sent",
    ),
    (
        r"No .*host key is known|Host key verification failed",
        "unknown host key; verify it, then rerun with --accept-new-host-keys to store it",
    ),
    (r"Too many authentication failures", "authentication failed (too many keys offered)"),
    (r"Connection closed|Connection reset", "connection closed by the server"),
]
_UNKNOWN = re.compile(r"No (\S+) host key is known for (\S+)")
SERVER_KEY = re.compile(r"Server host key: (\S+) (SHA256:[A-Za-z0-9+/=]+)")
_CHANGED = re.compile(r"Host key for (\S+) has changed")
_SENT = re.compile(r"fingerprint for the (\S+) key sent by the remote host is\s+(SHA256:[^\s.]+)")
_OFFENDING = re.compile(r"Offending \S+ key in (\S+)")
DENIED = re.compile(r"Permission denied \(([^)]*)\)")


def needs_probe(stderr: str) -> bool:
    """Whether ssh's message hides the useful part: an unknown key's fingerprint, or a jump
    host's own error (the master's ControlPersist mutes the jump's stderr)."""
    if _UNKNOWN.search(stderr):
        return not SERVER_KEY.search(stderr)
    if _CHANGED.search(stderr) or DENIED.search(stderr):
        return False
    return bool(re.search(r"kex_exchange_identification|Connection closed", stderr))


def cause(stderr: str, *, accepting: bool = False) -> str:
    """The most telling ssh message, in one line; host-key failures name the fingerprint.

    The unknown-key fingerprint is only in ssh's -v output ("Server host key: ..."), which
    Master fetches with a second, verbose probe when the first attempt failed that way.
    `accepting`: --accept-new-host-keys was given, so the hint must not ask for it again.
    """
    from sbatchman.ssh import hostkeys

    changed = _CHANGED.search(stderr)
    if changed:
        sent = _SENT.search(stderr)
        offending = _OFFENDING.search(stderr)
        sent_key = f"{sent[1]} key {sent[2]}" if sent else "a different key"
        return hostkeys.changed_message(changed[1], sent_key, offending[1] if offending else None)
    unknown = _UNKNOWN.search(stderr)
    if unknown:
        keys = SERVER_KEY.findall(stderr[: unknown.start()])
        seen = f"{hostkeys.short_type(keys[-1][0])} key {keys[-1][1]}" if keys else None
        if accepting:
            return _not_accepted(unknown[2], seen)
        return hostkeys.unknown_message(unknown[2], seen)
    denied = DENIED.search(stderr)
    if denied:
        missing = _NO_IDENTITY.search(stderr)
        if missing:
            return f"authentication failed: the identity file {missing[1]} does not exist"
        return f"authentication failed (permission denied; the server allows {denied[1]})"
    for pattern, text in _CAUSES:
        if re.search(pattern, stderr):
            return _not_accepted(None, None) if accepting and text.startswith("unknown") else text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ssh failed with no message"


_NO_IDENTITY = re.compile(r"Identity file (.+) not accessible: No such file or directory")


def _not_accepted(name: str | None, seen: str | None) -> str:
    """Unknown host key although --accept-new-host-keys was given: the ssh that checked it
    did not take our policy (a ProxyCommand's own ssh, say) or could not store the key."""
    host = f" for {name}" if name else ""
    key = f": {seen}" if seen else ""
    return (
        f"unknown host key{host}{key}; --accept-new-host-keys was given, but the ssh that"
        " checked it did not store it (a ProxyCommand running its own ssh, or a known_hosts"
        " that cannot be written?); verify this fingerprint with the cluster's admins and add it to"
        " known_hosts"
    )


def key_needs_passphrase(path: Path) -> bool:
    """Whether a private key file is encrypted (OpenSSH or PEM format); False if unreadable."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    if "ENCRYPTED" in text.split("\n\n", 1)[0] or "BEGIN ENCRYPTED PRIVATE KEY" in text:
        return True
    body = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", text, re.S)
    if body is None:
        return False
    try:
        blob = base64.b64decode("".join(body[1].split()))
    except ValueError:
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    size = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    return blob[len(magic) + 4 : len(magic) + 4 + size] != b"none"


def batch_needs(who: str, allowed: str) -> str | None:
    """What a refused batch login would have needed, in the SFTP backend's words; None when
    the server takes keys only (a wrong key is no batch-mode matter)."""
    methods = allowed.split(",")
    needs = [
        text
        for method, text in (
            ("keyboard-interactive", "a keyboard-interactive (2FA) answer"),
            ("password", "a password"),
        )
        if method in methods
    ]
    if not needs:
        return None
    return (
        f"{who} needs {' or '.join(needs)} but running in batch mode (--batch or no terminal);"
        " run in a terminal without --batch"
    )
