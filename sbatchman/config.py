"""Load remotes-config.toml into frozen dataclasses; every mistake becomes one ConfigError line.

Nothing downstream sees a raw dict: the loader checks every key's name and type here, so the rest
of the program can trust the objects. Locations are written the way users read their file
(`clusters[1].sync_dirs[0].alias`), and syntax errors as `file:line:col`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbatchman import configpaths as paths
from sbatchman import configschema as v
from sbatchman.configpaths import expand_user
from sbatchman.configschema import CONNECT_TIMEOUT, STALL_TIMEOUT, Checker
from sbatchman.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

CONFIG_ENV = "SBATCHMAN_CONFIG"
CONFIG_NAME = "remotes-config.toml"


@dataclass(frozen=True)
class SyncDir:
    """One folder pushed to one cluster; `where` is its place in the file, for messages."""

    alias: str
    local: Path
    remote: str
    excludes: tuple[str, ...]
    respect_gitignore: bool | None
    where: str
    keep_dirlinks: bool | None = None  # None: the cluster's setting (see precedence)
    delete: bool = False  # sync removes what it pushed and is gone locally (deletes.py)


@dataclass(frozen=True)
class FetchDir(SyncDir):
    """A folder brought back from a cluster: a SyncDir read the other way, so every layer that
    carries a target carries either; its gitignore and keep_dirlinks are never used.

    `local` has its `{cluster}` and `{alias}` filled in; `local_text` is what the file says
    (None: no `local`, so local_base/cluster/alias), for messages that suggest a fix."""

    local_text: str | None = None


@dataclass(frozen=True)
class Cluster:
    """A destination. No `host` means a local cluster: remote paths are paths on this machine."""

    name: str
    host: str | None
    port: int | None
    user: str | None
    key_path: Path | None
    transfer_backend: str | None
    excludes: tuple[str, ...]
    sync_excludes: tuple[str, ...]
    fetch_excludes: tuple[str, ...]
    respect_gitignore: bool | None
    ssh_config: Path | None
    sync_dirs: tuple[SyncDir, ...]
    fetch_dirs: tuple[FetchDir, ...]
    where: str
    keep_dirlinks: bool | None = None

    @property
    def is_local(self) -> bool:
        return self.host is None


@dataclass(frozen=True)
class Settings:
    """The `[global]` table, with the defaults a missing key means."""

    transfer_backend: str | None = None
    common_excludes: tuple[str, ...] = ()
    sync_excludes: tuple[str, ...] = ()
    fetch_excludes: tuple[str, ...] = ()
    local_base: Path | None = None
    respect_gitignore: bool = False
    ssh_config: Path | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    clusters: tuple[Cluster, ...]


def default_config_path() -> Path:
    """Where the config lives unless `--config` or SBATCHMAN_CONFIG say otherwise."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return expand_user(env, f"${CONFIG_ENV}")
    from platformdirs import user_config_dir

    return Path(user_config_dir("sbatchman")) / CONFIG_NAME


def load(path: Path | None = None) -> Config:
    """Read and validate the config; never writes a default (the user asks for that with init)."""
    path = path if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no config file at {path}; create one with `sbatchman config init`"
            f" (or point --config / ${CONFIG_ENV} at yours)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a config file") from None
    except UnicodeDecodeError as err:
        before = err.object[: err.start]
        line = before.count(b"\n") + 1
        column = err.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 (byte {err.object[err.start]:#04x});"
            " TOML files are UTF-8: re-save it as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    # Editors on Windows start UTF-8 files with a byte order mark; TOML has no place for it.
    text = text.removeprefix("\ufeff")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(_syntax_message(path, str(err), text)) from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(
            f"{path}: TOML nested too deeply (arrays or tables inside each other hundreds of"
            " levels deep); no setting takes that"
        ) from None
    except ValueError as err:  # tomllib's int() refuses numbers of more than 4300 digits
        found = re.search(r"[0-9][0-9_]{4299,}", text)
        if not found:
            raise ConfigError(f"{path}: TOML syntax error: {err}") from None
        start = found.start()
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: a number of more than 4300 digits, which no setting takes"
        ) from None
    return _Parser(path).config(raw)


def _syntax_message(path: Path, message: str, text: str) -> str:
    """tomllib puts the place in prose; editors want `file:line:col`."""
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line, col = found[1], found[2]
    else:
        found = re.search(r"\s*\(at end of document\)", message)
        if not found:
            return f"{path}: TOML syntax error: {message}"
        lines = text.split("\n")
        line, col = str(len(lines)), str(len(lines[-1]) + 1)
    reason = (message[: found.start()] + message[found.end() :]).strip()
    return f"{path}:{line}:{col}: TOML syntax error: {reason}"


class _Parser:
    """Walks the raw TOML once; each method checks one table and says where a problem is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}")

    def table(
        self, raw: Any, where: str, keys: Mapping[str, Checker], tables: Mapping[str, str]
    ) -> dict[str, Any]:
        """Check names and types of one table's keys; sub-tables named in `tables` pass through."""
        if not isinstance(raw, dict):
            raise self.fail(where, "must be a table")
        checked: dict[str, Any] = {}
        for key, value in raw.items():
            if key in tables:
                checked[key] = value
                continue
            place = f"{where}.{key}" if where else key
            checker = keys.get(key)
            if checker is None:
                raise self.fail(place, v.unknown_key(key, [*keys, *tables]))
            typed = checker(value)
            if typed is None:
                got = type(value).__name__
                raise self.fail(place, f"must be {v.EXPECTED[checker]}, not {got} {value!r}")
            checked[key] = typed
        return checked

    def config(self, raw: dict[str, Any]) -> Config:
        top = self.table(raw, "", {}, v.TABLES)
        settings = self.settings(top.get("global", {}))
        clusters_raw = top.get("clusters", [])
        if not isinstance(clusters_raw, list):
            raise self.fail(
                "clusters", "must be an array of tables: write each one as [[clusters]]"
            )
        clusters = tuple(
            self.cluster(c, f"clusters[{i}]", settings) for i, c in enumerate(clusters_raw)
        )
        seen: dict[str, str] = {}
        for cluster, raw_cluster in zip(clusters, clusters_raw, strict=True):
            named = "name" in raw_cluster
            place = f"{cluster.where}.{'name' if named else 'host'}"
            if cluster.name in seen:
                how = "names must be unique"
                if not named:
                    how = 'a cluster without a name is named after its host: add name = "..."'
                raise self.fail(
                    place,
                    f"duplicate cluster name {cluster.name!r} (also {seen[cluster.name]}); {how}",
                )
            seen[cluster.name] = place
        return Config(self.path, settings, clusters)

    def settings(self, raw: Any) -> Settings:
        g = self.table(raw, "global", v.GLOBAL_KEYS, {})
        base = g.pop("local_base", None)
        ssh_config = g.pop("ssh_config", None)
        return Settings(
            **g,
            local_base=self.local_path(base, None, "global.local_base") if base else None,
            ssh_config=expand_user(ssh_config, f"{self.path}: global.ssh_config")
            if ssh_config
            else None,
        )

    def expand(self, text: str | None, where: str) -> Path | None:
        return expand_user(text, f"{self.path}: {where}") if text else None

    def local_path(self, text: str, base: Path | None, where: str) -> Path:
        return paths.local_path(text, base, f"{self.path}: {where}")

    def remote_path(self, text: str, where: str) -> str:
        return paths.remote_path(text, f"{self.path}: {where}")

    def cluster(self, raw: Any, where: str, settings: Settings) -> Cluster:
        c = self.table(raw, where, v.CLUSTER_KEYS, v.CLUSTER_TABLES)
        for key, what in (("host", "host name"), ("user", "user name")):
            problem = v.ssh_name_problem(c[key], what) if key in c else None
            if problem:
                raise self.fail(f"{where}.{key}", problem)
        if "name" not in c and "host" not in c:
            raise self.fail(f"{where}.name", 'missing; every cluster needs a name = "..."')
        name: str = c["name"] if "name" in c else c["host"]
        if "dirs" in c and "fetch_dirs" in c:
            raise self.fail(
                f"{where}.dirs",
                "the old name of fetch_dirs, and this cluster has fetch_dirs too;"
                " move these into [[clusters.fetch_dirs]]",
            )
        fetch_key = "dirs" if "dirs" in c else "fetch_dirs"
        sync_dirs = self.dirs(c.get("sync_dirs", []), f"{where}.sync_dirs", settings, name)
        fetch_dirs = self.dirs(c.get(fetch_key, []), f"{where}.{fetch_key}", settings, name)
        key_path, ssh_config = c.get("key_path"), c.get("ssh_config")
        return Cluster(
            name=name,
            host=c.get("host"),
            port=c.get("port"),
            user=c.get("user"),
            key_path=self.expand(key_path, f"{where}.key_path"),
            transfer_backend=c.get("transfer_backend"),
            excludes=c.get("excludes", ()),
            sync_excludes=c.get("sync_excludes", ()),
            fetch_excludes=c.get("fetch_excludes", ()),
            respect_gitignore=c.get("respect_gitignore"),
            ssh_config=self.expand(ssh_config, f"{where}.ssh_config"),
            sync_dirs=tuple(d for d in sync_dirs if isinstance(d, SyncDir)),
            fetch_dirs=tuple(d for d in fetch_dirs if isinstance(d, FetchDir)),
            where=where,
            keep_dirlinks=c.get("keep_dirlinks"),
        )

    def dirs(
        self, raw: Any, where: str, settings: Settings, cluster: str
    ) -> list[SyncDir | FetchDir]:
        kind = where.rsplit(".", 1)[1]
        if not isinstance(raw, list):
            raise self.fail(
                where, f"must be an array of tables: write each one as [[clusters.{kind}]]"
            )
        fetch = kind != "sync_dirs"
        out: list[SyncDir | FetchDir] = []
        seen: dict[str, str] = {}  # alias -> the key that gave it
        for i, item in enumerate(raw):
            here = f"{where}[{i}]"
            d = self.table(item, here, v.DIR_KEYS if fetch else v.SYNC_DIR_KEYS, {})
            alias, place = d.get("alias"), f"{here}.alias"
            if alias is None:
                # The original sbatchman writes folders without alias when the field was left
                # empty: name them after their remote folder, as it does.
                alias, place = self.folder_name(d, here, fetch), f"{here}.remote"
            # Its fetch pairs may share a folder name (two app1 folders in two places).
            if not (fetch and place.endswith(".remote")):
                if alias in seen:
                    raise self.fail(place, self.clash(alias, place, seen[alias]))
                seen[alias] = place
            remote = self.remote_path(d.get("remote", alias), f"{here}.remote")
            excludes = d.get("excludes", ())
            if fetch:
                template = d.get("local")
                at = f"{self.path}: {here}" + (".local" if template is not None else "")
                values = {"cluster": cluster, "alias": alias}
                local = paths.fetch_local(template, settings.local_base, values, at)
                out.append(
                    FetchDir(alias, local, remote, excludes, None, here, local_text=template)
                )
                continue
            if "local" in d:
                local = self.local_path(d["local"], None, f"{here}.local")
            else:
                local = self.local_path(alias, settings.local_base, place)
            gitignore, dirlinks = d.get("respect_gitignore"), d.get("keep_dirlinks")
            delete = bool(d.get("delete", False))
            out.append(
                SyncDir(
                    alias, local, remote, excludes, gitignore, here,
                    keep_dirlinks=dirlinks, delete=delete,
                )
            )  # fmt: skip
        return out

    @staticmethod
    def clash(alias: str, place: str, other: str) -> str:
        if place.endswith(".alias") and other.endswith(".alias"):
            also = other.rsplit(".", 1)[0]
            return f"duplicate alias {alias!r} in this cluster (also {also}); rename one"
        return (
            f"duplicate alias {alias!r} in this cluster (also {other}; a folder without alias"
            ' is named after its remote); add alias = "..." to one'
        )

    def folder_name(self, d: dict[str, Any], here: str, fetch: bool) -> str:
        """The alias a folder without one gets: the last part of its remote path."""
        if "remote" not in d:
            if fetch:
                raise self.fail(f"{here}.remote", 'missing; give remote = "..." or an alias')
            raise self.fail(f"{here}.alias", 'missing; every folder needs an alias = "..."')
        name = d["remote"].rstrip("/").rsplit("/", 1)[-1]
        if name in ("", ".", "..", "~"):
            raise self.fail(
                f"{here}.alias",
                f"missing, and remote {d['remote']!r} ends in no folder name to call it;"
                ' add alias = "..."',
            )
        return str(name)
