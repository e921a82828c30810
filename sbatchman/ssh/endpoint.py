"""One cluster as both ssh backends see it: its TOML facts and the run's ssh policy, frozen once.

Built once per cluster (backends/open.py) and handed down: `ssh.master.Master` (rsync) and
`ssh.connect.connect` (paramiko) read everything from it and never go back to the config. What
only paramiko needs (`ssh -G`'s answer: keys, known_hosts, proxies) is resolved from it lazily,
so the rsync path, whose own `ssh` reads the config, runs no extra process. A sync keeps those
answers in `SshOptions.answers`, so a cluster's config is asked once however many times (user
check, quiet try, retry with prompts, SFTP fallback) the sync needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sbatchman.config import Cluster, Settings
from sbatchman.configschema import CONNECT_TIMEOUT, STALL_TIMEOUT
from sbatchman.errors import ConnectError
from sbatchman.ssh.cancel import Cancel

Answer = dict[str, list[str]]
"""`ssh -G`'s `key value` lines; keys repeat (identityfile), so each holds a list."""


class Secrets:
    """Passphrases and passwords typed during one run, so each is asked for once.

    It lives inside the run's SshOptions (the CLI builds one per invocation), never in a module
    global, and is never written anywhere: the process forgets it when the run ends. A lock,
    because connections may be opened from worker threads.
    """

    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self._keys: dict[str, object] = {}  # decrypted keys: the passphrase KDF is slow on purpose
        self._lock = threading.Lock()

    def key(self, path: str) -> object | None:
        with self._lock:
            return self._keys.get(path)

    def put_key(self, path: str, key: object) -> None:
        with self._lock:
            self._keys[path] = key

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._items[key] = value

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class Answers:
    """`ssh -G` answers already given during one sync, by the exact argv asked.

    One sync's (push.sync makes it), not the process's: a config edited between two syncs of a
    long-lived caller is read afresh, and a `Match exec` line's slow command runs once. One lock
    per question, so clusters still resolve in parallel while the same question is never asked
    twice at once. Failures are not kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asking: dict[tuple[str, ...], threading.Lock] = {}
        self._known: dict[tuple[str, ...], Answer] = {}

    def get(self, argv: tuple[str, ...], ask: Callable[[], Answer]) -> Answer:
        with self._lock:
            one = self._asking.setdefault(argv, threading.Lock())
        with one:
            if argv not in self._known:
                self._known[argv] = ask()
            return self._known[argv]


@dataclass(frozen=True)
class SshOptions:
    """Run-wide choices that change how ssh may behave, plus the run's typed secrets."""

    batch: bool = False  # never prompt (no terminal, or --batch)
    accept_new_host_keys: bool = False
    connect_timeout: float = CONNECT_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    secrets: Secrets = field(default_factory=Secrets, compare=False, repr=False)
    cancel: Cancel = field(default_factory=Cancel, compare=False, repr=False)  # Ctrl-C
    answers: Answers | None = field(default=None, compare=False, repr=False)  # one sync's


@dataclass(frozen=True)
class Endpoint:
    """A remote cluster's connection facts from the TOML, with the run's ssh policy."""

    name: str  # the cluster's name
    host: str  # alias or host name, as the TOML gives it and `ssh` takes it
    where: str  # the cluster's place in the TOML (`clusters[0]`), for messages
    user: str | None
    port: int | None
    key_path: Path | None
    ssh_config: Path | None  # the cluster's, else the global one; None: ssh's own default
    options: SshOptions

    @classmethod
    def of(cls, cluster: Cluster, settings: Settings, options: SshOptions) -> Endpoint:
        """The one place TOML facts become connection facts: the cluster's ssh_config wins."""
        if cluster.host is None:
            raise ConnectError(f"{cluster.name} is a local cluster; there is nothing to connect to")
        return cls(
            name=cluster.name,
            host=cluster.host,
            where=cluster.where,
            user=cluster.user,
            port=cluster.port,
            key_path=cluster.key_path,
            ssh_config=cluster.ssh_config or settings.ssh_config,
            options=options,
        )

    def with_options(self, options: SshOptions) -> Endpoint:
        """The same cluster under other run choices (the quiet parallel try, no prompts)."""
        return replace(self, options=options)

    @property
    def who(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def key_where(self) -> str:
        return f"{self.where}.key_path"

    @property
    def config_args(self) -> list[str]:
        """The -F option alone: which ssh config file to read (none means OpenSSH's defaults)."""
        return ["-F", str(self.ssh_config)] if self.ssh_config is not None else []

    @property
    def target_args(self) -> list[str]:
        """-p, -l, -i from the TOML: they beat the ssh config, and reach the cluster, not its
        jumps."""
        argv: list[str] = []
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user is not None:
            argv += ["-l", self.user]
        if self.key_path is not None:
            argv += ["-i", str(self.key_path)]
        return argv
