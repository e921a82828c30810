"""Time the rsync backend against plain rsync over the same link, in one run, and print the table.

The bars (issue: rsync backend speed), each a ratio to plain `rsync -a SRC/ host:DST/` with the
same ssh options, measured in the same run: a 50,000-file tree at 20 ms RTT to an empty
destination and with nothing changed, <= 1.1x; one 512 MiB file on loopback, <= 1.1x.
sbatchman runs as the real CLI (`python -m sbatchman sync`): start-up, login and the walk
included. Two yardsticks explain the rest: the same plain rsync through an OpenSSH
ControlMaster opened beforehand (what multiplexing alone costs per byte; its login is not
timed), and one `select()` walk of the tree in this process (what the selection costs).

    python bench/bench_rsync.py                         # all cases, best of 3
    python bench/bench_rsync.py --cases big --repeat 5
    python bench/bench_rsync.py --files 20000 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
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
    Link,
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

BUDGET = 1.1
PLAIN = ("-a",)  # what a user types


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    delay_s: float
    empty: bool  # destination emptied before every run (else filled once, untimed)
    tree: str  # "many" or "big": cases with the same tree share it


@dataclass
class Row:
    case: Case
    plain: Timing
    mux: Timing
    sbm: Timing
    walk: Timing
    command: str

    @property
    def ratio(self) -> float:
        return self.sbm.best / self.plain.best

    @property
    def median_ratio(self) -> float:
        return self.sbm.median / self.plain.median


def cases(files: int) -> dict[str, Case]:
    return {
        c.name: c
        for c in (
            Case("many-empty", f"{files:,} files, empty destination, 20 ms RTT", 0.010, True,
                 "many"),
            Case("many-same", f"{files:,} files, nothing changed, 20 ms RTT", 0.010, False,
                 "many"),
            Case("big", "one 512 MiB file, loopback", 0.0, True, "big"),
        )
    }  # fmt: skip


class PlainMaster:
    """An OpenSSH ControlMaster opened with the link's own ssh config, as a user would."""

    def __init__(self, link: Link, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config = str(link.view.ssh_config)
        self.socket = folder / "mux"
        self.host = link.view.name
        run(["ssh", "-F", self.config, "-o", f"ControlPath={self.socket}", "-o",
             "ControlMaster=yes", "-o", "ControlPersist=600", "-f", "-N", self.host])  # fmt: skip

    def rsh(self) -> str:
        return (
            f"ssh -F {shlex.quote(self.config)} -o ControlPath={shlex.quote(str(self.socket))}"
            " -o ControlMaster=no"
        )

    def close(self) -> None:
        subprocess.run(
            ["ssh", "-F", self.config, "-o", f"ControlPath={self.socket}", "-O", "exit",
             self.host], capture_output=True, check=False,
        )  # fmt: skip


def _walk(src: Path) -> Callable[[], object]:
    from sbatchman.selection.walk import select

    return lambda: select(src, ())


def measure(case: Case, src: Path, work: Path, repeat: int) -> Row:
    with testbed(work / "servers", [case.name], case.delay_s) as (link,):
        dests = {k: link.server.root / k for k in ("plain", "mux", "sbm")}
        spec = ClusterSpec(link, (SyncSpec("proj", src, str(dests["sbm"])),), "rsync")
        config = write_config(work / "rsync.toml", [spec])
        env = cli_env(work)
        warm_cli(sbatchman_argv(config, "--dry-run"), env)  # fills the bytecode cache
        master = PlainMaster(link, work / "mux")
        try:
            mux = rsync_argv(link, src, dests["mux"], PLAIN)
            mux[mux.index("-e") + 1] = master.rsh()
            commands: dict[str, Callable[[], object]] = {
                "plain": lambda: run(rsync_argv(link, src, dests["plain"], PLAIN), env=env),
                "mux": lambda: run(mux, env=env),
                "sbm": lambda: run(sbatchman_argv(config), env=env),
            }
            timings = {k: Timing(k) for k in commands}
            for dest in dests.values():
                clear(dest)
            if not case.empty:
                for action in commands.values():
                    action()
            for _ in range(repeat):
                for key, action in commands.items():
                    reset = (lambda d=dests[key]: clear(d)) if case.empty else None
                    timings[key].runs += best_of(key, 1, action, reset).runs
            _check_same(dests["plain"], dests["sbm"])
        finally:
            master.close()
    walk = best_of("walk", repeat, _walk(src))
    command = shlex.join(rsync_argv(link, src, dests["plain"], PLAIN))
    return Row(case, timings["plain"], timings["mux"], timings["sbm"], walk, command)


def _check_same(a: Path, b: Path) -> None:
    """A fast wrong answer is no result: both destinations must hold the same files."""

    def files(root: Path) -> dict[str, tuple[int, int]]:
        out = {}
        for path in root.rglob("*"):
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, int(st.st_mtime))
        return out

    fa, fb = files(a), files(b)
    differ = [p for p in fa.keys() | fb.keys() if fa.get(p) != fb.get(p)]
    if differ:
        raise RuntimeError(f"plain rsync and sbatchman destinations differ: {sorted(differ)[:3]}")


def table(rows: list[Row], repeat: int) -> str:
    lines = [
        "| case | plain rsync | plain rsync via a master | sbatchman rsync | sbatchman / plain"
        " (median) | budget | one walk |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        verdict = "ok" if r.ratio <= BUDGET else "**over**"
        lines.append(
            f"| {r.case.title} | {r.plain.best:.2f} s | {r.mux.best:.2f} s | {r.sbm.best:.2f} s"
            f" | {r.ratio:.2f}x {verdict} ({r.median_ratio:.2f}x) | {BUDGET}x"
            f" | {r.walk.best:.2f} s |"
        )
    lines += ["", f"Times are the best of {repeat} runs; the ratio in brackets compares medians."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--folders", type=int, default=0, help="default: files / 50")
    parser.add_argument("--cases", nargs="*", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    known = cases(args.files)
    chosen = args.cases or list(known)
    folders = args.folders or max(1, args.files // 50)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sbm-bench-rsync-") as tmp:
        trees: dict[str, Path] = {}
        for name in chosen:
            case = known[name]
            if case.tree not in trees:
                trees[case.tree] = Path(tmp) / "trees" / case.tree  # never a case's folder
                print(f"making the {case.tree} tree ...", file=sys.stderr, flush=True)
                if case.tree == "big":
                    make_big_file(trees["big"] / "big.bin", 512 * MIB)
                else:
                    make_small_tree(trees["many"], args.files, folders)
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(case, trees[case.tree], Path(tmp) / name, args.repeat))
            print(table(rows[-1:], args.repeat).split("\n")[2], file=sys.stderr, flush=True)
    command = "python bench/bench_rsync.py " + " ".join(
        [f"--files {args.files}", f"--repeat {args.repeat}"]
        + (["--cases", *chosen] if chosen != list(known) else [])
    )
    note = (
        f"{args.files:,} files of 1-16 KiB in {folders} folders. Measured"
        f" {time.strftime('%Y-%m-%d')} on {machine_note()}; loopback, delay proxy 10 ms each"
        f" way where the case says 20 ms RTT.\n\nReproduce: `{command}`\n\n"
        "Plain rsync, e.g. for the last case: `" + (rows[-1].command if rows else "") + "`"
    )
    out = f"{table(rows, args.repeat)}\n\n{note}\n"
    print(out)
    if args.write:
        write_block(args.write, "bench_rsync", out)


if __name__ == "__main__":
    main()
