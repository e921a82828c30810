"""What people read: the summary's exact lines, failures first, and progress that adds up."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from sbatchman.config import parse
from sbatchman.fetch import fetch
from sbatchman.model import Request, Result, Target
from sbatchman.precedence import merge_excludes
from sbatchman.report import ConsoleReporter, Style, human_bytes, to_json
from tests.support.project import OnPhase
from tests.support.trees import make_tree


def console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=100, color_system=None), buffer


def test_summary_lists_failures_first_with_their_cause() -> None:
    out, buffer = console()
    reporter = ConsoleReporter(Style(), out=out, err=console()[0])
    reporter.summary(
        [
            Result("alpha", "proj", "rsync", "ok", files_sent=3, bytes_sent=2048, seconds=1.25),
            Result("beta", "proj", "sftp", "failed", error="connection refused", seconds=0.01),
            Result("gamma", "lib", "sftp", "ok", skipped_newer=["a.py", "b.py"], seconds=0.5),
        ]
    )
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines == [
        "cluster  alias  backend  status  files    bytes  seconds",
        "beta     proj   sftp     FAILED      0      0 B      0.0",
        "alpha    proj   rsync    ok          3  2.0 KiB      1.2",
        "gamma    lib    sftp     ok          0      0 B      0.5",
        "✗ beta/proj: connection refused",
        "! gamma/lib: kept 2 file(s) that are newer on the cluster: a.py, b.py",
    ]


def test_quiet_shows_nothing_when_all_is_well() -> None:
    out, buffer = console()
    ConsoleReporter(Style(quiet=True), out=out).summary([Result("a", "p", "rsync", "ok")])
    assert buffer.getvalue() == ""


def test_progress_counts_each_byte_once(tmp_path: Path) -> None:
    cfg = parse("[[clusters]]\nname='c'\n[[clusters.sync_dirs]]\nalias='p'\n", tmp_path / "c")
    cluster = cfg.clusters[0]
    target = Target(
        cluster,
        cluster.sync_dirs[0],
        "sftp",
        merge_excludes(cfg.settings, cluster, cluster.sync_dirs[0]),
        False,
    )
    err, _ = console(terminal=True)
    with ConsoleReporter(Style(), out=console()[0], err=err) as reporter:
        events = reporter.events(target)
        events.totals(2, 3_000_100)
        events.progress(1_000_000)  # a big file reports as it goes...
        events.progress(2_000_000)
        events.sent("big.bin", 3_000_000, "new")  # ...and then once more as sent
        events.sent("small.py", 100, "new")
        assert reporter.progress is not None
        task = reporter.progress.tasks[0]
        assert task.completed == task.total == 3_000_100
        assert task.fields["files"] == "2/2 files"


def target(tmp_path: Path) -> Target:
    cfg = parse("[[clusters]]\nname='c'\n[[clusters.sync_dirs]]\nalias='p'\n", tmp_path / "c")
    cluster = cfg.clusters[0]
    rules = merge_excludes(cfg.settings, cluster, cluster.sync_dirs[0])
    return Target(cluster, cluster.sync_dirs[0], "sftp", rules, False)


def test_dry_run_lines_reach_stdout_even_with_bars_on_the_terminal(tmp_path: Path) -> None:
    """`sync -n > plan.txt` at a terminal: the bars stay on stderr, the plan lands in the file."""
    out, planned = console(terminal=False)
    err, screen = console(terminal=True)
    with ConsoleReporter(Style(dry_run=True), out=out, err=err) as reporter:
        assert reporter.progress is not None
        reporter.events(target(tmp_path)).sent("a.py", 3, "new")
    assert planned.getvalue() == "would send c/p: a.py (new)\n"
    assert "a.py" not in screen.getvalue()


def test_bars_hold_still_while_prompting(tmp_path: Path) -> None:
    err, _ = console(terminal=True)
    with ConsoleReporter(Style(), out=console()[0], err=err) as reporter:
        assert reporter.progress is not None
        reporter.events(target(tmp_path))
        overflow = reporter.progress.live.vertical_overflow
        with reporter.prompting():
            assert not reporter.progress.live.is_started
        assert reporter.progress.live.is_started
        assert reporter.progress.live.vertical_overflow == overflow  # bars stay one screen


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 << 20, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


NODES = [f"leonardo-booster-login-node-number-{i}" for i in (1, 2)]


def test_a_narrow_terminal_folds_long_names_and_a_file_never_cuts_them() -> None:
    results = [Result(n, "proj", "rsync", "ok", seconds=0.5) for n in NODES]
    screen = io.StringIO()
    narrow = Console(file=screen, force_terminal=True, width=72, color_system=None)
    ConsoleReporter(Style(), out=narrow, err=narrow).summary(results)
    assert [line.rstrip() for line in screen.getvalue().splitlines()] == [
        "cluster                    alias  backend  status  files  bytes  seconds",
        "leonardo-booster-login-no  proj   rsync    ok          0    0 B      0.5",
        "de-number-1",
        "leonardo-booster-login-no  proj   rsync    ok          0    0 B      0.5",
        "de-number-2",
    ]
    out, buffer = console()  # not a terminal: as wide as the table needs
    out.width = 30
    ConsoleReporter(Style(), out=out, err=out).summary(results)
    assert [line.rstrip() for line in buffer.getvalue().splitlines()] == [
        "cluster                               alias  backend  status  files  bytes  seconds",
        f"{NODES[0]}  proj   rsync    ok          0    0 B      0.5",
        f"{NODES[1]}  proj   rsync    ok          0    0 B      0.5",
    ]


def test_names_are_never_rich_markup_nor_emoji(tmp_path: Path) -> None:
    cfg = parse(
        "[[clusters]]\nname='[/]'\n[[clusters.sync_dirs]]\nalias=':smile:[bold]'\n", tmp_path / "c"
    )
    cluster = cfg.clusters[0]
    rules = merge_excludes(cfg.settings, cluster, cluster.sync_dirs[0])
    hostile = Target(cluster, cluster.sync_dirs[0], "sftp", rules, False)
    err, screen = console(terminal=True)
    out, listed = console()
    with ConsoleReporter(Style(verbose=True), out=out, err=err) as reporter:
        events = reporter.events(hostile)  # its bar's label is drawn from another thread
        events.totals(1, 1)
        events.sent("[red]x\x1b[2J", 1, "new")
        assert reporter.progress is not None
        reporter.progress.refresh()
    assert "[/]/:smile:[bold]" in screen.getvalue()
    assert listed.getvalue() == "[/]/:smile:[bold]: [red]x\\#033[2J (new)\n"
    out, table = console()
    ConsoleReporter(Style(), out=out).summary(
        [Result("[/]", ":smile:", "rsync", "failed", error="[bold]no\x1b[0m")]
    )
    assert table.getvalue().splitlines()[1:] == [
        "[/]      :smile:  rsync    FAILED      0    0 B      0.0",
        "✗ [/]/:smile:: [bold]no\\#033[0m",
    ]


FETCHED = [
    Result("alpha", "out", "sftp", "ok", files_sent=1, bytes_sent=4, sent=[("r.csv", "new")]),
    Result("beta", "out", "sftp", "ok", skipped_newer=["notes.txt"], warnings=["w: grew"]),
]


def test_a_fetch_summary_says_the_kept_files_are_newer_locally() -> None:
    out, buffer = console()
    ConsoleReporter(Style(direction="fetch"), out=out).summary(FETCHED)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines == [
        "cluster  alias  backend  status  files  bytes  seconds",
        "alpha    out    sftp     ok          1    4 B      0.0",
        "beta     out    sftp     ok          0    0 B      0.0",
        "! beta/out: w: grew",
        "! beta/out: kept 1 file(s) that are newer locally: notes.txt",
    ]


def test_a_fetch_names_its_kept_newer_keys_local_and_keeps_the_rest_of_the_schema() -> None:
    pushed, fetched = to_json(FETCHED, False), to_json(FETCHED, False, "fetch")
    assert pushed["targets"][1]["skipped_newer_remote"] == ["notes.txt"]
    target = fetched["targets"][1]
    assert (target["files_skipped_newer_local"], target["skipped_newer_local"]) == (
        1,
        ["notes.txt"],
    )
    renamed = {"files_skipped_newer_remote": "files_skipped_newer_local"}
    renamed["skipped_newer_remote"] = "skipped_newer_local"
    assert [renamed.get(k, k) for k in pushed["targets"][1]] == list(target)
    assert {k: v for k, v in fetched.items() if k != "targets"} == {
        k: v for k, v in pushed.items() if k != "targets"
    }


def test_fetch_lines_say_fetch_and_kept_newer_locally(tmp_path: Path) -> None:
    out, buffer = console()
    with ConsoleReporter(Style(dry_run=True, direction="fetch"), out=out) as reporter:
        reporter.events(target(tmp_path)).sent("r.csv", 3, "new")
    with ConsoleReporter(Style(verbose=True, direction="fetch"), out=out) as reporter:
        reporter.events(target(tmp_path)).skipped("notes.txt", "newer locally")
    assert buffer.getvalue().splitlines() == [
        "would fetch c/p: r.csv (new)",
        "c/p: notes.txt (kept, newer locally)",
    ]


def test_a_file_still_being_written_is_a_warning_in_text_and_json(tmp_path: Path) -> None:
    """The cluster's job appends while the fetch reads: never landed, never up to date."""
    make_tree(tmp_path / "cl/out", {"run.log": "step 1\n", "done.csv": "1\n"})
    text = (
        f"[global]\nlocal_base = '{tmp_path / 'res'}'\n[[clusters]]\nname = 'c'\n"
        f"[[clusters.fetch_dirs]]\nremote = '{tmp_path / 'cl/out'}'\n"
    )

    def job_writes(phase: str, target: Target) -> None:
        if phase == "sending":
            with open(tmp_path / "cl/out/run.log", "a") as log:
                log.write("step 2\n")

    results = fetch(parse(text, tmp_path / "c.toml"), Request(backend="sftp"), OnPhase(job_writes))
    warning = (
        "run.log: still being written on the cluster (it grew from 7 to 14 bytes); kept what"
        " was here, the next fetch brings it"
    )
    buffer = io.StringIO()
    out = Console(file=buffer, width=300, color_system=None)
    ConsoleReporter(Style(direction="fetch"), out=out).summary(results)
    assert f"! c/out: {warning}" in buffer.getvalue().splitlines()
    (document,) = to_json(results, False, "fetch")["targets"]
    assert (document["status"], document["warnings"]) == ("ok", [warning])
    assert [f["path"] for f in document["files"]] == ["done.csv"]
    assert not (tmp_path / "res/c/out/run.log").exists()
