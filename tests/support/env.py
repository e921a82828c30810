"""Where the autouse `isolated_env` fixture (tests/conftest.py) put this test's HOME and config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IsolatedEnv:
    """Where the current test's HOME and sbatchman config file point."""

    home: Path
    config: Path
