"""How sbatchman reaches a cluster with the system's OpenSSH: argv, master connection, failures.

The rsync backend runs the user's own `ssh`, so ~/.ssh/config, agents and ProxyJump work as they
do in a terminal. One master connection per cluster per run (ControlMaster in a private 0700
folder) means one 2FA prompt per cluster, however many sync_dirs it has.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sbatchman.config import Cluster, Settings
from sbatchman.errors import ConnectError


@dataclass(frozen=True)
class SshOptions:
    """Run-wide choices that change how ssh may behave."""

    batch: bool = False  # never prompt (no terminal, or --batch)
    accept_new_host_keys: bool = False
    connect_timeout: float = 15.0
    stall_timeout: float = 120.0


def base_argv(cluster: Cluster, settings: Settings, options: SshOptions) -> list[str]:
    """ssh and its options, without the host: TOML values win over ssh config, as -o/-p do."""
    argv = ["ssh"]
    ssh_config = cluster.ssh_config or settings.ssh_config
    if ssh_config is not None:
        argv += ["-F", str(ssh_config)]
    if cluster.port is not None:
        argv += ["-p", str(cluster.port)]
    if cluster.user is not None:
        argv += ["-l", cluster.user]
    if cluster.key_path is not None:
        argv += ["-i", str(cluster.key_path)]
    # Never trust a host key silently: unknown keys fail unless the user said accept-new.
    checking = "accept-new" if options.accept_new_host_keys else "yes"
    interval = max(1, int(options.stall_timeout // 3))
    argv += [
        "-o", f"StrictHostKeyChecking={checking}",
        "-o", f"ConnectTimeout={max(1, round(options.connect_timeout))}",
        "-o", f"ServerAliveInterval={interval}",
        "-o", "ServerAliveCountMax=3",
    ]  # fmt: skip
    if options.batch:
        argv += ["-o", "BatchMode=yes"]
    return argv


# The first matching pattern in ssh's stderr becomes the one-line cause shown to the user.
_CAUSES = [
    (r"Connection refused", "connection refused"),
    (r"timed out|Connection timed out", "connection timed out"),
    (r"Could not resolve hostname", "unknown host name (check host, or your ~/.ssh/config)"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED", "HOST KEY CHANGED: possible attack; nothing sent"),
    (
        r"No .*host key is known|Host key verification failed",
        "unknown host key; verify it, then rerun with --accept-new-host-keys to store it",
    ),
    (r"Permission denied", "authentication failed (permission denied)"),
    (r"Too many authentication failures", "authentication failed (too many keys offered)"),
    (r"Connection closed|Connection reset", "connection closed by the server"),
]


def cause(stderr: str) -> str:
    """The most telling ssh message, in one line."""
    for pattern, text in _CAUSES:
        if re.search(pattern, stderr):
            return text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "ssh failed with no message"


class Master:
    """A ControlMaster connection kept open for the run, in a folder only this user can enter."""

    def __init__(self, cluster: Cluster, settings: Settings, options: SshOptions) -> None:
        assert cluster.host is not None
        self.host = cluster.host
        self.base = base_argv(cluster, settings, options)
        self.folder = Path(tempfile.mkdtemp(prefix="sbm-"))  # mkdtemp makes it 0700
        self.socket = self.folder / "c"
        self.options = options

    def client_argv(self) -> list[str]:
        """ssh options for commands that ride on the master (never open a second connection)."""
        return [*self.base, "-o", f"ControlPath={self.socket}", "-o", "ControlMaster=no"]

    def open(self) -> None:
        """Authenticate now, in the foreground, so any prompt happens before transfers start."""
        argv = [
            *self.base,
            "-o", f"ControlPath={self.socket}",
            "-o", "ControlMaster=yes",
            "-o", "ControlPersist=600",
            "-f", "-N", self.host,
        ]  # fmt: skip
        # stderr goes to a file: the backgrounded master keeps a pipe open forever.
        with tempfile.TemporaryFile(mode="w+") as err:
            try:
                rc = subprocess.run(
                    argv, stdin=subprocess.DEVNULL if self.options.batch else None,
                    stdout=subprocess.DEVNULL, stderr=err, check=False,
                    timeout=self.options.connect_timeout + 120,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                self.close()
                raise ConnectError("connection timed out") from None
            err.seek(0)
            message = err.read()
        if rc != 0:
            self.close()
            raise ConnectError(cause(message))

    def close(self) -> None:
        if self.socket.exists():
            subprocess.run(
                [*self.base, "-o", f"ControlPath={self.socket}", "-O", "exit", self.host],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                check=False, timeout=30,
            )  # fmt: skip
        for leftover in self.folder.glob("*"):
            leftover.unlink(missing_ok=True)
        if self.folder.exists():
            os.rmdir(self.folder)
