"""`sbatchman fetch` as a user sees it, on local clusters (no host: the cluster's folders are on
this machine) through the built-in copier (`-b sftp` on a local cluster): no sshd needed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import Run, run_cli, write_config
from tests.support.trees import make_tree, snapshot, stamp

T0 = 1_700_000_000


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """Two local clusters, each with results in its own tree, fetched into one {cluster} tree."""
    for name in ("alpha", "beta"):
        make_tree(tmp_path / name / "out", {"a.txt": f"{name} a\n", "run.sh": "#!/bin/sh\n"})
        make_tree(tmp_path / name / "logs", {"job.log": "done\n", "core.tmp": "x"})
        for path in (tmp_path / name).rglob("*"):
            stamp(path, T0)
    clusters = [
        {
            "name": name,
            "fetch_dirs": [
                {"remote": str(tmp_path / name / "out")},
                {"alias": "logs", "remote": str(tmp_path / name / "logs")},
            ],
        }
        for name in ("alpha", "beta")
    ]
    return write_config(
        tmp_path / "c.toml",
        clusters,
        local_base=str(tmp_path / "res"),
        fetch_excludes=["*.tmp"],
        sync_excludes=["*.txt"],  # never applies to a fetch
    )


def fetch(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Run:
    return run_cli(capsys, "fetch", "--config", str(config), "-b", "sftp", *args)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_fetch_brings_each_cluster_into_its_own_folder(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    run = fetch(capsys, fleet)
    assert run.code == 0, run.err
    res = fleet.parent / "res"
    assert sorted(p.relative_to(res).as_posix() for p in res.rglob("*") if p.is_file()) == [
        "alpha/logs/job.log",
        "alpha/out/a.txt",  # sync_excludes never apply to a fetch
        "alpha/out/run.sh",
        "beta/logs/job.log",  # fetch_excludes do: no core.tmp
        "beta/out/a.txt",
        "beta/out/run.sh",
    ]
    assert (res / "beta/out/a.txt").read_text() == "beta a\n"
    assert (res / "alpha/out/run.sh").stat().st_mode & 0o111
    assert int((res / "alpha/out/a.txt").stat().st_mtime) == T0

    again = fetch(capsys, fleet, "--json")
    assert again.code == 0, again.err
    document = json.loads(again.out)
    assert [(t["files_sent"], t["files"]) for t in document["targets"]] == [(0, [])] * 4


def test_a_dry_run_lists_what_would_come_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    run = fetch(capsys, fleet, "-n", "-c", "alpha", "-a", "out")
    assert run.code == 0, run.err
    assert run.out.splitlines()[:2] == [
        "would fetch alpha/out: a.txt (new)",
        "would fetch alpha/out: run.sh (new)",
    ]
    assert "dry-run" in run.out
    assert not (fleet.parent / "res").exists()  # not even the folder


def test_a_file_newer_locally_is_kept_and_the_report_says_so(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    assert fetch(capsys, fleet, "-c", "alpha", "-a", "out").code == 0
    mine = fleet.parent / "res/alpha/out/a.txt"
    mine.write_text("edited on the laptop\n")
    stamp(mine, T0 + 60)
    theirs = fleet.parent / "alpha/out/a.txt"
    theirs.write_text("changed on the cluster\n")
    stamp(theirs, T0 + 30)

    run = fetch(capsys, fleet, "-c", "alpha", "-a", "out", "-v")
    assert run.code == 0, run.err
    assert mine.read_text() == "edited on the laptop\n"
    assert "alpha/out: a.txt (kept, newer locally)" in run.out.splitlines()
    assert "! alpha/out: kept 1 file(s) that are newer locally: a.txt" in run.out.splitlines()
    assert "on the cluster" not in run.out

    document = json.loads(fetch(capsys, fleet, "-c", "alpha", "-a", "out", "--json").out)
    (target,) = document["targets"]
    assert (target["files_skipped_newer_local"], target["skipped_newer_local"]) == (1, ["a.txt"])
    assert "skipped_newer_remote" not in target


def test_a_file_where_the_local_folder_goes_fails_that_target_only(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    blocker = fleet.parent / "res/alpha/out"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    run = fetch(capsys, fleet)
    assert run.code == 1
    assert (
        f"✗ alpha/out: the local path {blocker} exists and is not a folder;"
        " move it away or choose another folder"
    ) in run.out.splitlines()
    assert blocker.read_text() == "not a folder"
    assert (fleet.parent / "res/alpha/logs/job.log").exists()  # the others still ran
    assert (fleet.parent / "res/beta/out/a.txt").exists()


def test_a_missing_remote_folder_fails_that_target_in_one_line(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    missing = fleet.parent / "beta/logs"
    for path in missing.iterdir():
        path.unlink()
    missing.rmdir()
    run = fetch(capsys, fleet)
    assert run.code == 1
    problems = [line for line in run.out.splitlines() if line.startswith("✗")]
    assert problems == [f"✗ beta/logs: the remote folder {missing} does not exist"]
    assert not (fleet.parent / "res/beta/logs").exists()
    assert (fleet.parent / "res/beta/out/a.txt").exists()


def test_an_unknown_alias_lists_the_fetch_aliases(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    run = fetch(capsys, fleet, "-a", "proj")
    assert run.code == 2
    assert one_line(run.err) == "sbatchman: error: -a proj: no such alias; known: logs, out"
    assert not (fleet.parent / "res").exists()


def test_two_clusters_in_one_folder_stop_the_fetch_before_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clusters = [
        {"name": name, "fetch_dirs": [{"remote": str(tmp_path / name), "local": "~/r"}]}
        for name in ("alpha", "beta")
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    run = fetch(capsys, config)
    assert run.code == 2
    line = one_line(run.err)
    assert line.startswith(
        f"sbatchman: error: {config}: clusters[1].fetch_dirs[0].local and"
        " clusters[0].fetch_dirs[0].local are the same folder"
    )
    assert line.endswith('for example local = "~/r/{cluster}" in clusters[1].fetch_dirs[0]')


@pytest.mark.parametrize("command", ["sync", "fetch"])
@pytest.mark.parametrize(("cluster", "alias"), [("-c", "-a"), ("--clusters", "--aliases")])
def test_the_original_long_spellings_on_both_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, cluster: str, alias: str
) -> None:
    src = make_tree(tmp_path / "src", {"a.py": "a\n"})
    out = make_tree(tmp_path / "cl/out", {"r.txt": "r\n"})
    dirs = {"sync_dirs": [{"alias": "p", "local": str(src), "remote": str(tmp_path / "cl/p")}]}
    clusters = [
        {"name": name, **dirs, "fetch_dirs": [{"alias": "p", "remote": str(out)}]}
        for name in ("alpha", "beta")
    ]
    config = write_config(tmp_path / "c.toml", clusters, local_base=str(tmp_path / "res"))
    args = [command, "--config", str(config), "-b", "sftp", cluster, "beta", alias, "p", "--json"]
    run = run_cli(capsys, *args)
    assert run.code == 0, run.err
    targets = json.loads(run.out)["targets"]
    assert [(t["cluster"], t["alias"], t["files_sent"]) for t in targets] == [("beta", "p", 1)]
    if command == "fetch":
        assert snapshot(tmp_path / "res").keys() == {"beta", "beta/p", "beta/p/r.txt"}


def test_a_local_folder_in_the_way_is_kept_and_said_to_be_local(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    mine = make_tree(fleet.parent / "res/alpha/out", {"a.txt/notes": "mine\n"})
    run = fetch(capsys, fleet, "-c", "alpha", "-a", "out")
    assert run.code == 0, run.err
    assert "! alpha/out: conflict, kept a.txt (folder not empty locally)" in run.out.splitlines()
    assert (mine / "a.txt/notes").read_text() == "mine\n"
    document = json.loads(fetch(capsys, fleet, "-c", "alpha", "-a", "out", "--json").out)
    assert document["targets"][0]["conflicts"] == [
        {"path": "a.txt", "why": "folder not empty locally"}
    ]


def test_ls_fetch_shows_what_a_fetch_would_bring_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], fleet: Path
) -> None:
    run = run_cli(capsys, "ls", "--config", str(fleet), "--fetch", "-b", "sftp", "-c", "beta")
    assert run.code == 0, run.err
    res = fleet.parent / "res"
    assert run.out.splitlines() == [
        f"beta/out: {fleet.parent / 'beta/out'} -> {res / 'beta/out'}",
        "  a.txt",
        "  run.sh",
        "  2 file(s), 17 B",
        f"beta/logs: {fleet.parent / 'beta/logs'} -> {res / 'beta/logs'}",
        "  job.log",  # core.tmp: global.fetch_excludes
        "  1 file(s), 5 B",
    ]
    assert not res.exists()
    shutil.rmtree(fleet.parent / "beta/logs")
    missing = run_cli(capsys, "ls", "--config", str(fleet), "--fetch", "-b", "sftp", "-a", "logs")
    assert missing.code == 1
    assert f"  ! the remote folder {fleet.parent / 'beta/logs'} does not exist" in missing.out
    explain = run_cli(
        capsys, "ls", "--config", str(fleet), "--fetch", "-a", "out", "--explain", "run.sh"
    )
    assert (explain.code, explain.err) == (0, "")
    assert explain.out.splitlines() == [
        f"{name}/out: run.sh: fetched: no exclude matches it (comes now: new)"
        for name in ("alpha", "beta")
    ]
    gitignore = run_cli(capsys, "ls", "--config", str(fleet), "--fetch", "--gitignore")
    assert gitignore.code == 2
    assert one_line(gitignore.err) == (
        "sbatchman: error: --gitignore does not go with --fetch (it judges local sync_dirs)"
    )


def test_a_fetch_that_uses_no_rsync_never_imports_the_rsync_backend(fleet: Path) -> None:
    """The rsync modules cost every SFTP run ~20 ms of start-up: only rsync sessions load them."""
    code = (
        "import sys\n"
        "from sbatchman.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as done:\n"
        "    print(done.code, sorted(m for m in sys.modules if 'rsync' in m))\n"
    )
    argv = ["fetch", "--config", str(fleet), "-b", "sftp", "-q"]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.stdout.splitlines()[-1:] == ["0 []"], done.stdout + done.stderr
