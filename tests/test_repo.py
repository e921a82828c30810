"""The repository's promises: README commands work, CI runs them, docs build, code is clean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IsolatedEnv

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The first fenced block's command lines: setup+run first, then the test command."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README must open with a bash block"
    return [ln for ln in block[1].splitlines() if ln.strip() and not ln.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    setup, test_command = readme_commands()[:2]
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert test_command in ci, "CI must call the README's test command verbatim"
    assert "apt-get update" in "\n".join(ci) and "rsync openssh-server" in "\n".join(ci)
    assert setup.startswith("pip install . && ")


def test_readme_quickstart_runs_a_real_sync(isolated_env: IsolatedEnv, tmp_path: Path) -> None:
    """The first README command, minus its `pip install .`, in a fresh folder and home."""
    setup = readme_commands()[0].removeprefix("pip install . && ")
    exe = shutil.which("sbatchman")
    if exe is None:
        pytest.fail("the sbatchman command is not installed (pip install . first)")
    project = tmp_path / "work"
    project.mkdir()
    (project / "train.py").write_text("print('train')\n")
    done = subprocess.run(
        ["bash", "-c", setup], cwd=project, env=os.environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    demo = isolated_env.home / ".local/share/sbatchman/demo-cluster/project"
    assert (demo / "train.py").read_text() == "print('train')\n"
    assert "demo" in done.stdout and "ok" in done.stdout


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True)


def test_docs_build_strict(tmp_path: Path) -> None:
    done = run_tool(sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]


def test_ruff_is_clean() -> None:
    check = run_tool(sys.executable, "-m", "ruff", "check", "sbatchman", "tests", "bench")
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = run_tool(sys.executable, "-m", "ruff", "format", "--check", "sbatchman", "tests", "bench")
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_mypy_strict_is_clean() -> None:
    done = run_tool(sys.executable, "-m", "mypy", "sbatchman")
    assert done.returncode == 0, done.stdout[-3000:]


def test_modules_stay_small() -> None:
    big = {
        p.relative_to(REPO).as_posix(): n
        for p in (REPO / "sbatchman").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not big, f"split these along a real seam: {big}"
