"""A real ``millis-proto serve`` process on a free loopback port, for tests."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXE = str(Path(sys.executable).with_name("millis-proto"))


@contextmanager
def serve_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``millis-proto serve --port 0 ARGS``; yield its ws:// URL and the process.

    On exit the server is stopped; its remaining stdout (one line per session event) is
    left readable through ``process.stdout``.
    """
    server = subprocess.Popen(
        [EXE, "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.search(r"(ws://\S+)", first)
        assert match, f"serve did not start: {first!r}"
        yield match.group(1), server
    finally:
        server.terminate()
        server.wait(timeout=10)
