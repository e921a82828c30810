"""`sbatchman sync --watch` against three real sshd clusters, on both backends (no mocks)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sbatchman.watcher import TEST_LIMIT_ENV
from tests.support.delayproxy import DelayProxy, refused_port
from tests.support.project import ssh_cluster, write_config
from tests.support.running import is_temporary
from tests.support.sshd import SshServer
from tests.support.trees import make_tree
from tests.support.watching import Watching, has, wait_until

BACKENDS = ["rsync", "sftp"]


def _config(
    tmp_path: Path, servers: list[SshServer], roots: dict[str, Path], backend: str
) -> tuple[Path, Path]:
    project = make_tree(tmp_path / "proj", {"a.py": "1\n", "data/keep.txt": "k\n"})
    clusters = [
        ssh_cluster(
            s,
            [{"alias": "proj", "local": str(project), "remote": f"{roots[s.name]}/proj"}],
            transfer_backend=backend,
        )
        for s in servers
    ]
    config = write_config(tmp_path / "c.toml", clusters, sync_excludes=["*.log", "results/"])
    return config, project


def _everywhere(roots: dict[str, Path], rel: str, content: str) -> None:
    for name, root in roots.items():
        wait_until(has(root / "proj" / rel, content), f"{rel} on {name}")


def _no_leftovers(roots: dict[str, Path]) -> None:
    for root in roots.values():
        left = [p for p in root.rglob("*") if is_temporary(p)]
        assert not left, left


@pytest.mark.parametrize("backend", BACKENDS)
def test_saves_new_folders_and_ignore_files_reach_every_cluster(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    config, project = _config(tmp_path, three_clusters, cluster_roots, backend)
    with Watching(config) as watching:
        _everywhere(cluster_roots, "a.py", "1\n")  # the first sync
        (project / "a.py").write_text("2\n")
        _everywhere(cluster_roots, "a.py", "2\n")
        (project / "new" / "deeper").mkdir(parents=True)
        (project / "new" / "deeper" / "f.py").write_text("f\n")
        (project / "run.log").write_text("excluded\n")
        (project / "results").mkdir()
        (project / "results" / "out.csv").write_text("excluded\n")
        _everywhere(cluster_roots, "new/deeper/f.py", "f\n")
        (project / "new" / "deeper" / "g.py").write_text("g\n")  # in a folder found meanwhile
        _everywhere(cluster_roots, "new/deeper/g.py", "g\n")
        (project / ".sbatchmanignore").write_text("*.tmp\n")
        watching.wait_pass(lambda p: any(".sbatchmanignore" in c for c in p["changed"]))
        (project / "scratch.tmp").write_text("ignored now\n")
        (project / "b.py").write_text("b\n")
        _everywhere(cluster_roots, "b.py", "b\n")
        code = watching.stop()
    print(watching.stderr)
    assert code == 0, [[(t["status"], t["error"]) for t in p["targets"]] for p in watching.passes]
    for root in cluster_roots.values():
        assert not (root / "proj" / "run.log").exists()
        assert not (root / "proj" / "results").exists()
        assert not (root / "proj" / "scratch.tmp").exists()
    _no_leftovers(cluster_roots)
    assert "Traceback" not in watching.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_editor_save_dances_end_as_the_final_bytes(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    config, project = _config(tmp_path, three_clusters[:2], cluster_roots, backend)
    roots = {s.name: cluster_roots[s.name] for s in three_clusters[:2]}
    target = project / "a.py"
    with Watching(config) as watching:
        # vim: probe file 4913, the old file renamed to a backup, the new one written, the
        # backup removed
        (project / "4913").write_text("")
        (project / "4913").unlink()
        os.rename(target, project / "a.py~")
        target.write_text("vim\n")
        os.chmod(target, 0o755)
        (project / "a.py~").unlink()
        _everywhere(roots, "a.py", "vim\n")
        # JetBrains: write a temporary, move the old file aside, rename the new one in
        tmp = project / "a.py___jb_tmp___"
        tmp.write_text("jetbrains\n")
        os.rename(target, project / "a.py___jb_old___")
        os.rename(tmp, target)
        (project / "a.py___jb_old___").unlink()
        _everywhere(roots, "a.py", "jetbrains\n")
        assert watching.stop() == 0
    for root in roots.values():
        names = sorted(p.name for p in (root / "proj").iterdir())
        assert names == ["a.py", "data"], names
    _no_leftovers(roots)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_of_changes_goes_in_a_few_passes(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    servers = three_clusters[:2]
    config, project = _config(tmp_path, servers, cluster_roots, backend)
    roots = {s.name: cluster_roots[s.name] for s in servers}
    with Watching(config) as watching:
        burst = project / "burst"
        burst.mkdir()
        for i in range(2000):
            (burst / f"f{i:04d}.txt").write_text(f"{i}\n")

        def landed(name: str) -> int:
            return sum(
                t["files_sent"]
                for p in watching.passes
                for t in p["targets"]
                if t["cluster"] == name and p["pass"] > 0
            )

        for name in roots:
            watching.wait_pass(lambda _p, n=name: landed(n) >= 2000)
        assert watching.stop() == 0
    for name, root in roots.items():
        assert len(list((root / "proj" / "burst").iterdir())) == 2000, name
    later = [p for p in watching.passes if p["pass"] > 0 and p["targets"]]
    assert 1 <= len(later) <= 10, [p["changed"][:3] for p in later]


def test_sigterm_with_a_failing_cluster_exits_1_and_the_others_kept_going(
    tmp_path: Path, three_clusters: list[SshServer], cluster_roots: dict[str, Path]
) -> None:
    live = three_clusters[0]
    project = make_tree(tmp_path / "proj", {"a.py": "1\n"})
    root = cluster_roots[live.name]
    dirs = [{"alias": "proj", "local": str(project), "remote": f"{root}/proj"}]
    dead = {"name": "dead", "host": "127.0.0.1", "port": refused_port(), "user": "nobody"}
    clusters = [ssh_cluster(live, dirs, transfer_backend="sftp"), {**dead, "sync_dirs": dirs}]
    config = write_config(tmp_path / "c.toml", clusters)
    with Watching(config, "--connect-timeout", "2") as watching:
        (project / "a.py").write_text("still\n")
        wait_until(has(root / "proj" / "a.py", "still\n"), "the live cluster")
        code = watching.stop(signal.SIGTERM)
    assert code == 1
    first = {t["cluster"]: t["status"] for t in watching.passes[0]["targets"]}
    assert first == {live.name: "ok", "dead": "failed"}
    assert "Traceback" not in watching.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_hitting_the_watch_limit_falls_back_to_polling(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    config, project = _config(tmp_path, three_clusters[:1], cluster_roots, backend)
    roots = {three_clusters[0].name: cluster_roots[three_clusters[0].name]}
    with Watching(config, env={TEST_LIMIT_ENV: "1"}) as watching:
        (project / "a.py").write_text("polled\n")
        _everywhere(roots, "a.py", "polled\n")
        assert watching.stop() == 0
    said = [line for line in watching.stderr.splitlines() if "watch limit" in line]
    assert said == [
        "sbatchman: the inotify watch limit is reached; polling the tree instead (slower)."
        " To raise the limit: sudo sysctl fs.inotify.max_user_watches=524288"
    ], watching.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cut_link_never_stops_the_others_and_catches_up_when_back(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    steady, flaky = three_clusters[0], three_clusters[1]
    project = make_tree(tmp_path / "proj", {"a.py": "1\n"})
    link = DelayProxy(flaky.host, flaky.port, 0.001)
    view = flaky.via_port(link.port, name="flaky")
    roots = {s.name: cluster_roots[s.name] for s in (steady, flaky)}

    def dirs(server: SshServer) -> list[dict[str, object]]:
        return [{"alias": "proj", "local": str(project), "remote": f"{roots[server.name]}/p"}]

    clusters = [
        ssh_cluster(steady, dirs(steady), transfer_backend=backend),
        {**ssh_cluster(view, dirs(flaky), transfer_backend=backend), "port": link.port},
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    try:
        with Watching(config, "--connect-timeout", "3") as watching:
            link.close()  # the network drops: connections die, new ones are refused
            (project / "b.py").write_text("while away\n")
            wait_until(has(roots[steady.name] / "p" / "b.py", "while away\n"), "the steady one")
            watching.wait_pass(lambda p: "flaky" in p["reconnecting"])
            link = DelayProxy(flaky.host, flaky.port, 0.001, port=link.port)  # it comes back
            wait_until(has(roots[flaky.name] / "p" / "b.py", "while away\n"), "the catch-up")
            (project / "c.py").write_text("after\n")
            wait_until(has(roots[flaky.name] / "p" / "c.py", "after\n"), "a save after it")
            assert watching.stop() == 0, watching.stderr
    finally:
        link.close()
    assert "Traceback" not in watching.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_delete_a_file_removed_here_goes_from_the_cluster_too(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    config, project = _config(tmp_path, three_clusters[:1], cluster_roots, backend)
    remote = cluster_roots[three_clusters[0].name] / "proj"
    (remote / "job.out").parent.mkdir(parents=True, exist_ok=True)
    (remote / "job.out").write_text("a job wrote this\n")  # never pushed: never deleted
    with Watching(config, "--delete") as watching:
        wait_until(has(remote / "data" / "keep.txt", "k\n"), "the first sync")
        (project / "data" / "keep.txt").unlink()
        wait_until(lambda: not (remote / "data" / "keep.txt").exists(), "the delete")
        (project / "a.py").write_text("2\n")
        wait_until(has(remote / "a.py", "2\n"), "a save after it")
        assert watching.stop() == 0, watching.stderr
    assert (remote / "job.out").read_text() == "a job wrote this\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_saves_of_one_size_in_one_second_both_go(
    tmp_path: Path,
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    backend: str,
) -> None:
    config, project = _config(tmp_path, three_clusters[:1], cluster_roots, backend)
    roots = {three_clusters[0].name: cluster_roots[three_clusters[0].name]}
    second = 1_800_000_000 * 1_000_000_000  # both saves within this one whole second
    with Watching(config) as watching:
        for i, content in enumerate(("one\n", "two\n")):
            (project / "a.py").write_text(content)
            os.utime(project / "a.py", ns=(second + i + 1, second + i + 1))
            _everywhere(roots, "a.py", content)  # the quick check alone would skip "two"
        assert watching.stop() == 0
