"""The repository's promises: README commands work, CI runs them, docs build, code is clean."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import IsolatedEnv

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
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not big, f"split these along a real seam: {big}"


# The data path, lowest first: a module imports only from its own layer or the ones before it.
# selection and ssh sit side by side and never import each other.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"__init__", "errors", "names", "output", "children", "temporaries"}),
    ("config", {"configschema", "configpaths", "config", "starter"}),
    ("selection", {"selection"}),
    ("ssh", {"ssh"}),
    ("vocabulary", {"model", "plan", "precedence", "records", "deletes"}),
    ("backends", {"backends"}),
    (
        "coordinator",
        {"fanout", "targets", "outcomes", "push", "fetch", "deleting", "watch", "watcher"},
    ),
    ("front", {"report", "watchreport", "listing", "fetchlisting", "cliopts", "cli", "__main__"}),
]
SIBLINGS = {frozenset({"selection", "ssh"})}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every sbatchman module and the sbatchman modules it imports (lazy and typing-only too)."""
    files = {_module_name(p): p for p in (REPO / "sbatchman").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "sbatchman"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sbatchman"):
                assert node.level == 0 and node.module is not None
                for alias in node.names:  # `from pkg import module` depends on the module
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in files else node.module)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def layer_of(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, (layer, members) in enumerate(LAYERS):
        if top in members:
            return rank, layer
    raise AssertionError(f"{module}: add it to a layer in tests/test_repo.py LAYERS")


def test_imports_only_go_down_the_layers() -> None:
    wrong = []
    for module, imports in sorted(import_graph().items()):
        rank, layer = layer_of(module)
        for imported in sorted(imports):
            other_rank, other = layer_of(imported)
            if other_rank > rank or frozenset({layer, other}) in SIBLINGS:
                wrong.append(f"{module} ({layer}) imports {imported} ({other})")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


def test_imports_have_no_cycles() -> None:
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _shares_with_a_test_module(name: str) -> bool:
    """`tests.test_x`, `test_x` and conftest are pytest's to load; importing them runs their
    module-level setup twice and hides a shared helper outside tests/support/."""
    parts = name.split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return bool(parts) and (parts[0].startswith("test_") or parts[0] == "conftest")


def test_tests_share_helpers_only_through_tests_support() -> None:
    wrong = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
                if node.level or node.module in ("tests", None):  # from tests import test_x
                    names += [a.name for a in node.names]
            else:
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            wrong += [f"{where} imports {n}" for n in names if _shares_with_a_test_module(n)]
    assert not wrong, "move what they share into tests/support/:\n" + "\n".join(wrong)
