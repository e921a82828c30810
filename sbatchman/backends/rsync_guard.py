"""Keep rsync from destroying what the other backends keep: look first where it would replace.

rsync lets a change of type win over --update: a local link or folder replaces a newer regular
file on the cluster. Before the push, the cluster's entries at the paths where the tree has a
link or a folder are looked at over the same connection (one `stat` on the cluster, the paths on
its stdin, never in a shell command; `rsync --list-only` where that stat is missing; lstat for
a local cluster); plan.decide judges each, and what it keeps is left out of rsync's file list. A
folder that is not empty where a file goes is kept by rsync itself; its words are read back as
a conflict (see kept_folder).
"""

from __future__ import annotations

import calendar
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sbatchman.backends.local import destination
from sbatchman.backends.rsync_output import RsyncMissing, failure, is_missing, unescape
from sbatchman.errors import TransferError
from sbatchman.model import Job
from sbatchman.plan import NEWER_FILE, DestStat, Kind, decide, kind_of, replaced_link_warning
from sbatchman.selection.walk import Entry, Selection
from sbatchman.ssh.master import Master

# Runs a short command over the session's connection: (argv, stdin, env) -> (rc, stdout, stderr)
Ask = Callable[[list[str], bytes, dict[str, str]], tuple[int, bytes, bytes]]

_KINDS: dict[str, Kind] = {"d": "dir", "-": "file", "l": "link"}
_LIST = re.compile(r"^([-dlcbps])[-rwxsStT]{9}\s+[\d,]+ (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) (.*)$")
# What a probe may say without failing: a path that is not there (or under a file).
_ABSENT = re.compile(
    r"link_stat .* failed: (No such file or directory \(2\)|Not a directory \(20\))"
    r"|change_dir .* failed: No such file or directory \(2\)"
    r"|^rsync error: (some files/attrs were not transferred|errors selecting input/output)"
    r"|^rsync: connection unexpectedly closed|Broken pipe \(32\)|^rsync error: error in rsync"
)
_CONFLICT = re.compile(r"^cannot delete non-empty directory: (.*)$")
_CONSEQUENCE = re.compile(
    r"^(could not make way for new (?:regular file|symlink): (.*)"
    r"|rsync error: some files/attrs were not transferred .*)$",
    re.DOTALL,  # a name may hold a newline
)


def look(
    job: Job,
    master: Master | None,
    rsync: str,
    push_argv: Callable[[], list[str]],
    ask: Ask,
    stall: float,
) -> dict[str, DestStat]:
    """What the cluster has where the tree has links and folders: GNU stat on the cluster,
    `rsync --list-only` (through the push's own -s, -e and host:path) where it has none."""
    wanted = probed(job.selection)
    if not wanted:
        return {}
    if master is None:
        return lstat_all(destination(job.remote), wanted)
    root = job.remote.rstrip("/") or "/"
    rc, out, err = ask(stat_argv(master), stat_input(root, wanted), {})
    if stat_worked(rc, err.decode("utf-8", "replace")):
        found = parse_stat(out, root)
        if found is not None:
            return found
    full = push_argv()
    remote = ["-s"] if "-s" in full else []
    remote += ["-e", full[full.index("-e") + 1], full[-1]]
    names = b"".join(e.path.encode("utf-8", "surrogateescape") + b"\0" for e in wanted)
    with tempfile.TemporaryDirectory() as scratch:
        argv = probe_argv(rsync, remote, Path(scratch) / "never-written")
        rc, out, err = ask(argv, names, {"TZ": "UTC0"})  # it prints local times
    stderr = unescape(err).decode("utf-8", "replace")
    if probe_failure(rc, stderr):
        missing = is_missing(rc, stderr)  # then open.py pushes this cluster over SFTP
        raise (RsyncMissing if missing else TransferError)(failure(rc, stderr, stall=stall))
    return parse_listing(out)


def probed(selection: Selection) -> list[Entry]:
    """The entries whose place on the cluster must be known: links and folders."""
    return [e for e in selection.entries if e.kind in ("dir", "link")]


# A fixed command: no path is ever part of it (they come on stdin, NUL-separated, and xargs
# hands them to stat as arguments). Written so sh, bash, csh and fish all read it alike.
STAT_COMMAND = "env LC_ALL=C xargs -0 -r stat --printf 'sbm\\t%F\\t%Y\\t%n\\0' --"
_STAT_ABSENT = re.compile(r"No such file or directory|Not a directory|Permission denied")


def stat_argv(master: Master) -> list[str]:
    """The look's ssh: STAT_COMMAND on the cluster over the master, paths on its stdin."""
    return [*master.client_argv(), "--", master.host, STAT_COMMAND]


def stat_input(root: str, entries: list[Entry]) -> bytes:
    """The paths STAT_COMMAND reads: each entry under the destination, as the login sees it."""
    return b"".join(f"{root}/{e.path}".encode("utf-8", "surrogateescape") + b"\0" for e in entries)


def parse_stat(out: bytes, root: str) -> dict[str, DestStat] | None:
    """STAT_COMMAND's records, or None when they cannot be read (then ask rsync instead)."""
    found: dict[str, DestStat] = {}
    prefix = f"{root}/"
    for record in out.split(b"\0")[:-1]:
        parts = record.decode("utf-8", "surrogateescape").split("\t", 3)
        if len(parts) != 4 or parts[0] != "sbm" or not parts[3].startswith(prefix):
            return None
        kind: Kind = (
            "file"
            if parts[1].startswith("regular")
            else "dir"
            if parts[1] == "directory"
            else "link"
            if parts[1] == "symbolic link"
            else "other"
        )
        try:
            found[parts[3][len(prefix) :]] = DestStat(kind, 0, int(parts[2]))
        except ValueError:
            return None
    return found


def _said_by(stderr: str, programs: tuple[str, ...]) -> list[str]:
    """The lines these programs wrote; a login's own chatter (a locale warning, a banner
    from a profile script) is not theirs and says nothing about the look."""
    return [line.strip() for line in stderr.split("\n") if line.strip().startswith(programs)]


def stat_worked(rc: int, stderr: str) -> bool:
    """xargs says 123 when some stat failed: fine if only for paths that are not there."""
    lines = _said_by(stderr, ("stat:", "xargs:", "env:"))
    return rc == 0 or (rc == 123 and all(_STAT_ABSENT.search(line) for line in lines))


def probe_argv(rsync: str, remote_args: list[str], scratch: Path) -> list[str]:
    """List (lstat) the named paths on the cluster; `scratch` is a destination never written."""
    return [rsync, "--list-only", "--files-from=-", "--from0", *remote_args, f"{scratch}/"]


def parse_listing(out: bytes) -> dict[str, DestStat]:
    """`rsync --list-only` lines (TZ=UTC0) into what the cluster has. Lines are split before
    rsync's escapes are undone: a name may hold a newline (`\\#012`)."""
    found: dict[str, DestStat] = {}
    for raw in out.split(b"\n"):
        item = _LIST.match(raw.decode("utf-8", "surrogateescape"))
        if item is None:
            continue
        kind = _KINDS.get(item[1], "other")
        when = calendar.timegm(time.strptime(item[2], "%Y/%m/%d %H:%M:%S"))
        name = unescape(item[3].encode("utf-8", "surrogateescape"))
        found[name.decode("utf-8", "surrogateescape")] = DestStat(kind, 0, when)
    return found


def probe_failure(rc: int, stderr: str) -> bool:
    """True when the probe failed for a reason other than paths that are not there."""
    if rc == 0:
        return False
    lines = _said_by(stderr, ("rsync",))
    return rc not in (3, 12, 23) or not all(_ABSENT.search(line) for line in lines)


def lstat_all(root: Path, entries: list[Entry]) -> dict[str, DestStat]:
    """The same facts for a local cluster, without running anything."""
    found: dict[str, DestStat] = {}
    for entry in entries:
        try:
            st = os.lstat(root / entry.path)
        except OSError:
            continue
        found[entry.path] = DestStat(kind_of(st.st_mode), st.st_size, int(st.st_mtime))
    return found


@dataclass
class Guarded:
    """What rsync may be given, and what the report must say about the rest."""

    names: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    through: list[str] = field(default_factory=list)  # cluster links kept as folders (-K)


def guard(selection: Selection, found: dict[str, DestStat], keep_dirlinks: bool) -> Guarded:
    """Leave out every link or folder that would replace a newer file, and all below it.

    A probed path below something that is not a real folder on the cluster (a link rsync
    replaces, a file) names what that link points at, and is not trusted, as plan.trusted.
    """
    out = Guarded()
    real = {""}  # folders on the cluster that rsync writes into as they are
    kept: set[str] = set()  # left out, with every link and folder below them
    for entry in probed(selection):  # only links and folders can replace what is there
        parent = posixpath.dirname(entry.path)
        if parent in kept:
            kept.add(entry.path)
            continue
        dest = found.get(entry.path) if parent in real else None
        through = keep_dirlinks and dest is not None and dest.kind == "link"
        action = decide(entry, dest, through=through)
        if action is not None and action.op == "conflict":
            kept.add(entry.path)
            out.conflicts.append((entry.path, NEWER_FILE))
            continue
        if entry.kind == "dir":
            if dest is not None and (dest.kind == "dir" or through):
                real.add(entry.path)
            if through:
                out.through.append(entry.path)
            if dest is not None and dest.kind == "link" and not through:
                out.warnings.append(replaced_link_warning(entry.path))
    if not kept:  # the usual case: everything goes (a file only ever goes below a folder)
        out.names = [e.path for e in selection.entries]
    else:
        dirname = posixpath.dirname
        out.names = [
            e.path for e in selection.entries if e.path not in kept and dirname(e.path) not in kept
        ]
    return out


def kept_folder(line: str) -> str | None:
    """The folder rsync refused to remove (not empty) where a file or link goes, if this line
    of its output says so."""
    hit = _CONFLICT.match(line)
    return hit[1] if hit else None


def only_conflicts(stderr: bytes, kept: list[str]) -> bool:
    """True when all rsync complained about is the folders it kept (then exit 23 is fine).

    Lines are split before rsync's escapes are undone: a kept name may hold a newline."""
    for raw in stderr.split(b"\n"):
        line = unescape(raw).decode("utf-8", "surrogateescape").removesuffix("\r")
        hit = _CONSEQUENCE.match(line)
        if line and not (hit and (hit[2] is None or hit[2] in kept)):
            return False
    return True
