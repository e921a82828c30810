"""The SFTP backend against real OpenSSH servers: what lands, and what a second push sends.

Each test pins one promise of issue 4 on the real sftp-server: a tree lands exactly (modes,
exec bits, mtime seconds, links as links), fractional mtimes re-sync as no-ops, files newer on
the cluster survive, a dry run writes nothing and lists what the real run then sends. Failures
(killed runs, full disks, locked folders) are in test_sftp_failures.py. Sessions are opened the
production way: `open_sftp` on a config read from TOML.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sbatchman.backends.sftp.session import SftpSession
from sbatchman.backends.sftp.wire import Wire
from sbatchman.errors import TransferError
from sbatchman.plan import PART_SUFFIX
from sbatchman.temporaries import Temporaries
from tests.support.sftpkit import T0, Remote, set_mtime
from tests.support.sshd import SshServer
from tests.support.trees import make_tree, snapshot

Factory = Callable[[SshServer, Path, str], Remote]


@pytest.fixture
def remote_factory(tmp_path: Path) -> Iterator[Factory]:
    """Opens Remotes for a test and closes them after it."""
    opened: list[Remote] = []

    def make(server: SshServer, local: Path, remote: str) -> Remote:
        opened.append(Remote(server, local, remote, tmp_path / f"c{len(opened)}.toml"))
        return opened[-1]

    yield make
    for remote in opened:
        remote.close()


def project(root: Path) -> Path:
    """A tree with every kind of entry, odd names, fractional mtimes and a 2 MiB file."""
    make_tree(
        root,
        {
            "run.sh": "#!/bin/sh\necho run\n",
            "src/model.py": "print('model')\n",
            "src/deep/er/util.py": "x = 1\n",
            'with space/it\'s "quoted".txt': "q\n",
            "unicodé/ünï.txt": "u\n",
            **{f"many/f{i:03d}.txt": f"{i}\n" * (i % 7) for i in range(120)},
        },
        links={"latest": "src/model.py", "dangling": "does/not/exist", "src/up": ".."},
    )
    (root / "empty" / "nested").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(2 << 20))
    (root / "private").mkdir()
    (root / "private" / "key").write_text("k\n")
    (root / "private").chmod(0o750)
    (root / "private" / "key").chmod(0o600)
    for i, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        set_mtime(path, T0 + i * 1_000_000_000 + 123_456_789)  # fractional on purpose
    return root


# --------------------------------------------------------------------------- landing


def test_tree_lands_exactly_and_a_second_push_sends_nothing(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    local = project(tmp_path / "proj")
    dest = cluster_roots[server.name] / "deep" / "er" / "dest"  # missing parents
    remote = remote_factory(server, local, str(dest))

    outcome, events = remote.push()
    files = {p for p, facts in snapshot(local).items() if facts.kind == "file"}
    assert {p for p, why in outcome.sent} == files
    assert {why for _, why in outcome.sent} == {"new"}
    sizes = [p.stat().st_size for p in local.rglob("*") if p.is_file() and not p.is_symlink()]
    assert events.total == (len(files), sum(sizes))
    assert snapshot(dest) == snapshot(local)
    assert os.readlink(dest / "latest") == "src/model.py"  # SYMLINK's argument order
    assert os.access(dest / "run.sh", os.X_OK)
    assert events.progressed == (2 << 20)  # the big file reported its bytes as they landed
    assert not [p for p in dest.rglob("*") if p.name.endswith(PART_SUFFIX)]

    again, events = remote.push()
    assert again.sent == [] and events.files == []  # fractional mtimes are not "newer"
    assert snapshot(dest) == snapshot(local)


def test_why_each_file_is_sent_and_newer_remote_files_survive(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    server = three_clusters[1]
    local = make_tree(tmp_path / "p", {"newer.txt": "a", "resized.txt": "b", "edited.txt": "c"})
    for path in local.iterdir():
        set_mtime(path, T0 + 500_000_000)
    dest = cluster_roots[server.name]
    remote = remote_factory(server, local, str(dest))
    remote.push()

    (local / "newer.txt").write_text("a2")
    set_mtime(local / "newer.txt", T0 + 10_000_000_000)
    (local / "resized.txt").write_text("bigger")
    set_mtime(local / "resized.txt", T0 + 900_000_000)  # same second as the remote copy
    (dest / "edited.txt").write_text("edited on the cluster")
    set_mtime(dest / "edited.txt", T0 + 60_000_000_000)
    (local / "edited.txt").write_text("c2")
    set_mtime(local / "edited.txt", T0 + 5_000_000_000)

    outcome, events = remote.push()
    assert sorted(outcome.sent) == [("newer.txt", "newer"), ("resized.txt", "size differs")]
    assert outcome.skipped_newer == ["edited.txt"] and events.kept == ["edited.txt"]
    assert (dest / "edited.txt").read_text() == "edited on the cluster"
    assert (dest / "newer.txt").read_text() == "a2"
    assert (dest / "resized.txt").read_text() == "bigger"


def test_a_mode_change_alone_reaches_the_cluster(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    server = three_clusters[2]
    local = make_tree(tmp_path / "p", {"job.py": "print(1)\n", "sub/x": "x"})
    dest = cluster_roots[server.name] / "d"
    remote = remote_factory(server, local, str(dest))
    remote.push()
    (local / "job.py").chmod(0o755)  # chmod +x changes no mtime: only -p semantics catch it
    (local / "sub").chmod(0o700)
    outcome, _ = remote.push()
    assert outcome.sent == []
    assert stat.S_IMODE((dest / "job.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o700


def test_a_read_only_folder_takes_new_files_and_stays_read_only(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    """rsync makes such a folder writable while it writes, then puts its mode back. (As root
    the write would pass anyway; as an ordinary user this is what lets it pass.)"""
    server = three_clusters[2]
    local = make_tree(tmp_path / "p", {"ro/a.txt": "a\n"})
    (local / "ro").chmod(0o555)
    dest = cluster_roots[server.name] / "ro-dest"
    remote = remote_factory(server, local, str(dest))
    remote.push()
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    (local / "ro").chmod(0o755)
    (local / "ro" / "b.txt").write_text("b\n")
    (local / "ro").chmod(0o555)
    outcome, _ = remote.push()
    assert outcome.sent == [("ro/b.txt", "new")]
    assert (dest / "ro" / "b.txt").read_text() == "b\n"
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555


# --------------------------------------------------------------------------- dry run


def test_dry_run_writes_nothing_and_lists_what_the_real_run_sends(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    server = three_clusters[1]
    local = project(tmp_path / "proj")
    dest = cluster_roots[server.name] / "dest"
    remote = remote_factory(server, local, str(dest))

    # A missing destination: a dry run creates nothing at all.
    outcome, events = remote.push(dry_run=True)
    assert not dest.exists()
    assert sorted(outcome.sent) == sorted((p, w) for p, _, w in events.files)

    # A half-synced destination with an old file, a newer one and a killed run's leftover.
    remote.push()
    (local / "src" / "model.py").write_text("print('model 2')\n")
    (local / "many" / "f001.txt").write_text("changed\n")
    set_mtime(local / "many" / "f001.txt", T0 + 1_000_000_000_000)
    (dest / "src" / "model.py").write_text("stale")
    set_mtime(dest / "src" / "model.py", T0 - 10_000_000_000)
    (dest / "unicodé" / "ünï.txt").write_text("edited on the cluster")
    shutil.rmtree(dest / "empty")
    leftover = dest / "many" / Temporaries(created=1_000).name("f002.txt")  # abandoned
    leftover.write_text("partial")
    before = snapshot(dest, ns=True, folder_times=True)

    dry, _ = remote.push(dry_run=True)
    assert snapshot(dest, ns=True, folder_times=True) == before  # byte for byte, mtimes included
    real, _ = remote.push()
    assert sorted(dry.sent) == sorted(real.sent)
    assert dry.skipped_newer == real.skipped_newer == ["unicodé/ünï.txt"]
    assert ("src/model.py", "newer") in real.sent
    assert not leftover.exists()
    assert (dest / "empty" / "nested").is_dir()


def test_a_session_survives_a_failed_push(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
) -> None:
    server = three_clusters[0]
    local = make_tree(tmp_path / "p", {"a.txt": "a"})
    blocker = cluster_roots[server.name] / "file"
    blocker.write_text("not a folder")
    remote = remote_factory(server, local, str(blocker))
    with pytest.raises(TransferError, match="exists and is not a folder"):
        remote.push()
    blocker.unlink()
    outcome, _ = remote.push()
    assert outcome.sent == [("a.txt", "new")]


def test_the_session_spreads_a_big_upload_over_several_channels(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
) -> None:
    server = three_clusters[1]
    local = make_tree(tmp_path / "p", {f"d{i % 5}/f{i}.txt": str(i) for i in range(300)})
    dest = cluster_roots[server.name]
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        session = remote.session
        assert isinstance(session, SftpSession)
        deadline = time.monotonic() + 10
        while session.pool.idle < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        outcome, _ = remote.push()
        assert len(outcome.sent) == 300
        assert session.pool.idle == 3  # all channels came back, none was lost
    finally:
        remote.close()
    assert {p.read_text() for p in dest.rglob("*.txt")} == {str(i) for i in range(300)}


def test_servers_without_posix_rename_or_lsetstat_still_get_whole_files(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    remote_factory: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain SFTP v3: RENAME refuses an existing target, so the old file is removed first."""
    original = Wire.handshake

    def plain(wire: Wire) -> None:
        original(wire)
        wire.extensions.pop("posix-rename@openssh.com", None)
        wire.extensions.pop("lsetstat@openssh.com", None)

    monkeypatch.setattr(Wire, "handshake", plain)
    server = three_clusters[2]
    local = make_tree(tmp_path / "p", {"a.txt": "one"}, links={"l": "a.txt"})
    set_mtime(local / "a.txt", T0)
    dest = cluster_roots[server.name]
    remote = remote_factory(server, local, str(dest))
    remote.push()
    (local / "a.txt").write_text("two, longer")
    set_mtime(local / "a.txt", T0 + 1_000_000_000)
    (local / "l").unlink()
    (local / "l").symlink_to("elsewhere")
    outcome, _ = remote.push()
    assert outcome.sent == [("a.txt", "newer")]
    assert (dest / "a.txt").read_text() == "two, longer"
    assert os.readlink(dest / "l") == "elsewhere"
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt", "l"]
