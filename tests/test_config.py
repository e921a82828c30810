"""Config loading: typed objects from good files, one precise line for every kind of bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.config import default_config_path, load, parse
from sbatchman.errors import ConfigError
from sbatchman.precedence import backend_for, batch_for, gitignore_for, merge_excludes, timeout_for
from sbatchman.selection.walk import Rule

NO_USER = "sbatchman-no-such-user"

GOOD = """
[global]
transfer_backend = "sftp"
common_excludes = [".git", "*.pyc"]
sync_excludes = ["results/", ".git"]
local_base = "{base}"

[[clusters]]
name = "a"
host = "login.a"
user = "me"
port = 2222
key_path = "~/.ssh/id_a"
excludes = ["data/"]
sync_excludes = ["*.pyc", "wandb"]

[[clusters.sync_dirs]]
alias = "proj"
local = "proj"
remote = "~/work/proj"
excludes = ["ckpt/"]

[[clusters.sync_dirs]]
alias = "lib"

[[clusters.fetch_dirs]]
alias = "out"
local = "out"
remote = "/scratch/out"

[[clusters]]
name = "b"
host = "b-alias"
transfer_backend = "rsync"
"""


def good(tmp_path: Path) -> str:
    return GOOD.replace("{base}", str(tmp_path))


def fail(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "remotes-config.toml")
    return str(err.value)


def test_good_config_gives_typed_frozen_objects(tmp_path: Path) -> None:
    cfg = parse(good(tmp_path), tmp_path / "c.toml")
    a, b = cfg.clusters
    assert (a.name, a.host, a.user, a.port) == ("a", "login.a", "me", 2222)
    assert a.key_path == Path.home() / ".ssh/id_a"
    assert b.port is None and b.user is None  # left to ssh config / defaults
    proj, lib = a.sync_dirs
    assert proj.local == Path.cwd() / "proj"  # a relative local is from the current folder
    assert proj.remote == "work/proj"  # ~/x means under the login directory
    # Without local, the folder is the alias under local_base.
    assert lib.local == tmp_path / "lib" and lib.remote == "lib"
    assert proj.where == "clusters[0].sync_dirs[0]"
    assert a.fetch_dirs[0].remote == "/scratch/out"
    with pytest.raises(AttributeError):
        a.name = "z"  # type: ignore[misc]


def test_fetch_dirs_of_the_original_sbatchman_need_no_alias(tmp_path: Path) -> None:
    text = (
        "[[clusters]]\nname='a'\nhost='h'\nuser='u'\n"
        "[[clusters.fetch_dirs]]\nremote='~/app1/'\nlocal='~/results/app1'\nexcludes=['tmp']\n"
        "[[clusters.fetch_dirs]]\nremote='/scratch/app1'\n"
    )
    first, second = parse(text, tmp_path / "c.toml").clusters[0].fetch_dirs
    assert (first.alias, first.remote, first.excludes) == ("app1", "app1/", ("tmp",))
    assert (second.alias, second.remote) == ("app1", "/scratch/app1")


def test_exclude_merge_order_dedup_and_sources(tmp_path: Path) -> None:
    cfg = parse(good(tmp_path), tmp_path / "c.toml")
    a = cfg.clusters[0]
    rules = merge_excludes(cfg.settings, a, a.sync_dirs[0], ["-x-", "ckpt/"])
    assert rules == (
        Rule(".git", "global.common_excludes"),
        Rule("*.pyc", "global.common_excludes"),
        Rule("results/", "global.sync_excludes"),
        Rule("data/", "clusters[0].excludes"),
        Rule("wandb", "clusters[0].sync_excludes"),
        Rule("ckpt/", "clusters[0].sync_dirs[0].excludes"),
        Rule("-x-", "-e"),
    )


@pytest.mark.parametrize(
    ("layer", "expected_source"),
    [
        ("common_excludes", "global.common_excludes"),
        ("sync_excludes", "global.sync_excludes"),
        ("cluster_excludes", "clusters[0].excludes"),
        ("cluster_sync_excludes", "clusters[0].sync_excludes"),
        ("dir_excludes", "clusters[0].sync_dirs[0].excludes"),
        ("cli", "-e"),
    ],
)
def test_each_layer_alone_reaches_the_merge(
    tmp_path: Path, layer: str, expected_source: str
) -> None:
    places = {
        "common_excludes": "[global]\ncommon_excludes = ['P']\n",
        "sync_excludes": "[global]\nsync_excludes = ['P']\n",
    }
    cluster = "[[clusters]]\nname = 'c'\n"
    if layer == "cluster_excludes":
        cluster += "excludes = ['P']\n"
    if layer == "cluster_sync_excludes":
        cluster += "sync_excludes = ['P']\n"
    text = places.get(layer, "") + cluster + "[[clusters.sync_dirs]]\nalias = 'x'\n"
    if layer == "dir_excludes":
        text += "excludes = ['P']\n"
    cfg = parse(text, tmp_path / "c.toml")
    c = cfg.clusters[0]
    rules = merge_excludes(cfg.settings, c, c.sync_dirs[0], ["P"] if layer == "cli" else [])
    assert rules == (Rule("P", expected_source),)


def test_backend_precedence(tmp_path: Path) -> None:
    cfg = parse(good(tmp_path), tmp_path / "c.toml")
    a, b = cfg.clusters
    assert backend_for(cfg.settings, a, None) == "sftp"  # global
    assert backend_for(cfg.settings, b, None) == "rsync"  # cluster beats global
    assert backend_for(cfg.settings, b, "sftp") == "sftp"  # flag beats all
    bare = parse("[[clusters]]\nname='x'\n", tmp_path / "c.toml")
    assert backend_for(bare.settings, bare.clusters[0], None) == "rsync"


def test_timeout_and_batch_precedence(tmp_path: Path) -> None:
    bare = parse("[[clusters]]\nname='x'\n", tmp_path / "c.toml").settings
    assert (bare.connect_timeout, bare.stall_timeout) == (15.0, 120.0)  # the documented defaults
    assert timeout_for(None, bare.connect_timeout) == 15.0
    assert timeout_for(None, 40.0) == 40.0  # the config beats the default
    assert timeout_for(3.0, 40.0) == 3.0  # the flag beats the config
    assert batch_for(False, interactive=True) is False
    assert batch_for(False, interactive=False) is True  # nobody at a terminal to answer
    assert batch_for(True, interactive=True) is True


def test_gitignore_precedence(tmp_path: Path) -> None:
    text = (
        "[global]\nrespect_gitignore = true\n[[clusters]]\nname='c'\nrespect_gitignore = false\n"
        "[[clusters.sync_dirs]]\nalias='a'\n[[clusters.sync_dirs]]\nalias='b'\n"
        "respect_gitignore = true\n"
    )
    cfg = parse(text, tmp_path / "c.toml")
    c = cfg.clusters[0]
    assert gitignore_for(cfg.settings, c, c.sync_dirs[0], None) is False
    assert gitignore_for(cfg.settings, c, c.sync_dirs[1], None) is True
    assert gitignore_for(cfg.settings, c, c.sync_dirs[1], False) is False


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (
        f"no config file at {path}; create one with `sbatchman config init`"
        " (or point --config / $SBATCHMAN_CONFIG at yours)"
    )
    assert not path.exists()  # never writes a default


def test_env_variable_moves_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBATCHMAN_CONFIG", str(tmp_path / "x.toml"))
    assert default_config_path() == tmp_path / "x.toml"
    monkeypatch.setenv("SBATCHMAN_CONFIG", f"~{NO_USER}/x.toml")
    with pytest.raises(ConfigError) as err:
        default_config_path()
    assert str(err.value) == (
        f"$SBATCHMAN_CONFIG: '~{NO_USER}/x.toml': cannot expand ~{NO_USER}: write the full path"
    )


def test_a_file_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[global]\nlocal_base = 'caf\xe9'\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (
        f"{path}:2:18: not UTF-8 (byte 0xe9); TOML files are UTF-8: re-save it as UTF-8"
    )


def test_syntax_error_has_file_line_column(tmp_path: Path) -> None:
    message = fail("[global]\ntransfer_backend = 'rsync'\ncommon_excludes = [\n", tmp_path)
    assert message.startswith(f"{tmp_path / 'remotes-config.toml'}:4:1: TOML syntax error: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\nexlcudes=['y']\n",
            "clusters[0].sync_dirs[0].exlcudes: unknown key 'exlcudes'; did you mean 'excludes'?",
        ),
        ("[globl]\n", "globl: unknown key 'globl'; did you mean 'global'?"),
        (
            "[global]\ncommon_excludes = '.git'\n",
            "global.common_excludes: must be a list of strings, not str '.git'",
        ),
        (
            "[[clusters]]\nname='a'\nport='22a'\n",
            "clusters[0].port: must be a port number (1-65535), not str '22a'",
        ),
        (
            "[[clusters]]\nname='a'\ntransfer_backend='scp'\n",
            'clusters[0].transfer_backend: must be one of "rsync", "sftp", not str \'scp\'',
        ),
        (
            "[[clusters]]\nport=22\n",
            'clusters[0].name: missing; every cluster needs a name = "..."',
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters]]\nname='b'\n[[clusters.sync_dirs]]\nlocal='x'\n",
            'clusters[1].sync_dirs[0].alias: missing; every folder needs an alias = "..."',
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters]]\nname='a'\n",
            "clusters[1].name: duplicate cluster name 'a' (also clusters[0].name); names must be"
            " unique",
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\n"
            "[[clusters.sync_dirs]]\nalias='x'\n",
            "clusters[0].sync_dirs[1].alias: duplicate alias 'x' in this cluster (also"
            " clusters[0].sync_dirs[0]); rename one",
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\nremote='~bob/x'\n",
            "clusters[0].sync_dirs[0].remote: '~bob/x': ~user paths are not expanded; write the"
            " full path",
        ),
        ("clusters = 3\n", "clusters: must be an array of tables: write each one as [[clusters]]"),
        (
            "[[clusters]]\nname='a'\n[[clusters.fetch_dirs]]\nlocal='x'\n",
            'clusters[0].fetch_dirs[0].remote: missing; give remote = "..." or an alias',
        ),
        # ssh_config users write `hostname`; difflib alone finds `name` closer.
        (
            "[[clusters]]\nname='a'\nhostname='h'\n",
            "clusters[0].hostname: unknown key 'hostname'; did you mean 'host'?",
        ),
        (
            "[[clusters]]\nname='a'\nUser='me'\n",
            "clusters[0].User: unknown key 'User'; did you mean 'user'?",
        ),
        (
            "[[clusters]]\nname='a'\nidentity_file='k'\n",
            "clusters[0].identity_file: unknown key 'identity_file'; did you mean 'key_path'?",
        ),
        # A NUL would end in a ValueError deep in an os call; an unknown ~user in RuntimeError.
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\nlocal=\"a\\u0000b\"\n",
            "clusters[0].sync_dirs[0].local: must be a non-empty path (no NUL character),"
            " not str 'a\\x00b'",
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\nremote=\"/t/\\u0000\"\n",
            "clusters[0].sync_dirs[0].remote: must be a path (no NUL character), not str"
            " '/t/\\x00'",
        ),
        (
            "[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias=\"x\\u0000\"\n",
            "clusters[0].sync_dirs[0].alias: must be a non-empty string (no NUL character), not"
            " str 'x\\x00'",
        ),
        (
            f"[[clusters]]\nname='a'\nkey_path='~{NO_USER}/k'\n",
            f"clusters[0].key_path: '~{NO_USER}/k': cannot expand ~{NO_USER}: write the full path",
        ),
        (
            f"[[clusters]]\nname='a'\n[[clusters.sync_dirs]]\nalias='x'\nlocal='~{NO_USER}'\n",
            f"clusters[0].sync_dirs[0].local: '~{NO_USER}': cannot expand ~{NO_USER}: write the"
            " full path",
        ),
        (  # `dirs` is read as fetch_dirs' old name, but never offered as a suggestion
            "[[clusters]]\nname='a'\ndir=[]\n",
            "clusters[0].dir: unknown key 'dir'; known keys: excludes, fetch_dirs,"
            " fetch_excludes, host, keep_dirlinks, key_path, name, port, respect_gitignore,"
            " ssh_config, sync_dirs, sync_excludes, transfer_backend, user",
        ),
    ],
)
def test_bad_config_gives_one_line_with_place(tmp_path: Path, text: str, expected: str) -> None:
    message = fail(text, tmp_path)
    assert message == f"{tmp_path / 'remotes-config.toml'}: {expected}"
    assert "\n" not in message


def test_a_byte_order_mark_is_not_a_syntax_error(tmp_path: Path) -> None:
    """Windows editors start UTF-8 files with one; tomllib alone says `1:1 Invalid statement`."""
    path = tmp_path / "c.toml"
    path.write_bytes("\ufeff[[clusters]]\nname = 'a'\n".encode())
    assert load(path).clusters[0].name == "a"
    path.write_bytes("\ufeff[[clusters]]\nname = 'a'\nport = \n".encode())
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}:3:8: TOML syntax error: ")  # places unchanged
