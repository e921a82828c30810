"""Time sbatchman.selection.walk.select() against `rsync -rn --exclude ...` on one generated tree.

The budget (docs/filters.md) is select() <= 2x rsync's own dry-run walk of the same tree with
the same excludes, both measured in the same run so the machine and page cache are shared.
Prints one markdown table row, then the exact rsync command that was timed.

    python bench/bench_selection.py                # 100,000 files, best of 3
    python bench/bench_selection.py --files 20000 --repeat 5 --header
    python bench/bench_selection.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import write_block
from sbatchman.selection.walk import Rule, select

EXCLUDES = [".git", "__pycache__", "*.pyc", "*.o", "results/", "/data", "wandb", "*.ckpt"]
IGNORE_TEXT = "# per-project leftovers\n*.log\n!keep.log\ntmp/\n"


def _touch(path: Path) -> None:
    path.touch()


def make_tree(root: Path, files: int) -> int:
    """A research-code-shaped tree of about `files` files; returns how many were made.

    Per project (~950 files): sources with __pycache__, build objects, results, wandb runs,
    checkpoints, scripts, docs, logs and a tmp/ folder; every third project has a
    .sbatchmanignore. Around it: a .git with loose objects and a top-level /data.
    """
    made = 0
    git_objects = root / ".git" / "objects"
    for i in range(max(files // 20, 1)):
        d = git_objects / f"{i % 256:02x}"
        d.mkdir(parents=True, exist_ok=True)
        _touch(d / f"{i:038x}")
        made += 1
    data = root / "data"
    data.mkdir()
    for i in range(max(files // 100, 1)):
        _touch(data / f"shard_{i:05d}.bin")
        made += 1
    p = 0
    while made < files:
        proj = root / f"proj_{p:03d}"
        for k in range(10):
            pkg = proj / "src" / f"pkg_{k}"
            cache = pkg / "__pycache__"
            cache.mkdir(parents=True)
            for j in range(30):
                _touch(pkg / f"mod_{j}.py")
                _touch(cache / f"mod_{j}.cpython-311.pyc")
        made += 600
        for sub, count, name in (
            ("build", 100, "obj_{}.o"),
            ("checkpoints", 20, "epoch_{}.ckpt"),
            ("scripts", 50, "run_{}.sh"),
            ("docs", 20, "page_{}.md"),
            ("logs", 30, "train_{}.log"),
            ("tmp", 20, "scratch_{}"),
        ):
            d = proj / sub
            d.mkdir()
            for j in range(count):
                _touch(d / name.format(j))
            made += count
        _touch(proj / "logs" / "keep.log")
        made += 1
        for r in range(20):
            run = proj / "results" / f"run_{r}"
            run.mkdir(parents=True)
            for name in ("metrics.json", "config.yaml", "stdout.txt"):
                _touch(run / name)
            made += 3
        for r in range(10):
            run = proj / "wandb" / f"run-{r}" / "files"
            run.mkdir(parents=True)
            for j in range(5):
                _touch(run / f"f{j}.txt")
            made += 5
        if p % 3 == 0:
            (proj / ".sbatchmanignore").write_text(IGNORE_TEXT)
            made += 1
        p += 1
    return made


def best_of_each(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """Best time of each function over `repeat` rounds, interleaved so that a burst of load
    on the machine hits both sides alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000, help="files to generate (default 100000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--header", action="store_true", help="print the markdown table header too")
    ap.add_argument("--write", type=Path, help="replace the results block of this file")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree and print where")
    args = ap.parse_args(argv)

    rsync = shutil.which("rsync")
    if rsync is None:
        print("rsync not found", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="sbatchman-bench-"))
    try:
        src = tmp / "src"
        empty = tmp / "empty"
        src.mkdir()
        empty.mkdir()
        made = make_tree(src, args.files)
        cmd = [rsync, "-rn", *(f"--exclude={p}" for p in EXCLUDES), f"{src}/", f"{empty}/"]
        rules = [Rule(p, "bench") for p in EXCLUDES]

        def run_rsync() -> None:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

        pushed = len(select(src, rules).entries)  # also warms the page cache for both
        t_rsync, t_select = best_of_each(args.repeat, run_rsync, lambda: select(src, rules))
        row = f"| {made} | {pushed} | {t_rsync:.3f} | {t_select:.3f} | {t_select / t_rsync:.2f} |"
        header = [
            "| files | pushed entries | rsync -rn (s) | select() (s) | ratio (budget 2.0) |",
            "|---:|---:|---:|---:|---:|",
        ]
        timed = shlex.join(cmd).replace(str(tmp), "$TREE")
        print("\n".join([*header, row]) if args.header or args.write else row)
        print(f"rsync timed: {timed}  (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
        if args.write:
            block = [
                *header,
                row,
                "",
                f"Best of {args.repeat}, interleaved, page cache warm; python"
                f" {sys.version.split()[0]}, {os.cpu_count()} cores. rsync timed: `{timed}`.",
                "",
                f"Reproduce: `python bench/bench_selection.py --files {args.files}"
                f" --repeat {args.repeat}`",
                "",
            ]
            write_block(args.write, "bench_selection", "\n".join(block))
        if args.keep:
            print(f"tree kept at {src}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
