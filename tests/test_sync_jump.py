"""A full push through a bastion (ProxyJump from the user's ssh config), on both backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.project import run_cli, write_config
from tests.support.sshd import SshdFactory
from tests.support.sshkit import jump_config
from tests.support.trees import make_tree, snapshot


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_push_lands_through_a_bastion(
    sshd_factory: SshdFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    backend: str,
) -> None:
    bastion = sshd_factory("bastion", extra_config={"AllowTcpForwarding": "yes"})
    target = sshd_factory("target")
    ssh_config = jump_config(tmp_path, bastion, target, name="behind")
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n", "bin/run.sh": "#!/bin/sh\n"})
    dest = target.root / "proj"
    cluster = {
        "name": "behind",
        "host": "behind",
        "ssh_config": str(ssh_config),
        "transfer_backend": backend,
        "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(dest)}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert snapshot(dest) == snapshot(proj)
    hops = re.findall(
        rf"server_request_direct_tcpip: .*target 127\.0\.0\.1 port {target.port}\b",
        bastion.log_text(),
    )
    assert len(hops) == 1  # one forwarded connection carried the whole push
