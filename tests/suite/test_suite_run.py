"""Running suites offline: verdicts, files, determinism, failures, the ``test`` command."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from suite_helpers import CASE1, EXAMPLES, EXE, copy_example, run

from transports.suite import load_suite, run_suite


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([EXE, "test", *args], cwd=cwd)


def test_example_passes_and_virtual_runs_are_identical(tmp_path: Path) -> None:
    loaded = load_suite(EXAMPLES / "suite.toml")
    first, *others = (run_suite(loaded, out_dir=tmp_path / d) for d in "abc")
    assert first.passed, [v.message for r in first.results for v in r.failures]
    pairs = [p for other in others for p in zip(first.results, other.results, strict=True)]
    for a, b in pairs:
        assert a.verdicts == b.verdicts
        assert a.observation == b.observation
        assert a.directory is not None and b.directory is not None
        for name in ("recording.wav", "events.jsonl", "verdicts.json"):
            assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name
    result = first.results[0]
    turns = result.observation.turns
    # The local agent answers after end_silence_ms (600 ms) of silence: turn latency.
    assert all(600 <= t.received_ms <= 700 for t in turns if t.received_ms is not None)
    assert turns[1].barge_in and turns[1].interruption_ms is not None
    assert turns[1].interruption_ms <= 100
    assert result.observation.session_ended


def test_out_dir_holds_recording_jsonl_and_verdicts(tmp_path: Path) -> None:
    proc = _cli(str(EXAMPLES / "suite.toml"), "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    case = tmp_path / "asks-the-weather-then-changes-its-mind"
    with wave.open(str(case / "recording.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        seconds = w.getnframes() / 16000
    verdicts = json.loads((case / "verdicts.json").read_text())
    assert verdicts["passed"] is True
    assert abs(seconds - verdicts["duration_ms"] / 1000) < 0.1
    events = [json.loads(line) for line in (case / "events.jsonl").read_text().splitlines()]
    names = {e["event"] for e in events}
    assert {"onready", "onfunction", "turn_latency", "caller_speech", "interruption"} <= names
    assert {"pause", "clear", "onsessionended", "transcript_wer"} <= names
    latency = [e for e in events if e["event"] == "turn_latency"]
    assert [e["turn"] for e in latency] == [1, 2, 3]
    assert "local-test-key" not in (case / "events.jsonl").read_text()


def test_cli_passes_offline_in_seconds_with_junit_and_report(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _cli(
        str(EXAMPLES / "suite.toml"), "--junit", "j.xml", "--report", "r.html", cwd=tmp_path
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"PASS {CASE1}" in proc.stdout
    assert "2 of 2 passed" in proc.stdout
    assert elapsed < 60, f"took {elapsed:.1f} s"  # ~5 s on an idle machine; 23 s of calls
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    assert next(c.get("name") for c in suite.iter("testcase")) == CASE1
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:audio/wav;base64,") == 2
    assert "<svg" in page and "get_weather" in page


def test_a_changed_expectation_fails_with_exit_1_naming_turn_and_value(tmp_path: Path) -> None:
    suite = copy_example(tmp_path)
    text = suite.read_text()
    suite.write_text(text.replace('function = "get_weather"', 'function = "get_forecast"', 1))
    proc = _cli(str(suite), "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = (
        f"case '{CASE1}', turn 1: function expected 'get_forecast', "
        'measured: onfunction get_weather {"city": "Paris", "unit": "celsius"}'
    )
    assert expected in proc.stdout
    assert f"FAIL {CASE1}" in proc.stdout
    assert "1 of 2 passed, 1 failed" in proc.stdout
    assert proc.stderr == ""
    failure = ET.parse(tmp_path / "j.xml").getroot().find("testcase/failure")
    assert failure is not None and expected in (failure.get("message") or "")


def test_a_bad_suite_exits_2_with_one_sentence(tmp_path: Path) -> None:
    suite = copy_example(tmp_path)
    suite.write_text(suite.read_text().replace("latency_ms = 2000", "latency = 2000"))
    proc = _cli(str(suite))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"millis-proto: {suite}: case[0].turn[0].expect.latency:")
    assert "unknown key" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert _cli(str(tmp_path / "missing.toml")).returncode == 2
    assert _cli(str(suite), "--repeat", "0").returncode == 2


def test_repeat_reports_pass_rates_and_concurrency_keeps_verdicts(tmp_path: Path) -> None:
    proc = _cli(
        str(EXAMPLES / "suite.toml"), "--repeat", "2", "--concurrency", "2",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{CASE1}: 2/2 passed (100%)" in proc.stdout
    runs = sorted(p.name for p in (tmp_path / "asks-the-weather-then-changes-its-mind").iterdir())
    assert runs == ["run-1", "run-2"]
    one, two = (
        tmp_path / "asks-the-weather-then-changes-its-mind" / r / "recording.wav" for r in runs
    )
    assert one.read_bytes() == two.read_bytes()  # concurrent virtual runs do not interfere


def test_a_silent_answer_fails_the_turn_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "quiet.json").write_text(json.dumps({"turns": [{"transcript": "hi"}]}))
    (tmp_path / "s.toml").write_text(
        '[suite]\nname = "quiet"\nscenario = "quiet.json"\n'
        '[[case]]\nname = "no answer"\n[[case.turn]]\nsay = "Hello, anyone there?"\n'
        'timeout_ms = 2000\n[case.turn.expect]\nresponse = "hello"\n'
    )
    proc = _cli(str(tmp_path / "s.toml"))
    assert proc.returncode == 1
    assert (
        "case 'no answer', turn 1: answer expected within the turn's timeout, measured: "
        "no agent audio within 2 s of the end of the caller's speech." in proc.stdout
    )
    assert "turn 1: response expected to contain 'hello', measured: no onresponsetext" in (
        proc.stdout
    )


def test_an_unreachable_endpoint_fails_cases_not_the_command(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _cli(str(EXAMPLES / "suite.toml"), "--endpoint", f"ws://127.0.0.1:{port}/x")
    assert proc.returncode == 1, proc.stderr
    assert "turn not reached" in proc.stdout and "refused" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--public-key", "--agent-id"])
def test_endpoint_flags_need_an_endpoint(flag: str) -> None:
    proc = _cli(str(EXAMPLES / "suite.toml"), flag, "x")
    assert proc.returncode == 2
    assert "need --endpoint" in proc.stderr


def test_unwritable_outputs_fail_with_one_sentence(tmp_path: Path) -> None:
    proc = _cli(str(EXAMPLES / "suite.toml"), "--report", str(tmp_path / "no" / "such" / "r.html"))
    assert proc.returncode == 1
    assert proc.stdout == ""  # refused before running anything
    assert proc.stderr.startswith("millis-proto: cannot write --report")
    proc = _cli(str(EXAMPLES / "suite.toml"), "--junit", "/dev/full")  # a full device
    assert proc.returncode == 1
    assert "cannot write --junit '/dev/full' (No space left on device)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_live_progress_on_a_tty() -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [EXE, "test", str(EXAMPLES / "suite.toml")],
            stdout=follower,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child side is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    text = out.decode()
    assert proc.returncode == 0, proc.stderr
    assert "0/2 done, 0 passing, 1 running" in text
    assert "1/2 done, 1 passing, 1 running" in text
    assert "\r\x1b[2K" in text  # the status line is rewritten in place
    assert f"PASS {CASE1}" in text
