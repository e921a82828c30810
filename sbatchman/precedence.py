"""Which setting wins when several places give one: excludes, backend, timeouts, batch mode.

Kept apart from config.py (which only turns TOML into checked objects) because these rules are
the part users reason about ("why was this excluded?", "why sftp?"), and each is one function
with its order spelled out.
"""

from __future__ import annotations

from collections.abc import Sequence

from sbatchman.config import Cluster, FetchDir, Settings, SyncDir
from sbatchman.selection.rules import Rule


def merge_excludes(
    settings: Settings, cluster: Cluster, sync_dir: SyncDir, cli: Sequence[str] = ()
) -> tuple[Rule, ...]:
    """The six exclude layers in their fixed order; a repeated pattern keeps its first source.

    A fetch_dir takes the fetch layers in place of the sync ones: sync_excludes never apply to
    a fetch, fetch_excludes never to a push. Keeping the first source matters for
    `ls --explain`: it names the broadest layer that already excludes the path, which is where
    a user would go to change it.
    """
    fetch = isinstance(sync_dir, FetchDir)
    kind = "fetch_excludes" if fetch else "sync_excludes"
    layers: list[tuple[str, Sequence[str]]] = [
        ("global.common_excludes", settings.common_excludes),
        (f"global.{kind}", settings.fetch_excludes if fetch else settings.sync_excludes),
        (f"{cluster.where}.excludes", cluster.excludes),
        (f"{cluster.where}.{kind}", cluster.fetch_excludes if fetch else cluster.sync_excludes),
        (f"{sync_dir.where}.excludes", sync_dir.excludes),
        ("-e", cli),
    ]
    seen: set[str] = set()
    rules: list[Rule] = []
    for source, patterns in layers:
        for pattern in patterns:
            if pattern not in seen:
                seen.add(pattern)
                rules.append(Rule(pattern, source))
    return tuple(rules)


def backend_for(settings: Settings, cluster: Cluster, flag: str | None) -> str:
    """`-b` beats the cluster's setting, which beats the global one; rsync when nobody says."""
    return flag or cluster.transfer_backend or settings.transfer_backend or "rsync"


def gitignore_for(
    settings: Settings, cluster: Cluster, sync_dir: SyncDir, flag: bool | None
) -> bool:
    """The most specific place that says something wins: flag, sync_dir, cluster, global."""
    for choice in (flag, sync_dir.respect_gitignore, cluster.respect_gitignore):
        if choice is not None:
            return choice
    return settings.respect_gitignore


def keep_dirlinks_for(cluster: Cluster, sync_dir: SyncDir) -> bool:
    """rsync -K: the sync_dir's setting beats the cluster's; off when neither says."""
    for choice in (sync_dir.keep_dirlinks, cluster.keep_dirlinks):
        if choice is not None:
            return choice
    return False


def batch_for(flag: bool, interactive: bool) -> bool:
    """Never prompt when --batch says so, or when no one is at a terminal to answer."""
    return flag or not interactive


def timeout_for(flag: float | None, setting: float) -> float:
    """A timeout flag beats the config's `[global]` value (which holds the default)."""
    return flag if flag is not None else setting
