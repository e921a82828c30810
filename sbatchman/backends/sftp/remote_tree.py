"""List the cluster's tree for a fetch: select_tree's lister over SFTP, many folders at once.

A fetch walks a tree it cannot see, one depth per round (selection.tree). Each round lists all
of its folders with the push scan's pipelined OPENDIR/READDIR, then reads every link's target
in one more batch of READLINKs, so a round costs about two round trips whatever its width. The
root's STAT goes out with the first round's listing: a missing folder or a file in its place
costs no extra trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.scan import Listing, join, list_into, listing
from sbatchman.backends.transfer import Listed
from sbatchman.errors import Interrupted, TransferError
from sbatchman.plan import DestStat
from sbatchman.selection.tree import Found
from sbatchman.selection.tree import Listed as Tree

NS = 1_000_000_000


class RemoteTree:
    """The lister of one fetch: `open()` reads the root, then each call lists one round."""

    def __init__(self, wire: w.Wire, root: str) -> None:
        self.wire = wire
        self.root = root
        self._first: Listed | None = None

    def open(self) -> Found:
        """STAT the root (links followed, as rsync src/ does) and list it in the same batch;
        the root as select_tree's `top`, or TransferError with the one sentence to show."""
        found: list[c.Attrs | None] = [None]
        problem: list[str] = []

        def on_root(reply: c.Reply) -> None:
            found[0] = reply.attrs()
            if found[0] is None:
                code, message = reply.status()
                if code == c.NO_SUCH_FILE:
                    problem.append(f"the remote folder {self.root} does not exist")
                else:
                    problem.append(f"cannot read the remote folder {self.root}: {message}")

        self.wire.call(c.STAT, c.path(self.root), on_root)
        first = Listed()
        list_into(self.wire, self.root, [""], first)
        if problem:
            raise TransferError(problem[0])
        attrs = found[0]
        assert attrs is not None
        if attrs.mode is not None and not _is_dir(attrs.mode):
            raise TransferError(
                f"the remote path {self.root} is a file, not a folder; fetch_dirs name folders"
            )
        self._first = first
        return Found("", "dir", 0, (attrs.mtime or 0) * NS, (attrs.mode or 0) & 0o7777)

    def __call__(self, folders: Sequence[str]) -> Tree:
        if self._first is not None and list(folders) == [""]:
            listed, self._first = self._first, None
        else:
            listed = listing(self.wire, self.root, folders)
        self._read_links(listed)
        out: dict[str, Sequence[Found] | str] = {}
        for folder in folders:
            entries = listed.listings.get(folder)
            error = listed.errors.get(folder)
            if error is not None:
                out[folder] = error
            elif entries is None:
                out[folder] = f"the remote folder {join(self.root, folder)} does not exist"
            else:
                out[folder] = [_found(name, st) for name, st in entries.items()]
        return out

    def _read_links(self, listed: Listed) -> None:
        """Every link's target, all READLINKs in flight together."""
        for folder, entries in listed.listings.items():
            if not entries:
                continue
            for name, st in entries.items():
                if st.kind == "link":
                    path = join(self.root, f"{folder}/{name}" if folder else name)
                    self.wire.call(c.READLINK, c.path(path), _reader(entries, name))
        self.wire.pump()


class WireLister:
    """A RemoteTree on a channel of its own, as a Session's lister (`ls --fetch --explain`):
    `done` takes the channel back, clean unless a listing broke off half way. `stopped` says
    the session was aborted (Ctrl-C): what then breaks is the interruption, not the cluster."""

    def __init__(
        self,
        wire: w.Wire,
        root: str,
        done: Callable[[bool], None],
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.tree = RemoteTree(wire, root)
        self.done = done
        self.stopped = stopped
        self.clean = True
        self.opened = False

    def __call__(self, folders: Sequence[str]) -> Tree:
        """The root is read as a fetch reads it (open), so it fails in the fetch's words."""
        self.clean = False
        try:
            listed = self._list(folders)
        except Exception:
            if self.stopped():
                raise Interrupted("interrupted") from None
            raise
        if self.stopped():  # a folder's error may be the connection Ctrl-C cut
            raise Interrupted("interrupted")
        self.clean = True
        return listed

    def _list(self, folders: Sequence[str]) -> Tree:
        if not self.opened and "" in folders:
            self.opened = True
            try:
                self.tree.open()
            except TransferError as err:  # the channel may be broken: not given back clean
                if self.stopped():
                    raise
                return {"": str(err)}
        return self.tree(folders)

    def close(self) -> None:
        self.done(self.clean)


def _reader(entries: Listing, name: str) -> Callable[[c.Reply], None]:
    def on_reply(reply: c.Reply) -> None:
        names = reply.names()
        old = entries[name]
        target = names[0][0] if names else None
        entries[name] = DestStat(old.kind, old.size, old.mtime, old.mode, target)

    return on_reply


def _is_dir(mode: int) -> bool:
    return mode & 0o170000 == 0o040000


def _found(name: str, st: DestStat) -> Found:
    kind = None if st.kind == "other" else st.kind
    if kind == "link" and st.target is None:  # its target could not be read: not a link we can make
        kind = None
    return Found(name, kind, st.size, st.mtime * NS, st.mode, st.target)
