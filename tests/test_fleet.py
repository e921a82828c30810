"""The fan-out on its own: one session per cluster, held open across passes, reopened alone.

Real sshd servers and real sessions; logins are counted in each server's own log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.backends import Session
from sbatchman.config import load
from sbatchman.fanout import Fleet, Stopped
from sbatchman.model import Events, Request, Result, Target
from sbatchman.push import pusher, walk
from sbatchman.targets import resolve_targets
from tests.support.delayproxy import refused_port
from tests.support.project import OnPhase, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree


def logins(server: SshServer) -> int:
    return server.log_text().count("Accepted publickey")


def _targets(tmp_path: Path, clusters: list[dict], request: Request) -> tuple[Fleet, list[Target]]:
    config = load(write_config(tmp_path / "c.toml", clusters))
    targets = resolve_targets(config, request)
    return Fleet(targets, config.settings, request, OnPhase()), targets


def _push(fleet: Fleet, request: Request, targets: list[Target]) -> list[Result]:
    return fleet.run(pusher(request, walk(targets)))


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_two_passes_over_one_fleet_log_in_once(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    server = three_clusters[0]
    local = make_tree(tmp_path / "p", {"a.txt": "one\n", "sub/b.txt": "b\n"})
    dest = cluster_roots[server.name] / "dest"
    dirs = [{"alias": "a", "local": str(local), "remote": str(dest)}]
    request = Request(backend=backend)
    fleet, targets = _targets(tmp_path, [ssh_cluster(server, dirs)], request)
    before = logins(server)
    with fleet:
        first = _push(fleet, request, targets)
        (local / "a.txt").write_text("two, longer\n")
        second = _push(fleet, request, targets)
    assert [r.status for r in first + second] == ["ok", "ok"]
    assert sorted(p for p, _ in first[0].sent) == ["a.txt", "sub/b.txt"]
    assert [p for p, _ in second[0].sent] == ["a.txt"]
    assert (dest / "a.txt").read_text() == "two, longer\n"
    assert logins(server) - before == 1


def test_reconnect_reopens_one_cluster_and_leaves_the_others_alone(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    alpha, beta = three_clusters[0], three_clusters[1]
    local = make_tree(tmp_path / "p", {"a.txt": "a\n"})
    clusters = [
        ssh_cluster(s, [{"alias": "a", "local": str(local), "remote": str(cluster_roots[s.name])}])
        for s in (alpha, beta)
    ]
    request = Request(backend="sftp")
    fleet, targets = _targets(tmp_path, clusters, request)
    before = {s.name: logins(s) for s in (alpha, beta)}
    with fleet:
        assert [r.status for r in _push(fleet, request, targets)] == ["ok", "ok"]
        old_alpha, old_beta = fleet.sessions[alpha.name], fleet.sessions[beta.name]
        fleet.reconnect(alpha.name)
        assert fleet.sessions[beta.name] is old_beta
        assert fleet.sessions[alpha.name] is not old_alpha
        assert not getattr(old_alpha, "transport").is_active()  # noqa: B009 - sftp only
        assert getattr(old_beta, "transport").is_active()  # noqa: B009
        (local / "a.txt").write_text("again\n")
        again = _push(fleet, request, targets)
    assert [(r.status, [p for p, _ in r.sent]) for r in again] == [("ok", ["a.txt"])] * 2
    assert logins(alpha) - before[alpha.name] == 2
    assert logins(beta) - before[beta.name] == 1
    assert not getattr(old_beta, "transport").is_active()  # noqa: B009 - closed at the end


def test_a_cluster_that_cannot_connect_fails_its_targets_in_every_pass(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    live = three_clusters[0]
    local = make_tree(tmp_path / "p", {"a.txt": "a\n"})
    dirs = [{"alias": "a", "local": str(local), "remote": str(cluster_roots[live.name])}]
    dead = {
        "name": "refused",
        "host": "127.0.0.1",
        "port": refused_port(),
        "user": "nobody",
        "ssh_config": str(live.ssh_config),
        "sync_dirs": [{"alias": "a", "local": str(local), "remote": "/tmp/never-written"}],
    }
    request = Request(backend="sftp")
    fleet, targets = _targets(tmp_path, [ssh_cluster(live, dirs), dead], request)
    with fleet:
        first = _push(fleet, request, targets)
        kept = fleet.sessions[live.name]
        fleet.reconnect("refused")
        assert fleet.sessions[live.name] is kept
        second = _push(fleet, request, targets)
    for results in (first, second):
        assert [(r.cluster, r.status) for r in results] == [
            (live.name, "ok"),
            ("refused", "failed"),
        ]
        assert results[0].error is None
        assert (results[1].error or "").endswith("connection refused"), results[1].error


def test_ctrl_c_in_a_pass_keeps_what_finished_and_closes_every_session(
    three_clusters: list[SshServer], cluster_roots: dict[str, Path], tmp_path: Path
) -> None:
    """Ctrl-C reaches the pass as KeyboardInterrupt (here raised by the second target's
    operation, a deterministic stand-in for the signal): Stopped says what finished."""
    server = three_clusters[0]
    local = make_tree(tmp_path / "p", {"a.txt": "a\n"})
    root = cluster_roots[server.name]
    dirs = [{"alias": n, "local": str(local), "remote": str(root / n)} for n in ("one", "two")]
    request = Request(backend="sftp")
    fleet, targets = _targets(tmp_path, [ssh_cluster(server, dirs)], request)
    push = pusher(request, walk(targets))

    def operation(target: Target, session: Session, events: Events) -> Result:
        if target.sync_dir.alias == "two":
            raise KeyboardInterrupt
        return push(target, session, events)

    with pytest.raises(Stopped) as stopped, fleet:
        session = fleet.sessions[server.name]
        fleet.run(operation)
    assert [(r.alias, r.status) for r in stopped.value.results] == [
        ("one", "ok"),
        ("two", "interrupted"),
    ]
    assert not getattr(session, "transport").is_active()  # noqa: B009
    assert fleet.sessions == {}


@pytest.mark.parametrize(
    ("a", "b", "nested"),
    [
        ("/s/x", "/s/x", True),
        ("/s/x", "/s/x/inner", True),
        ("/s/x/inner", "/s/x", True),
        ("/s/x", "/s/xy", False),
        ("/s/x", "/s/y", False),
        ("/", "/s", True),
        ("proj", "proj/sub", True),
        ("proj", "lib", False),
        (".", "lib", True),  # the login folder itself holds every relative path
        ("proj", "/home/me/proj", True),  # where the login folder is is not known here
        ("../other/x", "proj", True),
    ],
)
def test_which_remote_folders_count_as_overlapping(a: str, b: str, nested: bool) -> None:
    from sbatchman.fanout import nested as overlapping

    assert overlapping(a, b) is nested


def test_what_runs_meanwhile_runs_once_not_again_on_a_reconnect(tmp_path: Path) -> None:
    """`meanwhile` (a push's walk) belongs to the first connect: a cluster reopened later
    must not walk again (and swap the selections of the run under its feet)."""
    local = make_tree(tmp_path / "p", {"a.txt": "a\n"})
    dirs = [{"alias": "a", "local": str(local), "remote": str(tmp_path / "dest")}]
    config = load(write_config(tmp_path / "c.toml", [{"name": "here", "sync_dirs": dirs}]))
    request = Request()
    targets = resolve_targets(config, request)
    calls: list[int] = []
    with Fleet(
        targets, config.settings, request, OnPhase(), meanwhile=lambda: calls.append(1)
    ) as f:
        f.reconnect("here")
    assert calls == [1]
