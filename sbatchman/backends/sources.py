"""Read a local file exactly as the folder walk saw it, or say how it changed meanwhile.

A file rewritten, truncated or appended to while it is being sent would land as a mix of old and
new bytes under the old mtime (the cluster once got 28 MB of a 200 MB file that shrank to 0, and
the push said ok). So a file is sent only if its size and mtime are the walk's when it is opened
and still are once exactly that many bytes were read; otherwise `Changed` fails that file and
its temporary is removed. A file that grew counts as changed too: its end would be missing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sbatchman.selection.walk import Entry

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP, errno.EXDEV}


class Changed(Exception):
    """The file is not the one the walk saw; str() is the sentence to report for it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"changed while being sent ({why}); the cluster keeps what it had")
        self.why = why


class Vanished(Changed):
    """The file was deleted after the walk: a note, not a failure (rsync's exit 24 is a warning).

    Nothing of it is on the cluster that was not there before, and nothing was lost: a file
    deleted while a sync runs is one the user no longer wants sent.
    """

    def __init__(self) -> None:
        Exception.__init__(self, "vanished before it was sent")
        self.why = "vanished"


class StillBeingWritten(Changed):
    """Fetching: the cluster's file changed while it was read, most likely a job still writing
    it. A warning, not a failure: the local copy stays as it was (never shown as up to date),
    and the next fetch brings the final bytes."""

    def __init__(self, why: str) -> None:
        Exception.__init__(
            self,
            f"still being written on the cluster ({why}); kept what was here, the next fetch"
            " brings it",
        )
        self.why = why


def vanished_note(path: str) -> str:
    """The one sentence every backend reports for a file deleted after the walk."""
    return f"{path}: {Vanished()}"


def _differs(st: os.stat_result, entry: Entry) -> str:
    """How `st` differs from what the walk saw ('' when it does not)."""
    if not stat.S_ISREG(st.st_mode):
        return "it is no longer a regular file"
    if st.st_size != entry.size:
        verb = "grew" if st.st_size > entry.size else "shrank"
        return f"it {verb} from {entry.size} to {st.st_size} bytes"
    if st.st_mtime_ns != entry.mtime_ns:
        return "its modification time changed"
    return ""


class Source:
    """One local file open for sending; `read` never goes past the size the walk saw."""

    def __init__(self, root: Path, entry: Entry) -> None:
        try:
            self.fd = os.open(root / entry.path, _OPEN_FLAGS)
        except OSError as err:
            if err.errno == errno.ELOOP:  # O_NOFOLLOW met a link: never read through it
                raise Changed("it is now a link") from None
            if err.errno == errno.ENOENT:
                raise Vanished from None
            raise
        self.entry = entry
        self.offset = 0
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        why = _differs(os.fstat(self.fd), self.entry)
        if why:
            raise Changed(why)

    def read(self, size: int) -> bytes:
        """The next bytes (at most `size`); b"" at the walk's size, once the file is checked
        to be unchanged. Raises Changed, or OSError when the file cannot be read."""
        want = min(size, self.entry.size - self.offset)
        if want <= 0:
            self._check()
            return b""
        data = os.read(self.fd, want)
        if not data:  # shorter than it was: say by how much
            self._check()
            raise Changed(f"it shrank from {self.entry.size} bytes while being read")
        self.offset += len(data)
        return data

    def copy_to(self, out: int) -> None:
        """Copy the whole file into the open file `out` (in the kernel where it can)."""
        size = self.entry.size
        while self.offset < size:
            try:
                sent = os.sendfile(out, self.fd, self.offset, size - self.offset)
            except OSError as err:
                if err.errno not in _NO_SENDFILE or self.offset:
                    raise
                break
            if not sent:
                break
            self.offset += sent
        os.lseek(self.fd, self.offset, os.SEEK_SET)
        while True:
            data = self.read(1 << 20)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def copy_file(root: Path, entry: Entry, part: Path) -> None:
    """Write the file `entry` (under `root`) to the new file `part`, its mode and mtime
    included; raises Changed when the file is not the walked one, before or while copying."""
    source = Source(root, entry)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        out = os.open(part, flags, 0o600)
        try:
            source.copy_to(out)
            os.fchmod(out, entry.mode)
            os.utime(out, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(out)
    finally:
        source.close()
