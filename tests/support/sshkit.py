"""Small tools for the ssh connection tests: encrypted keys, edited config stanzas, a pty driver.

Plain module (no pytest import) like `sshd.py`; nothing here changes the test bed's behaviour.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sbatchman.config import Cluster
from tests.support.sshd import SshServer, ssh_config_block

REPO = Path(__file__).resolve().parents[2]


def generate_encrypted_key(path: Path, passphrase: str, comment: str = "encrypted") -> Path:
    """An ed25519 key pair at `path` (+ `.pub`) whose private half needs `passphrase`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    path.chmod(0o600)
    return path


def config_block(
    server: SshServer,
    *,
    name: str | None = None,
    known_hosts: Path | None = None,
    **overrides: str | None,
) -> str:
    """`ssh_config_block(server)` with some keywords replaced (None drops one) or added.

    Keywords are given in ssh_config spelling (`BatchMode="no"`, `User=None`); `name` renames
    the `Host` line, so one server can appear under several aliases.
    """
    lines = ssh_config_block(server, known_hosts=known_hosts).splitlines()
    header, body = lines[0], lines[1:]
    settings: dict[str, str | None] = {}
    for line in body:
        key, _, value = line.strip().partition(" ")
        settings[key] = value
    for key, value in overrides.items():
        settings[key] = value
    out = [f"Host {name}" if name else header]
    out += [f"    {key} {value}" for key, value in settings.items() if value is not None]
    return "\n".join(out) + "\n"


def jump_config(
    folder: Path, bastion: SshServer, target: SshServer, *, name: str | None = None
) -> Path:
    """An ssh_config (and known_hosts) in `folder` reaching `target` through `bastion` by
    ProxyJump; `name` is the target's Host alias (default: the server's own name)."""
    known = folder / "known_hosts"
    known.write_text(bastion.known_hosts.read_text() + target.known_hosts.read_text())
    ssh_config = folder / "ssh_config"
    ssh_config.write_text(
        config_block(bastion, known_hosts=known)
        + config_block(target, known_hosts=known, name=name, ProxyJump=bastion.name)
    )
    return ssh_config


def host_key_line(server: SshServer, name: str | None = None) -> str:
    """The server's known_hosts line, optionally filed under another name."""
    text = server.known_hosts.read_text().strip()
    host, rest = text.split(None, 1)
    return f"{name or host} {rest}\n"


@dataclass
class PtyRun:
    """What a program run under a pseudo-terminal printed, and which prompts it got."""

    output: str
    returncode: int
    prompts: list[str] = field(default_factory=list)


def run_in_pty(
    code: str,
    answers: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> PtyRun:
    """Run `python -c code` with a pty as its controlling terminal and answer its prompts.

    `answers` maps a regex (matched against output since the last answer) to the line to
    type. The child is a session leader whose controlling terminal is the pty, so its
    /dev/tty is ours: exactly how a person at a terminal would see the prompts.
    """
    patterns = [(re.compile(p), a) for p, a in answers.items()]
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO), child_env.get("PYTHONPATH", "")])
    pid, fd = pty.fork()
    if pid == 0:  # child: exec at once, never return into pytest
        try:
            os.execve(sys.executable, [sys.executable, "-c", code], child_env)
        finally:
            os._exit(127)
    output = ""
    pending = ""
    prompts: list[str] = []
    deadline = time.monotonic() + timeout
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 4096).decode("utf-8", "replace")
                except OSError:  # EIO: the child closed the terminal
                    chunk = ""
                if not chunk:
                    break
                output += chunk
                pending += chunk
                for pattern, answer in patterns:
                    found = pattern.search(pending)
                    if found:
                        prompts.append(found[0])
                        pending = pending[found.end() :]
                        os.write(fd, answer.encode() + b"\n")
                        break
            else:
                done, polled = os.waitpid(pid, os.WNOHANG)
                if done:  # (0, 0) while it runs: that 0 is no exit status
                    status = polled
                    break
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        if status is None:
            _, status = os.waitpid(pid, 0)
        output += _drain(fd)
        os.close(fd)
    return PtyRun(output, os.waitstatus_to_exitcode(status), prompts)


def _drain(fd: int) -> str:
    """Output the child wrote just before exiting, still buffered in the pty."""
    text = ""
    while select.select([fd], [], [], 0.05)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        text += chunk.decode("utf-8", "replace")
    return text


def python_lines(lines: Sequence[str]) -> str:
    """Join lines of a child script (keeps test bodies readable)."""
    return "\n".join(lines) + "\n"


def make_cluster(name: str, host: str | None, **fields: object) -> Cluster:
    """A Cluster as the config loader would build it, without writing a TOML file."""
    values: dict[str, object] = {
        "name": name,
        "host": host,
        "port": None,
        "user": None,
        "key_path": None,
        "transfer_backend": None,
        "excludes": (),
        "sync_excludes": (),
        "fetch_excludes": (),
        "respect_gitignore": None,
        "ssh_config": None,
        "sync_dirs": (),
        "fetch_dirs": (),
        "where": "clusters[0]",
    }
    values.update(fields)
    return Cluster(**values)  # type: ignore[arg-type]


def logging_ssh(bin_dir: Path) -> Path:
    """An `ssh` in `bin_dir` that logs each `ssh -G` (its argv, one line) and runs the real one.

    Put `bin_dir` first on PATH; the returned log then says how often sbatchman asked OpenSSH
    what a host means, and with what.
    """
    real = shutil.which("ssh")
    assert real is not None, "the OpenSSH client is needed"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "ssh-G.log"
    log.touch()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        f'  if [ "$a" = -G ]; then printf "%s\\n" "$*" >> {shlex.quote(str(log))}; break; fi\n'
        "done\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return log
