"""What the command prints, and the files it writes, when the other end may be gone.

* :class:`Lines` — line output for a person (stdout, or stderr when stdout carries data)
  that goes quiet when its reader has gone (``millis-proto demo | head -1``): the rest of
  the run still happens and every file is still finalized.
* :func:`stdout_closed` — after a broken pipe, point stdout at the null device so that
  nothing, not even the interpreter's last flush, fails on it again.
* :class:`OutputError` — a file or directory the command was asked to write cannot be
  used; the message says which flag, why, and what to do.
* :data:`STDOUT` — the ``-`` that ``--output``, ``--events`` and ``--record`` take for stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from millis_proto import MillisError

__all__ = ["STDOUT", "Lines", "OutputError", "ensure_directory", "stdout_closed"]

#: The file name meaning "standard output".
STDOUT = "-"


class OutputError(MillisError):
    """A file or directory the command writes cannot be used (exit status 1)."""


def stdout_closed() -> None:
    """Send whatever is still written to stdout to the null device."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass


class Lines:
    """Writes lines to ``stream`` and flushes each; silent after the reader has gone."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.gone = False

    def write(self, line: str) -> None:
        """Write one line (a newline is added)."""
        if self.gone:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.gone = True
            if self.stream is sys.stdout:
                stdout_closed()


def ensure_directory(path: str | Path, flag: str) -> Path:
    """Create directory ``path`` (and its parents) for ``flag``; :class:`OutputError` if not."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OutputError(
            f"cannot create {flag} {os.fspath(path)!r} ({why}); pass a directory you can write to."
        ) from None
    return directory
