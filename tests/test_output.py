"""What reaches a terminal, a file or a script: hostile names escaped, never markup, never cut;
output that cannot be written is one line and leaves the exit status alone."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sbatchman.names import json_name, json_text, show_name, show_text
from sbatchman.output import Guarded
from tests.support.project import run_cli, ssh_cluster, write_config
from tests.support.sshd import SshServer
from tests.support.trees import make_tree

ESC_NAME = "a\x1b[31mred"  # would turn the terminal red
TITLE = "c[/]\x1b]0;T\x07"  # rich's closing tag, then an xterm title sequence
NOT_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 é: no UTF-8 decoding of it exists
HOSTILE = {
    ESC_NAME: "1",
    "new\nline": "2",
    "[bold]x": "3",
    ":smile:": "4",  # a rich emoji code
    "lit\\#033": "5",  # already looks escaped
    "del\x7f\u009b": "6",  # DEL and a C1 control (CSI)
    NOT_UTF8: "7",
}
# each name as people see it, in the order the files are listed
SHOWN = {
    ESC_NAME: "a\\#033[31mred",
    "new\nline": "new\\#012line",
    "[bold]x": "[bold]x",
    ":smile:": ":smile:",
    "lit\\#033": "lit\\#134#033",
    "del\x7f\u009b": "del\\#177\\#302\\#233",
    NOT_UTF8: "caf\\#351",
}


def hostile_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, content in HOSTILE.items():
        (root / name).write_text(content)
    return root


def rows(lines: list[str]) -> list[str]:
    """Table lines without trailing blanks, the seconds column (a wall time) masked."""
    return [re.sub(r" \d+\.\d$", " S.S", line.rstrip()) for line in lines]


def printable(text: str) -> bool:
    return all(c.isprintable() or c == "\n" for c in text)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def strict_json(out: str) -> dict[str, Any]:
    """Parse as a strict parser would: every string must be valid UTF-8 (no lone surrogates)."""
    document = json.loads(out)
    for text in strings(document):
        text.encode("utf-8")  # raises on a lone surrogate
    out.encode("utf-8")
    return document


def test_the_one_escaping_exactly() -> None:
    for name, shown in SHOWN.items():
        assert show_name(name) == shown
    assert show_text("x \\#033 \x1b") == "x \\#033 \\#033"  # messages: only unprintables
    assert show_name("\u202eevil") == "\\#342\\#200\\#256evil"  # a bidi override
    assert show_name("é and spaces") == "é and spaces"
    # JSON keeps every valid character exactly; only stray bytes (and look-alikes) escaped
    assert json_name(ESC_NAME) == ESC_NAME
    assert json_name("new\nline") == "new\nline"
    assert json_name(NOT_UTF8) == "caf\\#351"
    assert json_name("lit\\#033") == "lit\\#134#033"
    assert json_text(f"cannot open {NOT_UTF8}") == "cannot open caf\\#351"


@pytest.fixture
def hostile_config(tmp_path: Path) -> Path:
    proj = hostile_tree(tmp_path / "proj")
    cluster = {
        "name": TITLE,
        "sync_dirs": [{"alias": "p[bold]", "local": str(proj), "remote": str(tmp_path / "d")}],
    }
    return write_config(tmp_path / "c.toml", [cluster])


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_hostile_names_are_escaped_in_every_line(
    capsys: pytest.CaptureFixture[str], hostile_config: Path, backend: str
) -> None:
    label = "c[/]\\#033]0;T\\#007/p[bold]"
    args = ("sync", "--config", str(hostile_config), "-b", backend)
    planned = run_cli(capsys, *args, "-n")
    assert planned.code == 0, planned.err
    assert printable(planned.out) and printable(planned.err)
    lines = planned.out.splitlines()
    expected = {f"would send {label}: {shown} (new)" for shown in SHOWN.values()}
    newline = f"would send {label}: new\\#012line (new)"  # rsync drops it until item 10 lands
    assert set(lines[:-2]) - {newline} == expected - {newline}
    engine = "rsync" if backend == "rsync" else "local"
    sent = len(lines) - 2
    assert rows(lines[-2:]) == [
        "cluster             alias    backend  status   files  bytes  seconds",
        f"c[/]\\#033]0;T\\#007  p[bold]  {engine:7}  dry-run      {sent}    {sent} B      S.S",
    ]
    pushed = run_cli(capsys, *args, "-v")
    assert pushed.code == 0, pushed.err
    assert printable(pushed.out)
    assert set(pushed.out.splitlines()[:-2]) - {newline[11:]} == {
        line[len("would send ") :] for line in expected - {newline}
    }
    again = run_cli(capsys, *args, "--json")
    document = strict_json(again.out)
    assert document["error"] is None
    assert document["targets"][0]["cluster"] == TITLE  # exact: JSON carries control characters


@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_json_names_are_strict_utf8_in_a_documented_form(
    hostile_config: Path, backend: str
) -> None:
    """A real process, a real pipe: what `| jq` gets."""
    argv = ["sync", "--json", "-b", backend, "--config", str(hostile_config)]
    done = subprocess.run(
        [sys.executable, "-m", "sbatchman", *argv],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = strict_json(done.stdout.decode("utf-8"))
    paths = {f["path"] for f in document["targets"][0]["files"]}
    wanted = {json_name(name) for name in HOSTILE}
    assert paths - {"new\nline"} == wanted - {"new\nline"}  # rsync: see item 10
    assert {"caf\\#351", "lit\\#134#033", ESC_NAME} <= paths
    assert (hostile_config.parent / "d" / NOT_UTF8).read_text() == "7"


def test_failures_notices_and_errors_quoting_names_are_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = make_tree(tmp_path / "proj", {"a": "a\n"})
    in_the_way = tmp_path / "d\x1b[2J\nx"
    in_the_way.write_text("a file where a folder must go")
    cluster = {
        "name": TITLE,
        "sync_dirs": [{"alias": "a\nb", "local": str(proj), "remote": f"{in_the_way}/sub"}],
    }
    config = write_config(tmp_path / "c.toml", [cluster])
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no rsync: a notice names the cluster
    run = run_cli(capsys, "sync", "--config", str(config))
    assert run.code == 1
    shown = f"{tmp_path}/d\\#033[2J\\#012x/sub"
    assert run.err == (
        "sbatchman: c[/]\\#033]0;T\\#007: rsync is not on PATH; using the built-in copier instead\n"
    )
    assert rows(run.out.splitlines()) == [
        "cluster             alias    backend  status  files  bytes  seconds",
        "c[/]\\#033]0;T\\#007  a\\#012b  local    FAILED      0    0 B      S.S",
        f"✗ c[/]\\#033]0;T\\#007/a\\#012b: Not a directory ({shown})",
    ]
    json_run = run_cli(capsys, "sync", "--config", str(config), "--json")
    target = strict_json(json_run.out)["targets"][0]
    assert target["alias"] == "a\nb"
    assert target["error"] == f"Not a directory ({in_the_way}/sub)"
    wrong = run_cli(capsys, "sync", "--config", str(config), "-c", "x\x1b[2J")
    assert wrong.code == 2
    assert wrong.err == (
        "sbatchman: error: -c x\\#033[2J: no such cluster; known: c[/]\\#033]0;T\\#007\n"
    )


def test_a_config_error_under_json_is_still_one_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[clusters]]\nname = 'a'\nhots = 'x'\n")
    message = f"{bad}: clusters[0].hots: unknown key 'hots'; did you mean 'host'?"
    run = run_cli(capsys, "sync", "--config", str(bad), "--json", "-n")
    assert run.code == 2
    assert run.err == f"sbatchman: error: {message}\n"
    assert strict_json(run.out) == {
        "schema": 1,
        "dry_run": True,
        "exit_code": 2,
        "error": message,
        "targets": [],
    }
    parsed = run_cli(capsys, "sync", "--json", "-j", "0")  # caught by the option parser
    assert parsed.code == 2
    assert strict_json(parsed.out) == {
        "schema": 1,
        "dry_run": False,
        "exit_code": 2,
        "error": "Invalid value for '-j' / '--jobs': 0 is not in the range x>=1",
        "targets": [],
    }
    assert run_cli(capsys, "sync", "-j", "0").out == ""  # no --json: stdout stays empty


@pytest.mark.ssh
@pytest.mark.parametrize("backend", ["rsync", "sftp"])
def test_hostile_names_over_ssh(
    capsys: pytest.CaptureFixture[str],
    three_clusters: list[SshServer],
    cluster_roots: dict[str, Path],
    tmp_path: Path,
    backend: str,
) -> None:
    server = three_clusters[0]
    proj = hostile_tree(tmp_path / "proj")
    remote = cluster_roots[server.name] / "p"
    cluster = ssh_cluster(
        server, [{"alias": "[/]", "local": str(proj), "remote": str(remote)}], name=TITLE
    )
    config = write_config(tmp_path / "c.toml", [cluster])
    run = run_cli(capsys, "sync", "--config", str(config), "-b", backend, "-v")
    assert run.code == 0, run.err
    assert printable(run.out) and printable(run.err)
    label = "c[/]\\#033]0;T\\#007/[/]"
    lines = set(run.out.splitlines()[:-2])
    newline = f"{label}: new\\#012line (new)"
    assert lines - {newline} == {f"{label}: {shown} (new)" for shown in SHOWN.values()} - {newline}
    assert (remote / NOT_UTF8).read_text() == "7" and (remote / ESC_NAME).read_text() == "1"


def test_a_long_name_is_never_cut_in_a_file(tmp_path: Path) -> None:
    """Two login nodes that differ at the end stay two in `sync > log`, however narrow."""
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    names = [f"leonardo-booster-login-node-number-{i}" for i in (1, 2)]
    clusters = [
        {"name": n, "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(tmp_path / n)}]}
        for n in names
    ]
    config = write_config(tmp_path / "c.toml", clusters)
    done = subprocess.run(
        [sys.executable, "-m", "sbatchman", "sync", "--config", str(config)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "30"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split()[0] for line in done.stdout.splitlines()]
    assert rows == ["cluster", *names]


def to_dev_full(*args: str, **run: Any) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:  # a real descriptor that cannot be written
        return subprocess.run(
            [sys.executable, "-m", "sbatchman", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
            **run,
        )


FULL = "sbatchman: error: cannot write to stdout: No space left on device\n"


@pytest.fixture
def many(tmp_path: Path) -> Path:
    proj = make_tree(tmp_path / "proj", {f"f{i:03d}.txt": "x\n" for i in range(300)})
    cluster = {
        "name": "l",
        "sync_dirs": [{"alias": "p", "local": str(proj), "remote": str(tmp_path / "dest")}],
    }
    return write_config(tmp_path / "c.toml", [cluster])


@pytest.mark.parametrize("flags", [["-v"], ["--json"], ["-n"]])
def test_a_full_stdout_leaves_the_sync_and_its_status_alone(many: Path, flags: list[str]) -> None:
    done = to_dev_full("sync", "--config", str(many), *flags)
    assert (done.returncode, done.stderr) == (0, FULL)
    landed = many.parent / "dest"
    if "-n" in flags:
        assert not landed.exists()
    else:
        assert len(list(landed.iterdir())) == 300


def test_a_full_stdout_keeps_a_failed_sync_failed_and_a_refusal_refused(many: Path) -> None:
    (many.parent / "dest").write_text("a file where the folder goes")
    done = to_dev_full("sync", "--config", str(many), "-v")
    assert (done.returncode, done.stderr) == (1, FULL)
    missing = many.parent / "none.toml"
    done = to_dev_full("sync", "--config", str(missing), "--json")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"sbatchman: error: no config file at {missing}; create one with `sbatchman config"
        " init` (or point --config / $SBATCHMAN_CONFIG at yours)",
        FULL.strip(),
    ]


@pytest.mark.parametrize(
    "args", [["ls"], ["config", "path"], ["--help"], ["--version"], ["sync", "-h"]]
)
def test_a_command_whose_output_is_its_result_fails_when_it_cannot_write(
    many: Path, args: list[str]
) -> None:
    done = to_dev_full(*args, env={**os.environ, "SBATCHMAN_CONFIG": str(many)})
    assert (done.returncode, done.stderr) == (1, FULL)


def test_config_init_did_its_work_whatever_stdout_did(tmp_path: Path) -> None:
    config = tmp_path / "new.toml"
    project = make_tree(tmp_path / "project", {"a.py": "a\n"})
    done = to_dev_full("config", "init", "--config", str(config), cwd=project)
    assert (done.returncode, done.stderr) == (0, FULL)
    assert config.read_text().startswith("# sbatchman remotes-config.toml")


def test_a_closed_stdout_is_as_quiet_as_before(many: Path) -> None:
    """`sbatchman sync >&-`: Python has no stdout at all; the sync runs, nothing is said."""
    for args in (["sync", "-v"], ["ls"], ["config", "path"]):
        done = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "sbatchman", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SBATCHMAN_CONFIG": str(many)},
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, ""), args
    assert len(list((many.parent / "dest").iterdir())) == 300


@pytest.mark.parametrize("flags", [["--json"], ["-v"]])
def test_a_full_stdout_keeps_an_interrupted_sync_interrupted(
    tmp_path: Path, flags: list[str]
) -> None:
    """Ctrl-C while connecting (to a server that never answers): 130, whatever stdout did."""
    proj = make_tree(tmp_path / "proj", {"a.py": "a\n"})
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cluster = {
            "name": "mute",
            "host": "127.0.0.1",
            "user": "nobody",
            "port": silent.getsockname()[1],
            "transfer_backend": "rsync",
            "sync_dirs": [{"alias": "p", "local": str(proj), "remote": "/nonexistent/p"}],
        }
        config = write_config(tmp_path / "c.toml", [cluster])
        with open("/dev/full", "w") as full:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sbatchman", "sync", "--config", str(config), *flags],
                stdout=full,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # its own process group, as a terminal's job is
            )
        silent.settimeout(60)
        connection, _ = silent.accept()  # sbatchman is connecting now
        with connection:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == FULL


def test_ls_into_a_reader_that_leaves_is_quiet(tmp_path: Path) -> None:
    """`sbatchman ls | head -1`: the rest is dropped, no traceback, no complaint."""
    proj = make_tree(tmp_path / "proj", {f"f{i:04d}": "" for i in range(3000)})
    cluster = {"name": "l", "sync_dirs": [{"alias": "p", "local": str(proj)}]}
    config = write_config(tmp_path / "c.toml", [cluster])
    proc = subprocess.Popen(
        [sys.executable, "-m", "sbatchman", "ls", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"l/")
    proc.stdout.close()
    err = proc.stderr.read()
    assert (proc.wait(timeout=60), err) == (0, b"")


def test_a_stream_closed_under_us_or_ascii_only_never_raises() -> None:
    gone = io.StringIO()
    guarded = Guarded(gone)
    gone.close()
    guarded.write("x")
    guarded.flush()
    assert not guarded.worth_saying()
    ascii_only = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    plain = Guarded(ascii_only)
    plain.write("✗ caf\u00e9\n")
    plain.flush()
    assert ascii_only.buffer.getvalue() == b"? caf?\n"
