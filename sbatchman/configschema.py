"""The config's schema: which keys each table has, and what a valid value looks like.

Kept apart from config.py (which walks the tables and says where a problem is) so that a rule
such as "a number of seconds" is written once and the command line's `--connect-timeout`
checks exactly what the config's `connect_timeout` checks. A checker turns a raw TOML value
into its typed one, or returns None when the value has the wrong shape; `EXPECTED` says what
the right shape is, for the one-line message.

Values are stripped of surrounding spaces (paths, names, hosts), as the original sbatchman's
config editor does when it writes them, so files it wrote load the same way here.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

BACKENDS = ("rsync", "sftp")

# The longest wait we accept, in seconds: a week. ssh's ConnectTimeout, rsync's --timeout,
# socket and thread timeouts all take it, and no real connection or stall needs longer;
# far larger values (1e300, inf) overflow those and used to end in a traceback.
MAX_SECONDS = 7 * 24 * 3600
SECONDS_RULE = f"a number of seconds above 0 and at most {MAX_SECONDS} (a week)"
# The waits when neither a flag nor the config names one; every layer takes them from here.
CONNECT_TIMEOUT = 15.0
STALL_TIMEOUT = 120.0

Checker = Callable[[Any], Any]


def valid_seconds(value: float) -> bool:
    """The one rule for timeouts, from the config and the command line alike."""
    return math.isfinite(value) and 0 < value <= MAX_SECONDS


def seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not 0 < value <= MAX_SECONDS:
        return None  # before float(): a 400-digit integer does not fit in one
    return float(value) if valid_seconds(float(value)) else None


def string(value: Any) -> Any:
    """Any string, stripped (a remote path may be empty: the login directory)."""
    return value.strip() if isinstance(value, str) else None


def nonempty_string(value: Any) -> Any:
    return value.strip() if isinstance(value, str) and value.strip() else None


def label(value: Any) -> Any:
    """A cluster name or alias: an alias is also the default local and remote folder name."""
    text = nonempty_string(value)
    return text if text is not None and "\0" not in text else None


def path(value: Any) -> Any:
    """A non-empty path; a NUL cannot be in a file name, and would fail deep in os calls."""
    text = nonempty_string(value)
    return text if text is not None and "\0" not in text else None


def remote_path(value: Any) -> Any:
    """Like `path`, but empty is allowed: it means the login directory."""
    text = string(value)
    return text if text is not None and "\0" not in text else None


def string_list(value: Any) -> Any:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else None


def boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else None


def port(value: Any) -> Any:
    """An integer, or a string of digits (`"2222"`), as hand-edited files sometimes have."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value.strip()):
        value = int(value.strip())
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return value if ok else None


def backend(value: Any) -> Any:
    """rsync or sftp in any case (`"RSYNC"`): the original lower-cases the name when reading."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    return name if name in BACKENDS else None


EXPECTED: dict[Checker, str] = {
    string: "a string",
    nonempty_string: "a non-empty string",
    label: "a non-empty string (no NUL character)",
    path: "a non-empty path (no NUL character)",
    remote_path: "a path (no NUL character)",
    string_list: "a list of strings",
    boolean: "true or false",
    port: "a port number (1-65535)",
    seconds: SECONDS_RULE,
    backend: "one of " + ", ".join(f'"{b}"' for b in BACKENDS),
}


GLOBAL_KEYS: dict[str, Checker] = {
    "transfer_backend": backend,
    "common_excludes": string_list,
    "sync_excludes": string_list,
    "fetch_excludes": string_list,
    "local_base": path,
    "respect_gitignore": boolean,
    "ssh_config": path,
    "connect_timeout": seconds,
    "stall_timeout": seconds,
}
CLUSTER_KEYS: dict[str, Checker] = {
    "name": label,
    "host": nonempty_string,
    "port": port,
    "user": nonempty_string,
    "key_path": path,
    "transfer_backend": backend,
    "excludes": string_list,
    "sync_excludes": string_list,
    "fetch_excludes": string_list,
    "respect_gitignore": boolean,
    "ssh_config": path,
    "keep_dirlinks": boolean,
}
DIR_KEYS: dict[str, Checker] = {
    "alias": label,
    "local": path,
    "remote": remote_path,
    "excludes": string_list,
}
SYNC_DIR_KEYS = {
    **DIR_KEYS,
    "respect_gitignore": boolean,
    "keep_dirlinks": boolean,
    "delete": boolean,
}
TABLES = {"global": "[global]", "clusters": "[[clusters]]"}
CLUSTER_TABLES = {
    "sync_dirs": "[[clusters.sync_dirs]]",
    "fetch_dirs": "[[clusters.fetch_dirs]]",
    "dirs": "[[clusters.dirs]]",  # the original sbatchman's older name for fetch_dirs
}
OLD_NAMES = {"dirs"}  # still read, never suggested
# Words users bring from other tools, which string similarity alone would map elsewhere
# (difflib finds `name` closer to `hostname` than `host` is).
SYNONYMS = {
    "hostname": "host",
    "username": "user",
    "identityfile": "key_path",
    "keyfile": "key_path",
    "backend": "transfer_backend",
}


def ssh_name_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be handed to ssh as a host or user name, or None when it can.

    A leading '-' would be read as an option (`-oProxyCommand=...` runs a command), and a
    space or control character is never part of a real name: OpenSSH refuses control
    characters itself, but only after the rest of the command line was read.
    """
    if text.startswith("-"):
        return (
            f"{text!r} starts with '-', which ssh would read as an option;"
            f" write the {what} itself (or an alias from your ssh config)"
        )
    for char in text:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf"):
            return (
                f"{text!r} contains {char!r} (a space or control character), which no {what}"
                " has; remove it"
            )
    return None


def unknown_key(key: str, known: Sequence[str]) -> str:
    """An unknown key is an error, never ignored: a silent `exlcudes` would push what it names."""
    offered = [k for k in known if k not in OLD_NAMES]
    folded = key.lower().replace("-", "_")
    close = [k for k in offered if k == folded]
    close = close or [k for k in (SYNONYMS.get(folded.replace("_", "")),) if k in offered]
    close = close or difflib.get_close_matches(key, offered, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(sorted(offered))
    return f"unknown key {key!r}; {hint}"
