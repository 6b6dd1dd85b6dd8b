"""The real ``millis-proto talk`` against an independent, scripted ``websockets`` server.

The server (``scripted_server.py``) shares no code with the package: it plays a Millis
timeline on its own clock — audio bursts in odd-sized binary frames, pause / unpause /
clear, session end, dropped connections, error closes, TLS — and the tests read what the
CLI wrote. Agent audio carries its own sample index (``marker_pcm``: value ``1 + i % 30000``,
never zero), so the output WAV can be checked sample for sample: the order and completeness
of what was played are checked exactly; only *where* on the timeline it landed is checked
with a tolerance, because the run is real time over loopback.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import one_error_line, read_events, run
from scripted_server import ScriptedConnection, ScriptedServer, marker_pcm

RATE = 16000
#: Wall-clock tolerance for where a server-timed event lands in the output, in seconds.
#: The pause/unpause/clear messages and the audio travel the same loopback socket, so only
#: scheduling jitter counts: the server thread's sleep overshoot, the CLI's 20 ms playback
#: block (an event takes effect at the next block boundary) and a loaded 2-core box
#: delaying either process. 150 ms is >7 blocks — far above the jitter seen in practice
#: (see the report figures), far below the 1 s features being measured.
TOL_S = 0.15
SECRET = "pk-SECRET-scripted-9f3"


def user_wav(tmp_path: Path, seconds: float = 1.0) -> Path:
    """A quiet 440 Hz tone: the user's side of the call (the server only counts it)."""
    t = np.arange(round(seconds * RATE)) / RATE
    path = tmp_path / "user.wav"
    sf.write(path, (2000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), RATE, subtype="PCM_16")
    return path


def talk(
    tmp_path: Path,
    url: str,
    *extra: str,
    env: dict[str, str] | None = None,
    idle_timeout: str = "1",
    max_duration: str = "15",
) -> subprocess.CompletedProcess[str]:
    return run(
        "talk",
        "--endpoint",
        url,
        "--agent-id",
        "a",
        "--plain",
        "--input",
        str(user_wav(tmp_path)),
        "--output",
        str(tmp_path / "out.wav"),
        "--events",
        str(tmp_path / "ev.jsonl"),
        "--idle-timeout",
        idle_timeout,
        "--max-duration",
        max_duration,
        *extra,
        env=env,
    )


def played(path: Path) -> np.ndarray:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    audio, _ = sf.read(path, dtype="int16")
    return np.asarray(audio, dtype=np.int64)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


# --- 1. pause / unpause / clear, sample for sample ---------------------------------------

FIRST_N = 3 * RATE  # first answer: 3 s, one burst
SECOND_N = RATE  # second answer: 1 s
T_BURST, T_PAUSE, T_UNPAUSE, T_CLEAR, T_SECOND, T_END = 0.5, 1.5, 2.5, 3.5, 4.0, 5.3


async def pause_unpause_clear(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.at(T_BURST)
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(FIRST_N))
    await conn.at(T_PAUSE)
    await conn.send("pause")
    await conn.at(T_UNPAUSE)
    await conn.send("unpause")
    await conn.at(T_CLEAR)
    await conn.send("clear")
    await conn.at(T_SECOND)
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(SECOND_N, sign=-1), sizes=(3, 4097, 999))
    await conn.at(T_END)
    await conn.send("onsessionended", data={"reason": "done"})
    await conn.ws.close(1000)


def test_pause_unpause_clear_are_applied_sample_exactly(tmp_path: Path) -> None:
    with ScriptedServer(pause_unpause_clear) as server:
        proc = talk(tmp_path, server.url, idle_timeout="2")
    assert proc.returncode == 0, proc.stderr
    assert server.initiate == {
        "method": "initiate",
        "data": {"public_key": "local-test-key", "agent": {"agent_id": "a"}},
    }
    assert server.audio_bytes >= 2 * RATE  # the 1 s input went up

    out = played(tmp_path / "out.wav")
    first_at = np.flatnonzero(out > 0)
    second_at = np.flatnonzero(out < 0)
    first, second = out[first_at], out[second_at]
    # Exact: the first answer was played from its first sample, in order, nothing lost or
    # duplicated, and cut by the clear before its end.
    n1 = len(first)
    assert 0 < n1 < FIRST_N
    assert np.array_equal(first, 1 + np.arange(n1) % 30000)
    # Exact: the second answer was played completely, in order, without a gap.
    assert np.array_equal(second, -(1 + np.arange(SECOND_N)))
    assert second_at[-1] - second_at[0] == SECOND_N - 1
    # Nothing of the first answer after the clear: it all precedes the second answer.
    assert first_at[-1] < second_at[0]

    # Timing (tolerances, see TOL_S): one silence gap inside the first answer = the pause.
    segments = runs(out > 0)
    assert len(segments) == 2, segments
    (a0, a1), (b0, b1) = segments
    gap = (b0 - a1) / RATE
    before, after = (a1 - a0) / RATE, (b1 - b0) / RATE
    to_second = (second_at[0] - b1) / RATE
    print(
        f"first sample at {a0 / RATE:.3f} s; played {before:.3f} s, paused {gap:.3f} s, "
        f"played {after:.3f} s, cleared {(FIRST_N - n1) / RATE:.3f} s unplayed, "
        f"second answer after {to_second:.3f} s"
    )
    assert abs(gap - (T_UNPAUSE - T_PAUSE)) <= TOL_S
    assert abs(before - (T_PAUSE - T_BURST)) <= TOL_S
    assert abs(after - (T_CLEAR - T_UNPAUSE)) <= TOL_S
    assert abs(to_second - (T_SECOND - T_CLEAR)) <= TOL_S
    assert abs((FIRST_N - n1) / RATE - (FIRST_N / RATE - (T_CLEAR - T_BURST) + gap)) <= TOL_S

    events = read_events(tmp_path / "ev.jsonl")
    names = [e["event"] for e in events]
    t = {
        name: next(e["t"] for e in events if e["event"] == name)
        for name in ("onready", "pause", "unpause", "clear", "onsessionended", "closed")
    }
    assert (
        t["onready"] < t["pause"] < t["unpause"] < t["clear"] < t["onsessionended"] <= t["closed"]
    ), t
    # The interruption is shown with what of the answer was heard and what was dropped,
    # the same figures as the clear's line in the events file.
    clear = next(e for e in events if e["event"] == "clear")
    heard, dropped = (round(clear[k] * 1000 / RATE) for k in ("played_samples", "dropped_samples"))
    assert heard > 0 and dropped > 0
    assert f"[you interrupted: {heard} ms of the answer heard, {dropped} ms dropped]" in proc.stdout
    assert abs((t["unpause"] - t["pause"]) - (T_UNPAUSE - T_PAUSE)) <= TOL_S
    assert names.count("start_answering") == 2
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    finished = events[-1]
    assert finished["event"] == "finished" and finished["reason"] == "server_closed"
    assert finished["played_samples"] == n1 + SECOND_N


# --- 2. initiate carries exactly what the flags say ----------------------------------------


async def ready_then_end(conn: ScriptedConnection) -> None:
    await conn.ready("s-2")
    await conn.at(0.3)
    await conn.send("onsessionended")


AGENT_CONFIG = {
    "prompt": "You are Ann's helper. Greet {name}.",
    "voice": {"provider": "elevenlabs", "voice_id": "v-1"},
    "first_message": "Hi {name}!",
    "x_future_key": {"nested": [1, 2.5, None, "é", {"deep": False}]},
}


@pytest.mark.parametrize("flags", ["all", "minimal"])
def test_initiate_carries_exactly_what_the_flags_say(tmp_path: Path, flags: str) -> None:
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(AGENT_CONFIG, ensure_ascii=False), encoding="utf-8")
    if flags == "all":
        extra = [
            "--agent-config",
            str(config),
            "--metadata",
            '{"name":"Ann"}',
            "--include-metadata-in-prompt",
            "--session-id",
            "prev-1",
            "--public-key",
            SECRET,
        ]
        expected = {
            "public_key": SECRET,
            "agent": {"agent_id": "a", "agent_config": AGENT_CONFIG},
            "metadata": {"name": "Ann"},
            "include_metadata_in_prompt": True,
            "session_continuation": {"session_id": "prev-1"},
        }
    else:  # absent flags are absent keys, not nulls (a loopback URL needs no key)
        extra = []
        expected = {"public_key": "local-test-key", "agent": {"agent_id": "a"}}
    with ScriptedServer(ready_then_end) as server:
        proc = talk(tmp_path, server.url, *extra)
    assert proc.returncode == 0, proc.stderr
    assert server.initiates == [{"method": "initiate", "data": expected}]
    events = read_events(tmp_path / "ev.jsonl")
    assert any(e["event"] == "onready" and e["session_id"] == "s-2" for e in events)
    finished = events[-1]
    assert finished["event"] == "finished" and finished["reason"] == "server_closed"
    # The session ended 0.3 s into the 1 s input: what went out is counted, not 0.
    print(f"sent {finished['sent_samples']} samples, server got {server.audio_bytes // 2}")
    assert 0 < finished["sent_samples"] < RATE
    assert server.audio_bytes <= 2 * finished["sent_samples"]
    assert server.client_close == [(1000, "session ended")]  # closed on onsessionended
    written = proc.stdout + proc.stderr + (tmp_path / "ev.jsonl").read_text(encoding="utf-8")
    assert SECRET not in written


# --- 3. the server drops the TCP connection mid-session -----------------------------------

DROP_N = 2 * RATE
T_DROP_BURST, T_DROP = 0.3, 1.3


async def drop_mid_answer(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.at(T_DROP_BURST)
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(DROP_N))
    await conn.at(T_DROP)
    conn.abort()


def test_dropped_connection_exits_1_with_valid_files(tmp_path: Path) -> None:
    with ScriptedServer(drop_mid_answer) as server:
        proc = talk(tmp_path, server.url)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    print(line)
    assert "connection lost" in line.lower()
    out = played(tmp_path / "out.wav")  # a valid WAV despite the crash
    got = out[out != 0]
    # What was played before the drop is intact, in order, from the first sample.
    assert len(got) > 0.5 * RATE
    assert np.array_equal(got, 1 + np.arange(len(got)) % 30000)
    print(f"played {len(got) / RATE:.3f} s of the {DROP_N / RATE:.0f} s answer")
    # ... and it stops there: audio still buffered at the drop is not played afterwards.
    assert abs(len(got) / RATE - (T_DROP - T_DROP_BURST)) <= TOL_S
    events = read_events(tmp_path / "ev.jsonl")
    assert events[-1]["event"] == "error"
    assert events[-1]["message"] == line.removeprefix("millis-proto: ")
    assert "closed" in [e["event"] for e in events]


# --- 4. the server closes with an error code -----------------------------------------------


async def close_1011_after_audio(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(RATE // 2))
    await conn.at(0.5)
    await conn.ws.close(1011, "internal error")


async def close_1008_validation(conn: ScriptedConnection) -> None:
    # Millis rejects a bad agent_config by closing instead of sending onready.
    await conn.ws.close(1008, "validation error: agent_config.voice is required")


@pytest.mark.parametrize(
    ("script", "code", "reason"),
    [
        (close_1011_after_audio, 1011, "internal error"),
        (close_1008_validation, 1008, "validation error: agent_config.voice is required"),
    ],
)
def test_error_close_exits_1_naming_code_and_reason(
    tmp_path: Path, script: Any, code: int, reason: str
) -> None:
    with ScriptedServer(script) as server:
        proc = talk(tmp_path, server.url)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    print(line)
    assert str(code) in line and reason in line
    out = played(tmp_path / "out.wav")
    got = out[out != 0]
    assert np.array_equal(got, 1 + np.arange(len(got)) % 30000)
    if code == 1011:
        assert len(got) > 0
    events = read_events(tmp_path / "ev.jsonl")
    closed = next(e for e in events if e["event"] == "closed")
    assert (closed["code"], closed["reason"]) == (code, reason)
    assert events[-1]["event"] == "error" and str(code) in events[-1]["message"]


# --- 5. TLS with a generated certificate ----------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    pem = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return context, pem


@pytest.mark.parametrize("trust", ["cafile", "SSL_CERT_FILE", "none"])
def test_tls_with_a_generated_certificate(
    tmp_path: Path, tls: tuple[ssl.SSLContext, Path], trust: str
) -> None:
    context, pem = tls
    extra = ["--cafile", str(pem)] if trust == "cafile" else []
    env = {"SSL_CERT_FILE": str(pem)} if trust == "SSL_CERT_FILE" else {}
    with ScriptedServer(ready_then_end, ssl_context=context, check=trust != "none") as server:
        assert server.url.startswith("wss://127.0.0.1:")
        proc = talk(tmp_path, server.url, "--public-key", SECRET, *extra, env=env)
    if trust == "none":
        assert proc.returncode == 1, proc.stderr
        line = one_error_line(proc)
        print(line)
        assert "certificate" in line.lower()
        assert server.initiates == []  # nothing, the key least of all, reached the server
        assert read_events(tmp_path / "ev.jsonl")[-1]["event"] == "error"
    else:
        assert proc.returncode == 0, proc.stderr
        assert server.initiate["data"]["public_key"] == SECRET
        names = [e["event"] for e in read_events(tmp_path / "ev.jsonl")]
        assert "onready" in names and names[-1] == "finished"
    assert SECRET not in proc.stdout + proc.stderr
    sf.info(str(tmp_path / "out.wav"))  # valid either way


# --- 6. the server ends the session but never answers the close handshake --------------


async def end_then_go_deaf(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.at(0.3)  # mid-input: the 1 s user WAV is still being sent
    transport = conn.ws.transport
    assert transport is not None
    transport.pause_reading()  # the client's close frame is never read, never answered
    await conn.send("onsessionended")
    try:
        await asyncio.sleep(60)  # cancelled when the server stops
    finally:
        conn.abort()  # no close handshake on the way out either


def test_unanswered_close_after_session_end_is_bounded(tmp_path: Path) -> None:
    # The client closes on onsessionended; the server never replies. The CLI must give up
    # after --idle-timeout plus the 5 s close-handshake bound, not wait for --max-duration.
    with ScriptedServer(end_then_go_deaf) as server:
        start = time.monotonic()
        proc = talk(tmp_path, server.url, idle_timeout="1", max_duration="30")
        elapsed = time.monotonic() - start
    print(f"CLI ended after {elapsed:.2f} s")
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 15
    events = read_events(tmp_path / "ev.jsonl")
    assert events[-1]["event"] == "finished" and events[-1]["reason"] == "idle"
    # Sending stopped mid-input (the server stopped reading, so it saw at most that much).
    assert server.audio_bytes // 2 <= events[-1]["sent_samples"] < RATE
    sf.info(str(tmp_path / "out.wav"))


# --- a server that accepts the WebSocket but never says onready --------------------------


async def silent(conn: ScriptedConnection) -> None:
    await asyncio.sleep(4)  # no onready, no audio: the client must say what it waits for


def test_a_silent_server_shows_waiting_and_the_max_duration_end(tmp_path: Path) -> None:
    with ScriptedServer(silent) as server:
        proc = talk(tmp_path, server.url, max_duration="2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    waiting = next(line for line in lines if "waiting for the server…" in line)
    assert 0.9 <= float(waiting.split("]")[0].strip("[ ")) < 2.0  # shown after ~1 s
    assert "connected, session" not in proc.stdout
    assert lines[-3].endswith("call ended: it reached --max-duration 2 s")
    assert lines[-2].startswith(f"wrote {tmp_path / 'out.wav'} (")
    assert lines[-1].startswith(f"wrote {tmp_path / 'ev.jsonl'} (")
