"""The pytest plugin (entry point ``pytest11``): suite cases as items, the caller fixture.

Each test runs a real ``pytest`` in a subprocess, where the plugin is loaded through its
entry point exactly as for a user.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from suite_helpers import CASE1, EXAMPLES, copy_example, run


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rN", *args], cwd=cwd)


def test_the_example_suite_runs_as_pytest_items(tmp_path: Path) -> None:
    copy_example(tmp_path)
    proc = _pytest(tmp_path, "suite.toml", "-v")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"suite.toml::{CASE1} PASSED" in proc.stdout
    assert "2 passed" in proc.stdout


def test_a_failing_case_reports_the_expectation_and_measured_value(tmp_path: Path) -> None:
    suite = copy_example(tmp_path)
    text = suite.read_text().replace('response = "sunny"', 'response = "snowing"')
    suite.write_text(text)
    proc = _pytest(tmp_path, "--millis-suite", "suite.toml", "--millis-out-dir", "out")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 failed, 1 passed" in proc.stdout
    assert (
        f"case '{CASE1}', turn 1: response expected to contain 'snowing', measured: "
        "'It is sunny in Paris today" in proc.stdout
    )
    assert (tmp_path / "out" / "asks-the-weather-then-changes-its-mind" / "recording.wav").exists()


def test_toml_and_json_files_are_left_alone_unless_asked(tmp_path: Path) -> None:
    copy_example(tmp_path)
    (tmp_path / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    proc = _pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 passed" in proc.stdout  # only the Python test: suite.toml not collected
    (tmp_path / "pytest.ini").write_text("[pytest]\nmillis_suites = suite.toml\n")
    proc = _pytest(tmp_path, "--collect-only", "-q")
    assert "3 tests collected" in proc.stdout, proc.stdout[-3000:]
    assert f"suite.toml::{CASE1}" in proc.stdout
    # A TOML file named explicitly but without a [suite] table is not ours.
    (tmp_path / "other.toml").write_text("[tool]\nx = 1\n")
    proc = _pytest(tmp_path, "other.toml")
    assert "no tests ran" in proc.stdout


def test_a_bad_suite_is_a_collection_error_naming_the_key(tmp_path: Path) -> None:
    suite = copy_example(tmp_path)
    suite.write_text(suite.read_text().replace("barge_in_after_ms", "barge_in_ms"))
    proc = _pytest(tmp_path, "suite.toml")
    assert proc.returncode == 2
    assert "case[0].turn[1].barge_in_ms: unknown key" in proc.stdout


PY_CASE = """
SCENARIO = {scenario!r}


def test_weather_in_python(millis_caller):
    caller = millis_caller(scenario=SCENARIO)
    first = caller.say("What's the weather in Paris?")
    second = caller.barge_in("Actually, make that London.", after_ms=800)
    caller.wait_for_answer()
    first.expect_function("get_weather", city="Paris").expect_response("sunny")
    first.expect_latency(1500).expect_transcript("weather in Paris")
    second.expect_interrupted(within_ms=300).expect(function="get_weather")
    assert second.observation.interruption_ms is not None


def test_a_python_expectation_failure(millis_caller):
    caller = millis_caller(scenario=SCENARIO)
    caller.say("What's the weather in Paris?")
    caller.wait_for_answer().expect(function="get_forecast")
"""


def test_the_caller_fixture_writes_cases_in_python(tmp_path: Path) -> None:
    scenario = str(EXAMPLES / "suite_scenario.json")
    (tmp_path / "test_py_case.py").write_text(PY_CASE.format(scenario=scenario))
    proc = _pytest(tmp_path, "test_py_case.py")
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout[-3000:]
    assert (
        "turn 1: function expected 'get_forecast', measured: onfunction get_weather" in proc.stdout
    )


def test_the_caller_fixture_calls_a_real_endpoint_in_real_time(tmp_path: Path) -> None:
    from serve_helpers import serve_process

    scenario = str(EXAMPLES / "suite_scenario.json")
    test = PY_CASE.format(scenario=scenario).split("\n\ndef test_a_python")[0]
    (tmp_path / "test_live_case.py").write_text(test)
    with serve_process("--scenario", scenario) as (url, _):
        proc = _pytest(tmp_path, "--millis-endpoint", url, "test_live_case.py")
    assert "1 passed" in proc.stdout, proc.stdout[-3000:]
