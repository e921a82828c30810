"""The delete planner (sbatchman.deletes) and its record (sbatchman.records), without a cluster.

The four rules of issue 14 are checked as properties over random records and cluster trees: a
planned path is always recorded, unchanged, not protected and reached through real folders;
a planned folder is always emptied by the plan. The integration side is test_delete.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sbatchman.config import Cluster
from sbatchman.deletes import (
    CHANGED,
    NOT_EMPTY,
    OTHER_KIND,
    THROUGH_LINK,
    candidates,
    folders_to_list,
    next_record,
    plan_deletes,
)
from sbatchman.model import Outcome
from sbatchman.plan import DestStat
from sbatchman.records import Recorded, load, record_path, save
from sbatchman.selection.walk import Entry, Selection

F = Recorded("file", 3, 100)
D = Recorded("dir")
NONE = Selection(Path("/nowhere"), ())


def listings_of(tree: dict[str, DestStat]) -> dict[str, dict[str, DestStat] | None]:
    """Every folder's listing, as a remover gives it (lstat: a link is a link)."""
    out: dict[str, dict[str, DestStat] | None] = {"": {}}
    for path, found in sorted(tree.items()):
        parent, _, name = path.rpartition("/")
        listing = out.setdefault(parent, {})
        assert listing is not None
        listing[name] = found
        if found.kind == "dir":
            out.setdefault(path, {})
    return out


def plan_for(record: dict[str, Recorded], tree: dict[str, DestStat]) -> object:
    paths = candidates(record, NONE, lambda p, d: False)
    listings = listings_of(tree)
    wanted = folders_to_list(record, paths)
    return plan_deletes(record, paths, {f: listings.get(f) for f in wanted})


def same(r: Recorded) -> DestStat:
    return DestStat(r.kind, r.size, r.mtime)


def test_only_what_is_recorded_and_unchanged_goes() -> None:
    record = {"a.py": F, "b.py": F, "c.py": F}
    tree = {
        "a.py": same(F),
        "b.py": DestStat("file", 3, 101),  # touched on the cluster
        "c.py": DestStat("file", 4, 100),  # rewritten, same second
        "out.csv": DestStat("file", 9, 5),  # a job's output: never recorded
    }
    plan = plan_for(record, tree)
    assert plan.files == ["a.py"]  # type: ignore[attr-defined]
    assert plan.kept == [("b.py", CHANGED), ("c.py", CHANGED)]  # type: ignore[attr-defined]


def test_folders_go_only_when_emptied_and_deepest_first() -> None:
    record = {"old": D, "old/x": F, "old/sub": D, "old/sub/y": F, "busy": D, "busy/z": F}
    tree = {k: same(v) for k, v in record.items()} | {"busy/job.out": DestStat("file", 1, 1)}
    plan = plan_for(record, tree)
    assert sorted(plan.files) == ["busy/z", "old/sub/y", "old/x"]  # type: ignore[attr-defined]
    assert plan.folders == ["old/sub", "old"]  # type: ignore[attr-defined]
    assert plan.kept == [("busy", NOT_EMPTY)]  # type: ignore[attr-defined]


def test_a_link_on_the_way_is_never_gone_through() -> None:
    record = {"data": D, "data/a": F, "ln": Recorded("link", 5)}
    tree = {"data": DestStat("link", 20, 0), "ln": DestStat("file", 5, 0)}
    listings = listings_of(tree)
    listings["data"] = {"a": same(F)}  # what OPENDIR through the link would show
    paths = candidates(record, NONE, lambda p, d: False)
    plan = plan_deletes(record, paths, listings)
    assert plan.files == [] and plan.folders == []
    assert plan.kept == [("data", OTHER_KIND), ("data/a", THROUGH_LINK), ("ln", OTHER_KIND)]


def test_selected_and_protected_paths_are_never_candidates() -> None:
    record = {"kept.py": F, "excluded.log": F, "gone.py": F, "now_file/x": F}
    selection = Selection(
        Path("/p"),
        (Entry("kept.py", "file", 3, 0, 0o644), Entry("now_file", "file", 1, 0, 0o644)),
    )
    assert candidates(record, selection, lambda p, d: p.endswith(".log")) == ["gone.py"]


def test_a_recorded_path_gone_from_the_cluster_is_forgotten() -> None:
    record = {"a": F, "d": D, "d/b": F}
    plan = plan_for(record, {})
    assert sorted(plan.gone) == ["a", "d", "d/b"]  # type: ignore[attr-defined]
    assert next_record(record, NONE, Outcome(), plan) == {}  # type: ignore[arg-type]


def test_next_record_keeps_what_the_push_landed_and_only_that() -> None:
    def entry(path: str, size: int = 3, kind: str = "file") -> Entry:
        return Entry(path, kind, size, 100 * 10**9 + 7, 0o644)  # type: ignore[arg-type]

    selection = Selection(
        Path("/p"),
        (
            entry("sent.py"),
            entry("same.py"),
            entry("before.py"),
            entry("newer.py"),
            entry("d", 0, "dir"),
            entry("ln", 5, "link"),
        ),
    )
    old = {"same.py": F, "newer.py": F, "unselected": F, "deleted": F}
    outcome = Outcome(sent=[("sent.py", "new")], skipped_newer=["newer.py"])
    new = next_record(old, selection, outcome, deleted=["deleted"])
    assert new == {
        "sent.py": F,
        "same.py": F,  # up to date and recorded before as the same file
        "d": D,
        "ln": Recorded("link", 5),
        "unselected": F,  # not looked at: a later delete checks it again
    }  # before.py was already there before sbatchman's first push: not ours


paths = st.lists(
    st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map("/".join), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    recorded=paths,
    on_cluster=paths,
    changed=st.sets(st.integers(0, 11)),
    links=st.sets(st.integers(0, 11)),
    protected=st.sets(st.integers(0, 11)),
)
def test_every_planned_path_obeys_the_four_rules(
    recorded: list[str],
    on_cluster: list[str],
    changed: set[int],
    links: set[int],
    protected: set[int],
) -> None:
    def tree_of(names: list[str], touch: set[int]) -> dict[str, DestStat]:
        tree: dict[str, DestStat] = {}
        folders = {n.rsplit("/", k)[0] for n in names for k in range(1, n.count("/") + 1)}
        for folder in folders:
            tree[folder] = DestStat("dir", 0, 0)
        for i, name in enumerate(names):
            if name not in folders:
                tree[name] = DestStat("file", 3, 100 + (i in touch))
        for i, name in enumerate(sorted(tree)):
            if i in links and tree[name].kind == "dir":
                tree[name] = DestStat("link", 5, 0)
        return tree

    pushed = tree_of(recorded, set())
    record = {p: Recorded(s.kind, s.size, s.mtime) for p, s in pushed.items() if s.kind != "link"}
    cluster = tree_of(on_cluster + recorded, changed)
    guarded = {p for i, p in enumerate(sorted(record)) if i in protected}
    paths_ = candidates(record, NONE, lambda p, d: p in guarded)
    listings = listings_of(cluster)
    wanted = folders_to_list(record, paths_)
    plan = plan_deletes(record, paths_, {f: listings.get(f) for f in wanted})
    removed = set(plan.files) | set(plan.folders)
    for path in removed:
        assert path in record and path not in guarded  # rules 1 and 3
        parts = path.split("/")
        for k in range(1, len(parts)):  # rule 4: real folders all the way down
            assert cluster["/".join(parts[:k])].kind == "dir"
        found = cluster[path]
        assert found.kind == record[path].kind  # rule 2
        if found.kind == "file":
            assert (found.size, found.mtime) == (record[path].size, record[path].mtime)
    for folder in plan.folders:  # only emptied folders, each after its contents
        inside = [p for p in cluster if p.startswith(folder + "/")]
        assert all(p in removed for p in inside)
        assert all(
            plan.folders.index(p) < plan.folders.index(folder) for p in inside if p in plan.folders
        )


CLUSTER = Cluster("alpha", "alpha", None, None, None, None, (), (), (), None, None, (), (), "x")


def test_the_record_round_trips_and_a_bad_one_is_none(tmp_path: Path) -> None:
    record = {"a": F, "d": D, "ln": Recorded("link", 5), "odd\udcff name": F}
    save(CLUSTER, "/r", record, tmp_path)
    assert load(CLUSTER, "/r", tmp_path) == record
    assert load(CLUSTER, "/other", tmp_path) is None  # one record per remote folder
    assert [p.name for p in tmp_path.iterdir()] == [record_path(CLUSTER, "/r", tmp_path).name]
    path = record_path(CLUSTER, "/r", tmp_path)
    data = json.loads(path.read_text())
    data["paths"] = data["paths"].replace("odd", "../odd")
    path.write_text(json.dumps(data))
    assert load(CLUSTER, "/r", tmp_path) is None  # never a path outside the folder
    path.write_text("{not json")
    assert load(CLUSTER, "/r", tmp_path) is None


def test_every_field_of_every_path_comes_back(tmp_path: Path) -> None:
    """The record is kept in columns: each value must come back at its own path."""
    record = {
        "d": D,
        "d/new\nline": Recorded("file", 2**40, -1),  # before 1970 is a time too
        "ln": Recorded("link", 1, target="d"),
        "old-ln": Recorded("link", 5),  # recorded before targets were
        "z": F,
    }
    for each in (record, {}):
        save(CLUSTER, "/r", each, tmp_path)
        assert load(CLUSTER, "/r", tmp_path) == each


def test_a_record_written_before_the_columns_still_loads(tmp_path: Path) -> None:
    """Version 1 kept one [kind, size, mtime] (and a link's target) per path: a record an
    older sbatchman wrote still lets the next --delete remove what that push landed."""
    path = record_path(CLUSTER, "/r", tmp_path)
    place = ["alpha", "alpha", "", "", "/r", ""]
    entries = {"d": ["dir", 0, 0], "d/a": ["file", 3, 100], "ln": ["link", 2, 0, "d"]}
    path.write_text(json.dumps({"version": 1, "place": place, "entries": entries}))
    assert load(CLUSTER, "/r", tmp_path) == {
        "d": D,
        "d/a": F,
        "ln": Recorded("link", 2, target="d"),
    }
    for bad in ("../escape", "", "d//a", "./d", "d/."):  # never a path outside the folder
        for wrong in ({**entries, bad: [*F[:3]]}, {bad: [*F[:3]]}):
            path.write_text(json.dumps({"version": 1, "place": place, "entries": wrong}))
            assert load(CLUSTER, "/r", tmp_path) is None, wrong
    big = {"big": ["file", 2**63, 1]}  # no file is that big: the columns could not keep it
    path.write_text(json.dumps({"version": 1, "place": place, "entries": big}))
    assert load(CLUSTER, "/r", tmp_path) is None


def test_a_push_stopped_part_way_records_only_what_landed(tmp_path: Path) -> None:
    from sbatchman.config import SyncDir
    from sbatchman.deleting import record_landed
    from sbatchman.model import Job

    files = (Entry("a", "file", 3, 100 * 10**9, 0o644), Entry("b", "file", 3, 100 * 10**9, 0o644))
    sync_dir = SyncDir("proj", tmp_path / "proj", "/r", (), None, "x")
    job = Job(CLUSTER, sync_dir, "/r", Selection(tmp_path / "proj", files), dry_run=True)
    landed = Outcome(sent=[("a", "new")])
    record_landed(job, landed, tmp_path / "state")
    assert not (tmp_path / "state").exists()  # a dry run writes nothing
    job = Job(CLUSTER, sync_dir, "/r", job.selection, dry_run=False)
    record_landed(job, landed, tmp_path / "state")
    assert load(CLUSTER, "/r", tmp_path / "state", local=sync_dir.local) == {"a": F}
