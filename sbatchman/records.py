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

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from sbatchman.config import Cluster

RecordKind = Literal["dir", "file", "link"]
_VERSION = 1


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
        if data.get("version") != _VERSION or data.get("place") != identity(cluster, remote, local):
            return None
        record: Record = {}
        for rel, (kind, size, mtime, *rest) in data["entries"].items():
            if kind not in ("dir", "file", "link") or not _clean(rel):
                return None
            target = rest[0] if rest and isinstance(rest[0], str) else None
            record[rel] = Recorded(kind, int(size), int(mtime), target)
        return record
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def save(
    cluster: Cluster,
    remote: str,
    record: Mapping[str, Recorded],
    folder: Path | None = None,
    *,
    local: Path | None = None,
) -> None:
    """Replace the record whole: a temporary file beside it, flushed, then renamed over it."""
    path = record_path(cluster, remote, folder, local=local)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        "version": _VERSION,
        "place": identity(cluster, remote, local),
        # [kind, size, mtime] and a link's target: the tuple itself is the JSON list
        "entries": {p: r if r.target is not None else r[:3] for p, r in sorted(record.items())},
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


def _clean(rel: str) -> bool:
    """A path a record may hold: relative, no empty, `.` or `..` part (never outside)."""
    framed = f"/{rel}/"  # an empty, `.` or `..` part shows as `//`, `/./` or `/../` here
    return bool(rel) and "//" not in framed and "/./" not in framed and "/../" not in framed
