"""Configs as the original sbatchman's editor writes them load, and sync, unchanged.

Its editor leaves `alias` out of [[clusters.sync_dirs]] when the field is empty, older files
call the fetch pairs `dirs`, values are stripped, the port is an integer and the backend name
is read in any case. Unknown keys stay errors: a silently ignored `exlcudes` would push what
the user meant to keep out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.config import load, parse
from sbatchman.errors import ConfigError
from tests.support.project import run_cli
from tests.support.trees import make_tree


def fail(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "c.toml")
    return str(err.value).removeprefix(f"{tmp_path / 'c.toml'}: ")


def test_a_sync_dir_without_alias_is_named_after_its_remote_folder(tmp_path: Path) -> None:
    text = (
        "[[clusters]]\nname = 'a'\n"
        "[[clusters.sync_dirs]]\nlocal = '/src/proj'\nremote = '~/work/proj/'\n"
        "[[clusters.sync_dirs]]\nremote = '/scratch/me/lib'\n"
    )
    proj, lib = parse(text, tmp_path / "c.toml").clusters[0].sync_dirs
    assert (proj.alias, proj.local, proj.remote) == ("proj", Path("/src/proj"), "work/proj/")
    assert (lib.alias, lib.remote) == ("lib", "/scratch/me/lib")
    assert lib.local == Path.cwd() / "lib"  # no local: the alias, from the current folder


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (
            "alias = 'proj'\nremote = '/x/other'",
            "remote = '/y/proj'",
            "clusters[0].sync_dirs[1].remote: duplicate alias 'proj' in this cluster (also"
            " clusters[0].sync_dirs[0].alias; a folder without alias is named after its"
            ' remote); add alias = "..." to one',
        ),
        (
            "remote = '/y/proj'",
            "alias = 'proj'",
            "clusters[0].sync_dirs[1].alias: duplicate alias 'proj' in this cluster (also"
            " clusters[0].sync_dirs[0].remote; a folder without alias is named after its"
            ' remote); add alias = "..." to one',
        ),
        (
            "remote = '/x/proj'",
            "remote = '/y/proj/'",
            "clusters[0].sync_dirs[1].remote: duplicate alias 'proj' in this cluster (also"
            " clusters[0].sync_dirs[0].remote; a folder without alias is named after its"
            ' remote); add alias = "..." to one',
        ),
    ],
)
def test_a_name_taken_from_the_remote_that_clashes_names_both_places(
    tmp_path: Path, first: str, second: str, expected: str
) -> None:
    text = (
        "[[clusters]]\nname = 'a'\n"
        f"[[clusters.sync_dirs]]\n{first}\n[[clusters.sync_dirs]]\n{second}\n"
    )
    assert fail(text, tmp_path) == expected


@pytest.mark.parametrize("remote", ["~/", "/", ".", "", "../"])
def test_a_remote_with_no_folder_name_needs_an_alias(tmp_path: Path, remote: str) -> None:
    text = f"[[clusters]]\nname = 'a'\n[[clusters.sync_dirs]]\nremote = '{remote}'\n"
    assert fail(text, tmp_path) == (
        f"clusters[0].sync_dirs[0].alias: missing, and remote {remote!r} ends in no folder"
        ' name to call it; add alias = "..."'
    )


def test_dirs_is_the_old_name_of_fetch_dirs(tmp_path: Path) -> None:
    text = "[[clusters]]\nname = 'a'\n[[clusters.dirs]]\nremote = '~/app1/'\nlocal = 'res'\n"
    (pair,) = parse(text, tmp_path / "c.toml").clusters[0].fetch_dirs
    assert (pair.alias, pair.remote, pair.where) == ("app1", "app1/", "clusters[0].dirs[0]")
    both = text + "[[clusters.fetch_dirs]]\nremote = 'x'\n"
    assert fail(both, tmp_path) == (
        "clusters[0].dirs: the old name of fetch_dirs, and this cluster has fetch_dirs too;"
        " move these into [[clusters.fetch_dirs]]"
    )
    assert fail("[[clusters]]\nname = 'a'\ndirs = 3\n", tmp_path) == (
        "clusters[0].dirs: must be an array of tables: write each one as [[clusters.dirs]]"
    )


def test_a_cluster_without_name_is_named_after_its_host(tmp_path: Path) -> None:
    cfg = parse("[[clusters]]\nhost = ' login.a '\n", tmp_path / "c.toml")
    assert [(c.name, c.host) for c in cfg.clusters] == [("login.a", "login.a")]
    clash = "[[clusters]]\nname = 'login.a'\n[[clusters]]\nhost = 'login.a'\n"
    assert fail(clash, tmp_path) == (
        "clusters[1].host: duplicate cluster name 'login.a' (also clusters[0].name);"
        ' a cluster without a name is named after its host: add name = "..."'
    )
    clash = "[[clusters]]\nhost = 'login.a'\n[[clusters]]\nname = 'login.a'\n"
    assert fail(clash, tmp_path) == (
        "clusters[1].name: duplicate cluster name 'login.a' (also clusters[0].host);"
        " names must be unique"
    )


@pytest.mark.parametrize(("written", "read"), [("RSYNC", "rsync"), ("Sftp", "sftp")])
def test_the_backend_name_is_read_in_any_case(tmp_path: Path, written: str, read: str) -> None:
    text = f"[global]\ntransfer_backend = '{written}'\n[[clusters]]\nname = 'a'\n"
    text += f"transfer_backend = ' {written} '\n"
    cfg = parse(text, tmp_path / "c.toml")
    assert (cfg.settings.transfer_backend, cfg.clusters[0].transfer_backend) == (read, read)


@pytest.mark.parametrize(("written", "read"), [("'2222'", 2222), ("' 22 '", 22), ("2200", 2200)])
def test_a_port_may_be_a_string_of_digits(tmp_path: Path, written: str, read: int) -> None:
    text = f"[[clusters]]\nname = 'a'\nport = {written}\n"
    assert parse(text, tmp_path / "c.toml").clusters[0].port == read


@pytest.mark.parametrize("written", ["'22a'", "'-22'", "'0'", "'65536'", "'²'", "'+22'", "''"])
def test_a_port_that_is_not_digits_stays_an_error(tmp_path: Path, written: str) -> None:
    message = fail(f"[[clusters]]\nname = 'a'\nport = {written}\n", tmp_path)
    assert message == f"clusters[0].port: must be a port number (1-65535), not str {written}"


def test_surrounding_spaces_in_paths_and_names_are_stripped(tmp_path: Path) -> None:
    text = (
        f"[global]\nlocal_base = ' {tmp_path} '\n"
        "[[clusters]]\nname = ' a '\nkey_path = ' /k/id '\nssh_config = ' /k/cfg '\n"
        "[[clusters.sync_dirs]]\nalias = ' p '\nlocal = ' /src/p '\nremote = ' /dst/p '\n"
        "[[clusters.sync_dirs]]\nalias = ' q '\n"
    )
    cfg = parse(text, tmp_path / "c.toml")
    a = cfg.clusters[0]
    assert (a.name, a.key_path, a.ssh_config) == ("a", Path("/k/id"), Path("/k/cfg"))
    p, q = a.sync_dirs
    assert (p.alias, p.local, p.remote) == ("p", Path("/src/p"), "/dst/p")
    assert (q.alias, q.local, q.remote) == ("q", tmp_path / "q", "q")


def test_a_relative_local_is_taken_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the original and SkyPilot do; local_base only places folders that give no local."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    text = (
        "[global]\nlocal_base = '/base'\n[[clusters]]\nname = 'a'\n"
        "[[clusters.sync_dirs]]\nalias = 'p'\nlocal = 'code/p'\n"
        "[[clusters.sync_dirs]]\nalias = 'q'\n"
        "[[clusters.fetch_dirs]]\nremote = 'out'\nlocal = 'results'\n"
    )
    a = parse(text, tmp_path / "c.toml").clusters[0]
    assert [d.local for d in a.sync_dirs] == [here / "code/p", Path("/base/q")]
    assert a.fetch_dirs[0].local == here / "results"


def test_unknown_keys_stay_errors_with_a_suggestion(tmp_path: Path) -> None:
    text = "[[clusters]]\nname = 'a'\n[[clusters.sync_dirs]]\nremote = 'x'\nexlcudes = ['y']\n"
    assert fail(text, tmp_path) == (
        "clusters[0].sync_dirs[0].exlcudes: unknown key 'exlcudes'; did you mean 'excludes'?"
    )


# Exactly what the original's editor writes: no alias, `dirs` for the fetch pairs, an integer
# port, stripped values; the backend as a user typed it, which the original lower-cases.
ORIGINAL = """\
[global]
local_base = "~/SbatchMan"
transfer_backend = "{backend}"
common_excludes = [".git", "__pycache__"]
sync_excludes = ["*.ckpt"]
fetch_excludes = []

[[clusters]]
name = "demo"

[[clusters.sync_dirs]]
local = "proj"
remote = "{dest}/proj"
excludes = ["data/"]

[[clusters.sync_dirs]]
local = "{lib}"
remote = "{dest}/libs/lib/"

[[clusters.dirs]]
remote = "{dest}/proj/results"
local = "results"

[[clusters]]
host = "login.cluster-b.example.org"
user = "me"
port = 2222

[[clusters.sync_dirs]]
local = "proj"
remote = "proj"
"""


@pytest.mark.parametrize(("backend", "engine"), [("RSYNC", "rsync"), ("Sftp", "local")])
def test_a_config_written_by_the_original_syncs_end_to_end(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    engine: str,
) -> None:
    work = tmp_path / "work"
    make_tree(work / "proj", {"run.sh": "#!/bin/sh\n", "a.py": "a\n", "m.ckpt": "x", "data/d": "d"})
    lib = make_tree(tmp_path / "lib", {"lib.py": "l\n", ".git/HEAD": "ref\n"})
    dest = tmp_path / "cluster"
    config = tmp_path / "remotes-config.toml"
    config.write_text(ORIGINAL.format(backend=backend, dest=dest, lib=lib))
    monkeypatch.chdir(work)  # the relative `local = "proj"` is taken from here

    cfg = load(config)
    assert [c.name for c in cfg.clusters] == ["demo", "login.cluster-b.example.org"]
    assert [d.alias for d in cfg.clusters[0].sync_dirs] == ["proj", "lib"]

    run = run_cli(capsys, "sync", "--config", str(config), "-c", "demo")
    assert run.code == 0, run.err
    assert engine in run.out
    assert sorted(p.name for p in (dest / "proj").iterdir()) == ["a.py", "run.sh"]
    assert (dest / "proj/run.sh").stat().st_mode & 0o111
    assert sorted(p.name for p in (dest / "libs/lib").iterdir()) == ["lib.py"]

    again = run_cli(capsys, "sync", "--config", str(config), "-c", "demo", "-a", "lib", "--json")
    assert again.code == 0, again.err
    assert '"files_sent": 0' in again.out
    listed = run_cli(capsys, "ls", "--config", str(config), "-c", "demo", "-a", "proj")
    assert listed.code == 0, listed.err
    assert "a.py" in listed.out and "m.ckpt" not in listed.out


@pytest.mark.parametrize("key", ["dirs", "fetch_dirs"])
def test_a_config_written_by_the_original_fetches_into_its_local_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Its fetch pairs have no alias and a local relative to where it runs: they land there,
    not under local_base (the original never read it for fetch)."""
    work = tmp_path / "work"
    work.mkdir()
    dest = tmp_path / "cluster"
    make_tree(dest / "proj/results", {"r1.csv": "1\n", "sub/r2.csv": "2\n", "x.ckpt": "c"})
    lib = make_tree(tmp_path / "lib", {"lib.py": "l\n"})
    text = ORIGINAL.format(backend="Sftp", dest=dest, lib=lib)
    config = tmp_path / "remotes-config.toml"
    config.write_text(text.replace("[[clusters.dirs]]", f"[[clusters.{key}]]"))
    monkeypatch.chdir(work)

    (pair,) = load(config).clusters[0].fetch_dirs
    assert (pair.alias, pair.local) == ("results", work / "results")
    run = run_cli(capsys, "fetch", "--config", str(config), "-c", "demo", "-a", "results")
    assert run.code == 0, run.err
    got = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    # sync_excludes (*.ckpt) are the original's sync layer: a fetch brings the checkpoint
    assert got == ["results/r1.csv", "results/sub/r2.csv", "results/x.ckpt"]
    assert not (Path.home() / "SbatchMan").exists()
