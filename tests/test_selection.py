"""Unit tests for sbatchman.selection.walk; the worked examples are loaded from docs/filters.md."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sbatchman.errors import ConfigError, UsageError
from sbatchman.selection import ignorefiles
from sbatchman.selection.patterns import split_lines
from sbatchman.selection.walk import (
    Entry,
    Rule,
    Selection,
    check_patterns,
    explain,
    select,
)
from tests.support.trees import make_tree

DOC = Path(__file__).resolve().parent.parent / "docs" / "filters.md"
RSYNC = shutil.which("rsync")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------- helpers


def shown(sel: Selection) -> set[str]:
    return {e.path + "/" if e.kind == "dir" else e.path for e in sel.entries}


def rules(*patterns: str, source: str = "-e") -> list[Rule]:
    return [Rule(p, source) for p in patterns]


def rsync_pushed(root: Path, excludes: list[Rule]) -> set[str]:
    assert RSYNC is not None
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(
            [
                RSYNC,
                "-rln8",
                "--out-format=%n",
                *(f"--exclude={r.pattern}" for r in excludes),
                f"{root}/",
                f"{empty}/",
            ],
            check=True,
            capture_output=True,
        ).stdout
    lines = os.fsdecode(out).split("\n")
    return {line for line in lines if line and line != "./"}


# --------------------------------------------------------------------------- doc examples


@dataclass
class Example:
    line: int
    tree: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)
    excludes: list[Rule] = field(default_factory=list)
    sync_dir: str = ""
    gitignore: bool = False
    pushed: set[str] | None = None
    explains: dict[str, str] = field(default_factory=dict)


def load_examples(text: str) -> list[Example]:
    """Parse the ```example blocks of docs/filters.md (format described at its end)."""
    out = []
    for m in re.finditer(r"^```example\n(.*?)^```", text, re.M | re.S):
        ex = Example(line=text[: m.start()].count("\n") + 1)
        sections: list[tuple[str, list[str]]] = []
        for raw in m.group(1).splitlines():
            if raw.startswith("  "):
                sections[-1][1].append(raw[2:])
            elif raw.strip():
                sections.append((raw, []))
        for head, items in sections:
            if head == "tree:":
                ex.tree += items
            elif head.startswith("file ") and head.endswith(":"):
                ex.files[head[5:-1]] = items
            elif head.startswith("excludes from ") and head.endswith(":"):
                ex.excludes += [Rule(p, head[len("excludes from ") : -1]) for p in items]
            elif head.startswith("sync_dir: "):
                ex.sync_dir = head[len("sync_dir: ") :]
            elif head == "gitignore: true":
                ex.gitignore = True
            elif head == "pushed:":
                ex.pushed = set(items)
            elif head.startswith("explain ") and head.endswith(":"):
                assert len(items) == 1, f"docs/filters.md:{ex.line}: one reason line per explain"
                ex.explains[head[len("explain ") : -1]] = items[0]
            else:
                raise AssertionError(f"docs/filters.md:{ex.line}: unknown section {head!r}")
        out.append(ex)
    return out


EXAMPLES = load_examples(DOC.read_text())


def build(tmp: Path, ex: Example) -> Path:
    """The example's tree: `path`, `path/`, `path -> target`, and the files it spells out."""
    links = dict(item.split(" -> ", 1) for item in ex.tree if " -> " in item)
    files: dict[str, str] = {item: "" for item in ex.tree if " -> " not in item}
    files |= {name: "".join(line + "\n" for line in lines) for name, lines in ex.files.items()}
    make_tree(tmp, files, links=links)
    return tmp / ex.sync_dir if ex.sync_dir else tmp


def test_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert all(ex.pushed is not None for ex in EXAMPLES), "every example states its push set"


@pytest.mark.parametrize("ex", EXAMPLES, ids=[f"filters.md:{ex.line}" for ex in EXAMPLES])
def test_doc_example(tmp_path: Path, ex: Example) -> None:
    root = build(tmp_path, ex)
    sel = select(root, ex.excludes, gitignore=ex.gitignore)
    assert shown(sel) == ex.pushed
    for path, reason in ex.explains.items():
        verdict = explain(root, ex.excludes, path, gitignore=ex.gitignore)
        assert verdict.reason == reason, path
        assert verdict.pushed == reason.startswith("pushed")


@pytest.mark.skipif(RSYNC is None, reason="rsync not installed")
@pytest.mark.parametrize(
    "ex",
    [ex for ex in EXAMPLES if not ex.files and not ex.gitignore],
    ids=[f"filters.md:{ex.line}" for ex in EXAMPLES if not ex.files and not ex.gitignore],
)
def test_doc_example_agrees_with_rsync(tmp_path: Path, ex: Example) -> None:
    root = build(tmp_path, ex)
    assert rsync_pushed(root, ex.excludes) == ex.pushed


# --------------------------------------------------------------------------- bad patterns


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("[ab", "'['"),
        ("*.[ch", "'['"),
        ("x[[:nope:]]", "character class"),
        ("a*\\", "backslash"),
        ("", "empty"),
        ("!", "clear"),
        ("- foo", "prefix"),
        ("+ foo", "prefix"),
    ],
)
def test_bad_exclude_names_pattern_and_source(pattern: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_patterns(
            [Rule("ok", "global.common_excludes"), Rule(pattern, "clusters[0].excludes")]
        )
    msg = str(info.value)
    assert "\n" not in msg
    assert "clusters[0].excludes" in msg
    assert f"'{pattern}'" in msg
    assert words in msg
    assert ";" in msg  # followed by how to fix it


def test_select_checks_patterns_first(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'\[x' in -e"):
        select(tmp_path, rules("[x"))


def test_valid_oddities_are_accepted() -> None:
    # rsync reads all of these as plain excludes.
    check_patterns(rules("a\\b", "[]]", "[!]]", "[[:alpha:]]*", "/", "x ", "[-] x", "***"))


def test_bad_line_in_sbatchmanignore_is_config_error(tmp_path: Path) -> None:
    make_tree(tmp_path, {"sub/.sbatchmanignore": "ok\n[oops\n"})
    with pytest.raises(ConfigError) as info:
        select(tmp_path, [])
    msg = str(info.value)
    assert "'[oops'" in msg and "sub/.sbatchmanignore:2" in msg and "\n" not in msg


def test_bad_line_in_gitignore_is_reported_and_skipped(tmp_path: Path) -> None:
    make_tree(tmp_path, {".gitignore": "[oops\n*.o", "a.o": "", "b.txt": ""})
    sel = select(tmp_path, [], gitignore=True)
    assert shown(sel) == {".gitignore", "b.txt"}
    assert sel.problems == ()  # git accepts the line, so it is a note, not a failure
    assert any(".gitignore:1" in n and "'[oops'" in n for n in sel.notes)


# --------------------------------------------------------------------------- explain sources


@pytest.mark.parametrize(
    "source", ["global.common_excludes", "clusters[1].sync_dirs[0].excludes", "-e"]
)
def test_explain_names_config_pattern_and_source(tmp_path: Path, source: str) -> None:
    make_tree(tmp_path, {"x.bin": ""})
    v = explain(tmp_path, [Rule("*.txt", "other"), Rule("*.bin", source)], "x.bin")
    assert not v.pushed
    assert v.rule == Rule("*.bin", source)
    assert v.reason == f"not pushed: excluded by '*.bin' from {source}"


def test_explain_names_ignore_file_line(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"src/.sbatchmanignore": "# c\n\n*.tmp\n!keep.tmp", "src/a.tmp": "", "src/keep.tmp": ""},
    )
    v = explain(tmp_path, [], "src/a.tmp")
    assert v.rule == Rule("*.tmp", "src/.sbatchmanignore:3") and not v.pushed
    v = explain(tmp_path, [], "src/keep.tmp")
    assert v.rule == Rule("!keep.tmp", "src/.sbatchmanignore:4") and v.pushed
    assert "re-included by '!keep.tmp' from src/.sbatchmanignore:4" in v.reason


def test_explain_gitignore_line(tmp_path: Path) -> None:
    make_tree(tmp_path, {"d/.gitignore": "/out/", "d/out/f": "", "out/g": ""})
    v = explain(tmp_path, [], "d/out/f", gitignore=True)
    assert v.rule == Rule("/out/", "d/.gitignore:1")
    assert "parent folder d/out" in v.reason
    assert explain(tmp_path, [], "out/g", gitignore=True).pushed
    assert explain(tmp_path, [], "d/out/f", gitignore=False).pushed


def test_explain_paths(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/b.txt": "", "f": ""}, links={"lnk": "a"})
    assert explain(tmp_path, [], str(tmp_path / "a" / "b.txt")).pushed
    assert explain(tmp_path, [], "./a//b.txt").path == "a/b.txt"
    v = explain(tmp_path, [], "lnk/b.txt")
    assert not v.pushed and "symlink" in v.reason
    v = explain(tmp_path, [], "f/x")
    assert not v.pushed and "is a file" in v.reason
    for bad in ("../x", "a/../../x", ".", "/elsewhere/x"):
        with pytest.raises(UsageError):
            explain(tmp_path, [], bad)


def test_explain_agrees_with_select(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".gitignore": "*.o\n!keep.o\nlogs/*\n!logs/important/",
            ".sbatchmanignore": "scratch/\n!.gitignore",
            "a.o": "",
            "keep.o": "",
            "logs/x.log": "",
            "logs/important/y.log": "",
            "scratch/z": "",
            "src/.sbatchmanignore": "/gen\n!a.o",
            "src/a.o": "",
            "src/gen/x.c": "",
            "src/lib/gen/x.c": "",
            ".git/HEAD": "",
        },
    )
    ex = rules("lib/", "*.c", source="global.common_excludes")
    for gi in (False, True):
        sel = select(tmp_path, ex, gitignore=gi)
        pushed = {e.path for e in sel.entries}
        for dirpath, dirnames, filenames in os.walk(tmp_path):
            for name in dirnames + filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), tmp_path)
                assert explain(tmp_path, ex, rel, gitignore=gi).pushed == (rel in pushed), rel


# --------------------------------------------------------------------------- entries


def test_entries_are_ordered_and_carry_lstat(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"b/c.txt": "hello", "a-b/x": "", "a/y": "", "z.txt": "12345", "empty/": ""},
        links={"link": "z.txt"},
    )
    os.chmod(tmp_path / "z.txt", 0o640)
    sel = select(tmp_path, [])
    paths = [e.path for e in sel.entries]
    assert paths == sorted(paths, key=lambda p: p.split("/"))
    assert paths == ["a", "a/y", "a-b", "a-b/x", "b", "b/c.txt", "empty", "link", "z.txt"]
    by = {e.path: e for e in sel.entries}
    st = os.lstat(tmp_path / "z.txt")
    assert by["z.txt"] == Entry("z.txt", "file", 5, st.st_mtime_ns, 0o640)
    assert by["link"].kind == "link" and by["link"].target == "z.txt"
    assert by["link"].size == len("z.txt")
    assert by["b"].kind == "dir" and by["b"].size == 0
    assert by["b"].mtime_ns == os.lstat(tmp_path / "b").st_mtime_ns
    assert [e.path for e in sel.files] == ["a-b/x", "a/y", "b/c.txt", "z.txt"] or {
        e.path for e in sel.files
    } == {"a-b/x", "a/y", "b/c.txt", "z.txt"}
    assert sel.total_bytes == 10
    assert sel.problems == ()
    assert all(e.path not in ("", ".") for e in sel.entries)


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"real/inner.txt": ""},
        links={"to_dir": "real", "broken": "nowhere", "loop": "loop"},
    )
    sel = select(tmp_path, rules("inner.txt"))
    by = {e.path: e for e in sel.entries}
    assert set(by) == {"real", "to_dir", "broken", "loop"}
    assert by["to_dir"].kind == "link" and by["to_dir"].target == "real"
    assert by["broken"].kind == "link"
    # a trailing-slash pattern never matches a link, even one to a folder
    assert "to_dir" in {e.path for e in select(tmp_path, rules("to_dir/")).entries}
    assert "to_dir" not in {e.path for e in select(tmp_path, rules("to_dir")).entries}


def test_root_may_be_a_symlink(tmp_path: Path) -> None:
    make_tree(tmp_path, {"real/a.txt": "", "real/sub/b.txt": ""}, links={"alias": "real"})
    sel = select(tmp_path / "alias", [])
    assert shown(sel) == {"a.txt", "sub/", "sub/b.txt"}
    assert sel.root == tmp_path / "alias"


def test_missing_root_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be used"):
        select(tmp_path / "nope", [])
    (tmp_path / "f").touch()
    with pytest.raises(ConfigError, match="not a directory"):
        select(tmp_path / "f", [])


def test_special_files_are_skipped_silently(tmp_path: Path) -> None:
    make_tree(tmp_path, {"keep.txt": ""})
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    short = Path(tempfile.mkdtemp(dir="/tmp"))  # AF_UNIX paths must be short
    try:
        sock.bind(str(short / "s"))
        os.rename(short / "s", tmp_path / "sock")
        sel = select(tmp_path, [])
        assert shown(sel) == {"keep.txt"}
        assert sel.problems == ()
        v = explain(tmp_path, [], "fifo")
        assert not v.pushed and "special file" in v.reason
    finally:
        sock.close()
        shutil.rmtree(short)


def test_dot_git_only_with_gitignore(tmp_path: Path) -> None:
    make_tree(tmp_path, {".git/HEAD": "", "sub/.git": "gitdir: x", "sub/a": ""})
    assert shown(select(tmp_path, [])) == {".git/", ".git/HEAD", "sub/", "sub/.git", "sub/a"}
    assert shown(select(tmp_path, [], gitignore=True)) == {"sub/", "sub/a"}
    # and ignore files cannot bring it back
    (tmp_path / ".sbatchmanignore").write_text("!.git\n")
    assert ".git/" not in shown(select(tmp_path, [], gitignore=True))


def test_gitignore_of_ancestors_and_info_exclude(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            ".git/HEAD": "",
            ".git/info/exclude": "*.secret",
            ".gitignore": "/top.txt\nproj/gen/\n*.log",
            "proj/.gitignore": "!keep.log",
            "proj/top.txt": "",
            "proj/gen/a": "",
            "proj/a.log": "",
            "proj/keep.log": "",
            "proj/k.secret": "",
        },
    )
    sel = select(tmp_path / "proj", [], gitignore=True)
    assert shown(sel) == {".gitignore", "keep.log", "top.txt"}
    v = explain(tmp_path / "proj", [], "k.secret", gitignore=True)
    assert v.rule == Rule("*.secret", "../.git/info/exclude:1")
    # without gitignore, none of git's files matter
    assert "a.log" in shown(select(tmp_path / "proj", []))


def test_gitfile_work_tree(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "store/wt/HEAD": "",
            "store/wt/commondir": "../common",
            "store/common/info/exclude": "*.x",
            "repo/.git": "gitdir: ../store/wt",
            "repo/sub/a.x": "",
            "repo/sub/b.y": "",
        },
    )
    assert shown(select(tmp_path / "repo" / "sub", [], gitignore=True)) == {"b.y"}


def test_symlinked_ignore_file_is_not_read(tmp_path: Path) -> None:
    """git does not read a .gitignore that is a link: a note. Our own file is a config error:
    pushing without the rules the user wrote could upload what they meant to keep local."""
    make_tree(tmp_path, {"rules": "*.txt", "a.txt": ""}, links={".gitignore": "rules"})
    sel = select(tmp_path, [], gitignore=True)
    assert "a.txt" in shown(sel)
    assert sel.problems == ()
    assert any(".gitignore" in n and "symlink" in n for n in sel.notes)
    (tmp_path / ".sbatchmanignore").symlink_to("rules")
    with pytest.raises(ConfigError, match=r"^\.sbatchmanignore is a symlink"):
        select(tmp_path, [])


def test_unreadable_ignore_file_is_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"d/.sbatchmanignore": "x", "d/x": ""})

    def deny(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ignorefiles, "open", deny, raising=False)
    with pytest.raises(ConfigError, match=r"d/\.sbatchmanignore: Permission denied"):
        select(tmp_path, [])


def test_ignore_file_lines() -> None:
    data = b"\xef\xbb\xbfa\r\n#c\n\n\\#d\nb  \nc\\ \n\\!e\nf\\"
    assert split_lines(data) == [
        (1, b"a"),
        (4, b"\\#d"),
        (5, b"b"),
        (6, b"c\\ "),
        (7, b"\\!e"),
        (8, b"f\\"),
    ]


def test_bytes_not_characters(tmp_path: Path) -> None:
    # rsync and git match bytes: '?' is one byte, so it does not match a two-byte 'é'.
    make_tree(tmp_path, {"é": "", "ab": ""})
    (tmp_path / os.fsdecode(b"\xff.bin")).touch()
    assert shown(select(tmp_path, rules("?"))) == {"é", "ab", os.fsdecode(b"\xff.bin")}
    assert shown(select(tmp_path, rules("??"))) == {os.fsdecode(b"\xff.bin")}
    assert shown(select(tmp_path, rules("*.bin"))) == {"é", "ab"}
    if RSYNC is not None:
        for pats in (rules("?"), rules("??"), rules("*.bin"), rules("[!a]*")):
            assert rsync_pushed(tmp_path, pats) == shown(select(tmp_path, pats))


# --------------------------------------------------------------------------- unreadable


def test_unreadable_dir_and_file_are_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Works as root too: access() is what root would be refused by, were it not root."""
    make_tree(
        tmp_path, {"open/a": "", "secret/b": "", "secret/c/d": "", "locked.txt": "", "ok.txt": ""}
    )
    os.chmod(tmp_path / "secret", 0)
    os.chmod(tmp_path / "locked.txt", 0)
    real_access = os.access
    denied = {str(tmp_path / "secret"), str(tmp_path / "locked.txt")}

    def access(path: str, mode: int) -> bool:
        return False if os.fspath(path) in denied else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    try:
        sel = select(tmp_path, [])
        assert shown(sel) == {"open/", "open/a", "ok.txt"}
        assert sorted(sel.problems) == [
            "locked.txt: permission denied (not pushed)",
            "secret: permission denied (not pushed)",
        ]
        v = explain(tmp_path, [], "secret/b")
        assert not v.pushed and "cannot be read" in v.reason
        assert not explain(tmp_path, [], "locked.txt").pushed
    finally:
        os.chmod(tmp_path / "secret", 0o755)


def _unprivileged_run(script: str, tree: Path) -> str:
    """Run `script` as an ordinary user so permission bits really bite (we may be root)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    prefix: list[str] = []
    if IS_ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop privileges")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*prefix, sys.executable, "-c", "import sbatchman"], env=env)
        if probe.returncode != 0:
            pytest.skip("the unprivileged user cannot run this Python")
    cmd = [*prefix, sys.executable, "-c", script, str(tree)]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def test_unreadable_dir_for_real() -> None:
    base = Path(tempfile.mkdtemp(prefix="sbatchman-perm-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        make_tree(base, {"open/a": "", "secret/b": "", "noexec/c": "", "ok.txt": ""})
        os.chmod(base / "secret", 0)
        os.chmod(base / "noexec", 0o644)
        if IS_ROOT:
            for p in base.rglob("*"):
                if not p.is_symlink() and p.name not in ("secret", "noexec"):
                    os.chmod(p, 0o755 if p.is_dir() else 0o644)
        script = textwrap.dedent(
            """
            import sys
            from pathlib import Path
            from sbatchman.selection.walk import select
            sel = select(Path(sys.argv[1]), [])
            print(sorted(e.path for e in sel.entries))
            print(sorted(sel.problems))
            """
        )
        out = _unprivileged_run(script, base).splitlines()
        assert out[0] == "['ok.txt', 'open', 'open/a']"
        assert out[1] == (
            "['noexec: permission denied (not pushed)', 'secret: permission denied (not pushed)']"
        )
    finally:
        for p in (base / "secret", base / "noexec"):
            os.chmod(p, 0o755)
        shutil.rmtree(base)


def test_excluded_folders_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An excluded folder is never listed, however big it is."""
    make_tree(tmp_path, {"big/a": "", "big/b": "", "keep": ""})
    seen: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        seen.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    select(tmp_path, rules("big"))
    assert seen == [str(tmp_path)]


def test_permission_bits_are_mode_only(tmp_path: Path) -> None:
    make_tree(tmp_path, {"x": ""})
    os.chmod(tmp_path / "x", 0o4755)
    (e,) = select(tmp_path, []).entries
    assert e.mode == stat.S_IMODE(os.lstat(tmp_path / "x").st_mode) == 0o4755
