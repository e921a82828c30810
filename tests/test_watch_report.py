"""The exact lines a watch prints after each pass, in text and as JSON Lines."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from sbatchman.model import Result
from sbatchman.watch import Pass
from sbatchman.watchreport import WatchView


def _results() -> list[Result]:
    ok = Result("alpha", "app", "sftp", "ok", files_sent=4, bytes_sent=2048)
    ok.sent = [(f"src/f{i}.py", "newer") for i in range(4)]
    bad = Result("beta", "app", "rsync", "failed", error="connection lost")
    return [ok, bad]


def test_text_lines_name_each_target_and_each_cluster_away() -> None:
    buffer = io.StringIO()
    view = WatchView(False, False, Console(file=buffer, width=200), clock=lambda: "12:00:01")
    view(Pass(3, _results(), ["/p/src/f0.py"], {"beta": "connection lost"}))
    view(Pass(4, [], [], {}))
    assert buffer.getvalue().splitlines() == [
        "12:00:01 alpha/app: up to date, 4 file(s), 2.0 KiB pushed: src/f0.py, src/f1.py,"
        " src/f2.py and 1 more",
        "12:00:01 ✗ beta/app: connection lost",
        "12:00:01 beta: reconnecting (connection lost)",
        "12:00:01 beta: back",
    ]


def test_json_lines_are_the_sync_document_plus_the_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    WatchView(True, False)(Pass(2, _results(), ["/p/src/f0.py"], {"beta": "connection lost"}))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert (document["pass"], document["changed"]) == (2, ["/p/src/f0.py"])
    assert document["reconnecting"] == {"beta": "connection lost"}
    assert [t["status"] for t in document["targets"]] == ["ok", "failed"]
    assert document["exit_code"] == 1 and document["schema"] == 1
