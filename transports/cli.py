"""Command-line entry point (filled in by the CLI work)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the ``millis-proto`` command."""
    sys.stderr.write("millis-proto: the command-line interface is not built yet.\n")
    return 2
