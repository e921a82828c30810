"""A long file list reaches rsync as arguments, in batches, and lands exactly as --files-from.

The names are the ones an argument list could misread: a leading dash (an option), a colon
(a host), spaces and quotes; the batches are cut small so that one sync takes many rsyncs.
Real sshd and rsync; only the two size limits are lowered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sbatchman.backends import rsync_names
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree, snapshot

HOSTILE = {
    "-n": "not an option\n",
    "--delete": "not an option either\n",
    "host:path": "not a host\n",
    "a/b:c/-x": "deep\n",
    'with space/it\'s "q".txt': "q\n",
    "empty/": "",
}


def test_batches_cut_at_the_limit_and_every_name_starts_with_dot_slash() -> None:
    listed = b"./top\0-a\0b:c\0" + b"d\0" * 10
    cut = list(rsync_names.batches(listed, limit=40))
    assert [name for batch in cut for name in batch] == ["./top", "./-a", "./b:c"] + ["./d"] * 10
    assert len(cut) > 1
    assert all(sum(len(n) + 9 for n in batch) <= 40 for batch in cut)


@pytest.mark.ssh
def test_a_long_list_lands_as_with_files_from(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rsync_names, "BY_ARGUMENT_FROM", 0)
    monkeypatch.setattr(rsync_names, "SHARE", 120 / rsync_names.arg_max())
    server = three_clusters[0]
    source = make_tree(
        tmp_path / "p", {**HOSTILE, **{f"many/f{i:03d}": f"{i}\n" for i in range(60)}}
    )
    os.chmod(source / "-n", 0o755)
    dest = cluster_roots[server.name] / "names"
    cluster = ssh_cluster(server, [{"alias": "p", "local": str(source), "remote": str(dest)}])
    config = write_config(tmp_path / "c.toml", [cluster], transfer_backend="rsync")

    first = run_cli(capsys, "sync", "--config", str(config))
    assert first.code == 0, first.err
    assert snapshot(dest) == snapshot(source)
    assert not (cluster_roots[server.name] / "host").exists()  # no name was read as a host

    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert again.code == 0, again.err
    assert '"files_sent": 0' in again.out
