"""Property tests for sbatchman.selection.walk with the real rsync and git as oracles.

Trees and patterns come from deliberately tiny alphabets so that patterns hit names often;
`test_strategies_exercise_exclusions` checks that they do, so a property cannot pass by
never excluding anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sbatchman.selection.walk import IGNORE_FILE, Rule, Selection, explain, select
from tests.support.trees import make_tree

RSYNC = shutil.which("rsync")
GIT = shutil.which("git")

# Tree: a dict name -> "file" | ("link", target) | dict (a folder).
Tree = dict[str, Any]

DIR_NAMES = ["d1", "d2", "a", "ab", "x.bin"]
FILE_NAMES = ["a", "b", "ab", "ba", "x.bin", "y.txt", ".h", "a*", "sp ", "é"]
LINK_TARGETS = ["a", "d1", "../d1", "nowhere", "/tmp"]

# A deeper check: SBATCHMAN_ORACLE_SCALE=10 python -m pytest tests/test_selection_oracle.py
SCALE = int(os.environ.get("SBATCHMAN_ORACLE_SCALE", "1"))

COMPONENTS = [
    "a", "b", "ab", "d1", "d2", "x.bin", ".h", "é",
    "*", "?", "??", "*.bin", "[ab]", "[!a]*", "[^d]?", "a*", "*b", "d?", "\\*", "a\\*",
    "[[:alpha:]]*", "**", "***", "a**", "**b", "sp ", "a\\/b*", "d1\\/a",
]  # fmt: skip


def _node(depth: int) -> st.SearchStrategy[Any]:
    leaves: list[st.SearchStrategy[Any]] = [
        st.just("file"),
        st.just("file"),
        st.tuples(st.just("link"), st.sampled_from(LINK_TARGETS)),
    ]
    if depth >= 3:
        return st.one_of(leaves)
    folder = st.dictionaries(
        st.sampled_from(DIR_NAMES + FILE_NAMES), st.deferred(lambda: _node(depth + 1)), max_size=4
    )
    return st.one_of([*leaves, folder, folder])


trees: st.SearchStrategy[Tree] = st.dictionaries(
    st.sampled_from(DIR_NAMES + FILE_NAMES), _node(1), min_size=1, max_size=5
)


LITERALS = ["a", "b", "ab", "d1", "d2", "x.bin", "*", "?", "a*", "*.bin"]


@st.composite
def components(draw: st.DrawFn) -> list[str]:
    """Mostly one or two components, mostly plain names, so that matches are frequent."""
    n = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
    pool = st.sampled_from(LITERALS * 3 + COMPONENTS)
    return draw(st.lists(pool, min_size=n, max_size=n))


SLASH_CLASSES = ["[!/]", "[a/]", "a[!/]", "[^/]*"]  # rsync counts their '/' as a separator


@st.composite
def rsync_patterns(draw: st.DrawFn) -> str:
    comps = draw(components())
    if draw(st.integers(0, 7)) == 0:
        comps[draw(st.integers(0, len(comps) - 1))] = draw(st.sampled_from(SLASH_CLASSES))
    lead = draw(st.sampled_from(["", "", "", "/"]))
    trail = draw(st.sampled_from(["", "", "/"]))
    return lead + "/".join(comps) + trail


rsync_sets = st.lists(rsync_patterns(), min_size=1, max_size=4)


def tree_paths(tree: Tree, prefix: str = "") -> Iterator[str]:
    for name, node in tree.items():
        yield prefix + name
        if isinstance(node, dict):
            yield from tree_paths(node, prefix + name + "/")


@st.composite
def rsync_cases(draw: st.DrawFn) -> tuple[Tree, list[str]]:
    """A tree and patterns; often one pattern is built from a path that exists, so it hits."""
    tree = draw(trees)
    patterns = draw(rsync_sets)
    if draw(st.booleans()):
        path = draw(st.sampled_from(list(tree_paths(tree))))
        parts = path.split("/")
        tail = "/".join(parts[draw(st.integers(0, len(parts) - 1)) :])
        lead = "/" if tail == path and draw(st.booleans()) else ""
        trail = draw(st.sampled_from(["", "", "", "/", "/***"]))
        patterns.insert(draw(st.integers(0, len(patterns))), lead + tail + trail)
    return tree, patterns


@st.composite
def git_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(["# comment", "", "\\#a", "\\!a", "a  ", "sp\\ ", "!", "/"]))
    comps = draw(components())
    neg = draw(st.sampled_from(["", "", "", "!"]))
    lead = draw(st.sampled_from(["", "", "", "/", "**/"]))
    trail = draw(st.sampled_from(["", "", "", "/", "/**"]))
    return neg + lead + "/".join(comps) + trail


def write_tree(root: Path, tree: Tree) -> None:
    """Lay a generated Tree out with the shared builder: files hold their own name."""
    files: dict[str, str | bytes] = {}
    links: dict[str, str] = {}

    def flatten(node: Tree, prefix: str) -> None:
        for name, child in node.items():
            if child == "file":
                files[prefix + name] = name.encode()
            elif isinstance(child, tuple):
                links[prefix + name] = child[1]
            else:
                files[prefix + name + "/"] = b""
                flatten(child, prefix + name + "/")

    flatten(tree, "")
    make_tree(root, files, links=links)


def folders(tree: Tree, prefix: str = "") -> Iterator[str]:
    for name, node in tree.items():
        if isinstance(node, dict):
            yield prefix + name
            yield from folders(node, prefix + name + "/")


def subtree(tree: Tree, folder: str) -> Tree:
    for part in folder.split("/") if folder else []:
        tree = tree[part]
    return tree


def all_paths(root: Path) -> list[str]:
    """Every path below root except git's own metadata."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return out


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sbatchman-oracle-") as tmp:
        yield Path(tmp)


def shown(sel: Selection) -> set[str]:
    return {e.path + "/" if e.kind == "dir" else e.path for e in sel.entries}


def rsync_oracle(src: Path, patterns: list[str]) -> set[str]:
    assert RSYNC is not None
    with tempfile.TemporaryDirectory() as empty:
        cmd = [RSYNC, "-rln8", "--out-format=%n", *(f"--exclude={p}" for p in patterns)]
        out = subprocess.run([*cmd, f"{src}/", f"{empty}/"], check=True, capture_output=True).stdout
    return {line for line in os.fsdecode(out).split("\n") if line and line != "./"}


GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES")


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_ENV_DROP}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",
    )
    return env


def git_oracle(repo: Path, env: dict[str, str]) -> set[str]:
    """Untracked, not-ignored files and links of a fresh repo: what git would add."""
    assert GIT is not None
    out = subprocess.run(
        [GIT, "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    return {os.fsdecode(p) for p in out.split(b"\0") if p}


def n_excluded(root: Path, sel: Selection) -> int:
    return len(all_paths(root)) - len(sel.entries)


def bucket(n: int) -> str:
    return "none" if n == 0 else "1-2" if n <= 2 else "3+"


# --------------------------------------------------------------------------- rsync


@pytest.mark.skipif(RSYNC is None, reason="rsync not installed")
@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=rsync_cases())
def test_config_excludes_agree_with_rsync(case: tuple[Tree, list[str]]) -> None:
    tree, patterns = case
    with scratch() as tmp:
        write_tree(tmp, tree)
        sel = select(tmp, [Rule(p, "prop") for p in patterns])
        event(f"rsync: excluded {bucket(n_excluded(tmp, sel))}")
        assert shown(sel) == rsync_oracle(tmp, patterns)


# --------------------------------------------------------------------------- git


GitCase = tuple[Tree, dict[str, list[str]], list[str], str]  # tree, ignore files, info, sync


@st.composite
def git_cases(draw: st.DrawFn) -> GitCase:
    tree = draw(trees)
    dirs = ["", *folders(tree)]
    ignores = {}
    for d in dirs:
        if not d or draw(st.booleans()):
            lines = draw(st.lists(git_lines(), min_size=1, max_size=6))
            if not d or draw(st.booleans()):  # a broad line and a later exception to it
                broad = draw(st.sampled_from(["*", "a*", "*.bin", "?", "*b", "[ab]*", "**", "/*"]))
                here = subtree(tree, d)
                narrow = draw(st.sampled_from([*here, *here, "d1/", "a*", "*/"]))
                at = draw(st.integers(0, len(lines)))
                lines[at:at] = [broad, *draw(st.lists(git_lines(), max_size=1)), "!" + narrow]
            ignores[d] = lines
    info = draw(st.lists(git_lines(), max_size=2))
    sync = draw(st.sampled_from(dirs)) if draw(st.booleans()) else ""
    return tree, ignores, info, sync


def write_git_case(
    repo: Path, tree: Tree, ignores: dict[str, list[str]], info: list[str], env: dict[str, str]
) -> None:
    assert GIT is not None
    subprocess.run([GIT, "init", "-q", str(repo)], env=env, check=True)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("".join(line + "\n" for line in info))
    write_tree(repo, tree)
    for d, lines in ignores.items():
        (repo / d / ".gitignore").write_text("".join(line + "\n" for line in lines))


@pytest.mark.skipif(GIT is None, reason="git not installed")
@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=git_cases())
def test_ignore_files_agree_with_git(
    case: GitCase,
) -> None:
    tree, ignores, info, sync = case
    with scratch() as tmp:
        env = git_env(tmp / "home")
        repo = tmp / "repo"
        write_git_case(repo, tree, ignores, info, env)
        root = repo / sync if sync else repo
        sel = select(root, [], gitignore=True)
        ours = {e.path for e in sel.entries if e.kind != "dir"}
        prefix = sync + "/" if sync else ""
        theirs = {p[len(prefix) :] for p in git_oracle(repo, env) if p.startswith(prefix)}
        event(f"git: excluded {bucket(n_excluded(root, sel))}")
        event(f"git: sync_dir {'root' if not sync else 'sub'}")
        assert ours == theirs


@pytest.mark.skipif(GIT is None, reason="git not installed")
@settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=git_cases())
def test_sbatchmanignore_means_what_the_same_gitignore_means_to_git(case: GitCase) -> None:
    """Our own ignore files, with no git anywhere: the same lines as .gitignore files in a
    real repository select the same files (the ignore files themselves aside)."""
    tree, ignores, _, _ = case
    with scratch() as tmp:
        env = git_env(tmp / "home")
        repo = tmp / "repo"
        write_git_case(repo, tree, ignores, [], env)
        plain = tmp / "plain"
        plain.mkdir()
        write_tree(plain, tree)
        for d, lines in ignores.items():
            (plain / d / IGNORE_FILE).write_text("".join(line + "\n" for line in lines))
        sel = select(plain, [])
        names = (IGNORE_FILE, ".gitignore")
        ours = {e.path for e in sel.entries if e.kind != "dir"}
        theirs = git_oracle(repo, env)
        assert {p for p in ours if p.rsplit("/", 1)[-1] not in names} == {
            p for p in theirs if p.rsplit("/", 1)[-1] not in names
        }


# --------------------------------------------------------------------------- known quirks

QUIRK_NAMES = ["foo", "foox", "a]", "]", "a-", "-", "b", "a\\b", "[", "[a", ":", "x*", "ab", "a"]
QUIRK_NAMES += ["é", "A", "1", " ", "\t", "foo**", "sp ", "#x"]


def quirk_tree(root: Path) -> None:
    for d in ["", "a", "a/foobar", "a/foo", "x/a/foo"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for d in ["", "a", "a/foobar", "x/a"]:
        for n in QUIRK_NAMES:
            if not (root / d / n).exists():
                (root / d / n).write_text("x")


RSYNC_QUIRKS = [
    "[]a]", "[!]a]", "[a-]", "[[:alpha:]-z]", "[\\]]", "[[:a]", "[[:]", "\\**", "a/foo**",
    "foo\\*\\*", "[--z]", "[^a]", "[[:space:]]", "[[:punct:]]", "**/foo", "/**/foo", "a/**",
    "/a/**/foo", "**", "x/***", "[z-a]", "?", "a\\b", "/", "sp ", "#x", "foo/***/", "**foo",
    "a\\/foo*", "x/a\\/foo", "/a\\/foo*", "*\\/foo", "/x/a\\/fo?",
]  # fmt: skip


@pytest.mark.skipif(RSYNC is None, reason="rsync not installed")
@pytest.mark.parametrize("pattern", RSYNC_QUIRKS)
def test_rsync_quirks(tmp_path: Path, pattern: str) -> None:
    quirk_tree(tmp_path)
    assert shown(select(tmp_path, [Rule(pattern, "q")])) == rsync_oracle(tmp_path, [pattern])


GIT_QUIRKS: list[bytes] = [
    b"[]a]", b"[!]a]", b"[a-]", b"[[:alpha:]-z]", b"[\\]]", b"[[:a]", b"[[:]", b"\\**",
    b"a/foo**\n!a/foobar",  # the literal prefix is cut off first, so this '**' is "leading"
    b"a/fo*\n!a/foobar",
    b"a/**\n!a/foobar/", b"/a/**/foo", b"x/**/", b"a/**\\/foo", b"**foo", b"a**/foo",
    b"*\n!*/", b"*\n!*/\n!a", b"foo/\n!foo", b"a\n!a/", b"a/foo\n!/a/foo", b"\\#x",
    b"\\ ", b"[a", b"x\\", b"/x/a/\n!x/a/foo", b"\xef\xbb\xbfa\r\nb  \r\nsp\\ \n#x",
    b"!", b"/", b"\\!a", b"**/", b"*/**",
]  # fmt: skip


@pytest.mark.skipif(GIT is None, reason="git not installed")
@pytest.mark.parametrize("content", GIT_QUIRKS, ids=[repr(c)[2:-1] for c in GIT_QUIRKS])
def test_git_quirks(tmp_path: Path, content: bytes) -> None:
    assert GIT is not None
    env = git_env(tmp_path / "home")
    repo = tmp_path / "repo"
    subprocess.run([GIT, "init", "-q", str(repo)], env=env, check=True)
    quirk_tree(repo)
    (repo / ".gitignore").write_bytes(content + b"\n")
    ours = {e.path for e in select(repo, [], gitignore=True).entries if e.kind != "dir"}
    assert ours == git_oracle(repo, env)


# --------------------------------------------------------------------------- explain


@settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=git_cases(), patterns=st.lists(rsync_patterns(), max_size=2), gi=st.booleans())
def test_explain_agrees_with_select(case: GitCase, patterns: list[str], gi: bool) -> None:
    tree, ignores, _, _ = case
    with scratch() as tmp:
        write_tree(tmp, tree)
        for d, lines in ignores.items():
            name = ".gitignore" if gi and len(d) % 2 else ".sbatchmanignore"
            text = "".join(line + "\n" for line in lines if "[" not in line and "\\" not in line)
            (tmp / d / name).write_text(text)
        rules = [Rule(p, "prop") for p in patterns]
        pushed = {e.path for e in select(tmp, rules, gitignore=gi).entries}
        for path in all_paths(tmp):
            v = explain(tmp, rules, path, gitignore=gi)
            assert v.pushed == (path in pushed), (path, v)
            assert v.pushed or v.rule is not None or "symlink" in v.reason


# --------------------------------------------------------------------------- coverage


def _run(strategy: st.SearchStrategy[Any], body: Callable[[Any], int], n: int = 150) -> list[int]:
    counts: list[int] = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True)
    @given(strategy)
    def inner(value: Any) -> None:
        counts.append(body(value))

    inner()
    return counts


def test_strategies_exercise_exclusions() -> None:
    """The generated patterns must exclude things, and negations must decide things, or the
    oracles above prove little."""

    def rsync_body(value: tuple[Tree, list[str]]) -> int:
        tree, patterns = value
        with scratch() as tmp:
            write_tree(tmp, tree)
            return n_excluded(tmp, select(tmp, [Rule(p, "t") for p in patterns]))

    def git_body(value: GitCase) -> int:
        """Entries ignored, plus 1000 if some entry is pushed only thanks to a '!' line."""
        tree, ignores, _, _ = value
        with scratch() as tmp:
            write_tree(tmp, tree)

            def run(keep_negations: bool) -> set[str]:
                for d, lines in ignores.items():
                    kept = [ln for ln in lines if keep_negations or not ln.startswith("!")]
                    (tmp / d / ".gitignore").write_text("".join(ln + "\n" for ln in kept))
                return {e.path for e in select(tmp, [], gitignore=True).entries}

            without = run(False)
            full = run(True)
            return len(all_paths(tmp)) - len(full) + (1000 if full - without else 0)

    rs = _run(rsync_cases(), rsync_body)
    gs = _run(git_cases(), git_body)
    assert sum(c > 0 for c in rs) >= len(rs) // 5, "rsync patterns rarely exclude anything"
    assert sum(c % 1000 > 0 for c in gs) >= len(gs) // 4, "ignore lines rarely ignore anything"
    assert sum(c >= 1000 for c in gs) >= len(gs) // 8, "negations rarely decide anything"
