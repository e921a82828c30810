"""Prompts: once per run, only on the terminal, and never in batch mode (which fails at once).

Interactive cases run a small script under a pseudo-terminal (its /dev/tty is ours) and
answer what it asks, counting the questions. The 2FA server is the paramiko test double in
tests/support/authserver.py, since sshd cannot ask keyboard-interactive questions without PAM.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbatchman.config import Settings
from sbatchman.errors import AuthError, ConnectError
from sbatchman.ssh.connect import connect
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master
from tests.support.authserver import CODE, AuthServer, auth_server_config, start_auth_server
from tests.support.sshd import SshdFactory
from tests.support.sshkit import (
    REPO,
    config_block,
    generate_encrypted_key,
    make_cluster,
    python_lines,
    run_in_pty,
)

PASSPHRASE = "correct horse"
BATCH = SshOptions(batch=True, connect_timeout=10)


def connect_script(config: Path, hosts: list[str], *, batch: bool = False) -> str:
    """A child program: one run (one SshOptions) connecting to each host in turn."""
    return python_lines(
        [
            "from pathlib import Path",
            "from sbatchman.config import Settings",
            "from sbatchman.errors import SbatchmanError",
            "from sbatchman.ssh.endpoint import SshOptions",
            "from sbatchman.ssh.connect import connect",
            "from sbatchman.ssh.endpoint import Endpoint",
            "from tests.support.sshkit import make_cluster",
            f"options = SshOptions(batch={batch}, connect_timeout=10)",
            f"settings = Settings(ssh_config=Path({str(config)!r}))",
            f"for host in {hosts!r}:",
            "    try:",
            "        t = connect(Endpoint.of(make_cluster(host, host), settings, options))",
            "    except SbatchmanError as err:",
            "        print('FAILED', err, flush=True)",
            "        continue",
            "    print('CONNECTED', host, t.is_authenticated(), flush=True)",
            "    t.close()",
        ]
    )


@pytest.fixture
def encrypted_server(sshd_factory: SshdFactory, tmp_path: Path) -> tuple[Path, Path]:
    """An sshd that accepts only a passphrase-protected key; a config with three aliases."""
    key = generate_encrypted_key(tmp_path / "id_locked", PASSPHRASE)
    server = sshd_factory("locked", client_key=key)
    config = tmp_path / "ssh_config"
    config.write_text(
        "".join(config_block(server, name=n, BatchMode="no") for n in ("one", "two", "three"))
    )
    return key, config


def test_passphrase_asked_once_per_run(encrypted_server: tuple[Path, Path]) -> None:
    key, config = encrypted_server
    script = connect_script(config, ["one", "two", "three"])
    answers = {r"Enter passphrase for key '[^']+': ": PASSPHRASE}
    result = run_in_pty(script, answers)
    assert result.output.count("CONNECTED") == 3, result.output
    assert result.prompts == [f"Enter passphrase for key '{key}': "]
    assert PASSPHRASE not in result.output  # typed with echo off
    assert result.returncode == 0


def test_wrong_passphrase_is_asked_again_then_remembered(
    encrypted_server: tuple[Path, Path],
) -> None:
    key, config = encrypted_server
    answers = {
        r"Enter passphrase for key '[^']+': ": "wrong guess",
        r"Bad passphrase, try again for [^:]+: ": PASSPHRASE,
    }
    result = run_in_pty(connect_script(config, ["one", "two"]), answers)
    assert result.output.count("CONNECTED") == 2, result.output
    assert result.prompts == [
        f"Enter passphrase for key '{key}': ",
        f"Bad passphrase, try again for {key}: ",
    ]


def test_passphrase_needed_in_batch_fails_at_once(encrypted_server: tuple[Path, Path]) -> None:
    key, config = encrypted_server
    start = time.monotonic()
    with pytest.raises(AuthError) as caught:
        connect(Endpoint.of(make_cluster("one", "one"), Settings(ssh_config=config), BATCH))
    assert time.monotonic() - start < 5
    assert f"needs a passphrase for key {key} but running in batch mode" in str(caught.value)


def test_rsync_master_asks_passphrase_once(encrypted_server: tuple[Path, Path]) -> None:
    """ssh itself asks on the terminal, once: later commands ride on the master connection."""
    _, config = encrypted_server
    script = python_lines(
        [
            "import subprocess",
            "from pathlib import Path",
            "from sbatchman.config import Settings",
            "from sbatchman.ssh.master import Master",
            "from sbatchman.ssh.endpoint import SshOptions",
            "from sbatchman.ssh.endpoint import Endpoint",
            "from tests.support.sshkit import make_cluster",
            f"settings = Settings(ssh_config=Path({str(config)!r}))",
            "options = SshOptions(batch=False)",
            "master = Master(Endpoint.of(make_cluster('one', 'one'), settings, options))",
            "master.open()",
            "for n in range(3):",
            "    argv = [*master.client_argv(), master.host, 'echo', f'RODE{n}']",
            "    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)",
            "master.close()",
        ]
    )
    result = run_in_pty(script, {r"Enter passphrase for key '[^']+': ": PASSPHRASE})
    assert [f"RODE{n}" in result.output for n in range(3)] == [True] * 3, result.output
    assert len(result.prompts) == 1
    assert result.returncode == 0


@pytest.fixture
def two_factor(tmp_path: Path) -> Iterator[tuple[AuthServer, Path]]:
    server = start_auth_server(tmp_path / "2fa", "keyboard-interactive")
    try:
        yield server, auth_server_config(server, "mfa", tmp_path / "ssh_config")
    finally:
        server.stop()


def test_two_factor_prompted_once(two_factor: tuple[AuthServer, Path]) -> None:
    server, config = two_factor
    result = run_in_pty(connect_script(config, ["mfa"]), {r"Verification code: ": CODE})
    assert "CONNECTED mfa True" in result.output, result.output
    assert result.prompts == ["Verification code: "]
    assert "Two-factor login" in result.output  # the server's title is shown to the person
    assert CODE not in result.output  # echo off, as the server asked
    assert server.log.questions == 1 and server.log.logged_in == 1


def test_two_factor_in_batch_fails_at_once(two_factor: tuple[AuthServer, Path]) -> None:
    server, config = two_factor
    start = time.monotonic()
    with pytest.raises(AuthError) as caught:
        connect(Endpoint.of(make_cluster("mfa", "mfa"), Settings(ssh_config=config), BATCH))
    assert time.monotonic() - start < 3
    assert "needs a keyboard-interactive (2FA) answer but running in batch mode" in str(
        caught.value
    )
    assert server.log.questions == 0


def test_no_terminal_means_no_prompt(two_factor: tuple[AuthServer, Path]) -> None:
    """Not in batch mode, but no controlling terminal: fail fast instead of reading stdin."""
    server, config = two_factor
    script = connect_script(config, ["mfa"], batch=False)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        input="246810\n",  # must not be read: stdin is not where prompts come from
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,  # no controlling terminal
    )
    assert time.monotonic() - start < 10
    assert "FAILED" in done.stdout and "needs a keyboard-interactive (2FA) answer" in done.stdout
    assert server.log.logged_in == 0


def test_password_prompted_through_terminal(tmp_path: Path) -> None:
    server = start_auth_server(tmp_path / "pw", "password")
    try:
        config = auth_server_config(server, "pw", tmp_path / "ssh_config")
        answers = {rf"{server.user}@127\.0\.0\.1's password: ": CODE}
        result = run_in_pty(connect_script(config, ["pw"]), answers)
    finally:
        server.stop()
    assert "CONNECTED pw True" in result.output, result.output
    assert len(result.prompts) == 1
    assert server.log.passwords == [CODE]


def test_password_only_sshd_in_batch_fails_at_once(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory(
        "pwonly", password_auth=True, extra_config={"AuthenticationMethods": "password"}
    )
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, PasswordAuthentication="yes"))
    settings = Settings(ssh_config=config)
    start = time.monotonic()
    with pytest.raises(AuthError, match="needs a password but running in batch mode"):
        connect(Endpoint.of(make_cluster("p", "pwonly"), settings, BATCH))
    assert time.monotonic() - start < 3
    master = Master(Endpoint.of(make_cluster("p", "pwonly"), settings, BATCH))
    with pytest.raises(AuthError) as caught:
        master.open()
    assert str(caught.value) == (
        "pwonly needs a password but running in batch mode (--batch or no"
        " terminal); run in a terminal without --batch"
    )
    assert time.monotonic() - start < 6
    assert not master.folder.exists()


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_two_factor_bastion_asks_once_for_three_aliases_through_sync(
    sshd_factory: SshdFactory, tmp_path: Path, backend: str
) -> None:
    """The common HPC setup: 2FA on the bastion, the cluster behind it. The real command,
    on a terminal, asks for the code once for a cluster with three aliases, on both backends,
    and every alias lands through the one forwarded connection."""
    target = sshd_factory(f"behind-{backend}")
    bastion = start_auth_server(tmp_path / "bastion", "keyboard-interactive", forward=True)
    try:
        ssh_config = auth_server_config(bastion, "mfa", tmp_path / "ssh_config")
        with ssh_config.open("a") as out:
            out.write(config_block(target, name="cluster", ProxyJump="mfa", BatchMode="no"))
        dirs = []
        for alias in ("one", "two", "three"):
            local = tmp_path / alias
            local.mkdir()
            (local / f"{alias}.py").write_text(f"{alias}\n")
            remote = target.root / alias
            dirs.append(
                f'[[clusters.sync_dirs]]\nalias = "{alias}"\nlocal = "{local}"\n'
                f'remote = "{remote}"\n'
            )
        config = tmp_path / "remotes.toml"
        config.write_text(
            f'[[clusters]]\nname = "c"\nhost = "cluster"\nssh_config = "{ssh_config}"\n'
            f'transfer_backend = "{backend}"\n' + "".join(dirs)
        )
        script = python_lines(
            [
                "import sys",
                "from sbatchman.cli import main",
                f"main(['sync', '--config', {str(config)!r}])",
            ]
        )
        result = run_in_pty(script, {r"Verification code: ": CODE}, timeout=60)
    finally:
        bastion.stop()
    assert result.returncode == 0, result.output
    assert result.prompts == ["Verification code: "]
    assert bastion.log.logged_in == 1
    assert bastion.log.forwarded == [("127.0.0.1", target.port)]  # one connection, reused
    for alias in ("one", "two", "three"):
        assert (target.root / alias / f"{alias}.py").read_text() == f"{alias}\n"


@pytest.mark.parametrize("problem", ["missing", "not-a-key", "a-folder"])
def test_an_unusable_key_path_is_named_in_the_failure(
    problem: str, sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """Not just "authentication failed": which file, what is wrong with it, where it is set."""
    server = sshd_factory("kp")
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, IdentityFile=str(tmp_path / "not-this-either")))
    key = tmp_path / "id_cluster"
    if problem == "not-a-key":
        key.write_text("hello\n")
    elif problem == "a-folder":
        key.mkdir()
    cluster = make_cluster("kp", "kp", key_path=key, where="clusters[2]")
    with pytest.raises(ConnectError) as caught:
        connect(Endpoint.of(cluster, Settings(ssh_config=config), BATCH))
    why = {
        "missing": "does not exist",
        "not-a-key": "is not a private key sbatchman can use",
        "a-folder": "cannot be read (Is a directory)",
    }[problem]
    assert str(caught.value).startswith(f"{server.user}@127.0.0.1: authentication failed")
    assert f"; key_path {key} {why}" in str(caught.value)
    assert str(caught.value).count("(clusters[2].key_path)") == 1


def test_a_key_path_that_works_leaves_no_note(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    server = sshd_factory("kp")
    config = tmp_path / "ssh_config"
    config.write_text(config_block(server, IdentityFile=None))
    cluster = make_cluster("kp", "kp", key_path=server.client_key)
    connect(Endpoint.of(cluster, Settings(ssh_config=config), BATCH)).close()


@pytest.mark.parametrize("ignore", ["ok\n", "ok\n[oops\n"])
def test_a_sync_prompts_only_after_its_walk_succeeded(
    encrypted_server: tuple[Path, Path], tmp_path: Path, ignore: str
) -> None:
    """The walk runs while the clusters connect without prompts: a bad .sbatchmanignore is
    exit 2 with its one line and never a passphrase prompt; a good one prompts once."""
    key, ssh_config = encrypted_server
    local = tmp_path / "proj"
    local.mkdir()
    (local / "a.py").write_text("a\n")
    (local / ".sbatchmanignore").write_text(ignore)
    remote = tmp_path / "dest"
    config = tmp_path / "remotes.toml"
    argv = ["sync", "--config", str(config)]
    config.write_text(
        f'[[clusters]]\nname = "c"\nhost = "one"\nssh_config = "{ssh_config}"\n'
        f'[[clusters.sync_dirs]]\nalias = "p"\nlocal = "{local}"\nremote = "{remote}"\n'
    )
    script = python_lines(
        ["from sbatchman.__main__ import run", "import sys", f"sys.argv[1:] = {argv!r}", "run()"]
    )
    result = run_in_pty(script, {r"Enter passphrase for key '[^']+': ": PASSPHRASE}, timeout=60)
    if ignore == "ok\n":
        assert (result.returncode, result.prompts) == (0, [f"Enter passphrase for key '{key}': "])
        assert (remote / "a.py").read_text() == "a\n"
    else:
        assert (result.returncode, result.prompts) == (2, []), result.output
        assert "bad pattern '[oops' in .sbatchmanignore:2" in result.output
        assert not remote.exists()
