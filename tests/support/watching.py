"""Run `sbatchman sync --watch --json` as a child process and follow its JSON Lines.

Watch tests change files and then wait for what must follow (new bytes on every cluster, a
pass that names the change), each wait bounded, never a fixed sleep that hopes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.running import start_sync

WAIT_S = 30.0  # generous: CI machines are slow; a working watch answers in well under 1 s


class Watching:
    """`with Watching(config) as w:` starts the watch and waits for its first sync."""

    def __init__(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.proc = start_sync(config, "--watch", "--json", *args, env=env)
        self.passes: list[dict[str, Any]] = []
        self.lines = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lines:
                self.passes.append(json.loads(line))
                self.lines.notify_all()

    def __enter__(self) -> Watching:
        self.wait_pass(lambda p: p["pass"] == 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        if exc[0] is not None:  # the watch's own words help the most when a wait failed
            print(f"watch stderr:\n{self.stderr}\npasses: {self.passes}")

    def wait_pass(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first pass (seen or still to come) for which `wanted` is true."""
        deadline = time.monotonic() + WAIT_S
        with self.lines:
            while True:
                for seen in self.passes:
                    if wanted(seen):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no such pass; passes so far: {self.passes}")
                self.lines.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send `sig` and return the exit status (stderr is kept in self.stderr)."""
        self.proc.send_signal(sig)
        try:
            _, self.stderr = self.proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the watch did not end on its signal") from None
        self.reader.join(5)
        return self.proc.returncode


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until true, failing with `what` after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def has(path: Path, content: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return path.read_text() == content
        except OSError:
            return False

    return check
