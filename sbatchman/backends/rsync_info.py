"""What the local rsync can do: found on PATH once, its version read, its missing flags known.

Apart from the backend so that choosing a backend (open.py) can ask without loading the push.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class RsyncInfo:
    """What the local rsync can do; flags it lacks are left out, and the loss is reported."""

    path: str
    version: tuple[int, ...]
    openrsync: bool = False

    @property
    def usable(self) -> bool:
        """openrsync (macOS) lacks --files-from, which is how we hand rsync the selection."""
        return not self.openrsync

    @property
    def mkpath(self) -> bool:
        return not self.openrsync and self.version >= (3, 2, 3)

    @property
    def secluded_args(self) -> bool:
        return not self.openrsync and self.version >= (3, 0, 0)

    @property
    def info_flags(self) -> bool:
        return not self.openrsync and self.version >= (3, 1, 0)


def detect() -> RsyncInfo | None:
    """Find rsync on PATH and read its version; None when there is none."""
    path = shutil.which("rsync")
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version\s+v?(\d+(?:\.\d+)*)", out)
    version = tuple(int(x) for x in found[1].split(".")) if found else (0,)
    return RsyncInfo(path, version, openrsync="openrsync" in out)
