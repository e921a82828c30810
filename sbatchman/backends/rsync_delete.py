"""SFTP beside rsync, over its ssh master: `sync --delete` (sbatchman's own plan) and listing.

rsync's deletes (--delete and its kin) remove what the sender lacks, decided by rsync on the
cluster; the delete planner must decide instead, from the record. So the rsync backend does not
ask rsync to delete anything: it starts the cluster's SFTP server on the run's existing master
connection (`ssh -s ... host sftp`, argv only, no remote shell and no second login) and hands
its pipes to the same SFTP code the sftp backend uses (sftp/delete.py). `ls --fetch --explain`
lists the cluster's folders the same way (sftp/remote_tree.py): one listing code, whatever the
backend, gives the same names, kinds and link targets. A local cluster gets the local remover
and lister.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from sbatchman.backends import TreeLister
from sbatchman.backends.local import LocalTree, destination
from sbatchman.backends.removal import LocalRemover, Remover
from sbatchman.children import die_with_parent
from sbatchman.errors import TransferError
from sbatchman.ssh.master import Master

if TYPE_CHECKING:
    import paramiko

    from sbatchman.backends.sftp.wire import Wire

__all__ = ["Remover", "open_lister", "open_remover"]


class _Pipes:
    """The few channel calls Wire makes (send, recv, settimeout, close), on ssh's pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.write_fd, self.read_fd = proc.stdin.fileno(), proc.stdout.fileno()
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def send(self, data: bytes) -> int:
        _, ready, _ = select.select([], [self.write_fd], [], self.timeout)
        if not ready:
            raise TimeoutError
        return os.write(self.write_fd, data[: 1 << 16])

    def recv(self, size: int) -> bytes:
        ready, _, _ = select.select([self.read_fd], [], [], self.timeout)
        if not ready:
            raise TimeoutError
        return os.read(self.read_fd, size)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def sftp_argv(master: Master) -> list[str]:
    """ssh on the master, running the sftp subsystem; the host comes after `--`."""
    words = [*master.client_argv(), "-o", "BatchMode=yes"]
    user, at, host = master.host.rpartition("@")
    if at:
        words += ["-l", user]
    return [*words, "-s", "--", host, "sftp"]


def open_remover(master: Master | None, remote: str, stall_timeout: float) -> Remover:
    """The SFTP code is imported here, not above: a run that deletes nothing (or a local
    cluster) never pays for loading paramiko."""
    if master is None:
        return LocalRemover(destination(remote))
    from sbatchman.backends.sftp.delete import WireRemover

    wire, pipes = _sftp_on(master, stall_timeout, "the delete")
    return WireRemover(wire, remote, lambda clean: pipes.close())


def open_lister(
    master: Master | None,
    remote: str,
    stall_timeout: float,
    running: set[subprocess.Popen[bytes]],
    stopped: Callable[[], bool],
) -> TreeLister:
    """The cluster's folder as a fetch lists it, over the same kind of SFTP channel. Its ssh
    is one of the session's `running` while it is open, so Ctrl-C (abort) stops it too."""
    if master is None:
        return LocalTree(destination(remote))
    from sbatchman.backends.sftp.remote_tree import WireLister
    from sbatchman.backends.sftp.scan import root_path

    wire, pipes = _sftp_on(master, stall_timeout, "listing the cluster")
    running.add(pipes.proc)

    def done(clean: bool) -> None:
        running.discard(pipes.proc)
        pipes.close()

    return WireLister(wire, root_path(remote), done, stopped)


def _sftp_on(master: Master, stall_timeout: float, purpose: str) -> tuple[Wire, _Pipes]:
    """The cluster's SFTP server on the master connection, its handshake done."""
    try:
        proc = subprocess.Popen(
            sftp_argv(master),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    except OSError as err:
        raise TransferError(f"cannot start ssh for {purpose}: {err}") from None
    from sbatchman.backends.sftp.wire import Wire

    pipes = _Pipes(proc)
    wire = Wire(cast("paramiko.Channel", pipes), stall_timeout)
    try:
        wire.handshake()
    except BaseException:
        pipes.close()
        raise
    return wire, pipes
