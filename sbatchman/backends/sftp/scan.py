"""Read the destination over SFTP: the root folder's state and one listing per selected folder.

Listing every folder of the selection at once (many OPENDIR/READDIR in flight) instead of one
stat per file is what makes an unchanged tree cost a few round trips, not thousands.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.transfer import Listed, Listings
from sbatchman.errors import TransferError
from sbatchman.plan import DestStat, kind_of, seconds
from sbatchman.selection.walk import Selection

# Folders listed at once: each holds a handle on the server and up to two READDIR replies
# (about 100 names each) in flight, which must fit the channel's receive window.
MAX_LISTING = 128
FIRST_LISTING = 16  # before the server has stated its handle limit (limits@openssh.com)
LATEST = 0xFFFFFFFF  # SFTP v3 times are unsigned 32-bit seconds: 1970 to 2106


def root_path(remote: str) -> str:
    """The destination folder as the server should see it, taken literally.

    A relative path is sent as it is: SFTP resolves relative paths against the session's
    default folder, which is the login folder (the same place `normalize(".")` names), so
    `x` and `~/x` land under it without a shell and without a round trip to ask where it is.
    """
    remote = remote.rstrip("/") or "/"
    return "." if remote in ("", ".") else remote


def join(root: str, rel: str) -> str:
    if not rel:
        return root
    return rel if root == "." else posixpath.join(root, rel)


def dest_stat(attrs: c.Attrs) -> DestStat:
    return DestStat(
        kind_of(attrs.mode), attrs.size or 0, attrs.mtime or 0, stat.S_IMODE(attrs.mode or 0)
    )


Listing = dict[str, DestStat]


@dataclass
class Scan(Listed):
    """What the destination holds: `root` is None when the destination folder is missing."""

    root: DestStat | None = None


def scan(wire: w.Wire, root: str, selection: Selection, folders: Sequence[str]) -> Scan:
    """Stat the root and list every folder; links that matter get their targets read.
    Whether a folder that could not be listed matters is transfer.check's to judge."""
    result = Scan()

    def on_root(reply: c.Reply) -> None:
        found = reply.attrs()
        if found is not None:
            result.root = dest_stat(found)
            return
        code, message = reply.status()
        if code != c.NO_SUCH_FILE:
            result.errors[""] = f"cannot read the remote folder {root}: {message}"

    wire.call(c.STAT, c.path(root), on_root)
    list_into(wire, root, folders, result)
    if result.root is not None and result.root.kind != "dir":
        raise TransferError(f"the remote path {root} exists and is not a folder")
    _read_links(wire, root, selection, result)
    return result


def listing(wire: w.Wire, root: str, folders: Sequence[str]) -> Listed:
    """List `folders` (below `root`), many at once."""
    result = Listed()
    list_into(wire, root, folders, result)
    return result


def list_into(wire: w.Wire, root: str, folders: Sequence[str], result: Listed) -> None:
    """List `folders` into result.listings, many at once; requests queued before it (a STAT)
    travel in the same batch and are answered by the time it returns."""
    pending = iter(folders)
    running = [0]  # listings started and not finished
    all_started = [False]

    def more() -> bool:
        # Listing requests are sent as background: a folder is done at its first EOF, and the
        # read-ahead still in flight then must not cost the scan another round trip.
        while running[0] < _at_once(wire) and not all_started[0]:
            folder = next(pending, None)
            if folder is None:
                all_started[0] = True
                break
            running[0] += 1
            _Lister(wire, join(root, folder), folder, result, running).start()
        return running[0] > 0 or not all_started[0]

    wire.pump(more)


def _at_once(wire: w.Wire) -> int:
    """Listings open at once: half the handles the server allows, once it has said how many
    (its answer comes with the first replies); until then a few, so a server with a low
    handle limit never answers "Failure" to a folder that exists."""
    if wire.limits is None:
        return FIRST_LISTING if "limits@openssh.com" in wire.extensions else MAX_LISTING
    handles = wire.limits[3]
    return max(4, min(MAX_LISTING, handles // 2)) if handles else MAX_LISTING


class _Lister:
    """OPENDIR, READDIR until EOF (two in flight), CLOSE in the background."""

    def __init__(
        self, wire: w.Wire, path: str, folder: str, result: Listed, running: list[int]
    ) -> None:
        self.wire, self.path, self.folder, self.result = wire, path, folder, result
        self.running = running
        self.handle = b""
        self.listing: Listing = {}
        self.reads = 0
        self.done = False

    def start(self) -> None:
        self.wire.call(c.OPENDIR, c.path(self.path), self.on_open, background=True)

    def finish(self, listing: Listing | None) -> None:
        self.done = True
        self.running[0] -= 1
        self.result.listings[self.folder] = listing

    def on_open(self, reply: c.Reply) -> None:
        handle = reply.handle()
        if handle is None:
            code, message = reply.status()
            if code != c.NO_SUCH_FILE:  # judged once every listing is in: transfer.check
                self.result.errors[self.folder] = (
                    f"cannot list the remote folder {self.path}: {message}"
                )
            self.finish(None)
            return
        self.handle = handle
        self.read()
        self.read()

    def read(self) -> None:
        self.reads += 1
        self.wire.call(c.READDIR, c.string(self.handle), self.on_read, background=True)

    def on_read(self, reply: c.Reply) -> None:
        self.reads -= 1
        if not self.done:
            if reply.kind == c.NAME:
                for name, attrs in reply.names():
                    if name not in (".", ".."):
                        self.listing[name] = dest_stat(attrs)
                self.read()
            else:
                code, message = reply.status()
                if code != c.EOF:
                    self.result.errors[self.folder] = (
                        f"cannot list the remote folder {self.path}: {message}"
                    )
                self.finish(self.listing)
        if self.done and not self.reads:
            self.wire.call(c.CLOSE, c.string(self.handle), None, background=True)


def _read_links(wire: w.Wire, root: str, selection: Selection, result: Scan) -> None:
    """Fill in the target of each remote link that a selected link would replace."""

    def remote_links() -> Iterator[tuple[str, str, Listing]]:
        for entry in selection.entries:
            if entry.kind != "link":
                continue
            parent, name = posixpath.split(entry.path)
            listing = result.listings.get(parent)
            if listing and name in listing and listing[name].kind == "link":
                yield entry.path, name, listing

    def reader(name: str, listing: Listing) -> Callable[[c.Reply], None]:
        def on_reply(reply: c.Reply) -> None:
            names = reply.names()
            old = listing[name]
            target = names[0][0] if names else None
            listing[name] = DestStat(old.kind, old.size, old.mtime, old.mode, target)

        return on_reply

    for path, name, listing in remote_links():
        wire.call(c.READLINK, c.path(join(root, path)), reader(name, listing))
    wire.pump()


def out_of_range(selection: Selection, listings: Listings) -> list[str]:
    """Entries whose mtime SFTP cannot carry (before 1970, after 2106), which the cluster can
    only hold as the nearest time it can.

    Where the cluster holds exactly that time, its listing is read as the local time, so the
    plan sees the time as kept: else a file of 2200 would be sent again on every run and one
    of 1960 would count as "newer on the cluster" forever.
    """
    paths: list[str] = []
    for entry in selection.entries:
        local = seconds(entry.mtime_ns)
        if 0 <= local <= LATEST:
            continue
        paths.append(entry.path)
        parent, name = posixpath.split(entry.path)
        listing = listings.get(parent)
        found = listing.get(name) if listing else None
        if listing and found is not None and found.mtime == min(max(local, 0), LATEST):
            listing[name] = replace(found, mtime=local)
    return paths
