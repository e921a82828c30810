"""Aliases bench: four sync_dirs on one cluster behind a 20 ms link, against one of them alone.

The promise (issue 15) is that a user with a code, a configs, a data-prep and a notebooks folder
on one cluster does not wait for each in turn: with nothing changed, four aliases should take at
most 1.25x one alias, on both backends, because they share the cluster's one login and run side
by side over it. Every run goes through the real CLI in a fresh interpreter; plain rsync, run
once per folder one after another (what a user's script does) and all four at once, shows what
the link allows.

    python bench/bench_aliases.py [--files 500] [--repeat 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ClusterSpec,
    SyncSpec,
    best_of,
    clear,
    machine_note,
    make_small_tree,
    rsync_argv,
    run,
    sbatchman_argv,
    testbed,
    write_block,
)
from bench.harness import write_config as write_toml

ALIASES = ("code", "configs", "prep", "notebooks")
BUDGET = 1.25


@dataclass(frozen=True)
class Row:
    case: str
    who: str
    one: float
    four: float

    @property
    def ratio(self) -> float:
        return self.four / self.one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500, help="files per alias")
    parser.add_argument("--folders", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one way")
    parser.add_argument("--backend", action="append", choices=["rsync", "sftp"])
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    backends = args.backend or ["rsync", "sftp"]

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sbm-aliases-") as tmp:
        work = Path(tmp)
        trees = {alias: work / alias for alias in ALIASES}
        for seed, tree in enumerate(trees.values(), start=1):
            make_small_tree(tree, args.files, args.folders, seed=seed)
        with testbed(work, ("solo",), delay_s=args.delay_ms / 1000) as links:
            link = links[0]
            dests = {alias: link.server.root / "dest" / alias for alias in ALIASES}

            def plain(aliases: tuple[str, ...], together: bool) -> None:
                argvs = [rsync_argv(link, trees[a], dests[a]) for a in aliases]
                if together:
                    procs = [subprocess.Popen(argv) for argv in argvs]
                    if any(p.wait() for p in procs):
                        raise RuntimeError("plain rsync failed")
                else:
                    for argv in argvs:
                        run(argv)

            def empty() -> None:
                for dest in dests.values():
                    clear(dest)

            def filled() -> None:
                plain(ALIASES, together=True)

            cases: tuple[tuple[str, Callable[[], None]], ...] = (
                ("empty destinations", empty),
                ("nothing changed", filled),
            )
            for case, reset in cases:
                one = best_of(
                    f"{case} / plain one", args.repeat, lambda: plain(ALIASES[:1], False), reset
                )
                for together, who in (
                    (False, "plain rsync, one after another"),
                    (True, "plain rsync, all at once"),
                ):
                    four = best_of(
                        f"{case} / {who}", args.repeat, lambda t=together: plain(ALIASES, t), reset
                    )
                    rows.append(Row(case, who, one.best, four.best))
                for backend in backends:
                    spec = ClusterSpec(
                        link,
                        tuple(SyncSpec(a, trees[a], str(dests[a])) for a in ALIASES),
                        backend,
                    )
                    config = write_toml(work / f"{backend}.toml", [spec])
                    one = best_of(
                        f"{case} / {backend} one",
                        args.repeat,
                        lambda c=config: run(sbatchman_argv(c, "-a", ALIASES[0])),
                        reset,
                    )
                    four = best_of(
                        f"{case} / {backend} four",
                        args.repeat,
                        lambda c=config: run(sbatchman_argv(c)),
                        reset,
                    )
                    rows.append(Row(case, f"sbatchman, {backend} backend", one.best, four.best))

    command = "python bench/bench_aliases.py " + " ".join(
        [f"--files {args.files}", f"--repeat {args.repeat}"]
        + [f"--backend {b}" for b in (args.backend or [])]
    )
    lines = [
        f"One cluster (its own sshd behind a {2 * args.delay_ms:.0f} ms round-trip delay proxy),"
        f" four aliases of {args.files} files (1-16 KiB) in {args.folders} folders each; best of"
        f" {args.repeat}. The budget applies to sbatchman with nothing changed.",
        "",
        "| case | pushed by | one alias | four aliases | ratio | budget |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        mine = row.who.startswith("sbatchman") and row.case == "nothing changed"
        verdict = (" ok" if row.ratio <= BUDGET else " over") if mine else ""
        lines.append(
            f"| {row.case} | {row.who} | {row.one:.2f} s | {row.four:.2f} s"
            f" | {row.ratio:.2f}x{verdict} | {BUDGET if mine else ''}{'x' if mine else ''} |"
        )
    lines += ["", f"Measured on {machine_note()}.", "", f"Reproduce: `{command}`", ""]
    out = "\n".join(lines)
    print(out)
    if args.write:
        write_block(args.write, "bench_aliases", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
