"""Shape the destination's folders over SFTP before and after the files: the missing path to
the root, leftovers of a killed run, read-only folders to write into, things of another kind in
the way, new folders level by level, and (last) every folder's mode and mtime.

Each step keeps all its requests in flight at once and waits for the replies together: a few
round trips per push, whatever the number of folders.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence

from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.apply import Apply
from sbatchman.plan import Action, kind_of, seconds
from sbatchman.selection.walk import Entry


def make_root(run: Apply, ancestors: Sequence[str]) -> None:
    """Create the missing folders of the destination path, one level per round trip."""
    exists: dict[str, bool] = {}

    def checker(path: str) -> w.Callback:
        def on_reply(reply: c.Reply) -> None:
            found = reply.attrs()
            exists[path] = found is not None
            if found is None and reply.status()[0] != c.NO_SUCH_FILE:
                run.fail(path, f"cannot read {path}: {c.describe(reply)}")

        return on_reply

    for path in ancestors:
        run.wire.call(c.STAT, c.path(path), checker(path))
    run.wire.pump()
    for path in ancestors:
        if run.failures:
            return
        if not exists.get(path):

            def refused(reply: c.Reply, path: str = path) -> None:
                run.fail(path, f"cannot create {path}: {c.describe(reply)}")

            mkdir(run, path, c.attrs(), refused)
            run.wire.pump()


def mkdir(
    run: Apply,
    path: str,
    attrs: bytes,
    refused: w.Callback,
    made: Callable[[], None] | None = None,
) -> None:
    """MKDIR `path`; a folder that another push made meanwhile counts as made (two pushes into
    one new folder at once), anything else calls `refused` with the MKDIR's reply. OpenSSH says
    only "Failure" for EEXIST, so only a failure costs the extra LSTAT."""

    def on_mkdir(reply: c.Reply) -> None:
        if reply.ok():
            if made is not None:
                made()
            return

        def on_lstat(found: c.Reply) -> None:
            attrs = found.attrs()
            if attrs is None or kind_of(attrs.mode) != "dir":
                refused(reply)
            elif made is not None:
                made()

        run.wire.call(c.LSTAT, c.path(path), on_lstat)

    run.wire.call(c.MKDIR, c.path(path) + attrs, on_mkdir)


def remove_leftovers(run: Apply, leftovers: Sequence[str]) -> None:
    """Temporaries of an earlier, killed run; failing to remove one is worth a warning only."""
    for rel in leftovers:

        def on_reply(reply: c.Reply, rel: str = rel) -> None:
            if reply.ok():
                run.touched(rel)
            else:
                run.outcome.warnings.append(f"could not remove leftover {rel}: {c.describe(reply)}")

        run.wire.call(c.REMOVE, c.path(run.remote(rel)), on_reply)
    run.wire.pump()


def unlock_folders(run: Apply, folders: Sequence[Entry]) -> None:
    """Make read-only folders we write into owner-writable (see plan.locked_folders)."""
    for entry in folders:
        run.changed.add(entry.path)  # so its real mode is put back at the end
        payload = c.path(run.remote(entry.path)) + c.attrs(perm=entry.mode | 0o700)
        run.call_ok(c.SETSTAT, payload, entry.path or ".", "cannot make the folder writable")
    run.wire.pump()


def clear_the_way(run: Apply, actions: Sequence[Action]) -> set[str]:
    """Remove what stands where the plan puts something of another kind, as rsync does.

    A file or link where a folder goes is removed (REMOVE never follows a link); a folder where
    a file or link goes is removed only if empty. Returns the entries that must not be sent.
    """
    blocked: set[str] = set()
    for action in actions:
        if action.clear is None:
            continue
        rel = action.entry.path

        def on_reply(reply: c.Reply, rel: str = rel, folder: bool = action.clear == "dir") -> None:
            if reply.ok():
                run.touched(rel)
                return
            blocked.add(rel)
            if folder:
                run.fail(
                    rel, f"cannot replace the folder in the way (not empty?): {c.describe(reply)}"
                )
            else:
                run.failed_dirs.add(rel)
                run.fail(
                    rel, f"cannot remove what is in the way of this folder: {c.describe(reply)}"
                )

        kind = c.RMDIR if action.clear == "dir" else c.REMOVE
        run.wire.call(kind, c.path(run.remote(rel)), on_reply)
    run.wire.pump()
    return blocked


def make_folders(run: Apply, new: Sequence[Entry]) -> None:
    """New folders, level by level: a level's MKDIRs go together once its parents exist.

    Each is made owner-writable so its files can be written; its real mode and mtime come last.
    """
    levels: dict[int, list[Entry]] = {}
    for entry in new:
        levels.setdefault(entry.path.count("/"), []).append(entry)
    failed = run.failed_dirs
    for depth in sorted(levels):
        for entry in levels[depth]:
            if entry.path in failed:  # what stood in its way could not be removed
                continue
            if posixpath.dirname(entry.path) in failed:
                failed.add(entry.path)
                continue

            def refused(reply: c.Reply, entry: Entry = entry) -> None:
                failed.add(entry.path)
                run.fail(entry.path, f"cannot create folder: {c.describe(reply)}")

            def made(entry: Entry = entry) -> None:
                run.touched(entry.path)

            attrs = c.attrs(perm=entry.mode | 0o700)
            mkdir(run, run.remote(entry.path), attrs, refused, made)
        run.wire.pump()


def set_folder_attrs(run: Apply, folders: Sequence[Entry]) -> None:
    """Mode and mtime of folders, last: writing into a folder changes its mtime. The
    destination folder itself ("" in the plan) is named "." in a failure."""
    for entry in folders:
        payload = c.path(run.remote(entry.path)) + c.attrs(
            perm=entry.mode, mtime=seconds(entry.mtime_ns)
        )
        run.call_ok(c.SETSTAT, payload, entry.path or ".", "cannot set folder mode and time")
    run.wire.pump()
