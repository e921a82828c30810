"""Ask OpenSSH itself (`ssh -G`) what a host alias means, so paramiko connects where ssh would.

Re-implementing ssh_config (Include, Match exec, canonicalisation, first-match-wins, tokens)
would drift from the user's `ssh`; `ssh -G` prints the final answer after all of it. We pass the
same -F/-p/-l/-i the rsync backend's ssh gets, and lay its -o policy over the answer, so both
backends agree on host, port, user, keys and known_hosts: TOML values win over ssh config, which
wins over defaults.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from sbatchman.config import Cluster, Settings
from sbatchman.errors import ConfigError, ConnectError
from sbatchman.ssh.endpoint import Answer, Endpoint, SshOptions
from sbatchman.ssh.master import policy_argv, ssh_home

DEFAULT_AUTH_ORDER = ("publickey", "keyboard-interactive", "password")


@dataclass(frozen=True)
class Resolved:
    """Everything `ssh -G` decided for one destination (a cluster or one of its jump hosts)."""

    name: str  # what the user wrote: alias or host name, used in messages
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    identities_only: bool
    identity_agent: str | None  # None: $SSH_AUTH_SOCK; "none": no agent; else a socket path
    user_known_hosts: tuple[Path, ...]
    global_known_hosts: tuple[Path, ...]
    host_key_alias: str | None
    hash_known_hosts: bool
    proxy_jump: str | None
    proxy_command: str | None
    batch_mode: bool
    auth_order: tuple[str, ...]
    password_prompts: int
    server_alive_interval: int
    address_family: str
    config_args: tuple[str, ...]  # the -F option, handed on to jump hosts as OpenSSH does
    check_host_ip: bool = False  # OpenSSH's default since 8.5
    host_key_algorithms: tuple[str, ...] = ()  # what ssh would accept; () means no limit
    key_path: Path | None = None  # the cluster's own key_path, to name it when it is unusable
    key_where: str = ""  # where key_path is set: `clusters[0].key_path`

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host's key under: alias as is, else `[host]:port`."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def known_hosts_bare(self) -> str | None:
        """Where ssh also looks on another port ("checking without port identifier")."""
        return None if self.host_key_alias or self.port == 22 else self.hostname


def resolve_cluster(endpoint: Endpoint) -> Resolved:
    """The final connection settings for a cluster, exactly as its rsync `ssh` would use them."""
    args = [*endpoint.config_args, *endpoint.target_args]
    resolved = _resolve(endpoint.host, args, endpoint.config_args, endpoint.options)
    if endpoint.key_path is None:
        return resolved
    return replace(resolved, key_path=endpoint.key_path, key_where=endpoint.key_where)


def resolve_hop(
    spec: str, config_args: list[str], jump: str | None, options: SshOptions
) -> Resolved:
    """One jump host from a ProxyJump list (`[user@]host[:port]`), resolved through the config.

    OpenSSH reaches hop N with `ssh -J hop1..hopN-1 -W ... hopN`, passing -F but not the
    cluster's -i/-l/-p: the hop's own config entry decides, and an explicit jump list replaces
    the hop's own ProxyJump. `jump` is that list (None keeps the hop's own).
    """
    user, host, port = split_jump_spec(spec)
    args = [*config_args]
    if user:
        args += ["-l", user]
    if port:
        args += ["-p", port]
    if jump:
        args += ["-J", jump]
    return _resolve(host, args, config_args, options)


def split_jump_spec(spec: str) -> tuple[str | None, str, str | None]:
    """`user@host:port`, `host`, `[v6addr]:port`, or an ssh:// URI into its three parts."""
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://") :].rstrip("/")
    user, _, rest = spec.rpartition("@")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else None
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = port_text or None
    else:
        host, port = rest, None
    return (user or None), host, port


def split_jump_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _resolve(host: str, args: list[str], config_args: list[str], options: SshOptions) -> Resolved:
    values = _with_policy(_asked(host, args, options), options)

    def one(key: str, default: str = "") -> str:
        found = values.get(key)
        return found[0] if found else default

    def files(key: str) -> list[str]:
        """A file list as `ssh -G` prints it: space-joined and unquoted, so a path with a
        space in it comes out in pieces. ssh has expanded every path (absolute, or ~), so a
        piece that starts otherwise continues the path before it; `none` means no file."""
        paths: list[str] = []
        for value in values.get(key, []):
            if value.strip().lower() == "none":
                continue
            for piece in value.split(" "):
                if paths and not piece.startswith(("/", "~")):
                    paths[-1] += " " + piece
                elif piece:
                    paths.append(piece)
        return paths

    for unsupported in ("revokedhostkeys", "knownhostscommand"):
        setting = one(unsupported)
        if setting and setting.lower() != "none":
            raise ConnectError(
                f"{host}: your ssh config sets {unsupported} ({setting}), which the sftp backend"
                " cannot honour, so it will not connect rather than check less than ssh would;"
                " use the rsync backend (-b rsync) for this cluster"
            )

    hostname = one("hostname", host)
    port = int(one("port", "22"))
    user = one("user") or _login_name()
    tokens = _Tokens(original=host, hostname=hostname, port=port, user=user)
    identity_files = tuple(tokens.path(v) for v in values.get("identityfile", []))
    agent = one("identityagent") or None
    if agent is not None and agent.lower() not in ("none", "ssh_auth_sock"):
        agent = str(tokens.path(agent)) if not agent.startswith("$") else os.environ.get(agent[1:])
    elif agent is not None and agent.lower() == "ssh_auth_sock":
        agent = None
    jump = one("proxyjump") or None
    command = one("proxycommand") or None
    order = one("preferredauthentications")
    methods = tuple(m for m in order.split(",") if m) if order else DEFAULT_AUTH_ORDER
    methods = tuple(
        m
        for m in methods
        if _enabled(values, m) and m in ("publickey", "keyboard-interactive", "password")
    )
    return Resolved(
        name=host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identity_files,
        identities_only=_yes(one("identitiesonly")),
        identity_agent=agent,
        user_known_hosts=tuple(tokens.path(p) for p in files("userknownhostsfile")),
        global_known_hosts=tuple(tokens.path(p) for p in files("globalknownhostsfile")),
        host_key_alias=one("hostkeyalias") or None,
        hash_known_hosts=_yes(one("hashknownhosts")),
        proxy_jump=None if jump is None or jump.lower() == "none" else jump,
        proxy_command=None if command is None or command.lower() == "none" else command,
        batch_mode=_yes(one("batchmode")),
        auth_order=methods,
        password_prompts=max(1, int(one("numberofpasswordprompts", "3") or 3)),
        server_alive_interval=int(one("serveraliveinterval", "0") or 0),
        address_family=one("addressfamily", "any"),
        config_args=tuple(config_args),
        check_host_ip=_yes(one("checkhostip")),
        host_key_algorithms=tuple(a for a in one("hostkeyalgorithms").split(",") if a),
    )


def _asked(host: str, args: list[str], options: SshOptions) -> Answer:
    """`ssh -G`, asked once per sync for each question (see endpoint.Answers)."""
    if options.answers is None:
        return _ssh_g(host, args, options)
    return options.answers.get((*args, "--", host), lambda: _ssh_g(host, args, options))


def _with_policy(values: Answer, options: SshOptions) -> Answer:
    """The answer as if the run's -o options had been passed: they win over any config line,
    as ssh keeps the first value. Applied here, not asked, so one answer serves every policy
    (the quiet parallel try and the retry with prompts differ only in BatchMode)."""
    values = dict(values)
    policy = policy_argv(options)
    for option in policy[1::2]:
        key, _, value = option.partition("=")
        values[key.lower()] = [value]
    return values


def _enabled(values: dict[str, list[str]], method: str) -> bool:
    key = {
        "publickey": "pubkeyauthentication",
        "keyboard-interactive": "kbdinteractiveauthentication",
        "password": "passwordauthentication",
    }.get(method)
    found = values.get(key or "")
    return not found or _yes(found[0])


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "true")


def _ssh_g(host: str, args: list[str], options: SshOptions) -> Answer:
    """Run `ssh -G` and collect its `key value` lines (keys repeat, e.g. identityfile)."""
    argv = ["ssh", "-G", *args, "--", host]
    try:
        run = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=options.connect_timeout + 30,  # Match exec may run a user command
            check=False,
        )
    except FileNotFoundError:
        raise ConnectError(
            "the `ssh` program (OpenSSH 6.8 or later) is needed to read your ssh config;"
            " install the OpenSSH client"
        ) from None
    except subprocess.TimeoutExpired:
        raise ConnectError(
            f"`ssh -G {host}` did not finish; check Match exec in your ssh config"
        ) from None
    if run.returncode != 0:
        lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {run.returncode}"
        raise ConnectError(f"ssh config for {host!r}: {why}")
    values: Answer = {}
    for line in run.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value.strip())
    return values


def _login_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        import getpass

        return getpass.getuser()


@dataclass(frozen=True)
class _Tokens:
    """OpenSSH's %-tokens for paths `ssh -G` prints unexpanded (IdentityFile, IdentityAgent).

    `~` and `%d` are the password database's home, as in ssh (see ssh.ssh_home), not $HOME.
    """

    original: str
    hostname: str
    port: int
    user: str

    def path(self, text: str) -> Path:
        expanded = self.expand(text)
        if expanded == "~" or expanded.startswith("~/"):
            return Path(ssh_home() + expanded[1:])
        return Path(os.path.expanduser(expanded))  # ~user/... is the same in both

    def expand(self, text: str) -> str:
        local = socket.gethostname()
        conn = f"{local}{self.hostname}{self.port}{self.user}"
        table = {
            "%": "%",
            "d": ssh_home(),
            "h": self.hostname,
            "n": self.original,
            "p": str(self.port),
            "r": self.user,
            "u": _login_name(),
            "l": local,
            "L": local.split(".")[0],
            "i": str(os.getuid()),
            "C": hashlib.sha1(conn.encode()).hexdigest(),
            "k": self.hostname,
        }
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i] == "%" and i + 1 < len(text) and text[i + 1] in table:
                out.append(table[text[i + 1]])
                i += 2
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


def require_user(
    cluster: Cluster,
    settings: Settings,
    config_path: Path | None = None,
    options: SshOptions | None = None,
) -> None:
    """Refuse a remote cluster whose login name nobody chose (not TOML, not the ssh config).

    Falling back to the local login name silently is rarely right on a cluster, and the failure
    it causes ("Permission denied") does not say why. We compare `ssh -G` with the user's ssh
    config and with none (-F /dev/null): if the config changes nothing, it has no User line.
    With the run's `options`, the first answer is the one connecting to the cluster reuses.
    """
    if cluster.is_local or cluster.user is not None:
        return
    endpoint = Endpoint.of(cluster, settings, options or SshOptions(batch=True))
    options = endpoint.options
    where = str(config_path) if config_path is not None else "config"
    ssh_config = cluster.ssh_config or settings.ssh_config or "~/.ssh/config"
    try:
        with_config = _asked(endpoint.host, [*endpoint.config_args, *endpoint.target_args], options)
    except ConnectError as err:  # an ssh config ssh cannot read is the config's mistake
        place = (
            f"{cluster.where}.ssh_config"
            if cluster.ssh_config
            else "global.ssh_config"
            if settings.ssh_config
            else f"{cluster.where}.host"
        )
        raise ConfigError(
            f'{where}: {place}: {err}; fix {ssh_config}, or give user = "..." for this cluster'
        ) from None
    without = _ssh_g(endpoint.host, ["-F", os.devnull], options)
    if with_config.get("user") != without.get("user"):
        return
    if _config_names_user(cluster, settings):
        return
    raise ConfigError(
        f"{where}: {cluster.where}.user: missing, and {ssh_config} has no User for host"
        f' {cluster.host!r}; add user = "..." or a User line'
    )


def _config_names_user(cluster: Cluster, settings: Settings) -> bool:
    """Whether the config says `User <your own login name>`: -G cannot tell that from none."""
    import paramiko

    path = cluster.ssh_config or settings.ssh_config or Path(ssh_home(), ".ssh", "config")
    try:
        parsed = paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.ConfigParseError):
        return False
    try:
        return "user" in parsed.lookup(cluster.host or "")
    except Exception:  # paramiko's Match support is partial; unknown means "not shown"
        return False
