"""Aliases of one cluster pushed side by side over its one connection (issue 15).

Concurrency is shown, not timed: targets meet at a barrier that only holds if they run at
once (a serial run breaks it, failing the test), and the server is asked how many rsync
receivers it runs at that moment. Overlapping destinations must never meet.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sbatchman.config import load
from sbatchman.model import Events, Request, Result, Target
from sbatchman.push import sync
from tests.support.project import Recorder, ssh_cluster, write_config
from tests.support.sshd import SshdFactory, SshServer
from tests.support.trees import make_tree

MEET = 60.0  # a bound for a broken test, never reached when it passes


class Meeting:
    """A Reporter logging every phase in order; targets named in `meet` wait for each other
    at the first event called `at` (a phase name, or "skipped")."""

    def __init__(
        self, meet: set[tuple[str, str]], at: str, then: Callable[[], None] | None = None
    ) -> None:
        self.meet, self.at = meet, at
        self.barrier = threading.Barrier(max(1, len(meet)), action=then, timeout=MEET)
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str]] = []

    def notice(self, message: str) -> None:
        pass

    def events(self, target: Target) -> Events:
        meeting, key = self, (target.cluster.name, target.sync_dir.alias)
        met = threading.Event()

        def arrive(name: str) -> None:
            with meeting.lock:
                meeting.log.append((*key, name))
            if name == meeting.at and key in meeting.meet and not met.is_set():
                met.set()
                meeting.barrier.wait()

        class Logged(Recorder):
            def phase(self, name: str) -> None:
                arrive(name)

            def skipped(self, path: str, why: str) -> None:
                super().skipped(path, why)
                arrive("skipped")

        return Logged()

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        yield

    def span(self, cluster: str, alias: str) -> tuple[int, int]:
        """Where in the log the target began its work and where it ended."""
        mine = [i for i, (c, a, _) in enumerate(self.log) if (c, a) == (cluster, alias)]
        start = next(i for i in mine if self.log[i][2] == "scanning")
        return start, mine[-1]


def _receivers(server: SshServer, root: Path) -> int:
    """rsync receivers the server runs now into `root` (one per push going there); the
    server is shared, so another test's receiver still ending is not counted."""
    mine: dict[int, int] = {}  # receiver pid -> its parent
    for pid in server.session_pids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            receiver = b"--server" in argv and b"--sender" not in argv
            # -s keeps the path out of argv; the working folder says where it writes
            if receiver and Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(root):
                stat = Path(f"/proc/{pid}/stat").read_text()
                mine[pid] = int(stat.rsplit(")", 1)[1].split()[1])
    return sum(parent not in mine for parent in mine.values())  # a receiver forks its generator


def test_aliases_of_one_cluster_are_pushed_at_once_over_its_connection(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """Each push meets a kept conflict while its rsync waits for the file list, so all three
    rsyncs are running on the server together when the barrier opens."""
    server = three_clusters[0]
    root = cluster_roots[server.name]
    dirs = []
    for alias in ("one", "two", "three"):
        local = make_tree(tmp_path / alias, {"kept": "a file here\n", "f.txt": alias})
        make_tree(root / alias, {"kept/inside.txt": "a full folder there\n"})
        dirs.append({"alias": alias, "local": str(local), "remote": str(root / alias)})
    seen: list[int] = []

    def count() -> None:  # all three are inside their push; their receivers start meanwhile
        deadline = time.monotonic() + MEET
        while _receivers(server, root) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(_receivers(server, root))

    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    meet = {(server.name, a) for a in ("one", "two", "three")}
    reporter = Meeting(meet, "skipped", count)
    results = sync(load(config), Request(backend="rsync"), reporter)
    assert [(r.alias, r.status) for r in results] == [("one", "ok"), ("two", "ok"), ("three", "ok")]
    assert seen == [3]
    for alias in ("one", "two", "three"):
        assert (root / alias / "f.txt").read_text() == alias
    for alias in ("one", "two", "three"):  # queued aliases say so, not "connecting"
        phases = [p for c, a, p in reporter.log if a == alias]
        assert phases[:3] == ["connecting", "waiting", "scanning"], phases


def test_nested_remote_folders_are_pushed_one_after_another(tmp_path: Path) -> None:
    """`outer` and `outer/inner` overlap, `apart` does not: apart meets outer mid-push while
    inner waits for outer to finish."""
    dest = tmp_path / "dest"
    dirs = [
        {"alias": "outer", "remote": str(dest / "x")},
        {"alias": "inner", "remote": str(dest / "x" / "inner")},
        {"alias": "apart", "remote": str(dest / "y")},
    ]
    for d in dirs:
        d["local"] = str(make_tree(tmp_path / str(d["alias"]), {"f.txt": str(d["alias"])}))
    cluster = {"name": "here", "transfer_backend": "sftp", "sync_dirs": dirs}
    config = write_config(tmp_path / "c.toml", [cluster])
    reporter = Meeting({("here", "outer"), ("here", "apart")}, "sending")
    results = sync(load(config), Request(), reporter)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    outer, inner = reporter.span("here", "outer"), reporter.span("here", "inner")
    assert outer[1] < inner[0], reporter.log
    assert (dest / "x/inner/f.txt").read_text() == "inner"


def test_local_clusters_sharing_a_destination_never_push_into_it_at_once(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "shared"
    local = make_tree(tmp_path / "p", {"f.txt": "same\n"})
    other = make_tree(tmp_path / "q", {"g.txt": "other\n"})
    clusters = [
        {"name": "here", "transfer_backend": "sftp", "sync_dirs": [
            {"alias": "a", "local": str(local), "remote": str(dest)}]},
        {"name": "there", "transfer_backend": "sftp", "sync_dirs": [
            {"alias": "a", "local": str(local), "remote": str(dest)},
            {"alias": "c", "local": str(other), "remote": str(tmp_path / "elsewhere")}]},
    ]  # fmt: skip
    config = write_config(tmp_path / "c.toml", clusters)
    reporter = Meeting({("here", "a"), ("there", "c")}, "sending")
    results = sync(load(config), Request(), reporter)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    first, second = sorted([reporter.span("here", "a"), reporter.span("there", "a")])
    assert first[1] < second[0], reporter.log


def test_one_failing_alias_never_stops_its_siblings(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    server = three_clusters[1]
    root = cluster_roots[server.name]
    (root / "a-file").write_text("not a folder\n")
    local = make_tree(tmp_path / "p", {"f.txt": "f\n"})
    remotes = {"one": root / "one", "bad": root / "a-file" / "sub", "three": root / "three"}
    dirs = [{"alias": a, "local": str(local), "remote": str(r)} for a, r in remotes.items()]
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    results: list[Result] = sync(load(config), Request(backend="sftp"), Meeting(set(), ""))
    assert [(r.alias, r.status) for r in results] == [
        ("one", "ok"),
        ("bad", "failed"),
        ("three", "ok"),
    ]
    assert (root / "one/f.txt").exists() and (root / "three/f.txt").exists()


def test_aliases_side_by_side_share_a_server_that_allows_one_session(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    """A cluster's MaxSessions may be below the aliases pushed at once: an alias whose SFTP
    channel is refused waits for a sibling's channel instead of failing."""
    server = sshd_factory("frugal", extra_config={"MaxSessions": "1"})
    dirs = []
    for i in range(4):
        local = make_tree(tmp_path / f"a{i}", {f"f{j}.txt": str(j) for j in range(20)})
        dirs.append({"alias": f"a{i}", "local": str(local), "remote": str(server.root / f"a{i}")})
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    results = sync(load(config), Request(backend="sftp"), Meeting(set(), ""))
    assert [(r.alias, r.status, r.error) for r in results] == [
        (f"a{i}", "ok", None) for i in range(4)
    ]
    for i in range(4):
        assert len(list((server.root / f"a{i}").glob("*.txt"))) == 20


def test_a_remote_spelled_with_a_double_slash_still_overlaps(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """`//x` is `/x` on the cluster: `//x` and `/x/inner` must not be pushed at once."""
    server = three_clusters[2]
    root = cluster_roots[server.name]
    dirs = [
        {"alias": "outer", "remote": "/" + str(root / "x")},
        {"alias": "inner", "remote": str(root / "x" / "inner")},
        {"alias": "apart", "remote": str(root / "y")},
    ]
    for d in dirs:
        d["local"] = str(make_tree(tmp_path / str(d["alias"]), {"f.txt": str(d["alias"])}))
    config = write_config(tmp_path / "c.toml", [ssh_cluster(server, dirs)])
    reporter = Meeting({(server.name, "outer"), (server.name, "apart")}, "sending")
    results = sync(load(config), Request(backend="sftp"), reporter)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    outer, inner = reporter.span(server.name, "outer"), reporter.span(server.name, "inner")
    assert outer[1] < inner[0], reporter.log
    assert (root / "x/inner/f.txt").read_text() == "inner"
