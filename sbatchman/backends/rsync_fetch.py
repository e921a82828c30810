"""Fetch with the system rsync: the cluster's folder into a local one, as `rsync -rlpt --update`.

The excludes go to rsync as `--exclude` rules: they already have rsync's meaning (the selection
engine mirrors rsync's exclude.c, and tests/test_rsync_fetch_oracle.py holds the two together),
and the remote rsync applies them while it walks, so an excluded folder is never even listed.
Listing the tree first to hand rsync a `--files-from` list would cost a walk of the whole
cluster tree before any byte moves; this way a fetch costs what plain rsync costs.

rsync's temporaries go to a folder of this fetch's own (see rsync_fetch_local). A file still
being written is found by a second, dry-run rsync over just the files that came, comparing
exact mtimes (nanoseconds where they made it across): anything it would send again changed
after rsync listed it, so it is reported, and its local copy is marked one second older so
that the next fetch brings the final bytes, even if they land in the same second.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from sbatchman.backends import rsync_fetch_local as here
from sbatchman.backends.local import destination
from sbatchman.backends.rsync_fetch_output import FORMAT, Reader, item_of, name_of
from sbatchman.backends.rsync_guard import only_conflicts
from sbatchman.backends.rsync_info import RsyncInfo
from sbatchman.backends.rsync_names import literal_exclude
from sbatchman.backends.rsync_output import (
    SKIP,
    RsyncMissing,
    failure,
    is_missing,
    records,
    unescape,
)
from sbatchman.backends.rsync_remote import host_path, remote_words, rsh
from sbatchman.backends.sources import vanished_note
from sbatchman.backends.transfer import conflict_words
from sbatchman.children import GRACE, die_with_parent, feed, output_of
from sbatchman.errors import Interrupted, TransferError
from sbatchman.model import Events, FetchJob, InterruptedPart, Outcome, PartialTransfer
from sbatchman.plan import FULL_FOLDER, NEWER_FILE, replaced_link_warning
from sbatchman.ssh.master import Master
from sbatchman.temporaries import Temporaries

RECENT_S = 300
"""Only files modified this recently (by this machine's clock, with room for a cluster's clock
running behind) can still be being written: the check after a fetch looks at those alone, so
fetching a finished run's thousands of results costs no second pass."""

_ROOT = re.compile(r'change_dir "(?:[^"\\]|\\.)*" failed: (No such file or directory|Not a dir)')
_GONE = re.compile(r'^file has vanished: "((?:[^"\\]|\\.)*)"$')
_SUMMARY = re.compile(r"^rsync (?:error|warning): some files")


class Runs(Protocol):
    """What the fetch needs of the session: the rsync it has, and Ctrl-C (abort() sets
    `aborted` and terminates what is in `running`)."""

    info: RsyncInfo
    master: Master | None
    stall_timeout: float
    running: set[subprocess.Popen[bytes]]
    aborted: bool


def fetch(runs: Runs, job: FetchJob, events: Events) -> Outcome:
    outcome = Outcome()
    dest = here.Destination(job.local)
    dest.check()
    if not runs.info.info_flags:
        outcome.warnings.append("local rsync < 3.1 cannot report files kept as newer")
    reader = Reader(outcome, events)
    events.phase("receiving")
    since = int(time.time()) - RECENT_S
    # Looked at before this fetch's temp folder moves the folder's time (rsync compares it).
    look = _in_the_way(runs, job) if _has_files(job.local) else None
    if look is not None and look.idle and not here.leftovers(job.local):
        # nothing would change: that dry run was the fetch
        for text in look.skips:
            reader.line(text)
        return outcome
    if not job.dry_run:
        outcome.warnings += dest.prepare(Temporaries())
    try:
        kept, links = (look.kept, look.links) if look is not None else ([], [])
        for path in kept:
            outcome.conflicts.append((path, conflict_words(NEWER_FILE, "local")))
            events.skipped(path, f"conflict: {conflict_words(NEWER_FILE, 'local')}")
        outcome.warnings += [replaced_link_warning(path, "local") for path in links]
        extra = [f"--exclude={literal_exclude(path)}" for path in kept]
        rc, said = _run(runs, _argv(runs, job, temp=dest.temp, extra=extra), b"", reader.line)
        reader.progress.finish()
        if runs.aborted:
            reader.settle(job.local)
            raise InterruptedPart(outcome)
        try:
            _judge(rc, said, job, outcome, runs.stall_timeout)
        except (RsyncMissing, _NothingCame):
            dest.undo()
            raise
        except TransferError as err:
            if job.dry_run:
                raise
            reader.settle(job.local)
            if not outcome.sent:
                dest.undo()
            raise PartialTransfer(str(err), outcome) from None
        recent = [s for s in reader.started if s[2] >= since]
        if recent and not job.dry_run:
            _still_written(runs, job, recent, outcome)
    finally:
        dest.finish()
    return outcome


def _has_files(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


@dataclass
class _Look:
    """What the dry run before a fetch into a folder with files found."""

    kept: list[str]  # newer local files a folder or link would replace: excluded, conflicts
    links: list[str]  # local links a folder replaces (a warning)
    idle: bool  # nothing at all would change, not even a time: no second rsync needed
    skips: list[str]  # its "... is newer" lines (files kept, newer locally)


def _in_the_way(runs: Runs, job: FetchJob) -> _Look:
    """Local files that the cluster's folder or link would replace although they are newer:
    a dry run says what rsync would create, and each such file is then excluded (kept as a
    conflict, as the other backends keep it). Only asked when the local folder has anything.

    It is the real fetch's own argv with --dry-run, so when it lists nothing to change (the
    usual fetch of results already here) it has done the whole fetch, at half the cost."""
    planned: list[tuple[str, int, str]] = []
    items: list[str] = []
    skips: list[str] = []

    def line(text: str) -> None:
        item = item_of(text)
        if item is not None:
            items.append(text)
            if item[0][:1] == "c":
                planned.append((item[0], item[2], item[3]))
        elif SKIP.match(text):
            skips.append(text)

    dry = replace(job, dry_run=True)
    rc, said = _run(runs, _argv(runs, dry), b"", line)
    if runs.aborted:
        raise Interrupted("interrupted")
    if rc not in (0, 23, 24):
        _judge(rc, said, job, Outcome(), runs.stall_timeout)
    kept, links = here.in_the_way(job.local, planned)
    return _Look(kept, links, rc == 0 and not items, skips)


class _NothingCame(TransferError):
    """The cluster's folder could not be read at all: what the fetch made locally goes."""


def _judge(rc: int, said: bytes, job: FetchJob, outcome: Outcome, stall: float) -> None:
    """rsync's exit and complaints: fine, vanished files (notes), or one line of failure."""
    if rc == 0:
        return
    text = said.decode("utf-8", "replace")
    root = _ROOT.search(unescape(said).decode("utf-8", "replace"))
    if root is not None and rc in (3, 23):
        what = "does not exist" if root[1].startswith("No such") else "is not a folder"
        raise _NothingCame(
            f"the remote folder {job.remote} {what} on {job.cluster.name};"
            " check `remote` of this fetch_dir",
        )
    full = conflict_words(FULL_FOLDER, "local")
    kept = [path for path, why in outcome.conflicts if why == full]
    if rc == 23 and kept and only_conflicts(said, kept):
        return  # only folders kept as conflicts, as the other backends keep them
    if rc in (23, 24):
        gone = _vanished(said, job.remote)
        if gone is not None:
            outcome.warnings += [vanished_note(name) for name in gone]
            return
    message = failure(rc, text, stall=stall, roots=(job.remote, str(job.local)))
    raise (RsyncMissing if is_missing(rc, text) else TransferError)(message)


def _vanished(said: bytes, remote: str) -> list[str] | None:
    """The files rsync found deleted after it listed them, if that is all it says."""
    root = remote.strip("/")
    gone = []
    for raw in said.split(b"\n"):
        line = raw.decode("utf-8", "surrogateescape").strip()
        if not line or _SUMMARY.match(line):
            continue
        found = _GONE.match(line)
        if found is None:
            return None
        path = name_of(found[1]).lstrip("/")
        if root and root != "." and (path.startswith(root + "/") or f"/{root}/" in path):
            path = path[path.find(root + "/") + len(root) + 1 :]
        gone.append(path)
    return gone or None


def _still_written(
    runs: Runs, job: FetchJob, started: list[tuple[str, int, int]], outcome: Outcome
) -> None:
    """Which of the files that came changed on the cluster since rsync listed them: a dry
    run over just those names, mtimes compared to the nanosecond when they came with them.
    Each is reported, left out of what landed, and marked older (see the module doc)."""
    names = [name for name, _, _ in started]
    sizes = {name: size for name, size, _ in started}
    exact = here.carries_nanoseconds(job.local, names)
    argv = _argv(runs, job, check=True)
    if not exact and "--modify-window=-1" in argv:
        argv.remove("--modify-window=-1")  # whole seconds only (an old rsync on one side)
    changed: dict[str, int] = {}

    def line(text: str) -> None:
        item = item_of(text)
        if item is not None and item[0][1] == "f":
            changed[item[3]] = item[1]

    data = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
    if runs.aborted:  # Ctrl-C right after the files came: they count
        raise InterruptedPart(outcome)
    try:
        rc, said = _run(runs, argv, data, line, timeout=_CHECK_TIMEOUT)
    except OSError as err:
        rc, said = -1, str(err).encode()
    if runs.aborted:
        raise InterruptedPart(outcome)
    if rc not in (0, 23, 24):
        why = failure(rc, said.decode("utf-8", "replace"), stall=_CHECK_TIMEOUT)
        outcome.warnings.append(f"could not check whether files changed while they came: {why}")
        return
    for name in names:
        if name in changed:
            here.mark_older(job.local, name)
            outcome.warnings.append(
                f"{name}: still being written on the cluster ({_how(sizes[name], changed[name])});"
                " what came is marked older, the next fetch brings the final bytes"
            )
    outcome.sent = [(name, why) for name, why in outcome.sent if name not in changed]
    outcome.bytes_sent -= sum(sizes[name] for name in changed if name in sizes)


def _how(came: int, now: int) -> str:
    if now != came:
        return f"it {'grew' if now > came else 'shrank'} from {came} to {now} bytes as it came"
    return "it changed as it came"


# How long the check may take; past it, the check is reported as not done.
_CHECK_TIMEOUT = 30.0


def _argv(
    runs: Runs,
    job: FetchJob,
    *,
    temp: Path | None = None,
    check: bool = False,
    extra: list[str] | None = None,
) -> list[str]:
    """rsync's argv: -rlpt --update and the excludes; `check`: the dry run over the files
    that came (names on stdin), which lists what changed since (see _still_written)."""
    info = runs.info
    argv = [info.path, "-lpt", FORMAT, "--timeout", str(max(1, int(runs.stall_timeout)))]
    if check:
        argv += ["--dry-run", "--files-from=-", "--from0"]
        if info.version >= (3, 1, 3):
            argv.append("--modify-window=-1")  # nanoseconds must match exactly
    else:
        argv += ["-r", "--update"]
        if info.version >= (3, 1, 3):
            # times compared to the nanosecond: the local folder then always gets the
            # cluster folder's time, even when both fall in one second (see Destination)
            argv.append("--modify-window=-1")
        if info.info_flags:
            argv.append("--info=skip1" if job.dry_run else "--info=skip1,progress1")
        if job.dry_run:
            argv.append("--dry-run")
        if temp is not None:
            argv.append(f"--temp-dir={temp}")
        argv += [f"--exclude={rule.pattern}" for rule in job.rules]
        argv += extra or []
    local = str(job.local) if job.local.is_absolute() else f"./{job.local}"  # never host:path
    if runs.master is None:
        return [*argv, "--", f"{destination(job.remote)}/", f"{local}/"]
    argv += remote_words(info, job.remote)
    argv += ["-e", rsh(runs.master, batch=check)]
    return [*argv, "--", host_path(runs.master, job.remote), f"{local}/"]


def _run(
    runs: Runs,
    argv: list[str],
    names: bytes,
    line: Callable[[str], None],
    timeout: float | None = None,
) -> tuple[int, bytes]:
    """Run rsync, each stdout record to `line`; (exit code, stderr). abort() stops it."""
    if runs.aborted:
        raise Interrupted("interrupted")
    # Its own process group: Ctrl-C reaches only us, and abort() stops rsync with SIGTERM, on
    # which it deletes its temporary file.
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent(),
        env={**os.environ, "TZ": "UTC0"},  # %M in UTC, read back with calendar.timegm
    ) as proc:
        runs.running.add(proc)
        assert proc.stdin and proc.stdout and proc.stderr
        stdout, stderr = proc.stdout, proc.stderr
        errors: list[bytes] = []
        unfed: list[BaseException] = []
        feeder = threading.Thread(target=feed, args=(proc.stdin, names, unfed), daemon=True)
        drain = threading.Thread(target=lambda: errors.extend(output_of(proc, stderr)), daemon=True)
        feeder.start()
        drain.start()
        try:
            for raw in records(output_of(proc, stdout)):
                line(raw.decode("utf-8", "surrogateescape"))
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        finally:
            runs.running.discard(proc)
        # ssh's stderr is rsync's: through the ControlMaster it may stay open after rsync ends.
        feeder.join(2 * GRACE)
        drain.join(2 * GRACE)
    return rc, b"".join(errors)
