"""Push one local tree through rsync, SFTP and the local copier, and compare what lands."""

from __future__ import annotations

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
