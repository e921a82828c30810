"""The rsync backend against real sshd: paths as plain rsync places them, exact counts after a
failure, names with escapes, byte progress, rsync's own reasons, and a cluster without rsync."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sbatchman.backends.rsync import RsyncSession
from sbatchman.backends.rsync_info import detect
from sbatchman.config import Cluster, Config, load
from sbatchman.model import Job, PartialTransfer
from sbatchman.names import json_name
from sbatchman.selection.walk import select
from sbatchman.ssh.endpoint import Endpoint, SshOptions
from sbatchman.ssh.master import Master
from tests.support.procs import signal_all
from tests.support.project import Recorder, run_cli, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree


def _session(config: Config, stall: float = 60) -> tuple[Cluster, RsyncSession]:
    info = detect()
    assert info is not None
    cluster = config.clusters[0]
    master = Master(
        Endpoint.of(cluster, config.settings, SshOptions(batch=True, stall_timeout=stall))
    )
    master.open()
    return cluster, RsyncSession(info, master, stall)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[RsyncSession]]:
    """Sessions a test opened directly; closed (master and socket folder) after it."""
    sessions: list[RsyncSession] = []
    yield sessions
    for session in sessions:
        session.close()


def test_relative_remote_paths_land_where_plain_rsync_and_sftp_put_them(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`../x` must not lose its `..` (it did: `./../x` with -s landed in ~/x)."""
    server = sshd_factory("paths", home_in_root=True)
    home = server.root
    shared = home.parent.parent / f"shared-{uuid.uuid4().hex[:8]}"
    shared.mkdir()  # rsync's --mkpath (like plain rsync's) creates one missing level after `..`
    remotes = {
        "up": "../escape_up",
        "upup": f"../../{shared.name}/x",
        "dot": "./dot/x",
        "tilde": "~/tilde/x",
        "plain": "plain/rel",
        "dash": "-dash/x",  # a leading `-` is a path, never an option
        "abs": str(home / "abs"),
    }
    try:
        for backend in ("rsync", "sftp"):
            src = make_tree(tmp_path / backend, {f"by-{backend}.txt": backend})
            dirs = [
                {"alias": alias, "local": str(src), "remote": remote}
                for alias, remote in remotes.items()
            ]
            config = write_config(
                tmp_path / f"{backend}.toml",
                [ssh_cluster(server, dirs, transfer_backend=backend)],
            )
            run = run_cli(capsys, "sync", "--config", str(config))
            assert run.code == 0, run.out + run.err
        plain = make_tree(tmp_path / "plain", {"by-plain.txt": "plain"})
        for alias, remote in remotes.items():
            spelled = remote.removeprefix("~/")
            argv = ["rsync", "-rlpt", "-s", "-e", server.rsync_rsh(), "--"]
            done = subprocess.run(
                [*argv, f"{plain}/", f"{server.name}:{spelled}/"], capture_output=True, text=True
            )
            assert done.returncode == 0, (alias, done.stderr)
        expected = {
            "up": home.parent / "escape_up",
            "upup": shared / "x",
            "dot": home / "dot/x",
            "tilde": home / "tilde/x",
            "plain": home / "plain/rel",
            "dash": home / "-dash/x",
            "abs": home / "abs",
        }
        for alias, folder in expected.items():
            names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
            assert names == {"by-rsync.txt", "by-sftp.txt", "by-plain.txt"}, alias
        everywhere = [*home.parent.rglob("by-rsync.txt"), *shared.rglob("by-rsync.txt")]
        assert len(everywhere) == len(remotes)  # nothing landed anywhere else
        assert not (home / "escape_up").exists()
    finally:
        for path in sorted(shared.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        shared.rmdir()


NAMES = ["plain.txt", "new\nline", "two\n\nlines\n", "cr\rname", "esc\x1b[31m", "tab\there"]
NAMES += ["back\\#012slash", "ünï", "sp ace", "a -> b", "x\\y", "dir\nname/inner.txt"]


def test_every_name_is_reported_even_with_newlines_and_escapes(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    src = make_tree(tmp_path / "odd", {name: name for name in NAMES})
    server = three_clusters[0]
    dest = cluster_roots[server.name] / "odd"
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "o", "local": str(src), "remote": str(dest)}])],
    )
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.err
    target = json.loads(run.out)["targets"][0]
    # JSON shows a backslash that looks like an escape as \#134 (docs/cli.md)
    assert sorted(f["path"] for f in target["files"]) == sorted(map(json_name, NAMES))
    assert target["files_sent"] == len(NAMES)
    for name in NAMES:
        assert (dest / name).read_bytes() == name.encode()


class Bytes(Recorder):
    """Keeps the order of byte and file events."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, int]] = []

    def progress(self, nbytes: int) -> None:
        super().progress(nbytes)
        self.order.append(("bytes", self.progressed))

    def sent(self, path: str, nbytes: int, why: str) -> None:
        super().sent(path, nbytes, why)
        self.order.append(("sent", nbytes))


def test_a_big_file_reports_its_bytes_as_they_go(
    sshd_factory: SshdFactory, opened: list[RsyncSession], tmp_path: Path
) -> None:
    """The bar moved by the whole size when rsync named the file (286/286 MiB at once)."""
    server = sshd_factory("bytes")
    size = 96 << 20
    src = tmp_path / "big"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(1 << 20) * (size >> 20))  # rsync has no -z here
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "b", "local": str(src), "remote": str(server.root)}])],
    )
    cluster, session = _session(load(config))
    opened.append(session)

    class PauseOnce(Bytes):
        """Hold the cluster still once data flows, so rsync has a second to report between."""

        def progress(self, nbytes: int) -> None:
            super().progress(nbytes)
            if len(self.order) == 1:
                pids = server.session_pids()
                signal_all(pids, signal.SIGSTOP)
                time.sleep(1.5)
                signal_all(pids, signal.SIGCONT)

    events = PauseOnce()
    job = Job(cluster, cluster.sync_dirs[0], str(server.root / "dest"), select(src, ()), False)
    outcome = session.push(job, events)
    assert outcome.sent == [("big.bin", "new")]
    assert events.order[-1] == ("sent", size)
    counts = [n for kind, n in events.order if kind == "bytes"]
    assert counts == sorted(set(counts)) and counts[-1] == size  # grows, ends at the size
    assert any(0 < n < size for n in counts[:-1]), counts  # and moved before the end


def test_a_failed_file_is_named_and_only_landed_files_are_counted(
    sshd_factory: SshdFactory, opened: list[RsyncSession], tmp_path: Path
) -> None:
    """rsync exit 23 with files landed reported `files 0`; now the report lists what landed and
    names what failed."""
    server = sshd_factory("partial")
    files = {"a_big.bin": "", "b.txt": "b\n", "c.txt": "c\n", "z/lost.txt": "z\n"}
    src = make_tree(tmp_path / "src", files)
    (src / "a_big.bin").write_bytes(os.urandom(8 << 20))
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(src), "remote": str(server.root)}])],
    )
    cluster, session = _session(load(config))
    opened.append(session)
    dest = server.root / "dest"
    job = Job(cluster, cluster.sync_dirs[0], str(dest), select(src, ()), False)
    # Selected, then its folder became a file before rsync reads it (a file deleted after
    # the walk is only a note: see test_vanished).
    shutil.rmtree(src / "z")
    (src / "z").write_text("now a file\n")
    with pytest.raises(PartialTransfer) as failed:
        session.push(job, Recorder())
    message = str(failed.value)
    assert message.startswith("some files could not be transferred"), message
    assert "z/lost.txt: Not a directory" in message, message
    landed = sorted(p.name for p in dest.iterdir())
    assert landed == ["a_big.bin", "b.txt", "c.txt", "z"]
    assert sorted(name for name, _ in failed.value.outcome.sent) == landed
    assert failed.value.outcome.bytes_sent == (8 << 20) + 4  # sizes as the walk saw them


def test_exit_11_shows_rsyncs_reason_not_a_guess(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = three_clusters[1]
    blocker = cluster_roots[server.name] / "file"
    blocker.write_text("a file where a folder should go\n")
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})
    dirs = [
        {"alias": "under", "local": str(src), "remote": str(blocker / "sub")},
        {"alias": "at", "local": str(src), "remote": str(blocker)},
    ]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 1
    errors = {t["alias"]: t["error"] for t in json.loads(run.out)["targets"]}
    assert "Not a directory" in errors["under"], errors
    assert "File exists" in errors["at"], errors
    assert not any("disk full" in e for e in errors.values()), errors


def test_an_encrypted_key_in_batch_mode_says_it_needs_a_passphrase(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = tmp_path / "locked_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True
    )
    server = sshd_factory("locked", client_key=key)
    bare = tmp_path / "ssh_config"
    bare.write_text(
        f"Host *\n  UserKnownHostsFile {server.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        "  IdentityAgent none\n  IdentitiesOnly yes\n"
    )
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})
    cluster = {
        "name": "locked",
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "key_path": str(key),
        "ssh_config": str(bare),
        "sync_dirs": [{"alias": "p", "local": str(src), "remote": str(server.root / "p")}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    run = run_cli(capsys, "sync", "--config", str(config), "--batch", "-b", "rsync", "--json")
    assert run.code == 1
    error = json.loads(run.out)["targets"][0]["error"]
    assert f"needs a passphrase for key {key}" in error, error


def test_a_cluster_without_rsync_is_pushed_over_sftp_with_one_notice(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = sshd_factory("norsync", extra_config={"SetEnv": "SHLVL=1 PATH=/nonexistent"})
    src = make_tree(tmp_path / "src", {"a.txt": "a\n", "b/c.sh": "#!/bin/sh\n"})
    dirs = [
        {"alias": "one", "local": str(src), "remote": str(server.root / "one")},
        {"alias": "two", "local": str(src), "remote": str(server.root / "two")},
    ]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    assert run.code == 0, run.out + run.err
    targets = json.loads(run.out)["targets"]
    assert [(t["backend"], t["status"], t["files_sent"]) for t in targets] == [
        ("sftp", "ok", 2)
    ] * 2
    notices = [line for line in run.err.splitlines() if "rsync is not installed" in line]
    assert notices == ["sbatchman: norsync: rsync is not installed there; using sftp instead"]
    assert (server.root / "two/b/c.sh").stat().st_mode & 0o111

    explicit = run_cli(capsys, "sync", "--config", str(config), "-b", "rsync", "--json")
    assert explicit.code == 1
    for target in json.loads(explicit.out)["targets"]:
        assert target["status"] == "failed" and target["backend"] == "rsync"
        assert "rsync is not installed on the cluster" in target["error"], target["error"]


@pytest.mark.parametrize("version", [(3, 2, 7), (3, 1, 3)])  # with --mkpath, and without
def test_missing_folders_after_dot_dot_are_made_where_the_path_says(
    sshd_factory: SshdFactory, opened: list[RsyncSession], tmp_path: Path, version: tuple[int, ...]
) -> None:
    """rsync's --mkpath refuses `..` (EINVAL), and the old-rsync way (-R from an empty folder)
    would have climbed out of that folder: both now make `../made/here` beside the home."""
    server = sshd_factory("made", home_in_root=True)
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})
    config = write_config(
        tmp_path / "c.toml",
        [ssh_cluster(server, [{"alias": "p", "local": str(src), "remote": "x"}])],
    )
    cluster, session = _session(load(config))
    opened.append(session)
    session.info = replace(session.info, version=version)
    job = Job(cluster, cluster.sync_dirs[0], "../made/here", select(src, ()), False)
    assert session.push(job, Recorder()).sent == [("a.txt", "new")]
    assert (server.root.parent / "made/here/a.txt").read_text() == "a\n"


def test_the_unknown_key_hint_does_not_ask_for_a_flag_already_given(
    sshd_factory: SshdFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A ProxyCommand's own ssh checks the jump strictly whatever sbatchman's policy says: the
    line must not tell the user to rerun with --accept-new-host-keys, which they just did."""
    server = sshd_factory("proxied")
    inner = (
        f"ssh -F /dev/null -o UserKnownHostsFile={tmp_path / 'empty_known_hosts'}"
        f" -o StrictHostKeyChecking=yes -o BatchMode=yes -i {server.client_key}"
        f" -p {server.port} -W %h:%p {server.host}"
    )
    config_file = tmp_path / "ssh_config"
    config_file.write_text(
        f"Host proxied\n  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        f"  ProxyCommand {inner}\n"
    )
    src = make_tree(tmp_path / "src", {"a.txt": "a\n"})
    cluster = {
        "name": "proxied",
        "host": "proxied",
        "ssh_config": str(config_file),
        "sync_dirs": [{"alias": "p", "local": str(src), "remote": str(server.root / "p")}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    args = ["sync", "--config", str(config), "-b", "rsync", "--json", "--accept-new-host-keys"]
    run = run_cli(capsys, *args)
    assert run.code == 1
    error = json.loads(run.out)["targets"][0]["error"]
    assert "unknown host key" in error and "--accept-new-host-keys was given" in error, error
    assert "rerun" not in error
