"""The SFTP backend when things go wrong: killed runs, Ctrl-C, full disks, locked folders.

Whatever happens, a final path holds either the old file or the whole new one, never a part of
it; what failed is reported with a reason a user can act on, and the other aliases still land.
All against real OpenSSH servers; disk-full needs a small tmpfs (skipped, saying why, where
mount is not allowed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sbatchman.backends.transfer import Listed, check
from sbatchman.errors import Interrupted, TransferError
from sbatchman.model import PartialTransfer
from sbatchman.plan import PART_SUFFIX, DestStat
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.running import start_sync, wait_for_temporary
from tests.support.sftpkit import T0, Remote, set_mtime
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree

# --------------------------------------------------------------------------- interruption


def test_a_killed_upload_leaves_no_partial_file_and_the_next_run_finishes(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    server = three_clusters[2]
    local = tmp_path / "p"
    local.mkdir()
    big = local / "data.bin"
    with big.open("wb") as out:  # large enough to be caught in the middle on loopback
        for _ in range(48):
            out.write(os.urandom(1 << 20))
    dest = cluster_roots[server.name]
    (dest / "data.bin").write_bytes(b"the old version")
    set_mtime(dest / "data.bin", T0)
    config = write_config(
        tmp_path / "c.toml",
        [
            ssh_cluster(
                server,
                [{"alias": "a", "local": str(local), "remote": str(dest)}],
                transfer_backend="sftp",
            )
        ],
    )

    proc = start_sync(config)
    part = wait_for_temporary(dest, 1 << 20, lambda: proc.poll() is None)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipes
    assert (dest / "data.bin").read_bytes() == b"the old version"  # never a partial file
    assert part.exists()  # the killed run's temporary is still there...

    proc = start_sync(config)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not part.exists()  # ...until the next run removes it
    assert (dest / "data.bin").read_bytes() == big.read_bytes()
    assert [p.name for p in dest.iterdir()] == ["data.bin"]


def test_abort_stops_a_running_push_at_once(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    server = three_clusters[0]
    local = tmp_path / "p"
    local.mkdir()
    with (local / "data.bin").open("wb") as out:
        for _ in range(64):
            out.write(os.urandom(1 << 20))
    dest = cluster_roots[server.name]
    remote = Remote(server, local, str(dest), tmp_path / "c.toml")
    failure: list[BaseException] = []

    def push() -> None:
        try:
            remote.push()
        except BaseException as err:
            failure.append(err)

    worker = threading.Thread(target=push)
    worker.start()
    wait_for_temporary(dest, 1 << 20, worker.is_alive)
    started = time.monotonic()
    remote.session.abort()
    worker.join(timeout=10)
    remote.close()
    assert not worker.is_alive() and time.monotonic() - started < 10
    assert len(failure) == 1 and isinstance(failure[0], Interrupted)
    assert not (dest / "data.bin").exists()


# --------------------------------------------------------------------------- remote paths


def test_shell_syntax_in_remote_paths_stays_literal(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    server = sshd_factory("literal", home_in_root=True)  # relative paths land in server.root
    marker = Path("/tmp") / f"sbm-marker-{uuid.uuid4().hex}"
    local = make_tree(tmp_path / "p", {"job.sh": "#!/bin/sh\n"})
    odd = f"x $(touch {marker}); `touch {marker}` 'q' \"d\"\nnewline"
    try:
        for remote_path, landed in (
            (f"~/{odd}", server.root / odd),
            (odd + "-rel", server.root / (odd + "-rel")),
            (str(server.root / "abs" / odd), server.root / "abs" / odd),
        ):
            remote = Remote(server, local, remote_path, tmp_path / "c.toml")
            try:
                outcome, _ = remote.push()
            finally:
                remote.close()
            assert outcome.sent == [("job.sh", "new")]
            assert (landed / "job.sh").read_text() == "#!/bin/sh\n"
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


# --------------------------------------------------------------------------- failures


@pytest.fixture
def locked() -> Iterator[Callable[[Path], None]]:
    """Make a remote folder unwritable even for root (immutable), or skip saying why."""
    done: list[Path] = []

    def lock(folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o555)
        else:
            run = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            if run.returncode != 0:
                pytest.skip(f"cannot make a folder unwritable as root: {run.stderr.strip()}")
        done.append(folder)

    yield lock
    for folder in done:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def test_permission_denied_on_one_alias_is_reported_and_the_others_land(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    locked: Callable[[Path], None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[1]
    local = make_tree(tmp_path / "p", {"a.txt": "a", "sub/b.txt": "b"})
    root = cluster_roots[server.name]
    (root / "locked").mkdir()
    locked(root / "locked")
    config = write_config(
        tmp_path / "c.toml",
        [
            ssh_cluster(
                server,
                [
                    {"alias": "first", "local": str(local), "remote": str(root / "first")},
                    {"alias": "locked", "local": str(local), "remote": str(root / "locked")},
                    {"alias": "last", "local": str(local), "remote": str(root / "last")},
                ],
                transfer_backend="sftp",
            )
        ],
    )
    logins = server.log_text().count("Accepted publickey")
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    report = {t["alias"]: t for t in json.loads(run.out)["targets"]}
    assert run.code == 1
    assert report["locked"]["status"] == "failed"
    assert "permission denied" in report["locked"]["error"].lower()
    for alias in ("first", "last"):
        assert report[alias]["status"] == "ok", report[alias]
        assert (root / alias / "sub" / "b.txt").read_text() == "b"
    assert list((root / "locked").iterdir()) == []
    assert server.log_text().count("Accepted publickey") == logins + 1  # one connection


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs to fill up, or a skip that says why it cannot be had here."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs, and mount failed: {run.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_that_alias_with_a_reason_and_the_other_lands(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tiny_disk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = three_clusters[2]
    local = make_tree(tmp_path / "p", {"small.txt": "fits\n"})
    (local / "huge.bin").write_bytes(os.urandom(3 << 20))
    elsewhere = cluster_roots[server.name]
    config = write_config(
        tmp_path / "c.toml",
        [
            ssh_cluster(
                server,
                [
                    {"alias": "full", "local": str(local), "remote": str(tiny_disk / "dest")},
                    {"alias": "roomy", "local": str(local), "remote": str(elsewhere)},
                ],
                transfer_backend="sftp",
            )
        ],
    )
    run = run_cli(capsys, "sync", "--config", str(config), "--json")
    report = {t["alias"]: t for t in json.loads(run.out)["targets"]}
    assert run.code == 1
    assert report["full"]["status"] == "failed"
    assert report["full"]["error"].startswith("huge.bin: write failed")
    assert "disk full or quota exceeded" in report["full"]["error"]
    full = report["full"]  # the report counts what did land, as the message does
    assert full["error"].endswith(f"; {full['files_sent']} file(s) were sent")
    assert not (tiny_disk / "dest" / "huge.bin").exists()
    assert not list((tiny_disk / "dest").glob(f"*{PART_SUFFIX}"))  # its temporary was removed
    assert report["roomy"]["status"] == "ok"
    assert (elsewhere / "huge.bin").read_bytes() == (local / "huge.bin").read_bytes()


def test_a_server_that_allows_one_session_still_gets_everything(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """The extra channels are a speed-up only: refused ones are simply not used."""
    server = sshd_factory("frugal", extra_config={"MaxSessions": "1"})
    local = make_tree(tmp_path / "p", {f"d{i % 4}/f{i}.txt": str(i) for i in range(100)})
    remote = Remote(server, local, str(server.root / "dest"), tmp_path / "c.toml")
    try:
        outcome, _ = remote.push()
        again, _ = remote.push()
    finally:
        remote.close()
    assert len(outcome.sent) == 100 and again.sent == []
    assert len(list((server.root / "dest").rglob("*.txt"))) == 100


def test_a_server_short_of_file_handles_never_costs_a_newer_remote_file(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """Listing many folders at once on a server with few handles: a folder it cannot list must
    never count as missing (its files would be re-sent over newer copies)."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    server = sshd_factory("short")
    local = make_tree(tmp_path / "p", {f"d{i:03d}/f.txt": "local\n" for i in range(150)})
    for path in local.rglob("*"):
        set_mtime(path, T0)
    dest = server.root / "dest"
    first = Remote(server, local, str(dest), tmp_path / "c.toml")
    try:
        first.push()
    finally:
        first.close()
    (dest / "d149/f.txt").write_text("edited on the cluster\n")
    set_mtime(dest / "d149/f.txt", T0 + 1_000_000_000_000)
    subprocess.run(["prlimit", "--pid", str(server.pid), "--nofile=80:80"], check=True)
    second = Remote(server, local, str(dest), tmp_path / "c2.toml")
    try:
        outcome, _ = second.push()
    finally:
        second.close()
    assert outcome.sent == [] and outcome.skipped_newer == ["d149/f.txt"]
    assert (dest / "d149/f.txt").read_text() == "edited on the cluster\n"


def test_a_folder_that_cannot_be_listed_fails_unless_something_else_stands_there() -> None:
    """Only "no such file" means missing; other listing errors fail the push, except where
    the parent's listing shows a file or link in the way (the plan replaces that)."""
    in_the_way = Listed(
        {"": {"d": DestStat("file", 1, 0)}, "d": None},
        {"d": "cannot list the remote folder x/d: Failure"},
    )
    check(in_the_way)
    real = Listed(
        {"": {"d": DestStat("dir", 0, 0)}, "d": None},
        {"d": "cannot list the remote folder x/d: Failure"},
    )
    with pytest.raises(TransferError, match="cannot list the remote folder x/d: Failure"):
        check(real)


# --------------------------------------------------------------------------- refused requests


def partial_push(server: SshServer, local: Path, dest: Path, config: Path) -> str:
    """Push once over SFTP; it must end in PartialTransfer, whose message is returned."""
    remote = Remote(server, local, str(dest), config)
    try:
        with pytest.raises(PartialTransfer) as failed:
            remote.push()
    finally:
        remote.close()
    return str(failed.value)


TOP = [f"f{i:02d}.txt" for i in range(70)]  # enough files to spread over several channels


@pytest.mark.parametrize(
    ("denied", "landed", "complaint"),
    [
        ("fsetstat", {"ln"}, "could not finish the file: Permission denied (and 70 more"),
        ("close", {"ln"}, "(and 70 more failed)"),  # every file counted, whichever channel
        ("rename,posix-rename", set(), "(and 71 more failed)"),
        ("symlink", {*TOP, "sub/x.py"}, "ln: "),
        ("mkdir", {*TOP, "ln"}, "sub: cannot create folder"),
        ("setstat", {*TOP, "sub/x.py", "ln"}, "sub: "),
    ],
)
def test_every_refused_request_fails_its_file_and_leaves_nothing_half_done(
    sshd_factory: SshdFactory, tmp_path: Path, denied: str, landed: set[str], complaint: str
) -> None:
    """OpenSSH's own sftp-server refusing one kind of request (-P): each reply is checked, the
    file it concerns fails (on every channel), and no temporary or partial file stays."""
    name = "deny-" + denied.replace(",", "-")
    server = sshd_factory(name, extra_config={"Subsystem": f"sftp internal-sftp -P {denied}"})
    local = make_tree(
        tmp_path / "p", {**{t: f"{t}\n" for t in TOP}, "sub/x.py": "x\n"}, links={"ln": "f00.txt"}
    )
    dest = server.root / "dest"
    dest.mkdir()
    assert complaint in partial_push(server, local, dest, tmp_path / "c.toml")
    found = {
        p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir() or p.is_symlink()
    }
    assert found == landed
    for path in found - {"ln"}:
        assert (dest / path).read_text() == (local / path).read_text()


def test_a_link_in_the_way_that_cannot_be_removed_is_never_written_through(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """rsync: "could not make way for new directory ... Skipping any contents". So here."""
    server = sshd_factory("deny-remove", extra_config={"Subsystem": "sftp internal-sftp -P remove"})
    local = make_tree(tmp_path / "p", {"a/x.txt": "local x\n", "a/b/y.txt": "y\n", "ok": "ok\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("precious\n")
    dest = server.root / "dest"
    dest.mkdir()
    (dest / "a").symlink_to(outside)
    failed = partial_push(server, local, dest, tmp_path / "c.toml")
    assert failed.startswith("a: cannot remove what is in the way of this folder")
    assert sorted(p.name for p in outside.iterdir()) == ["x.txt"]
    assert (outside / "x.txt").read_text() == "precious\n"
    assert (dest / "ok").read_text() == "ok\n"
