"""Push with the system rsync: an argv list (no local shell), the file list from the selection.

rsync receives the exact entries the selection engine chose (`--files-from`, or as arguments),
or, for a long list the config's excludes alone chose, those excludes to walk the folder with
(rsync_names): it never pushes something the user excluded, and every backend sends one set.
"""

from __future__ import annotations

import itertools
import posixpath
import subprocess
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sbatchman.backends import TreeLister
from sbatchman.backends import rsync_guard as guard
from sbatchman.backends import rsync_names as listing
from sbatchman.backends.local import destination
from sbatchman.backends.rsync_ask import Asker
from sbatchman.backends.rsync_delete import Remover, open_lister, open_remover
from sbatchman.backends.rsync_info import RsyncInfo
from sbatchman.backends.rsync_output import (
    ITEM,
    SKIP,
    Progress,
    RsyncMissing,
    failure,
    is_missing,
    itemized_why,
    printed_name,
    records,
    sent_file,
    still_to_send,
    vanished,
)
from sbatchman.backends.rsync_remote import host_path, remote_words, rsh_quote, rsh_words
from sbatchman.backends.sources import vanished_note
from sbatchman.children import GRACE, die_with_parent, feed, output_of
from sbatchman.errors import Interrupted, TransferError
from sbatchman.model import Events, FetchJob, InterruptedPart, Job, Outcome, PartialTransfer
from sbatchman.plan import FULL_FOLDER, is_login_folder
from sbatchman.precedence import keep_dirlinks_for
from sbatchman.ssh.master import Master

# How long the after-failure check may take; past it the count is reported as unknown.
_CHECK_TIMEOUT = 15.0


# Files this big are worth a moving bar while they go. Below it rsync's progress lines (two per
# file) would only cost: for 50,000 small files, a third of a second of this process's time;
# each file's bytes then count once rsync names the next one.
PROGRESS_FROM = 1 << 20


class RsyncSession:
    """One cluster reached through rsync; `master` is None for a local cluster."""

    name = "rsync"

    def __init__(self, info: RsyncInfo, master: Master | None, stall_timeout: float) -> None:
        self.info = info
        self.master = master
        self.stall_timeout = stall_timeout
        self.running: set[subprocess.Popen[bytes]] = set()
        self.aborted = False
        self._ask = Asker(self.running, stall_timeout, lambda: self.aborted)

    def warm(self) -> None:
        """A push follows: its look at the cluster starts now, while the walk still runs."""
        if self.master is not None:
            self._ask.start_ahead(guard.stat_argv(self.master))

    def argv(
        self, job: Job, extra: list[str], *, batch: bool = False, named: bool = False,
        walks: bool = False,
    ) -> list[str]:  # fmt: skip
        """rsync's argv; `named`: the caller puts the names (rsync_names) before its last word;
        `walks`: rsync walks the folder itself (`extra` has the rules, rsync_names)."""
        given = ["-R", "-d"] if named else ["-r"] if walks else ["--files-from=-", "--from0"]
        argv = [self.info.path, "-lpt", "--update", *given]
        argv += ["--out-format=%i %l %n%L", "--timeout", str(max(1, int(self.stall_timeout)))]
        argv += extra
        if job.dry_run:
            argv.append("--dry-run")
        if job.selection.changed:  # a watch saw these change: rsync's quick check is in seconds
            argv.append("--ignore-times")
        if self.info.info_flags:
            argv.append("--info=skip1,nonreg0" if walks else "--info=skip1")
            if not job.dry_run and any(e.size >= PROGRESS_FROM for e in job.selection.files):
                argv.append("--info=progress1")  # per-file byte counts as the file goes
        source = [] if named else [f"{job.selection.root}/"]
        if self.master is None:
            return [*argv, "--", *source, f"{destination(job.remote)}/"]
        argv += remote_words(self.info, job.remote)
        rsh = " ".join(rsh_quote(a) for a in self._rsh(batch))
        return [*argv, "-e", rsh, "--", *source, host_path(self.master, job.remote)]

    def _rsh(self, batch: bool = False) -> list[str]:
        assert self.master is not None
        return rsh_words(self.master, batch)

    def push(self, job: Job, events: Events) -> Outcome:
        outcome = Outcome()
        extra: list[str] = []
        # rsync's --mkpath refuses a path with `..` in it (EINVAL), where plain rsync's own
        # last-level mkdir would go: such a folder is made separately, `..` kept.
        climbs = ".." in job.remote.split("/")
        if self.info.mkpath and not climbs:
            extra.append("--mkpath")
        else:
            if not self.info.mkpath:
                outcome.warnings.append(
                    "local rsync has no --mkpath: created the folder separately"
                )
            if not job.dry_run:
                self._make_path(job)
        if not self.info.info_flags:
            outcome.warnings.append("local rsync < 3.1 cannot report files skipped as newer")
        dirlinks = keep_dirlinks_for(job.cluster, job.sync_dir)
        if dirlinks:
            extra.append("--keep-dirlinks")
        if not guard.probed(job.selection):  # nothing to look at: rsync may have its session
            self._ask.release()
        events.totals(len(job.selection.files), job.selection.total_bytes)
        events.phase("scanning")  # the look at the cluster; then sending
        through: list[str] = []
        long_list = listing.by_argument(job.selection, login_folder=is_login_folder(job.remote))
        walked: list[list[str]] = []  # the rules, when rsync walks (decided after the look)

        def names() -> bytes:
            """The file list, once the cluster has been looked at (see rsync_guard); none
            when rsync walks (the guard's `kept` then become rules)."""
            argv = lambda: self.argv(job, [])  # noqa: E731 - only a probe without stat needs it
            stall = self.stall_timeout
            found = guard.look(job, self.master, self.info.path, argv, self._ask, stall)
            safe = guard.guard(job.selection, found, dirlinks)
            outcome.conflicts, outcome.warnings = safe.conflicts, outcome.warnings + safe.warnings
            for path, why in safe.conflicts:
                events.skipped(path, f"conflict: {why}")
            through.extend(safe.through)
            events.phase("sending")
            kept = [path for path, _ in safe.conflicts]
            rules = listing.walk_rules(job.selection, kept, found) if long_list else None
            if rules is not None:
                walked.append(rules)
                return b""
            # "./" first makes rsync send "." as an implied folder (never its contents): the
            # destination gets the local folder's mode and mtime, except the login directory.
            top = "" if is_login_folder(job.remote) else "./"
            return b"".join(f"{top if i == 0 else ''}{name}".encode("utf-8", "surrogateescape")
                            + b"\0" for i, name in enumerate(safe.names))  # fmt: skip

        try:
            if not dirlinks and not long_list:  # the look runs while rsync connects
                self._run(self.argv(job, extra), names, job, events, outcome)
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
                rules = walked[0] if walked else None
                self._send(job, extra + insecure, listed, long_list, events, outcome, rules)
            except TransferError as err:
                if not insecure or "--insecure-links: unknown option" not in str(err):
                    raise
                self._send(job, extra, listed, long_list, events, outcome, rules)  # rsync < 3.5
        except InterruptedPart:
            self._settle(job, extra, outcome, "interrupted")
            raise
        except RsyncMissing:
            raise
        except TransferError as err:
            if job.dry_run:
                raise
            self._settle(job, extra, outcome, "failed")
            raise PartialTransfer(str(err), outcome) from None
        return outcome

    def _send(
        self, job: Job, extra: list[str], listed: bytes, named: bool, events: Events,
        out: Outcome, rules: list[str] | None = None,
    ) -> None:  # fmt: skip
        """One rsync fed the list on stdin, one walking the folder with `rules`, or (`named`,
        a long list) rsyncs given it as words."""
        if rules is not None:
            self._run(self.argv(job, extra + rules, walks=True), b"", job, events, out)
            gone = listing.gone_since(job.selection, (name for name, _ in out.sent))
            out.warnings += [vanished_note(name) for name in gone]
            return
        if not named:
            self._run(self.argv(job, extra), listed, job, events, out)
            return
        argv = self.argv(job, extra, named=True)

        def run(words: list[str]) -> None:
            if self.aborted:  # between two batches: what the others sent still counts
                raise InterruptedPart(out)
            self._run([*argv[:-1], *words, argv[-1]], b"", job, events, out, job.selection.root)

        for words in listing.batches(listed):
            listing.in_halves(run, words)

    def _run(
        self,
        argv: list[str],
        names: bytes | Callable[[], bytes],
        job: Job,
        events: Events,
        outcome: Outcome,
        cwd: Path | None = None,
    ) -> None:
        if self.aborted:
            raise Interrupted("interrupted")
        known = {e.path for e in job.selection.files}
        progress = Progress(events)
        # rsync gets its own process group: the terminal's Ctrl-C reaches only us, and we stop
        # rsync with SIGTERM, on which it deletes its temporary file (no partial file remains).
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            cwd=cwd,
        ) as proc:
            self.running.add(proc)
            assert proc.stdin and proc.stdout and proc.stderr
            stderr, stdout = proc.stderr, proc.stdout
            # Feed names and drain stderr on threads: either pipe filling up would deadlock.
            errors: list[bytes] = []
            unfed: list[BaseException] = []  # why the names could not be made (rsync got none)
            feeder = threading.Thread(target=feed, args=(proc.stdin, names, unfed), daemon=True)
            drain = threading.Thread(
                target=lambda: errors.extend(output_of(proc, stderr)), daemon=True
            )
            feeder.start()
            drain.start()
            try:
                for raw in records(output_of(proc, stdout)):
                    self._line(raw, known, progress, outcome)
                progress.finish()
                rc = proc.wait()
            finally:
                self.running.discard(proc)
            # ssh's stderr is rsync's: through the ControlMaster, the master holds it open
            # until the cluster ends the session, which a silent cluster never does.
            feeder.join(2 * GRACE)
            drain.join(2 * GRACE)
        if self.aborted:
            raise InterruptedPart(outcome)
        if unfed:
            raise unfed[0]
        said = b"".join(errors)
        kept = [path for path, why in outcome.conflicts if why == FULL_FOLDER]
        if rc == 23 and kept and guard.only_conflicts(said, kept):
            return  # only folders kept as conflicts, as the other backends keep them
        gone = vanished(said, (e.path for e in job.selection.entries)) if rc in (23, 24) else None
        if gone is not None:  # only files deleted after the walk: notes, as the others say
            outcome.warnings += [vanished_note(name) for name in gone]
            return
        if rc != 0:
            text = said.decode("utf-8", "replace")
            message = failure(
                rc, text, stall=self.stall_timeout, roots=(job.remote, str(job.selection.root))
            )
            raise (RsyncMissing if is_missing(rc, text) else TransferError)(message)

    def _line(self, raw: bytes, known: set[str], progress: Progress, outcome: Outcome) -> None:
        item = sent_file(raw)  # most lines of a big push: read without a regular expression
        text = ""
        if item is None:
            if progress.line(raw):
                return
            text = raw.decode("utf-8", "surrogateescape")
            found = ITEM.match(text)
            if found:
                item = found[1], int(found[2]), found[3]
        if item is not None:
            flags, size, name = item[0], item[1], printed_name(item[2], known)
            if flags[1] == "f" and flags[0] in "<>":
                why = itemized_why(flags)
                outcome.sent.append((name, why))
                outcome.bytes_sent += size
                progress.start(name, size, why)
            else:
                progress.finish()
            return
        folder = guard.kept_folder(text)
        if folder is not None:
            folder = printed_name(folder, known)
            outcome.conflicts.append((folder, FULL_FOLDER))
            progress.events.skipped(folder, f"conflict: {FULL_FOLDER}")
            return
        skip = SKIP.match(text)
        if skip:
            name = printed_name(skip[1], known)
            outcome.skipped_newer.append(name)
            progress.events.skipped(name, "remote is newer")

    def _settle(self, job: Job, extra: list[str], outcome: Outcome, how: str) -> None:
        """After a failure or Ctrl-C, keep only the files that landed.

        rsync names a file when it starts sending it and runs a few files ahead of the
        receiver, so its list says what started. A dry run over the same connection asks
        rsync itself which of those are now in place; when that cannot be asked (the
        connection is gone), the report says the count is unknown.
        """
        started = [name for name, _ in outcome.sent]
        sizes = {e.path: e.size for e in job.selection.files}
        still = self._pending(job, extra, started) if started else set()
        if still is None:
            outcome.warnings.append(
                f"{how}: rsync had started {len(started)} file(s), counted here; how many of"
                " them landed is unknown (the cluster could not be asked). The next sync sends"
                " whatever is missing"
            )
            return
        outcome.sent = [(name, why) for name, why in outcome.sent if name not in still]
        outcome.bytes_sent = sum(sizes.get(name, 0) for name, _ in outcome.sent)

    def _pending(self, job: Job, extra: list[str], names: list[str]) -> set[str] | None:
        """Which of `names` a dry run would still send; None when rsync could not tell."""
        known = {e.path for e in job.selection.files}
        data = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
        argv = self.argv(replace(job, dry_run=True), extra, batch=True)
        try:
            run = subprocess.run(
                argv, input=data, capture_output=True, check=False, start_new_session=True,
                timeout=_CHECK_TIMEOUT, preexec_fn=die_with_parent(),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        if run.returncode not in (0, 23, 24):
            return None
        return still_to_send(run.stdout, known)

    def _make_path(self, job: Job) -> None:
        """Create the remote folder with rsync itself: --relative recreates implied folders."""
        import tempfile

        if self.master is None:  # a local cluster: the folder is on this machine
            try:
                Path(destination(job.remote)).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                where = destination(job.remote)
                raise TransferError(f"cannot create {where}: {err.strerror}") from None
            return
        # Leading `..` steps stay in the destination (--relative would drop them, and a
        # `..` below the empty folder would climb out of it); the rest is recreated.
        parts = posixpath.normpath(job.remote).split("/")
        up = [p for p in itertools.takewhile(lambda p: p in ("", ".."), parts)]
        below = "/".join(parts[len(up) :])
        if not below or below == ".":
            return
        with tempfile.TemporaryDirectory() as empty:
            (Path(empty) / below).mkdir(parents=True, exist_ok=True)
            dest = "/".join(up) + "/" if up else ""
            argv = [self.info.path, "-rR", "-e", " ".join(rsh_quote(a) for a in self._rsh())]
            if self.info.secluded_args:
                argv.insert(1, "-s")
            host = self.master.host.rpartition("@")[2]
            host = f"[{host}]" if ":" in host else host
            argv += ["--", f"{empty}/./{below}", f"{host}:{dest}"]
            rc, _, said = self._ask(argv, b"", {})  # bounded, and stopped by abort()
            if rc != 0:
                text = said.decode("utf-8", "replace")
                message = failure(rc, text, stall=self.stall_timeout)
                raise (RsyncMissing if is_missing(rc, text) else TransferError)(message)

    def fetch(self, job: FetchJob, events: Events) -> Outcome:
        from sbatchman.backends.rsync_fetch import fetch

        return fetch(self, job, events)

    def remover(self, job: Job) -> Remover:
        return open_remover(self.master, job.remote, self.stall_timeout)

    def lister(self, remote: str) -> TreeLister:
        return open_lister(
            self.master, remote, self.stall_timeout, self.running, lambda: self.aborted
        )

    def abort(self) -> None:
        self.aborted = True
        for proc in list(self.running):
            proc.terminate()

    def close(self) -> None:
        self._ask.close()
        if self.master is not None:
            self.master.close()
