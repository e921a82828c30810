"""Batches of changed paths in a set of folders, from a thread: the watch's one use of watchfiles.

watchfiles (imported only here, only under --watch, so start-up stays fast) runs the system's
watcher (inotify, FSEvents, ReadDirectoryChangesW) and batches events itself: a batch goes once
the tree has been quiet for QUIET_MS, or after CAP_MS of a steady stream. Where the system's
watcher cannot be used, the folders are polled here, not by watchfiles: its poller compares
modification times in whole seconds, so a second save within the same second went unseen.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable

QUIET_MS = 100  # a batch goes once the tree has been quiet this long...
CAP_MS = 1000  # ...or once it has gathered changes this long, in a steady stream
TICK_MS = 1000  # `next` returns at least this often (reconnects, the reconcile clock)
POLL_MS = 300  # polling: how often the tree is looked at (watchfiles' default), at least
READY_S = 5.0  # longest wait for a watcher to set its watches (polling a big tree: longer)
TEST_LIMIT_ENV = "SBATCHMAN_WATCH_TEST_LIMIT"
"""Tests only: set to 1, the first watcher acts as if the inotify watch limit was hit."""
LIMIT_FIX = "sudo sysctl fs.inotify.max_user_watches=524288"

Notice = Callable[[str], None]
Seen = dict[str, tuple[int, int, int, int]]  # path -> (inode, mode, mtime_ns, size)


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
        self._polled: dict[str, Seen] = {}  # folder -> its entries at the last look
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
        self.polling = _polls_by_default()
        while not self._closed.is_set():
            with self._lock:
                stop = self._stop = threading.Event()
                ready, folders = self._ready, self.folders
            paths = [f for f in folders if os.path.isdir(f)]
            try:
                if self.polling:
                    self._poll(paths, ready, stop)
                else:
                    self._watch(paths, ready, stop)
            except FileNotFoundError:  # a folder went between the walk and the watch
                self.lost = True
            except OSError as err:
                if self.polling:
                    self.notice(f"polling the tree failed ({err}); trying again")
                    stop.wait(POLL_MS / 1000)
                    self.lost = True
                else:
                    self._fall_back(err)
                    continue  # the poller's first look is what says the folders are watched
            ready.set()
            if self.lost:
                self.batches.put([])

    def _fall_back(self, err: OSError) -> None:
        if "limit" in str(err):
            self.notice(
                "the inotify watch limit is reached; polling the tree instead (slower)."
                f" To raise the limit: {LIMIT_FIX}"
            )
        else:
            self.notice(f"watching failed ({err}); polling the tree instead")
        self.polling, self.lost = True, True
        self.batches.put([])  # events may have been missed: the caller's answer is a full pass

    def _watch(self, paths: list[str], ready: threading.Event, stop: threading.Event) -> None:
        import watchfiles

        if self._fake_limit:
            raise OSError("OS file watch limit reached (test)")
        for changes in watchfiles.watch(
            *paths,
            watch_filter=None,
            debounce=CAP_MS,
            step=QUIET_MS,
            stop_event=_Asked(ready, stop),
            recursive=False,
            force_polling=False,
            ignore_permission_denied=True,
            raise_interrupt=False,
        ):
            self.batches.put(sorted({path for _, path in changes}))

    def _poll(self, paths: list[str], ready: threading.Event, stop: threading.Event) -> None:
        """Look at each folder every POLL_MS (longer when a look takes long), one batch a look.

        What the last look saw of a folder still watched is kept across `follow`, so a save
        made while the set of folders changed is still seen; a new folder's first look is its
        starting point (the walk after `follow` has what was in it)."""
        self._polled = {f: self._polled[f] for f in paths if f in self._polled}
        for folder in paths:
            self._polled.setdefault(folder, _look(folder))
        ready.set()
        took = 0.0
        while not stop.wait(max(POLL_MS / 1000, 2 * took)):
            began, changed = time.monotonic(), []
            for folder in paths:
                now, before = _look(folder), self._polled[folder]
                changed += [p for p in now.keys() | before.keys() if now.get(p) != before.get(p)]
                self._polled[folder] = now
            took = time.monotonic() - began
            if changed:
                self.batches.put(sorted(changed))


def _look(folder: str) -> Seen:
    """A folder's entries, to the nanosecond. A sub-folder's own time and size are left out:
    what changes inside it is seen by its own look, and a file made there is no change here."""
    seen: Seen = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone between the listing and the look: not here
                if stat.S_ISDIR(st.st_mode):
                    seen[entry.path] = (st.st_ino, st.st_mode, 0, 0)
                else:
                    seen[entry.path] = (st.st_ino, st.st_mode, st.st_mtime_ns, st.st_size)
    except PermissionError:
        pass  # as watchfiles' ignore_permission_denied: a folder we may not read is not watched
    return seen


def _polls_by_default() -> bool:
    """Where watchfiles itself would poll (its documented WATCHFILES_FORCE_POLLING, or WSL,
    whose Windows drives send no inotify events), poll here instead."""
    forced = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    if forced:
        return forced.lower() not in {"false", "disable", "disabled"}
    uname = os.uname()
    return "microsoft-standard" in uname.release.lower() and uname.sysname == "Linux"


class _Asked:
    """watchfiles' stop_event for one set of watches: it is first asked from inside the
    watch loop, so being asked also says the watches are in place."""

    def __init__(self, ready: threading.Event, stop: threading.Event) -> None:
        self.ready, self.stop = ready, stop

    def is_set(self) -> bool:
        self.ready.set()
        return self.stop.is_set()
