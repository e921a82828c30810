"""`sbatchman sync` over the rsync backend against three real sshd clusters (no mocks)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.delayproxy import refused_port
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree, snapshot

PROJ = {
    "src/model.py": "print('model')\n",
    "src/deep/er/util.py": "x = 1\n",
    "run.sh": "#!/bin/sh\necho run\n",
    "README.md": "hello\n",
    "cache.pyc": "compiled",
    ".git/HEAD": "ref: refs/heads/main\n",
    "results/out.csv": "1,2\n",
}
LIB = {"lib/core.py": "core = True\n", "notes.txt": "n\n"}


@pytest.fixture
def projects(tmp_path: Path) -> tuple[Path, Path]:
    proj = make_tree(tmp_path / "proj", PROJ, links={"latest": "src/model.py"})
    (proj / "empty").mkdir()
    os.utime(proj / "README.md", ns=(1_700_000_000_250_000_000,) * 2)  # a fractional mtime
    lib = make_tree(tmp_path / "lib", LIB)
    return proj, lib


def three_cluster_config(
    config: Path, servers: list[SshServer], roots: dict[str, Path], proj: Path, lib: Path
) -> Path:
    clusters = [
        ssh_cluster(
            s,
            [
                # missing parents on purpose: rsync must create them
                {"alias": "proj", "local": str(proj), "remote": f"{roots[s.name]}/a/b/proj"},
                {"alias": "lib", "local": str(lib), "remote": f"{roots[s.name]}/lib"},
            ],
        )
        for s in servers
    ]
    return write_config(
        config, clusters, common_excludes=[".git", "*.pyc"], sync_excludes=["results/"]
    )


def test_two_aliases_land_on_three_clusters_and_a_rerun_sends_nothing(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    projects: tuple[Path, Path],
    isolated_env: object,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj, lib = projects
    config = three_cluster_config(tmp_path / "c.toml", three_clusters, cluster_roots, proj, lib)

    first = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert {(t["cluster"], t["alias"], t["status"]) for t in report["targets"]} == {
        (c, a, "ok") for c in ("alpha", "beta", "gamma") for a in ("proj", "lib")
    }
    for target in report["targets"]:
        assert target["backend"] == "rsync"
        assert target["files_sent"] == (4 if target["alias"] == "proj" else 2)

    expected_proj = {k: v for k, v in snapshot(proj).items() if not k.startswith((".git", "res"))}
    expected_proj.pop("cache.pyc")
    for server in three_clusters:
        remote = cluster_roots[server.name] / "a/b/proj"
        assert snapshot(remote) == expected_proj  # modes, mtime seconds, link targets, no excluded
        assert snapshot(cluster_roots[server.name] / "lib") == snapshot(lib)
    assert os.access(cluster_roots["alpha"] / "a/b/proj/run.sh", os.X_OK)
    assert os.path.islink(cluster_roots["beta"] / "a/b/proj/latest")

    second = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert second.code == 0, second.err
    assert [t["files_sent"] for t in json.loads(second.out)["targets"]] == [0] * 6


def test_selected_cluster_and_alias_only(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj, lib = projects
    config = three_cluster_config(tmp_path / "c.toml", three_clusters, cluster_roots, proj, lib)
    run = run_cli(capsys, "sync", "--config", str(config), "-c", "beta", "-a", "lib")
    assert run.code == 0, run.err
    assert (cluster_roots["beta"] / "lib/notes.txt").exists()
    assert not (cluster_roots["beta"] / "a").exists()
    assert list(cluster_roots["alpha"].iterdir()) == []
    assert "beta" in run.out and "alpha" not in run.out


def test_dry_run_lists_and_writes_nothing(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj, lib = projects
    config = three_cluster_config(tmp_path / "c.toml", three_clusters, cluster_roots, proj, lib)
    run = run_cli(capsys, "sync", "--config", str(config), "-n", "-c", "alpha", "-a", "proj")
    assert run.code == 0, run.err
    assert "would send alpha/proj: run.sh (new)" in run.out
    assert "would send alpha/proj: src/deep/er/util.py (new)" in run.out
    assert "cache.pyc" not in run.out
    assert list(cluster_roots["alpha"].iterdir()) == []  # not even the missing parents


def test_newer_remote_file_is_kept_and_reported(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj, lib = projects
    config = three_cluster_config(tmp_path / "c.toml", three_clusters, cluster_roots, proj, lib)
    assert run_cli(capsys, "sync", "--config", str(config), "-c", "gamma").code == 0
    edited = cluster_roots["gamma"] / "lib/notes.txt"
    edited.write_text("edited on the cluster\n")
    future = time.time() + 3600
    os.utime(edited, (future, future))
    (lib / "notes.txt").write_text("local change, but older\n")

    run = run_cli(capsys, "sync", "--config", str(config), "-c", "gamma", "--json")
    assert run.code == 0, run.err
    assert edited.read_text() == "edited on the cluster\n"
    lib_report = next(t for t in json.loads(run.out)["targets"] if t["alias"] == "lib")
    assert lib_report["skipped_newer_remote"] == ["notes.txt"]
    assert lib_report["files_skipped_newer_remote"] == 1


def test_dead_cluster_fails_alone_with_exit_1(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj, lib = projects
    config = three_cluster_config(tmp_path / "c.toml", three_clusters, cluster_roots, proj, lib)
    text = config.read_text() + (
        f'\n[[clusters]]\nname = "dead"\nhost = "127.0.0.1"\nport = {refused_port()}\n'
        f'user = "nobody"\nssh_config = "{three_clusters[0].ssh_config}"\n'
        '[[clusters.sync_dirs]]\nalias = "proj"\n'
        f'local = "{proj}"\nremote = "/tmp/never"\n'
    )
    config.write_text(text)
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 1
    assert "✗ dead/proj: connection refused" in run.out
    for server in three_clusters:
        assert (cluster_roots[server.name] / "a/b/proj/run.sh").exists()
    # failures are listed first in the summary table
    rows = [line.split() for line in run.out.splitlines() if line.split()[:1] in (["dead"],)]
    assert rows and "FAILED" in rows[0]


WEIRD = ["with space", 'it\'s "quoted"', "semi;colon", "dollar $(touch {marker})", "back`tick`"]


def test_remote_paths_land_literally_and_nothing_runs(
    sshd_factory: SshdFactory,
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = sshd_factory("weird", home_in_root=True)
    marker = tmp_path / "marker-should-not-exist"
    proj, _ = projects
    names = [w.format(marker=marker) for w in WEIRD]
    dirs = [
        {"alias": f"d{i}", "local": str(proj), "remote": f"~/{name}/x"}
        for i, name in enumerate(names)
    ]
    dirs.append({"alias": "rel", "local": str(proj), "remote": "relative/dir"})
    dirs.append({"alias": "colon", "local": str(proj), "remote": ":x"})  # not host::daemon
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert not marker.exists()
    for name in names:
        assert (server.root / name / "x" / "run.sh").is_file(), name
    assert (server.root / "relative/dir/run.sh").is_file()
    assert (server.root / ":x" / "run.sh").is_file()


def test_port_and_key_path_reach_ssh(
    sshd_factory: SshdFactory,
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = sshd_factory("explicit")
    # An ssh config that knows the host key but offers no identity: only key_path can log in.
    bare = tmp_path / "ssh_config"
    bare.write_text(
        f"Host *\n  UserKnownHostsFile {server.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        "  IdentityAgent none\n  IdentitiesOnly yes\n  BatchMode yes\n"
    )
    proj, _ = projects
    cluster = {
        "name": "explicit",
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "key_path": str(server.client_key),
        "ssh_config": str(bare),
        "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(server.root / "p")}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out
    assert (server.root / "p/run.sh").exists()

    cluster["key_path"] = str(tmp_path / "no-such-key")
    write_config(config, [cluster])
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 1
    # the item 17: name the missing file, not just "authentication failed"
    assert f"{tmp_path / 'no-such-key'} does not exist" in run.out


def test_one_ssh_connection_per_cluster_for_all_aliases(
    sshd_factory: SshdFactory,
    projects: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = sshd_factory("counted")
    proj, lib = projects
    dirs = [
        {
            "alias": f"a{i}",
            "local": str(proj if i % 2 else lib),
            "remote": str(server.root / str(i)),
        }
        for i in range(4)
    ]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    assert run_cli(capsys, "sync", "--config", str(config)).code == 0
    assert server.log_text().count("Accepted publickey") == 1


def test_a_tree_of_files_only_logs_in_once_where_a_login_allows_one_session(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The look at the cluster starts as soon as the master is up; a tree with no folder or
    link never uses it, and must give its session back before rsync asks for one. Else, with
    MaxSessions 1, rsync's ssh logs in a second time (which a 2FA cluster refuses)."""
    server = sshd_factory("frugal", extra_config={"MaxSessions": "1"})
    local = make_tree(tmp_path / "flat", {"a.txt": "a\n", "b.txt": "b\n"})
    dirs = [{"alias": "p", "local": str(local), "remote": str(server.root / "flat")}]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    assert run_cli(capsys, "sync", "--config", str(config), "-b", "rsync").code == 0
    assert snapshot(server.root / "flat") == snapshot(local)
    assert server.log_text().count("Accepted publickey") == 1
