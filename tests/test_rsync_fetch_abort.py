"""Ctrl-C during an rsync fetch: abort() stops rsync (SIGTERM: it removes its temporary), and
the fetch says exactly which files landed before it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sbatchman.backends.rsync import RsyncSession
from sbatchman.backends.rsync_info import detect
from sbatchman.config import parse
from sbatchman.model import FetchJob, InterruptedPart
from tests.support.project import Recorder
from tests.support.trees import make_tree

BIG = 1 << 30


def test_abort_mid_file_stops_rsync_and_counts_what_landed(tmp_path: Path) -> None:
    info = detect()
    if info is None:
        pytest.skip("rsync is not installed")
    remote = make_tree(tmp_path / "cluster", {f"a{i}.txt": f"{i}\n" for i in range(5)})
    with open(remote / "z-big.bin", "wb") as big:
        big.truncate(BIG)  # sparse; rsync sends the files in name order, so this comes last
    local = tmp_path / "res"
    text = (
        f"[[clusters]]\nname='here'\n[[clusters.fetch_dirs]]\nremote='{remote}'\nlocal='{local}'\n"
    )
    cluster = parse(text, tmp_path / "c.toml").clusters[0]
    job = FetchJob(cluster, cluster.fetch_dirs[0], str(remote), local, (), False)
    session = RsyncSession(info, None, 30)
    caught: list[BaseException] = []

    def run() -> None:
        try:
            session.fetch(job, Recorder())
        except BaseException as err:
            caught.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.is_alive():
        parts = (
            [p for f in local.glob(".rsync-fetch.*") for p in f.iterdir()] if local.is_dir() else []
        )
        if any(p.stat().st_size >= 1 << 20 for p in parts if p.exists()):
            break
        time.sleep(0.002)
    assert worker.is_alive(), "the fetch ended before it could be interrupted"
    session.abort()
    worker.join(30)
    (err,) = caught
    assert isinstance(err, InterruptedPart)
    assert sorted(p for p, _ in err.outcome.sent) == [f"a{i}.txt" for i in range(5)]
    assert err.outcome.bytes_sent == 10
    assert not (local / "z-big.bin").exists()
    assert sorted(p.name for p in local.iterdir()) == [f"a{i}.txt" for i in range(5)]
