"""stdout and stderr that may fill up or go away: output is dropped, the run goes on, main says so.

A sync's exit status says how the push went. A full disk under `> log`, or a reader that left
(`| head`), must neither stop the push half-way (the -v lines are written from worker threads),
nor end in a traceback, nor let Python's own flush at exit (status 120) replace that status.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from typing import TextIO


class Guarded(io.TextIOBase):
    """A text stream whose first failed write points its descriptor at /dev/null.

    Later writes then go nowhere without error, and so does the interpreter's flush at exit.
    `lost` keeps that first failure; a reader that left (EPIPE) is not one worth a word.
    No `buffer` attribute on purpose: writers that find one (click) would write around us.
    """

    def __init__(self, inner: TextIO | None) -> None:
        super().__init__()
        self._inner = inner
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self._inner is not None and self.lost is None:
            try:
                try:
                    self._inner.write(text)
                except UnicodeEncodeError:  # an ASCII-only locale: `?` rather than a crash
                    self._inner.write(text.encode(self.encoding, "replace").decode(self.encoding))
            except OSError as err:
                self._drop(err)
            except ValueError:  # closed under us: as a closed stdout, nothing to say
                self._inner = None
        return len(text)

    def flush(self) -> None:
        if self._inner is not None and self.lost is None:
            try:
                self._inner.flush()
            except OSError as err:
                self._drop(err)
            except ValueError:
                self._inner = None

    def worth_saying(self) -> bool:
        """Lost for a reason other than the reader leaving (`| head`, a closed stdout)."""
        return self.lost is not None and self.lost.errno not in (errno.EPIPE, None)

    def _drop(self, err: OSError) -> None:
        self.lost = err
        inner = self._inner
        assert inner is not None
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, inner.fileno())
            finally:
                os.close(null)
        with contextlib.suppress(OSError, ValueError):
            inner.flush()  # what is still buffered drains into /dev/null, not at exit

    # What rich and click look at to decide how to write.
    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._inner is not None and self.lost is None and self._inner.isatty()

    def fileno(self) -> int:
        if self._inner is None:
            raise io.UnsupportedOperation("no stream")
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._inner, "encoding", None) or "utf-8"

    @encoding.setter
    def encoding(self, value: str) -> None:
        raise AttributeError("encoding is the wrapped stream's")

    @property
    def errors(self) -> str | None:
        return getattr(self._inner, "errors", None)

    @errors.setter
    def errors(self, value: str | None) -> None:
        raise AttributeError("errors is the wrapped stream's")
