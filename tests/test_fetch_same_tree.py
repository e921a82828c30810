"""One cluster folder fetched by rsync, SFTP and the local engine in one run: the three local
trees are the same, to the mode, the second, the link and the odd byte in a name.

The conformance suite (test_backends_same_tree.py, direction "fetch") compares each backend
with the cluster's tree; this states the promise users rely on when they switch backends
directly, on names the suite cannot report through --json (newlines, non-UTF-8 bytes).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.fetching import fetch, identities
from tests.support.project import ssh_cluster, write_config
from tests.support.sides import Side, awkward_tree
from tests.support.sshd import SshServer
from tests.support.trees import Node, stamp

EXCLUDES = ["*.pyc", "build/", ".git"]
EXCLUDED = ("src/model.pyc", "build", "build/out.o", ".git", ".git/HEAD")
ODD = {  # names only a byte-exact walk keeps
    "line\nbreak.txt": "n\n",
    os.fsdecode(b"latin-\xe9t\xe9.txt"): "l\n",
    os.fsdecode(b"bad \xff\xfe/inside.txt"): "b\n",
    " leading and trailing ": "s\n",
}
BACKENDS = ("local", "rsync", "sftp")


def odd_names(side: Side) -> None:
    side.write(ODD, links={"link\nto odd": "line\nbreak.txt"})
    for name in (*ODD, "link\nto odd", os.fsdecode(b"bad \xff\xfe")):
        stamp(side.path(name), 1_600_000_000)


def top(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), int(st.st_mtime)


def config_for(server: SshServer, remote: Path, fetched: dict[str, Path], config: Path) -> Path:
    """Clusters named after their backend, all reading `remote`; "local" has no host."""
    clusters: list[dict[str, object]] = []
    for backend, local in fetched.items():
        dirs = [{"alias": "proj", "remote": str(remote), "local": str(local)}]
        if backend == "local":
            clusters.append({"name": backend, "transfer_backend": "sftp", "fetch_dirs": dirs})
        else:
            clusters.append(
                ssh_cluster(server, [], name=backend, transfer_backend=backend, fetch_dirs=dirs)
            )
    return write_config(config, clusters, fetch_excludes=EXCLUDES)


def test_every_backend_fetches_the_same_tree(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[0]
    remote = awkward_tree(Side(cluster_roots[server.name] / "results"))
    odd_names(remote)
    remote.path().chmod(0o751)
    stamp(remote.path(), 1_650_000_000)
    fetched = {b: tmp_path / "fetched by" / b / "proj" for b in BACKENDS}
    config = config_for(server, remote.path(), fetched, tmp_path / "fetch.toml")
    expected = remote.snapshot(times=True)
    for excluded in EXCLUDED:
        del expected[excluded]

    run = fetch(capsys, config)
    for backend in BACKENDS:  # the local engine first: it is the reference
        target = run.target(backend, "proj")
        assert target["status"] == "ok", (backend, target["error"], target["warnings"])
        landed = Side(fetched[backend])
        assert landed.snapshot(times=True) == expected, backend
        assert top(landed.path()) == (0o751, 1_650_000_000), backend  # as rsync src/ dst/
        assert landed.snapshot()["link\nto odd"] == Node("link", target="line\nbreak.txt")
        assert landed.temporaries() == [], backend
    assert run.code == 0, run.why()

    before = {b: identities(p) for b, p in fetched.items()}
    again = fetch(capsys, config)
    assert again.code == 0, again.why()
    for backend in BACKENDS:
        assert again.target(backend, "proj")["files_sent"] == 0, backend
        assert identities(fetched[backend]) == before[backend], backend  # nothing rewritten
