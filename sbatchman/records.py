"""The record of what sbatchman's pushes landed on one cluster's remote folder, kept between runs.

`sync --delete` removes only what sbatchman itself put there and nobody changed since; only a
record written by an earlier push can tell those files from a job's outputs, which the cluster
cannot. So the record is the one thing a delete trusts: a record that is missing, unreadable or
for another place is no record, and then nothing is deleted. It lives in the user's state folder
(platformdirs user_state_dir, e.g. ~/.local/state/sbatchman/pushed/), one file per cluster,
remote folder and local folder, replaced whole (temporary file, then rename) so a crash
leaves the old one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from array import array
from collections.abc import Collection, Mapping
from itertools import compress, count, repeat
from operator import is_not, itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sbatchman.config import Cluster

RecordKind = Literal["dir", "file", "link"]
_VERSION = 2  # 1: one [kind, size, mtime(, target)] per path; still read


class Recorded(NamedTuple):
    """What a push left at one path: for a file its size and whole-second mtime (what the
    cluster shows after rsync -t or an SFTP setstat); for a link the length of its target.

    A tuple, not a dataclass: a record holds one per pushed path, and a 50,000-file tree's
    is read, compared and written on every push (a frozen dataclass made that 0.8 s)."""

    kind: RecordKind
    size: int = 0
    mtime: int = 0
    target: str | None = None  # a link's target: one repointed on the cluster is not ours


Record = dict[str, Recorded]  # path below the remote folder -> what the push left there


def state_dir() -> Path:
    """Where records live; imported late: platformdirs is only needed by a push."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("sbatchman")) / "pushed"


def identity(cluster: Cluster, remote: str, local: Path | None) -> list[str]:
    """Whose pushes a record holds: the cluster as configured, the remote folder, and the
    local folder pushed there (two sync_dirs may share a remote folder: neither may delete
    what the other pushed)."""
    return [
        cluster.name,
        cluster.host or "",
        cluster.user or "",
        str(cluster.port or ""),
        remote,
        os.fsdecode(local or ""),
    ]


def record_path(
    cluster: Cluster, remote: str, folder: Path | None = None, *, local: Path | None = None
) -> Path:
    """One file per cluster + remote folder + local folder; a readable name, made unique by a
    hash."""
    key = json.dumps(identity(cluster, remote, local))
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", cluster.name)[:40] or "cluster"
    return (folder or state_dir()) / f"{name}-{digest}.json"


def load(
    cluster: Cluster, remote: str, folder: Path | None = None, *, local: Path | None = None
) -> Record | None:
    """The record, or None when there is none to trust (missing, unreadable, not ours)."""
    path = record_path(cluster, remote, folder, local=local)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("place") != identity(cluster, remote, local):
            return None
        if data.get("version") == _VERSION:
            record = _from_columns(data)
        elif data.get("version") == 1:
            record = _from_entries(data["entries"])
        else:
            return None
        return record if _all_clean(record) else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


_KIND: dict[str, RecordKind] = {"d": "dir", "f": "file", "l": "link"}
_LETTER = {kind: letter for letter, kind in _KIND.items()}


def _from_columns(data: dict[str, Any]) -> Record:
    """Version 2: one column per field (see save). Every step is a C loop (split, map, zip):
    a 50,000-entry record reads in a few hundredths of a second, not a fifth of one."""
    joined = data["paths"]
    if not isinstance(joined, str):
        raise TypeError("paths")
    paths = joined.split("\0") if joined else []
    kinds = list(map(_KIND.__getitem__, data["kinds"]))
    sizes = _from_int64s(data["sizes"])
    mtimes = _from_int64s(data["mtimes"])
    if not len(paths) == len(kinds) == len(sizes) == len(mtimes):
        raise ValueError("columns of different lengths")
    targets: list[str | None] = [None] * len(paths)
    for index, target in data["targets"].items():
        at = int(index)
        if not 0 <= at < len(paths):
            raise ValueError(index)
        if isinstance(target, str):
            targets[at] = target
    fields = zip(kinds, sizes, mtimes, targets, strict=True)
    return dict(zip(paths, map(tuple.__new__, repeat(Recorded), fields), strict=True))


def _from_entries(entries: dict[str, Any]) -> Record:
    """Version 1, the first: {path: [kind, size, mtime] or [kind, size, mtime, target]}."""
    record: Record = {}
    for rel, (kind, size, mtime, *rest) in entries.items():
        if kind not in ("dir", "file", "link"):
            raise ValueError(kind)
        target = rest[0] if rest and isinstance(rest[0], str) else None
        record[rel] = now = Recorded(kind, int(size), int(mtime), target)
        if not (_INT64 <= now.size < -_INT64 and _INT64 <= now.mtime < -_INT64):
            raise ValueError(rel)  # no file has that; save could not write it
    return record


_INT64 = -(2**63)


def save(
    cluster: Cluster,
    remote: str,
    record: Mapping[str, Recorded],
    folder: Path | None = None,
    *,
    local: Path | None = None,
) -> None:
    """Replace the record whole: a temporary file beside it, flushed, then renamed over it.

    Columns, not a JSON list per path: paths NUL-joined (no path holds a NUL), kinds one
    letter each, sizes and mtimes as packed numbers, link targets by index. That is written
    in a fifth of the time 50,000 small lists took."""
    path = record_path(cluster, remote, folder, local=local)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = record.values()  # not zip(*values): an iterator per path, each one for the GC
    targets = list(map(itemgetter(3), values))
    linked = compress(count(), map(is_not, targets, repeat(None)))  # C loops, no Python one
    data = {
        "version": _VERSION,
        "place": identity(cluster, remote, local),
        "paths": "\0".join(record),
        "kinds": "".join(map(_LETTER.__getitem__, map(itemgetter(0), values))),
        "sizes": _int64s(list(map(itemgetter(1), values))),
        "mtimes": _int64s(list(map(itemgetter(2), values))),
        "targets": {str(i): targets[i] for i in linked},
    }
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))  # C encoder: no indent
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    part = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def _int64s(numbers: list[int]) -> str:
    """Little-endian 64-bit integers in base64: a fifth of the time of a JSON list of them
    (no record value comes near 2**63: sizes are a file's, mtimes whole seconds)."""
    packed = array("q", numbers)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _from_int64s(text: str) -> list[int]:
    packed = array("q", base64.b64decode(text.encode("ascii"), validate=True))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def _all_clean(paths: Collection[str]) -> bool:
    """Every path is one a record may hold: relative, no empty, `.` or `..` part (never
    outside), no NUL (no file has one; save joins paths with it).

    All at once: joined and framed by `/`, an empty path or part shows as `//`, a `.` or `..`
    part (of any path) as `/./` or `/../`, and nothing else can make those."""
    if not paths:
        return True
    framed = "/" + "/".join(paths) + "/"
    return not any(bad in framed for bad in ("//", "/./", "/../", "\0"))
