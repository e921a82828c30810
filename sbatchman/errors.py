"""The one exception root: every user-facing failure is a SbatchmanError with an exit code."""

from __future__ import annotations


class SbatchmanError(Exception):
    """A failure the user can act on; the CLI prints `str(err)` as one line, never a traceback."""

    exit_code = 1


class UsageError(SbatchmanError):
    """The command line asked for something that cannot be (unknown cluster, bad flag value)."""

    exit_code = 2


class ConfigError(SbatchmanError):
    """The config (or a pattern or ignore file it brings in) is wrong; says where and how to fix."""

    exit_code = 2


class ConnectError(SbatchmanError):
    """A cluster could not be reached or authenticated; other clusters still run."""

    exit_code = 1


class AuthError(ConnectError):
    """The cluster answered but would not let us in without something a prompt could supply.

    Kept apart from other connect errors because a terminal user gets a second, interactive
    try for exactly these (the first, parallel pass never prompts).
    """


class TransferError(SbatchmanError):
    """A transfer to one cluster/alias failed part way; other targets still run."""

    exit_code = 1


class Interrupted(SbatchmanError):
    """The user pressed Ctrl-C and a backend stopped part way; 128 + SIGINT, as shells do."""

    exit_code = 130
