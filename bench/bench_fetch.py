"""Time `sbatchman fetch` against plain rsync pulling the same tree over the same link, one run.

Issue 12's budgets, each a ratio to plain `rsync -rlpt --update host:src/ dst/` measured in the
same run: 1,000 small files at 20 ms RTT <= 2x with an empty destination and <= 1.5x with
nothing changed; 10,000 files the same; one 512 MiB file on loopback <= 1.6x. Each tool gets
its own local destination and the runs are interleaved, so load on the machine hits all alike.
sbatchman runs as the real CLI (`python -m sbatchman fetch`), start-up and login included,
with its bytecode cached as an installed copy has it (harness.cli_env).

    python bench/bench_fetch.py                          # all cases, SFTP, best of 5 (3 for big)
    python bench/bench_fetch.py --cases small-empty --repeat 3
    python bench/bench_fetch.py --backend rsync          # once the rsync fetch exists
    python bench/bench_fetch.py --write docs/benchmarks.md
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

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    MIB,
    Link,
    Timing,
    best_of,
    clear,
    cli_env,
    machine_note,
    make_big_file,
    make_small_tree,
    run,
    testbed,
    warm_cli,
    write_block,
)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    budget: float
    delay_s: float
    build: Callable[[Path], object]
    empty: bool  # destination emptied before every run (else filled once)


def _small(root: Path) -> object:
    return make_small_tree(root, 1000, 40)


def _many(root: Path) -> object:
    return make_small_tree(root, 10_000, 400)


CASES = {
    c.name: c
    for c in (
        Case("small-empty", "1,000 files (1-16 KiB, 40 folders), empty, 20 ms", 2.0, 0.010,
             _small, True),
        Case("small-same", "same 1,000 files, nothing changed, 20 ms", 1.5, 0.010, _small, False),
        Case("many-empty", "10,000 files (400 folders), empty, 20 ms", 2.0, 0.010, _many, True),
        Case("many-same", "same 10,000 files, nothing changed, 20 ms", 1.5, 0.010, _many, False),
        Case("big", "one 512 MiB file, loopback, no delay", 1.6, 0.0,
             lambda root: make_big_file(root / "big.bin", 512 * MIB), True),
    )
}  # fmt: skip


@dataclass
class Row:
    case: Case
    rsync: Timing
    sbm: Timing
    rsync_cmd: str

    @property
    def ratio(self) -> float:
        return self.sbm.best / self.rsync.best


def plain_rsync(link: Link, source: str, dest: Path) -> list[str]:
    """Plain rsync pulling, as a user would type it, through the same link as sbatchman."""
    rsh = f"ssh -F {shlex.quote(str(link.view.ssh_config))}"
    return ["rsync", "-rlpt", "--update", "-e", rsh, f"{link.view.name}:{source}/", f"{dest}/"]


def fetch_cluster(link: Link, remote: str, local: Path, backend: str) -> dict[str, object]:
    """A [[clusters]] table reaching the bench link, with one fetch_dir."""
    view = link.view
    return {
        "name": view.name,
        "host": view.name,  # the ssh_config alias: its known_hosts applies
        "port": view.port,
        "user": view.user,
        "key_path": str(view.client_key),
        "ssh_config": str(view.ssh_config),
        "transfer_backend": backend,
        "fetch_dirs": [{"alias": "out", "remote": remote, "local": str(local)}],
    }


def fetch_config(path: Path, link: Link, remote: str, local: Path, backend: str) -> Path:
    path.write_text(tomli_w.dumps({"clusters": [fetch_cluster(link, remote, local, backend)]}))
    return path


def measure(case: Case, work: Path, repeat: int, backend: str) -> Row:
    with testbed(work / "servers", [case.name], case.delay_s) as (link,):
        src = link.server.root / "src"
        case.build(src)
        dests = {"rsync": work / "rsync", "sbm": work / "sbm"}
        config = fetch_config(work / "fetch.toml", link, str(src), dests["sbm"], backend)
        env = cli_env(work)
        sbm = [sys.executable, "-m", "sbatchman", "fetch", "--config", str(config), "-q"]
        commands: dict[str, Callable[[], object]] = {
            "rsync": lambda: run(plain_rsync(link, str(src), dests["rsync"]), env=env),
            "sbm": lambda: run(sbm, env=env),
        }
        timings = {k: Timing(k) for k in commands}
        for dest in dests.values():
            clear(dest)
        warm_cli([*sbm, "--dry-run"], env)  # fills the bytecode cache; writes nothing
        if not case.empty:
            for action in commands.values():
                action()
        for _ in range(repeat):
            for key, action in commands.items():
                setup = (lambda d=dests[key]: clear(d)) if case.empty else None
                timings[key].runs += best_of(key, 1, action, setup).runs
        _check_same(dests["rsync"], dests["sbm"])
        shown = shlex.join(plain_rsync(link, "src", Path("dst")))
        return Row(case, timings["rsync"], timings["sbm"], shown)


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
        raise RuntimeError(f"rsync and sbatchman destinations differ, e.g. {sorted(differ)[:3]}")


def table(rows: list[Row], repeat: int, backend: str) -> str:
    lines = [
        f"| case | plain rsync | sbatchman fetch ({backend}) | ratio (median) | budget |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        verdict = "ok" if r.ratio <= r.case.budget else "**over**"
        median = r.sbm.median / r.rsync.median
        lines.append(
            f"| {r.case.title} | {r.rsync.best:.2f} s | {r.sbm.best:.2f} s |"
            f" {r.ratio:.2f}x {verdict} ({median:.2f}x) | {r.case.budget}x |"
        )
    lines += ["", f"Times are the best of {repeat} runs; the ratio in brackets compares medians."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=("sftp", "rsync"), default="sftp")
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sbm-bench-fetch-") as tmp:
        for name in args.cases:
            repeat = min(args.repeat, 3) if name == "big" else args.repeat
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(CASES[name], Path(tmp) / name, repeat, args.backend))
            print(table(rows[-1:], repeat, args.backend), file=sys.stderr, flush=True)
    command = "python bench/bench_fetch.py " + " ".join(
        [
            f"--backend {args.backend}",
            f"--repeat {args.repeat}",
            *(["--cases", *args.cases] if args.cases != list(CASES) else []),
        ]
    )
    note = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_note()}; loopback, delay proxy"
        " 10 ms each way where the case says 20 ms.\n\n"
        f"Reproduce: `{command}`\n\n"
        "Plain rsync: `" + (rows[0].rsync_cmd if rows else "") + "`"
    )
    out = f"{table(rows, args.repeat, args.backend)}\n\n{note}\n"
    print(out)
    if args.write:
        write_block(args.write, f"bench_fetch_{args.backend}", out)


if __name__ == "__main__":
    main()
