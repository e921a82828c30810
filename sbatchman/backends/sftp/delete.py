"""The delete's reads and removals over one SFTP channel: READDIR, then REMOVE and RMDIR.

READDIR's attributes are lstat's, so a symlink on the cluster shows as a link and the planner
never goes through it. REMOVE never follows a link it removes, and RMDIR fails on a folder that
is not empty, so nothing but the exact planned paths can go. Files are removed all at once
(pipelined); folders one depth at a time, deepest first, each level only once the one below
has been answered.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import groupby

from sbatchman.backends.sftp import codec as c
from sbatchman.backends.sftp import wire as w
from sbatchman.backends.sftp.scan import join, listing, root_path
from sbatchman.backends.transfer import Listed
from sbatchman.plan import DestStat


class WireRemover:
    """A push's remote folder on one SFTP channel; `done` gives the channel back."""

    def __init__(self, wire: w.Wire, remote: str, done: Callable[[bool], None]) -> None:
        self.wire = wire
        self.root = root_path(remote)
        self.done = done
        self.clean = False

    def listings(self, folders: Sequence[str]) -> Listed:
        listed = listing(self.wire, self.root, folders)
        self._read_targets(listed)
        self.clean = True
        return listed

    def _read_targets(self, listed: Listed) -> None:
        """Each link's target (READLINK, all at once): a link repointed on the cluster is no
        longer the one sbatchman pushed, whatever the length of its target."""

        def reader(entries: dict[str, DestStat], name: str) -> w.Callback:
            def on_reply(reply: c.Reply) -> None:
                names = reply.names()
                entries[name] = replace(entries[name], target=names[0][0] if names else None)

            return on_reply

        for folder, entries in listed.listings.items():
            for name, found in list((entries or {}).items()):
                if found.kind == "link" and entries is not None:
                    where = join(self.root, posixpath.join(folder, name) if folder else name)
                    self.wire.call(c.READLINK, c.path(where), reader(entries, name))
        self.wire.pump()

    def remove(self, files: Sequence[str], folders: Sequence[str]) -> dict[str, str]:
        self.clean = False
        failed: dict[str, str] = {}
        self._each(c.REMOVE, files, failed)
        deepest_first = sorted(folders, key=lambda p: -p.count("/"))
        for _, level in groupby(deepest_first, key=lambda p: p.count("/")):
            self._each(c.RMDIR, list(level), failed)
        self.clean = True
        return failed

    def _each(self, kind: int, paths: Sequence[str], failed: dict[str, str]) -> None:
        for rel in paths:

            def on_reply(reply: c.Reply, rel: str = rel) -> None:
                code, message = reply.status()
                if code not in (c.OK, c.NO_SUCH_FILE):
                    if kind == c.RMDIR and code == c.FAILURE:
                        message = (
                            "folder not empty any more (something was added on the cluster): kept"
                        )
                    failed[rel] = message or c.describe(reply)

            self.wire.call(kind, c.path(join(self.root, rel)), on_reply)
        self.wire.pump()

    def close(self) -> None:
        self.done(self.clean)
