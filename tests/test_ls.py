"""`sbatchman ls`: the considered files, and --explain naming each rule and where it came from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.project import run_cli, write_config
from tests.support.trees import make_tree


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


def test_explain_an_absolute_path_in_one_of_several_sync_dirs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = make_tree(tmp_path / "one", {"src/a.py": "a\n"})
    two = make_tree(tmp_path / "two", {"b.py": "b\n"})
    cluster = {
        "name": "far",
        "host": "hpc.example.org",  # no user: ls never connects, so it needs none
        "sync_dirs": [{"alias": "one", "local": str(one)}, {"alias": "two", "local": str(two)}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    run = run_cli(capsys, "ls", "--config", str(config), "--explain", str(one / "src/a.py"))
    assert run.code == 0, run.err
    assert run.out == "far/one: src/a.py: pushed: no exclude or ignore rule matches it\n"
    monkeypatch.chdir(one / "src")  # relative to where the user stands, inside a sync_dir
    run = run_cli(capsys, "ls", "--config", str(config), "--explain", "a.py")
    assert run.out == "far/one: src/a.py: pushed: no exclude or ignore rule matches it\n"
    run = run_cli(capsys, "ls", "--config", str(config), "--explain", str(tmp_path / "x"))
    assert run.code == 2
    assert run.err == (
        f"sbatchman: error: {tmp_path / 'x'} is in no selected sync_dir ({one}, {two})\n"
    )


def test_names_are_listed_on_one_line_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proj = make_tree(tmp_path / "p", {"new\nline": "x\n"})
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "l",
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(tmp_path / "d")}],
            }
        ],
    )
    run = run_cli(capsys, "ls", "--config", str(config))
    assert "  new\\#012line\n" in run.out


def test_ignore_file_notes_warn_and_bad_own_ignore_file_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A .gitignore line git accepts but can never match is a note: the sync still succeeds.
    A bad line in our own .sbatchmanignore is a config error before anything is sent."""
    proj = make_tree(tmp_path / "p", {".gitignore": "[oops\n*.o\n", "a.py": "a\n", "b.o": "o"})
    dest = tmp_path / "d"
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "l",
                "respect_gitignore": True,
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
            }
        ],
    )
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert "! l/p: .gitignore:1: pattern '[oops' is ignored" in run.out
    assert sorted(p.name for p in dest.iterdir()) == [".gitignore", "a.py"]
    (proj / "sub").mkdir()
    (proj / "sub" / ".sbatchmanignore").write_text("ok\n[oops\n")
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 2
    assert run.err.startswith("sbatchman: error: bad pattern '[oops' in sub/.sbatchmanignore:2")
    assert not (dest / "sub").exists()


def test_explain_through_a_symlinked_home(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/home is often a link to /gpfs: a path given through the link is the same file."""
    real = make_tree(
        tmp_path / "gpfs" / "proj",
        {"sub/x.log": "x\n", "run42/f": "f\n"},
        links={"latest": "run42"},
    )
    (tmp_path / "home").symlink_to(tmp_path / "gpfs")
    config = write_config(
        tmp_path / "c.toml",
        [{"name": "l", "sync_dirs": [{"alias": "p", "local": str(real)}]}],
        common_excludes=["*.log"],
    )
    linked = tmp_path / "home" / "proj" / "sub" / "x.log"
    run = run_cli(capsys, "ls", "--config", str(config), "--explain", str(linked))
    assert run.code == 0, run.err
    assert (
        run.out == "l/p: sub/x.log: not pushed: excluded by '*.log' from global.common_excludes\n"
    )
    monkeypatch.chdir(tmp_path / "home" / "proj" / "sub")
    run = run_cli(capsys, "ls", "--config", str(config), "--explain", "x.log")
    assert run.out.startswith("l/p: sub/x.log: not pushed")
    # A link inside the tree is an entry of its own, never followed, whatever the spelling.
    for spelled in ("home", "gpfs"):
        path = tmp_path / spelled / "proj" / "latest" / "f"
        run = run_cli(capsys, "ls", "--config", str(config), "--explain", str(path))
        assert run.out.startswith("l/p: latest/f: not pushed"), run.out + run.err


def test_explain_takes_many_paths_in_the_order_given(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """As `git check-ignore a b c`: each path answered in turn, none silently dropped."""
    run = run_cli(
        capsys, "ls", "--config", str(config), "--explain", "src/a.py", "--explain", "ckpt"
    )
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        "loc/p: src/a.py: pushed: no exclude or ignore rule matches it",
        "loc/p: ckpt: not pushed: excluded by 'ckpt' from clusters[0].sync_dirs[0].excludes",
    ]
    outside = tmp_path / "elsewhere"
    run = run_cli(
        capsys, "ls", "--config", str(config), "--explain", "src/a.py", "--explain", str(outside)
    )
    assert run.code == 2
    assert run.out == ""  # refused before anything is answered
    assert run.err == (
        f"sbatchman: error: {outside} is in no selected sync_dir ({tmp_path / 'proj'})\n"
    )


def test_ls_escapes_names_in_every_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    proj = make_tree(tmp_path / "p\x1b[2J", {"a\x1b]0;T\x07": "x\n", "lit\\#033": "y\n"})
    (proj / ".gitignore").write_text("[oops\x1b[2J\n")  # a note that quotes the line
    config = write_config(
        tmp_path / "c.toml",
        [{"name": "c\x1b[31m", "sync_dirs": [{"alias": "[/]", "local": str(proj)}]}],
    )
    run = run_cli(capsys, "ls", "--config", str(config), "--gitignore")
    assert run.code == 0, run.err
    assert run.out.splitlines()[1:] == [
        "  .gitignore",
        "  a\\#033]0;T\\#007",
        "  lit\\#134#033",
        "  ! .gitignore:1: pattern '[oops\\x1b[2J' is ignored (it has a '[' without a closing"
        " ']', so it can never match)",
        "  3 file(s), 14 B",
    ]
    assert run.out.splitlines()[0].startswith(f"c\\#033[31m/[/]: {tmp_path}/p\\#033[2J -> ")
    explained = run_cli(capsys, "ls", "--config", str(config), "--explain", "a\x1b]0;T\x07")
    assert explained.out == (
        "c\\#033[31m/[/]: a\\#033]0;T\\#007: pushed: no exclude or ignore rule matches it\n"
    )
