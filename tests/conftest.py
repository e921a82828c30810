"""Shared pytest fixtures: hermetic environment for every test, real sshd servers for some.

Isolation (autouse `isolated_env`, applies to every test)
---------------------------------------------------------
* `SBATCHMAN_CONFIG` points at a not-yet-existing file in a per-test temp dir, so no
  test can read or clobber the developer's real sbatchman config.
* `HOME` and the `XDG_*_HOME` variables point at a per-test temp home. This is safe for
  OpenSSH: `ssh` finds "~" through the password database (getpwuid), never `$HOME`, and
  with `-F <file>` it reads neither ~/.ssh/config nor /etc/ssh/ssh_config; the generated
  config also names its own known_hosts (UserKnownHostsFile, GlobalKnownHostsFile
  /dev/null) and identity (IdentitiesOnly, IdentityAgent none). Verified with strace: as
  root, `ssh -F cfg alpha true` opens nothing under /root. What moving `HOME` *does*
  change is Python-side: `os.path.expanduser`, `Path.home()`, paramiko's
  `load_system_host_keys()` / `look_for_keys` (~/.ssh/id_*), and platformdirs now see the
  empty temp home, which is exactly the isolation we want for code under test.
* `PYTHONUSERBASE` is pinned to the real user base, so subprocesses started by tests
  still find packages installed with `pip install --user` despite the new HOME.
* `SSH_AUTH_SOCK` / `SSH_AGENT_PID` are removed so neither ssh nor paramiko can pick up
  keys from the developer's agent and make an auth test pass for the wrong reason.
* sshd itself is started with its own minimal environment and does not care about any
  of this. The remote side of a session is the login user's real account on this
  machine: cwd and HOME are the real home (e.g. /root), so a *relative* remote path
  would land there. Tests use absolute paths below `SshServer.root`, or a server from
  `sshd_factory(name, home_in_root=True)` when relative paths are the point. The
  servers set `SHLVL=1` for sessions so bash does not source the real ~/.bashrc.

SSH integration tests
---------------------
* Fixtures: `client_key` (session), `sshd_factory` (function), `three_clusters`
  (session: alpha, beta, gamma), `cluster_roots` (function), `clusters_ssh_config`
  (session). Tests using any of them get the `ssh` marker automatically.
* Remote paths: never write directly into `server.root` of the shared `three_clusters`
  servers; request `cluster_roots` and use `cluster_roots[server.name]`, a fresh empty
  directory unique to the test. Servers from `sshd_factory` are private to the test,
  so their `server.root` can be used as is.
* Do not `stop()` the shared `three_clusters` servers; use `sshd_factory` for tests that
  need to stop or misconfigure a server.
* If sshd, ssh, ssh-keygen or rsync is missing, `ssh`-marked tests are skipped, except
  when `CI` is set (to anything but "", 0, false, no, off): then they fail, so CI can
  never go green by silently skipping the integration tests. `SBATCHMAN_TEST_SSHD`
  overrides the sshd path (default /usr/sbin/sshd).
"""

from __future__ import annotations

import functools
import os
import re
import site
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import IsolatedEnv
from tests.support.sshd import (
    SshdFactory,
    SshServer,
    generate_key,
    missing_tools,
    start_sshd,
    write_ssh_config,
)

CLUSTER_NAMES = ("alpha", "beta", "gamma")
SSH_FIXTURES = frozenset(
    {"client_key", "sshd_factory", "three_clusters", "cluster_roots", "clusters_ssh_config"}
)
_REAL_USER_BASE = site.getuserbase()  # computed before any test moves HOME


def in_ci() -> bool:
    """True when the CI variable says so; CI must fail rather than skip ssh tests."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def _missing() -> tuple[str, ...]:
    return tuple(missing_tools())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses an sshd fixture as `ssh`, so `-m "not ssh"` works."""
    for item in items:
        if SSH_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ssh)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (locally) or fail (CI) `ssh` tests before any sshd fixture tries to start."""
    if item.get_closest_marker("ssh") is None:
        return
    missing = _missing()
    if not missing:
        return
    reason = f"ssh integration test needs missing tool(s): {', '.join(missing)}"
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> IsolatedEnv:
    """Keep every test away from the real config, home and ssh agent (see module doc)."""
    base = tmp_path_factory.mktemp("env")
    home = base / "home"
    home.mkdir()
    config = base / "sbatchman.toml"
    monkeypatch.setenv("SBATCHMAN_CONFIG", str(config))
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    if "PYTHONUSERBASE" not in os.environ:
        monkeypatch.setenv("PYTHONUSERBASE", _REAL_USER_BASE)
    for var in ("SSH_AUTH_SOCK", "SSH_AGENT_PID"):
        monkeypatch.delenv(var, raising=False)
    return IsolatedEnv(home=home, config=config)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unencrypted ed25519 client key (`.pub` beside it) authorized on every server."""
    return generate_key(tmp_path_factory.mktemp("client-key") / "id_ed25519")


@pytest.fixture
def sshd_factory(
    tmp_path_factory: pytest.TempPathFactory, client_key: Path
) -> Iterator[SshdFactory]:
    """Start private servers for one test; all are stopped (with their children) after it.

    `client_key=None` means the shared session key; pass another key (see
    `tests.support.sshd.generate_key`) to test authentication failures.
    """
    started: list[SshServer] = []
    shared_key = client_key

    def start(
        name: str,
        *,
        extra_config: dict[str, str] | None = None,
        client_key: Path | None = None,
        password_auth: bool = False,
        home_in_root: bool = False,
    ) -> SshServer:
        server = start_sshd(
            tmp_path_factory.mktemp(f"sshd-{name}"),
            name,
            extra_config=extra_config,
            client_key=client_key or shared_key,
            password_auth=password_auth,
            home_in_root=home_in_root,
        )
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def three_clusters(
    tmp_path_factory: pytest.TempPathFactory, client_key: Path
) -> Iterator[list[SshServer]]:
    """Servers "alpha", "beta", "gamma", up for the whole session (cheap per test).

    Shared state: write only below `cluster_roots[name]`, and never stop them.
    """
    servers: list[SshServer] = []
    try:
        for name in CLUSTER_NAMES:
            workdir = tmp_path_factory.mktemp(f"cluster-{name}")
            servers.append(start_sshd(workdir, name, client_key=client_key))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def clusters_ssh_config(
    three_clusters: list[SshServer], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One ssh_config with `Host alpha`, `Host beta`, `Host gamma` (known_hosts beside it)."""
    return write_ssh_config(three_clusters, tmp_path_factory.mktemp("clusters") / "ssh_config")


@pytest.fixture
def cluster_roots(
    three_clusters: list[SshServer], request: pytest.FixtureRequest
) -> dict[str, Path]:
    """Per test, a fresh empty directory on each shared cluster: name → absolute path.

    The same relative name is used on all three servers (handy in assertions); it
    carries the test name so leftovers are easy to trace when debugging.
    """
    dead = [s.name for s in three_clusters if not s.is_running()]
    if dead:
        pytest.fail(f"shared sshd server(s) {dead} died (did a test stop them?)", pytrace=False)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    subdir = f"{slug}-{uuid.uuid4().hex[:8]}"
    roots: dict[str, Path] = {}
    for server in three_clusters:
        path = server.root / subdir
        path.mkdir()
        roots[server.name] = path
    return roots
