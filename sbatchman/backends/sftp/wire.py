"""SFTP version 3 on one paramiko channel, with many requests in flight and replies by callback.

paramiko's SFTPClient sends one SSH packet per request and waits for each reply, which costs a
round trip per operation: on a 20 ms link that is what made the old uploader 200 times slower
than rsync. Here requests are queued, sent together (many small requests share one SSH packet)
and answered by callbacks, so one thread keeps hundreds of operations moving. paramiko still
does all of SSH (keys, ciphers, channels); this module only frames SFTP messages.

Requests sent on one channel are processed by OpenSSH's sftp-server in order, but the engine
never relies on that for correctness: a request that needs another's result is sent only after
that result came back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import cast

import paramiko

from sbatchman.backends.sftp.codec import (
    EXTENDED,
    EXTENDED_REPLY,
    HEAD,
    INIT,
    U32,
    VERSION,
    Reader,
    Reply,
    string,
    u32,
)
from sbatchman.errors import TransferError

Callback = Callable[[Reply], None]
_FOREGROUND, _BACKGROUND, _CLEANUP = 0, 1, 2


class Wire:
    """One SFTP session on its own channel, used by one thread at a time.

    `call` queues a request; `pump` sends everything queued and runs callbacks as replies
    arrive, until no foreground request is left. Background requests (closing handles,
    cleaning up a temporary file) are answered later without holding anyone up.
    """

    def __init__(self, channel: paramiko.Channel, stall_timeout: float) -> None:
        self.channel = channel
        self.stall_timeout = stall_timeout
        self.extensions: dict[str, bytes] = {}
        self.limits: tuple[int, int, int, int] | None = None  # packet, read, write, handles
        self._next_id = 1
        self._out: list[bytes] = []
        self._waiting: dict[int, tuple[Callback | None, int]] = {}
        self._foreground = 0
        self._cleanup = 0
        self._inbuf = bytearray()
        channel.settimeout(stall_timeout)

    @classmethod
    def open(
        cls, transport: paramiko.Transport, stall_timeout: float, window: int = 8 << 20
    ) -> Wire:
        """A new channel running the sftp subsystem, with a large receive window so replies
        never stall the server while this thread is busy sending."""
        try:
            channel = transport.open_session(window_size=window, timeout=stall_timeout)
            channel.invoke_subsystem("sftp")
        except (paramiko.SSHException, OSError) as err:
            raise TransferError(f"cannot start SFTP on the cluster: {err}") from None
        wire = cls(channel, stall_timeout)
        wire.handshake()
        return wire

    def handshake(self) -> None:
        """INIT/VERSION; the server's extension list says which shortcuts it offers."""
        self._send(U32.pack(5) + bytes([INIT]) + u32(3))
        try:
            kind, body = self._read_packet()
            if kind != VERSION:
                raise ValueError(kind)
            reader = Reader(body)
            reader.u32()
            while reader.pos < len(body):
                name = reader.text()
                self.extensions[name] = reader.bytes()
        except (ValueError, struct.error):
            raise TransferError(
                "the cluster's SFTP server sent garbage instead of its version (does a shell"
                " startup file on the cluster print text?)"
            ) from None
        if "limits@openssh.com" in self.extensions:
            # Answered along with whatever is sent next: no round trip of its own.
            self.call(EXTENDED, string(b"limits@openssh.com"), self._on_limits, background=True)

    def _on_limits(self, reply: Reply) -> None:
        if reply.kind == EXTENDED_REPLY:
            reader = Reader(reply.body)
            self.limits = (reader.u64(), reader.u64(), reader.u64(), reader.u64())

    def call(
        self,
        kind: int,
        payload: bytes,
        callback: Callback | None,
        *,
        background: bool = False,
        cleanup: bool = False,
    ) -> None:
        """Queue one request; `callback` gets its reply (None: the reply is not looked at).

        A background request does not hold up `pump`; a cleanup request (removing a
        temporary file) is background too, but `settle` waits for it before the channel
        is lent out again or closed, so it is never dropped by a closing connection.
        """
        rid = self._next_id
        self._next_id = (rid + 1) & 0xFFFFFFFF or 1
        self._out.append(HEAD.pack(len(payload) + 5, kind, rid))
        self._out.append(payload)
        mode = _CLEANUP if cleanup else _BACKGROUND if background else _FOREGROUND
        self._waiting[rid] = (callback, mode)
        if mode == _FOREGROUND:
            self._foreground += 1
        elif mode == _CLEANUP:
            self._cleanup += 1

    def pump(self, more: Callable[[], bool] | None = None) -> None:
        """Send and dispatch until nothing foreground is outstanding and `more` is satisfied.

        `more` is called before every send: it starts new work while there is room and
        returns whether its work is unfinished (waiting to start, or waiting for replies).
        """
        while True:
            unfinished = more() if more is not None else False
            self.flush()
            if not self._foreground and not unfinished:
                return
            if not self._waiting:
                raise RuntimeError("SFTP engine bug: work is unfinished but nothing is in flight")
            self._receive()

    def settle(self) -> None:
        """Wait for the cleanup requests still in flight (usually none).

        Other background replies (a folder's last read-ahead, a closed handle) are left to
        arrive while the channel does its next job: waiting for them would cost a round trip
        at the end of every push.
        """
        self.flush()
        while self._cleanup:
            self._receive()
            self.flush()

    def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._send(data)

    def close(self) -> None:
        self.channel.close()

    # ------------------------------------------------------------------------- internals

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                # paramiko slices and copies whatever it gets; a memoryview keeps the slices
                # of a large batch from copying the whole rest each time.
                sent = self.channel.send(cast(bytes, view))
                if sent <= 0:
                    raise TransferError("the SFTP channel was closed by the cluster")
                view = view[sent:]
        except TimeoutError:
            raise TransferError(
                f"stalled: the cluster accepted no data for {self.stall_timeout:.0f} s"
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise TransferError(f"connection to the cluster lost: {err or 'closed'}") from None

    def _recv(self) -> None:
        try:
            data = self.channel.recv(1 << 20)
        except TimeoutError:
            raise TransferError(
                f"stalled: no reply from the cluster for {self.stall_timeout:.0f} s"
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise TransferError(f"connection to the cluster lost: {err or 'closed'}") from None
        if not data:
            raise TransferError("the cluster closed the SFTP session")
        self._inbuf += data

    def _read_packet(self) -> tuple[int, bytes]:
        """One whole packet, for the handshake (before any request id exists)."""
        while len(self._inbuf) < 4:
            self._recv()
        (size,) = U32.unpack_from(self._inbuf)
        if not 5 <= size <= 256 << 10:
            raise ValueError(size)
        while len(self._inbuf) < 4 + size:
            self._recv()
        packet = bytes(self._inbuf[4 : 4 + size])
        del self._inbuf[: 4 + size]
        return packet[0], packet[1:]

    def _receive(self) -> None:
        """Read what has arrived (waiting for at least one byte) and dispatch whole replies."""
        self._recv()
        buf = self._inbuf
        pos, end = 0, len(buf)
        replies: list[tuple[int, int, bytes]] = []
        while end - pos >= 9:
            size, kind, rid = HEAD.unpack_from(buf, pos)
            if size > 64 << 20:
                raise TransferError("the cluster's SFTP server sent a malformed reply")
            if end - pos < 4 + size:
                break
            replies.append((rid, kind, bytes(buf[pos + 9 : pos + 4 + size])))
            pos += 4 + size
        del buf[:pos]
        for rid, kind, body in replies:
            entry = self._waiting.pop(rid, None)
            if entry is None:
                continue
            callback, mode = entry
            if mode == _FOREGROUND:
                self._foreground -= 1
            elif mode == _CLEANUP:
                self._cleanup -= 1
            if callback is not None:
                try:
                    callback(Reply(kind, body))
                except (struct.error, IndexError) as err:  # a reply shorter than its type says
                    raise TransferError(
                        f"the cluster's SFTP server sent a malformed reply ({err})"
                    ) from None
