"""The one exception root: every user-facing failure is a SbatchmanError with an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process returns; scripts branch on these, so they never change meaning."""

    OK = 0
    FAILED = 1  # a transfer or connection failed; every other target still ran
    USAGE = 2  # the command line or the config is wrong; nothing was sent
    INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class SbatchmanError(Exception):
    """A failure the user can act on; the CLI prints `str(err)` as one line, never a traceback."""

    exit_code = ExitCode.FAILED


class UsageError(SbatchmanError):
    """The command line asked for something that cannot be (unknown cluster, bad flag value)."""

    exit_code = ExitCode.USAGE


class ConfigError(SbatchmanError):
    """The config (or a pattern or ignore file it brings in) is wrong; says where and how to fix."""

    exit_code = ExitCode.USAGE


class ConnectError(SbatchmanError):
    """A cluster could not be reached or authenticated; other clusters still run."""

    exit_code = ExitCode.FAILED


class AuthError(ConnectError):
    """The cluster answered but would not let us in without something a prompt could supply.

    Kept apart from other connect errors because a terminal user gets a second, interactive
    try for exactly these (the first, parallel pass never prompts).
    """


class TransferError(SbatchmanError):
    """A transfer to one cluster/alias failed part way; other targets still run."""

    exit_code = ExitCode.FAILED


class Interrupted(SbatchmanError):
    """The user pressed Ctrl-C and a backend stopped part way; 128 + SIGINT, as shells do."""

    exit_code = ExitCode.INTERRUPTED
