"""The push's look may start ahead of need: used once, for the same command only, and an unused
one never holds up the end of a run. Real child processes (a shell that reports its pid)."""

from __future__ import annotations

import subprocess
import time

from sbatchman.backends.rsync_ask import Asker

# Prints its own pid, then what came on stdin: which process answered, and that it got it all.
ECHO = ["sh", "-c", "echo $$; cat"]


def _asker() -> tuple[Asker, set[subprocess.Popen[bytes]]]:
    running: set[subprocess.Popen[bytes]] = set()
    return Asker(running, 10.0, lambda: False), running


def test_the_command_started_ahead_answers_the_next_ask_with_the_same_argv() -> None:
    ask, running = _asker()
    ask.start_ahead(ECHO)
    (ahead,) = running
    rc, out, _ = ask(ECHO, b"paths\0", {})
    assert rc == 0 and out.split(b"\n", 1) == [str(ahead.pid).encode(), b"paths\0"]
    rc, again, _ = ask(ECHO, b"more", {})  # used once: the next ask starts its own
    assert rc == 0 and again.split(b"\n", 1)[0] != str(ahead.pid).encode()
    assert not running


def test_another_command_or_environment_does_not_take_it() -> None:
    ask, running = _asker()
    ask.start_ahead(ECHO)
    (ahead,) = running
    _, out, _ = ask(["sh", "-c", "echo other"], b"", {})
    assert out == b"other\n"
    _, out, _ = ask(ECHO, b"", {"TZ": "UTC0"})  # the look's fallback sets one: not the same
    assert out.split(b"\n", 1)[0] != str(ahead.pid).encode()
    assert running == {ahead}
    ask.close()
    assert not running and ahead.poll() is not None


def test_an_unused_command_is_stopped_at_close_not_waited_for() -> None:
    """A cluster that stopped answering never ends its side: close must not wait for it."""
    ask, running = _asker()
    ask.start_ahead(["sleep", "60"])
    (ahead,) = running
    started = time.monotonic()
    ask.close()
    assert ahead.poll() is not None and time.monotonic() - started < 30
    assert not running
