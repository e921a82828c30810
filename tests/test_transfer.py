"""The transfer skeleton (backends.transfer) judges an unreadable destination folder alike for
the local copier and SFTP: the push fails before anything is written, never plans it as empty.

Both engines run as root here, so a folder is made unreadable the way root cannot get around:
the path of d is one character too long for the kernel (PATH_MAX), its parent's is not. The
local copier already fails listing the parent (it stats each entry by its full path), SFTP
on d itself; either way nothing may be written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sbatchman.errors import TransferError
from sbatchman.model import PartialTransfer
from tests.support.sftpkit import T0, Remote, set_mtime
from tests.support.sshd import SshdFactory
from tests.support.trees import make_tree

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def folder_at_the_limit(base: Path) -> Path:
    """A folder below `base` whose own path is short enough to use and whose child `d` is
    not, holding d/f.txt (made through file descriptors, as no path reaches it)."""
    room = PATH_MAX - 2 - len(str(base))  # base/<parts> + "/d" == PATH_MAX: one over
    parts: list[str] = []
    while room > 0:
        take = min(200, room - 1)
        parts.append("x" * take)
        room -= take + 1
    fd = os.open(base, os.O_RDONLY)
    try:
        for name in [*parts, "d"]:
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open("f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"edited on the cluster\n")
        os.close(out)
        os.utime("f.txt", ns=(T0 * 2, T0 * 2), dir_fd=fd)
    finally:
        os.close(fd)
    root = base.joinpath(*parts)
    assert len(str(root / "d")) == PATH_MAX
    return root


def pushed(root: Path) -> bytes:
    fd = os.open(root, os.O_RDONLY)
    try:
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        try:
            out = os.open("f.txt", os.O_RDONLY, dir_fd=inner)
            try:
                return os.read(out, 100)
            finally:
                os.close(out)
        finally:
            os.close(inner)
    finally:
        os.close(fd)


@pytest.mark.parametrize("engine", ["local", "sftp"])
def test_a_folder_that_cannot_be_listed_fails_the_push_on_both_engines(
    engine: str, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("long") if engine == "sftp" else None
    local = make_tree(tmp_path / "p", {"d/f.txt": "local\n"})
    for path in local.rglob("*"):
        set_mtime(path, T0)
    base = server.root if server is not None else tmp_path / "cluster"
    base.mkdir(exist_ok=True)
    dest = folder_at_the_limit(base)
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        with pytest.raises(TransferError, match="cannot list ") as raised:
            remote.push()
    finally:
        remote.close()
    assert not isinstance(raised.value, PartialTransfer)  # failed before writing anything
    assert pushed(dest) == b"edited on the cluster\n"
