"""The commented starter config that `sbatchman config init` writes, with a working local cluster.

The data is written by tomli-w (so it is valid TOML by construction); the comments around it
explain each key, and a commented-out ssh cluster shows the shape of a real one.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w

from sbatchman.errors import ConfigError

DEFAULT_COMMON_EXCLUDES = [".git", "__pycache__", "*.pyc", ".venv", ".mypy_cache", ".pytest_cache"]
DEFAULT_SYNC_EXCLUDES = ["results/", "wandb/", "*.ckpt"]

HEADER = """\
# sbatchman remotes-config.toml: the clusters `sbatchman sync` pushes to.
# Every key is described in docs/config.md. Excludes use rsync's --exclude patterns and are merged
# in this order: global.common_excludes, global.sync_excludes, cluster excludes, cluster
# sync_excludes, sync_dir excludes, then -e flags from the command line.

"""

EXAMPLE = """
# A real cluster reached over ssh. `host` may be an alias from ~/.ssh/config; user, port and
# key_path, when given here, win over the ssh config.
#
# [[clusters]]
# name = "cluster-a"
# host = "login.cluster-a.example.org"
# user = "me"
# port = 22
# key_path = "~/.ssh/id_ed25519"
# transfer_backend = "rsync"       # or "sftp" where the cluster has no rsync
# excludes = ["data/"]
#
# [[clusters.sync_dirs]]
# alias = "myproject"
# local = "~/code/myproject"      # relative paths are from the folder you run sbatchman in
# remote = "~/myproject"            # relative paths are under your login directory
# excludes = ["checkpoints/"]
"""


def starter_text(project: Path, demo_root: Path) -> str:
    """A config whose `demo` cluster has no host: it pushes `project` into a folder here."""
    data = {
        "global": {
            "transfer_backend": "rsync",
            "common_excludes": DEFAULT_COMMON_EXCLUDES,
            "sync_excludes": DEFAULT_SYNC_EXCLUDES,
        },
        "clusters": [
            {
                "name": "demo",
                "sync_dirs": [
                    {
                        "alias": "project",
                        "local": str(project),
                        "remote": str(demo_root / "project"),
                    }
                ],
            }
        ],
    }
    body = tomli_w.dumps(data)
    note = (
        "# The `demo` cluster has no host: it is a local cluster, and its remote paths are\n"
        "# folders on this machine. Try `sbatchman sync`, then look in the remote folder.\n"
    )
    return HEADER + body.replace("[[clusters]]", note + "[[clusters]]", 1) + EXAMPLE


def write_starter(path: Path, project: Path) -> Path:
    """Create the config; refuses to touch an existing file (a user's config is theirs)."""
    from platformdirs import user_data_dir

    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting it (edit it, or move it away)")
    demo_root = Path(user_data_dir("sbatchman")) / "demo-cluster"
    demo, here = demo_root.resolve(), project.resolve()
    if demo.is_relative_to(here) or here.is_relative_to(demo):
        raise ConfigError(
            f"{project} and the demo cluster's folder {demo_root} overlap, so the demo would"
            " copy itself; run `sbatchman config init` from a project folder instead"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as f:
            f.write(starter_text(project, demo_root))
    except OSError as err:
        raise ConfigError(
            f"cannot create {path}: {err.strerror or err}; choose another --config path"
        ) from None
    return path
