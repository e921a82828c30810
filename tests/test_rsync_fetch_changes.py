"""A job still writing on the cluster while the rsync fetch reads its file (real sshd, rsync).

The file is changed at a deterministic point: when the fetch reports it came (rsync's last
progress line for it), so after rsync read it and before the fetch ends. The fetch must warn,
not count it as landed, and leave the local copy so that the next fetch brings the final
bytes, even when the final write keeps the size and lands in the same second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sbatchman.config import load
from sbatchman.fetch import fetch
from sbatchman.model import Events, Request, Target, exit_code
from tests.support.project import OnPhase, Recorder, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree


class _WritesOnArrival(OnPhase):
    """A reporter whose events run `write` once, when `name` is reported sent."""

    def __init__(self, name: str, write: object) -> None:
        super().__init__()
        self.name, self.write = name, write

    def events(self, target: Target) -> Events:
        outer = self

        class Writing(Recorder):
            def sent(self, path: str, nbytes: int, why: str) -> None:
                super().sent(path, nbytes, why)
                if path == outer.name and callable(outer.write):
                    outer.write()
                    outer.write = None

        return Writing()


def _grow(path: Path) -> None:
    with open(path, "ab") as out:
        out.write(b"more lines\n")


def _same_size_same_second(path: Path) -> None:
    st = path.stat()
    path.write_bytes(b"B" * st.st_size)
    second = st.st_mtime_ns // 1_000_000_000 * 1_000_000_000
    later = second + (st.st_mtime_ns % 1_000_000_000 + 1) % 1_000_000_000  # same second
    os.utime(path, ns=(later, later))


@pytest.mark.parametrize(
    ("change", "how"),
    [(_grow, "it grew from 2000 to 2011 bytes as it came"), (_same_size_same_second, None)],
    ids=["grows", "same-size-same-second"],
)
def test_a_file_written_while_it_comes_is_a_warning_and_comes_again(
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    change: object,
    how: str | None,
) -> None:
    server = three_clusters[0]
    remote = make_tree(cluster_roots[server.name] / "job", {"log.txt": "A" * 2000, "x.txt": "x"})
    # written a moment ago, a fraction into its second: a job's log (only files this recent
    # are checked; an older one that changes as it comes moves its time and comes next run)
    recent = (int(time.time()) - 5) * 1_000_000_000 + 300_000_000
    os.utime(remote / "log.txt", ns=(recent, recent))
    local = tmp_path / "res"
    fetch_dir = {"alias": "res", "remote": str(remote), "local": str(local)}
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, [], fetch_dirs=[fetch_dir])])
    assert callable(change)
    results = fetch(
        load(config), Request(), _WritesOnArrival("log.txt", lambda: change(remote / "log.txt"))
    )
    (result,) = results
    assert (result.status, result.error, exit_code(results)) == ("ok", None, 0)
    assert [p for p, _ in result.sent] == ["x.txt"]  # log.txt did not land as final
    (warning,) = result.warnings
    assert warning.startswith("log.txt: still being written on the cluster ("), warning
    if how is not None:
        assert f"({how})" in warning
    assert int((local / "log.txt").stat().st_mtime) < int((remote / "log.txt").stat().st_mtime)

    again = fetch(load(config), Request(), OnPhase())  # the job is done: the final bytes come
    assert [(r.status, r.warnings) for r in again] == [("ok", [])]
    assert [p for p, _ in again[0].sent] == ["log.txt"]
    assert (local / "log.txt").read_bytes() == (remote / "log.txt").read_bytes()
    assert int((local / "log.txt").stat().st_mtime) == int((remote / "log.txt").stat().st_mtime)
