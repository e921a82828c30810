"""The sftp backend's connecting, seen from the command line: our line only, Ctrl-C at once.

Each test runs `python -m sbatchman sync` as a child process, as a user does, because what is
checked is the process's own stderr and how it ends (logging with no handler, signals, threads
left running at exit); pytest's in-process capture would hide all of that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SshdFactory
from tests.support.project import make_tree, write_config
from tests.support.sshkit import config_block

REPO = Path(__file__).resolve().parents[1]


def sync(config: Path, *args: str) -> subprocess.Popen[str]:
    """`sbatchman sync` on `config` with the sftp backend, in batch mode, as a child."""
    return subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "-b", "sftp", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def project(tmp_path: Path, cluster: dict[str, object]) -> Path:
    """A one-file project and a config pushing it to `cluster` (given without sync_dirs)."""
    make_tree(tmp_path / "src", {"a.txt": "a"})
    cluster["sync_dirs"] = [
        {"alias": "p", "local": str(tmp_path / "src"), "remote": str(tmp_path / "dst")}
    ]
    return write_config(tmp_path / "sbatchman.toml", [cluster])


def to(port: int, tmp_path: Path, **extra: object) -> dict[str, object]:
    """A cluster on 127.0.0.1:port whose ssh config reads only files of this test."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host *\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n  IdentityAgent none\n  IdentitiesOnly yes\n"
    )
    return {
        "name": "c",
        "host": "127.0.0.1",
        "port": port,
        "user": "nobody",
        "ssh_config": str(config),
        **extra,
    }


@pytest.fixture
def bad_banner() -> Iterator[int]:
    """A port whose server answers like a web server, then hangs up."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    peer, _ = listener.accept()
                except TimeoutError:
                    continue
                with peer:
                    peer.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        done.set()
        thread.join()


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_a_bad_banner_is_our_one_line_and_nothing_from_paramiko(
    bad_banner: int, tmp_path: Path, json_out: bool
) -> None:
    config = project(tmp_path, to(bad_banner, tmp_path))
    run = sync(config, *(["--json"] if json_out else []))
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert err == ""
    assert f"127.0.0.1:{bad_banner}: SSH handshake failed: " in out
    assert "Traceback" not in out and "paramiko" not in out


def test_a_refused_jump_channel_is_our_one_line(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    """A bastion that does not forward: paramiko logs `Secsh channel 1 open FAILED`; only our
    line may reach the user."""
    bastion = sshd_factory("closed-bastion", extra_config={"AllowTcpForwarding": "no"})
    target = sshd_factory("target")
    known = tmp_path / "known_hosts"
    known.write_text(bastion.known_hosts.read_text() + target.known_hosts.read_text())
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        config_block(bastion, known_hosts=known)
        + config_block(target, known_hosts=known, ProxyJump="closed-bastion")
    )
    config = project(tmp_path, {"name": "t", "host": "target", "ssh_config": str(ssh_config)})
    for extra in ([], ["--json"]):
        run = sync(config, *extra)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1
        assert err == ""
        assert "jump host did not forward to 127.0.0.1:" in out
        assert "Secsh" not in out
