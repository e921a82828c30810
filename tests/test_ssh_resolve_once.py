"""One sync asks OpenSSH (`ssh -G`) about each host once, and the rsync path asks nothing more.

Counted with a logging `ssh` first on PATH: the user check, the quiet connect and any retry or
fallback share the first answer instead of running ssh (and the config's `Match exec`) again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.project import run_cli, write_config
from tests.support.sshd import SshdFactory
from tests.support.sshkit import jump_config, logging_ssh
from tests.support.trees import make_tree, snapshot


def _asked(log: str, host: str) -> list[str]:
    """The `ssh -G` runs about `host` through the user's config (not the -F /dev/null check)."""
    lines = log.splitlines()
    return [ln for ln in lines if ln.endswith(f" -- {host}") and os.devnull not in ln]


def _sync_logged(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cluster: dict[str, object],
    dest: Path,
) -> str:
    """Push tmp_path/proj with `cluster` through a logging ssh; check it landed; the log."""
    config = write_config(tmp_path / "c.toml", [cluster])
    log = logging_ssh(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{log.parent}{os.pathsep}{os.environ['PATH']}")
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert snapshot(dest) == snapshot(tmp_path / "proj")
    return log.read_text()


@pytest.mark.parametrize(("backend", "bastion_asks"), [("rsync", 0), ("sftp", 1)])
def test_one_sync_resolves_each_host_once(
    sshd_factory: SshdFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    bastion_asks: int,
) -> None:
    bastion = sshd_factory("bastion", extra_config={"AllowTcpForwarding": "yes"})
    target = sshd_factory("target")
    ssh_config = jump_config(tmp_path, bastion, target, name="behind")
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    dest = target.root / "proj"
    cluster = {  # no user: the config's User line is checked for, then used
        "name": "behind",
        "host": "behind",
        "ssh_config": str(ssh_config),
        "transfer_backend": backend,
        "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
    }
    log = _sync_logged(tmp_path, capsys, monkeypatch, cluster, dest)
    assert len(_asked(log, "behind")) == 1, log
    assert len(_asked(log, "bastion")) == bastion_asks, log


def test_the_rsync_path_runs_no_ssh_g_when_the_toml_names_the_user(
    sshd_factory: SshdFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rsync's own ssh reads the config: resolving it beforehand would only cost a process."""
    server = sshd_factory("plain")
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    dest = server.root / "proj"
    cluster = {
        "name": "plain",
        "host": server.name,
        "user": server.user,
        "ssh_config": str(server.ssh_config),
        "transfer_backend": "rsync",
        "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
    }
    assert _sync_logged(tmp_path, capsys, monkeypatch, cluster, dest) == ""
