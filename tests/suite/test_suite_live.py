"""The same suite, unchanged, against a real ``millis-proto serve`` over sockets, in real time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from serve_helpers import serve_process
from suite_helpers import EXAMPLES, EXE, run

SHORT = """
[suite]
name = "short live"
scenario = "suite_scenario.json"

[[case]]
name = "one question, interrupted"
[[case.turn]]
say = "What's the weather in Paris?"
[case.turn.expect]
transcript = "weather in Paris"
function = "get_weather"
params = { city = "Paris" }
latency_ms = 2000
[[case.turn]]
say = "Actually, make that London."
barge_in_after_ms = 500
[case.turn.expect]
interrupted_within_ms = 500
function = "get_weather"
params = { city = "London" }
"""


def _run(suite: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run([EXE, "test", str(suite), "--endpoint", url, *extra])


def test_a_short_suite_against_serve_in_real_time(tmp_path: Path) -> None:
    suite = tmp_path / "short.toml"
    suite.write_text(SHORT)
    (tmp_path / "suite_scenario.json").write_bytes((EXAMPLES / "suite_scenario.json").read_bytes())
    with serve_process("--scenario", str(EXAMPLES / "suite_scenario.json")) as (url, _):
        started = time.monotonic()
        proc = _run(suite, url, "--out-dir", str(tmp_path / "out"))
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS one question, interrupted" in proc.stdout
    # Real time: the greeting (~2.5 s), two utterances and the answers' starts take
    # several seconds of wall clock, unlike the virtual runs.
    assert elapsed > 5, elapsed


@pytest.mark.slow
def test_the_example_suite_unchanged_against_serve(tmp_path: Path) -> None:
    with serve_process("--scenario", str(EXAMPLES / "suite_scenario.json")) as (url, _):
        proc = _run(EXAMPLES / "suite.toml", url, "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 passed" in proc.stdout
