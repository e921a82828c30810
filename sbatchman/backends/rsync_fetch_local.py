"""The local side of an rsync fetch: the destination folder, rsync's temporaries, what landed.

rsync names its temporaries `.name.XXXXXX`, which no one can tell from a user's file, so a
killed fetch would leave litter nobody may remove. Each fetch therefore gives rsync its own
`--temp-dir`, a folder in the destination root named by sbatchman.temporaries rules; the next
fetch into that root removes only folders those rules prove abandoned (this machine, a process
that is gone; or older than temporaries.MAX_AGE_S), and inside them only plain files, which is
all rsync puts there. A running fetch's folder, or a user's folder of a similar name, stays.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sbatchman.errors import TransferError
from sbatchman.temporaries import Temporaries

# The stem of a fetch's temp folder: .rsync-fetch.<created>-<origin>-<pid>-<run>-<check>.sbm-part
TEMP_STEM = "rsync-fetch"
_RSYNC_TEMP = re.compile(r"\..+\.[A-Za-z0-9]{6}", re.DOTALL)  # rsync's own: .name.XXXXXX


@dataclass
class Destination:
    """The local folder a fetch writes into, and what this fetch made there."""

    root: Path
    made: list[Path] = field(default_factory=list)  # folders created, outermost first
    temp: Path | None = None
    times: tuple[int, int] = (0, 0)  # the folder's (atime, mtime) before the temp folder came
    touched: tuple[int, int] = (0, 0)  # and right after

    def check(self) -> None:
        """A file (or anything else) in the folder's place fails the target in one line."""
        try:
            st = self.root.stat()
        except FileNotFoundError:
            return
        except NotADirectoryError:
            parent = next(p for p in self.root.parents if p.exists() and not p.is_dir())
            raise TransferError(
                f"cannot create the local folder {self.root}: {parent} is a file;"
                " move it away or set another `local` for this fetch_dir"
            ) from None
        except OSError as err:
            raise TransferError(
                f"cannot use the local folder {self.root}: {err.strerror}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise TransferError(
                f"the local path {self.root} exists and is not a folder;"
                " move it away or set another `local` for this fetch_dir"
            )

    def prepare(self, temporaries: Temporaries) -> list[str]:
        """Make the folder (parents too), clear abandoned temp folders, make this fetch's.

        Returns a warning per leftover that could not be removed."""
        missing = []
        here = self.root
        while not here.exists() and here != here.parent:
            missing.append(here)
            here = here.parent
        try:
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:  # a sibling fetch (another alias) made it meanwhile
                    if not folder.is_dir():
                        raise
                    continue
                self.made.append(folder)
        except OSError as err:
            self.undo()
            raise TransferError(
                f"cannot create the local folder {self.root}: {err.strerror}"
                f" ({err.filename or self.root})"
            ) from None
        warnings = remove_abandoned(self.root, temporaries)
        temp = self.root / temporaries.name(TEMP_STEM)
        try:
            self.times = _times(self.root)
            temp.mkdir(mode=0o700)
            self.touched = _times(self.root)
        except OSError as err:
            self.undo()
            raise TransferError(
                f"cannot write into the local folder {self.root}: {err.strerror}"
            ) from None
        self.temp = temp
        return warnings

    def finish(self) -> None:
        """This fetch's temp folder goes; if rsync was killed with a file in it, it stays for
        the next fetch to remove (this process is gone by then, so it is provably abandoned)."""
        if self.temp is not None:
            with contextlib.suppress(OSError):
                # Making and removing the temp folder moves the folder's time. rsync gave it
                # the cluster's, unless both were the same whole second (rsync's quick check
                # for folders): then what it had before this fetch is the right one.
                times = _times(self.root)
                self.temp.rmdir()
                os.utime(self.root, ns=self.times if times[1] == self.touched[1] else times)
            self.temp = None

    def undo(self) -> None:
        """Nothing came (the cluster's folder is missing): remove the folders this fetch made,
        innermost first, each only while empty."""
        self.finish()
        for folder in reversed(self.made):
            try:
                folder.rmdir()
            except OSError:
                break
        self.made = []


def _times(folder: Path) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_atime_ns, st.st_mtime_ns


def leftovers(root: Path) -> bool:
    """Whether an earlier fetch left its temp folder in `root` (killed): then a fetch with
    nothing to bring still goes the whole way, which clears it."""
    try:
        with os.scandir(root) as entries:
            return any(e.name.startswith(f".{TEMP_STEM}.") for e in entries)
    except OSError:
        return False


def remove_abandoned(root: Path, temporaries: Temporaries) -> list[str]:
    """Remove the temp folders of fetches into `root` that are provably abandoned: only if
    all they hold is rsync temporaries (`.name.XXXXXX` files); anything else keeps the folder."""
    warnings: list[str] = []
    try:
        found = [e for e in os.scandir(root) if e.name.startswith(f".{TEMP_STEM}.")]
    except OSError:
        return warnings
    for entry in found:
        if not entry.is_dir(follow_symlinks=False) or not temporaries.abandoned(entry.name):
            continue
        try:
            inside = list(os.scandir(entry.path))
            if not all(_RSYNC_TEMP.fullmatch(i.name) and not i.is_dir(follow_symlinks=False)
                       for i in inside):  # fmt: skip
                continue
            for part in inside:
                os.unlink(part.path)
            os.rmdir(entry.path)
        except OSError as err:
            warnings.append(
                f"could not remove {entry.name}, left by an interrupted fetch: {err.strerror}"
            )
    return warnings


def landed(root: Path, name: str, size: int, mtime: int) -> bool:
    """Whether `name` is in place as rsync announced it: a file of that size and mtime second.
    A file is sent only when its size or mtime differs, so an old copy never passes."""
    try:
        st = os.lstat(root / name)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size and int(st.st_mtime) == mtime


def carries_nanoseconds(root: Path, names: list[str]) -> bool:
    """Whether the landed files' mtimes have a nanosecond part: then rsync passed them on
    (protocol 31 on both sides) and an exact comparison means something."""
    for name in names:
        with contextlib.suppress(OSError):
            if os.lstat(root / name).st_mtime_ns % 1_000_000_000:
                return True
    return False


def mark_older(root: Path, name: str) -> None:
    """Set a landed file's mtime one second back: never shown as up to date, so the next
    fetch (rsync's quick check, whole seconds) brings the file again. A link is never
    followed: only a regular file is touched, and the call does not follow links."""
    path = root / name
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            older = st.st_mtime_ns - 1_000_000_000
            os.utime(path, ns=(st.st_atime_ns, older), follow_symlinks=False)


def in_the_way(root: Path, planned: list[tuple[str, int, str]]) -> tuple[list[str], list[str]]:
    """Where rsync would put a folder or link over something here (`planned`: rsync's
    dry-run flags, the cluster's whole-second mtime, the name): the regular files newer than
    what replaces them, which rsync --update would still destroy and the plan's rule keeps,
    and the local links a folder replaces (worth a warning, as the other backends give)."""
    newer, links = [], []
    for flags, mtime, name in planned:
        if flags[:1] != "c" or flags[1:2] not in ("d", "L"):
            continue
        st = None
        for path in _names(name, flags[1] == "L"):
            try:
                st = os.lstat(root / path)
                break
            except OSError:
                continue
        if st is None:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime_ns // 1_000_000_000 > mtime:
            newer.append(path)
        elif stat.S_ISLNK(st.st_mode) and flags[1] == "d":
            links.append(path)
    return newer, links


def _names(printed: str, link: bool) -> list[str]:
    """What `printed` (rsync's %n%L) may name: a link's line ends in " -> target", and the
    name or the target may hold " -> " too, so each split is a candidate."""
    if not link:
        return [printed.rstrip("/")]
    parts = printed.split(" -> ")
    return [" -> ".join(parts[:i]) for i in range(1, len(parts))]
