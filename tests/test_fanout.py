"""Fan-out: live clusters land while dead ones fail alone, in time, with their own cause."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sbatchman.plan import is_part
from tests.support.delayproxy import SilentServer, refused_port
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.running import start_sync, wait_for_temporary
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree

TARGET_KEYS = {
    "cluster": str,
    "alias": str,
    "backend": str,
    "status": str,
    "files_sent": int,
    "bytes_sent": int,
    "files_skipped_newer_remote": int,
    "skipped_newer_remote": list,
    "conflicts": list,
    "paths_deleted": int,
    "deleted": list,
    "paths_kept_on_cluster": int,
    "kept_on_cluster": list,
    "seconds": float,
    "error": (str, type(None)),
    "warnings": list,
    "files": list,
}


def check_schema(report: dict) -> None:
    """The --json document as docs/cli.md describes it: exact keys, exact types."""
    assert set(report) == {"schema", "dry_run", "exit_code", "error", "targets"}
    assert report["schema"] == 1
    assert report["error"] is None  # set only when nothing ran (see test_output)
    for target in report["targets"]:
        assert set(target) == set(TARGET_KEYS)
        for key, kind in TARGET_KEYS.items():
            value = target[key]
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
            assert ok, (key, value)
        assert target["status"] in {"ok", "failed", "dry-run", "interrupted"}
        assert (target["error"] is None) == (target["status"] in {"ok", "dry-run"})
        for item in target["files"]:
            assert set(item) == {"path", "why"}


def dead_cluster(name: str, port: int, ssh_config: Path, proj: Path) -> dict:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "user": "nobody",
        "ssh_config": str(ssh_config),
        "sync_dirs": [{"alias": "proj", "local": str(proj), "remote": "/tmp/never-written"}],
    }


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_three_land_while_refused_and_silent_fail_alone(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    backend: str,
) -> None:
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n", "sub/b.sh": "#!/bin/sh\n"})
    live = [
        ssh_cluster(
            s,
            [{"alias": "proj", "local": str(proj), "remote": str(cluster_roots[s.name] / backend)}],
            transfer_backend=backend,
        )
        for s in three_clusters
    ]
    cfg = three_clusters[0].ssh_config
    with SilentServer() as silent:
        dead = [
            dead_cluster("refused", refused_port(), cfg, proj),
            dead_cluster("silent", silent.port, cfg, proj),
        ]
        config = write_config(tmp_path / "c.toml", [*live, *dead])
        started = time.monotonic()
        run = run_cli(capsys, "sync", "--config", str(config), "--json", "--connect-timeout", "2")
        elapsed = time.monotonic() - started
    assert run.code == 1
    report = json.loads(run.out)  # stdout holds the JSON document and nothing else
    check_schema(report)
    assert report["exit_code"] == 1
    by_cluster = {t["cluster"]: t for t in report["targets"]}
    for server in three_clusters:
        assert by_cluster[server.name]["status"] == "ok"
        assert by_cluster[server.name]["backend"] == backend
        assert (cluster_roots[server.name] / backend / "sub/b.sh").exists()
    assert by_cluster["refused"]["error"] == "connection refused"
    assert by_cluster["silent"]["status"] == "failed"
    assert "timed out" in by_cluster["silent"]["error"]
    # A loose bound, not a benchmark: a hung cluster must not hold the run hostage.
    assert elapsed < 30


def test_quiet_prints_only_failures_and_verbose_every_file(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n", "b.py": "b\n"})
    alpha = three_clusters[0]
    clusters = [
        ssh_cluster(
            alpha, [{"alias": "p", "local": str(proj), "remote": str(cluster_roots["alpha"])}]
        ),
        dead_cluster("refused", refused_port(), alpha.ssh_config, proj),
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    quiet = run_cli(capsys, "sync", "--config", str(config), "-q")
    assert quiet.code == 1
    assert "refused" in quiet.out and "alpha" not in quiet.out
    (proj / "a.py").write_text("changed, and bigger\n")
    os.utime(proj / "a.py", (time.time() + 5, time.time() + 5))
    verbose = run_cli(capsys, "sync", "--config", str(config), "-v", "-c", "alpha")
    assert verbose.code == 0
    assert "alpha/p: a.py (newer)" in verbose.out
    assert "b.py" not in verbose.out  # unchanged: not sent, not listed


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_ctrl_c_stops_transfers_leaves_no_partial_file_and_exits_130(
    sshd_factory: SshdFactory,
    tmp_path: Path,
    isolated_env: object,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = sshd_factory(f"slowpoke-{backend}")
    proj = tmp_path / "proj"
    proj.mkdir()
    big = proj / "big.bin"
    with big.open("wb") as f:  # random data: nothing compresses or skips it
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    for i in range(40):
        (proj / f"copy{i}.bin").write_bytes(big.read_bytes()[: 8 << 20])
    dest = server.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [
            ssh_cluster(
                server,
                [{"alias": "p", "local": str(proj), "remote": str(dest)}],
                transfer_backend=backend,
            )
        ],
    )
    proc = start_sync(config, "--json")
    deadline = time.monotonic() + 60
    while not any(dest.rglob("*")) and time.monotonic() < deadline:  # wait for data to flow
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["targets"][0]["status"] == "interrupted"
    expected = {p.name: p.stat().st_size for p in proj.iterdir()}
    temporaries = [p for p in dest.iterdir() if p.name.startswith(".")]
    landed = len([p for p in dest.iterdir() if p not in temporaries])
    target = report["targets"][0]
    if backend == "rsync":  # rsync itself is asked which of the files it started landed
        names = {p.name for p in dest.iterdir() if p not in temporaries}
        assert {f["path"] for f in target["files"]} == names
        assert target["files_sent"] == landed
    else:
        assert target["files_sent"] <= landed  # never claims what did not land
    for path in dest.iterdir():
        if path not in temporaries:
            assert path.stat().st_size == expected[path.name], f"partial file at {path}"
    if backend == "rsync":  # rsync deletes its temporary on SIGTERM
        assert temporaries == []
    else:  # the connection is cut at once; the next run removes what it left
        assert all(is_part(p.name) for p in temporaries)
        for path in proj.iterdir():
            path.unlink()
        (proj / "small.txt").write_text("s\n")
        again = run_cli(capsys, "sync", "--config", str(config))
        assert again.code == 0, again.err
        assert not [p for p in dest.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_while_connecting_leaves_no_ssh_master_behind(
    three_clusters: list[SshServer], tmp_path: Path, stop: signal.Signals
) -> None:
    """One cluster connected (its ssh master running), another still connecting: Ctrl-C (or
    a closed terminal, or a polite kill) must close the master and remove its private socket
    folder, not leave them for 10 minutes."""
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    sockets = tmp_path / "tmp"
    sockets.mkdir()
    live = ssh_cluster(three_clusters[0], [{"alias": "p", "local": str(proj), "remote": "x"}])
    with SilentServer() as silent:
        dead = dead_cluster("silent", silent.port, three_clusters[0].ssh_config, proj)
        config = write_config(tmp_path / "c.toml", [live, dead])
        argv = [sys.executable, "-m", "sbatchman", "sync", "--config", str(config)]
        proc = subprocess.Popen(
            [*argv, "--connect-timeout", "4"],  # the silent one's ssh ends by then
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(sockets)},
        )
        deadline = time.monotonic() + 30
        while not list(sockets.glob("sbm-*/c")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(sockets.glob("sbm-*/c")), "the live cluster's master never came up"
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(sockets.iterdir()) == []  # every private folder, and its socket, is gone
    masters = subprocess.run(
        ["pgrep", "-f", f"ControlPath={sockets}"], capture_output=True, text=True, check=False
    )
    assert masters.stdout == "", "an ssh master outlived the run"


def test_a_bad_ignore_file_stops_the_sync_while_it_connects_and_no_master_stays(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """The walk runs while the clusters connect: its config error is still exit 2 with one
    line, nothing is pushed, and the connections already made are closed, not left over."""
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n", ".sbatchmanignore": "ok\n[oops\n"})
    sockets = tmp_path / "tmp"
    sockets.mkdir()
    dests = [cluster_roots[server.name] / "dest" for server in three_clusters]
    clusters = [
        ssh_cluster(server, [{"alias": "p", "local": str(proj), "remote": str(dest)}])
        for server, dest in zip(three_clusters, dests, strict=True)
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    run = subprocess.run(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(sockets)},
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        "sbatchman: error: bad pattern '[oops' in .sbatchmanignore:2: it has a '[' without a"
        " closing ']', so it can never match; close the bracket, or write '\\[' for a literal '['"
    ], run.stderr
    assert not any(dest.exists() for dest in dests)
    assert list(sockets.iterdir()) == []
    deadline = time.monotonic() + 10  # `ssh -O exit` returns before the master has gone
    while _masters(sockets) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _masters(sockets) == "", "an ssh master outlived the run"


def _masters(sockets: Path) -> str:
    found = subprocess.run(
        ["pgrep", "-f", f"ControlPath={sockets}"], capture_output=True, text=True, check=False
    )
    return found.stdout


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_a_cluster_that_freezes_mid_transfer_fails_on_its_own_after_the_stall_timeout(
    sshd_factory: SshdFactory, tmp_path: Path, backend: str
) -> None:
    frozen, live = sshd_factory(f"frozen-{backend}"), sshd_factory(f"live-{backend}")
    big = tmp_path / "big"
    big.mkdir()
    with (big / "big.bin").open("wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    small = make_tree(tmp_path / "small", {"a.py": "a\n"})
    dest = frozen.root / "dest"
    config = write_config(
        tmp_path / "c.toml",
        [
            ssh_cluster(
                frozen,
                [{"alias": "big", "local": str(big), "remote": str(dest)}],
                transfer_backend=backend,
            ),
            ssh_cluster(
                live,
                [{"alias": "small", "local": str(small), "remote": str(live.root / "dest")}],
                transfer_backend=backend,
            ),
        ],
    )
    proc = start_sync(config, "--json", "--stall-timeout", "3")
    stopped: set[int] = set()
    try:
        wait_for_temporary(dest, 4 << 20, lambda: proc.poll() is None)
        stopped = frozen.session_pids()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        out, err = proc.communicate(timeout=60)
        waited = time.monotonic() - frozen_at
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    report = {t["alias"]: t for t in json.loads(out)["targets"]}
    assert report["small"]["status"] == "ok"
    assert report["big"]["status"] == "failed"
    assert "no data" in report["big"]["error"], report["big"]["error"]
    assert waited < 3 + 15  # the stall timeout, not ssh's own idea of a dead link
    assert not (dest / "big.bin").exists()  # nothing partial at the final path


@pytest.mark.parametrize("jobs", [1, 3])
def test_jobs_bounds_how_many_clusters_are_contacted_at_once(
    three_clusters: list[SshServer], tmp_path: Path, jobs: int
) -> None:
    """Three clusters that accept and then never answer: with -j 1 the second is contacted
    only once the first has timed out; with -j 3 all three at once."""
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    cfg = three_clusters[0].ssh_config
    with SilentServer() as s1, SilentServer() as s2, SilentServer() as s3:
        silent = [s1, s2, s3]
        config = write_config(
            tmp_path / "c.toml",
            [dead_cluster(f"silent{i}", s.port, cfg, proj) for i, s in enumerate(silent)],
        )
        argv = [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "-q"]
        proc = subprocess.Popen(
            [*argv, "-j", str(jobs), "--connect-timeout", "3"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while sum(s.accepted for s in silent) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)  # well inside the 3 s connect timeout of the first contact
        contacted = sum(1 for s in silent if s.accepted)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert contacted == jobs
    assert out.count("timed out") == 3  # every one was tried in the end
