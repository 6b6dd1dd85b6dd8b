"""Every ``python`` block of the README runs, against a local ``millis-proto serve``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
EXE = str(Path(sys.executable).with_name("millis-proto"))


def test_readme_has_the_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, local_url: str) -> None:
    env = {**os.environ, "MILLIS_ENDPOINT": local_url}
    for var in ("MILLIS_PUBLIC_KEY", "MILLIS_AGENT_ID"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()  # every example prints what it got
