"""Loopback network misbehaviour for tests: added latency, silent servers, refused ports.

There is no netem (tc qdisc) in containers or CI, so `DelayProxy` fakes a long link in
user space: a TCP relay that holds every chunk for `delay_s` in each direction. It
timestamps chunks when they arrive and releases each at arrival + delay from a separate
writer task, so the delay is pipelined: round trips grow by 2 * delay while bulk
throughput stays what loopback can do (a relay that slept per chunk would cap throughput
at chunk_size / delay and turn a latency test into a bandwidth test).

What it does not model: the TCP handshake itself is not delayed (the proxy accepts at
once and then dials the target), and there is no loss, jitter or bandwidth limit.

`SilentServer` accepts TCP connections and never says a word (sshd hung before its
banner); `refused_port()` gives a port where connecting fails fast with ECONNREFUSED.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import selectors
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

_CHUNK = 256 * 1024
_QUEUE_CHUNKS = 512  # per direction; bounds buffering so a stalled reader backpressures
_EOF = b""


class DelayProxy:
    """TCP relay 127.0.0.1:<port> → target adding `delay_s` one-way in each direction.

    Runs an asyncio loop in a daemon thread, so synchronous tests and subprocesses can
    use it. Use as a context manager, or call `close()`.
    """

    def __init__(
        self, target_host: str, target_port: int, delay_s: float = 0.010, *, port: int = 0
    ) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.target_host = target_host
        self.target_port = target_port
        self.delay_s = delay_s
        self.host = "127.0.0.1"
        self.port = port  # 0: any free one; a given one brings a closed proxy back
        self.connections = 0
        """How many client connections were accepted (lets tests prove traffic went here)."""
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"DelayProxy->{target_port}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._start())
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"DelayProxy({self.host}:{self.port} -> {self.target_host}:{self.target_port}, "
            f"delay_s={self.delay_s})"
        )

    def close(self) -> None:
        """Stop listening, drop all relayed connections, stop the loop thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._call(self._shutdown(), timeout=5)
        self._stop_loop()

    # -- loop side ---------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 10) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=_CHUNK, backlog=256
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(c_writer)
        self.connections += 1
        _nodelay(c_writer)
        s_writer: asyncio.StreamWriter | None = None
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection(
                    self.target_host, self.target_port, limit=_CHUNK
                )
            except OSError:
                return  # target down: the client sees its connection closed, like a dead link
            self._writers.add(s_writer)
            _nodelay(s_writer)
            results = await asyncio.gather(
                self._pump(c_reader, s_writer),
                self._pump(s_reader, c_writer),
                return_exceptions=True,
            )
            if any(isinstance(r, BaseException) for r in results):
                c_writer.transport.abort()  # one side broke: reset the other as TCP would
                s_writer.transport.abort()
        except asyncio.CancelledError:
            pass  # close(): asyncio would log a cancelled connection handler as an error
        finally:
            for end in (c_writer, s_writer):
                if end is not None:
                    self._writers.discard(end)
                    end.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one direction: a reader stamps chunks, a writer releases them on time."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)

        async def read_side() -> None:
            try:
                while True:
                    data = await reader.read(_CHUNK)
                    await queue.put((loop.time() + self.delay_s, data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                await queue.put((loop.time() + self.delay_s, _EOF))
                raise

        async def write_side() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()  # half-close: forward FIN, keep the other way open
                    return
                writer.write(data)
                await writer.drain()

        reader_task = asyncio.ensure_future(read_side())
        try:
            await write_side()
        finally:
            if not reader_task.done():
                reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (reads and discards).

    Models an sshd that accepts but hangs before its banner, so tests can check that
    connect/banner timeouts fire instead of hanging forever.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        """Connections accepted so far."""
        self._conns: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="SilentServer", daemon=True)
        self._thread.start()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    return
                if sock is self._listener:
                    with contextlib.suppress(BlockingIOError, OSError):
                        conn, _addr = self._listener.accept()
                        conn.setblocking(False)
                        self._conns.append(conn)
                        self._selector.register(conn, selectors.EVENT_READ)
                        self.accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # peer gone: forget it
                    self._selector.unregister(sock)
                    self._conns.remove(sock)
                    sock.close()

    def close(self) -> None:
        """Stop the thread and close the listener and every accepted connection."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for sock in [*self._conns, self._listener, self._wake_r, self._wake_w]:
            with contextlib.suppress(OSError):
                sock.close()
        self._selector.close()


_reserved: list[socket.socket] = []


@atexit.register
def _release_reserved() -> None:
    for sock in _reserved:
        sock.close()


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on `host` where connections are refused (nothing listens there).

    The port stays bound — without listen() — for the rest of the process, so no other
    process can start listening on it meanwhile; connecting gets an immediate RST.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _reserved.append(sock)
    return int(sock.getsockname()[1])
