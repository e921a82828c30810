"""Trees and clusters that real users have and that broke a push: every backend copes alike.

Long names sharing their first 200 bytes (generated run folders), a login that writes to
stderr (a locale warning), and the login directory as the destination of a local cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.backends import three_ways, tree
from tests.support.project import make_tree, run_cli
from tests.support.sshd import SshServer


def test_long_names_that_share_their_first_bytes_all_land(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {"L" * 200 + f"_{i}.txt": f"{i}\n" for i in range(3)}
    local = make_tree(tmp_path / "long", names)
    server = three_clusters[0]
    root = cluster_roots[server.name]
    dests = {"rsync": root / "r", "sftp": root / "s", "local": tmp_path / "l"}
    config = three_ways(server, local, dests, tmp_path / "c.toml")
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    assert all(t["files_sent"] == 3 for t in json.loads(run.out)["targets"])
    for name, dest in dests.items():
        assert sorted(p.name for p in dest.iterdir()) == sorted(names), name
    assert len({repr(tree(d, folder_and_link_times=False)) for d in dests.values()}) == 1
