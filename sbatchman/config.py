"""Load remotes-config.toml into frozen dataclasses; every mistake becomes one ConfigError line.

Nothing downstream sees a raw dict: the loader checks every key's name and type here, so the rest
of the program can trust the objects. Locations are written the way users read their file
(`clusters[1].sync_dirs[0].alias`), and syntax errors as `file:line:col`.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbatchman.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

BACKENDS = ("rsync", "sftp")
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


@dataclass(frozen=True)
class FetchDir:
    """A folder to bring back from a cluster; parsed and validated now, used by a later command."""

    alias: str
    local: Path
    remote: str
    excludes: tuple[str, ...]
    where: str


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
    connect_timeout: float = 15.0
    stall_timeout: float = 120.0


@dataclass(frozen=True)
class Config:
    path: Path
    settings: Settings
    clusters: tuple[Cluster, ...]


def default_config_path() -> Path:
    """Where the config lives unless `--config` or SBATCHMAN_CONFIG say otherwise."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
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
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(_syntax_message(path, str(err), text)) from None
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


# A key's checker turns its raw value into the typed one or returns None when the type is wrong.
Checker = Callable[[Any], Any]


def _string(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _nonempty_string(value: Any) -> Any:
    return value if isinstance(value, str) and value.strip() else None


def _string_list(value: Any) -> Any:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else None


def _bool(value: Any) -> Any:
    return value if isinstance(value, bool) else None


def _port(value: Any) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return value if ok else None


def _positive(value: Any) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


def _backend(value: Any) -> Any:
    return value if value in BACKENDS else None


_EXPECTED: dict[Checker, str] = {
    _string: "a string",
    _nonempty_string: "a non-empty string",
    _string_list: "a list of strings",
    _bool: "true or false",
    _port: "a port number (1-65535)",
    _positive: "a positive number of seconds",
    _backend: "one of " + ", ".join(f'"{b}"' for b in BACKENDS),
}

_GLOBAL_KEYS: dict[str, Checker] = {
    "transfer_backend": _backend,
    "common_excludes": _string_list,
    "sync_excludes": _string_list,
    "fetch_excludes": _string_list,
    "local_base": _nonempty_string,
    "respect_gitignore": _bool,
    "ssh_config": _nonempty_string,
    "connect_timeout": _positive,
    "stall_timeout": _positive,
}
_CLUSTER_KEYS: dict[str, Checker] = {
    "name": _nonempty_string,
    "host": _nonempty_string,
    "port": _port,
    "user": _nonempty_string,
    "key_path": _nonempty_string,
    "transfer_backend": _backend,
    "excludes": _string_list,
    "sync_excludes": _string_list,
    "fetch_excludes": _string_list,
    "respect_gitignore": _bool,
    "ssh_config": _nonempty_string,
    "keep_dirlinks": _bool,
}
_DIR_KEYS: dict[str, Checker] = {
    "alias": _nonempty_string,
    "local": _nonempty_string,
    "remote": _string,
    "excludes": _string_list,
}
_SYNC_DIR_KEYS = {**_DIR_KEYS, "respect_gitignore": _bool, "keep_dirlinks": _bool}
_TABLES = {"global": "[global]", "clusters": "[[clusters]]"}
_CLUSTER_TABLES = {"sync_dirs": "[[clusters.sync_dirs]]", "fetch_dirs": "[[clusters.fetch_dirs]]"}


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
                raise self.fail(place, _unknown(key, [*keys, *tables]))
            typed = checker(value)
            if typed is None:
                got = type(value).__name__
                raise self.fail(place, f"must be {_EXPECTED[checker]}, not {got} {value!r}")
            checked[key] = typed
        return checked

    def config(self, raw: dict[str, Any]) -> Config:
        top = self.table(raw, "", {}, _TABLES)
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
        for cluster in clusters:
            if cluster.name in seen:
                raise self.fail(
                    f"{cluster.where}.name",
                    f"duplicate cluster name {cluster.name!r} (also {seen[cluster.name]}.name);"
                    " names must be unique",
                )
            seen[cluster.name] = cluster.where
        return Config(self.path, settings, clusters)

    def settings(self, raw: Any) -> Settings:
        g = self.table(raw, "global", _GLOBAL_KEYS, {})
        base = g.pop("local_base", None)
        ssh_config = g.pop("ssh_config", None)
        return Settings(
            **g,
            local_base=self.local_path(base) if base else None,
            ssh_config=Path(ssh_config).expanduser() if ssh_config else None,
        )

    def local_path(self, text: str, base: Path | None = None) -> Path:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return path

    def remote_path(self, text: str, where: str) -> str:
        """Relative means under the login directory, as with ssh and rsync; `~/x` says the same.

        The path is kept literal (no shell ever sees it), so `~user` cannot be expanded: we ask
        for the absolute path instead of guessing.
        """
        if text in ("", "~", "~/"):
            return "."
        if text.startswith("~/"):
            return text[2:].lstrip("/") or "."
        if text.startswith("~"):
            raise self.fail(where, f"{text!r}: ~user paths are not expanded; write the full path")
        return text

    def cluster(self, raw: Any, where: str, settings: Settings) -> Cluster:
        c = self.table(raw, where, _CLUSTER_KEYS, _CLUSTER_TABLES)
        if "name" not in c:
            raise self.fail(f"{where}.name", 'missing; every cluster needs a name = "..."')
        sync_dirs = self.dirs(c.get("sync_dirs", []), f"{where}.sync_dirs", settings)
        fetch_dirs = self.dirs(c.get("fetch_dirs", []), f"{where}.fetch_dirs", settings)
        key_path, ssh_config = c.get("key_path"), c.get("ssh_config")
        return Cluster(
            name=c["name"],
            host=c.get("host"),
            port=c.get("port"),
            user=c.get("user"),
            key_path=Path(key_path).expanduser() if key_path else None,
            transfer_backend=c.get("transfer_backend"),
            excludes=c.get("excludes", ()),
            sync_excludes=c.get("sync_excludes", ()),
            fetch_excludes=c.get("fetch_excludes", ()),
            respect_gitignore=c.get("respect_gitignore"),
            ssh_config=Path(ssh_config).expanduser() if ssh_config else None,
            sync_dirs=tuple(d for d in sync_dirs if isinstance(d, SyncDir)),
            fetch_dirs=tuple(d for d in fetch_dirs if isinstance(d, FetchDir)),
            where=where,
            keep_dirlinks=c.get("keep_dirlinks"),
        )

    def dirs(self, raw: Any, where: str, settings: Settings) -> list[SyncDir | FetchDir]:
        kind = where.rsplit(".", 1)[1]
        if not isinstance(raw, list):
            raise self.fail(
                where, f"must be an array of tables: write each one as [[clusters.{kind}]]"
            )
        fetch = kind == "fetch_dirs"
        out: list[SyncDir | FetchDir] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(raw):
            here = f"{where}[{i}]"
            d = self.table(item, here, _DIR_KEYS if fetch else _SYNC_DIR_KEYS, {})
            alias = d.get("alias")
            if alias is None:
                if not fetch:
                    raise self.fail(f"{here}.alias", 'missing; every folder needs an alias = "..."')
                # The original sbatchman's fetch_dirs have no alias: name one after the folder.
                if "remote" not in d:
                    raise self.fail(f"{here}.remote", 'missing; give remote = "..." or an alias')
                alias = d["remote"].rstrip("/").rsplit("/", 1)[-1] or d["remote"]
            elif alias in seen:
                raise self.fail(
                    f"{here}.alias",
                    f"duplicate alias {alias!r} in this cluster (also {seen[alias]}); rename one",
                )
            else:
                seen[alias] = here
            local = self.local_path(d.get("local", alias), settings.local_base)
            remote = self.remote_path(d.get("remote", alias), f"{here}.remote")
            excludes = d.get("excludes", ())
            if fetch:
                out.append(FetchDir(alias, local, remote, excludes, here))
            else:
                out.append(
                    SyncDir(
                        alias,
                        local,
                        remote,
                        excludes,
                        d.get("respect_gitignore"),
                        here,
                        keep_dirlinks=d.get("keep_dirlinks"),
                    )
                )
        return out


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(sorted(known))
    return f"unknown key {key!r}; {hint}"
