"""Push one local tree through rsync, SFTP and the local copier, and compare what lands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.support.project import ssh_cluster, write_config
from tests.support.sshd import SshServer


def three_ways(
    server: SshServer, local: Path, dests: dict[str, Path], config: Path, **sync_dir: object
) -> Path:
    """One config pushing `local` through rsync (r), SFTP (s) and the local copier (l)."""
    common = {"alias": "proj", "local": str(local), **sync_dir}
    return write_config(
        config,
        [
            ssh_cluster(server, [{**common, "remote": str(dests["rsync"])}], name="r"),
            ssh_cluster(
                server,
                [{**common, "remote": str(dests["sftp"])}],
                name="s",
                transfer_backend="sftp",
            ),
            {
                "name": "l",
                "transfer_backend": "sftp",
                "sync_dirs": [{**common, "remote": str(dests["local"])}],
            },
        ],
    )


def tree(root: Path, *, folder_and_link_times: bool) -> dict[str, tuple[object, ...]]:
    """Names, kinds, sizes, modes, mtime seconds and link targets of everything below root."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            mtime = int(st.st_mtime)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path), mtime if folder_and_link_times else None)
            elif stat.S_ISDIR(st.st_mode):
                mode = stat.S_IMODE(st.st_mode)
                out[rel] = ("dir", mode, mtime if folder_and_link_times else None)
            else:
                content = path.read_bytes()
                out[rel] = ("file", st.st_size, stat.S_IMODE(st.st_mode), mtime, content)
    return out


def stamp(path: Path, when: int) -> None:
    """Set `path`'s mtime (a link's own, not its target's) to `when` seconds."""
    os.utime(path, (when, when), follow_symlinks=False)
