"""The rsync fetch hands the excludes to rsync as `--exclude`: the oracle that this fetches
exactly what the selection engine (select_tree, which the SFTP and local fetches use) selects.

Both fetch the same tree of a local cluster (real rsync, no ssh needed) into two folders;
the two folders must be the same tree, and that tree must leave out what the pattern names.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sbatchman.backends.local import LocalSession
from sbatchman.backends.rsync import RsyncSession
from sbatchman.backends.rsync_info import detect
from sbatchman.config import parse
from sbatchman.model import FetchJob
from sbatchman.selection.rules import Rule
from tests.support.project import Recorder
from tests.support.trees import make_tree, snapshot

TREE = {
    "x": "top x\n",
    "sub/x": "deep x\n",
    "sub/x/": "",
    "dir/": "",
    "dir/in.txt": "in a dir\n",
    "deep/dir": "a file called dir\n",
    "a/one/b": "a/one/b\n",
    "a/one/two/b": "a/one/two/b\n",
    "a/b": "a/b\n",
    "model.ckpt": "ckpt\n",
    "runs/r1/model.ckpt": "ckpt\n",
    "runs/r1/log.txt": "log\n",
    "ab.log": "ab\n",
    "zz.log": "zz\n",
    "a1.log": "a1\n",
    "7.out": "seven\n",
    "x7.out": "x7\n",
    "name with space/f.txt": "spaced\n",
    "name with space.txt": "spaced file\n",
    "keep/cache/c.bin": "cache\n",
    "cache/c.bin": "top cache\n",
    "data/d1/d2/deepest.txt": "deep\n",
    "data/top.txt": "top\n",
}
TREE.pop("sub/x")  # sub/x is a folder (holding y) here; x at the top is a file
TREE["sub/x/y"] = "y\n"

PATTERNS = [
    "/x",  # anchored: only the top one
    "x",  # any depth, files and folders
    "dir/",  # folders only: deep/dir (a file) stays
    "a/*/b",  # exactly one level between
    "a/**/b",  # any levels between
    "**/b",
    "*.ckpt",
    "[ab]?.log",  # a character class
    "[[:digit:]]*.out",
    "[!a]*.log",
    "name with space",
    "name with space.txt",
    "*/cache/",
    "cache/",
    "/data/**",  # everything below data, data itself kept
    "data/***",  # data and everything below it
    "d?/",
    "sub/x/y",
]


def _job(tmp_path: Path, src: Path, dest: Path, patterns: list[str]) -> FetchJob:
    text = f"[[clusters]]\nname='here'\n[[clusters.fetch_dirs]]\nremote='{src}'\nlocal='{dest}'\n"
    cluster = parse(text, tmp_path / "c.toml").clusters[0]
    rules = tuple(Rule(p, "test") for p in patterns)
    return FetchJob(cluster, cluster.fetch_dirs[0], str(src), dest, rules, False)


def _both(tmp_path: Path, patterns: list[str]) -> tuple[dict[str, object], dict[str, object]]:
    info = detect()
    if info is None:
        pytest.skip("rsync is not installed")
    src = make_tree(tmp_path / "src", TREE)
    by_rsync, by_engine = tmp_path / "rsync", tmp_path / "engine"
    for dest in (by_rsync, by_engine):
        shutil.rmtree(dest, ignore_errors=True)
    RsyncSession(info, None, 30).fetch(_job(tmp_path, src, by_rsync, patterns), Recorder())
    LocalSession().fetch(_job(tmp_path, src, by_engine, patterns), Recorder())
    return dict(snapshot(by_rsync)), dict(snapshot(by_engine))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rsync_fetches_what_the_selection_engine_selects(tmp_path: Path, pattern: str) -> None:
    rsync, engine = _both(tmp_path, [pattern])
    assert rsync == engine
    everything = set(snapshot(tmp_path / "src"))
    assert set(rsync) < everything, f"{pattern!r} excluded nothing: a test that cannot fail"


def test_all_patterns_at_once_agree_too(tmp_path: Path) -> None:
    rsync, engine = _both(tmp_path, PATTERNS)
    assert rsync == engine
    assert set(rsync) == {"a", "a/one", "a/one/two", "deep", "deep/dir", "runs", "runs/r1",
                          "runs/r1/log.txt", "sub", "keep", "x7.out"}  # fmt: skip


def test_a_non_utf8_pattern_reaches_rsync_as_its_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.dat")
    info = detect()
    if info is None:
        pytest.skip("rsync is not installed")
    src = make_tree(tmp_path / "src", {name: "x\n", "other.dat": "y\n"})
    RsyncSession(info, None, 30).fetch(
        _job(tmp_path, src, tmp_path / "out", [os.fsdecode(b"*\xe9*")]), Recorder()
    )
    assert sorted(snapshot(tmp_path / "out")) == ["other.dat"]
