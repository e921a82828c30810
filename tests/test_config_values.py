"""Values that reach ssh or a timeout: refused in one line, exit 2, before anything is created.

Timeouts run through the real command line in a child process with a private TMPDIR, so a
folder left behind (the ssh ControlMaster's, created per cluster) would be seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sbatchman.config import parse
from sbatchman.configschema import MAX_SECONDS, SECONDS_RULE
from sbatchman.errors import ConfigError
from tests.support.project import run_cli, write_config
from tests.support.trees import make_tree


def fail(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        parse(text, tmp_path / "c.toml")
    return str(err.value).removeprefix(f"{tmp_path / 'c.toml'}: ")


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("host", "-oProxyCommand=touch /tmp/x", "host name"),
        ("host", "-x", "host name"),
        ("user", "-oProxyCommand=sh", "user name"),
    ],
)
def test_a_host_or_user_starting_with_a_dash_is_refused(
    tmp_path: Path, key: str, value: str, what: str
) -> None:
    text = f"[[clusters]]\nname = 'a'\nhost = 'h'\n{key} = '{value}'\n"
    if key == "host":
        text = f"[[clusters]]\nname = 'a'\nhost = '{value}'\n"
    assert fail(text, tmp_path) == (
        f"clusters[0].{key}: {value!r} starts with '-', which ssh would read as an option;"
        f" write the {what} itself (or an alias from your ssh config)"
    )


@pytest.mark.parametrize(
    ("key", "toml_value", "char"),
    [
        ("host", '"login a"', " "),
        ("host", '"login\\u001b[31m"', "\x1b"),
        ("host", '"lo\\ngin"', "\n"),
        ("user", '"m e"', " "),
        ("user", '"me\\u0000"', "\x00"),
        ("user", '"me\\u200b"', "\u200b"),
    ],
)
def test_a_space_or_control_character_in_host_or_user_is_refused(
    tmp_path: Path, key: str, toml_value: str, char: str
) -> None:
    text = f"[[clusters]]\nname = 'a'\nhost = 'h'\n{key} = {toml_value}\n"
    if key == "host":
        text = f"[[clusters]]\nname = 'a'\n{key} = {toml_value}\n"
    message = fail(text, tmp_path)
    assert message.startswith(f"clusters[0].{key}: ")
    tail = f"contains {char!r} (a space or control character), which no {key} name has; remove it"
    assert message.endswith(tail)
    assert "\n" not in message and "\x1b" not in message


def test_a_dash_host_never_reaches_ssh_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """On the rsync backend the host was an ssh argument: `-oProxyCommand=` ran a command."""
    marker = tmp_path / "ran"
    proj = make_tree(tmp_path / "proj", {"a.txt": "a\n"})
    config = write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "evil",
                "host": f"-oProxyCommand=touch {marker}",
                "user": "me",
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": "/tmp/nowhere"}],
            }
        ],
    )
    run = run_cli(capsys, "sync", "--config", str(config), "-b", "rsync", "--batch")
    assert run.code == 2
    assert run.err.count("\n") == 1 and "clusters[0].host: " in run.err
    assert not marker.exists()


def test_hosts_users_and_names_are_stripped(tmp_path: Path) -> None:
    text = "[[clusters]]\nname = ' a '\nhost = '  login.a\t'\nuser = ' me '\n"
    cluster = parse(text, tmp_path / "c.toml").clusters[0]
    assert (cluster.name, cluster.host, cluster.user) == ("a", "login.a", "me")


@pytest.mark.parametrize("key", ["connect_timeout", "stall_timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "0", "-5", str(MAX_SECONDS + 1)])
def test_a_timeout_key_outside_the_rule_is_one_line(tmp_path: Path, key: str, value: str) -> None:
    message = fail(f"[global]\n{key} = {value}\n", tmp_path)
    assert message.startswith(f"global.{key}: must be {SECONDS_RULE}, not ")


def test_integers_too_big_for_a_float_are_one_line(tmp_path: Path) -> None:
    message = fail("[global]\nstall_timeout = 1" + "0" * 400 + "\n", tmp_path)
    assert message.startswith(f"global.stall_timeout: must be {SECONDS_RULE}, not int 1000")
    message = fail("[global]\nstall_timeout = 1" + "0" * 5000 + "\n", tmp_path)
    assert message.endswith(
        "c.toml:2:17: a number of more than 4300 digits, which no setting takes"
    )
    with pytest.raises(ConfigError) as err:
        parse("[[clusters]]\nname = 'a'\nport = 1" + "0" * 5000 + "\n", tmp_path / "c.toml")
    assert str(err.value) == (
        f"{tmp_path / 'c.toml'}:3:8: a number of more than 4300 digits, which no setting takes"
    )


@pytest.mark.parametrize("value", ["0.5", "3", str(MAX_SECONDS)])
def test_a_timeout_inside_the_rule_loads(tmp_path: Path, value: str) -> None:
    settings = parse(f"[global]\nconnect_timeout = {value}\n", tmp_path / "c.toml").settings
    assert settings.connect_timeout == float(value)


def ssh_config_for_nowhere(tmp_path: Path) -> Path:
    """An ssh cluster that is never reached: validation must stop the run before that."""
    proj = make_tree(tmp_path / "proj", {"a.txt": "a\n"})
    return write_config(
        tmp_path / "c.toml",
        [
            {
                "name": "far",
                "host": "far.invalid",
                "user": "me",
                "sync_dirs": [{"alias": "p", "local": str(proj), "remote": "/tmp/nowhere"}],
            }
        ],
    )


def run_in_child(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`python -m sbatchman ARGS` with its own TMPDIR, to see what it leaves there."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = subprocess.run(
        [sys.executable, "-m", "sbatchman", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )  # fmt: skip
    return run, tmp


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
@pytest.mark.parametrize("flag", ["--connect-timeout", "--stall-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "0"])
def test_a_timeout_flag_outside_the_rule_is_one_line_and_leaves_nothing(
    tmp_path: Path, backend: str, flag: str, value: str
) -> None:
    config = ssh_config_for_nowhere(tmp_path)
    run, tmp = run_in_child(tmp_path, "sync", "--config", str(config), "-b", backend, flag, value)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("sbatchman: error: ")
    assert f"'{flag}'" in run.stderr and SECONDS_RULE in run.stderr
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
@pytest.mark.parametrize(("key", "value"), [("connect_timeout", "inf"), ("stall_timeout", "inf")])
def test_a_timeout_key_outside_the_rule_stops_the_cli_and_leaves_nothing(
    tmp_path: Path, backend: str, key: str, value: str
) -> None:
    config = ssh_config_for_nowhere(tmp_path)
    config.write_text(f"[global]\n{key} = {value}\n" + config.read_text())
    run, tmp = run_in_child(tmp_path, "sync", "--config", str(config), "-b", backend)
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        f"sbatchman: error: {config}: global.{key}: must be {SECONDS_RULE}, not float {value}\n"
    )
    assert list(tmp.iterdir()) == []


def test_huge_jobs_is_just_all_clusters_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proj = make_tree(tmp_path / "proj", {"a.txt": "a\n"})
    dest = tmp_path / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [{"name": "here", "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}]}],
    )
    run = run_cli(capsys, "sync", "--config", str(config), "-j", str(10**30))
    assert run.code == 0, run.err
    assert (dest / "a.txt").read_text() == "a\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_config_path_under_an_unknown_user_is_one_line(tmp_path: Path, how: str) -> None:
    args = ["sync", "--config", "~no-such-user-sbm/c.toml"] if how == "flag" else ["sync"]
    env = {**os.environ, "SBATCHMAN_CONFIG": "~no-such-user-sbm/c.toml"}
    run = subprocess.run(
        [sys.executable, "-m", "sbatchman", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    where = "--config" if how == "flag" else "$SBATCHMAN_CONFIG"
    assert run.stderr == (
        f"sbatchman: error: {where}: '~no-such-user-sbm/c.toml': cannot expand"
        " ~no-such-user-sbm: write the full path\n"
    )


def test_an_ssh_config_ssh_cannot_read_is_a_config_error_naming_its_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proj = make_tree(tmp_path / "proj", {"a.txt": "a\n"})
    missing = tmp_path / "no-such-ssh-config"
    clusters = [
        {"name": "a", "sync_dirs": [{"alias": "p", "local": str(proj), "remote": "/x"}]},
        {
            "name": "b",
            "host": "alpha",
            "ssh_config": str(missing),
            "sync_dirs": [{"alias": "p", "local": str(proj), "remote": "x"}],
        },
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 2, run.err
    assert run.err.count("\n") == 1 and "Traceback" not in run.err
    assert run.err.startswith(f"sbatchman: error: {config}: clusters[1].ssh_config: ")
    assert str(missing) in run.err


def test_a_config_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    text = "a = " + "[" * 1000 + "]" * 1000 + "\n"
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse(text, tmp_path / "c.toml")


@pytest.mark.parametrize("remote", ["zz/../proj", "/scratch/zz/../proj", "a/./../b"])
def test_a_dot_dot_after_a_folder_name_in_remote_is_refused(tmp_path: Path, remote: str) -> None:
    """SFTP and the local copier would take a missing `zz` for an empty destination and
    overwrite newer files in `proj` (rsync would not): such a path is written plainly."""
    text = f'[[clusters]]\nname = "c"\n[[clusters.sync_dirs]]\nalias = "p"\nremote = "{remote}"\n'
    with pytest.raises(ConfigError, match=r"clusters\[0\]\.sync_dirs\[0\]\.remote: .*'\.\.'"):
        parse(text, tmp_path / "c.toml")


@pytest.mark.parametrize("remote", ["../x", "../../shared/x", "/../x", "./x"])
def test_leading_dot_dots_in_remote_stay_allowed(tmp_path: Path, remote: str) -> None:
    text = f'[[clusters]]\nname = "c"\n[[clusters.sync_dirs]]\nalias = "p"\nremote = "{remote}"\n'
    assert parse(text, tmp_path / "c.toml").clusters[0].sync_dirs[0].remote == remote
