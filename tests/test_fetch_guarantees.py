"""What a fetch never does to this machine, through the CLI: overwrite a newer file, write
anything on a dry run, follow a link, write through a local link, or fetch what any exclude
layer names.

Real sshd servers on loopback; each test on rsync, SFTP and a cluster without a host (the local
engine reading the same folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.fetching import BACKENDS, everything_below, fetch, fetch_cluster
from tests.support.project import run_cli, write_config
from tests.support.sides import kept_newer
from tests.support.sshd import SshServer
from tests.support.trees import Node, digest, make_tree, snapshot, stamp

OLD, NEW = 1_000_000_000, 1_900_000_000  # 2001 and 2030
ALIAS = "res"


@pytest.fixture
def cluster(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path]
) -> tuple[SshServer, Path]:
    """alpha, and a fresh results folder on it (not yet made)."""
    server = three_clusters[0]
    return server, cluster_roots[server.name] / "job results"


def one_dir(
    tmp_path: Path,
    server: SshServer,
    backend: str,
    remote: Path,
    local: Path,
    *,
    fetch_dir: dict[str, object] | None = None,
    cluster: dict[str, object] | None = None,
    **global_: object,
) -> Path:
    """A config with one cluster fetching `remote` into `local` (alias ALIAS)."""
    one = {"alias": ALIAS, "remote": str(remote), "local": str(local), **(fetch_dir or {})}
    table = fetch_cluster(server, backend, [one], **(cluster or {}))
    return write_config(tmp_path / "fetch.toml", [table], **global_)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_newer_local_file_survives_and_is_reported_kept(
    cluster: tuple[SshServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    server, remote = cluster
    make_tree(remote, {"a.txt": "from the cluster\n", "b.txt": "b\n", "c.txt": "new\n"})
    for name in ("a.txt", "b.txt", "c.txt"):
        stamp(remote / name, OLD + 100)
    local = make_tree(tmp_path / "here", {"a.txt": "edited here\n", "c.txt": "older here\n"})
    stamp(local / "a.txt", NEW)
    stamp(local / "c.txt", OLD)
    config = one_dir(tmp_path, server, backend, remote, local)

    run = fetch(capsys, config)
    assert run.code == 0, run.why()
    target = run.target(server.name, ALIAS)
    assert run.sent(server.name, ALIAS) == ["b.txt", "c.txt"]
    assert kept_newer(target, "fetch") == ["a.txt"], target
    assert (local / "a.txt").read_text() == "edited here\n"
    assert int((local / "a.txt").stat().st_mtime) == NEW
    assert (local / "c.txt").read_text() == "new\n"  # older here: replaced

    text = run_cli(capsys, "fetch", "--config", str(config))
    assert text.code == 0, text.out + text.err
    assert f"{server.name}/{ALIAS}: kept 1 file(s)" in text.out and "a.txt" in text.out
    assert (local / "a.txt").read_text() == "edited here\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dry_run_creates_nothing_locally(
    cluster: tuple[SshServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    server, remote = cluster
    make_tree(remote, {"a.txt": "a\n", "sub/deep/b.sh": "#!/bin/sh\n", "empty/": ""})
    local = tmp_path / "results" / "not yet" / ALIAS
    config = one_dir(tmp_path, server, backend, remote, local)
    before = snapshot(remote, ns=True)

    dry = fetch(capsys, config, "-n")
    assert dry.code == 0, dry.why()
    assert dry.document["dry_run"] is True
    assert dry.sent(server.name, ALIAS) == ["a.txt", "sub/deep/b.sh"]
    assert dry.target(server.name, ALIAS)["bytes_sent"] == len("a\n") + len("#!/bin/sh\n")
    assert not (tmp_path / "results").exists()  # not even a folder
    assert snapshot(remote, ns=True) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_link_out_of_the_tree_arrives_as_a_link(
    cluster: tuple[SshServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    server, remote = cluster
    links = {"etc": "/etc", "hosts": "/etc/hosts", "up": "../..", "sub/gone": "/no/such/thing"}
    make_tree(remote, {"sub/a.txt": "a\n"}, links=links)
    local = tmp_path / "here"
    config = one_dir(tmp_path, server, backend, remote, local)

    run = fetch(capsys, config)
    assert run.code == 0, run.why()
    landed = snapshot(local)
    for name, target in links.items():
        assert landed[name] == Node("link", target=target), name
    assert everything_below(local) == ["etc", "hosts", "sub", "sub/a.txt", "sub/gone", "up"]
    assert run.sent(server.name, ALIAS) == ["sub/a.txt"]  # a link is no file: /etc never read


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_local_link_in_the_way_is_never_written_through(
    cluster: tuple[SshServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    server, remote = cluster
    make_tree(remote, {"out/result.txt": "r\n", "out/deep/more.txt": "m\n", "f.txt": "cluster\n"})
    outside = make_tree(tmp_path / "outside", {"victim.txt": "mine\n", "keep/": ""})
    local = tmp_path / "here"
    local.mkdir()
    os.symlink(outside, local / "out")  # where the cluster has a folder
    os.symlink(outside / "victim.txt", local / "f.txt")  # where the cluster has a file
    for link in ("out", "f.txt"):
        stamp(local / link, OLD)
    config = one_dir(tmp_path, server, backend, remote, local)
    before = snapshot(outside, ns=True)

    run = fetch(capsys, config)
    assert run.code == 0, run.why()
    assert snapshot(outside, ns=True) == before  # nothing written there
    landed = snapshot(local)
    assert landed["out"].kind == "dir" and landed["out/deep/more.txt"].digest == digest("m\n")
    assert landed["f.txt"].kind == "file" and landed["f.txt"].digest == digest("cluster\n")
    assert (outside / "victim.txt").read_text() == "mine\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_fetch_exclude_layer_applies_and_sync_excludes_do_not(
    cluster: tuple[SshServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend: str,
) -> None:
    server, remote = cluster
    layers = {  # pattern: the layer that names it
        "*.common": "global.common_excludes",
        "*.gfetch": "global.fetch_excludes",
        "*.cluster": "cluster.excludes",
        "*.cfetch": "cluster.fetch_excludes",
        "ckpt/": "fetch_dir.excludes",
        "*.cli": "-e",
    }
    files = {f"sub/x{p[1:]}": "no\n" for p in layers if p.startswith("*")}
    files |= {"ckpt/big.bin": "no\n", "sub/ckpt/also.bin": "no\n", "keep.txt": "yes\n"}
    files |= {"a.sync": "yes: sync_excludes never apply to fetch\n", "sub/b.push": "yes\n"}
    make_tree(remote, files)
    local = tmp_path / "here"
    config = one_dir(
        tmp_path,
        server,
        backend,
        remote,
        local,
        fetch_dir={"excludes": ["ckpt/"]},
        cluster={
            "excludes": ["*.cluster"],
            "fetch_excludes": ["*.cfetch"],
            "sync_excludes": ["sub/b.push"],
        },
        common_excludes=["*.common"],
        fetch_excludes=["*.gfetch"],
        sync_excludes=["*.sync"],
    )

    run = fetch(capsys, config, "-e", "*.cli", "-e", "*.nothing")
    assert run.code == 0, run.why()
    assert everything_below(local) == ["a.sync", "keep.txt", "sub", "sub/b.push"]
    assert run.sent(server.name, ALIAS) == ["a.sync", "keep.txt", "sub/b.push"]

    dry = fetch(capsys, config, "-n")  # without -e, the *.cli file would come
    assert dry.code == 0, dry.why()
    assert dry.sent(server.name, ALIAS) == ["sub/x.cli"]
