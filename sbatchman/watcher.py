"""Batches of changed paths in a set of folders, from a thread: the watch's one use of watchfiles.

watchfiles (imported only here, only under --watch, so start-up stays fast) runs the system's
watcher (inotify, FSEvents, ReadDirectoryChangesW) and batches events itself: a batch goes once
the tree has been quiet for QUIET_MS, or after CAP_MS of a steady stream.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable

QUIET_MS = 100  # a batch goes once the tree has been quiet this long...
CAP_MS = 1000  # ...or once it has gathered changes this long, in a steady stream
TICK_MS = 1000  # `next` returns at least this often (reconnects, the reconcile clock)
POLL_MS = 300  # polling: how often the tree is looked at (watchfiles' default)
READY_S = 5.0  # longest wait for a watcher to set its watches (polling a big tree: longer)
TEST_LIMIT_ENV = "SBATCHMAN_WATCH_TEST_LIMIT"
"""Tests only: set to 1, the first watcher acts as if the inotify watch limit was hit."""
LIMIT_FIX = "sudo sysctl fs.inotify.max_user_watches=524288"

Notice = Callable[[str], None]


class Watcher:
    """Batches of changed paths in the watched folders, from a thread (watchfiles, imported
    only here).

    Each folder is watched on its own (not recursively), so only selected folders cost a
    watch; `follow` changes the set and returns once the new watches are in place, so the walk
    that follows misses nothing. `lost` is set when events may have been missed (the watcher
    failed and was restarted), which the caller answers with a full pass.
    """

    def __init__(self, folders: list[str], notice: Notice) -> None:
        self.folders = folders
        self.notice = notice
        self.polling = False
        self.lost = False
        self.batches: queue.Queue[list[str]] = queue.Queue()
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set once the next watches are in place
        self._stop = threading.Event()  # set to end the current watches
        self._closed = threading.Event()
        self._fake_limit = os.environ.get(TEST_LIMIT_ENV) == "1"
        self._thread = threading.Thread(target=self._run, name="sbatchman-watch", daemon=True)
        self._thread.start()
        self._ready.wait(READY_S)

    def next(self) -> list[str]:
        """The next batch, or [] after TICK_MS without one."""
        try:
            return self.batches.get(timeout=TICK_MS / 1000)
        except queue.Empty:
            return []

    def follow(self, folders: list[str]) -> None:
        if folders == self.folders:
            return
        with self._lock:
            self.folders = folders
            ready = self._ready = threading.Event()
            self._stop.set()
        ready.wait(READY_S)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            self._stop.set()
        self._thread.join(READY_S)

    def _run(self) -> None:
        import watchfiles

        while not self._closed.is_set():
            with self._lock:
                stop = self._stop = threading.Event()
                ready, folders = self._ready, self.folders
            paths = [f for f in folders if os.path.isdir(f)]
            try:
                if self._fake_limit and not self.polling:
                    raise OSError("OS file watch limit reached (test)")
                for changes in watchfiles.watch(
                    *paths,
                    watch_filter=None,
                    debounce=CAP_MS,
                    step=QUIET_MS,
                    stop_event=_Asked(ready, stop, POLL_MS / 1000 if self.polling else 0.0),
                    poll_delay_ms=POLL_MS,
                    recursive=False,
                    force_polling=self.polling or None,
                    ignore_permission_denied=True,
                    raise_interrupt=False,
                ):
                    self.batches.put(sorted({path for _, path in changes}))
            except FileNotFoundError:  # a folder went between the walk and the watch
                self.lost = True
            except OSError as err:
                if self.polling or "limit" not in str(err):
                    self.notice(f"watching failed ({err}); polling the tree instead")
                else:
                    self.notice(
                        "the inotify watch limit is reached; polling the tree instead (slower)."
                        f" To raise the limit: {LIMIT_FIX}"
                    )
                self.polling, self.lost = True, True
            ready.set()
            if self.lost:
                self.batches.put([])


class _Asked:
    """watchfiles' stop_event for one set of watches: it is first asked from inside the
    watch loop, so being asked also says the watches are in place. A poller has its first
    look only later (`settle` seconds): until then a change would be its starting point."""

    def __init__(self, ready: threading.Event, stop: threading.Event, settle: float) -> None:
        self.ready, self.stop = ready, stop
        self.at = time.monotonic() + settle

    def is_set(self) -> bool:
        if time.monotonic() >= self.at:
            self.ready.set()
        return self.stop.is_set()
