"""Run `sbatchman sync` as a child process and catch it in the middle of a transfer.

Tests that kill, freeze or interrupt a push need it to be provably mid-file: they wait until the
upload's temporary holds some bytes, rather than sleeping and hoping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sbatchman.plan import PART_SUFFIX

REPO = Path(__file__).resolve().parents[2]


def start_sync(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`sbatchman sync --config CONFIG ARGS` from this checkout, no terminal, output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def is_temporary(path: Path) -> bool:
    """rsync's `.name.XXXXXX` or sbatchman's `.name.<tag>.sbm-part` (both hidden)."""
    return path.name.startswith(".") or path.name.endswith(PART_SUFFIX)


def wait_for_temporary(folder: Path, minimum: int, running: Callable[[], bool]) -> Path:
    """The temporary of an upload into `folder` in progress, once it holds `minimum` bytes.

    Fails if the push (`running`) ends first, or nothing shows up within a minute.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in folder.glob(".*") if folder.is_dir() else ():
            try:
                if is_temporary(path) and path.stat().st_size >= minimum:
                    return path
            except FileNotFoundError:
                continue  # renamed into place meanwhile
        if not running():
            raise AssertionError("the push ended before it could be caught mid-transfer")
        time.sleep(0.002)
    raise AssertionError("no temporary file appeared")
