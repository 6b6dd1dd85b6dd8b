"""``millis-proto load`` as a user runs it: real processes, real sockets, loopback only.

Short bounded runs in the default suite (a few to 20 sessions, seconds each); the
200-session run of the issue is ``slow``. The local agent is a ``serve`` process that the
command starts itself, or an independent scripted ``websockets`` server for failures.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from scripted_server import ScriptedConnection, ScriptedServer

METRICS = (
    "connect_ms",
    "answer_ms",
    "turn_ms",
    "ping_rtt_ms",
    "send_lateness_ms",
    "call_s",
    "agent_lateness_ms",
)


def load(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run("load", "--plain", *args, timeout=timeout)


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def assert_percentiles(metric: dict[str, Any]) -> None:
    assert metric["count"] > 0
    values = [metric[k] for k in ("p50", "p90", "p95", "p99", "max")]
    assert all(isinstance(v, (int, float)) and v >= 0 for v in values)
    assert values == sorted(values)


def test_twenty_sessions_against_the_local_agent(tmp_path: Path) -> None:
    out, table = tmp_path / "s.json", tmp_path / "s.csv"
    proc = load(
        "--sessions", "20", "--calls", "20", "--ramp", "40", "--json", str(out),
        "--csv", str(table),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    s = report(out)
    assert s["endpoint"] == "local" and s["sessions"] == 20
    assert s["callers_connected"] == 20
    assert s["calls"] == {"started": 20, "connected": 20, "ok": 20, "failed": 0}
    assert s["errors"] == {} and s["close_codes"] == {"1000": 20}
    # Every call spoke the bundled question and heard the echo agent answer it.
    for name in ("connect_ms", "turn_ms", "answer_ms", "send_lateness_ms", "call_s"):
        assert_percentiles(s["metrics"][name])
    assert s["metrics"]["connect_ms"]["count"] == 20
    assert s["metrics"]["turn_ms"]["count"] == 20
    assert s["metrics"]["ping_rtt_ms"]["count"] > 20
    # The echo agent waits for ~0.6 s of silence before it answers.
    assert 300 < s["metrics"]["turn_ms"]["p50"] < 5000
    assert s["pacing"]["frames"] >= 20 * 4 * 50
    # Our own cost is reported too: the CPU of the run, per frame sent.
    assert s["pacing"]["cpu_s"] > 0
    cpu_us = s["pacing"]["cpu_us_per_frame"]
    assert cpu_us == pytest.approx(1e6 * s["pacing"]["cpu_s"] / s["pacing"]["frames"], rel=0.01)
    assert len(s["load_average"]) == 3
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [r["metric"] for r in rows] == list(METRICS)
    by_metric = {r["metric"]: r for r in rows}
    assert int(by_metric["turn_ms"]["count"]) == 20
    assert float(by_metric["turn_ms"]["p95"]) == s["metrics"]["turn_ms"]["p95"]
    # The summary table and the periodic lines are on stdout.
    assert "turn_ms" in proc.stdout and "close codes: 1000 x20" in proc.stdout
    assert "active" in proc.stdout
    assert "µs CPU each" in proc.stdout


def test_duration_runs_callers_again_and_again_over_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = load(
        "--sessions", "6", "--duration", "5", "--workers", "2", "--idle-timeout", "0.2",
        "--input", str(short_wav(tmp_path)), "--json", str(out), "--agent-pacing",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    s = report(out)
    assert s["workers"] == 2 and s["callers_connected"] == 6
    # The agent's audio was timed against real time, frame by frame.
    assert_percentiles(s["metrics"]["agent_lateness_ms"])
    # Each call lasts about 3 s (1 s of speech, the echo, hang-up): in 5 s every caller
    # places a second one, which the deadline cuts.
    assert s["calls"]["started"] > 6
    assert s["calls"]["failed"] == 0 and s["errors"] == {}
    assert s["metrics"]["connect_ms"]["count"] == s["calls"]["connected"]
    assert s["metrics"]["turn_ms"]["count"] >= 6
    # Merged across the processes: the count is every call's, not one worker's.
    assert s["metrics"]["call_s"]["count"] == s["calls"]["started"]
    assert 4 <= s["elapsed_s"] < 30


def short_wav(tmp_path: Path) -> Path:
    """One second of a 440 Hz tone and half a second of silence (voiced, then quiet)."""
    import numpy as np
    import soundfile as sf

    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "short.wav"
    sf.write(path, np.concatenate([tone, np.zeros(8000)]), 16000, subtype="PCM_16")
    return path


def test_a_saturated_load_generator_is_reported_as_such(tmp_path: Path) -> None:
    # 1 ms frames x 30 sessions is 30,000 sends a second: more than one Python process
    # keeps up with, so our own frames go out late and the report must say so.
    out = tmp_path / "s.json"
    proc = load(
        "--sessions", "30", "--duration", "3", "--chunk-ms", "1", "--ramp", "1000",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    s = report(out)
    assert s["pacing"]["saturated"] is True
    assert s["pacing"]["on_time_ratio"] < 0.95
    assert "the load generator was saturated" in proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_refused_connections_are_counted_by_kind_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    url = f"ws://127.0.0.1:{free_port()}/millis"
    proc = load("--endpoint", url, "--sessions", "3", "--calls", "3", "--json", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines == ["millis-proto: 3 of 3 calls failed (ConnectionFailed:REFUSED x3)."]
    s = report(out)  # the report is written before the exit
    assert s["errors"] == {"ConnectionFailed:REFUSED": 3}
    assert s["callers_connected"] == 0 and s["metrics"]["connect_ms"]["count"] == 0
    assert s["metrics"]["connect_ms"]["p50"] is None


async def close_1011_after_ready(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.at(0.3)
    await conn.ws.close(1011, "internal error")


def test_server_error_closes_are_counted_by_code(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    with ScriptedServer(close_1011_after_ready) as server:
        proc = load("--endpoint", server.url, "--sessions", "1", "--calls", "2", "--json", str(out))
    assert proc.returncode == 1
    assert "2 of 2 calls failed (ConnectionClosedByServer:1011 x2)" in proc.stderr
    s = report(out)
    assert s["close_codes"] == {"1011": 2}
    assert s["calls"]["connected"] == 2 and s["metrics"]["connect_ms"]["count"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sessions", "0"], "--sessions must be 1 to"),
        (["--workers", "0"], "--workers must be 1 to"),
        (["--duration", "-1"], "--duration must be more than 0"),
        (["--ramp", "0"], "--ramp must be a positive"),
        (["--input", "/nonexistent.wav"], "/nonexistent.wav"),  # like talk: exit 1
    ],
)
def test_bad_flags_and_files_exit_with_one_sentence(flags: list[str], message: str) -> None:
    proc = load(*flags, timeout=30)
    assert proc.returncode == (1 if "--input" in flags else 2), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_duration_and_calls_are_exclusive() -> None:
    proc = load("--duration", "5", "--calls", "5", timeout=30)
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_an_unwritable_report_exits_1_after_the_summary(tmp_path: Path) -> None:
    proc = load("--sessions", "1", "--calls", "1", "--input", str(short_wav(tmp_path)),
                "--idle-timeout", "0.2", "--json", "/dev/full")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("millis-proto: --json /dev/full: cannot write it")
    assert "turn_ms" in proc.stdout  # the summary was shown before


@pytest.mark.slow
def test_two_hundred_sessions_for_twenty_seconds(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = load("--sessions", "200", "--duration", "20", "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    s = report(out)
    assert s["callers_connected"] == 200 and s["calls"]["failed"] == 0
    for name in ("connect_ms", "send_lateness_ms", "ping_rtt_ms", "call_s"):
        assert_percentiles(s["metrics"][name])
    print(json.dumps({k: s[k] for k in ("calls", "pacing", "load_average")}))


ROOT = Path(__file__).resolve().parents[2]


def test_suite_cases_as_calls(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = load(
        "--suite", str(ROOT / "examples" / "suite.toml"), "--sessions", "2", "--calls", "2",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    s = report(out)
    # Each call played one case of the suite (both cases: 3 + 1 turns) and passed it.
    assert s["calls"] == {"started": 2, "connected": 2, "ok": 2, "failed": 0}
    assert s["metrics"]["turn_ms"]["count"] == 4
    for name in ("connect_ms", "turn_ms", "send_lateness_ms", "ping_rtt_ms"):
        assert_percentiles(s["metrics"][name])


def test_a_failed_suite_verdict_is_a_failed_call(tmp_path: Path) -> None:
    suite = tmp_path / "strict.toml"
    suite.write_text(
        '[suite]\nname = "strict"\n\n[[case]]\nname = "too strict"\n\n'
        '[[case.turn]]\nsay = "Hello there"\n[case.turn.expect]\nlatency_ms = 1\n',
        encoding="utf-8",
    )
    out = tmp_path / "s.json"
    proc = load("--suite", str(suite), "--sessions", "1", "--calls", "1", "--json", str(out))
    assert proc.returncode == 1
    assert "1 of 1 calls failed (Verdict:" in proc.stderr
    s = report(out)
    assert s["calls"]["failed"] == 1 and s["metrics"]["turn_ms"]["count"] == 1
    assert s["metrics"]["turn_ms"]["p50"] > 1


async def ready_then_silent(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.at(20)  # never answers (the client hangs up first)


def test_speech_without_an_answer_is_a_failed_call(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    with ScriptedServer(ready_then_silent) as server:
        proc = load(
            "--endpoint", server.url, "--sessions", "1", "--calls", "1",
            "--input", str(short_wav(tmp_path)), "--idle-timeout", "0.2",
            "--answer-timeout", "1", "--json", str(out),
        )  # fmt: skip
    assert proc.returncode == 1
    assert "1 of 1 calls failed (NoAnswer x1)" in proc.stderr
    s = report(out)
    assert s["errors"] == {"NoAnswer": 1} and s["close_codes"] == {"1000": 1}
    assert s["metrics"]["turn_ms"]["count"] == 0
    # Hung up about a second after the end of the speech (1 s of tone).
    assert 2.0 <= s["metrics"]["call_s"]["p50"] < 10
