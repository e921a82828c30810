"""Child processes that end with sbatchman, even when it is killed outright (SIGKILL).

Kept out of ssh.py and the backends because it is about processes, not protocols: any code that
starts a long-running helper (rsync, ssh) passes `preexec_fn=die_with_parent()`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


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
