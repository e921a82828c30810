"""A tiny SSH server (paramiko's server API) that asks for a 2FA code or a password.

sshd cannot ask keyboard-interactive questions without PAM, and PAM would need a real
password for the test user, so this test double plays the 2FA cluster. It logs in and, with
`forward=True`, plays a 2FA bastion: it forwards `direct-tcpip` channels (ssh -J / ProxyJump)
to real sshd servers behind it. No shell, no SFTP of its own. Like `sshd.py` it listens on
127.0.0.1 with its own ed25519 host key and writes a known_hosts line for itself; it records
how many questions it asked, what came back, and where it forwarded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from tests.support.sshd import current_user, fingerprint, generate_key

CODE = "246810"
"""The one answer the 2FA question accepts."""


@dataclass
class AuthLog:
    """What the server saw, for assertions (appended from server threads)."""

    questions: int = 0
    answers: list[list[str]] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)
    logged_in: int = 0
    forwarded: list[tuple[str, int]] = field(default_factory=list)


class _Interface(paramiko.ServerInterface):
    def __init__(self, methods: str, user: str, log: AuthLog, forward: bool) -> None:
        self.methods = methods
        self.user = user
        self.log = log
        self.forward = forward
        self.destinations: dict[int, tuple[str, int]] = {}

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        if not self.forward or destination[0] not in ("127.0.0.1", "localhost"):
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.destinations[chanid] = destination
        self.log.forwarded.append(destination)
        return paramiko.OPEN_SUCCEEDED

    def get_allowed_auths(self, username: str) -> str:
        return self.methods

    def check_auth_interactive(
        self, username: str, submethods: str
    ) -> int | paramiko.InteractiveQuery:
        if "keyboard-interactive" not in self.methods:
            return paramiko.AUTH_FAILED
        self.log.questions += 1
        query = paramiko.InteractiveQuery("Two-factor login", "Look at your token.")
        query.add_prompt("Verification code: ", echo=False)
        return query

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        self.log.answers.append(list(responses))
        if list(responses) == [CODE]:
            self.log.logged_in += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        if "password" not in self.methods:
            return paramiko.AUTH_FAILED
        self.log.passwords.append(password)
        if username == self.user and password == CODE:
            self.log.logged_in += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED


@dataclass
class AuthServer:
    """A listening test double; `stop()` closes the listener and every connection."""

    host: str
    port: int
    user: str
    known_hosts: Path
    host_key_fingerprint: str
    log: AuthLog
    _listener: socket.socket
    _transports: list[paramiko.Transport]
    _thread: threading.Thread

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() does not)
        with contextlib.suppress(OSError):
            self._listener.close()
        for transport in list(self._transports):
            transport.close()
        self._thread.join(timeout=5)


def start_auth_server(
    workdir: Path, methods: str = "keyboard-interactive", *, forward: bool = False
) -> AuthServer:
    """Serve logins that need `methods` (comma list, as sshd's AuthenticationMethods words)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key_path = generate_key(workdir / "host_ed25519", comment="host@authserver")
    host_key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    pub = key_path.with_name(key_path.name + ".pub").read_text().split()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = int(listener.getsockname()[1])
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    log = AuthLog()
    user = current_user()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transports.append(transport)
            interface = _Interface(methods, user, log, forward)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                transport.start_server(server=interface)
                threading.Thread(
                    target=_forwarder, args=(transport, interface), daemon=True
                ).start()

    thread = threading.Thread(target=serve, name="authserver", daemon=True)
    thread.start()
    return AuthServer(
        host="127.0.0.1",
        port=port,
        user=user,
        known_hosts=known_hosts,
        host_key_fingerprint=fingerprint(" ".join(pub[:2])),
        log=log,
        _listener=listener,
        _transports=transports,
        _thread=thread,
    )


def _forwarder(transport: paramiko.Transport, interface: _Interface) -> None:
    """Connect each accepted direct-tcpip channel to its destination and copy both ways."""
    while transport.is_active():
        channel = transport.accept(timeout=0.5)
        if channel is None:
            continue
        destination = interface.destinations.pop(channel.get_id(), None)
        if destination is None:
            channel.close()
            continue
        try:
            upstream = socket.create_connection(destination, timeout=10)
        except OSError:
            channel.close()
            continue
        for source, sink in ((channel, upstream), (upstream, channel)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: paramiko.Channel | socket.socket, sink: paramiko.Channel | socket.socket) -> None:
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        sink.shutdown(socket.SHUT_WR) if isinstance(sink, socket.socket) else sink.shutdown_write()


def auth_server_config(server: AuthServer, name: str, path: Path) -> Path:
    """An ssh_config stanza `Host name` reaching `server` with prompts allowed."""
    path.write_text(
        f"Host {name}\n"
        f"    HostName {server.host}\n"
        f"    Port {server.port}\n"
        f"    User {server.user}\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        f"    UserKnownHostsFile {server.known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode no\n"
    )
    return path
