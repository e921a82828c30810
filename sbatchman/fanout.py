"""Hold one open session per cluster and run an operation over every target through them.

Push, and later fetch, watch and safe-delete, share this: connect each cluster once (prompts
never interleaving), run something per target with clusters in parallel and a cluster's targets
side by side where their destinations do not overlap, stop everything at once
on Ctrl-C leaving no ssh master behind. The operation is passed in, so nothing here knows what
is done over a session, and the sessions stay open until the `with` ends: watch makes many
passes over one login (and one 2FA prompt).
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from types import TracebackType

from sbatchman.backends import Session
from sbatchman.config import Settings
from sbatchman.errors import AuthError, SbatchmanError
from sbatchman.model import Events, Reporter, Request, Result, Status, Target

# Aliases of one cluster pushed at once over its connection: well under sshd's default
# MaxSessions (10), which also counts the ssh master's own session and SFTP's extra channels.
PER_CLUSTER = 4

Operation = Callable[[Target, Session, Events], Result]
"""What a pass does for one target; it reports its own failures in the Result it returns."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while connecting or during a pass.

    Still a KeyboardInterrupt, so a caller that does not care stops as it would; `results` has
    one Result per target (what finished, what failed to connect, the rest "interrupted").
    """

    def __init__(self, results: list[Result]) -> None:
        super().__init__()
        self.results = results


def ended(target: Target, status: Status, error: str) -> Result:
    """The Result of a target that never reached its operation."""
    return Result(target.cluster.name, target.sync_dir.alias, target.backend, status, error=error)


class Fleet:
    """`with Fleet(...) as fleet:` connects every cluster; `fleet.run(op)` is one pass.

    A cluster that cannot be connected fails its own targets in every pass (with the connect
    error) and never stops the others; `reconnect` tries it, or any one cluster, again.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        settings: Settings,
        request: Request,
        reporter: Reporter,
        *,
        meanwhile: Callable[[], object] | None = None,
        ready: Callable[[Session], None] | None = None,
    ) -> None:
        """`meanwhile` runs on the caller's thread while the clusters connect without
        prompts (a push walks its folders then, instead of before: a login costs several
        round trips, the walk of a big tree as long). Nothing prompts before it has
        returned, and when it raises (a config error) every connection is closed and
        the error goes on up. `ready` gets each session as soon as it is open, on the
        thread that opened it (a push starts what its first step needs)."""
        self.meanwhile = meanwhile
        self.ready = ready
        self.targets = list(targets)
        self.settings = settings
        self.request = request
        self.reporter = reporter
        self.groups: dict[str, list[Target]] = {}
        for target in self.targets:
            self.groups.setdefault(target.cluster.name, []).append(target)
        self.events = {id(t): reporter.events(t) for t in self.targets}
        self.sessions: dict[str, Session] = {}
        self.failures: dict[str, SbatchmanError] = {}  # why a cluster has no session

    def __enter__(self) -> Fleet:
        for target in self.targets:
            self.events[id(target)].phase("connecting")
        try:
            self._open(list(self.groups))
        except KeyboardInterrupt:
            self._close()
            raise Stopped(self._ordered(self._unconnected(), self.targets)) from None
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self._abort()
        self._close()

    def run(self, operation: Operation, only: Collection[int] | None = None) -> list[Result]:
        """One pass: clusters in parallel (at most --jobs), and a cluster's targets side by side
        over its one connection (at most PER_CLUSTER), except those whose destinations overlap,
        which go one after another. A failing target never stops its siblings.

        Returns one Result per target (those whose id is in `only`, when given: a watch pass
        leaves the others alone), in target order. Ctrl-C aborts every session (backends
        leave no partial file at a final path) and raises Stopped with what finished.
        """
        chosen = [t for t in self.targets if only is None or id(t) in only]
        picked = {id(t) for t in chosen}
        results = {k: v for k, v in self._unconnected().items() if k in picked}
        live = [
            [t for t in group if id(t) in picked]
            for name, group in self.groups.items()
            if name in self.sessions and any(id(t) in picked for t in group)
        ]
        if not live:
            return self._ordered(results, chosen)
        lock = threading.Lock()
        stop = threading.Event()  # Ctrl-C: what has not started never will
        overlapping = _overlaps(self.targets)
        for group in live:
            for target in group:
                self.events[id(target)].phase("waiting")

        def run_one(target: Target, session: Session) -> None:
            with overlapping[id(target)]:  # local clusters may share a destination
                if stop.is_set():
                    return
                result = operation(target, session, self.events[id(target)])
            with lock:
                results[id(target)] = result

        def run_cluster(group: list[Target]) -> None:
            session = self.sessions[group[0].cluster.name]
            chains: dict[int, list[Target]] = {}  # overlapping targets share a chain
            for target in group:
                chains.setdefault(id(overlapping[id(target)]), []).append(target)
            width = min(self.request.jobs, PER_CLUSTER, len(chains))
            with ThreadPoolExecutor(max_workers=width) as aliases:
                for future in [aliases.submit(run_chain, c, session) for c in chains.values()]:
                    future.result()

        def run_chain(chain: list[Target], session: Session) -> None:
            for target in chain:
                run_one(target, session)

        pool = ThreadPoolExecutor(max_workers=max(1, min(self.request.jobs, len(live))))
        try:
            for future in [pool.submit(run_cluster, group) for group in live]:
                future.result()
        except KeyboardInterrupt:
            stop.set()
            self._abort()  # unblocks the workers, so the wait below is short
            pool.shutdown(wait=True, cancel_futures=True)
            raise Stopped(self._ordered(results, chosen)) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return self._ordered(results, chosen)

    def reconnect(self, name: str) -> None:
        """Close and reopen one cluster's session; every other session is left as it is."""
        if name not in self.groups:
            raise ValueError(f"{name}: not a cluster of this fleet")
        old = self.sessions.pop(name, None)
        self.failures.pop(name, None)
        if old is not None:
            old.close()
        for target in self.groups[name]:
            self.events[id(target)].phase("connecting")
        self._open([name])

    def _open(self, names: list[str]) -> None:
        """Open a session per cluster: all at once without prompts, then serially with them.

        The parallel pass never asks anything, so a user with keys in an agent waits for the
        slowest cluster only. Clusters that need a passphrase, password or 2FA code get a second
        try, one at a time, so prompts never interleave (skipped in batch mode: nothing may
        prompt).
        """
        quiet = replace(self.request, ssh=replace(self.request.ssh, batch=True))
        opened: dict[str, Session] = {}
        failures: dict[str, SbatchmanError] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.request.jobs, len(names))))
        futures: dict[str, Future[Session]] = {}
        try:
            for name in names:
                first = self.groups[name][0]
                futures[name] = pool.submit(self._connect, first, quiet)
            # the first connect's: a reconnect does not run it again
            meanwhile, self.meanwhile = self.meanwhile, None
            wrong = _failure_of(meanwhile)
            for name, future in futures.items() if wrong is None else ():
                try:
                    opened[name] = future.result()
                except SbatchmanError as err:
                    failures[name] = err
        except BaseException:  # Ctrl-C: nothing goes on connecting
            self.request.ssh.cancel.cancel()  # connections being made fail now, not at timeout
            pool.shutdown(wait=False, cancel_futures=True)
            for future in futures.values():  # now, or when a connect still running gets there
                future.add_done_callback(_close_opened)
            _let_finish(list(futures.values()))
            raise
        if wrong is not None:
            # A config error: the quiet connects are let end (none can prompt, each within
            # its timeout) and closed. Cut mid-login, an ssh that had just forked its master
            # could leave that master running for ControlPersist's ten minutes.
            pool.shutdown(wait=False)
            for future in futures.values():
                future.add_done_callback(_close_opened)
            _let_finish(list(futures.values()), most=self.settings.connect_timeout + 10)
            raise wrong
        pool.shutdown()
        self.sessions.update(opened)
        retry = (
            any(isinstance(f, AuthError) for f in failures.values()) and not self.request.ssh.batch
        )
        with self.reporter.prompting() if retry else contextlib.nullcontext():
            for name, failure in failures.items():
                if retry and isinstance(failure, AuthError):
                    try:
                        first = self.groups[name][0]
                        self.sessions[name] = self._connect(first, self.request)
                        continue
                    except SbatchmanError as again:
                        failure = again
                self.failures[name] = failure

    def _connect(self, first: Target, request: Request) -> Session:
        from sbatchman.backends.open import open_session

        session = open_session(first, self.settings, request, self.reporter)
        if self.ready is not None:
            try:
                self.ready(session)
            except BaseException:  # not handed back, so nobody else would close it
                session.close()
                raise
        return session

    def _unconnected(self) -> dict[int, Result]:
        """A "failed" Result (with the connect error) for each target of a cluster with none."""
        return {
            id(target): ended(target, "failed", str(failure))
            for name, failure in self.failures.items()
            for target in self.groups[name]
        }

    def _ordered(self, results: dict[int, Result], chosen: list[Target]) -> list[Result]:
        return [results.get(id(t)) or ended(t, "interrupted", "interrupted") for t in chosen]

    def abort(self) -> None:
        """Stop every running transfer at once (from any thread); a pass then ends with
        its unfinished targets "interrupted"."""
        self._abort()

    def _abort(self) -> None:
        for session in list(self.sessions.values()):
            session.abort()

    def _close(self) -> None:
        while self.sessions:
            _, session = self.sessions.popitem()
            session.close()


def _overlaps(targets: Sequence[Target]) -> dict[int, threading.Lock]:
    """One lock per set of targets whose destinations are equal or nested (by target id).

    Such targets would write into each other's trees, so they run one after another (in
    config order); the rest each get their own lock. Destinations on one cluster overlap by
    their paths; local clusters all write to this machine, so theirs are compared resolved.
    """
    from sbatchman.backends.local import destination

    def where(target: Target) -> tuple[str, str]:
        if target.cluster.is_local:
            return "", str(destination(target.sync_dir.remote).resolve())
        path = posixpath.normpath(target.sync_dir.remote)
        # normpath keeps exactly two leading slashes (POSIX leaves them to the system); the
        # clusters' Linux reads `//x` as `/x`, so they must compare as one folder.
        return target.cluster.name, path[1:] if path.startswith("//") else path

    places = [where(t) for t in targets]
    owner = list(range(len(targets)))  # union-find over target indexes

    def find(i: int) -> int:
        while owner[i] != i:
            owner[i] = owner[owner[i]]
            i = owner[i]
        return i

    for i, (host, path) in enumerate(places):
        for j in range(i):
            if places[j][0] == host and nested(path, places[j][1]):
                owner[find(i)] = find(j)
    locks = {root: threading.Lock() for root in {find(i) for i in range(len(targets))}}
    return {id(t): locks[find(i)] for i, t in enumerate(targets)}


def nested(a: str, b: str) -> bool:
    """Whether two normalised paths may be the same folder or one inside the other.

    A relative path is under the login folder, which is not known before connecting: against
    an absolute one, or with a leading `..`, it may overlap anything, so it counts as nested.
    """
    if posixpath.isabs(a) != posixpath.isabs(b) or ".." in (a.split("/")[0], b.split("/")[0]):
        return True
    if a == b or a == "." or b == ".":
        return True
    return a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _failure_of(step: Callable[[], object] | None) -> Exception | None:
    """Run `step` (if any); what it raised, or None."""
    if step is None:
        return None
    try:
        step()
    except Exception as err:
        return err
    return None


def _let_finish(futures: list[Future[Session]], most: float = 10.0) -> None:
    """Wait (a bounded time) for cancelled connects to end, taking any further Ctrl-C here.

    Python joins worker threads at exit; a second Ctrl-C during that join is a traceback.
    Here it is simply the same request to stop, already being carried out.
    """
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        try:
            wait(futures, timeout=deadline - time.monotonic())
            return
        except KeyboardInterrupt:
            continue


def _close_opened(future: Future[Session]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()
