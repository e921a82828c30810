"""rsync_guard reads what the cluster has and leaves out of rsync's list what would destroy it."""

from __future__ import annotations

from pathlib import Path

from sbatchman.backends.rsync_guard import (
    guard,
    only_conflicts,
    parse_listing,
    parse_stat,
    probe_failure,
    stat_worked,
)
from sbatchman.plan import NEWER_FILE, DestStat
from sbatchman.selection.walk import Entry, Selection

NS = 1_000_000_000


def test_stat_records_are_read_back_by_name_with_any_character() -> None:
    out = (
        b"sbm\tregular file\t1900000000\tproj/notes.txt\0"
        b"sbm\tdirectory\t5\tproj/a\tb\nc\0"
        b"sbm\tsymbolic link\t7\tproj/data\0"
    )
    assert parse_stat(out, "proj") == {
        "notes.txt": DestStat("file", 0, 1_900_000_000),
        "a\tb\nc": DestStat("dir", 0, 5),
        "data": DestStat("link", 0, 7),
    }
    assert parse_stat(b"Welcome to the cluster!\n" + out, "proj") is None  # not ours: ask rsync
    assert stat_worked(123, "stat: cannot statx 'proj/x': No such file or directory\n")
    assert not stat_worked(123, "stat: illegal option -- -\n")  # BSD stat: ask rsync
    assert not stat_worked(127, "sh: xargs: command not found\n")


def test_list_only_lines_and_what_a_probe_may_say() -> None:
    out = (
        b"drwxr-xr-x          4,096 2030/03/17 17:46:40 results\n"
        b"lrwxrwxrwx              8 2001/09/09 01:46:40 data\n"
        b"-rw-r--r--              2 2001/09/09 01:46:40 we ird -> x\n"
        b"-rw-r--r--              2 2030/03/17 17:46:40 nl\\#012name\n"
    )
    assert parse_listing(out) == {
        "results": DestStat("dir", 0, 1_900_000_000),
        "data": DestStat("link", 0, 1_000_000_000),
        "we ird -> x": DestStat("file", 0, 1_000_000_000),
        "nl\nname": DestStat("file", 0, 1_900_000_000),
    }
    missing = 'rsync: [sender] link_stat "/d/x" failed: No such file or directory (2)\n'
    assert not probe_failure(23, missing)
    assert probe_failure(23, 'rsync: [sender] link_stat "/d/x" failed: Permission denied (13)')
    assert probe_failure(255, "ssh: connect to host x port 22: Connection refused")


def test_guard_leaves_out_what_would_replace_a_newer_file_and_everything_below() -> None:
    sel = Selection(
        Path("/src"),
        (
            Entry("data", "dir", 0, 1000 * NS, 0o755),
            Entry("data/sub", "dir", 0, 1000 * NS, 0o755),
            Entry("notes.txt", "link", 1, 1000 * NS, 0o777, "x"),
            Entry("res", "dir", 0, 1000 * NS, 0o755),
            Entry("res/a.txt", "file", 1, 1000 * NS, 0o644),
            Entry("ok.txt", "file", 1, 1000 * NS, 0o644),
        ),
    )
    found = {
        "data": DestStat("link", 0, 1),
        "data/sub": DestStat("file", 0, 5000),  # seen through the link: not trusted
        "notes.txt": DestStat("file", 0, 5000),
        "res": DestStat("file", 0, 5000),
    }
    safe = guard(sel, found, keep_dirlinks=False)
    assert safe.names == ["data", "data/sub", "ok.txt"]
    assert safe.conflicts == [("notes.txt", NEWER_FILE), ("res", NEWER_FILE)]
    assert len(safe.warnings) == 1 and safe.warnings[0].startswith("data: the link")
    through = guard(sel, found, keep_dirlinks=True)  # -K: the link's folder is trusted
    assert through.through == ["data"] and through.warnings == []
    assert ("data/sub", NEWER_FILE) in through.conflicts


def test_only_the_kept_folders_make_exit_23_fine() -> None:
    said = (
        b"could not make way for new regular file: src/model.py\n"
        b"rsync error: some files/attrs were not transferred (see previous errors) (code 23)"
        b" at main.c(1394) [sender=3.5.0]\n"
    )
    assert only_conflicts(said, ["src/model.py"])
    assert not only_conflicts(said, ["other"])
    worse = said + b"rsync: mkstemp failed: Permission denied (13)\n"
    assert not only_conflicts(worse, ["src/model.py"])
    # names as rsync escapes them: a newline inside, a space at the end
    odd = b"could not make way for new regular file: nl\\#012x\n"
    odd += b"could not make way for new symlink: trail \n"
    assert only_conflicts(odd, ["nl\nx", "trail "])
