"""A long file list reaches rsync as arguments, in batches, and lands exactly as --files-from.

The names are the ones an argument list could misread: a leading dash (an option), a colon
(a host), spaces and quotes; the batches are cut small so that one sync takes many rsyncs.
Real sshd and rsync; only the two size limits are lowered.
"""

from __future__ import annotations

import os
import subprocess
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


def _names(count: int) -> bytes:
    return b"".join(b"d%06d/" % i + b"x" * 90 + b"\0" for i in range(count))


def test_a_batch_fits_what_the_kernel_allows_beside_a_big_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut at what ARG_MAX leaves after the environment: each batch really runs (real exec;
    E2BIG would raise), and each but the last fills nearly all of that room (every batch
    more is one more rsync)."""
    for i in range(3):  # one string may not pass 128 KiB
        monkeypatch.setenv(f"SBM_TEST_BIG_ENV{i}", "x" * 100_000)
    listed = _names(int(rsync_names.arg_max() * 1.5) // 100)
    cut = list(rsync_names.batches(listed))
    room = rsync_names.room()
    assert room < rsync_names.arg_max() - 300_000
    assert all(sum(len(w) + 9 for w in words) > 0.9 * room for words in cut[:-1])
    for words in cut:
        subprocess.run(["true", *words], check=True)


def test_a_batch_the_kernel_refuses_goes_in_halves() -> None:
    """E2BIG (a limit misjudged, an environment grown since) is no failure: the batch is run
    as halves, in order, every name once."""
    words = [os.fsdecode(n) for n in _names(int(rsync_names.arg_max() * 1.5) // 100).split(b"\0")]
    words = [w for w in words if w]
    runs: list[list[str]] = []

    def run(batch: list[str]) -> None:
        subprocess.run(["true", *batch], check=True)
        runs.append(batch)

    rsync_names.in_halves(run, words)
    assert len(runs) == 2
    assert [w for batch in runs for w in batch] == words


@pytest.mark.ssh
@pytest.mark.parametrize("walks", [False, True, None], ids=["names", "rules", "chosen"])
def test_a_long_list_lands_as_with_files_from(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    walks: bool | None,
) -> None:
    """As names in many rsyncs, as rules (rsync walks: no name is an argument), or as
    chosen by what the cluster has (rules first, then names)."""
    monkeypatch.setattr(rsync_names, "BY_ARGUMENT_FROM", 0)
    monkeypatch.setattr(rsync_names, "WALKS", walks)
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
