"""Trees and clusters that real users have and that broke a push: every backend copes alike.

Long names sharing their first 200 bytes (generated run folders), a login that writes to
stderr (a locale warning), and the login directory as the destination of a local cluster.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.support.backends import three_ways
from tests.support.env import IsolatedEnv
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree, snapshot, stamp


def test_long_names_that_share_their_first_bytes_all_land(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {"L" * 200 + f"_{i}.txt": f"{i}\n" for i in range(3)}
    local = make_tree(tmp_path / "long", names)
    server = three_clusters[0]
    root = cluster_roots[server.name]
    dests = {"rsync": root / "r", "sftp": root / "s", "local": tmp_path / "l"}
    config = three_ways(server, local, dests, tmp_path / "c.toml")
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    assert all(t["files_sent"] == 3 for t in json.loads(run.out)["targets"])
    for name, dest in dests.items():
        assert sorted(p.name for p in dest.iterdir()) == sorted(names), name
    assert len({repr(snapshot(d)) for d in dests.values()}) == 1


def test_a_login_that_writes_to_stderr_does_not_break_the_rsync_backend(
    sshd_factory: SshdFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Many clusters' profiles print a locale warning on every session; rsync ignores it, and
    so must the look at the cluster that keeps newer files from being replaced."""
    wrapper = tmp_path / "noisy-login.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        "echo 'bash: warning: setlocale: LC_ALL: cannot change locale (en_US.UTF-8)' >&2\n"
        'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    wrapper.chmod(0o755)
    server = sshd_factory("noisy", extra_config={"ForceCommand": str(wrapper)})
    local = make_tree(tmp_path / "proj", {"sub/a.txt": "a\n", "b.txt": "b\n"})
    (local / "notes").symlink_to("b.txt")
    dest = server.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(local), "remote": str(dest)}])],
        transfer_backend="rsync",
    )
    first = run_cli(capsys, "sync", "--config", str(config))
    assert first.code == 0, first.out + first.err
    assert (dest / "sub/a.txt").read_text() == "a\n" and (dest / "notes").is_symlink()
    (dest / "notes").unlink()
    (dest / "notes").write_text("the cluster's own, newer\n")
    stamp(dest / "notes", 2_000_000_000)  # 2033
    again = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert again.code == 0, again.out + again.err
    target = json.loads(again.out)["targets"][0]
    assert target["conflicts"] == [{"path": "notes", "why": "newer file on the cluster"}]
    assert not (dest / "notes").is_symlink() and os.path.getsize(dest / "notes") > 0


@pytest.mark.parametrize("name", ["nl\nx", "trail ", "cr\rx"])
def test_a_kept_folder_with_an_awkward_name_is_a_conflict_on_every_backend(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    local = make_tree(tmp_path / "proj", {name: "a file here\n", "ok.txt": "ok\n"})
    server = three_clusters[2]
    root = cluster_roots[server.name]
    dests = {"rsync": root / "r", "sftp": root / "s", "local": tmp_path / "l"}
    for dest in dests.values():
        make_tree(dest, {f"{name}/results.csv": "the cluster's\n"})
    config = three_ways(server, local, dests, tmp_path / "c.toml")
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    for target in json.loads(run.out)["targets"]:
        assert [c["why"] for c in target["conflicts"]] == ["folder not empty on the cluster"]
    for backend, dest in dests.items():
        assert (dest / name / "results.csv").read_text() == "the cluster's\n", backend
        assert (dest / "ok.txt").read_text() == "ok\n", backend


@pytest.mark.parametrize("backend", ["rsync", "sftp"])  # sftp: the built-in copier here
def test_a_local_cluster_pushing_into_home_never_changes_its_mode(
    isolated_env: IsolatedEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """As over ssh: a group-writable project must not make home group-writable."""
    home = isolated_env.home
    home.chmod(0o755)
    local = make_tree(tmp_path / "proj", {"job.sh": "#!/bin/sh\n"})
    local.chmod(0o770)
    cluster = {"name": "here", "sync_dirs": [{"alias": "p", "local": str(local), "remote": "~"}]}
    config = write_config(tmp_path / "c.toml", [cluster], transfer_backend=backend)
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 0, run.out + run.err
    assert (home / "job.sh").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
