"""Write a tree into a folder on this machine (a local cluster) in pure Python, as rsync would.

Used when rsync is not installed or not chosen, so the quickstart works on a bare machine. Same
steps as SFTP (backends.transfer): list each destination folder once, plan, write each file under
a temporary name and rename it into place, then set mode and mtime. The same rules as SFTP for
temporaries (sbatchman.temporaries) and for files that change while they are copied (sources).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from sbatchman.backends.removal import LocalRemover
from sbatchman.backends.sources import (
    Changed,
    StillBeingWritten,
    Vanished,
    copy_file,
    vanished_note,
)
from sbatchman.backends.transfer import Listed, Listings, run
from sbatchman.errors import TransferError
from sbatchman.model import Events, FetchJob, InterruptedPart, Job, Outcome, PartialTransfer
from sbatchman.plan import (
    Action,
    DestStat,
    Plan,
    attribute_fixes,
    is_login_folder,
    kind_of,
    locked_folders,
    root_entry,
    stale_folders,
)
from sbatchman.precedence import keep_dirlinks_for
from sbatchman.selection.tree import Found, select_tree
from sbatchman.selection.tree import Listed as Tree
from sbatchman.selection.walk import Entry, Selection
from sbatchman.temporaries import Temporaries

Landed = Callable[[Action, Path, BaseException | None], None]


class Files(Protocol):
    """Where a Folder's file contents come from: this machine, or a cluster (SFTP fetch)."""

    def write(self, wanted: Sequence[tuple[Action, Path]], landed: Landed) -> None:
        """Write each action's file, its mode and mtime included, as the new file at its Path
        (a temporary beside the final one), then call `landed` with it and None, or with the
        reason it failed (Vanished, Changed, OSError, TransferError); stop starting new files
        once the Folder's `aborted` is set."""
        ...


class LocalFiles:
    """Files of a folder on this machine (the walk's root): a push's, or a local cluster's."""

    def __init__(self, source: Path, aborted: threading.Event, fetching: bool) -> None:
        self.source = source
        self.aborted = aborted
        self.fetching = fetching  # a changing file is a job still writing: see sources

    def write(self, wanted: Sequence[tuple[Action, Path]], landed: Landed) -> None:
        for action, part in wanted:
            if self.aborted.is_set():
                return
            try:
                copy_file(self.source, action.entry, part)
            except Vanished as err:
                landed(action, part, err)
            except Changed as err:
                landed(action, part, StillBeingWritten(err.why) if self.fetching else err)
            except OSError as err:
                landed(action, part, err)
            else:
                landed(action, part, None)


def destination(remote: str) -> Path:
    """A local cluster's relative paths are under the home folder, as a login would see them."""
    path = Path(remote)
    return path if path.is_absolute() else Path.home() / path


def _listings(root: Path, wanted: Sequence[str]) -> Listed:
    """Each wanted folder's listing (None: missing) and why the others could not be read."""
    listed = Listed()
    for folder in wanted:
        try:
            listed.listings[folder] = _listing(root / folder)
        except OSError as err:  # judged by transfer.check once all are in
            listed.listings[folder] = None
            listed.errors[folder] = f"cannot list {root / folder}: {err.strerror or err}"
    return listed


def _listing(folder: Path) -> dict[str, DestStat] | None:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None
    listing: dict[str, DestStat] = {}
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        kind = kind_of(st.st_mode)
        target = os.readlink(entry.path) if kind == "link" else None
        listing[entry.name] = DestStat(
            kind, st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode), target
        )
    return listing


def fetched(outcome: Outcome, selection: Selection) -> Outcome:
    """A fetch's outcome, with what could not be read on the cluster: that fails the target
    once the rest has come (as rsync's exit 23), so it travels as a PartialTransfer."""
    if not selection.problems:
        return outcome
    more = len(selection.problems) - 1
    others = f" (and {more} more)" if more else ""
    raise PartialTransfer(f"{selection.problems[0]}{others}", outcome)


def _top(root: Path) -> Found | None:
    try:
        st = root.stat()
    except OSError:
        return None
    return Found("", "dir", 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


class LocalTree:
    """A local cluster's folder as select_tree's lister (lstat, links never followed); also
    the Session's lister, which has nothing to close."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, folders: Sequence[str]) -> Tree:
        out: dict[str, list[Found] | str] = {}
        for folder in folders:
            where = self.root / folder
            try:
                found = []
                for de in os.scandir(where):
                    st = de.stat(follow_symlinks=False)
                    kind = kind_of(st.st_mode)
                    target = os.readlink(de.path) if kind == "link" else None
                    mode = stat.S_IMODE(st.st_mode)
                    shown = None if kind == "other" else kind
                    found.append(Found(de.name, shown, st.st_size, st.st_mtime_ns, mode, target))
                out[folder] = found
            except FileNotFoundError:
                out[folder] = f"the remote folder {where} does not exist"
            except OSError as err:
                out[folder] = f"cannot list the remote folder {where}: {err.strerror or err}"
        return out

    def close(self) -> None:
        pass


class LocalSession:
    """No connection to open; kept as a Session so push.py treats every cluster alike."""

    name = "local"

    def __init__(self) -> None:
        self.aborted = threading.Event()

    def push(self, job: Job, events: Events) -> Outcome:
        dirlinks = keep_dirlinks_for(job.cluster, job.sync_dir)
        root = destination(job.remote)
        keep_mode = is_login_folder(job.remote)
        folder = Folder(root, job.selection, dirlinks, events, self.aborted, "remote", keep_mode)
        return run(job.selection, folder, dirlinks, job.dry_run, events)

    def fetch(self, job: FetchJob, events: Events) -> Outcome:
        source = destination(job.remote)
        selection = select_tree(source, _top(source), LocalTree(source), job.rules)
        files = LocalFiles(source, self.aborted, fetching=True)
        folder = Folder(job.local, selection, False, events, self.aborted, "local", files=files)
        return fetched(run(selection, folder, False, job.dry_run, events), selection)

    def remover(self, job: Job) -> LocalRemover:
        return LocalRemover(destination(job.remote))

    def lister(self, remote: str) -> LocalTree:
        return LocalTree(destination(remote))

    def abort(self) -> None:
        self.aborted.set()

    def close(self) -> None:
        pass


class Folder:
    """A destination folder on this machine (transfer.Destination), written in pure Python."""

    def __init__(
        self,
        root: Path,
        selection: Selection,
        dirlinks: bool,
        events: Events,
        aborted: threading.Event,
        side: str,  # see transfer.Destination
        keep_mode: bool = False,  # the folder's own mode and mtime are left as they are
        files: Files | None = None,  # where contents come from: the selection's root if None
    ) -> None:
        self.side = side
        self.files = files or LocalFiles(selection.root, aborted, fetching=False)
        self.root = root
        self.selection = selection
        self.dirlinks = dirlinks
        self.events = events
        self.aborted = aborted
        self.keep_mode = keep_mode

    def scan(self, folders: Sequence[str]) -> Listed:
        root = self.root
        if root.exists() and not root.is_dir():
            raise TransferError(
                f"the {self.side} path {root} exists and is not a folder;"
                " move it away or choose another folder"
            )
        return _listings(root, folders)

    def list_folders(self, folders: Sequence[str]) -> Listed:
        return _listings(self.root, folders)

    def apply(self, plan: Plan, listed: Listed, outcome: Outcome, temporaries: Temporaries) -> None:
        root, listings = self.root, listed.listings
        failed: set[str] = set()  # entries that could not be placed, and all inside them
        _, dirs = self._fixes(plan, listings)
        locked = locked_folders(plan.actions, dirs)
        try:
            try:
                failures = self._apply(plan, locked, failed, outcome, temporaries)
            except BaseException:  # Ctrl-C or an error: put back what we unlocked, then go on
                for folder in locked:
                    with contextlib.suppress(OSError):
                        os.chmod(root / folder.path, folder.mode)
                raise
            self._fix_attributes(plan, listings, failed)
        except OSError as err:  # what landed before it still counts
            message = f"{err.strerror or err} ({err.filename or root})"
            if outcome.sent:
                message += f"; {len(outcome.sent)} file(s) were sent"
            raise PartialTransfer(message, outcome) from None
        if failures:
            more = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
            sent = len(outcome.sent)
            raise PartialTransfer(f"{failures[0]}{more}; {sent} file(s) were sent", outcome)

    def _apply(
        self,
        plan: Plan,
        locked: list[Entry],
        failed: set[str],
        outcome: Outcome,
        temporaries: Temporaries,
    ) -> list[str]:
        """Carry out the plan; returns why each entry that could not be placed failed."""
        root, events = self.root, self.events
        root.mkdir(parents=True, exist_ok=True)
        for folder in locked:  # its own mode is put back at the end
            os.chmod(root / folder.path, folder.mode | 0o700)
        for leftover in plan.leftovers:
            (root / leftover).unlink(missing_ok=True)
        failures: list[str] = []
        files: list[tuple[Action, Path]] = []  # written together once every folder exists
        for action in plan.actions:
            if self.aborted.is_set():
                raise InterruptedPart(outcome)
            entry, dest = action.entry, root / action.entry.path
            if action.op in ("conflict", "skip-newer"):
                continue
            if posixpath.dirname(entry.path) in failed:  # never write through what stayed
                failed.add(entry.path)
                failures.append(f"{entry.path}: its folder could not be made")
                continue
            try:
                if action.clear == "dir":  # a folder where a file or link goes: only if empty
                    dest.rmdir()
                elif action.clear is not None:
                    dest.unlink()  # a file or link where a folder goes; never follows a link
            except OSError as err:
                failed.add(entry.path)
                if action.clear == "dir":
                    what = "cannot replace the folder in the way (not empty?)"
                else:
                    what = "cannot remove what is in the way of this folder"
                failures.append(f"{entry.path}: {what}: {err.strerror}")
                continue
            if action.op == "send":
                files.append((action, dest.with_name(temporaries.name(dest.name))))
                continue
            try:
                self._place(action, dest, temporaries)
            except OSError as err:
                failed.add(entry.path)
                failures.append(f"{entry.path}: {err.strerror or err}")

        def landed(action: Action, part: Path, error: BaseException | None) -> None:
            entry = action.entry
            if error is None:
                try:
                    os.replace(part, root / entry.path)
                except OSError as err:
                    error = err
                else:
                    outcome.sent.append((entry.path, action.reason))
                    outcome.bytes_sent += entry.size
                    events.sent(entry.path, entry.size, action.reason)
                    return
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            if isinstance(error, Vanished):  # deleted after the walk: nothing failed
                outcome.warnings.append(vanished_note(entry.path))
            elif isinstance(error, StillBeingWritten):
                outcome.warnings.append(f"{entry.path}: {error}")
            else:  # this entry fails; the others still go, as rsync
                failed.add(entry.path)
                why = error.strerror if isinstance(error, OSError) and error.strerror else error
                failures.append(f"{entry.path}: {why}")

        self.files.write(files, landed)
        if self.aborted.is_set():
            raise InterruptedPart(outcome)
        return failures

    @staticmethod
    def _place(action: Action, dest: Path, temporaries: Temporaries) -> None:
        """A folder or link at its final path (a link through a temporary beside it)."""
        entry = action.entry
        if action.op == "mkdir":
            dest.mkdir(mode=0o700, exist_ok=True)  # its own mode comes last (it may be r-x)
            return
        part = dest.with_name(temporaries.name(dest.name))
        try:
            os.symlink(entry.target or "", part)
            os.utime(part, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
            os.replace(part, dest)
        finally:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)

    def _fix_attributes(self, plan: Plan, listings: Listings, failed: set[str]) -> None:
        """What rsync -pt also corrects: modes of unchanged files, then folders deepest first
        (the destination folder itself last)."""
        root = self.root
        chmods, dirs = self._fixes(plan, listings)
        for entry in chmods:
            os.chmod(root / entry.path, entry.mode)
        touched = {posixpath.dirname(a.entry.path) for a in plan.actions}
        for entry in reversed(stale_folders(dirs, touched, failed)):
            os.chmod(root / entry.path, entry.mode)
            os.utime(root / entry.path, ns=(entry.mtime_ns, entry.mtime_ns))

    def _fixes(
        self, plan: Plan, listings: Listings
    ) -> tuple[list[Entry], list[tuple[Entry, DestStat | None]]]:
        try:
            st = self.root.stat()
            here: DestStat | None = DestStat("dir", 0, int(st.st_mtime), stat.S_IMODE(st.st_mode))
        except OSError:
            here = None
        conflicts = [path for path, _ in plan.conflicts]
        mine = self.selection.top or root_entry(self.selection.root)
        top = None if self.keep_mode else (mine, here)
        return attribute_fixes(self.selection, listings, self.dirlinks, conflicts, top)
