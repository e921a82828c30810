"""Turn the config and the command line into targets, refusing before anything connects.

Everything that can be wrong without a network (unknown names, missing folders, a local copy
nested in its own source, bad patterns, no user name to log in as) is exit 2 here, so a typo
never costs a 2FA prompt. `sync` and `ls` share it, so they agree on what is selected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sbatchman.config import Cluster, Config, FetchDir, SyncDir
from sbatchman.errors import ConfigError, UsageError
from sbatchman.model import Request, Target
from sbatchman.precedence import backend_for, gitignore_for, merge_excludes
from sbatchman.selection.walk import Rule, check_patterns
from sbatchman.ssh.resolve import require_user


def resolve_targets(config: Config, request: Request, *, connecting: bool = True) -> list[Target]:
    """Everything that can be wrong before a connection is opened fails here, as exit 2.

    `connecting=False` (ls) skips what only a connection needs: a user name to log in as.
    """
    clusters = _clusters(config, request, lambda c: c.sync_dirs)
    targets: list[Target] = []
    for cluster in clusters:
        if (
            connecting
            and not cluster.is_local
            and any(_chosen(d, request) for d in cluster.sync_dirs)
        ):
            require_user(cluster, config.settings, config.path, request.ssh)
        for sync_dir in cluster.sync_dirs:
            if not _chosen(sync_dir, request):
                continue
            if not sync_dir.local.is_dir():
                state = "is not a folder" if sync_dir.local.exists() else "does not exist"
                raise ConfigError(
                    f"{config.path}: {sync_dir.where}.local: {sync_dir.local} {state};"
                    " fix the path or create the folder"
                )
            if cluster.is_local:
                _refuse_nesting(sync_dir, config)
            rules = merge_excludes(config.settings, cluster, sync_dir, request.excludes)
            check_patterns(rules)
            targets.append(
                Target(
                    cluster,
                    sync_dir,
                    backend_for(config.settings, cluster, request.backend),
                    rules,
                    gitignore_for(config.settings, cluster, sync_dir, request.gitignore),
                )
            )
    if not targets:
        raise UsageError(f"nothing to sync: no cluster in {config.path} has a sync_dir selected")
    return targets


def resolve_fetch_targets(
    config: Config, request: Request, *, connecting: bool = True
) -> list[Target]:
    """The fetch_dirs chosen by -c/-a, refused (exit 2) on what can be wrong before connecting:
    unknown names, bad patterns, and two targets writing into one local folder."""
    clusters = _clusters(config, request, lambda c: c.fetch_dirs)
    targets: list[Target] = []
    for cluster in clusters:
        chosen = [d for d in cluster.fetch_dirs if _chosen(d, request)]
        if connecting and chosen and not cluster.is_local:
            require_user(cluster, config.settings, config.path, request.ssh)
        for fetch_dir in chosen:
            if cluster.is_local:
                _refuse_nesting(fetch_dir, config)
            rules = merge_excludes(config.settings, cluster, fetch_dir, request.excludes)
            check_patterns(rules)
            backend = backend_for(config.settings, cluster, request.backend)
            targets.append(Target(cluster, fetch_dir, backend, rules, False))
    if not targets:
        raise UsageError(f"nothing to fetch: no cluster in {config.path} has a fetch_dir selected")
    _refuse_shared_folders(config)
    return targets


def _clusters(
    config: Config, request: Request, folders: Callable[[Cluster], Sequence[SyncDir]]
) -> list[Cluster]:
    """The clusters -c chooses, once the flags sync and fetch share are checked: -b, -c,
    -a (against `folders`: sync_dirs or fetch_dirs) and -e."""
    if request.backend is not None and request.backend not in ("rsync", "sftp"):
        raise UsageError(f"unknown backend {request.backend!r}; choose rsync or sftp")
    known = [c.name for c in config.clusters]
    for name in request.clusters:
        if name not in known:
            raise UsageError(f"-c {name}: no such cluster; known: {', '.join(known) or '(none)'}")
    clusters = [c for c in config.clusters if not request.clusters or c.name in request.clusters]
    aliases = sorted({d.alias for c in clusters for d in folders(c)})
    for alias in request.aliases:
        if alias not in aliases:
            raise UsageError(f"-a {alias}: no such alias; known: {', '.join(aliases) or '(none)'}")
    check_patterns([Rule(p, "-e") for p in request.excludes])
    return clusters


def _refuse_shared_folders(config: Config) -> None:
    """Two fetches into one local folder (or one inside the other) would overwrite each
    other's results without a word: the original sbatchman did exactly that.

    Every fetch_dir of the config is checked, not only those -c/-a chose: `fetch -c a` then
    `fetch -c b` into one folder mixes two clusters' results just the same.
    """
    seen: list[tuple[Path, Cluster, FetchDir]] = []
    for cluster in config.clusters:
        for fetch_dir in cluster.fetch_dirs:
            here = Path(os.path.realpath(fetch_dir.local))  # never raises, even on a loop
            for there, other_cluster, other in seen:
                if here == there or here.is_relative_to(there) or there.is_relative_to(here):
                    one, two = (
                        f"{cluster.name}/{fetch_dir.alias}",
                        f"{other_cluster.name}/{other.alias}",
                    )
                    who = (
                        f"two fetches of {one}" if one == two else f"the fetches of {one} and {two}"
                    )
                    outer = fetch_dir if there.is_relative_to(here) else other
                    raise ConfigError(
                        f"{config.path}: {_shared(here, there, fetch_dir, other)}: {who} would"
                        f" overwrite each other's results;"
                        f" {_unshare(cluster, fetch_dir, other_cluster, other, outer)}"
                    )
            seen.append((here, cluster, fetch_dir))


def _shared(here: Path, there: Path, one: FetchDir, other: FetchDir) -> str:
    """Both places, as the file has them (a fetch_dir without local says where it lands)."""

    def place(fetch_dir: FetchDir) -> str:
        if fetch_dir.local_text is not None:
            return f"{fetch_dir.where}.local"
        return f"{fetch_dir.where} (no local: local_base/{{cluster}}/{{alias}})"

    if here == there:
        return f"{place(one)} and {place(other)} are the same folder ({here})"
    if here.is_relative_to(there):
        return f"{place(one)} ({here}) is inside {place(other)} ({there})"
    return f"{place(one)} ({here}) holds {place(other)} ({there})"


def _unshare(
    cluster: Cluster, one: FetchDir, other_cluster: Cluster, other: FetchDir, outer: FetchDir
) -> str:
    """The fix: name the cluster (or, within one cluster, the alias) in the folder; shown on
    the outer folder's own text, the one that must change when they nest."""
    if cluster.name == other_cluster.name and one.alias == other.alias:
        return (
            'give one of them its own alias = "..." (a fetch_dir without alias is named'
            " after its remote folder) or its own local"
        )
    word = "{cluster}" if cluster.name != other_cluster.name else "{alias}"
    written = next((d.local_text for d in (outer, one, other) if d.local_text is not None), None)
    if written is None or word in written:
        return f"give each its own folder, with {word} in its local"
    example = f'local = "{written.rstrip("/")}/{word}"'
    return f"put {word} in each local, for example {example} in {outer.where}"


def _refuse_nesting(sync_dir: SyncDir, config: Config) -> None:
    """A local cluster whose folder holds its own copy would copy itself deeper every run
    (a fetch_dir: its local folder inside the folder it fetches, or the other way round)."""
    from sbatchman.backends.local import destination

    source = sync_dir.local.resolve()
    dest = destination(sync_dir.remote).resolve()
    if dest == source or dest.is_relative_to(source) or source.is_relative_to(dest):
        raise ConfigError(
            f"{config.path}: {sync_dir.where}.remote: {dest} overlaps the local folder {source};"
            " a copy inside its own source would grow on every sync. Choose a remote folder"
            " outside it"
        )


def _chosen(sync_dir: SyncDir, request: Request) -> bool:
    return not request.aliases or sync_dir.alias in request.aliases
