"""Stop, from the main thread, the connections a run is still opening (Ctrl-C).

Connections are opened on worker threads, and they block where no signal reaches: a TCP
connect, the wait for a server's banner, a login. Python delivers Ctrl-C to the main thread
only, and a worker still waiting would keep the process alive for up to --connect-timeout at
exit. So each connection being opened says how to break what it waits on; on Ctrl-C the main
thread does that for all of them, and the workers fail at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from sbatchman.errors import Interrupted


class Cancel:
    """What the run's connections in progress wait on; one per run, inside its SshOptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

    @contextlib.contextmanager
    def watching(self, breaker: Callable[[], None]) -> Iterator[None]:
        """Run `breaker` (from another thread) if the run is cancelled while the block runs.

        A block entered after the cancel does not start: Interrupted. `breaker` must only
        make the blocked calls fail (close or shut down what they wait on); the block's own
        error handling then cleans up as for any failure.
        """
        with self._lock:
            if self._cancelled:
                raise Interrupted("interrupted")
            token = self._next
            self._next += 1
            self._breakers[token] = breaker
        try:
            yield
        finally:
            with self._lock:
                self._breakers.pop(token, None)

    def cancel(self) -> None:
        """Break every wait now, and refuse new ones; idempotent."""
        with self._lock:
            self._cancelled = True
            breakers = list(self._breakers.values())
            self._breakers.clear()
        for breaker in breakers:
            with contextlib.suppress(Exception):  # each is tried; one failing must not stop it
                breaker()
