"""The SFTP channels of one connection: opened ahead of need, lent to one thread at a time.

A channel is opened in the background as soon as the connection exists, so its three round
trips (open, subsystem, version) overlap the local folder walk. A few more are opened beside it:
one sftp-server process handles one request at a time, so a big upload spreads its files over
several channels and the server's work runs on several cores.
"""

from __future__ import annotations

import threading

import paramiko

from sbatchman.backends.sftp.wire import Wire
from sbatchman.errors import Interrupted, TransferError

MAX_CHANNELS = 8  # per connection: OpenSSH's default MaxSessions is 10


class ChannelPool:
    """Idle channels plus the ones being opened; `take` and `give_back` lend them out."""

    def __init__(self, transport: paramiko.Transport, stall_timeout: float, warm: int) -> None:
        self.transport = transport
        self.stall_timeout = stall_timeout
        self._idle: list[Wire] = []
        self._open = 0  # open, being opened, or lent out
        self._opening = 0
        self._stopped = False
        self._most = MAX_CHANNELS  # lowered when the server refuses a channel
        self._cond = threading.Condition()
        with self._cond:
            for _ in range(min(warm, MAX_CHANNELS)):
                self._open += 1
                self._opening += 1
                threading.Thread(target=self._open_ahead, name="sftp-open", daemon=True).start()

    @property
    def idle(self) -> int:
        """Channels ready to lend right now."""
        with self._cond:
            return len(self._idle)

    def take(self) -> Wire:
        """A channel for the calling thread: an idle one, one about to open, or a new one."""
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        raise Interrupted("interrupted")
                    if self._idle:
                        return self._idle.pop()
                    if not self._opening and self._open < self._most:
                        self._open += 1
                        break
                    self._cond.wait()
            try:
                return Wire.open(self.transport, self.stall_timeout)
            except TransferError:
                with self._cond:
                    self._open -= 1
                    self._cond.notify_all()
                    if not self._open:
                        raise
                    # A server's MaxSessions refused it while sibling pushes hold channels:
                    # wait for one of theirs instead of failing this push.
                    self._most = self._open
            except BaseException:
                with self._cond:
                    self._open -= 1
                    self._cond.notify_all()
                raise

    def take_idle(self, most: int) -> list[Wire]:
        """Up to `most` more channels that are ready now (never waits)."""
        with self._cond:
            count = max(0, min(most, len(self._idle)))
            taken = self._idle[len(self._idle) - count :]
            del self._idle[len(self._idle) - count :]
            return taken

    def give_back(self, wire: Wire, clean: bool) -> None:
        """Return a channel; one that saw an error, or any after abort, is closed instead."""
        if clean:
            try:
                wire.settle()
            except Exception:
                clean = False
        with self._cond:
            if clean and not self._stopped:
                self._idle.append(wire)
            else:
                self._open -= 1
                wire.close()
            self._cond.notify_all()

    def stop(self) -> list[Wire]:
        """No more lending (abort or close); returns the idle channels, to be closed."""
        with self._cond:
            self._stopped = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
            return idle

    def _open_ahead(self) -> None:
        try:
            wire = Wire.open(self.transport, self.stall_timeout)
        except Exception:  # a server with few sessions: work on the channels it allows
            with self._cond:
                self._open -= 1
                self._opening -= 1
                self._cond.notify_all()
            return
        with self._cond:
            self._opening -= 1
            if self._stopped:
                self._open -= 1
                wire.close()
            else:
                self._idle.append(wire)
            self._cond.notify_all()
