"""The exact lines a user sees for bad input, and the commands that need no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import IsolatedEnv
from tests.support.project import run_cli, write_config
from tests.support.trees import make_tree


@pytest.fixture
def local_config(tmp_path: Path) -> Path:
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n", "big.bin": "b", "run.sh": "#!/bin/sh\n"})
    cluster = {
        "name": "scratch",
        "sync_dirs": [
            {"alias": "proj", "local": str(proj), "remote": str(tmp_path / "dest/proj")},
        ],
    }
    other = {"name": "other", "sync_dirs": [{"alias": "p2", "local": str(proj)}]}
    return write_config(tmp_path / "c.toml", [cluster, other], common_excludes=["*.bin"])


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_config_exits_2_with_how_to_create(
    capsys: pytest.CaptureFixture[str], isolated_env: IsolatedEnv
) -> None:
    run = run_cli(capsys, "sync")
    assert run.code == 2
    assert one_error_line(run.err) == (
        f"sbatchman: error: no config file at {isolated_env.config}; create one with"
        " `sbatchman config init` (or point --config / $SBATCHMAN_CONFIG at yours)"
    )
    assert not isolated_env.config.exists()


def test_config_error_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[clusters]]\nname = 'a'\nhots = 'x'\n")
    run = run_cli(capsys, "sync", "--config", str(bad))
    assert run.code == 2
    assert one_error_line(run.err) == (
        f"sbatchman: error: {bad}: clusters[0].hots: unknown key 'hots'; did you mean 'host'?"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "nope"], "-c nope: no such cluster; known: scratch, other"),
        (["-a", "nope"], "-a nope: no such alias; known: p2, proj"),
        (["-b", "scp"], "unknown backend 'scp'; choose rsync or sftp"),
    ],
)
def test_selection_mistakes_list_the_known_names(
    capsys: pytest.CaptureFixture[str], local_config: Path, args: list[str], message: str
) -> None:
    run = run_cli(capsys, "sync", "--config", str(local_config), *args)
    assert run.code == 2
    assert one_error_line(run.err) == f"sbatchman: error: {message}"


def test_missing_local_folder_names_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    config = write_config(
        tmp_path / "c.toml", [{"name": "x", "sync_dirs": [{"alias": "a", "local": str(missing)}]}]
    )
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 2
    assert one_error_line(run.err) == (
        f"sbatchman: error: {config}: clusters[0].sync_dirs[0].local: {missing} does not exist;"
        " fix the path or create the folder"
    )
    missing.write_text("a file")
    run = run_cli(capsys, "sync", "--config", str(config))
    assert "is not a folder" in one_error_line(run.err)


def test_bad_pattern_is_a_config_error(
    capsys: pytest.CaptureFixture[str], local_config: Path
) -> None:
    run = run_cli(capsys, "sync", "--config", str(local_config), "-e", "[oops")
    assert run.code == 2
    line = one_error_line(run.err)
    assert "[oops" in line and "-e" in line


def test_unknown_option_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, "sync", "--frobnicate")
    assert run.code == 2
    assert run.err == (
        "sbatchman: error: No such option: --frobnicate (see `sbatchman sync --help`)\n"
    )
    run = run_cli(capsys, "sync", "-j", "0")
    assert run.code == 2
    assert run.err == (
        "sbatchman: error: Invalid value for '-j' / '--jobs': 0 is not in the range x>=1"
        " (see `sbatchman sync --help`)\n"
    )


def test_config_path_expands_tilde_from_flag_and_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run_cli(capsys, "config", "path", "--config", "~/a.toml").out == f"{tmp_path}/a.toml\n"
    monkeypatch.setenv("SBATCHMAN_CONFIG", "~/b.toml")
    assert run_cli(capsys, "config", "path").out == f"{tmp_path}/b.toml\n"
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "config", "init").code == 0
    assert (tmp_path / "b.toml").is_file() and not (tmp_path / "~").exists()


def test_config_init_where_it_cannot_write_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "c.toml"
    run = run_cli(capsys, "config", "init", "--config", str(target))
    assert run.code == 2
    assert run.err.startswith(f"sbatchman: error: cannot create {target}: ")
    assert run.err.count("\n") == 1


def test_local_cluster_sync_then_noop(
    capsys: pytest.CaptureFixture[str], local_config: Path
) -> None:
    run = run_cli(capsys, "sync", "--config", str(local_config), "-c", "scratch")
    assert run.code == 0, run.err
    dest = local_config.parent / "dest/proj"
    assert sorted(p.name for p in dest.iterdir()) == ["a.py", "run.sh"]  # *.bin excluded
    assert (dest / "run.sh").stat().st_mode & 0o111
    again = run_cli(capsys, "sync", "--config", str(local_config), "-c", "scratch", "--json")
    assert '"files_sent": 0' in again.out


@pytest.mark.parametrize(("cluster", "alias"), [("-c", "-a"), ("--clusters", "--aliases")])
def test_the_original_long_spellings_select_as_the_short_ones(
    capsys: pytest.CaptureFixture[str], local_config: Path, cluster: str, alias: str
) -> None:
    """Scripts written for the original sbatchman pass --clusters and --aliases."""
    args = ["sync", "--config", str(local_config), cluster, "scratch", alias, "proj", "--json"]
    run = run_cli(capsys, *args)
    assert run.code == 0, run.err
    targets = json.loads(run.out)["targets"]
    assert [(t["cluster"], t["alias"]) for t in targets] == [("scratch", "proj")]


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_local_cluster_on_either_backend(
    capsys: pytest.CaptureFixture[str], local_config: Path, backend: str
) -> None:
    run = run_cli(capsys, "sync", "--config", str(local_config), "-c", "scratch", "-b", backend)
    assert run.code == 0, run.err
    assert (local_config.parent / "dest/proj/a.py").exists()
    assert ("local" if backend == "sftp" else "rsync") in run.out


def test_config_init_writes_once_and_the_demo_syncs(
    capsys: pytest.CaptureFixture[str],
    isolated_env: IsolatedEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_tree(tmp_path / "here", {"main.py": "print(1)\n", ".git/HEAD": "x"})
    monkeypatch.chdir(project)
    run = run_cli(capsys, "config", "init")
    assert run.code == 0
    assert isolated_env.config.exists()
    text = isolated_env.config.read_text()
    assert text.startswith("# sbatchman remotes-config.toml")

    again = run_cli(capsys, "config", "init")
    assert again.code == 2
    assert "already exists; not overwriting it" in one_error_line(again.err)
    assert isolated_env.config.read_text() == text

    synced = run_cli(capsys, "sync")
    assert synced.code == 0, synced.err
    demo = isolated_env.home / ".local/share/sbatchman/demo-cluster/project"
    assert (demo / "main.py").exists() and not (demo / ".git").exists()


def test_a_copy_inside_its_own_source_is_refused(
    capsys: pytest.CaptureFixture[str],
    isolated_env: IsolatedEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(isolated_env.home)  # init from home: the demo folder is inside it
    run = run_cli(capsys, "config", "init")
    assert run.code == 2
    assert "run `sbatchman config init` from a project folder" in one_error_line(run.err)
    inside = isolated_env.home / ".local/share/sbatchman/demo-cluster/project/x"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)  # and from inside the demo's own copy
    run = run_cli(capsys, "config", "init")
    assert run.code == 2
    assert "overlap" in one_error_line(run.err)
    assert not isolated_env.config.exists()

    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    for remote in (proj / "copy", tmp_path):
        config = write_config(
            tmp_path / "c.toml",
            [
                {
                    "name": "l",
                    "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(remote)}],
                }
            ],
        )
        run = run_cli(capsys, "sync", "--config", str(config))
        assert run.code == 2
        assert one_error_line(run.err) == (
            f"sbatchman: error: {config}: clusters[0].sync_dirs[0].remote: {remote} overlaps the"
            f" local folder {proj}; a copy inside its own source would grow on every sync."
            " Choose a remote folder outside it"
        )
    assert sorted(p.name for p in proj.iterdir()) == ["a.py"]


def test_config_path_prints_where_it_looks(
    capsys: pytest.CaptureFixture[str], isolated_env: IsolatedEnv
) -> None:
    run = run_cli(capsys, "config", "path")
    assert run.out.strip() == str(isolated_env.config)


def test_help_is_plain_and_fast_to_import() -> None:
    """--help must not import paramiko or the backends (start-up budget); timing is in bench/."""
    code = (
        "import sys\nfrom sbatchman.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "mods = ('paramiko', 'sbatchman.push', 'sbatchman.backends')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "sync" in out.stdout and "Traceback" not in out.stderr


def test_missing_rsync_falls_back_and_says_so(
    capsys: pytest.CaptureFixture[str], local_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(local_config.parent / "empty-bin"))
    run = run_cli(capsys, "sync", "--config", str(local_config), "-c", "scratch")
    assert run.code == 0, run.err
    assert run.err.strip() == (
        "sbatchman: scratch: rsync is not on PATH; using the built-in copier instead"
    )
    assert "local" in run.out
    assert (local_config.parent / "dest/proj/run.sh").exists()


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_a_reader_that_leaves_does_not_stop_the_sync(tmp_path: Path, backend: str) -> None:
    """`sbatchman sync -v | head -1`: rich would exit 1 from the printing worker thread,
    half-way through the push; the lines are dropped instead and the push completes."""
    proj = make_tree(tmp_path / "proj", {f"f{i:04d}.txt": "x\n" for i in range(2000)})
    dest = tmp_path / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "l",
                "transfer_backend": backend,
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
            }
        ],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "sync", "-v", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"l/p: f0")
    proc.stdout.close()  # the reader goes away, as `head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert err == b""
    assert len(list(dest.iterdir())) == 2000


def test_non_ascii_names_are_reported_right_in_the_c_locale(tmp_path: Path) -> None:
    """rsync escapes bytes it finds unprintable in its locale (\\#303\\#251 for é under C)."""
    proj = make_tree(tmp_path / "proj", {"é.txt": "e\n"})
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "l",
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(tmp_path / "d")}],
            }
        ],
    )
    done = subprocess.run(
        [sys.executable, "-m", "sbatchman", "sync", "-v", "--json", "--config", str(config)],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["targets"][0]["files"] == [{"path": "é.txt", "why": "new"}]


@pytest.mark.parametrize(
    "command", [[], ["sync"], ["ls"], ["config"], ["config", "init"], ["config", "path"]]
)
def test_dash_h_is_help_on_every_command(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    short = run_cli(capsys, *command, "-h")
    assert (short.code, short.err) == (0, "")
    assert short.out == run_cli(capsys, *command, "--help").out
    assert short.out.startswith(f"Usage: {' '.join(['sbatchman', *command])} ")


def test_top_level_help_shows_each_command_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = run_cli(capsys, "--help").out
    assert out.split("Commands:\n")[1] == (
        "  sync    Push every sync_dir to every cluster (or those chosen with -c / -a).\n"
        "  fetch   Bring every fetch_dir back from its cluster (or those of -c / -a).\n"
        "  ls      Show the files a sync would consider, without touching the network.\n"
        "  config  Create or locate the config file.\n"
    )
    assert "  -h, --help  Show this message and exit.\n" in out
    monkeypatch.setenv("COLUMNS", "50")  # narrower: folded onto more lines, never cut
    narrow = run_cli(capsys, "--help").out.split("Commands:\n")[1]
    assert " ".join(narrow.split()) == " ".join(out.split("Commands:\n")[1].split())


def test_jobs_has_one_default() -> None:
    """-j defaults to model.JOBS, the default every caller of sync() gets."""
    import inspect

    from sbatchman.cli import sync as sync_command
    from sbatchman.model import JOBS, Request

    assert inspect.signature(sync_command).parameters["jobs"].default == JOBS
    assert Request().jobs == JOBS
