"""How fast `sync --watch` brings a save to every cluster, what a burst costs, what idling costs.

Three sshd "clusters", each behind its own delay proxy (20 ms round trip by default), all fed by
one `sbatchman sync --watch --json`. A save is timed from the write to its new bytes at the
final path on all three (the clusters' folders are on this machine, so the bench looks at them
directly). Idle CPU is read from /proc/PID/stat over a quiet window, memory from VmRSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    REPO,
    ClusterSpec,
    SyncSpec,
    make_small_tree,
    testbed,
    write_block,
    write_config,
)


class Watch:
    """The watch under test, its JSON Lines read on a thread."""

    def __init__(self, config: Path) -> None:
        argv = [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "-w", "--json"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        self.passes: list[dict[str, object]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda: bool(self.passes), 600)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.passes.append(json.loads(line))

    @staticmethod
    def wait(check: object, limit: float) -> float:
        start = time.monotonic()
        while not check():  # type: ignore[operator]
            if time.monotonic() - start > limit:
                raise RuntimeError("timed out")
            time.sleep(0.002)
        return time.monotonic() - start

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(2)
        self.proc.wait(60)


def saves(work: Path, backend: str, delay_s: float, count: int, burst: int) -> list[str]:
    tree = work / f"tree-{backend}"
    make_small_tree(tree, 2000, 40, fractional=True)
    with testbed(work / f"bed-{backend}", ("alpha", "beta", "gamma"), delay_s) as links:
        dests = [link.server.root / "dest" for link in links]
        specs = [ClusterSpec(link, (SyncSpec("proj", tree, str(d)),), backend) for link, d in
                 zip(links, dests, strict=True)]  # fmt: skip
        watch = Watch(write_config(work / f"{backend}.toml", specs))
        target = sorted(tree.rglob("*.py"))[7]
        rel = target.relative_to(tree)
        took: list[float] = []
        for i in range(count):
            content = f"save {i} {time.time()}\n".encode()
            target.write_bytes(content)
            took.append(watch.wait(lambda c=content: all(_holds(d / rel, c) for d in dests), 30))
            time.sleep(0.3)
        before = len(watch.passes)
        folder = tree / "burst"
        folder.mkdir()
        start = time.monotonic()
        for i in range(burst):
            (folder / f"f{i:05d}.txt").write_text(f"{i}\n")
        last = Path("burst") / f"f{burst - 1:05d}.txt"
        watch.wait(lambda: all(_count(d / "burst") == burst for d in dests), 120)
        burst_s = time.monotonic() - start
        time.sleep(1.5)
        passes = sum(1 for p in watch.passes[before:] if p["targets"])
        assert all((d / last).exists() for d in dests)
        watch.stop()
    ms = sorted(t * 1000 for t in took)
    return [
        f"| {backend} | {statistics.median(ms):.0f} ms | {ms[-1]:.0f} ms | {burst:,} files:"
        f" {burst_s:.1f} s, {passes} passes |"
    ]


def _holds(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def _count(folder: Path) -> int:
    try:
        return sum(1 for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return 0


def idle(work: Path, files: int, seconds: float) -> tuple[float, float]:
    """(% of one core over `seconds`, VmRSS MiB) of a watch on a local cluster of `files`."""
    tree = work / f"idle-{files}"
    make_small_tree(tree, files, max(1, files // 50), fractional=True)
    config = work / f"idle-{files}.toml"
    config.write_text(
        f'[[clusters]]\nname = "here"\n[[clusters.sync_dirs]]\nalias = "p"\n'
        f'local = "{tree}"\nremote = "{work / f"idle-dest-{files}"}"\n'
    )
    watch = Watch(config)
    time.sleep(2)
    cpu, start = watch.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    share = (watch.cpu_seconds() - cpu) / (time.monotonic() - start) * 100
    rss = watch.rss_mib()
    watch.stop()
    return share, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one way")
    parser.add_argument("--backend", action="append", choices=["rsync", "sftp"])
    parser.add_argument("--idle-files", type=int, default=20000)
    parser.add_argument("--memory-files", type=int, default=100000)
    parser.add_argument("--write", type=Path, help="replace the results block of this file")
    args = parser.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sbm-watch-") as tmp:
        work = Path(tmp)
        for backend in args.backend or ["rsync", "sftp"]:
            rows += saves(work, backend, args.delay_ms / 1000, args.saves, args.burst)
        cpu, _ = idle(work, args.idle_files, 20.0)
        _, rss = idle(work, args.memory_files, 3.0)
    command = "python bench/bench_watch.py" + "".join(
        f" --backend {b}" for b in (args.backend or [])
    )
    block = "\n".join(
        [
            f"Three clusters, each its own sshd behind a {2 * args.delay_ms:.0f} ms round-trip"
            f" delay proxy; a 2,000-file tree; {args.saves} saves of one file, each timed from"
            " the write to its new bytes on all three; then a burst of new files in a new"
            " folder (passes counted from the JSON Lines).",
            "",
            "| backend | save → all three, median | worst | burst |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Idle on a {args.idle_files:,}-file tree (local cluster): {cpu:.2f} % of one core"
            f" over 20 s. Memory on a {args.memory_files:,}-file tree: {rss:.0f} MiB VmRSS.",
            "",
            f"Reproduce: `{command} --write docs/benchmarks.md`",
            "",
        ]
    )
    print(block)
    if args.write:
        write_block(args.write, "bench-watch", block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
