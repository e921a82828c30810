"""Keep every cluster in step with the tree: one Fleet open across many push passes (--watch).

The first pass is a normal sync. After it, the selected folders (never an excluded one: a
`.git` or `results/` costs no watch and no event) are watched one by one, and each batch of
changes becomes one pass over the sessions already open, so no new login and no new 2FA prompt.
A pass pushes only the changed files, each judged by the same selection rules as a sync
(`explain`), read as they are at send time. A new folder, an ignore file, a burst of changes,
a watcher that lost events, a reconnected cluster and the clock (every RECONCILE_S) each make
a full pass instead: walk, plan, push, as a sync. Deletes are never sent.

Nothing here prints: each pass goes to `on_pass`, and live state to the Fleet's events.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sbatchman.backends import Session
from sbatchman.backends.sources import vanished_note
from sbatchman.config import Config
from sbatchman.fanout import Fleet, Operation, Stopped
from sbatchman.model import Events, Reporter, Request, Result, Target
from sbatchman.push import push_one, walk
from sbatchman.selection.walk import GITIGNORE, IGNORE_FILE, Entry, Selection, explain
from sbatchman.ssh.endpoint import Answers
from sbatchman.targets import resolve_targets
from sbatchman.watcher import Notice, Watcher

RECONCILE_S = 60.0  # a full pass this often, for what any watcher may miss
FULL_FROM = 500  # changes in one target's batch from which a full pass is cheaper
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # waits between reconnect tries, the last repeated
FINISH_S = 10.0  # Ctrl-C: how long the batch in flight may take to finish


@dataclass
class Pass:
    """One pass of the watch, for the report: `number` 0 is the first sync."""

    number: int
    results: list[Result]  # the targets this pass pushed
    changed: list[str]  # the local paths that made it (empty for a full pass on the clock)
    reconnecting: dict[str, str] = field(default_factory=dict)  # cluster -> last error


def watch(
    config: Config, request: Request, reporter: Reporter, on_pass: Callable[[Pass], None]
) -> list[Result]:
    """Sync, then push every change until Ctrl-C or SIGTERM; returns each target's last state.

    One cluster failing (a dropped link, a sleeping laptop) never stops the others: it is
    reconnected with backoff and caught up with one full pass once it is back.
    """
    request = replace(request, ssh=replace(request.ssh, answers=Answers()))
    targets = resolve_targets(config, request)
    last: dict[int, Result] = {}
    try:
        with Fleet(targets, config.settings, request, reporter) as fleet:
            _Watch(fleet, targets, request, reporter.notice, on_pass, last).run()
    except Stopped as stop:  # the pass in flight was abandoned (no partial file remains)
        by_name = {(t.cluster.name, t.sync_dir.alias): t for t in targets}
        for result in stop.results:
            target = by_name.get((result.cluster, result.alias))
            if target is not None:
                last[id(target)] = result
    except KeyboardInterrupt:  # between passes: every target keeps its last state
        pass
    return [last.get(id(t)) or Result(t.cluster.name, t.sync_dir.alias, t.backend, "interrupted")
            for t in targets]  # fmt: skip


class _Watch:
    """The state of one watch: what each target last did and which clusters are away."""

    def __init__(
        self,
        fleet: Fleet,
        targets: Sequence[Target],
        request: Request,
        notice: Notice,
        on_pass: Callable[[Pass], None],
        last: dict[int, Result],
    ) -> None:
        self.fleet, self.targets, self.request = fleet, list(targets), request
        self.notice, self.on_pass, self.last = notice, on_pass, last
        self.away: dict[str, tuple[int, float, str]] = {}  # cluster -> (tries, next try, why)
        self.selections: dict[int, Selection] = {}
        self.number = 0

    def run(self) -> None:
        watcher = Watcher(sorted({os.fspath(t.sync_dir.local) for t in self.targets}), self.notice)
        try:
            self._loop(watcher)
        finally:
            watcher.close()

    def _loop(self, watcher: Watcher) -> None:
        self._pass(self._walk(watcher, self.targets), [])
        reconciled = time.monotonic()
        while True:
            changed = watcher.next()
            now = time.monotonic()
            full: set[int] = set()
            if watcher.lost or now - reconciled >= RECONCILE_S:
                watcher.lost = False
                full = {id(t) for t in self.targets}
                reconciled = now
            full |= self._reconnect(now)
            work = self._partial(changed, full)
            if not work and not full:
                continue
            if full:
                fresh = self._walk(watcher, [t for t in self.targets if id(t) in full])
                work.update(fresh)
            self._pass(work, changed)

    def _walk(self, watcher: Watcher, targets: list[Target]) -> dict[int, Selection]:
        """Walk `targets` once their folders are all watched: a file made in a new folder
        before its watch existed is then in the walk, and any change after it is an event."""
        for _ in range(3):  # a tree still growing: give up following it after a few tries
            fresh = walk(targets)
            before = watcher.folders
            self.selections.update(fresh)
            watcher.follow(_folders(self.targets, self.selections))
            if watcher.folders == before:
                break
        return fresh

    def _partial(self, changed: list[str], full: set[int]) -> dict[int, Selection]:
        """The changed files each target must push; a target needing more joins `full`."""
        work: dict[int, Selection] = {}
        for target in self.targets:
            if id(target) in full or target.cluster.name in self.away:
                continue  # a cluster away catches up with a full pass once it is back
            root = os.fspath(target.sync_dir.local)
            mine = [p for p in changed if p.startswith(root + os.sep)]
            if not mine:
                continue
            deleting = self.request.delete or target.sync_dir.delete
            selection = _changed_files(target, [p[len(root) + 1 :] for p in mine], deleting)
            if selection is None:
                full.add(id(target))
            elif selection.entries:
                work[id(target)] = selection
        return work

    def _pass(self, work: dict[int, Selection], changed: list[str]) -> None:
        def push(target: Target, session: Session, events: Events) -> Result:
            selection = work[id(target)]
            whole = not selection.changed  # a walk; changed files only: no deletes
            return push_one(target, selection, session, self.request, events, whole=whole)

        chosen = [t for t in self.targets if id(t) in work]
        results, stopped = self._run_pass(push, set(work))
        stamp = time.strftime("%H:%M:%S")
        for target, result in zip(chosen, results, strict=True):
            gone = {vanished_note(p) for p in work[id(target)].changed}
            result.warnings = [w for w in result.warnings if w not in gone]  # saved, then gone
            self.last[id(target)] = result
            if result.status == "ok":
                self.fleet.events[id(target)].phase(f"up to date since {stamp}")
        self._note_away(chosen, results)
        reconnecting = {name: why for name, (_, _, why) in self.away.items()}
        with _interrupts_held():  # a report line is never cut in half by Ctrl-C
            self.on_pass(Pass(self.number, results, changed, reconnecting))
        self.number += 1
        if stopped:
            raise KeyboardInterrupt

    def _run_pass(self, push: Operation, only: set[int]) -> tuple[list[Result], bool]:
        """One Fleet pass on a thread of its own, so that Ctrl-C (or SIGTERM) lets the batch
        in flight finish, for FINISH_S at most; a second one, or the time running out,
        abandons it (every backend leaves no partial file). True: the watch must end."""
        done: list[list[Result]] = []
        failed: list[BaseException] = []
        finished = threading.Event()  # not Thread.join: Ctrl-C can leave a join confused

        def work() -> None:
            try:
                done.append(self.fleet.run(push, only=only))
            except BaseException as err:  # handed to the watch's own thread
                failed.append(err)
            finally:
                finished.set()

        threading.Thread(target=work, name="sbatchman-pass", daemon=True).start()
        stopped = False
        try:
            while not finished.wait(0.1):
                pass
        except KeyboardInterrupt:
            stopped = True
            with contextlib.suppress(KeyboardInterrupt):
                finished.wait(FINISH_S)
            if not finished.is_set():
                self.fleet.abort()
                finished.wait()
        if failed:
            raise failed[0]
        return done[0], stopped

    def _note_away(self, chosen: list[Target], results: list[Result]) -> None:
        """A cluster all of whose pushed targets failed without sending a file is away."""
        by_cluster: dict[str, list[Result]] = {}
        for target, result in zip(chosen, results, strict=True):
            by_cluster.setdefault(target.cluster.name, []).append(result)
        now = time.monotonic()
        for name, mine in by_cluster.items():
            if all(r.status == "failed" and not r.files_sent for r in mine):
                tries = self.away.get(name, (0, 0.0, ""))[0]
                wait = BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
                self.away[name] = (tries + 1, now + wait, mine[0].error or "failed")
                for target in self.targets:
                    if target.cluster.name == name:
                        self.fleet.events[id(target)].phase(f"reconnecting in {wait:g} s")
            else:
                self.away.pop(name, None)

    def _reconnect(self, now: float) -> set[int]:
        """Try the clusters whose next try is due; the targets of each one back need a full
        pass (what changed while it was away)."""
        back: set[int] = set()
        for name, (_tries, due, _why) in list(self.away.items()):
            if now < due:
                continue
            self.fleet.reconnect(name)
            back |= {id(t) for t in self.targets if t.cluster.name == name}
        return back


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM that arrives inside holds until the block is done, then counts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    if caught:
        raise KeyboardInterrupt


def _folders(targets: Sequence[Target], selections: dict[int, Selection]) -> list[str]:
    """Every folder a watch must see: each root and each selected folder in it."""
    out: set[str] = set()
    for target in targets:
        root = os.fspath(target.sync_dir.local)
        out.add(root)
        selection = selections[id(target)]
        out |= {os.path.join(root, e.path) for e in selection.entries if e.kind == "dir"}
    return sorted(out)


def _changed_files(target: Target, paths: list[str], deleting: bool = False) -> Selection | None:
    """The changed files of one target that its rules select, with their folders; None when
    only a full pass can say (a folder, an ignore file, too many changes, and with --delete
    a path gone: deletes are judged against a whole walk)."""
    if len(paths) > FULL_FROM:
        return None
    root = target.sync_dir.local
    entries: dict[str, Entry] = {}
    for rel in paths:
        if os.path.basename(rel) in (IGNORE_FILE, GITIGNORE):
            return None
        try:
            st = os.lstat(root / rel)
        except OSError:  # gone before its pass: nothing to send, maybe something to delete
            if deleting:
                return None
            continue
        if stat.S_ISDIR(st.st_mode):
            return None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue
        if not explain(root, target.rules, rel, gitignore=target.gitignore).pushed:
            continue
        entry = _entry(root, rel, st)
        if entry is None:
            continue
        entries[rel] = entry
        parent = os.path.dirname(rel)
        while parent and parent not in entries:
            folder = _entry(root, parent)
            if folder is None:
                break
            entries[parent] = folder
            parent = os.path.dirname(parent)
    ordered = sorted(entries.values(), key=lambda e: e.path.split("/"))
    files = frozenset(e.path for e in ordered if e.kind != "dir")
    return Selection(root, tuple(ordered), changed=files)


def _entry(root: Path, rel: str, st: os.stat_result | None = None) -> Entry | None:
    try:
        st = st or os.lstat(root / rel)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            return Entry(rel, "dir", 0, st.st_mtime_ns, mode)
        if stat.S_ISLNK(st.st_mode):
            return Entry(rel, "link", st.st_size, st.st_mtime_ns, mode, os.readlink(root / rel))
        return Entry(rel, "file", st.st_size, st.st_mtime_ns, mode)
    except OSError:
        return None
