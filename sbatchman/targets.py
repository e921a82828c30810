"""Turn the config and the command line into targets, refusing before anything connects.

Everything that can be wrong without a network (unknown names, missing folders, a local copy
nested in its own source, bad patterns, no user name to log in as) is exit 2 here, so a typo
never costs a 2FA prompt. `sync` and `ls` share it, so they agree on what is selected.
"""

from __future__ import annotations

from pathlib import Path

from sbatchman.config import Cluster, Config, SyncDir
from sbatchman.errors import ConfigError, UsageError
from sbatchman.model import Request, Target
from sbatchman.precedence import backend_for, gitignore_for, merge_excludes
from sbatchman.selection.walk import Rule, check_patterns
from sbatchman.ssh.resolve import require_user


def resolve_targets(config: Config, request: Request, *, connecting: bool = True) -> list[Target]:
    """Everything that can be wrong before a connection is opened fails here, as exit 2.

    `connecting=False` (ls) skips what only a connection needs: a user name to log in as.
    """
    if request.backend is not None and request.backend not in ("rsync", "sftp"):
        raise UsageError(f"unknown backend {request.backend!r}; choose rsync or sftp")
    clusters = _clusters(config, request)
    aliases = sorted({d.alias for c in clusters for d in c.sync_dirs})
    for alias in request.aliases:
        if alias not in aliases:
            raise UsageError(f"-a {alias}: no such alias; known: {', '.join(aliases) or '(none)'}")
    check_patterns([Rule(p, "-e") for p in request.excludes])
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
    if request.backend is not None and request.backend not in ("rsync", "sftp"):
        raise UsageError(f"unknown backend {request.backend!r}; choose rsync or sftp")
    clusters = _clusters(config, request)
    aliases = sorted({d.alias for c in clusters for d in c.fetch_dirs})
    for alias in request.aliases:
        if alias not in aliases:
            raise UsageError(f"-a {alias}: no such alias; known: {', '.join(aliases) or '(none)'}")
    check_patterns([Rule(p, "-e") for p in request.excludes])
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
    _refuse_shared_folders(targets, config)
    return targets


def _clusters(config: Config, request: Request) -> list[Cluster]:
    known = [c.name for c in config.clusters]
    for name in request.clusters:
        if name not in known:
            raise UsageError(f"-c {name}: no such cluster; known: {', '.join(known) or '(none)'}")
    return [c for c in config.clusters if not request.clusters or c.name in request.clusters]


def _refuse_shared_folders(targets: list[Target], config: Config) -> None:
    """Two fetches into one local folder (or one inside the other) would overwrite each
    other's results without a word: the original sbatchman did exactly that."""
    seen: list[tuple[Path, Target]] = []
    for target in targets:
        here = target.sync_dir.local.absolute()
        for there, other in seen:
            if here == there or here.is_relative_to(there) or there.is_relative_to(here):
                how = "the same local folder" if here == there else "nested local folders"
                raise ConfigError(
                    f"{config.path}: {target.sync_dir.where}.local and"
                    f" {other.sync_dir.where}.local: {how} ({here}, {there}); results of one"
                    " would overwrite the other's. Give each its own folder, for example"
                    ' local = "~/results/{cluster}/{alias}"'
                )
        seen.append((here, target))


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
