"""How a delete reads and removes exact paths in a push's remote folder, and the local way to.

The delete planner (sbatchman.deletes) decides; a Remover only lists folders the way the plan
needs them (an entry as lstat sees it: a symlink is a link, never what it points to) and removes
the paths it is given, one by one. It never removes a folder with what is inside it: a folder
goes only with rmdir, which fails on one that is not empty, so a file that appeared on the
cluster after the listing survives.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sbatchman.backends.transfer import Listed
from sbatchman.plan import DestStat, kind_of


class Remover(Protocol):
    """One remote folder, reached for a delete; `close` ends whatever it opened."""

    def listings(self, folders: Sequence[str]) -> Listed:
        """Each folder's entries (None: missing); what could not be read goes in `errors`."""
        ...

    def remove(self, files: Sequence[str], folders: Sequence[str]) -> dict[str, str]:
        """Remove `files` (unlink), then `folders` (rmdir) deepest first; path -> why for each
        that could not be removed (one already gone counts as removed)."""
        ...

    def close(self) -> None: ...


class LocalRemover:
    """A local cluster: the remote folder is a path on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def listings(self, folders: Sequence[str]) -> Listed:
        listed = Listed()
        for folder in folders:
            try:
                listed.listings[folder] = _listing(self.root / folder if folder else self.root)
            except OSError as err:
                listed.errors[folder] = f"cannot list {self.root / folder}: {err.strerror or err}"
        return listed

    def remove(self, files: Sequence[str], folders: Sequence[str]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for rel, folder in [*((f, False) for f in files), *((d, True) for d in folders)]:
            try:
                self._remove(rel, folder)
            except FileNotFoundError:
                pass
            except OSError as err:
                failed[rel] = _rmdir_words(err) if folder else err.strerror or str(err)
        return failed

    def _remove(self, rel: str, folder: bool) -> None:
        """unlink or rmdir `rel`, reaching it folder by folder with O_NOFOLLOW: a folder on the
        way swapped for a symlink since the listing stops the removal (ELOOP/ENOTDIR)."""
        *parents, name = rel.split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parents:
                below = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
                os.close(fd)
                fd = below
            if folder:
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _listing(folder: Path) -> dict[str, DestStat] | None:
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return None
    listing: dict[str, DestStat] = {}
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        kind = kind_of(st.st_mode)
        try:
            target = os.readlink(entry.path) if kind == "link" else None
        except OSError:
            target = None
        listing[entry.name] = DestStat(
            kind, st.st_size, st.st_mtime_ns // 1_000_000_000, stat.S_IMODE(st.st_mode), target
        )
    return listing


def _rmdir_words(err: OSError) -> str:
    if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
        return "folder not empty any more (something was added on the cluster): kept"
    return err.strerror or str(err)
