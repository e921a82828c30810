"""Push with the system rsync: an argv list (no local shell), the file list from the selection.

rsync receives the exact entries the selection engine chose (`--files-from`, NUL-separated, no
`-r`), so it can never push something the user excluded, and every backend sends the same set.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sbatchman.backends import Events, InterruptedPart, Job, Outcome
from sbatchman.backends import rsync_guard as guard
from sbatchman.errors import Interrupted, TransferError
from sbatchman.plan import FULL_FOLDER, DestStat
from sbatchman.precedence import keep_dirlinks_for
from sbatchman.selection import Entry
from sbatchman.ssh import Master

# rsync's own exit codes, in the words a user can act on.
_EXIT = {
    1: "rsync syntax or usage error",
    2: "rsync protocol incompatibility (old rsync on the cluster?)",
    3: "cannot use the remote folder (missing, or not a folder)",
    5: "could not start rsync on the cluster (is rsync installed there?)",
    10: "socket I/O error",
    11: "file I/O error on the cluster (disk full or quota exceeded?)",
    12: "rsync data stream broke (connection lost, or rsync missing on the cluster)",
    20: "interrupted",
    23: "some files could not be transferred",
    24: "some files vanished while being sent",
    30: "timed out: no data moved for too long",
    35: "timed out waiting for the cluster",
    127: "rsync not found on the cluster",
    255: "ssh failed",
}
_ITEM = re.compile(r"^([<>ch.*][fdLDS][^ ]{9}) (\d+) (.*)$")
_SKIP = re.compile(r"^(.*) is newer$")
# Characters that cannot change meaning in a POSIX shell: the only paths an rsync without -s
# may send (it hands the remote path to the remote shell).
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./+,:=@%-]*$")


@dataclass(frozen=True)
class RsyncInfo:
    """What the local rsync can do; flags it lacks are left out, and the loss is reported."""

    path: str
    version: tuple[int, ...]
    openrsync: bool = False

    @property
    def usable(self) -> bool:
        """openrsync (macOS) lacks --files-from, which is how we hand rsync the selection."""
        return not self.openrsync

    @property
    def mkpath(self) -> bool:
        return not self.openrsync and self.version >= (3, 2, 3)

    @property
    def secluded_args(self) -> bool:
        return not self.openrsync and self.version >= (3, 0, 0)

    @property
    def info_flags(self) -> bool:
        return not self.openrsync and self.version >= (3, 1, 0)


def detect() -> RsyncInfo | None:
    """Find rsync on PATH and read its version; None when there is none."""
    path = shutil.which("rsync")
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version\s+v?(\d+(?:\.\d+)*)", out)
    version = tuple(int(x) for x in found[1].split(".")) if found else (0,)
    return RsyncInfo(path, version, openrsync="openrsync" in out)


def _rsh_quote(arg: str) -> str:
    """Quote one word for rsync's own -e splitter (spaces split; doubled quotes escape)."""
    if arg and re.fullmatch(r"[A-Za-z0-9_./=:@%+,-]+", arg):
        return arg
    return "'" + arg.replace("'", "''") + "'"


def _unescape(line: bytes) -> bytes:
    r"""rsync writes each byte of a name it deems unprintable (in its locale) as \#ooo."""
    return re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line)


def _why(flags: str) -> str:
    """Itemized flags are YXcstpoguax: the same words plan.decide uses for the other backends."""
    if "+++++++" in flags:
        return "new"
    if flags[4] == "t":
        return "newer"
    return "size differs" if flags[3] == "s" else "changed"


class RsyncSession:
    """One cluster reached through rsync; `master` is None for a local cluster."""

    name = "rsync"

    def __init__(self, info: RsyncInfo, master: Master | None, stall_timeout: float) -> None:
        self.info = info
        self.master = master
        self.stall_timeout = stall_timeout
        self.running: set[subprocess.Popen[bytes]] = set()
        self.aborted = False

    def argv(self, job: Job, extra: list[str]) -> list[str]:
        argv = [self.info.path, "-lpt", "--update", "--files-from=-", "--from0"]
        argv += ["--out-format=%i %l %n%L", "--timeout", str(max(1, int(self.stall_timeout)))]
        argv += extra
        if job.dry_run:
            argv.append("--dry-run")
        if self.info.info_flags:
            argv.append("--info=skip1")
        if self.master is None:
            return [*argv, f"{job.selection.root}/", f"{_local_dest(job.remote)}/"]
        if self.info.secluded_args:
            argv.append("-s")  # the remote path reaches the remote rsync untouched by any shell
        elif not _SHELL_SAFE.match(job.remote):
            raise TransferError(
                f"the local rsync {'.'.join(map(str, self.info.version))} would pass the remote"
                f" path {job.remote!r} through the cluster's shell; use -b sftp or rsync >= 3.0"
            )
        rsh = " ".join(_rsh_quote(a) for a in self.master.client_argv())
        host = self.master.host
        host = f"[{host}]" if ":" in host else host
        # host::path would mean an rsync daemon: a relative path is spelled ./path
        remote = job.remote if job.remote.startswith("/") else f"./{job.remote}"
        return [*argv, "-e", rsh, f"{job.selection.root}/", f"{host}:{remote}/"]

    def push(self, job: Job, events: Events) -> Outcome:
        outcome = Outcome()
        extra: list[str] = []
        if self.info.mkpath:
            extra.append("--mkpath")
        else:
            outcome.warnings.append("local rsync has no --mkpath: created the folder separately")
            if not job.dry_run:
                self._make_path(job)
        if not self.info.info_flags:
            outcome.warnings.append("local rsync < 3.1 cannot report files skipped as newer")
        dirlinks = keep_dirlinks_for(job.cluster, job.sync_dir)
        if dirlinks:
            extra.append("--keep-dirlinks")
        events.totals(len(job.selection.files), job.selection.total_bytes)
        events.phase("sending")
        through: list[str] = []

        def names() -> bytes:
            """The file list, once the cluster has been looked at (see rsync_guard)."""
            safe = guard.guard(job.selection, self._probe(job), dirlinks)
            outcome.conflicts, outcome.warnings = safe.conflicts, outcome.warnings + safe.warnings
            for path, why in safe.conflicts:
                events.skipped(path, f"conflict: {why}")
            through.extend(safe.through)
            # "./" before the first name makes rsync send "." as an implied folder (never its
            # contents): the destination gets the local folder's mode and mtime, as with
            # `rsync -rlpt src/ host:dst/`.
            return b"".join(f"{'./' if i == 0 else ''}{name}".encode("utf-8", "surrogateescape")
                            + b"\0" for i, name in enumerate(safe.names))  # fmt: skip

        try:
            if not dirlinks:  # the look runs while rsync connects: rsync waits for its list
                self._run(self.argv(job, extra), names, events, outcome)
                return outcome
            listed = names()
            # rsync >= 3.5 follows a cluster link only if it stays inside the destination;
            # with -K the user trusts their links to scratch, which --insecure-links follows.
            insecure = []
            if through and self.info.version >= (3, 1, 0):
                local = self.master is None
                if not local or self.info.version >= (3, 5, 0):
                    insecure = ["--insecure-links" if local else "-M--insecure-links"]
            try:
                self._run(self.argv(job, extra + insecure), listed, events, outcome)
            except TransferError as err:
                if not insecure or "--insecure-links: unknown option" not in str(err):
                    raise
                self._run(self.argv(job, extra), listed, events, outcome)  # rsync < 3.5 there
        except InterruptedPart:
            _keep_landed(job, self.master is None, outcome)
            raise
        return outcome

    def _probe(self, job: Job) -> dict[str, DestStat]:
        """What the cluster has where the tree has links and folders (see rsync_guard)."""
        wanted = guard.probed(job.selection)
        if not wanted:
            return {}
        if self.master is None:
            return guard.lstat_all(Path(_local_dest(job.remote)), wanted)
        root = job.remote.rstrip("/") or "/"
        argv = [*self.master.client_argv(), "--", self.master.host, guard.STAT_COMMAND]
        rc, out, err = self._ask(argv, guard.stat_input(root, wanted), {})
        if guard.stat_worked(rc, err.decode("utf-8", "replace")):
            found = guard.parse_stat(out, root)
            if found is not None:
                return found
        if self.aborted:
            raise Interrupted("interrupted")
        return self._list_only(job, wanted)  # a cluster without GNU stat: rsync itself

    def _list_only(self, job: Job, wanted: list[Entry]) -> dict[str, DestStat]:
        full = self.argv(job, [])  # the push's own way to the cluster: -s, -e and host:path
        remote = ["-s"] if "-s" in full else []
        remote += ["-e", full[full.index("-e") + 1], full[-1]]
        import tempfile

        names = b"".join(e.path.encode("utf-8", "surrogateescape") + b"\0" for e in wanted)
        with tempfile.TemporaryDirectory() as scratch:
            argv = guard.probe_argv(self.info.path, remote, Path(scratch) / "never-written")
            rc, out, err = self._ask(argv, names, {"TZ": "UTC0"})  # it prints local times
        stderr = _unescape(err).decode("utf-8", "replace")
        if guard.probe_failure(rc, stderr):
            raise TransferError(_failure(rc, stderr))
        return guard.parse_listing(_unescape(out).decode("utf-8", "surrogateescape"))

    def _ask(self, argv: list[str], data: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
        """Run a short command over the connection; abort() stops it too."""
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            start_new_session=True,
        ) as proc:
            self.running.add(proc)
            try:
                out, err = proc.communicate(data, timeout=max(1.0, self.stall_timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise TransferError("timed out looking at the cluster's folder") from None
            finally:
                self.running.discard(proc)
        if self.aborted:
            raise Interrupted("interrupted")
        return proc.returncode, out, err

    def _run(
        self,
        argv: list[str],
        names: bytes | Callable[[], bytes],
        events: Events,
        outcome: Outcome,
    ) -> None:
        if self.aborted:
            raise Interrupted("interrupted")
        # rsync gets its own process group: the terminal's Ctrl-C reaches only us, and we stop
        # rsync with SIGTERM, on which it deletes its temporary file (no partial file remains).
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ) as proc:
            self.running.add(proc)
            assert proc.stdin and proc.stdout and proc.stderr
            stderr = proc.stderr
            # Feed names and drain stderr on threads: either pipe filling up would deadlock.
            errors: list[bytes] = []
            unfed: list[BaseException] = []  # why the names could not be made (rsync got none)
            feeder = threading.Thread(target=_feed, args=(proc.stdin, names, unfed), daemon=True)
            drain = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
            feeder.start()
            drain.start()
            try:
                for raw in proc.stdout:
                    line = _unescape(raw.rstrip(b"\n")).decode("utf-8", "surrogateescape")
                    self._line(line, events, outcome)
                rc = proc.wait()
            finally:
                self.running.discard(proc)
            feeder.join()
            drain.join()
        if self.aborted:
            raise InterruptedPart(outcome)
        if unfed:
            raise unfed[0]
        said = b"".join(errors)
        kept = [path for path, why in outcome.conflicts if why == FULL_FOLDER]
        words = _unescape(said).decode("utf-8", "surrogateescape")
        if rc == 23 and kept and guard.only_conflicts(words, kept):
            return  # only folders kept as conflicts, as the other backends keep them
        if rc != 0:
            raise TransferError(_failure(rc, said.decode("utf-8", "replace")))

    def _line(self, line: str, events: Events, outcome: Outcome) -> None:
        item = _ITEM.match(line)
        if item:
            flags, size, name = item[1], int(item[2]), item[3]
            if flags[1] == "f" and flags[0] in "<>":
                why = _why(flags)
                outcome.sent.append((name, why))
                outcome.bytes_sent += size
                events.sent(name, size, why)
            return
        folder = guard.kept_folder(line)
        if folder is not None:
            outcome.conflicts.append((folder, FULL_FOLDER))
            events.skipped(folder, f"conflict: {FULL_FOLDER}")
            return
        skip = _SKIP.match(line)
        if skip:
            outcome.skipped_newer.append(skip[1])
            events.skipped(skip[1], "remote is newer")

    def _make_path(self, job: Job) -> None:
        """Create the remote folder with rsync itself: --relative recreates implied folders."""
        import tempfile

        if self.master is None:  # a local cluster: the folder is on this machine
            try:
                Path(_local_dest(job.remote)).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                where = _local_dest(job.remote)
                raise TransferError(f"cannot create {where}: {err.strerror}") from None
            return
        with tempfile.TemporaryDirectory() as empty:
            remote = job.remote.lstrip("/")
            (Path(empty) / remote).mkdir(parents=True, exist_ok=True)
            rsh = " ".join(_rsh_quote(a) for a in self.master.client_argv())
            dest = "/" if job.remote.startswith("/") else ""
            argv = [
                self.info.path,
                "-rR",
                "-e",
                rsh,
                f"{empty}/./{remote}",
                f"{self.master.host}:{dest}",
            ]
            if self.info.secluded_args:
                argv.insert(1, "-s")
            run = subprocess.run(argv, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                raise TransferError(_failure(run.returncode, run.stderr))

    def abort(self) -> None:
        self.aborted = True
        for proc in list(self.running):
            proc.terminate()

    def close(self) -> None:
        if self.master is not None:
            self.master.close()


def _keep_landed(job: Job, local: bool, outcome: Outcome) -> None:
    """After Ctrl-C, say what landed. rsync names a file when it starts sending it and runs a
    few files ahead of the receiver: on a local cluster each named file is checked at its
    destination; over ssh that would cost another transfer, so the count stays "started" and
    the report says so."""
    sizes = {e.path: (e.size, e.mtime_ns // 1_000_000_000) for e in job.selection.files}
    if local:
        root = Path(_local_dest(job.remote))

        def landed(name: str) -> bool:
            try:
                st = (root / name).lstat()
            except OSError:
                return False
            return (st.st_size, int(st.st_mtime)) == sizes.get(name)

        kept = [(name, why) for name, why in outcome.sent if landed(name)]
    else:
        kept = outcome.sent
        outcome.warnings.append(
            "interrupted: the files counted are those rsync had started; the last few may not"
            " have landed (the next sync sends whatever is missing)"
        )
    outcome.sent = kept
    outcome.bytes_sent = sum(sizes.get(name, (0, 0))[0] for name, _ in kept)


def _feed(pipe: IO[bytes], data: bytes | Callable[[], bytes], failed: list[BaseException]) -> None:
    """Write the names; a callable makes them first (rsync connects meanwhile). If it fails,
    rsync gets an empty list, so it does nothing, and the failure is what the push reports."""
    try:
        pipe.write(data() if callable(data) else data)
    except BrokenPipeError:  # rsync died early; its exit code says why
        pass
    except Exception as err:
        failed.append(err)
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def _local_dest(remote: str) -> str:
    from sbatchman.backends.local import destination

    return str(destination(remote))


def _failure(rc: int, stderr: str) -> str:
    """One line: what the exit code means, plus rsync's own most specific complaint."""
    meaning = _EXIT.get(rc, f"rsync failed (exit {rc})")
    detail = ""
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("rsync:") or "Permission denied" in line or "No space" in line:
            detail = line.removeprefix("rsync: ")
            break
    if rc == 255:
        from sbatchman.ssh import cause

        return f"ssh: {cause(stderr)}"
    return f"{meaning}: {detail}" if detail else meaning
