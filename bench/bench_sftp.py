"""Time the SFTP backend against plain rsync over the same link, in one run, and print the table.

Issue 4's budgets, each a ratio to plain `rsync -rlpt --update` measured in the same run:
1,000 small files to an empty destination at 20 ms RTT <= 2.5x; the same tree unchanged <= 2x;
5,000 files / 200 folders unchanged <= 2x; one 512 MiB file on loopback <= 1.6x. Each tool
gets its own destination and the runs are interleaved, so load on the machine hits all alike.
sbatchman runs as the real CLI (`python -m sbatchman sync`), start-up and connection included;
the "engine" column is the SFTP push alone (connected session, in this process), which shows
how much of the CLI time is start-up rather than transfer.

    python bench/bench_sftp.py                      # all cases, best of 5 (3 for the big file)
    python bench/bench_sftp.py --cases small-empty --repeat 3
    python bench/bench_sftp.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    MIB,
    ClusterSpec,
    SyncSpec,
    Timing,
    best_of,
    clear,
    cli_env,
    machine_note,
    make_big_file,
    make_small_tree,
    rsync_argv,
    run,
    sbatchman_argv,
    testbed,
    warm_cli,
    write_block,
    write_config,
)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    budget: float
    delay_s: float
    build: Callable[[Path], object]
    empty: bool  # destination emptied before every run (else pre-filled once)


CASES = {
    c.name: c
    for c in (
        Case(
            "small-empty",
            "1,000 files (1-16 KiB, 40 folders), empty destination, 20 ms RTT",
            2.5,
            0.010,
            lambda root: make_small_tree(root, 1000, 40),
            True,
        ),
        Case(
            "small-same",
            "same tree, nothing changed, 20 ms RTT",
            2.0,
            0.010,
            lambda root: make_small_tree(root, 1000, 40),
            False,
        ),
        Case(
            "many-same",
            "5,000 files / 200 folders, nothing changed, 20 ms RTT",
            2.0,
            0.010,
            lambda root: make_small_tree(root, 5000, 200),
            False,
        ),
        Case(
            "big",
            "one 512 MiB file, loopback, no delay",
            1.6,
            0.0,
            lambda root: make_big_file(root / "big.bin", 512 * MIB),
            True,
        ),
    )
}


@dataclass
class Row:
    case: Case
    rsync: Timing
    sbm_rsync: Timing
    sbm_sftp: Timing
    engine: Timing
    rsync_cmd: str

    @property
    def ratio(self) -> float:
        return self.sbm_sftp.best / self.rsync.best


def _engine_push(config: Path, alias: str) -> Callable[[], float]:
    """The SFTP push alone, on a session opened once (connection and CLI start-up excluded)."""
    from sbatchman.backends.sftp.session import open_sftp
    from sbatchman.config import load
    from sbatchman.model import Job
    from sbatchman.selection.walk import select
    from sbatchman.ssh.endpoint import Endpoint, SshOptions

    cfg = load(config)
    cluster = cfg.clusters[0]
    sync_dir = next(d for d in cluster.sync_dirs if d.alias == alias)

    class Quiet:
        def phase(self, name: str) -> None: ...
        def totals(self, files: int, nbytes: int) -> None: ...
        def sent(self, path: str, nbytes: int, why: str) -> None: ...
        def progress(self, nbytes: int) -> None: ...
        def skipped(self, path: str, why: str) -> None: ...

    def push() -> float:
        session = open_sftp(Endpoint.of(cluster, cfg.settings, SshOptions(batch=True)))
        try:
            selection = select(sync_dir.local, ())
            job = Job(cluster, sync_dir, sync_dir.remote, selection, False)
            start = time.perf_counter()
            session.push(job, Quiet())
            return time.perf_counter() - start
        finally:
            session.close()

    return push


def measure(case: Case, work: Path, repeat: int) -> Row:
    src = work / "src"
    case.build(src)
    with testbed(work / "servers", [case.name], case.delay_s) as (link,):
        dests = {k: link.server.root / k for k in ("rsync", "sbm-rsync", "sbm-sftp", "engine")}
        specs = [
            ClusterSpec(link, (SyncSpec("proj", src, str(dests["sbm-rsync"])),), "rsync"),
        ]
        rsync_cfg = write_config(work / "rsync.toml", specs)
        sftp_cfg = write_config(
            work / "sftp.toml",
            [
                ClusterSpec(
                    link,
                    (
                        SyncSpec("proj", src, str(dests["sbm-sftp"])),
                        SyncSpec("engine", src, str(dests["engine"])),
                    ),
                    "sftp",
                )
            ],
        )
        env = cli_env(work)
        for cfg in (rsync_cfg, sftp_cfg):  # fills the bytecode cache; writes nothing
            warm_cli(sbatchman_argv(cfg, "-a", "proj", "--dry-run"), env)
        commands: dict[str, Callable[[], object]] = {
            "rsync": lambda: run(rsync_argv(link, src, dests["rsync"]), env=env),
            "sbm-rsync": lambda: run(sbatchman_argv(rsync_cfg), env=env),
            "sbm-sftp": lambda: run(sbatchman_argv(sftp_cfg, "-a", "proj"), env=env),
        }
        engine = _engine_push(sftp_cfg, "engine")
        timings = {k: Timing(k) for k in (*commands, "engine")}
        for dest in dests.values():
            clear(dest)
        if not case.empty:  # each tool fills its own destination once
            for action in (*commands.values(), engine):
                action()
        for _ in range(repeat):
            for key, action in commands.items():
                timings[key].runs += best_of(
                    key, 1, action, (lambda d=dests[key]: clear(d)) if case.empty else None
                ).runs
            if case.empty:
                clear(dests["engine"])
            timings["engine"].runs.append(engine())
        _check_same(dests["rsync"], dests["sbm-sftp"])
        return Row(
            case,
            timings["rsync"],
            timings["sbm-rsync"],
            timings["sbm-sftp"],
            timings["engine"],
            shlex.join(rsync_argv(link, src, dests["rsync"])),
        )


def _check_same(a: Path, b: Path) -> None:
    """A fast wrong answer is no result: both destinations must hold the same files."""

    def files(root: Path) -> dict[str, tuple[int, int, int]]:
        out = {}
        for path in root.rglob("*"):
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mode, int(st.st_mtime))
        return out

    fa, fb = files(a), files(b)
    differ = [p for p in fa.keys() | fb.keys() if fa.get(p) != fb.get(p)]
    if differ:
        raise RuntimeError(f"rsync and SFTP destinations differ, e.g. {sorted(differ)[:3]}")


def startup(repeat: int) -> Timing:
    """`sbatchman --help` in a fresh interpreter: the cost of every command's start."""
    argv = [sys.executable, "-m", "sbatchman", "--help"]
    return best_of("--help", repeat, lambda: run(argv))


def table(rows: list[Row], help_time: Timing, repeat: int) -> str:
    lines = [
        "| case | plain rsync | sbatchman rsync | sbatchman SFTP | SFTP / rsync (median) | budget"
        " | SFTP engine only |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        verdict = "ok" if r.ratio <= r.case.budget else "**over**"
        median = r.sbm_sftp.median / r.rsync.median
        lines.append(
            f"| {r.case.title} | {r.rsync.best:.2f} s | {r.sbm_rsync.best:.2f} s |"
            f" {r.sbm_sftp.best:.2f} s | {r.ratio:.2f}x {verdict} ({median:.2f}x) |"
            f" {r.case.budget}x | {r.engine.best:.2f} s |"
        )
    verdict = "ok" if help_time.best < 0.5 else "**over**"
    lines += [
        "",
        f"`sbatchman --help` start-up: {help_time.best:.2f} s (budget 0.5 s, {verdict}).",
        "",
        f"Times are the best of {repeat} runs; the ratio in brackets compares medians.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sbm-bench-") as tmp:
        for name in args.cases:
            case = CASES[name]
            repeat = min(args.repeat, 3) if name == "big" else args.repeat
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(case, Path(tmp) / name, repeat))
    help_time = startup(args.repeat)
    command = "python bench/bench_sftp.py " + " ".join(
        [
            f"--repeat {args.repeat}",
            *(["--cases", *args.cases] if args.cases != list(CASES) else []),
        ]
    )
    text = table(rows, help_time, args.repeat)
    note = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_note()}; loopback, delay proxy"
        " 10 ms each way where the case says 20 ms RTT.\n\n"
        f"Reproduce: `{command}`\n\n"
        "Plain rsync, e.g. for the first case: `" + (rows[0].rsync_cmd if rows else "") + "`"
    )
    out = f"{text}\n\n{note}\n"
    print(out)
    if args.write:
        write_block(args.write, "bench_sftp", out)


if __name__ == "__main__":
    main()
