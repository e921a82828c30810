"""Fetch from several clusters in one run, through the CLI: each into its own folder, one login
per cluster, nothing rewritten the second time, -c/-a, and one cluster failing alone.

Real sshd servers (alpha, beta, gamma) on loopback, each test on rsync, SFTP and clusters
without a host (the local engine reading the same folders).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fetching import (
    BACKENDS,
    everything_below,
    fetch,
    fetch_cluster,
    identities,
    logins,
)
from tests.support.project import write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree, snapshot

ALIASES = ("app1", "app2")


def lay_out(roots: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """On each cluster two result folders whose files say which cluster and alias they are."""
    remotes: dict[str, dict[str, Path]] = {}
    for name, root in roots.items():
        remotes[name] = {}
        for alias in ALIASES:
            remotes[name][alias] = make_tree(
                root / "runs" / alias,
                {"which.txt": f"{name} {alias}\n", "out/log.txt": "log\n", "run.sh": "#!/bin/sh\n"},
            )
    return remotes


def config_for(
    tmp_path: Path,
    servers: list[SshServer],
    remotes: dict[str, dict[str, Path]],
    backend: str,
    layout: str,
) -> Path:
    clusters = []
    for server in servers:
        dirs: list[dict[str, object]] = []
        for alias, remote in remotes[server.name].items():
            if layout == "{cluster}":
                local = str(tmp_path / "results" / "{cluster}" / "{alias}")
            else:  # what a config says without the placeholders
                local = str(tmp_path / "results" / server.name / alias)
            dirs.append({"alias": alias, "remote": str(remote), "local": local})
        clusters.append(fetch_cluster(server, backend, dirs))
    return write_config(tmp_path / "fetch.toml", clusters)


@pytest.mark.parametrize("layout", ["{cluster}", "explicit"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_three_clusters_land_in_their_own_folders_with_one_login_each(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
    layout: str,
) -> None:
    remotes = lay_out(cluster_roots)
    config = config_for(tmp_path, three_clusters, remotes, backend, layout)
    before = {s.name: logins(s) for s in three_clusters}

    first = fetch(capsys, config)
    assert first.code == 0, first.why()
    expected = [(s.name, alias) for s in three_clusters for alias in ALIASES]
    assert first.names() == expected
    for server in three_clusters:
        for alias in ALIASES:
            local = tmp_path / "results" / server.name / alias
            assert snapshot(local) == snapshot(remotes[server.name][alias]), (server.name, alias)
            assert (local / "which.txt").read_text() == f"{server.name} {alias}\n"
            assert first.sent(server.name, alias) == ["out/log.txt", "run.sh", "which.txt"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        s.name for s in three_clusters
    )
    if backend != "local":  # two fetch_dirs, still one login per cluster
        assert {s.name: logins(s) - before[s.name] for s in three_clusters} == {
            s.name: 1 for s in three_clusters
        }

    landed = identities(tmp_path / "results")
    again = fetch(capsys, config)
    assert again.code == 0, again.why()
    assert all(t["files_sent"] == 0 for t in again.document["targets"]), again.why()
    assert identities(tmp_path / "results") == landed  # nothing rewritten, no folder touched


@pytest.mark.parametrize("backend", BACKENDS)
def test_clusters_and_aliases_choose_what_is_fetched(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    """The original sbatchman's long spellings, on fetch."""
    remotes = lay_out(cluster_roots)
    config = config_for(tmp_path, three_clusters, remotes, backend, "explicit")
    alpha, beta, gamma = (s.name for s in three_clusters)

    chosen = fetch(capsys, config, "--clusters", alpha, "--clusters", gamma, "--aliases", "app2")
    assert chosen.code == 0, chosen.why()
    assert chosen.names() == [(alpha, "app2"), (gamma, "app2")]
    results = tmp_path / "results"
    assert everything_below(results) == sorted(
        [f"{c}/app2{p}" for c in (alpha, gamma) for p in ("", "/out", "/out/log.txt")]
        + [f"{c}/app2/{p}" for c in (alpha, gamma) for p in ("run.sh", "which.txt")]
        + [alpha, gamma]
    )

    short = fetch(capsys, config, "-c", beta, "-a", "app1")
    assert short.code == 0, short.why()
    assert short.names() == [(beta, "app1")]
    assert (results / beta / "app1" / "which.txt").read_text() == f"{beta} app1\n"
    assert not (results / beta / "app2").exists()

    unknown = fetch(capsys, config, "--aliases", "app3")
    assert unknown.code == 2
    assert "app3" in unknown.run.err and "app1, app2" in unknown.run.err
    assert not (results / alpha / "app1").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cluster_whose_folder_is_missing_fails_alone(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    remotes = lay_out(cluster_roots)
    alpha, beta, gamma = (s.name for s in three_clusters)
    missing = cluster_roots[beta] / "never made"
    remotes[beta] = {"app1": missing}
    config = config_for(tmp_path, three_clusters, remotes, backend, "explicit")

    run = fetch(capsys, config)
    assert run.code == 1, run.why()
    failed = run.target(beta, "app1")
    assert failed["status"] == "failed", failed
    assert str(missing) in failed["error"], failed  # names the place
    assert failed["files_sent"] == 0
    for cluster in (alpha, gamma):
        for alias in ALIASES:
            done = run.target(cluster, alias)
            assert done["status"] == "ok", done
            assert (tmp_path / "results" / cluster / alias / "which.txt").is_file()
    assert everything_below(tmp_path / "results" / beta / "app1") == []
