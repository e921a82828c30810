"""Open a verified, authenticated paramiko Transport to a cluster, as OpenSSH would.

`ssh -G` decides host, port, user, keys, known_hosts and proxies (resolve); the host key is
checked against known_hosts before anything about the user is sent (hostkeys); login follows
OpenSSH's order (auth). ProxyJump hops are paramiko Transports of their own, verified and
authenticated the same way, each carrying the next over a `direct-tcpip` channel: every hop
gets the same host-key policy and one-line errors, with no second ssh process in between.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Sequence

import paramiko

from sbatchman.errors import ConnectError, Interrupted
from sbatchman.ssh import hostkeys
from sbatchman.ssh.auth import authenticate
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.resolve import (
    Resolved,
    resolve_cluster,
    resolve_hop,
    split_jump_list,
)

MAX_HOPS = 8
"""A ProxyJump chain longer than this is almost surely a loop in the ssh config."""

Carrier = socket.socket | paramiko.Channel | paramiko.ProxyCommand
"""What a Transport runs over: TCP, a channel through a jump host, or a proxy command."""

# The host key algorithms a known_hosts key type can be negotiated as.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


class ChainedTransport(paramiko.Transport):
    """A Transport that also closes what it rides on: jump-host Transports, a proxy command."""

    def __init__(self, sock: Carrier) -> None:
        super().__init__(sock)
        self.below: list[paramiko.Transport] = []

    def close(self) -> None:
        super().close()
        for hop in reversed(self.below):
            hop.close()
        self.below = []


def connect(endpoint: Endpoint) -> paramiko.Transport:
    """A Transport that is connected, host-key verified and authenticated, or a ConnectError.

    Prompts (passphrase, password, 2FA) happen only when `endpoint.options.batch` is false and
    only on /dev/tty; in batch mode the first thing that needs a person raises AuthError at once.
    The caller owns the Transport and must close() it (that also closes any jump hosts).
    """
    quiet_paramiko()
    return _connect(resolve_cluster(endpoint), endpoint.options, depth=0)


def quiet_paramiko() -> None:
    """Keep paramiko's own log lines (with tracebacks) off stderr; we report one line per problem.

    paramiko logs every failure to the `paramiko` logger, and with no handler configured
    Python prints such records on stderr, under --json too. Only that logger is changed: a
    handler that drops records, and no passing them on to the application's root logger.
    """
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _connect(target: Resolved, options: SshOptions, depth: int) -> ChainedTransport:
    if depth > MAX_HOPS:
        raise ConnectError(f"more than {MAX_HOPS} jump hosts: is ProxyJump looping in your config?")
    made: list[Carrier | paramiko.Transport] = []  # what Ctrl-C must break, innermost last
    with options.cancel.watching(lambda: _break(made)):
        try:
            return _open(target, options, depth, made)
        except ConnectError:
            if options.cancel.cancelled:  # the failure is the cancel itself
                raise Interrupted("interrupted") from None
            raise


def _open(
    target: Resolved, options: SshOptions, depth: int, made: list[Carrier | paramiko.Transport]
) -> ChainedTransport:
    below: ChainedTransport | None = None
    if target.proxy_jump:
        hops = split_jump_list(target.proxy_jump)
        rest = ",".join(hops[:-1]) or None
        hop = resolve_hop(hops[-1], list(target.config_args), rest, options)
        below = _connect(hop, options, depth + 1)
        made.append(below)
        sock: Carrier = _through(below, target, options.connect_timeout)
    elif target.proxy_command:
        sock = _proxy_command(target)
    else:
        sock = _socket(target, options)
    made.append(sock)
    transport: ChainedTransport | None = None
    try:
        transport = ChainedTransport(sock)
        made.append(transport)
        if below is not None:
            transport.below.append(below)
            below = None
        _handshake(transport, target, options)
        authenticate(transport, target, options)
        if target.server_alive_interval > 0:
            transport.set_keepalive(target.server_alive_interval)
        return transport
    except ConnectError as err:
        _close(transport, sock, below)
        if depth > 0:
            raise type(err)(f"jump host {target.name!r}: {err}") from None
        raise
    except BaseException:
        _close(transport, sock, below)
        raise


def _break(made: Sequence[Carrier | paramiko.Transport]) -> None:
    """Make every blocked call of a connection in progress fail now (called on Ctrl-C).

    A TCP socket is shut down rather than closed: that wakes a thread blocked in it at once,
    and the thread that owns it still closes it. A Transport's close() ends its thread and
    every wait on it (banner, key exchange, login, channel open).
    """
    for thing in reversed(made):
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            if isinstance(thing, socket.socket):
                thing.shutdown(socket.SHUT_RDWR)
            else:
                thing.close()


def _close(
    transport: paramiko.Transport | None,
    sock: Carrier,
    below: paramiko.Transport | None,
) -> None:
    if transport is not None:
        transport.close()
    else:
        sock.close()
    if below is not None:
        below.close()


def _socket(target: Resolved, options: SshOptions) -> socket.socket:
    """TCP to the host, each address in turn as ssh does, with Nagle off for small SFTP requests."""
    where = f"{target.hostname}:{target.port}"
    timeout = options.connect_timeout
    family = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(
        target.address_family, socket.AF_UNSPEC
    )
    try:
        addresses = socket.getaddrinfo(target.hostname, target.port, family, socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConnectError(
            f"cannot resolve host name {target.hostname!r} (check host, or your ssh config)"
        ) from None
    last: OSError | None = None
    for fam, kind, proto, _, address in addresses:
        sock = socket.socket(fam, kind, proto)
        sock.settimeout(timeout)
        try:
            with options.cancel.watching(functools.partial(sock.shutdown, socket.SHUT_RDWR)):
                sock.connect(address)
        except OSError as err:
            sock.close()
            last = err
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock
    if isinstance(last, ConnectionRefusedError):
        raise ConnectError(f"{where}: connection refused")
    if isinstance(last, TimeoutError):
        raise ConnectError(f"{where}: connection timed out after {timeout:g}s")
    reason = (last.strerror if last is not None else None) or str(last)
    raise ConnectError(f"{where}: cannot connect: {reason}")


def _through(hop: ChainedTransport, target: Resolved, timeout: float) -> paramiko.Channel:
    """A `direct-tcpip` channel from the jump host to the target: the next hop's socket."""
    where = f"{target.hostname}:{target.port}"
    try:
        return hop.open_channel(
            "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as err:
        hop.close()
        reason = {
            paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED: "forwarding is disabled there",
            paramiko.common.OPEN_FAILED_CONNECT_FAILED: "it could not connect",
        }.get(err.code, err.text)
        raise ConnectError(f"jump host did not forward to {where}: {reason}") from None
    except (paramiko.SSHException, EOFError, OSError) as err:
        hop.close()
        raise ConnectError(f"jump host connection lost while opening {where} ({err})") from None


class _ShellProxy(paramiko.ProxyCommand):
    """ProxyCommand run by the user's shell, as ssh runs it, with stderr kept in a file.

    paramiko's own class splits the line itself (no pipes, no quoting rules of the shell) and
    leaves stderr in a pipe nobody reads, which blocks a chatty proxy (`ssh -v -W ...`).
    """

    def __init__(self, command: str) -> None:  # replaces, not extends, the parent's
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        shell = os.environ.get("SHELL") or "/bin/sh"
        self.cmd = [shell, "-c", "exec " + command]
        self.process = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            bufsize=0,
        )
        self.timeout = None

    def last_error(self) -> str:
        """The proxy's last stderr line, once it has exited (a running one may still talk)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)  # it is usually exiting just now
        if self.process.poll() is None:
            return ""
        self.errors.seek(0)
        lines = [ln.strip() for ln in self.errors.read().decode("utf-8", "replace").splitlines()]
        return next((ln for ln in reversed(lines) if ln), "")

    def close(self) -> None:
        """Idempotent (paramiko closes the socket from two places) and reaps the process."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self.errors.close()


def _proxy_command(target: Resolved) -> _ShellProxy:
    """Start ProxyCommand with ssh's %h %p %r %n tokens filled in."""
    table = {"h": target.hostname, "p": str(target.port), "r": target.user, "n": target.name}
    out, i, text = [], 0, target.proxy_command or ""
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text) and (text[i + 1] in table or text[i + 1] == "%"):
            out.append(table.get(text[i + 1], "%"))
            i += 2
        else:
            out.append(text[i])
            i += 1
    try:
        return _ShellProxy("".join(out))
    except OSError as err:
        raise ConnectError(f"ProxyCommand failed to start: {err}") from None


def _handshake(transport: ChainedTransport, target: Resolved, options: SshOptions) -> None:
    """Key exchange, then the host-key check; no user name or key has been sent yet."""
    where = f"{target.hostname}:{target.port}"
    entries = hostkeys.load([*target.user_known_hosts, *target.global_known_hosts])
    name = target.known_hosts_name
    _allow(transport, target)
    _prefer(transport, hostkeys.known_types(entries, name))
    _prefer_gcm(transport)
    timeout = options.connect_timeout
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = max(timeout, 30.0)
    try:
        transport.start_client(timeout=timeout)
    except paramiko.ssh_exception.IncompatiblePeer as err:
        raise ConnectError(f"{where}: no algorithm in common with the server ({err})") from None
    except (paramiko.SSHException, EOFError, OSError) as err:
        why = _handshake_reason(err, transport)
        raise ConnectError(f"{where}: SSH handshake failed: {why}") from None
    try:  # start_client returns quietly when its timeout runs out: no key means no handshake
        key = transport.get_remote_server_key()
    except paramiko.SSHException:
        raise ConnectError(
            f"{where}: no SSH handshake within {timeout:g}s (not an SSH server, or too slow)"
        ) from None
    if target.check_host_ip and isinstance(transport.sock, socket.socket):
        ip = transport.sock.getpeername()[0]
        hostkeys.check_ip(
            entries, ip if target.port == 22 else f"[{ip}]:{target.port}", key.asbytes()
        )
    store = target.user_known_hosts[0] if target.user_known_hosts else None
    hostkeys.verify(
        entries,
        name,
        key.asbytes(),
        accept_new=options.accept_new_host_keys,
        store=store,
        hash_names=target.hash_known_hosts,
        bare=target.known_hosts_bare,
    )


def _handshake_reason(err: BaseException, transport: paramiko.Transport) -> str:
    sock = transport.sock
    if isinstance(sock, _ShellProxy):
        said = sock.last_error()
        if said:
            return f"ProxyCommand said: {said}"
    text = str(err) or type(err).__name__
    if "banner" in text.lower():  # paramiko keeps the real cause as the exception's context
        if isinstance(err.__context__, TimeoutError):
            return "no SSH banner in time (not an SSH server, or too slow)"
        return "the server closed the connection or is not an SSH server"
    return text


def _prefer_gcm(transport: paramiko.Transport) -> None:
    """AES-GCM first: in paramiko it moves big files ~30% faster than AES-CTR with HMAC.

    Every OpenSSH server since 6.2 offers it; others still negotiate from the rest of the list.
    """
    options = transport.get_security_options()
    current = list(options.ciphers)
    first = [c for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") if c in current]
    options.ciphers = tuple(first + [c for c in current if c not in first])


def _allow(transport: paramiko.Transport, target: Resolved) -> None:
    """Only the host key algorithms ssh would accept here (HostKeyAlgorithms, or its default),
    so a server never gets by with a key type the user's ssh refuses."""
    if not target.host_key_algorithms:
        return
    options = transport.get_security_options()
    allowed = [a for a in options.key_types if a in target.host_key_algorithms]
    if not allowed:
        raise ConnectError(
            f"{target.hostname}:{target.port}: none of the host key algorithms your ssh config"
            f" allows ({','.join(target.host_key_algorithms)}) is one the sftp backend supports;"
            " use -b rsync for this cluster"
        )
    options.key_types = tuple(allowed)


def _prefer(transport: paramiko.Transport, known: Sequence[str]) -> None:
    """Ask for a host key type already in known_hosts first, as OpenSSH does.

    Otherwise a host known by its ED25519 key could present ECDSA and look unknown.
    """
    if not known:
        return
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [a for t in known for a in _ALGORITHMS.get(t, (t,)) if a in current]
    options.key_types = tuple(first + [a for a in current if a not in first])
