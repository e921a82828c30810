"""Reusable bench pieces: trees, a real sshd behind a delay proxy, configs, timing helpers.

Bench scripts compare sbatchman against plain rsync on the same link in the same run, so the
machine, page cache and proxy are shared and only the ratio is meaningful. Everything here is
plain Python (no pytest) and writes only below the work folder it is given.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.sshd import SshServer, generate_key, start_sshd  # noqa: E402

KIB = 1024
MIB = 1024 * KIB


# --------------------------------------------------------------------------- trees


def make_small_tree(
    root: Path, files: int, folders: int, *, seed: int = 1, fractional: bool = True
) -> int:
    """`files` files of 1-16 KiB spread over `folders` folders (two levels deep); returns bytes.

    Folders are nested (about sqrt(folders) top folders with sub-folders under them) so
    creating them needs more than one level, as in a real project. Mtimes get random
    nanoseconds when `fractional`, the case that made the old tool re-send everything.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    tops = max(1, round(folders**0.5))
    dirs: list[Path] = []
    for i in range(folders):
        top = root / f"pkg{i % tops:02d}"
        dirs.append(top if i < tops else top / f"sub{i // tops:03d}")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    total = 0
    base = int(time.time()) - 86_400
    for i in range(files):
        size = rng.randint(1 * KIB, 16 * KIB)
        path = dirs[i % len(dirs)] / f"file{i:05d}.py"
        path.write_bytes(rng.randbytes(size))
        ns = rng.randrange(1_000_000_000) if fractional else 0
        stamp = (base + i) * 1_000_000_000 + ns
        os.utime(path, ns=(stamp, stamp))
        total += size
    return total


def make_big_file(path: Path, size: int, *, seed: int = 2) -> int:
    """One incompressible file of `size` bytes (written in 8 MiB blocks)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = rng.randbytes(8 * MIB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)
    return size


def clear(folder: Path) -> None:
    """Empty a destination folder (keep the folder itself)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


# --------------------------------------------------------------------------- servers


class ProxyProcess:
    """A DelayProxy in a child process of its own.

    The proxy is Python too: run in the bench process, its thread would compete for the GIL
    with whatever in-process code is being timed, and the numbers would measure that.
    """

    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        self.delay_s = delay_s
        code = (
            "import sys, time\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from tests.support.delayproxy import DelayProxy\n"
            f"proxy = DelayProxy({target_host!r}, {target_port}, {delay_s})\n"
            "print(proxy.port, flush=True)\n"
            "sys.stdin.read()\n"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the child exits when its stdin ends
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@dataclass
class Link:
    """One sshd, optionally reached through a delay proxy; `view` is what clients connect to."""

    server: SshServer
    proxy: ProxyProcess | None
    view: SshServer

    @property
    def delay_ms(self) -> float:
        return 0.0 if self.proxy is None else self.proxy.delay_s * 1000


@contextlib.contextmanager
def testbed(
    work: Path, names: Sequence[str] = ("bench",), delay_s: float = 0.010
) -> Iterator[list[Link]]:
    """Start one sshd per name, each behind its own delay proxy (none when delay_s is 0)."""
    key = generate_key(work / "client-key" / "id_ed25519", comment="sbatchman-bench")
    links: list[Link] = []
    try:
        for name in names:
            server = start_sshd(work / f"sshd-{name}", name, client_key=key)
            proxy = ProxyProcess(server.host, server.port, delay_s) if delay_s > 0 else None
            view = server.via_port(proxy.port, name=name) if proxy else server
            links.append(Link(server, proxy, view))
        yield links
    finally:
        for link in links:
            if link.proxy is not None:
                link.proxy.close()
            link.server.stop()


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class SyncSpec:
    alias: str
    local: Path
    remote: str


@dataclass(frozen=True)
class ClusterSpec:
    """A config cluster pointing at a bench link (host/port of the view, its key and config)."""

    link: Link
    dirs: tuple[SyncSpec, ...]
    backend: str = "sftp"
    extra: dict[str, str] = field(default_factory=dict)


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, clusters: Sequence[ClusterSpec]) -> Path:
    """A remotes-config.toml whose clusters reach the bench servers with pinned host keys."""
    lines: list[str] = []
    for spec in clusters:
        view = spec.link.view
        lines += [
            "[[clusters]]",
            f"name = {_toml(view.name)}",
            f"host = {_toml(view.name)}",  # the ssh_config alias: its known_hosts applies
            f"port = {view.port}",
            f"user = {_toml(view.user)}",
            f"key_path = {_toml(str(view.client_key))}",
            f"ssh_config = {_toml(str(view.ssh_config))}",
            f"transfer_backend = {_toml(spec.backend)}",
        ]
        lines += [f"{k} = {v}" for k, v in spec.extra.items()]
        for d in spec.dirs:
            lines += [
                "[[clusters.sync_dirs]]",
                f"alias = {_toml(d.alias)}",
                f"local = {_toml(str(d.local))}",
                f"remote = {_toml(d.remote)}",
            ]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------- commands


def rsync_argv(
    link: Link, source: Path, dest: Path, flags: Sequence[str] = ("-rlpt", "--update")
) -> list[str]:
    """Plain rsync as a user would type it, through the same link as sbatchman."""
    rsh = f"ssh -F {shlex.quote(str(link.view.ssh_config))}"
    return ["rsync", *flags, "-e", rsh, f"{source}/", f"{link.view.name}:{dest}/"]


def sbatchman_argv(config: Path, *extra: str) -> list[str]:
    """The real CLI in a fresh interpreter, so start-up and imports are part of the time."""
    return [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), "-q", *extra]


def cli_env(work: Path) -> dict[str, str]:
    """The environment the CLI is timed in: a private HOME, and Python's bytecode cache on.

    With a private HOME nothing of the user's own config is read. The cache: run from a
    checkout with PYTHONDONTWRITEBYTECODE=1 (as the worktrees here are), every run compiled all
    of sbatchman's modules from source again, some 70 ms that an installed sbatchman (pip
    writes the .pyc files) never pays. The cache lives under `work` (PYTHONPYCACHEPREFIX), so
    the checkout stays clean; `warm_cli` fills it before anything is timed.
    """
    import site

    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "PYTHONUSERBASE": site.getuserbase()}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def warm_cli(argv: Sequence[str], env: dict[str, str]) -> None:
    """Run a command once, untimed, so the bytecode cache of `cli_env` holds what it imports."""
    run(argv, env=env)


def run(argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
    """Run a command; a failure stops the bench with its output (a fast failure is no result)."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """All runs of one measured command; `best` is what the tables report."""

    label: str
    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def best_of(
    label: str, repeat: int, action: Callable[[], object], setup: Callable[[], object] | None = None
) -> Timing:
    """Time `action` `repeat` times (wall clock), running the untimed `setup` before each."""
    timing = Timing(label)
    for _ in range(repeat):
        if setup is not None:
            setup()
        os.sync()  # untimed: no run pays for writing out what the run before it wrote
        start = time.perf_counter()
        action()
        timing.runs.append(time.perf_counter() - start)
    return timing


def machine_note() -> str:
    """Cores and versions, so a reader knows what the numbers were measured on."""
    rsync = subprocess.run(["rsync", "--version"], capture_output=True, text=True, check=False)
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    import paramiko

    return (
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, paramiko {paramiko.__version__}"
        f", {' '.join(rsync.stdout.split()[:3]) if rsync.stdout else 'rsync ?'}"
        f", {ssh.stderr.strip().split(',')[0]}"
    )


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat; (0, 0) where there is none.

    A run that keeps every core busy is bound by CPU, not by the link: on a machine that also
    hosts the "clusters", that is the ceiling no client can beat.
    """
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def write_block(path: Path, name: str, block: str) -> None:
    """Replace the results block `name` of a markdown file (or append it), keeping the prose."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    new = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + new + rest.split(end, 1)[1]
    else:
        text = text + ("\n" if text else "") + new + "\n"
    path.write_text(text)
