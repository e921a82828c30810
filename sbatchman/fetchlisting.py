"""`sbatchman ls --fetch`: what each fetch_dir would bring, and why a path of it is or is not.

A fetch_dir's selection is made on the cluster's tree, so this connects (once per cluster, as
fetch does) and reads it with the backend a fetch would use. The listing is a dry run of that
fetch into a folder that does not exist; `--explain` lists only the folders along each path and
judges them with selection.tree's rules, so the verdict is the one a fetch acts on.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sbatchman.backends import Session
from sbatchman.backends.local import destination
from sbatchman.backends.transfer import conflict_words, kept_newer
from sbatchman.config import Config, FetchDir
from sbatchman.errors import ExitCode, UsageError
from sbatchman.fanout import Fleet, Operation, Stopped, ended
from sbatchman.model import (
    Events,
    FetchJob,
    Outcome,
    Reporter,
    Request,
    Result,
    Target,
    exit_code,
)
from sbatchman.names import show_name, show_text
from sbatchman.outcomes import attempt
from sbatchman.plan import DestStat, decide, kind_of
from sbatchman.precedence import batch_for
from sbatchman.report import ConsoleReporter, Style, human_bytes
from sbatchman.selection.tree import Found, Judged, Listed, judge_path
from sbatchman.selection.walk import Entry, path_below
from sbatchman.ssh.endpoint import Answers, SshOptions
from sbatchman.targets import resolve_fetch_targets


def fetch_ls(
    config: Config, request: Request, explain_paths: Sequence[str], interactive: bool
) -> tuple[list[str], ExitCode]:
    """`ls --fetch`: the lines to print and the exit status (1 when a target could not be read).

    Connects as fetch does (prompting only when someone is at the terminal), with the waits
    of the config; notices (a backend that fell back) go to stderr.
    """
    if request.gitignore is not None:
        raise UsageError("--gitignore does not go with --fetch (it judges local sync_dirs)")
    ssh = SshOptions(
        batch=batch_for(False, interactive),
        connect_timeout=config.settings.connect_timeout,
        stall_timeout=config.settings.stall_timeout,
    )
    request = replace(request, ssh=ssh)
    with ConsoleReporter(Style(quiet=True, direction="fetch")) as reporter:
        if explain_paths:
            lines, results = _fetch_explained(config, request, explain_paths, reporter)
        else:
            lines, results = _fetch_selections(config, request, reporter)
    return lines, exit_code(results)


def _fetch_selections(
    config: Config, request: Request, reporter: Reporter
) -> tuple[list[str], list[Result]]:
    """Per fetch target: each file its fetch would bring into an empty folder, and totals.

    The same targets, excludes and backend as `fetch`, run as a dry run into a folder that does
    not exist (inside a fresh temporary folder), so every selected file shows as new and
    nothing is written anywhere.
    """
    request = replace(request, dry_run=True, ssh=replace(request.ssh, answers=Answers()))
    targets = resolve_fetch_targets(config, request)
    with tempfile.TemporaryDirectory(prefix="sbatchman-ls-") as empty:
        absent = Path(empty) / "absent"

        def list_one(target: Target, session: Session, events: Events) -> Result:
            fetch_dir = target.sync_dir
            assert isinstance(fetch_dir, FetchDir)

            def transfer() -> tuple[Outcome, Sequence[str], Sequence[str]]:
                job = FetchJob(
                    target.cluster, fetch_dir, fetch_dir.remote, absent, target.rules, True
                )
                return session.fetch(job, events), (), ()

            return attempt(target, session, True, events, transfer)

        results = _run(targets, config, request, reporter, list_one)
    lines: list[str] = []
    for target, result in zip(targets, results, strict=True):
        label = f"{target.cluster.name}/{target.sync_dir.alias}"
        lines.append(show_text(f"{label}: {target.sync_dir.remote} -> {target.sync_dir.local}"))
        lines += [f"  {show_name(path)}" for path, _ in result.sent]
        problems = (*([result.error] if result.error else []), *result.warnings)
        lines += [show_text(f"  ! {problem}") for problem in problems]
        lines.append(f"  {len(result.sent)} file(s), {human_bytes(result.bytes_sent)}")
    return lines, results


def _run(
    targets: list[Target],
    config: Config,
    request: Request,
    reporter: Reporter,
    operation: Operation,
) -> list[Result]:
    """One pass of `operation` over a Fleet of the targets; Ctrl-C ends it with what finished."""
    try:
        with Fleet(targets, config.settings, request, reporter) as fleet:
            return fleet.run(operation)
    except Stopped as stop:
        return stop.results
    except KeyboardInterrupt:
        return [ended(t, "interrupted", "interrupted") for t in targets]


# --------------------------------------------------------------------------- --explain

# Per path in the order given: the path as given, judged as a folder, and its fetch_dirs, each
# with the path's components below the fetch_dir's remote folder.
_Wanted = list[tuple[str, bool, list[tuple[Target, list[str]]]]]


def _fetch_explained(
    config: Config, request: Request, paths: Sequence[str], reporter: Reporter
) -> tuple[list[str], list[Result]]:
    """Each path's verdict per fetch_dir holding it, in the order given; a path in no selected
    fetch_dir is a usage error before anything connects. A target whose cluster or remote
    folder cannot be read shows one `! reason` line instead."""
    request = replace(request, ssh=replace(request.ssh, answers=Answers()))
    targets = resolve_fetch_targets(config, request)
    wanted = _wanted(targets, paths)
    verdicts: dict[tuple[int, int], Judged] = {}  # (path index, id(target)) -> verdict

    def judge_one(target: Target, session: Session, events: Events) -> Result:
        mine = [
            (i, parts, want_dir)
            for i, (_, want_dir, holders) in enumerate(wanted)
            for holder, parts in holders
            if holder is target
        ]

        def transfer() -> tuple[Outcome, Sequence[str], Sequence[str]]:
            lister = session.lister(target.sync_dir.remote)
            seen: dict[str, Sequence[Found] | str] = {}  # the root once for many paths

            def listed(folders: Sequence[str]) -> Listed:
                if new := [f for f in folders if f not in seen]:
                    seen.update(lister(new))
                return {f: seen[f] for f in folders if f in seen}

            problems: list[str] = []  # what could not be listed fails the target, as a fetch
            try:
                for i, parts, want_dir in mine:
                    verdict = judge_path(listed, target.rules, parts, want_dir)
                    verdicts[i, id(target)] = _now(target, verdict)
                    if verdict.unreadable:
                        problems.append(f"{verdict.path}: {verdict.reason}")
            finally:
                lister.close()
            return Outcome(), problems, ()

        return attempt(target, session, True, events, transfer)

    results = _run(targets, config, request, reporter, judge_one)
    failed = {id(t): r.error for t, r in zip(targets, results, strict=True)}
    lines: list[str] = []
    said: set[int] = set()
    for i, (_, _, holders) in enumerate(wanted):
        for target, _ in holders:
            label = show_text(f"{target.cluster.name}/{target.sync_dir.alias}")
            verdict = verdicts.get((i, id(target)))
            if verdict is not None:
                lines.append(f"{label}: {show_name(verdict.path)}: {show_text(verdict.reason)}")
            elif id(target) not in said:
                said.add(id(target))
                lines.append(f"{label}: ! {show_text(failed[id(target)] or 'not judged')}")
    return lines, results


def _wanted(targets: Sequence[Target], paths: Sequence[str]) -> _Wanted:
    """Which fetch_dirs each path is in (docs/cli.md, `ls`): a relative path is taken from
    each remote folder, or from here when here is inside a fetch_dir's local folder; an
    absolute one belongs to the fetch_dirs whose local or (absolute) remote folder holds it."""
    here = Path.cwd()
    in_a_local = any(path_below(str(t.sync_dir.local), str(here)) is not None for t in targets)
    wanted: _Wanted = []
    for given in paths:
        path = given
        if in_a_local and not os.path.isabs(path):
            path = os.path.join(here, path)
        holders = []
        for target in targets:
            below = _below(target, path)
            if below is not None:
                holders.append((target, _parts(given, below, target)))
        if not holders:
            raise UsageError(f"{given} is in no selected fetch_dir ({_places(targets)})")
        wanted.append((given, given.endswith("/"), holders))
    return wanted


def _below(target: Target, path: str) -> str | None:
    """`path` below the target's remote folder, or None when it is not the target's."""
    if not os.path.isabs(path):
        return path
    below = path_below(str(target.sync_dir.local), path)
    if below is not None:
        return below
    remote = target.sync_dir.remote
    if target.cluster.is_local:
        return path_below(str(destination(remote)), path)
    if posixpath.isabs(remote):
        root, given = posixpath.normpath(remote), posixpath.normpath(path)
        if given == root or given.startswith(root.rstrip("/") + "/"):
            return posixpath.relpath(given, root)
    return None


def _parts(given: str, below: str, target: Target) -> list[str]:
    parts = [p for p in below.split("/") if p not in ("", ".")]
    where = f"{target.cluster.name}/{target.sync_dir.alias}"
    if ".." in parts:
        raise UsageError(
            f"'{given}' climbs out with '..'; give a path inside the fetch_dir {where}"
        )
    if not parts:
        raise UsageError(f"'{given}' is the fetch_dir {where} itself; give a path inside it")
    return parts


def _places(targets: Sequence[Target]) -> str:
    places = {str(t.sync_dir.local) for t in targets}
    for target in targets:
        remote = target.sync_dir.remote
        if target.cluster.is_local:
            places.add(str(destination(remote)))
        elif posixpath.isabs(remote):
            places.add(f"{target.cluster.name}:{remote}")
    return ", ".join(sorted(places))


def _now(target: Target, verdict: Judged) -> Judged:
    """A fetched file that is here already: whether a fetch now brings it or keeps the local
    copy, by plan.decide, as every fetch decides. Said only where the way down is plain
    folders (or not there yet): what a fetch does with a link in the way is its own story."""
    found = verdict.found
    if found is None or found.kind != "file":
        return verdict
    place = target.sync_dir.local
    dest: DestStat | None = None
    empty: bool | None = None
    try:
        *parents, name = verdict.path.split("/")
        for part in parents:
            place = place / part
            if not stat.S_ISDIR(os.lstat(place).st_mode):
                return verdict
        st = os.lstat(place / name)
        kind = kind_of(st.st_mode)
        dest = DestStat(kind, st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode))
        if kind == "dir":
            empty = not os.listdir(place / name)
        elif kind == "link":
            dest = replace(dest, target=os.readlink(place / name))
    except FileNotFoundError:
        pass
    except OSError:
        return verdict
    entry = Entry(verdict.path, "file", found.size, found.mtime_ns, found.mode)
    action = decide(entry, dest, empty=empty)
    if action is None:
        now = "up to date here"
    elif action.op == "skip-newer":
        now = f"now kept: {kept_newer('local')}"
    elif action.op == "conflict":
        now = f"now kept: {conflict_words(action.reason, 'local')}"
    else:
        now = f"comes now: {action.reason}"
    return replace(verdict, reason=f"{verdict.reason} ({now})")
