"""Lets `python -m sbatchman` behave exactly like the installed command: both start in run().

Once main() is done, the process ends without the interpreter's teardown. Freeing every object
of typer, rich, paramiko and cryptography one by one costs a run 60-100 ms, more than the round
trips of a fetch that finds nothing to do, and buys nothing: every file and connection is
closed by then. What a normal exit still owes is kept: stdout and stderr are flushed and the
atexit handlers run. While any other non-daemon thread still runs, or a flush fails, Python
exits the usual way instead, so it waits for that thread or reports the failure as before.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from sbatchman.cli import main


def run() -> None:
    """The console script's entry point (and `python -m sbatchman`)."""
    try:
        main()
    except SystemExit as done:
        if isinstance(done.code, int) and _done_with_everything():
            atexit._run_exitfuncs()
            os._exit(done.code)
        raise


def _done_with_everything() -> bool:
    """No other thread that Python would wait for, and stdout and stderr drained."""
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return False
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


if __name__ == "__main__":
    run()
