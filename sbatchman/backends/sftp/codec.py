"""SFTP version 3 messages: the numbers, how a request's fields are packed, how a reply reads.

Apart from wire.py (which moves these messages over a channel) so that the byte layout can be
read, and tested, without the pipelining around it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Message types (draft-ietf-secsh-filexfer-02).
INIT, VERSION, OPEN, CLOSE, READ, WRITE = 1, 2, 3, 4, 5, 6
LSTAT, FSTAT, FSETSTAT, SETSTAT, OPENDIR, READDIR = 7, 8, 10, 9, 11, 12
REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = 13, 14, 15, 16, 17, 18, 19, 20
EXTENDED = 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201

# Status codes.
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, OP_UNSUPPORTED = 0, 1, 2, 3, 4, 8

# Open flags and attribute flags.
O_READ, O_WRITE, O_CREAT, O_TRUNC, O_EXCL = 0x01, 0x02, 0x08, 0x10, 0x20
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000

U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
HEAD = struct.Struct(">IBI")  # length, type, request id
_FULL_FLAGS = A_SIZE | A_UIDGID | A_PERMISSIONS | A_ACMODTIME
_FULL_ATTRS = struct.Struct(">IQIIIII")  # flags, size, uid, gid, mode, atime, mtime

_STATUS_WORDS = {
    EOF: "end of file",
    NO_SUCH_FILE: "no such file or folder",
    PERMISSION_DENIED: "permission denied",
    FAILURE: "failed",
    OP_UNSUPPORTED: "not supported by the server",
}


def u32(value: int) -> bytes:
    return U32.pack(value)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def string(value: bytes) -> bytes:
    return U32.pack(len(value)) + value


def path(value: str) -> bytes:
    """Paths go as UTF-8; undecodable local names travel back as the bytes they were."""
    return string(value.encode("utf-8", "surrogateescape"))


def attrs(*, perm: int | None = None, mtime: int | None = None) -> bytes:
    """An ATTRS block with permissions and/or times (atime is set to the mtime, as rsync does)."""
    flags = (A_PERMISSIONS if perm is not None else 0) | (A_ACMODTIME if mtime is not None else 0)
    out = u32(flags)
    if perm is not None:
        out += u32(perm & 0o7777)
    if mtime is not None:
        clamped = min(max(mtime, 0), 0xFFFFFFFF)  # SFTP v3 times are unsigned 32-bit seconds
        out += u32(clamped) + u32(clamped)
    return out


@dataclass(frozen=True)
class Attrs:
    """The fields of an ATTRS block the engine uses; None when the server left one out."""

    size: int | None
    mode: int | None
    mtime: int | None


class Reader:
    """Reads the fields of one reply body in order."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u32(self) -> int:
        (value,) = U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        (value,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(value)

    def bytes(self) -> bytes:
        size = self.u32()
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def text(self) -> str:
        return self.bytes().decode("utf-8", "surrogateescape")

    def attrs(self) -> Attrs:
        flags = self.u32()
        size = self.u64() if flags & A_SIZE else None
        if flags & A_UIDGID:
            self.pos += 8
        mode = self.u32() if flags & A_PERMISSIONS else None
        mtime = None
        if flags & A_ACMODTIME:
            self.pos += 4
            mtime = self.u32()
        if flags & A_EXTENDED:
            for _ in range(self.u32() * 2):
                self.bytes()
        return Attrs(size, mode, mtime)


@dataclass(frozen=True)
class Reply:
    """One server reply: its type and its body after the request id."""

    kind: int
    body: bytes

    def status(self) -> tuple[int, str]:
        """(code, message) of a STATUS reply; a reply of another type counts as OK."""
        if self.kind != STATUS:
            return OK, ""
        reader = Reader(self.body)
        code = reader.u32()
        try:
            message = reader.text()
        except struct.error:  # some servers send only the code
            message = ""
        return code, message or _STATUS_WORDS.get(code, f"error {code}")

    def ok(self) -> bool:
        return self.status()[0] == OK

    def handle(self) -> bytes | None:
        return Reader(self.body).bytes() if self.kind == HANDLE else None

    def names(self) -> list[tuple[str, Attrs]]:
        """The entries of a NAME reply (READDIR, REALPATH, READLINK), longnames dropped.

        Listings are the hot path of an unchanged tree, so the usual attribute layout
        (size, owner, mode, times: what OpenSSH sends) is unpacked in one call.
        """
        if self.kind != NAME:
            return []
        data = self.body
        (count,) = U32.unpack_from(data, 0)
        pos = 4
        out = []
        unpack_u32, unpack_full = U32.unpack_from, _FULL_ATTRS.unpack_from
        for _ in range(count):
            (size,) = unpack_u32(data, pos)
            name = data[pos + 4 : pos + 4 + size].decode("utf-8", "surrogateescape")
            pos += 4 + size
            (size,) = unpack_u32(data, pos)  # longname, unused
            pos += 4 + size
            (flags,) = unpack_u32(data, pos)
            if flags == _FULL_FLAGS:
                _, fsize, _, _, mode, _, mtime = unpack_full(data, pos)
                pos += _FULL_ATTRS.size
                out.append((name, Attrs(fsize, mode, mtime)))
            else:
                reader = Reader(data)
                reader.pos = pos
                out.append((name, reader.attrs()))
                pos = reader.pos
        return out

    def attrs(self) -> Attrs | None:
        return Reader(self.body).attrs() if self.kind == ATTRS else None

    def data(self) -> memoryview | None:
        """A DATA reply's bytes (READ), not copied; None for a STATUS (end of file or an error)."""
        if self.kind != DATA:
            return None
        (size,) = U32.unpack_from(self.body, 0)
        return memoryview(self.body)[4 : 4 + size]


def describe(reply: Reply) -> str:
    """The server's words for a failed reply, for messages a user reads."""
    code, message = reply.status()
    if code == OK:
        return f"unexpected reply type {reply.kind}"
    return message
