"""Helpers shared by the suite tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXE = str(Path(sys.executable).with_name("millis-proto"))
#: The first case of examples/suite.toml.
CASE1 = "asks the weather, then changes its mind"


def copy_example(where: Path) -> Path:
    """Copy the example suite and its scenario into ``where``; the suite's path."""
    for name in ("suite.toml", "suite_scenario.json"):
        shutil.copy(EXAMPLES / name, where / name)
    return where / "suite.toml"


def run(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (bounded), capturing its text output."""
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
