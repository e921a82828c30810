"""Ask a person on the controlling terminal (/dev/tty), never on stdin or stdout.

stdin and stdout may carry data or be piped into another program, and a prompt there would
either corrupt it or hang unseen; /dev/tty is what ssh and getpass use. A process without a
controlling terminal cannot be asked at all: that is NoTerminal, and callers treat it like
batch mode. What is written there may come from a server (keyboard-interactive titles and
prompts) or a config (a cluster's name): its control characters are shown, never obeyed.
"""

from __future__ import annotations

import contextlib
import io
import os
import termios
from collections.abc import Iterator

from sbatchman.names import show_text


class NoTerminal(Exception):
    """/dev/tty cannot be opened: this process has no controlling terminal to ask on."""


def ask(prompt: str, *, echo: bool) -> str:
    """Ask on the controlling terminal (never stdin/stdout: those may carry data or be piped)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise NoTerminal from None
    with open(fd, "r+b", buffering=0) as tty:
        old = None
        if not echo:  # before the prompt appears, so a fast typist's answer is never echoed
            with contextlib.suppress(termios.error):
                old = termios.tcgetattr(fd)
                new = termios.tcgetattr(fd)
                new[3] &= ~termios.ECHO
                termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        tty.write(_shown(prompt).encode())
        try:
            line = _read_line(tty)
        finally:
            if old is not None:
                termios.tcsetattr(fd, termios.TCSAFLUSH, old)
                tty.write(b"\n")
    return line


def _read_line(tty: io.RawIOBase) -> str:
    data = bytearray()
    while True:
        chunk = tty.read(1)
        if not chunk or chunk in (b"\n", b"\r"):
            return data.decode("utf-8", "replace")
        data += chunk


def available() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def restored_on_interrupt() -> Iterator[None]:
    """Put the terminal's settings (echo) back if the block is interrupted."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield
        return
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        os.close(fd)
        yield
        return
    try:
        yield
    except BaseException:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
        raise
    finally:
        os.close(fd)


def write(text: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
        with open(fd, "wb", buffering=0) as tty:
            tty.write(_shown(text).encode())


def _shown(text: str) -> str:
    """Each line printable (ESC as \\#033, as everywhere else); the line breaks stay."""
    return "\n".join(show_text(line) for line in text.split("\n"))
