"""`ls --fetch --explain`'s judge (selection.tree.judge_path) on a local tree: the same verdict
select_tree gives, each component judged with its real kind, and the rule named."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from sbatchman.backends.local import LocalTree
from sbatchman.errors import TransferError
from sbatchman.selection.rules import Rule
from sbatchman.selection.tree import Judged, Listed, Lister, judge_path, select_tree
from tests.support.fetching import fetch_cluster, logins
from tests.support.project import run_cli, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree

RULES = (
    Rule("*.tmp", "global.fetch_excludes"),
    Rule("logs/", "clusters[0].fetch_excludes"),
    Rule("/scratch", "clusters[0].fetch_dirs[0].excludes"),
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = make_tree(
        tmp_path / "out",
        {
            "a.txt": "a\n",
            "core.tmp": "x",
            "logs/job.log": "done\n",
            "run/logs": "a file named logs\n",
            "run/scratch/s.txt": "s\n",
            "scratch/x": "x\n",
            "deep/er/f.out": "f\n",
        },
        links={"latest": "run", "deep/ln": "../a.txt"},
    )
    os.mkfifo(root / "pipe")
    (root / os.fsdecode(b"r\xff.tmp")).write_text("bad name, excluded\n")
    (root / os.fsdecode(b"r\xff.out")).write_text("bad name, fetched\n")
    return root


def judge(root: Path, path: str, lister: Lister | None = None) -> Judged:
    parts = [p for p in path.split("/") if p]
    return judge_path(lister or LocalTree(root), RULES, parts, path.endswith("/"))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a.txt", "fetched: no exclude matches it"),
        ("core.tmp", "not fetched: excluded by '*.tmp' from global.fetch_excludes"),
        ("logs", "not fetched: excluded by 'logs/' from clusters[0].fetch_excludes"),
        (
            "logs/job.log",
            "not fetched: its parent folder logs is excluded by 'logs/' from"
            " clusters[0].fetch_excludes, so nothing inside it is fetched",
        ),
        ("run/logs", "fetched: no exclude matches it"),  # a `/`-pattern matches folders only
        ("run/scratch/s.txt", "fetched: no exclude matches it"),  # `/scratch`: the root's only
        (
            "scratch/x",
            "not fetched: its parent folder scratch is excluded by '/scratch' from"
            " clusters[0].fetch_dirs[0].excludes, so nothing inside it is fetched",
        ),
        ("latest", "fetched as a link (never followed)"),
        (
            "latest/logs",
            "not fetched: its parent latest is a link, which is fetched as a link"
            " and never followed",
        ),
        ("deep/ln", "fetched as a link (never followed)"),
        ("deep/er/f.out", "fetched: no exclude matches it"),
        ("deep/er/", "fetched: no exclude matches it"),
        ("a.txt/b", "not fetched: its parent a.txt is a file, not a folder"),
        (
            "pipe",
            "not fetched: it is a special file (fifo, socket or device), which rsync skips too",
        ),
        (
            "gone.txt",
            "not fetched: it does not exist on the cluster (it was judged as a file: no"
            " exclude matches it)",
        ),
        (
            "new/logs/",
            "not fetched: excluded by 'logs/' from clusters[0].fetch_excludes; its parent"
            " folder new does not exist on the cluster (it was judged as a folder)",
        ),
        (
            "new/logs",
            "not fetched: its parent folder new does not exist on the cluster (it was judged"
            " as a file: no exclude matches it)",
        ),
        (
            "logs/old/x",
            "not fetched: its parent folder logs is excluded by 'logs/' from"
            " clusters[0].fetch_excludes, so nothing inside it is fetched",
        ),
        (os.fsdecode(b"r\xff.tmp"), "not fetched: excluded by '*.tmp' from global.fetch_excludes"),
        (os.fsdecode(b"r\xff.out"), "fetched: no exclude matches it"),
    ],
)
def test_each_path_is_judged_with_its_real_kind(tree: Path, path: str, reason: str) -> None:
    verdict = judge(tree, path)
    assert verdict.reason == reason
    assert verdict.fetched == reason.startswith("fetched")
    assert verdict.path == path.rstrip("/")


def test_every_entry_gets_the_verdict_select_tree_gives(tree: Path) -> None:
    selected = {e.path for e in select_tree(tree, None, LocalTree(tree), RULES).entries}
    everything = [str(p.relative_to(tree)) for p in tree.rglob("*")]
    assert len(everything) > len(selected) > 5
    for path in everything:
        assert judge(tree, path).fetched == (path in selected), path


def test_a_folder_that_cannot_be_listed_is_said_and_marked(tree: Path) -> None:
    real = LocalTree(tree)

    def denying(folders: Sequence[str]) -> Listed:
        listed = dict(real(folders))
        listed.update({f: "permission denied" for f in folders if f == "deep/er"})
        return listed

    inside = judge(tree, "deep/er/f.out", denying)
    assert (inside.fetched, inside.unreadable) == (False, True)
    assert (
        inside.reason
        == "not fetched: its parent folder deep/er cannot be listed (permission denied)"
    )
    itself = judge(tree, "deep/er", denying)
    assert (itself.fetched, itself.unreadable) == (False, True)
    assert itself.reason == (
        "not fetched: it cannot be listed (permission denied), so nothing in it is fetched"
    )
    assert not judge(tree, "deep/ln", denying).unreadable  # never listed: nothing to fail


def test_a_root_that_cannot_be_listed_is_the_listers_sentence(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"^the remote folder .*/nowhere does not exist$"):
        judge(tmp_path / "nowhere", "a.txt")


# --------------------------------------------------------------------------- the CLI, over sshd

RED = "e\x1b[31m.txt"  # a name that would drive the terminal: printed escaped


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_ls_fetch_explain_judges_the_clusters_own_tree(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    servers = three_clusters[:2]
    remotes = {}
    for server in servers:
        remotes[server.name] = make_tree(
            cluster_roots[server.name] / "out",
            {"a.txt": "a\n", "core.tmp": "x", "logs/j.log": "j\n", RED: "r\n"},
            links={"ln": "a.txt"},
        )
    clusters = [
        fetch_cluster(s, backend, [{"alias": "out", "remote": str(remotes[s.name])}])
        for s in servers
    ]
    clusters[0]["fetch_excludes"] = ["logs/"]
    res = tmp_path / "res"
    config = str(
        write_config(tmp_path / "c.toml", clusters, local_base=str(res), fetch_excludes=["*.tmp"])
    )
    monkeypatch.chdir(tmp_path)  # inside no fetch_dir: paths are taken from each remote folder
    before = [logins(s) for s in servers]

    paths = ["a.txt", "logs/j.log", "core.tmp", "ln", "new/", RED]
    run = run_cli(capsys, "ls", "--config", config, "--fetch", *_explain(paths))
    assert (run.code, run.err) == (0, "")
    fetched = "fetched: no exclude matches it (comes now: new)"
    assert run.out.splitlines() == [
        f"alpha/out: a.txt: {fetched}",
        f"beta/out: a.txt: {fetched}",
        "alpha/out: logs/j.log: not fetched: its parent folder logs is excluded by 'logs/' from"
        " clusters[0].fetch_excludes, so nothing inside it is fetched",
        f"beta/out: logs/j.log: {fetched}",
        "alpha/out: core.tmp: not fetched: excluded by '*.tmp' from global.fetch_excludes",
        "beta/out: core.tmp: not fetched: excluded by '*.tmp' from global.fetch_excludes",
        "alpha/out: ln: fetched as a link (never followed)",
        "beta/out: ln: fetched as a link (never followed)",
        "alpha/out: new: not fetched: it does not exist on the cluster (it was judged as a"
        " folder: no exclude matches it)",
        "beta/out: new: not fetched: it does not exist on the cluster (it was judged as a"
        " folder: no exclude matches it)",
        f"alpha/out: e\\#033[31m.txt: {fetched}",
        f"beta/out: e\\#033[31m.txt: {fetched}",
    ]
    assert [logins(s) for s in servers] == [n + 1 for n in before]  # one login per cluster
    assert not res.exists()  # nothing written, not even the local folders

    # Inside alpha's local folder, a path is taken from there; beta's remote folder by name.
    here = make_tree(res / "alpha/out", {"a.txt": "mine, newer\n"})
    os.utime(here / "a.txt", (2_000_000_000, 2_000_000_000))
    monkeypatch.chdir(here)
    run = run_cli(
        capsys, "ls", "--config", config, "--fetch", *_explain(["a.txt", f"{remotes['beta']}/ln"])
    )
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [
        "alpha/out: a.txt: fetched: no exclude matches it (now kept: newer locally)",
        "beta/out: ln: fetched as a link (never followed)",
    ]

    # A path in no fetch_dir is refused before any login, naming the folders.
    before = [logins(s) for s in servers]
    run = run_cli(capsys, "ls", "--config", config, "--fetch", "--explain", "/elsewhere/x")
    assert run.code == 2
    places = sorted([str(res / "alpha/out"), str(res / "beta/out")])
    places += [f"{s.name}:{remotes[s.name]}" for s in servers]
    assert run.err.splitlines() == [
        f"sbatchman: error: /elsewhere/x is in no selected fetch_dir ({', '.join(sorted(places))})"
    ]
    assert [logins(s) for s in servers] == before

    # A remote folder that is gone: one `! reason` line for it, exit 1; the other is judged.
    shutil.rmtree(remotes["beta"])
    monkeypatch.chdir(tmp_path)
    run = run_cli(capsys, "ls", "--config", config, "--fetch", "--explain", "ln")
    assert run.code == 1
    assert run.out.splitlines() == [
        "alpha/out: ln: fetched as a link (never followed)",
        f"beta/out: ! the remote folder {remotes['beta']} does not exist",
    ]


def _explain(paths: Sequence[str]) -> list[str]:
    return [word for path in paths for word in ("--explain", path)]


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_a_listing_cut_by_ctrl_c_is_an_interruption_not_a_cluster_failure(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    """Ctrl-C aborts the session under `--explain`: the listing must stop (rsync's ssh for
    it too) and say interrupted (exit 130), not "connection lost" (exit 1), nor go on."""
    from sbatchman.config import load
    from sbatchman.errors import Interrupted
    from sbatchman.fanout import Fleet
    from sbatchman.model import Request
    from sbatchman.targets import resolve_fetch_targets
    from tests.support.project import OnPhase

    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "out", {"sub/a.txt": "a\n"})
    fetch_dir = {"alias": "out", "remote": str(remote), "local": str(tmp_path / "here")}
    config = load(write_config(tmp_path / "c.toml", [fetch_cluster(server, backend, [fetch_dir])]))
    request = Request(backend=backend)
    targets = resolve_fetch_targets(config, request)
    with Fleet(targets, config.settings, request, OnPhase()) as fleet:
        session = fleet.sessions[server.name]
        lister = session.lister(str(remote))
        try:
            assert [f.name for f in lister([""])[""]] == ["sub"]  # type: ignore[union-attr]
            session.abort()
            with pytest.raises(Interrupted):
                lister(["sub"])
        finally:
            lister.close()
