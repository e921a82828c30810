"""Throw-away OpenSSH servers on 127.0.0.1 for integration tests and bench scripts.

Each `start_sshd()` call runs a real `/usr/sbin/sshd -D` child with its own fresh host key,
config, pid file, authorized_keys, log and "remote root" directory, all inside `workdir`.
Nothing here touches the system sshd, `/etc/ssh` or the user's `~/.ssh`: the generated
`ssh_config` pins the identity, known_hosts and strict host key checking, so `ssh -F <file>`
is fully determined by files this module wrote.

This is a plain module (no pytest import) so bench scripts can reuse it; the pytest
glue lives in `tests/conftest.py`.

Why the details below matter:

* The port is chosen by binding port 0 and closing it, which races with other processes;
  sshd reports "Address already in use" in its log and exits, and we retry with a new port.
* "Ready" means the log says sshd listens on *our* port and the port returns an SSH banner.
  A banner alone could come from a foreign server that grabbed the port in the race.
* sshd forks one process per connection (and calls setsid() in it), and the user's
  commands run below those. Terminating only the listener would leave them running, so
  `stop()` kills the whole tree, leaves first, while each parent is alive to reap its
  children (some container/VM init processes reap orphans late or never). A marker
  variable in sshd's environment and in every session's (SetEnv) finds orphans too.
* As root, sshd insists on its privilege separation directory (/run/sshd on Debian);
  we create it when missing. As a non-root user sshd runs unprivileged and can only
  authenticate that same user, which is what `SshServer.user` is.
* Sessions run the login user's shell in the user's real home on this machine. bash
  would source ~/.bashrc even for `ssh host cmd`; `SetEnv SHLVL=1` stops that (see
  `_sshd_options`). Use absolute remote paths below `SshServer.root`, or
  `home_in_root=True` when relative remote paths must be exercised.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import getpass
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Protocol

SSHD_PATH = os.environ.get("SBATCHMAN_TEST_SSHD", "/usr/sbin/sshd")
"""Where sshd lives; overridable for hosts that install it elsewhere (e.g. Homebrew)."""

REQUIRED_TOOLS = ("ssh", "ssh-keygen", "rsync")
"""Client-side programs the integration tests call besides sshd itself."""

START_TIMEOUT_S = 10.0
"""How long one sshd may take to come up before `start_sshd` gives up with its log tail."""

_PORT_ATTEMPTS = 8
_MARKER_VAR = "SBATCHMAN_TESTBED_SSHD"


class SshdStartError(RuntimeError):
    """sshd did not come up; the message carries the command line and the log tail."""


@dataclass
class SshServer:
    """One running sshd plus everything a client needs to reach it deterministically."""

    name: str
    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    ssh_config: Path
    root: Path
    log: Path
    host_key_fingerprint: str
    workdir: Path = field(repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    _token: str = field(default="", repr=False, compare=False)
    _parent: SshServer | None = field(default=None, repr=False, compare=False)

    @property
    def pid(self) -> int | None:
        """The listener's pid, or None once stopped."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the listener process is alive (a crashed sshd shows up here)."""
        if self._parent is not None:
            return self._parent.is_running()
        return self._proc is not None and self._proc.poll() is None

    def session_pids(self) -> set[int]:
        """Live processes this server spawned (per-connection sshd, remote commands).

        Lets tests assert that a client really has a session open, or that none is left.
        """
        if self._proc is None:
            return set()
        table = _process_table()
        marked = {p for p in _marked_pids(self._token) if p in table}
        found = (_descendants(table, [self._proc.pid, *marked]) | marked) - {self._proc.pid}
        return {pid for pid in found if not table[pid].zombie}

    def ssh_argv(self) -> list[str]:
        """`ssh` argv prefix reaching this server, for tests that inspect remote state."""
        return ["ssh", "-F", str(self.ssh_config), self.name]

    def rsync_rsh(self) -> str:
        """Value for `rsync -e` so rsync's ssh uses this server's config (destination `name:`)."""
        return f"ssh -F {_shell_quote(str(self.ssh_config))}"

    def log_text(self) -> str:
        """The sshd log so far (DEBUG1), e.g. to assert that a connection happened."""
        return _read(self.log)

    def via_port(self, port: int, *, name: str | None = None) -> SshServer:
        """A view of this server reached through another local port (e.g. a DelayProxy).

        Same key, user and root; its own ssh_config and known_hosts list the host key
        under `[127.0.0.1]:<port>`, which is what both ssh and paramiko look up for that
        port, so strict host key checking still passes. The view owns no process: its
        `stop()` does nothing and `is_running()` reports the real server.
        """
        view_name = name or f"{self.name}-via-{port}"
        files = self.workdir / f"via-{port}"
        files.mkdir(exist_ok=True)
        key_part = self.known_hosts.read_text().split(None, 1)[1]
        known_hosts = files / "known_hosts"
        known_hosts.write_text(f"[{self.host}]:{port} {key_part}")
        view = replace(
            self,
            name=view_name,
            port=port,
            known_hosts=known_hosts,
            ssh_config=files / "ssh_config",
            _proc=None,
            _parent=self,
        )
        view.ssh_config.write_text(ssh_config_block(view))
        return view

    def stop(self) -> None:
        """Stop the listener and every process it spawned; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _kill_tree(proc, self._token)

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SshdFactory(Protocol):
    """Type of the `sshd_factory` pytest fixture: `start_sshd` minus the workdir."""

    def __call__(
        self,
        name: str,
        *,
        extra_config: dict[str, str] | None = None,
        client_key: Path | None = None,
        password_auth: bool = False,
        home_in_root: bool = False,
    ) -> SshServer: ...


def missing_tools() -> list[str]:
    """Names of programs the ssh integration tests need but this host lacks."""
    missing = [] if os.access(SSHD_PATH, os.X_OK) else [SSHD_PATH]
    missing += [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    return missing


def current_user() -> str:
    """The login name of the effective uid: the only user a non-root sshd can authenticate.

    `getpass.getuser()` trusts $USER/$LOGNAME, which can disagree with the real uid
    (sudo, containers), and sshd compares against the uid, so ask the password database.
    """
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # uid without a passwd entry: sshd cannot log it in either
        return getpass.getuser()


def generate_key(path: Path, comment: str = "sbatchman-test") -> Path:
    """Create an unencrypted ed25519 key pair at `path` (+ `.pub`) with ssh-keygen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path.chmod(0o600)
    return path


def fingerprint(pub_key_line: str) -> str:
    """`SHA256:...` of an OpenSSH public key line, byte-identical to `ssh-keygen -lf`."""
    blob = base64.b64decode(pub_key_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (callers must tolerate losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_sshd(
    workdir: Path,
    name: str,
    *,
    extra_config: dict[str, str] | None = None,
    client_key: Path | None = None,
    password_auth: bool = False,
    home_in_root: bool = False,
) -> SshServer:
    """Start a private sshd named `name` whose files all live in `workdir`.

    `client_key` (a private key with `.pub` beside it) is authorized; without one a key is
    generated in `workdir`. Sharing one key between servers saves a keygen per server.
    `extra_config` entries override the defaults by keyword (case-insensitive), which
    is how tests set e.g. `MaxSessions` or `LoginGraceTime`.

    Sessions start in the login user's real home directory (it is the same machine), so
    relative remote paths would land in e.g. /root. `home_in_root=True` makes every
    session (commands, rsync, SFTP) start in `root` with HOME=`root` instead, via a
    ForceCommand wrapper; SFTP then needs the external sftp-server binary, which is why
    this is opt-in.
    """
    if not os.access(SSHD_PATH, os.X_OK):
        raise SshdStartError(f"{SSHD_PATH} is not installed or not executable")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _ensure_privsep_dir()

    if client_key is None:
        client_key = generate_key(workdir / "client_ed25519", comment=f"client@{name}")
    client_key = Path(client_key).resolve()
    client_pub = client_key.with_name(client_key.name + ".pub").read_text().strip()

    host_key = generate_key(workdir / "ssh_host_ed25519_key", comment=f"host@{name}")
    host_pub = host_key.with_name(host_key.name + ".pub").read_text().strip()
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text(client_pub + "\n")
    authorized_keys.chmod(0o600)
    root = workdir / "root"
    root.mkdir(exist_ok=True)

    user = current_user()
    host = "127.0.0.1"
    config_path = workdir / "sshd_config"
    log = workdir / "sshd.log"
    token = f"{os.getpid()}-{uuid.uuid4().hex}"

    forced: dict[str, str] = {}
    if home_in_root:
        forced = _home_in_root_options(workdir, root)

    failures: list[str] = []
    for _attempt in range(_PORT_ATTEMPTS):
        port = free_port(host)
        options = _sshd_options(
            host=host,
            port=port,
            host_key=host_key,
            pid_file=workdir / "sshd.pid",
            authorized_keys=authorized_keys,
            password_auth=password_auth,
        )
        _apply_overrides(options, forced)
        _apply_overrides(options, extra_config or {})
        _add_session_marker(options, token)
        config_path.write_text("".join(f"{key} {value}\n" for key, value in options.items()))
        log.unlink(missing_ok=True)
        proc = _spawn(config_path, log, token)
        outcome = _wait_ready(proc, host, port, log)
        if outcome == "ready":
            break
        _kill_tree(proc, token)
        if outcome == "port-taken":
            failures.append(f"port {port} taken")
            continue
        if outcome.startswith("privsep:") and os.geteuid() == 0:
            _ensure_privsep_dir(outcome.removeprefix("privsep:"))  # a non-Debian path
            failures.append(outcome)
            continue
        raise SshdStartError(
            f"sshd {name!r} did not start on {host}:{port} ({outcome}).\n"
            f"command: {' '.join(_sshd_argv(config_path, log))}\n"
            f"--- {log} (tail) ---\n{_tail(log)}"
        )
    else:
        raise SshdStartError(
            f"sshd {name!r} gave up after {_PORT_ATTEMPTS} attempts: {failures}\n"
            f"--- {log} (tail) ---\n{_tail(log)}"
        )

    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[{host}]:{port} {' '.join(host_pub.split()[:2])}\n")
    server = SshServer(
        name=name,
        host=host,
        port=port,
        user=user,
        client_key=client_key,
        known_hosts=known_hosts,
        ssh_config=workdir / "ssh_config",
        root=root,
        log=log,
        host_key_fingerprint=fingerprint(host_pub),
        workdir=workdir,
        _proc=proc,
        _token=token,
    )
    server.ssh_config.write_text(ssh_config_block(server))
    return server


def ssh_config_block(server: SshServer, *, known_hosts: Path | None = None) -> str:
    """The `Host <name>` stanza that makes `ssh -F file <name>` reach `server` and only it.

    Besides the connection facts it shuts every door to ambient user state: no agent,
    no default identities, no ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts, no
    prompts, no connection sharing, and no host key rotation writing into our file.
    """
    lines = {
        "HostName": server.host,
        "Port": str(server.port),
        "User": server.user,
        "IdentityFile": _cfg_quote(server.client_key),
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "UserKnownHostsFile": _cfg_quote(known_hosts or server.known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "CheckHostIP": "no",
        "UpdateHostKeys": "no",
        "BatchMode": "yes",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "ControlMaster": "no",
        "ControlPath": "none",
        "ConnectTimeout": "10",
        "LogLevel": "ERROR",
    }
    body = "".join(f"    {key} {value}\n" for key, value in lines.items())
    return f"Host {server.name}\n{body}"


def write_ssh_config(servers: Iterable[SshServer], path: Path) -> Path:
    """One ssh_config (and known_hosts beside it) covering several servers, by name.

    Tools that take a single `-F` file (or a single known_hosts) for many clusters at
    once use this; each server's own files stay valid too.
    """
    servers = list(servers)
    path.parent.mkdir(parents=True, exist_ok=True)
    known_hosts = write_known_hosts(servers, path.with_name(path.name + ".known_hosts"))
    path.write_text("\n".join(ssh_config_block(s, known_hosts=known_hosts) for s in servers))
    return path


def write_known_hosts(servers: Iterable[SshServer], path: Path) -> Path:
    """Concatenate the servers' known_hosts lines into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(s.known_hosts.read_text() for s in servers))
    return path


# --- internals ---------------------------------------------------------------------------


def _sshd_options(
    *,
    host: str,
    port: int,
    host_key: Path,
    pid_file: Path,
    authorized_keys: Path,
    password_auth: bool,
) -> dict[str, str]:
    """Default sshd_config, as an ordered keyword → value mapping (sshd takes first wins)."""
    options = {
        "ListenAddress": host,
        "Port": str(port),
        "AddressFamily": "inet",
        "HostKey": _cfg_quote(host_key),
        "PidFile": _cfg_quote(pid_file),
        "AuthorizedKeysFile": _cfg_quote(authorized_keys),
        "UsePAM": "no",
        "StrictModes": "no",
        "PubkeyAuthentication": "yes",
        "PasswordAuthentication": "yes" if password_auth else "no",
        "PermitEmptyPasswords": "no",
        "KbdInteractiveAuthentication": "no",
        "PermitRootLogin": "yes" if password_auth else "prohibit-password",
        "Subsystem": "sftp internal-sftp",
        "LogLevel": "DEBUG1",
        "MaxStartups": "100",
        "MaxSessions": "64",
        "UseDNS": "no",
        "PrintMotd": "no",
        "PrintLastLog": "no",
        # bash run by sshd sources ~/.bashrc even for `bash -c cmd` (and prints or runs
        # whatever is there: slow, can break rsync/sftp, and can write to the real home).
        # It only does so in a top-level shell: SHLVL=1 makes it a nested one. Override
        # with {"SetEnv": "SHLVL=0"} to get the real-cluster behaviour back.
        "SetEnv": "SHLVL=1",
        # Leave out the post-quantum sntrup761 KEX (ssh's first choice since 9.0): it costs
        # ~0.1 s of CPU per connection on slow CI machines, and no test is about KEX.
        "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org,"
        "ecdh-sha2-nistp256,diffie-hellman-group14-sha256",
    }
    if _sshd_version() >= (9, 8):
        # Newer sshd penalises sources that disconnect before auth (our readiness probe)
        # or fail auth (negative tests); on 127.0.0.1 that would refuse later tests.
        options["PerSourcePenalties"] = "no"
    return options


_SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/libexec/sftp-server",  # macOS, Alpine
    "/usr/lib/ssh/sftp-server",  # Arch
    "/usr/lib/misc/sftp-server",  # Gentoo
)


def _home_in_root_options(workdir: Path, root: Path) -> dict[str, str]:
    """ForceCommand wrapper that runs each session in `root` with HOME=`root`.

    A forced command also replaces subsystem requests (running the subsystem's command
    line as SSH_ORIGINAL_COMMAND), and `internal-sftp` is not a program, so SFTP must
    be the external sftp-server here; it serves relative paths from its cwd, i.e. `root`.
    """
    sftp_server = next((p for p in _SFTP_SERVER_CANDIDATES if os.access(p, os.X_OK)), None)
    if sftp_server is None:
        raise SshdStartError(
            f"home_in_root needs an sftp-server binary; none of {_SFTP_SERVER_CANDIDATES}"
        )
    wrapper = workdir / "session-in-root.sh"
    quoted_root = _shell_quote(str(root))
    wrapper.write_text(
        "#!/bin/sh\n"
        "# ForceCommand: start every session in the server's root, with HOME there too.\n"
        f"cd {quoted_root} || exit 1\n"
        f"HOME={quoted_root}; export HOME\n"
        'if [ -z "${SSH_ORIGINAL_COMMAND:-}" ]; then exec "${SHELL:-/bin/sh}" -l; fi\n'
        'exec "${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    wrapper.chmod(0o755)
    return {
        "ForceCommand": _cfg_quote(wrapper),
        "Subsystem": f"sftp {sftp_server}",
    }


def _apply_overrides(options: dict[str, str], extra: Mapping[str, str]) -> None:
    """Replace defaults keyword-by-keyword (sshd keywords are case-insensitive)."""
    by_lower = {key.lower(): key for key in options}
    for key, value in extra.items():
        existing = by_lower.get(key.lower())
        if existing is not None:
            del options[existing]
        options[key] = str(value)
        by_lower[key.lower()] = key


def _add_session_marker(options: dict[str, str], token: str) -> None:
    """Tag remote commands' environment too, so `stop()` finds them even once orphaned."""
    key = next((k for k in options if k.lower() == "setenv"), "SetEnv")
    options[key] = f"{options.get(key, '')} {_MARKER_VAR}={token}".strip()


@functools.lru_cache(maxsize=1)
def _sshd_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, parsed from `sshd -V` (or its usage text)."""
    try:
        out = subprocess.run(
            [SSHD_PATH, "-V"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _ensure_privsep_dir(path: str = "/run/sshd") -> None:
    """As root, sshd refuses to start without its (root-owned, 0755) privsep directory.

    Debian/Ubuntu use /run/sshd, which systemd normally creates and which is missing in
    containers and CI images where sshd was installed but never started as a service.
    """
    if os.path.isdir(path) or not os.path.isdir(os.path.dirname(path)):
        return
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)


def _sshd_argv(config: Path, log: Path) -> list[str]:
    return [SSHD_PATH, "-D", "-e", "-f", str(config), "-E", str(log)]


def _spawn(config: Path, log: Path, token: str) -> subprocess.Popen[bytes]:
    """Run sshd in the foreground as our child with a minimal, marked environment.

    The marker variable survives sshd's per-connection re-exec, which lets `stop()`
    find connection processes even if they were orphaned.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C",
        _MARKER_VAR: token,
    }
    with open(log, "ab") as early_stderr:  # errors printed before -E takes effect
        return subprocess.Popen(
            _sshd_argv(config, log),
            stdin=subprocess.DEVNULL,
            stdout=early_stderr,
            stderr=early_stderr,
            env=env,
            close_fds=True,
        )


def _wait_ready(proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> str:
    """Block until sshd serves its banner on `port`; returns "ready", "port-taken" or why not."""
    listening = f"Server listening on {host} port {port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    delay = 0.002
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = _read(log)
            if "Address already in use" in text or "Cannot bind any address" in text:
                return "port-taken"
            missing = re.search(r"Missing privilege separation directory: (\S+)", text)
            if missing:
                return f"privsep:{missing[1]}"
            return f"sshd exited with status {proc.returncode}"
        if listening in _read(log) and _has_banner(host, port):
            return "ready"
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return f"not ready after {START_TIMEOUT_S:.0f}s"


def _has_banner(host: str, port: int) -> bool:
    """Connect and read the server's identification line ("SSH-2.0-...")."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            data = b""
            while b"\n" not in data and len(data) < 1024:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"SSH-2.0-")
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(_read(path).splitlines()[-lines:]) or "(empty)"


def _cfg_quote(path: Path | str) -> str:
    """Quote a path for ssh(d)_config, which splits unquoted values on whitespace."""
    text = str(path)
    return f'"{text}"' if any(ch.isspace() for ch in text) else text


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


# --- process tree teardown ---------------------------------------------------------------


class _Proc(NamedTuple):
    ppid: int
    start: str  # start time: tells a recycled pid from the process we saw
    zombie: bool


def _process_table() -> dict[int, _Proc]:
    """pid → (ppid, start time, zombie?) for every visible process, zombies included."""
    table: dict[int, _Proc] = {}
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            table[int(entry)] = _Proc(int(fields[1]), fields[19], fields[0] == "Z")
        return table
    out = subprocess.run(
        ["ps", "-A", "-o", "pid=,ppid=,stat=,lstart="], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            table[int(parts[0])] = _Proc(int(parts[1]), parts[3], parts[2].startswith("Z"))
    return table


def _marked_pids(token: str) -> set[int]:
    """Processes whose environment carries this server's marker (Linux only)."""
    needle = f"{_MARKER_VAR}={token}".encode()
    found: set[int] = set()
    if not os.path.isdir("/proc/self"):
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.add(int(entry))
    return found


def _descendants(table: Mapping[int, _Proc], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _depth_groups(table: Mapping[int, _Proc], victims: set[int]) -> Iterator[list[int]]:
    """Victims grouped by depth within the victim forest, deepest first."""
    depth: dict[int, int] = {}
    for pid in victims:
        d, cur = 0, pid
        while cur in victims and d <= len(victims):
            cur = table[cur].ppid
            d += 1
        depth[pid] = d
    for level in sorted(set(depth.values()), reverse=True):
        yield [pid for pid, d in depth.items() if d == level]


def _same(pid: int, now: Mapping[int, _Proc], snapshot: Mapping[int, _Proc]) -> bool:
    return pid in now and now[pid].start == snapshot[pid].start


def _signal_same(pids: Iterable[int], snapshot: Mapping[int, _Proc], sig: int) -> None:
    """Signal pids that are still the live processes we saw (same start time)."""
    now = _process_table()
    for pid in pids:
        if _same(pid, now, snapshot) and not now[pid].zombie:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(
    pids: Iterable[int], snapshot: Mapping[int, _Proc], timeout: float, zombie_grace: float = 0.2
) -> list[int]:
    """Wait until the pids are reaped, not merely dead; return the live ones left.

    A zombie whose parent we kill next would be inherited by PID 1, which in some
    containers never reaps it, so dead children get `zombie_grace` to be reaped by their
    (still running) parent. Parents that do not reap that fast are not worth waiting for.
    """
    pids = list(pids)
    deadline = time.monotonic() + timeout
    all_dead_since: float | None = None
    while True:
        now = _process_table()
        left = [p for p in pids if _same(p, now, snapshot)]
        live = [p for p in left if not now[p].zombie]
        clock = time.monotonic()
        if live:
            all_dead_since = None
        elif all_dead_since is None:
            all_dead_since = clock
        if (
            not left
            or clock >= deadline
            or (all_dead_since is not None and clock - all_dead_since >= zombie_grace)
        ):
            return live
        time.sleep(0.005)


def _kill_tree(proc: subprocess.Popen[bytes], token: str) -> None:
    """Kill sshd's connection processes (leaves first, so parents reap them), then sshd."""
    if proc.poll() is None:
        table = _process_table()
        victims = _descendants(table, [proc.pid])
        marked = _marked_pids(token) - {proc.pid}
        victims |= {p for p in marked if p in table} | _descendants(table, marked)
        victims.discard(os.getpid())
        victims.discard(proc.pid)
        for group in _depth_groups(table, victims):
            _signal_same(group, table, signal.SIGTERM)
            survivors = _wait_gone(group, table, timeout=1.0)
            _signal_same(survivors, table, signal.SIGKILL)
            _wait_gone(survivors, table, timeout=1.0)
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    # Anything the listener forked while we were busy is now orphaned but still marked.
    leftovers = _marked_pids(token)
    if leftovers:
        table = _process_table()
        late = {p for p in leftovers if p in table} | _descendants(table, leftovers)
        _signal_same(late, table, signal.SIGKILL)
