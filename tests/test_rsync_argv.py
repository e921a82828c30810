"""What the rsync backend asks of rsync: version-aware flags, and quoting for rsync's -e parser."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from sbatchman.backends.rsync import PROGRESS_FROM, RsyncInfo, RsyncSession, rsh_quote
from sbatchman.backends.rsync_output import itemized_why as _why
from sbatchman.config import parse
from sbatchman.model import InterruptedPart, Job
from sbatchman.selection.walk import Entry, Selection, select
from tests.support.project import Recorder
from tests.support.trees import make_tree


def job(tmp_path: Path, remote: str, dry_run: bool = False, largest: int | None = None) -> Job:
    cfg = parse("[[clusters]]\nname='c'\n[[clusters.sync_dirs]]\nalias='a'\n", tmp_path / "c")
    cluster = cfg.clusters[0]
    files = () if largest is None else (Entry("f", "file", largest, 0, 0o644),)
    return Job(cluster, cluster.sync_dirs[0], remote, Selection(tmp_path, files), dry_run)


def test_modern_rsync_gets_the_safe_flags(tmp_path: Path) -> None:
    session = RsyncSession(RsyncInfo("/usr/bin/rsync", (3, 2, 7)), None, 60)
    argv = session.argv(job(tmp_path, "/dst", dry_run=True), ["--mkpath"])
    assert argv[:5] == ["/usr/bin/rsync", "-lpt", "--update", "--files-from=-", "--from0"]
    assert "-r" not in argv and "--dry-run" in argv and "--info=skip1" in argv
    assert argv[-2:] == [f"{tmp_path}/", "/dst/"]


def test_capabilities_follow_the_version() -> None:
    old = RsyncInfo("rsync", (2, 6, 9))
    assert not (old.mkpath or old.secluded_args or old.info_flags)
    mid = RsyncInfo("rsync", (3, 1, 3))
    assert mid.secluded_args and mid.info_flags and not mid.mkpath
    assert not RsyncInfo("openrsync", (2, 6, 9), openrsync=True).usable


def test_rsh_quoting_survives_rsyncs_own_splitter() -> None:
    assert rsh_quote("ssh") == "ssh"
    assert rsh_quote("/path with space/key") == "'/path with space/key'"
    assert rsh_quote("it's") == "'it''s'"
    # rsync splits like a shell for these cases (doubled quote aside), so shlex checks the rest
    assert shlex.split(rsh_quote("a b") + " " + rsh_quote("c")) == ["a b", "c"]


def test_itemized_reasons_match_the_plan_words() -> None:
    assert _why("<f+++++++++") == "new"
    assert _why("<f.st......") == "newer"
    assert _why("<f.s.......") == "size differs"


def test_rsync_without_mkpath_still_reaches_a_missing_local_folder(tmp_path: Path) -> None:
    """rsync < 3.2.3 (Ubuntu 20.04's 3.1.3) has no --mkpath: the folder is made for it."""
    real = shutil.which("rsync")
    if real is None:
        pytest.skip("rsync is not installed")
    src = make_tree(tmp_path / "src", {"a.py": "a\n", "bin/run.sh": "#!/bin/sh\n"})
    dest = tmp_path / "not" / "yet" / "there"
    cfg = parse(
        f"[[clusters]]\nname='c'\n[[clusters.sync_dirs]]\nalias='a'\nlocal='{src}'\n",
        tmp_path / "c.toml",
    )
    cluster = cfg.clusters[0]
    session = RsyncSession(RsyncInfo(real, (3, 1, 3)), None, 60)
    outcome = session.push(
        Job(cluster, cluster.sync_dirs[0], str(dest), select(src, ()), False), Recorder()
    )
    assert sorted(p for p, _ in outcome.sent) == ["a.py", "bin/run.sh"]
    assert (dest / "bin/run.sh").stat().st_mode & 0o111
    assert outcome.warnings == ["local rsync has no --mkpath: created the folder separately"]


def test_an_interrupted_local_push_counts_only_what_landed(tmp_path: Path) -> None:
    """rsync names files before they land and runs ahead of the receiver: after Ctrl-C the
    report must not claim files that are not at the destination."""
    real = shutil.which("rsync")
    if real is None:
        pytest.skip("rsync is not installed")
    src = make_tree(tmp_path / "src", {f"f{i:05d}": "x" * 20_000 for i in range(2000)})
    dest = tmp_path / "dest"
    session = RsyncSession(RsyncInfo(real, (3, 2, 7)), None, 30)

    class StopAt500(Recorder):
        def sent(self, path: str, nbytes: int, why: str) -> None:
            super().sent(path, nbytes, why)
            if len(self.files) == 500:
                session.abort()

    base = job(tmp_path, str(dest))
    push = Job(base.cluster, base.sync_dir, str(dest), select(src, ()), False)
    with pytest.raises(InterruptedPart) as stopped:
        session.push(push, StopAt500())
    landed = {p.name for p in dest.iterdir() if not p.name.startswith(".")}
    counted = {name for name, _ in stopped.value.outcome.sent}
    assert counted <= landed
    assert stopped.value.outcome.bytes_sent == 20_000 * len(counted)


class _Master:
    """Just what argv() reads from a master connection: its host and the ssh argv."""

    def __init__(self, host: str) -> None:
        self.host = host

    def client_argv(self) -> list[str]:
        return ["ssh", "-o", "ControlMaster=no"]


def test_operands_and_host_follow_a_double_dash(tmp_path: Path) -> None:
    """Nothing a config says can become an option: not the host, not a path."""
    session = RsyncSession(RsyncInfo("rsync", (3, 2, 7)), _Master("me@-oops"), 60)  # type: ignore[arg-type]
    argv = session.argv(job(tmp_path, "-dash/x"), [])
    assert argv[-3:] == ["--", f"{tmp_path}/", "-oops:-dash/x/"]
    rsh = shlex.split(argv[argv.index("-e") + 1])
    assert rsh[-3:] == ["-l", "me", "--"]  # rsync appends the host after this
    local = RsyncSession(RsyncInfo("rsync", (3, 2, 7)), None, 60).argv(job(tmp_path, "/d"), [])
    assert local[-3] == "--"


@pytest.mark.parametrize(
    ("remote", "spelled"),
    [("../up", "../up"), ("../../a/b", "../../a/b"), ("rel", "rel"), (":x", "./:x")],
)
def test_a_relative_path_keeps_its_dots(tmp_path: Path, remote: str, spelled: str) -> None:
    """`./` only where `host::` would mean a daemon: with -s, rsync drops the `..` after `./`."""
    session = RsyncSession(RsyncInfo("rsync", (3, 2, 7)), _Master("h"), 60)  # type: ignore[arg-type]
    assert session.argv(job(tmp_path, remote), [])[-1] == f"h:{spelled}/"


def test_byte_progress_waits_for_rsyncs_own_counts(tmp_path: Path) -> None:
    """Byte progress for a tree with a file worth a moving bar; small files count as named."""
    session = RsyncSession(RsyncInfo("rsync", (3, 2, 7)), None, 60)
    big = job(tmp_path, "/d", largest=PROGRESS_FROM)
    assert "--info=progress1" in session.argv(big, [])
    small = job(tmp_path, "/d", largest=PROGRESS_FROM - 1)
    assert "--info=progress1" not in session.argv(small, [])
    assert "--info=progress1" not in session.argv(job(tmp_path, "/d"), [])
    dry = job(tmp_path, "/d", dry_run=True, largest=PROGRESS_FROM)
    assert "--info=progress1" not in session.argv(dry, [])
    assert "--info=progress1" not in RsyncSession(RsyncInfo("rsync", (3, 0, 9)), None, 60).argv(
        big, []
    )
