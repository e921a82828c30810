"""Log in on an open paramiko Transport in OpenSSH's order: agent, key files, 2FA, password.

Prompts go only to /dev/tty and only when the run may prompt; otherwise the first thing that
would need a person ends the attempt with an AuthError naming it, so a batch run never hangs and
the caller can retry the cluster interactively. Passphrases and passwords are kept in the run's
Secrets, so each is typed once per run however many connections need it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paramiko

from sbatchman.errors import AuthError, ConnectError
from sbatchman.ssh import terminal
from sbatchman.ssh.endpoint import SshOptions
from sbatchman.ssh.resolve import Resolved

Handler = Callable[[str, str, list[tuple[str, bool]]], list[str]]
"""paramiko's keyboard-interactive callback: (title, instructions, [(prompt, echo)]) → answers."""

INTERACTIVE_AUTH_TIMEOUT = 600.0
"""How long a person may take to answer a 2FA prompt before the attempt is abandoned."""


def authenticate(transport: paramiko.Transport, target: Resolved, options: SshOptions) -> None:
    """Authenticate or raise ConnectError/AuthError; never returns half-authenticated."""
    _Login(transport, target, options).run()


class _Login:
    """One login attempt: the methods the server still allows, and what a person could give."""

    def __init__(self, transport: paramiko.Transport, target: Resolved, options: SshOptions):
        self.transport = transport
        self.target = target
        self.options = options
        self.batch = options.batch or target.batch_mode
        self.secrets = options.secrets
        self.needs: list[str] = []  # what a prompt could have supplied, for the batch message
        self.notes: list[str] = []  # why a key the user named could not be offered
        self.tried: list[str] = []
        self.allowed: list[str] = []
        self.who = f"{target.user}@{target.hostname}"

    def run(self) -> None:
        try:
            self.transport.auth_none(self.target.user)
            return  # a server that lets anyone in
        except paramiko.BadAuthenticationType as err:
            self.allowed = list(err.allowed_types)
        except paramiko.AuthenticationException:
            self.allowed = list(self.target.auth_order)
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise ConnectError(f"{self.who}: connection lost before login ({err})") from None
        methods = {
            "publickey": self.publickey,
            "keyboard-interactive": self.keyboard_interactive,
            "password": self.password,
        }
        progress = True
        while progress and not self.transport.is_authenticated():
            progress = False
            for method in self.target.auth_order:
                if method in self.allowed and method not in self.tried:
                    self.tried.append(method)
                    methods[method]()
                    progress = True
                    break
        if not self.transport.is_authenticated():
            raise self.failure()

    def step(self, result: Sequence[str]) -> None:
        """After a method succeeded: nothing left means logged in, else the next factor's list."""
        if result and not self.transport.is_authenticated():
            self.allowed = list(result)
            self.tried = []  # a second factor may reuse a method (publickey,publickey)

    def failure(self) -> ConnectError:
        error = self._failure()
        if self.notes:
            return type(error)(f"{error}; {'; '.join(self.notes)}")
        return error

    def _failure(self) -> ConnectError:
        allowed = ",".join(self.allowed) or "none"
        if self.needs:
            why = (
                "BatchMode is set in your ssh config"
                if self.target.batch_mode and not self.options.batch
                else "--batch or no terminal"
            )
            hint = "run in a terminal without --batch"
            if any(need.startswith("a passphrase") for need in self.needs):
                hint += ", or load the key into ssh-agent"
            return AuthError(
                f"{self.who} needs {' or '.join(self.needs)} but running in batch mode ({why});"
                f" {hint}"
            )
        usable = [m for m in self.allowed if m in self.target.auth_order]
        if not usable:
            return ConnectError(
                f"{self.who}: authentication failed: the server accepts only {allowed},"
                " which your ssh config disables or sbatchman does not support"
            )
        return ConnectError(f"{self.who}: authentication failed (permission denied; {allowed})")

    # -- publickey -------------------------------------------------------------------------

    def publickey(self) -> None:
        key_path = self.target.key_path
        if key_path is not None:
            try:  # ssh leaves out a -i file it cannot stat, with only a warning
                os.stat(key_path)
            except OSError as err:
                self.unusable(key_path, err)
        offered: set[bytes] = set()
        with _agent(self.target) as agent_keys:
            wanted = {b for b in (_public_blob(p) for p in self.target.identity_files) if b}
            for key in agent_keys:
                if self.target.identities_only and key.asbytes() not in wanted:
                    continue
                offered.add(key.asbytes())
                if self.try_key(key):
                    return
        for path in self.target.identity_files:
            if _public_blob(path) in offered:
                continue
            loaded = self.load_key(path)
            if loaded is not None and loaded.asbytes() not in offered:
                offered.add(loaded.asbytes())
                if self.try_key(loaded):
                    return

    def unusable(self, path: Path, err: Exception) -> None:
        """Note why the cluster's key_path is no use; other files (ssh's default list of
        ~/.ssh/id_* among them) are skipped silently, as ssh does."""
        key_path = self.target.key_path
        if key_path is None or os.path.abspath(path) != os.path.abspath(key_path):
            return
        if isinstance(err, FileNotFoundError):
            why = "does not exist"
        elif isinstance(err, OSError):
            why = f"cannot be read ({err.strerror or err})"
        else:
            why = f"is not a private key sbatchman can use ({err})"
        note = f"key_path {path} {why} ({self.target.key_where})"
        if note not in self.notes:
            self.notes.append(note)

    def try_key(self, key: paramiko.PKey) -> bool:
        try:
            self.step(self.transport.auth_publickey(self.target.user, key))
        except paramiko.BadAuthenticationType as err:
            self.allowed = list(err.allowed_types)
            return True  # stop offering keys: the server no longer takes any
        except paramiko.AuthenticationException:
            return False
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise ConnectError(f"{self.who}: connection lost during login ({err})") from None
        return True

    def load_key(self, path: Path) -> paramiko.PKey | None:
        """The private key at `path`; asks for its passphrase once per run (None: unusable)."""
        try:
            return _load_private_key(path, None)
        except _Encrypted:
            pass
        except (OSError, ValueError, paramiko.SSHException) as err:
            self.unusable(path, err)
            return None  # missing, unreadable or a type paramiko cannot use: ssh skips it too
        cache_key = f"passphrase:{path.resolve()}"
        unlocked = self.secrets.key(cache_key)
        if isinstance(unlocked, paramiko.PKey):
            return unlocked
        need = f"a passphrase for key {path}"
        for attempt in range(3):
            prompt = f"Enter passphrase for key '{path}': "
            again = f"Bad passphrase, try again for {path}: "
            answer = self.ask(prompt if attempt == 0 else again, need)
            if not answer:
                return None  # an empty answer skips the key, as in ssh
            try:
                key = _load_private_key(path, answer)
            except (_Encrypted, ValueError, paramiko.SSHException):
                continue
            self.secrets.put_key(cache_key, key)
            return key
        return None

    # -- keyboard-interactive and password -------------------------------------------------

    def keyboard_interactive(self) -> None:
        need = "a keyboard-interactive (2FA) answer"
        if self.batch or not terminal.available():  # a blank answer would still count as a failure
            self.needs.append(need)
            return

        def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            if prompts and (title or instructions):
                terminal.write("\n".join(t for t in (title, instructions) if t) + "\n")
            return [self.ask(text, need, echo=echo) for text, echo in prompts]

        saved = self.transport.auth_timeout
        self.transport.auth_timeout = INTERACTIVE_AUTH_TIMEOUT  # a person is typing a code
        try:
            # paramiko calls the handler on its own thread; if Ctrl-C lands here meanwhile,
            # that thread's prompt cannot restore the terminal, so this thread does.
            with terminal.restored_on_interrupt():
                self.interactive_rounds(handler)
        finally:
            self.transport.auth_timeout = saved

    def interactive_rounds(self, handler: Handler) -> None:
        for _ in range(self.target.password_prompts):
            try:
                self.step(self.transport.auth_interactive(self.target.user, handler))
                return
            except paramiko.BadAuthenticationType as err:
                self.allowed = list(err.allowed_types)
                return
            except paramiko.AuthenticationException:
                if self.needs:  # the handler could not ask after all
                    return
                terminal.write("Permission denied, please try again.\n")
            except (paramiko.SSHException, EOFError, OSError) as err:
                raise ConnectError(f"{self.who}: connection lost during login ({err})") from None

    def password(self) -> None:
        # The same user@host:port may be two machines (HostKeyAlias, ProxyJump/Command
        # routes): a password is only reused where the verified host and the route agree.
        target = self.target
        route = f"{target.known_hosts_name}|{target.proxy_jump}|{target.proxy_command}"
        cache_key = f"password:{self.who}:{target.port}:{route}"
        need = "a password"
        cached = self.secrets.get(cache_key)
        for attempt in range(self.target.password_prompts + (cached is not None)):
            if cached is not None and attempt == 0:
                answer = cached
            else:
                answer = self.ask(f"{self.who}'s password: ", need)
                if not answer and self.needs:
                    return
            try:
                self.step(self.transport.auth_password(self.target.user, answer))
            except paramiko.BadAuthenticationType as err:
                self.allowed = list(err.allowed_types)
                return
            except paramiko.AuthenticationException:
                self.secrets.forget(cache_key)
                if attempt or cached is None:
                    terminal.write("Permission denied, please try again.\n")
                continue
            except (paramiko.SSHException, EOFError, OSError) as err:
                raise ConnectError(f"{self.who}: connection lost during login ({err})") from None
            self.secrets.put(cache_key, answer)
            return

    def ask(self, prompt: str, need: str, *, echo: bool = False) -> str:
        """A line typed on /dev/tty, or "" after noting `need` when nobody may be asked."""
        if self.batch:
            if need not in self.needs:
                self.needs.append(need)
            return ""
        try:
            return terminal.ask(prompt, echo=echo)
        except terminal.NoTerminal:
            if need not in self.needs:
                self.needs.append(need)
            return ""


# -- keys and agent ------------------------------------------------------------------------


class _Encrypted(Exception):
    """The key file needs a passphrase (or the one given is wrong)."""


def _load_private_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """Load a key file, raising _Encrypted when it needs a (different) passphrase.

    The key type is read from the file's clear-text header, so the (deliberately slow)
    passphrase KDF runs once per load; paramiko 5's PKey.from_path would run it twice and
    reports a missing passphrase as a TypeError.
    """
    key_class = _key_class(path.read_bytes())
    try:
        key = key_class.from_private_key_file(str(path), password=passphrase)
    except paramiko.PasswordRequiredException:
        raise _Encrypted(str(path)) from None
    except (paramiko.SSHException, ValueError):
        if passphrase is not None:
            raise _Encrypted(str(path)) from None  # wrong passphrase: the checks fail
        raise
    cert = path.with_name(path.name + "-cert.pub")
    if cert.is_file():
        with contextlib.suppress(ValueError, paramiko.SSHException, OSError):
            key.load_certificate(str(cert))
    return key


def _key_class(data: bytes) -> type[paramiko.PKey]:
    """paramiko's class for a private key file, from its header (ValueError: not one we load)."""
    text = data.decode("ascii", "replace")
    if "BEGIN OPENSSH PRIVATE KEY" in text:
        body = "".join(ln for ln in text.splitlines() if ln and not ln.startswith("-----"))
        keytype = _openssh_key_type(base64.b64decode(body + "=" * (-len(body) % 4)))
    elif "BEGIN RSA PRIVATE KEY" in text:
        keytype = "ssh-rsa"
    elif "BEGIN EC PRIVATE KEY" in text:
        keytype = "ecdsa-sha2-nistp256"
    else:
        raise ValueError("not an OpenSSH/PEM RSA, ECDSA or Ed25519 private key")
    if keytype == "ssh-ed25519":
        return paramiko.Ed25519Key
    if keytype.startswith("ecdsa-sha2-"):
        return paramiko.ECDSAKey
    if keytype == "ssh-rsa":
        return paramiko.RSAKey
    raise ValueError(f"unsupported key type {keytype}")


def _openssh_key_type(blob: bytes) -> str:
    """The public key type in an `openssh-key-v1` container (stored unencrypted)."""
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        raise ValueError("bad openssh-key-v1 header")
    offset = len(magic)
    for _ in range(3):  # cipher name, KDF name, KDF options
        offset += 4 + int.from_bytes(blob[offset : offset + 4], "big")
    offset += 4  # number of keys
    public = blob[offset + 4 : offset + 4 + int.from_bytes(blob[offset : offset + 4], "big")]
    size = int.from_bytes(public[:4], "big")
    return public[4 : 4 + size].decode("ascii", "replace")


def _public_blob(path: Path) -> bytes | None:
    """The key blob from `path.pub`, without touching the (maybe encrypted) private key."""
    try:
        fields = path.with_name(path.name + ".pub").read_text().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, binascii.Error, ValueError):
        return None


@contextlib.contextmanager
def _agent(target: Resolved) -> Iterator[Sequence[paramiko.PKey]]:
    """The agent's keys, honouring IdentityAgent (none, a socket path, or $SSH_AUTH_SOCK)."""
    if target.identity_agent is not None and target.identity_agent.lower() == "none":
        yield ()
        return
    path = target.identity_agent or os.environ.get("SSH_AUTH_SOCK")
    if not path:
        yield ()
        return
    # paramiko.Agent() reads $SSH_AUTH_SOCK only; IdentityAgent may name another socket, and
    # AgentSSH._connect is how Agent itself attaches one (typed Any: it is not in the stubs).
    agent: Any = paramiko.agent.AgentSSH()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        agent._connect(conn)
    except (OSError, paramiko.SSHException):
        conn.close()
        yield ()  # a dangling socket path: ssh carries on without an agent too
        return
    try:
        keys: Sequence[paramiko.PKey] = agent.get_keys()
        yield keys
    finally:
        agent._close()
