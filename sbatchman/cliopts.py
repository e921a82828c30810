"""The command-line options several commands share, each named and explained once.

sync, fetch and ls take the same words for the same things (`-c`, `-a`, `-e`, `-b`, the
timeouts); one definition keeps their spelling, help and checks from drifting apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _seconds(value: float | None) -> float | None:
    """The config's rule for seconds, so a flag and its config key accept the same values."""
    from sbatchman.configschema import SECONDS_RULE, valid_seconds

    if value is not None and not valid_seconds(value):
        raise typer.BadParameter(f"must be {SECONDS_RULE}, not {value}")
    return value


ConfigOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime on 3.10 too
    typer.Option(
        "--config",
        help="Config file (default: $SBATCHMAN_CONFIG, else the platform config folder's"
        " remotes-config.toml).",
        show_default=False,
    ),
]
# --clusters / --aliases: the original sbatchman's spellings, which users' scripts still pass.
ClusterOpt = Annotated[
    list[str],
    typer.Option("-c", "--cluster", "--clusters", help="Only this cluster (repeatable)."),
]
AliasOpt = Annotated[
    list[str], typer.Option("-a", "--alias", "--aliases", help="Only this alias (repeatable).")
]
ExcludeOpt = Annotated[
    list[str], typer.Option("-e", "--exclude", help="One more rsync-style exclude (repeatable).")
]
GitignoreOpt = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option("--gitignore/--no-gitignore", help="Honour .gitignore files (this run only)."),
]

DryRunOpt = Annotated[
    bool, typer.Option("-n", "--dry-run", help="List what would be sent; write nothing.")
]
BackendOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("-b", "--backend", help="rsync or sftp (default: from the config, else rsync)."),
]
# model.JOBS, spelled out because typer needs it when this module loads and importing model
# here would double the start-up time of --help; test_cli checks that the two agree.
JobsOpt = Annotated[int, typer.Option("-j", "--jobs", min=1, help="Clusters served at once.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON report on stdout.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print only failures.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Print every file sent.")]
BatchOpt = Annotated[
    bool, typer.Option("--batch", help="Never prompt; fail a cluster that would need to ask.")
]
AcceptOpt = Annotated[
    bool,
    typer.Option("--accept-new-host-keys", help="Store unknown host keys (never changed ones)."),
]
ConnectOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--connect-timeout", callback=_seconds, help="Seconds to wait for a connection."),
]
WatchOpt = Annotated[
    bool,
    typer.Option(
        "-w", "--watch", help="After the sync, push every change until Ctrl-C (see docs/cli.md)."
    ),
]
StallOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--stall-timeout",
        callback=_seconds,
        help="Fail a cluster after this long with no progress.",
    ),
]


DeleteOpt = Annotated[bool, typer.Option("--delete", help="Remove pushed files now gone here.")]
MaxDeleteOpt = Annotated[int, typer.Option("--max-delete", min=0, help="Cap on deletes (1000).")]
