"""Write sbatchman configs that point at the test bed's real servers, and run the CLI in-process."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from sbatchman.model import Events, Target
from tests.support.sshd import SshServer


def ssh_cluster(server: SshServer, dirs: Iterable[dict[str, object]], **extra: object) -> dict:
    """A [[clusters]] table reaching `server` through its own ssh_config (known_hosts, key)."""
    return {
        "name": server.name,
        "host": server.name,
        "ssh_config": str(server.ssh_config),
        **extra,
        "sync_dirs": list(dirs),
    }


def write_config(path: Path, clusters: list[dict], **global_: object) -> Path:
    data: dict[str, object] = {"clusters": clusters}
    if global_:
        data["global"] = global_
    path.write_text(tomli_w.dumps(data))
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Run `sbatchman ARGS` in this process, the way the console script does, and capture it."""
    from sbatchman.cli import main

    capsys.readouterr()
    stdin, sys.stdin = sys.stdin, open(os.devnull)  # noqa: SIM115 - no terminal: batch mode
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:
        raise AssertionError("main() must always exit")
    finally:
        sys.stdin.close()
        sys.stdin = stdin
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


class Recorder:
    """Events, kept for assertions (called from worker threads, hence the lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: list[tuple[str, int, str]] = []
        self.progressed = 0
        self.total: tuple[int, int] | None = None
        self.kept: list[str] = []

    def phase(self, name: str) -> None:
        pass

    def totals(self, files: int, nbytes: int) -> None:
        self.total = (files, nbytes)

    def sent(self, path: str, nbytes: int, why: str) -> None:
        with self.lock:
            self.files.append((path, nbytes, why))

    def progress(self, nbytes: int) -> None:
        with self.lock:
            self.progressed += nbytes

    def skipped(self, path: str, why: str) -> None:
        self.kept.append(path)


class OnPhase:
    """A Reporter whose every target records its events; `hook(name)` runs at each phase.

    The phases are the fan-out's deterministic points ("connecting" comes after the walk and
    before any transfer), so a test can change the tree exactly there.
    """

    def __init__(self, hook: Callable[[str, Target], None] | None = None) -> None:
        self.hook = hook
        self.lock = threading.Lock()
        self.phases: list[tuple[str, str, str]] = []  # (cluster, alias, phase)
        self.notices: list[str] = []

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def events(self, target: Target) -> Events:
        reporter = self

        class Phased(Recorder):
            def phase(self, name: str) -> None:
                with reporter.lock:
                    reporter.phases.append((target.cluster.name, target.sync_dir.alias, name))
                if reporter.hook is not None:
                    reporter.hook(name, target)

        return Phased()

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        yield
