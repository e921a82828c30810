"""Build a file tree from a short description, and take the one snapshot tests compare trees by.

Every test that lays out a project or a cluster folder, and every test that checks what landed,
goes through these two, so "the same tree" means the same thing in all of them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def make_tree(
    root: Path, files: Mapping[str, str | bytes], *, links: Mapping[str, str] | None = None
) -> Path:
    """Files from a {relative path: content} map, then symlinks from {relative path: target}.

    A name ending in "/" is a folder (its content is ignored); a name ending in .sh is made
    executable, as a user's job script would be. Returns `root` (created if missing).
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if rel.endswith(".sh"):
            path.chmod(0o755)
    for rel, target in (links or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return root


@dataclass(frozen=True)
class Node:
    """What a test can observe about one entry; a fact not recorded is None."""

    kind: str  # "file", "dir" or "link"
    mode: int | None = None  # permission bits; never for links
    size: int | None = None  # files only
    mtime: int | None = None  # whole seconds, or nanoseconds with snapshot(ns=True)
    target: str | None = None  # links only
    digest: str | None = None  # sha256 of a file's content


def digest(content: str | bytes) -> str:
    """The Node.digest of a file holding `content`."""
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def stamp(path: Path, seconds: int) -> None:
    """Set `path`'s mtime (a link's own, not its target's) to `seconds`."""
    os.utime(path, (seconds, seconds), follow_symlinks=False)


def snapshot(
    root: Path, *, ns: bool = False, folder_times: bool = False, link_times: bool = False
) -> dict[str, Node]:
    """Everything below `root` by relative path: files' mode, size, mtime and content digest,
    folders' modes, links' targets.

    Times are whole seconds (what every backend promises) unless `ns`; folders' and links' own
    times only when asked, since a push changes a folder's time when it writes into it.
    """
    out: dict[str, Node] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            mtime = st.st_mtime_ns if ns else int(st.st_mtime)
            if stat.S_ISLNK(st.st_mode):
                when = mtime if link_times else None
                out[rel] = Node("link", target=os.readlink(path), mtime=when)
            elif stat.S_ISDIR(st.st_mode):
                when = mtime if folder_times else None
                out[rel] = Node("dir", mode=stat.S_IMODE(st.st_mode), mtime=when)
            else:
                out[rel] = Node(
                    "file",
                    mode=stat.S_IMODE(st.st_mode),
                    size=st.st_size,
                    mtime=mtime,
                    digest=digest(path.read_bytes()),
                )
    return out
