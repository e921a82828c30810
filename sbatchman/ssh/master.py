"""How sbatchman reaches a cluster with the system's OpenSSH: argv, master connection, failures.

The rsync backend runs the user's own `ssh`, so ~/.ssh/config, agents and ProxyJump work as they
do in a terminal. One master connection per cluster per run (ControlMaster in a private 0700
folder) means one 2FA prompt per cluster, however many sync_dirs it has.
"""

from __future__ import annotations

import math
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from sbatchman.errors import AuthError, ConnectError, Interrupted
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.words import (
    DENIED,
    SERVER_KEY,
    batch_needs,
    cause,
    key_needs_passphrase,
    needs_probe,
)


def policy_argv(options: SshOptions) -> list[str]:
    """The -o options every connection gets, jump hosts included: host-key policy and timeouts."""
    # Never trust a host key silently: unknown keys fail unless the user said accept-new.
    checking = "accept-new" if options.accept_new_host_keys else "yes"
    # ssh gives up after 4 silent intervals, well after rsync's own --timeout of
    # stall_timeout: the stall is then reported as one ("no data moved"), not as ssh dying.
    interval = max(1, math.ceil((options.stall_timeout + 2) / 3))
    argv = [
        "-o", f"StrictHostKeyChecking={checking}",
        "-o", "NoHostAuthenticationForLocalhost=no",  # a tunnel to localhost is checked too
        "-o", f"ConnectTimeout={max(1, round(options.connect_timeout))}",
        "-o", f"ServerAliveInterval={interval}",
        "-o", "ServerAliveCountMax=4",
    ]  # fmt: skip
    if options.batch:
        argv += ["-o", "BatchMode=yes"]
    return argv


def policy_config(endpoint: Endpoint) -> str:
    """An ssh_config that sets the run's policy, then includes the user's config.

    ssh hands -F, but not -o, to the `ssh -W` it starts for each ProxyJump hop, so -o alone
    would leave jump hosts with the user's own StrictHostKeyChecking (often "ask": a prompt
    in the middle of a parallel batch run) and without accept-new. Global lines before the
    Include win (ssh keeps the first value), exactly as -o would; without a configured file
    the Include reads what ssh reads by default, in the same order.
    """
    policy = policy_argv(endpoint.options)
    lines = ["# Written by sbatchman for one run; removed when the run ends."]
    lines += [policy[i + 1].replace("=", " ", 1) for i in range(0, len(policy), 2)]
    ssh_config = endpoint.ssh_config
    # Absolute: a relative Include would be looked up in ~/.ssh, not where -F would look.
    # Not "~/.ssh/config": ssh expands `~` in an Include from $HOME, but reads its own
    # default config from the password database's home; the sftp backend's `ssh -G` does that.
    sources = (
        [str(ssh_config.absolute())]
        if ssh_config is not None
        else [os.path.join(ssh_home(), ".ssh", "config"), _SYSTEM_CONFIG]
    )
    lines.append("Include " + " ".join(f'"{src}"' if " " in src else src for src in sources))
    # After the Include, so a Ciphers line of the user's (or the system's) wins over it.
    lines.append(f"Ciphers {PREFERRED_CIPHERS}")
    return "\n".join(lines) + "\n"


_SYSTEM_CONFIG = "/etc/ssh/ssh_config"
# OpenSSH's own default ciphers, AES-GCM first: every byte rsync sends passes through the
# master, and on CPUs with AES instructions AES-GCM costs the two ends less CPU than
# ChaCha20-Poly1305 (ssh's first choice): about 1.5x faster for one 512 MiB file on loopback
# (bench/bench_rsync.py). Spelled out rather than `^aes128-gcm...`, which older ssh rejects.
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
    "aes128-ctr,aes192-ctr,aes256-ctr"
)


def ssh_home() -> str:
    """The folder OpenSSH means by `~` in its own files (config, known_hosts, identities).

    ssh takes it from the password database, never from $HOME, so both backends do too: with
    $HOME moved (sudo -E, containers, test harnesses) they still read what `ssh` reads.
    """
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # a uid without a passwd entry: ssh itself would refuse to run
        return os.path.expanduser("~")


class Master:
    """A ControlMaster connection kept open for the run, in a folder only this user can enter."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.host = endpoint.host
        self.who = endpoint.who
        # The socket lets anyone who can reach it run commands as us on the cluster, so it
        # lives in a folder only we can enter. mkdtemp makes it 0700; we check rather than
        # trust, because a hostile TMPDIR could hand us something else.
        self.folder = Path(tempfile.mkdtemp(prefix="sbm-"))
        info = self.folder.stat()
        if info.st_mode & 0o077 or info.st_uid != os.getuid():
            os.rmdir(self.folder)
            raise ConnectError(f"{self.folder}: private socket folder is not 0700 and ours")
        self.socket = self.folder / "c"
        self.options = endpoint.options
        self.key_path = endpoint.key_path
        self.key_where = endpoint.key_where
        config = self.folder / "config"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(policy_config(endpoint))
        self.base = ["ssh", "-F", str(config), *endpoint.target_args, *policy_argv(self.options)]

    def client_argv(self) -> list[str]:
        """ssh options for commands that ride on the master (never open a second connection)."""
        return [*self.base, "-o", f"ControlPath={self.socket}", "-o", "ControlMaster=no"]

    def open(self) -> None:
        """Authenticate now, in the foreground, so any prompt happens before transfers start.

        Whatever ends it early (a failure, Ctrl-C at a prompt) closes the master and removes
        the private folder: no ssh process or socket outlives the run.
        """
        try:
            if self.key_path is not None and not self.key_path.exists():
                raise ConnectError(
                    f"{self.key_where}: the key file {self.key_path} does not exist;"
                    " fix the path, or remove key_path to use your ssh config's keys"
                )
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        argv = [
            *self.base,
            "-o", f"ControlPath={self.socket}",
            "-o", "ControlMaster=yes",
            "-o", "ControlPersist=600",
            "-f", "-N", "--", self.host,
        ]  # fmt: skip
        # stderr goes to a file: the backgrounded master keeps a pipe open forever.
        with tempfile.TemporaryFile(mode="w+") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL if self.options.batch else None,
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
            # A signal sent to sbatchman alone (kill, SIGTERM) does not reach this ssh, and
            # the exit would wait for it: Ctrl-C's cancel ends it, as for SFTP's connects.
            with self.options.cancel.watching(proc.terminate):
                try:
                    rc = proc.wait(timeout=self.options.connect_timeout + 120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise ConnectError("connection timed out") from None
            if self.options.cancel.cancelled:
                raise Interrupted("interrupted")
            err.seek(0)
            message = err.read()
        if rc != 0:
            if needs_probe(message):
                message = self._probe() or message
            denied = DENIED.search(message)
            accepting = self.options.accept_new_host_keys
            if self.options.batch and denied:
                # Maybe a passphrase, password or 2FA code would do: the caller may retry
                # this cluster interactively.
                if self.key_path is not None and key_needs_passphrase(self.key_path):
                    raise AuthError(
                        f"{self.who} needs a passphrase for key {self.key_path} but running in"
                        " batch mode (--batch or no terminal); run in a terminal without"
                        " --batch, or load the key into ssh-agent"
                    )
                raise AuthError(
                    batch_needs(self.who, denied[1]) or cause(message, accepting=accepting)
                )
            raise ConnectError(cause(message, accepting=accepting))

    def _probe(self) -> str | None:
        """ssh's messages for a second try that stops where the first failed, with -v added.

        -v adds "Server host key: <type> SHA256:..." (the fingerprint the unknown-key message
        lacks), and without ControlPersist ssh lets a jump host's own errors through (with it,
        ssh sends the jump's stderr to /dev/null). Batch mode: it never prompts or logs in
        further than the first try did. Debug chatter is dropped.
        """
        argv = [
            *self.base, "-v", "-o", "BatchMode=yes",
            "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "--", self.host, "true",
        ]  # fmt: skip
        try:
            run = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, check=False,
                timeout=self.options.connect_timeout + 10,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        kept = [
            line
            for line in run.stderr.splitlines()
            if not line.startswith("debug") or SERVER_KEY.search(line)
        ]
        return "\n".join(kept) if any(not ln.startswith("debug") for ln in kept) else None

    def close(self) -> None:
        if self.socket.exists():
            subprocess.run(
                [*self.base, "-o", f"ControlPath={self.socket}", "-O", "exit", "--", self.host],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                check=False, timeout=30,
            )  # fmt: skip
        for leftover in self.folder.glob("*"):
            leftover.unlink(missing_ok=True)
        if self.folder.exists():
            os.rmdir(self.folder)
