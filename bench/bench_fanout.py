"""Fan-out bench: three clusters, each behind its own 20 ms link, against one of them alone.

The promise (issue 5) is that a user waits for the slowest cluster, not the sum: pushing the same
tree to three clusters in one run should take at most 1.3x pushing it to one. Every run goes
through the real CLI in a fresh interpreter. Two cases:

- empty destinations: every file is sent, so the three sshd/sftp-server processes, the three
  delay proxies and the clients all want CPU at once. On a machine that hosts the "clusters"
  too, plain rsync run three times in parallel shows how much of that the cores allow.
- nothing changed: the push is handshakes and round trips, the case a user repeats all day and
  the one where waiting on the link, not the CPU, decides.

The "CPU busy" column is the share of all cores busy during the three-cluster runs.

    python bench/bench_fanout.py [--files 1000] [--repeat 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ClusterSpec,
    Link,
    SyncSpec,
    best_of,
    clear,
    cpu_busy,
    machine_note,
    make_small_tree,
    rsync_argv,
    run,
    sbatchman_argv,
    testbed,
    write_block,
    write_config,
)

NAMES = ("north", "south", "east")
BUDGET = 1.3


@dataclass(frozen=True)
class Row:
    case: str
    who: str
    one: float
    three: float
    busy: float

    @property
    def ratio(self) -> float:
        return self.three / self.one


def plain(links: Sequence[Link], tree: Path, dests: dict[str, Path]) -> None:
    """Plain rsync to each link at once, as a user with three terminals would."""
    import subprocess

    procs = [subprocess.Popen(rsync_argv(link, tree, dests[link.view.name])) for link in links]
    if any(p.wait() for p in procs):
        raise RuntimeError("plain rsync failed")


def measure(
    label: str,
    repeat: int,
    one: Callable[[], object],
    three: Callable[[], object],
    reset: Callable[[], object],
) -> tuple[float, float, float]:
    """Best-of times for one and three clusters, and the CPU share busy during the three."""
    first = best_of(f"{label}: one", repeat, one, reset)
    busy0, total0 = cpu_busy()
    last = best_of(f"{label}: three", repeat, three, reset)
    busy1, total1 = cpu_busy()
    share = (busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan")
    return first.best, last.best, share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--folders", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one way, per link")
    parser.add_argument("--backend", action="append", choices=["rsync", "sftp"])
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    backends = args.backend or ["rsync", "sftp"]

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sbm-fanout-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        make_small_tree(tree, args.files, args.folders)
        with testbed(work, NAMES, delay_s=args.delay_ms / 1000) as links:
            dests = {link.view.name: link.server.root / "dest" for link in links}

            def empty() -> None:
                for dest in dests.values():
                    clear(dest)

            def filled() -> None:
                """Untimed: make sure every destination already holds the tree."""
                plain(links, tree, dests)

            for case, reset in (("empty destinations", empty), ("nothing changed", filled)):
                t1, t3, busy = measure(
                    f"{case} / plain",
                    args.repeat,
                    lambda: plain(links[:1], tree, dests),
                    lambda: plain(links, tree, dests),
                    reset,
                )
                rows.append(Row(case, "plain rsync (what the machine allows)", t1, t3, busy))
                for backend in backends:
                    specs = [
                        ClusterSpec(
                            link, (SyncSpec("tree", tree, str(dests[link.view.name])),), backend
                        )
                        for link in links
                    ]
                    config = write_config(work / f"{backend}.toml", specs)
                    t1, t3, busy = measure(
                        f"{case} / {backend}",
                        args.repeat,
                        lambda c=config: run(sbatchman_argv(c, "-c", NAMES[0])),
                        lambda c=config: run(sbatchman_argv(c)),
                        reset,
                    )
                    rows.append(Row(case, f"sbatchman, {backend} backend", t1, t3, busy))

    command = "python bench/bench_fanout.py " + " ".join(
        [f"--files {args.files}", f"--repeat {args.repeat}"]
        + [f"--backend {b}" for b in (args.backend or [])]
    )
    lines = [
        f"{args.files} files (1-16 KiB) in {args.folders} folders, each cluster its own sshd"
        f" behind its own {2 * args.delay_ms:.0f} ms round-trip delay proxy; best of"
        f" {args.repeat}.",
        "",
        "| case | pushed by | one cluster | three clusters | ratio | budget | CPU busy (three) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        verdict = "ok" if row.ratio <= BUDGET else "over"
        lines.append(
            f"| {row.case} | {row.who} | {row.one:.2f} s | {row.three:.2f} s"
            f" | {row.ratio:.2f}x {verdict} | {BUDGET}x | {row.busy:.0%} |"
        )
    lines += ["", f"Measured on {machine_note()}.", "", f"Reproduce: `{command}`", ""]
    out = "\n".join(lines)
    print(out)
    if args.write:
        write_block(args.write, "bench_fanout", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
