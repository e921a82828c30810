"""How rsync reaches a cluster: the -e command, the host:path word, which paths a shell may see.

Shared by the push and the fetch, which name the cluster's folder the same way.
"""

from __future__ import annotations

import re

from sbatchman.backends.rsync_info import RsyncInfo
from sbatchman.errors import TransferError
from sbatchman.ssh.master import Master

# Characters that cannot change meaning in a POSIX shell: the only paths an rsync without -s
# may send (it hands the remote path to the remote shell).
SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./+,:=@%-]*$")


def rsh_quote(arg: str) -> str:
    """Quote one word for rsync's own -e splitter (spaces split; doubled quotes escape)."""
    if arg and re.fullmatch(r"[A-Za-z0-9_./=:@%+,-]+", arg):
        return arg
    return "'" + arg.replace("'", "''") + "'"


def rsh_words(master: Master, batch: bool = False) -> list[str]:
    """The ssh command rsync runs; it appends the host and its command after our `--`, so
    a host can never be read as an option. rsync would put `-l user` of a `user@host`
    after it, so that is split off here."""
    words = master.client_argv()
    if batch:
        words += ["-o", "BatchMode=yes"]
    user, at, _ = master.host.rpartition("@")
    if at:
        words += ["-l", user]
    return [*words, "--"]


def rsh(master: Master, batch: bool = False) -> str:
    """rsh_words as the one -e argument."""
    return " ".join(rsh_quote(a) for a in rsh_words(master, batch))


def remote_words(info: RsyncInfo, remote: str) -> list[str]:
    """`-s` when the local rsync has it (the remote path reaches the remote rsync untouched by
    any shell); without it, TransferError unless the path means the same to a shell."""
    if info.secluded_args:
        return ["-s"]
    if not SHELL_SAFE.match(remote) or remote.startswith("-"):
        raise TransferError(
            f"the local rsync {'.'.join(map(str, info.version))} would pass the remote"
            f" path {remote!r} through the cluster's shell; use -b sftp or rsync >= 3.0"
        )
    return []


def host_path(master: Master, remote: str) -> str:
    """The `host:path/` word naming the cluster's folder."""
    host = master.host.rpartition("@")[2]
    host = f"[{host}]" if ":" in host else host
    # host::path would mean an rsync daemon. Only then is the path spelled ./path: with -s
    # the remote rsync drops a `..` that follows `./` (./../x would land in ~/x).
    remote = f"./{remote}" if remote.startswith(":") else remote
    return f"{host}:{remote}/"
