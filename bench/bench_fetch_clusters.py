"""Three clusters fetched in one run: does sbatchman gain from parallelism what rsync does?

Issue 12's budget: fetching three clusters at once costs sbatchman at most 1.15x what it costs
plain rsync, each measured against its own one-cluster time in the same run. Plain rsync's
three-at-once is three `rsync -rlpt --update` processes started together; sbatchman's is one
`sbatchman fetch` over a config of three clusters (its fan-out), against `-c` of one of them.
Each cluster is its own sshd behind its own delay proxy (20 ms round trip).

    python bench/bench_fetch_clusters.py --backend sftp --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_fetch import fetch_cluster, plain_rsync
from bench.harness import (
    best_of,
    clear,
    cli_env,
    machine_note,
    make_small_tree,
    run,
    testbed,
    warm_cli,
    write_block,
)

NAMES = ("alpha", "beta", "gamma")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["rsync", "sftp"], default="sftp")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sbm-bench-clusters-") as tmp:
        work = Path(tmp)
        with testbed(work / "servers", NAMES, 0.010) as links:
            clusters = []
            for link in links:
                src = link.server.root / "src"
                make_small_tree(src, args.files, 40)
                local = work / "sbm" / link.view.name
                clusters.append(fetch_cluster(link, str(src), local, args.backend))
            config = work / "fetch.toml"
            config.write_text(tomli_w.dumps({"clusters": clusters}))
            env = cli_env(work)
            sbm = [sys.executable, "-m", "sbatchman", "fetch", "--config", str(config), "-q"]
            warm_cli([*sbm, "--dry-run"], env)  # fills the bytecode cache; writes nothing

            def plain(count: int) -> None:
                procs = [
                    subprocess.Popen(
                        plain_rsync(
                            link, str(link.server.root / "src"), work / "rsync" / link.view.name
                        ),
                        env=env,
                    )
                    for link in links[:count]
                ]
                if any(p.wait() for p in procs):
                    raise RuntimeError("plain rsync failed")

            def empty() -> None:
                clear(work / "rsync")
                clear(work / "sbm")

            times = {
                "plain, one": best_of("plain one", args.repeat, lambda: plain(1), empty).best,
                "plain, three at once": best_of(
                    "plain three", args.repeat, lambda: plain(3), empty
                ).best,
                "sbatchman, one (-c)": best_of(
                    "sbm one", args.repeat, lambda: run([*sbm, "-c", NAMES[0]], env=env), empty
                ).best,
                "sbatchman, three": best_of(
                    "sbm three", args.repeat, lambda: run(sbm, env=env), empty
                ).best,
            }
    plain_gain = times["plain, three at once"] / times["plain, one"]
    sbm_gain = times["sbatchman, three"] / times["sbatchman, one (-c)"]
    verdict = "ok" if sbm_gain <= 1.15 * plain_gain else "**over**"
    block = "\n".join(
        [
            f"Three clusters (each its own sshd behind a 20 ms round-trip proxy), {args.files:,}"
            f" small files each, empty destinations, {args.backend} backend; best of"
            f" {args.repeat}.",
            "",
            "| run | seconds |",
            "|---|---:|",
            *(f"| {k} | {v:.2f} |" for k, v in times.items()),
            "",
            f"Three-at-once over one: plain rsync {plain_gain:.2f}x, sbatchman {sbm_gain:.2f}x;"
            f" sbatchman's is {sbm_gain / plain_gain:.2f}x plain's ({verdict}, budget 1.15x).",
            "",
            machine_note(),
            "",
            f"Reproduce: `python bench/bench_fetch_clusters.py --backend {args.backend}"
            f" --repeat {args.repeat}`",
            "",
        ]
    )
    print(block)
    if args.write:
        write_block(args.write, f"bench_fetch_clusters_{args.backend}", block)


if __name__ == "__main__":
    main()
