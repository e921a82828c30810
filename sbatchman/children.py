"""Child processes: they end with sbatchman (even on SIGKILL), and talking to them never hangs.

Kept out of ssh/ and the backends because it is about processes, not protocols: any code that
starts a long-running helper (rsync, ssh) passes `preexec_fn=die_with_parent()`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO

_POLL = 0.1  # seconds between looks at a quiet child
# After a short read, output gathers this long before the next: rsync writes a line per file,
# and reading each as it came (15,000 reads for 50,000 small files) cost this process a
# quarter of a second of CPU that the transfer, CPU-bound on a small machine, needed. A
# pipe holds 64 KiB, far more than rsync writes in this time, so rsync never waits for it.
_GATHER = 0.01
GRACE = 1.0  # how long output may trail the child's exit; readers end within it


def die_with_parent() -> Callable[[], None] | None:
    """A Popen preexec_fn that makes the child get SIGTERM when we die (Linux), else None.

    Without it a SIGKILLed sbatchman leaves rsync sending to the end. SIGTERM lets rsync
    remove its temporary file. Linux sends the signal when the *thread* that started the
    child ends, so children are started from the threads that wait for them (the worker
    of each push). The ssh master forks itself into the background (-f) and a forked child
    loses the setting: it ends on its own once idle for ControlPersist.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # we died before the line above: nobody would signal
            os._exit(1)

    return arm


def output_of(proc: subprocess.Popen[bytes], stdout: IO[bytes]) -> Iterator[bytes]:
    """A child's output until EOF, or until the child has exited and nothing more comes.

    The pipe may outlive the child: ssh passes its descriptors to the ControlMaster, which
    holds them until the cluster ends the session, and a silent cluster never does. Reading to
    EOF would then outlast every timeout and signal."""
    quiet = 0.0
    while True:
        try:
            ready, _, _ = select.select([stdout], [], [], _POLL)
            chunk = os.read(stdout.fileno(), 65536) if ready else None
        except (OSError, ValueError):  # closed by the caller, which stopped waiting for it
            return
        if chunk is not None:
            if not chunk:
                return
            quiet = 0.0
            yield chunk
            if len(chunk) < 65536:
                time.sleep(_GATHER)
        elif proc.poll() is not None:
            quiet += _POLL
            if quiet >= GRACE:
                return


def feed(pipe: IO[bytes], data: bytes | Callable[[], bytes], failed: list[BaseException]) -> None:
    """Write a child's whole stdin; a callable makes it first (the child starts meanwhile).
    If that fails the child gets nothing, and `failed` holds why, for the caller to report."""
    try:
        pipe.write(data() if callable(data) else data)
    except BrokenPipeError:  # the child died early; its exit code says why
        pass
    except Exception as err:
        failed.append(err)
    with contextlib.suppress(BrokenPipeError):
        pipe.close()
