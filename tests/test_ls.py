"""`sbatchman ls`: the considered files, and --explain naming each rule and where it came from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.project import make_tree, run_cli, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    proj = make_tree(
        tmp_path / "proj",
        {
            "src/a.py": "a\n",
            "src/big.bin": "b\n",
            "src/run.log": "l\n",
            "src/.sbatchmanignore": "# logs stay here\n*.log\n",
            "data/x": "x\n",
            "ckpt/w.pt": "w\n",
            "notes.tmp": "t\n",
        },
    )
    cluster = {
        "name": "loc",
        "excludes": ["data/"],
        "sync_dirs": [
            {"alias": "p", "local": str(proj), "remote": str(tmp_path / "d"), "excludes": ["ckpt"]}
        ],
    }
    return write_config(tmp_path / "c.toml", [cluster], common_excludes=["*.bin"])


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("src/big.bin", "not pushed: excluded by '*.bin' from global.common_excludes"),
        (
            "data/x",
            "not pushed: its parent folder data is excluded by 'data/' from clusters[0].excludes,"
            " so nothing inside it is pushed",
        ),
        ("ckpt", "not pushed: excluded by 'ckpt' from clusters[0].sync_dirs[0].excludes"),
        ("src/run.log", "not pushed: ignored by '*.log' from src/.sbatchmanignore:2"),
        ("notes.tmp", "not pushed: excluded by '*.tmp' from -e"),
        ("src/a.py", "pushed: no exclude or ignore rule matches it"),
    ],
)
def test_explain_names_the_rule_and_its_source(
    capsys: pytest.CaptureFixture[str], config: Path, path: str, reason: str
) -> None:
    run = run_cli(capsys, "ls", "--config", str(config), "-e", "*.tmp", "--explain", path)
    assert run.code == 0, run.err
    assert run.out.strip() == f"loc/p: {path}: {reason}"


def test_ls_lists_what_sync_would_consider(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    run = run_cli(capsys, "ls", "--config", str(config))
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f"loc/p: {tmp_path / 'proj'} -> {tmp_path / 'd'}",
        "  notes.tmp",
        "  src/",
        "  src/a.py",
        "  2 file(s), 4 B",
    ]
    assert not (tmp_path / "d").exists()  # ls never writes


def test_gitignore_is_off_by_default_and_switchable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proj = make_tree(
        tmp_path / "repo",
        {".gitignore": "*.out\n", "a.py": "a\n", "b.out": "b\n", ".git/HEAD": "x"},
    )
    dest = tmp_path / "dest"
    cluster = {
        "name": "loc",
        "sync_dirs": [{"alias": "r", "local": str(proj), "remote": str(dest)}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])

    def landed(*flags: str) -> set[str]:
        run = run_cli(capsys, "sync", "--config", str(config), "-b", "sftp", *flags)
        assert run.code == 0, run.err
        names = {p.relative_to(dest).as_posix() for p in dest.rglob("*")}
        shutil.rmtree(dest)  # the next run starts from an empty destination
        return names

    assert "b.out" in landed()  # existing configs keep their meaning
    assert landed("--gitignore") == {".gitignore", "a.py"}  # and .git is never pushed
    write_config(config, [{**cluster, "respect_gitignore": True}])
    assert "b.out" not in landed()
    assert "b.out" in landed("--no-gitignore")
