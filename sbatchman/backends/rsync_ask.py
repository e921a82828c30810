"""Short commands over a cluster's connection (the push's look), one of them started ahead.

The look at the cluster before a push (rsync_guard.look) is one ssh session on the master:
opening it costs a round trip, and starting the login shell, xargs and stat on the cluster
about as much again. Started as soon as the master is up (`start_ahead`), it waits on the
cluster for its paths while the walk still runs, and the look then costs one round trip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable

from sbatchman.children import GRACE, die_with_parent
from sbatchman.errors import Interrupted, TransferError


class Asker:
    """Runs a short command, (argv, stdin, env) -> (rc, stdout, stderr); abort stops it too
    (every child is in `running`, which the session's abort() terminates)."""

    def __init__(
        self,
        running: set[subprocess.Popen[bytes]],
        stall_timeout: float,
        aborted: Callable[[], bool],
    ) -> None:
        self.running = running
        self.stall_timeout = stall_timeout
        self.aborted = aborted
        self._ahead: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start_ahead(self, argv: list[str]) -> None:
        """Start `argv` now; the next call with the same argv (and no extra env) uses it."""
        with self._lock:
            if self._ahead is None and not self.aborted():
                # Not tied to this thread's life (die_with_parent): the connecting thread
                # that starts it ends before it is used. If sbatchman dies meanwhile, its
                # stdin closes, and the command ends with nothing to do.
                with contextlib.suppress(OSError):  # then the look starts it when needed
                    self._ahead = self._spawn(argv, {}, tied=False)

    def __call__(
        self, argv: list[str], data: bytes, env: dict[str, str]
    ) -> tuple[int, bytes, bytes]:
        with self._lock:
            ahead = self._ahead
            if ahead is not None and not env and ahead.args == argv:
                self._ahead = None
            else:
                ahead = None
        proc = ahead or self._spawn(argv, env, tied=True)
        try:
            out, err = proc.communicate(data, timeout=max(1.0, self.stall_timeout))
        except subprocess.TimeoutExpired:
            raise TransferError(
                f"stalled: the cluster did not answer for {self.stall_timeout:g} s"
                " (--stall-timeout)"
            ) from None
        finally:
            _end(proc)
            self.running.discard(proc)
        if self.aborted():
            raise Interrupted("interrupted")
        return proc.returncode, out, err

    def release(self) -> None:
        """Give back a command started ahead that this push will not use (no folder or link
        to look at), before rsync asks for a session of its own: on a cluster that allows one
        session per login (MaxSessions 1), rsync's ssh would otherwise log in a second time,
        which a cluster with 2FA refuses. Its stdin closed, it ends at once (xargs -r has
        nothing to do); the cluster has freed its session before the next one is asked for,
        since both go over the master's one connection, in order. One that has not ended
        within GRACE (a cluster that stopped answering) is stopped."""
        self._drop(GRACE)

    def close(self) -> None:
        """End a command started ahead and never used (the push failed first, or released
        nothing). It has done nothing, so it is stopped, not waited for: a cluster that
        stopped answering would hold the exit for as long as it likes."""
        self._drop(0.0)

    def _drop(self, wait: float) -> None:
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if wait > 0:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    ahead.communicate(timeout=wait)
            _end(ahead)
            self.running.discard(ahead)

    def _spawn(
        self, argv: list[str], env: dict[str, str], *, tied: bool
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            start_new_session=True,
            preexec_fn=die_with_parent() if tied else None,
        )
        self.running.add(proc)
        return proc


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Make sure the child is gone and its pipes closed (a timeout or error left it running)."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
