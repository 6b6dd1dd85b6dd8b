"""Running the real ``millis-proto`` command in tests: one way, shared by every directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The installed command (the console script next to this interpreter).
EXE = str(Path(sys.executable).with_name("millis-proto"))
#: The bundled spoken question.
DEMO_WAV = Path(__file__).parents[1] / "transports" / "cli" / "data" / "demo.wav"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: CI mode (no live view), no key from the caller's shell."""
    env = {**os.environ, "CI": "true", **(extra or {})}
    if "MILLIS_PUBLIC_KEY" not in (extra or {}):
        env.pop("MILLIS_PUBLIC_KEY", None)
    return env


def run_command(
    command: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end (bounded by ``timeout``), text output captured."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=cli_env(env),
        check=False,
        **kw,
    )


def run(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``millis-proto ARGS...``."""
    return run_command([EXE, *args], timeout=timeout, env=env, **kw)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSONL event log, every line checked to carry a time and an event name."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(e["t"], (int, float)) and isinstance(e["event"], str) for e in events)
    return events


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``millis-proto: ...`` line on stderr (and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("millis-proto: "), proc.stderr
    return lines[0]
