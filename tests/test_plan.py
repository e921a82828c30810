"""plan.decide is rsync -rlpt --update, decided in whole seconds; plan.build lists folders once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sbatchman.plan import (
    FULL_FOLDER,
    NEWER_FILE,
    Action,
    DestStat,
    attribute_fixes,
    build,
    decide,
    folders,
    in_the_way,
    is_part,
    locked_folders,
    part_name,
    trusted,
)
from sbatchman.selection.walk import Entry, Selection
from sbatchman.temporaries import Temporaries

NS = 1_000_000_000
OLD = Temporaries(created=1_000)  # a run of 1970: its temporaries are abandoned by age


def file(path: str = "a.py", size: int = 10, mtime: float = 1000.4) -> Entry:
    return Entry(path, "file", size, int(mtime * NS), 0o644)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        (None, ("send", "new")),
        (DestStat("file", 10, 999), ("send", "newer")),
        (DestStat("file", 10, 1001), ("skip-newer", "remote is newer")),
        (DestStat("file", 10, 1000), None),  # same second (local has .4): unchanged
        (DestStat("file", 11, 1000), ("send", "size differs")),
        (DestStat("dir", 0, 1000), ("send", "replaces a folder")),
        (DestStat("link", 3, 1000, target="x"), ("send", "replaces a link")),
    ],
)
def test_file_decisions(dest: DestStat | None, expected: tuple[str, str] | None) -> None:
    action = decide(file(), dest)
    assert (None if action is None else (action.op, action.reason)) == expected


def test_links_and_dirs() -> None:
    link = Entry("l", "link", 1, 0, 0o777, "target")
    assert decide(link, DestStat("link", 6, 0, target="target")) is None
    changed = decide(link, DestStat("link", 5, 0, target="other"))
    assert changed is not None and changed.op == "link"
    folder = Entry("d", "dir", 0, 0, 0o755)
    assert decide(folder, DestStat("dir", 0, 5)) is None
    made = decide(folder, None)
    assert made is not None and made.op == "mkdir"


def test_build_uses_listings_and_finds_leftovers() -> None:
    sel = Selection(
        Path("/src"),
        (Entry("d", "dir", 0, 0, 0o755), file("d/a.py"), file("d/b.py", mtime=5000.0)),
    )
    assert folders(sel) == ["", "d"]
    leftover = OLD.name("a.py")
    listings = {
        "": {"d": DestStat("dir", 0, 1)},
        "d": {"a.py": DestStat("file", 10, 1000), leftover: DestStat("file", 3, 1)},
    }
    plan = build(sel, listings)
    assert [(a.entry.path, a.op) for a in plan.actions] == [("d/b.py", "send")]
    assert plan.leftovers == [f"d/{leftover}"]
    assert is_part(leftover) and not is_part(".a.py.swp")


def test_something_in_the_way_is_replaced_first() -> None:
    folder = Entry("d", "dir", 0, 0, 0o755)
    for kind in ("file", "link", "other"):
        action = decide(folder, DestStat(kind, 1, 0))  # type: ignore[arg-type]
        assert action is not None
        words = "replaces a special file" if kind == "other" else f"replaces a {kind}"
        assert (action.op, action.reason, action.clear) == ("mkdir", words, kind)
    link = decide(Entry("l", "link", 1, 0, 0o777, "t"), DestStat("dir", 0, 0))
    assert link is not None and (link.op, link.clear) == ("link", "dir")
    new = decide(file(), None)
    assert new is not None and new.clear is None


def test_a_listing_through_a_link_or_file_is_not_trusted() -> None:
    """A link on the cluster where the tree has a folder: what it points at is not ours."""
    sel = Selection(Path("/src"), (Entry("d", "dir", 0, 0, 0o755), file("d/a.py")))
    listings = {
        "": {"d": DestStat("link", 3, 1, target="/elsewhere")},
        "d": {"a.py": DestStat("file", 10, 5000), part_name("x"): DestStat("file", 1, 1)},
    }
    assert trusted(listings)["d"] is None
    plan = build(sel, listings)
    assert [(a.entry.path, a.op, a.clear) for a in plan.actions] == [
        ("d", "mkdir", "link"),
        ("d/a.py", "send", None),  # the link's target had a newer a.py: irrelevant
    ]
    assert plan.leftovers == []  # never delete through the link either


def test_leftovers_are_only_abandoned_temporaries() -> None:
    own = OLD.name("a.py")
    looks_like = ".x.0123abcd.sbm-part"  # a user's file (and the old style of temporaries)
    live = part_name("b.py")  # being written by a push of this very process
    sel = Selection(Path("/src"), (file(looks_like),))
    listings = {
        "": {
            own: DestStat("file", 1, 1),
            looks_like: DestStat("file", 1, 1),
            live: DestStat("file", 1, 1),
            OLD.name("d"): DestStat("dir", 0, 1),  # a folder named like one stays too
        }
    }
    assert build(sel, listings).leftovers == [own]
    assert not is_part(looks_like + "\n") and is_part(part_name("new\nline"))


def test_temporary_names_fit_in_255_bytes() -> None:
    long = "東" * 90  # 270 bytes of UTF-8
    part = part_name(long)
    assert len(part.encode("utf-8")) <= 255 and is_part(part)  # cut between characters
    assert part_name("a.py").startswith(".a.py.")


def test_read_only_folders_we_write_into_are_unlocked_first() -> None:
    ro, other = Entry("ro", "dir", 0, 0, 0o555), Entry("other", "dir", 0, 0, 0o555)
    actions = [Action(file("ro/b.txt"), "send", "new"), Action(file("x.txt"), "send", "new")]
    dirs = [(ro, DestStat("dir", 0, 0, 0o555)), (other, DestStat("dir", 0, 0, 0o555))]
    assert locked_folders(actions, dirs) == [ro]  # `other` receives nothing: left alone
    assert locked_folders(actions, [(ro, DestStat("dir", 0, 0, 0o755))]) == []


def test_a_newer_file_on_the_cluster_is_kept_whatever_the_local_kind() -> None:
    """Issue 10 item 1: rsync lets a type change win over --update; we keep the newer file."""
    newer, older = DestStat("file", 3, 1001), DestStat("file", 3, 999)
    link = Entry("l", "link", 1, 1000 * NS, 0o777, "t")
    folder = Entry("d", "dir", 0, 1000 * NS, 0o755)
    for entry in (link, folder):
        kept = decide(entry, newer)
        assert kept is not None and (kept.op, kept.reason) == ("conflict", NEWER_FILE)
        replaced = decide(entry, older)  # a link is renamed over the file; a folder clears it
        assert replaced is not None and replaced.op in ("link", "mkdir")
    # a link on the cluster is no regular file: a local file replaces it, as rsync does
    sent = decide(file(), DestStat("link", 3, 5000, target="x"))
    assert sent is not None and sent.op == "send"
    # a folder that is not empty where a file goes is kept; an empty one is replaced
    full = decide(file(), DestStat("dir", 0, 1), empty=False)
    assert full is not None and (full.op, full.reason) == ("conflict", FULL_FOLDER)
    empty = decide(file(), DestStat("dir", 0, 1), empty=True)
    assert empty is not None and (empty.op, empty.clear) == ("send", "dir")


def test_nothing_is_planned_below_a_folder_kept_as_a_conflict() -> None:
    sel = Selection(
        Path("/src"),
        (
            Entry("res", "dir", 0, 1000 * NS, 0o755),
            file("res/a.py"),
            Entry("res/deep", "dir", 0, 0, 0o755),
            file("res/deep/b.py"),
            file("full"),
            file("ok.py"),
        ),
    )
    listings = {
        "": {"res": DestStat("file", 4, 2000), "full": DestStat("dir", 0, 1)},
        "res": None,
        "res/deep": None,
    }
    assert in_the_way(sel, listings) == ["full"]
    listings["full"] = {"inside": DestStat("file", 1, 1)}
    plan = build(sel, listings)
    assert plan.conflicts == [("res", NEWER_FILE), ("full", FULL_FOLDER)]
    assert [a.entry.path for a in plan.actions if a.op != "conflict"] == ["ok.py"]
    assert plan.leftovers == []  # a folder only looked at is never cleaned


def test_keep_dirlinks_treats_a_cluster_link_to_a_folder_as_that_folder() -> None:
    sel = Selection(Path("/src"), (Entry("data", "dir", 0, 0, 0o755), file("data/x.py")))
    listings = {
        "": {"data": DestStat("link", 9, 1, target="/scratch/me/data")},
        "data": {"x.py": DestStat("file", 10, 1000)},  # listed through the link
    }
    kept = build(sel, listings, keep_dirlinks=True)
    assert kept.actions == [] and kept.warnings == []
    _, dirs = attribute_fixes(sel, listings, keep_dirlinks=True)
    assert dirs == []  # the folder the link leads to keeps its own mode and time, as -K
    replaced = build(sel, listings)
    assert [(a.entry.path, a.op, a.clear) for a in replaced.actions] == [
        ("data", "mkdir", "link"),
        ("data/x.py", "send", None),
    ]
    assert replaced.replaced_links == ["data"] and "keep_dirlinks" in replaced.warnings[0]
