"""``millis-proto talk --reconnect N`` in subprocesses: a dropped network does not end a call.

Against our own ``serve --drop-after`` (the local agent continues the session) and against
the independent scripted ``websockets`` server (``scripted_server.py``), which checks the
exact bytes of every ``initiate`` and plays marked agent audio (``marker_pcm``: never zero,
value = 1 + index), so the output WAV shows sample for sample what was heard, what was
dropped and where the silence of the gap is.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import DEMO_WAV, one_error_line, read_events, run
from scripted_server import ScriptedConnection, ScriptedServer, marker_pcm
from serve_helpers import serve_process
from test_cli_scripted import RATE, SECRET, played, talk


class Plans:
    """A script for the scripted server that runs ``plans[n]`` on the n-th connection."""

    def __init__(self, *plans: Any) -> None:
        self.plans = plans
        self.count = 0

    async def __call__(self, conn: ScriptedConnection) -> None:
        number = self.count
        self.count += 1
        await self.plans[min(number, len(self.plans) - 1)](conn)


def by_name(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


# --- the "done when" run: serve drops the connection once mid-call ------------------------


def test_talk_survives_a_drop_by_serve(tmp_path: Path) -> None:
    out, ev = tmp_path / "out.wav", tmp_path / "e.jsonl"
    with serve_process("--drop-after", "1.5") as (url, server):
        proc = run(
            "talk",
            "--endpoint",
            url,
            "--plain",
            "--input",
            str(DEMO_WAV),
            "--output",
            str(out),
            "--events",
            str(ev),
            "--reconnect",
            "3",
            "--idle-timeout",
            "1.5",
            "--public-key",
            SECRET,
            "--agent-id",
            "a",
            timeout=60,
        )
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert proc.returncode == 0, proc.stderr
    events = read_events(ev)
    first_id = by_name(events, "onready")[0]["session_id"]
    [reconnecting] = by_name(events, "reconnecting")
    assert reconnecting["kind"] == "lost" and reconnecting["attempt"] == 1
    [reconnected] = by_name(events, "reconnected")
    assert reconnected["continued"] is True
    assert reconnected["previous_session_id"] == first_id
    assert reconnected["session_id"] != first_id
    # The server saw the second initiate carry the first session's id.
    initiates = [line for line in log.splitlines() if "] initiate " in line]
    assert len(initiates) == 2
    assert f"'session_continuation': {{'session_id': '{first_id}'}}" in initiates[1]
    assert "session_continuation" not in initiates[0]
    assert SECRET not in log
    # The continued local agent skipped the greeting and went on with the conversation.
    assert by_name(events, "ontranscript"), "the agent answered after the reconnect"
    # out.wav is one file over the whole call, gap included.
    finished = by_name(events, "finished")[0]
    assert finished["reconnects"] == 1
    info = sf.info(str(out))
    assert abs(info.frames / RATE - finished["t"]) < 0.25
    assert info.frames / RATE > 4.0  # the input alone is 4 s; the answer follows it
    assert "reconnecting…" in proc.stdout


# --- against the independent websockets server ---------------------------------------------

FIRST_N = 2 * RATE  # the first answer: 2 s, one burst
SECOND_N = RATE // 2  # the answer on the continued session
T_DROP = 1.2


async def answer_then_reset(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.2)
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(FIRST_N))
    await conn.at(T_DROP)
    conn.abort()  # TCP gone mid-answer: no close frame


async def continue_then_end(conn: ScriptedConnection) -> None:
    await conn.ready("s-2")
    await conn.at(0.2)
    await conn.send("start_answering")
    await conn.send_audio(marker_pcm(SECOND_N, sign=-1))
    await conn.at(1.5)
    await conn.send("onsessionended")


def check_initiates(server: ScriptedServer, continued: list[str | None]) -> None:
    """Every initiate is the first one's exact bytes, plus session_continuation if any."""
    first = server.raw_initiates[0]
    # The client writes compact JSON in key order: re-serializing reproduces it exactly,
    # so the expected bytes of a continued initiate can be built the same way.
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    assert json.dumps(json.loads(first), **compact) == first  # type: ignore[arg-type]
    assert len(server.raw_initiates) == len(continued) + 1
    for raw, session_id in zip(server.raw_initiates[1:], continued, strict=True):
        message = json.loads(first)
        if session_id is not None:
            message["data"]["session_continuation"] = {"session_id": session_id}
        assert raw == json.dumps(message, **compact)  # type: ignore[arg-type]


def test_reset_mid_answer_reconnects_with_continuation(tmp_path: Path) -> None:
    with ScriptedServer(Plans(answer_then_reset, continue_then_end)) as server:
        proc = talk(
            tmp_path,
            server.url,
            "--reconnect",
            "3",
            "--public-key",
            SECRET,
            "--record",
            str(tmp_path / "call.wav"),
        )
    assert proc.returncode == 0, proc.stderr
    check_initiates(server, ["s-1"])
    events = read_events(tmp_path / "ev.jsonl")
    [reconnecting] = by_name(events, "reconnecting")
    [reconnected] = by_name(events, "reconnected")
    assert reconnected["continued"] is True and reconnected["session_id"] == "s-2"
    finished = by_name(events, "finished")[0]
    # What was heard of the first answer is its start, in order; the rest was dropped
    # and counted exactly.
    audio = played(tmp_path / "out.wav")
    first = audio[audio > 0]
    assert np.array_equal(first, np.arange(1, first.size + 1))
    dropped = reconnecting["dropped_playback_samples"]
    assert first.size + dropped == FIRST_N
    assert finished["dropped_playback_samples"] == dropped
    assert abs(first.size / RATE - (T_DROP - 0.2)) < 0.3  # played until the drop
    # The second answer was heard completely, after the gap, which is silence.
    second = -audio[audio < 0]
    assert np.array_equal(second, np.arange(1, SECOND_N + 1))
    end_first = int(np.flatnonzero(audio > 0)[-1])
    start_second = int(np.flatnonzero(audio < 0)[0])
    t_back = reconnected["t"]
    assert not audio[end_first + 1 : start_second].any()
    assert start_second / RATE >= t_back - 0.1
    # The file is the whole call, on the wall clock.
    assert abs(audio.size / RATE - finished["t"]) < 0.25
    # The call recording is one file too: its agent side is out.wav, gap and all.
    stereo, _ = sf.read(tmp_path / "call.wav", dtype="int16")
    n = min(len(stereo), audio.size)
    assert n >= audio.size - RATE // 10
    assert np.array_equal(stereo[:n, 1], audio[:n])
    # User audio given during the gap was dropped and counted.
    assert reconnected["dropped_user_samples"] == finished["dropped_user_samples"] > 0
    gap = reconnected["downtime"]
    assert abs(reconnected["dropped_user_samples"] / RATE - gap) < 0.1
    assert SECRET not in (tmp_path / "ev.jsonl").read_text()


async def ready_then_1011(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.4)
    await conn.ws.close(1011, "internal error")


def test_server_1011_is_retried(tmp_path: Path) -> None:
    with ScriptedServer(Plans(ready_then_1011, continue_then_end)) as server:
        proc = talk(tmp_path, server.url, "--reconnect", "1", "--public-key", SECRET)
    assert proc.returncode == 0, proc.stderr
    check_initiates(server, ["s-1"])
    events = read_events(tmp_path / "ev.jsonl")
    [reconnecting] = by_name(events, "reconnecting")
    assert (reconnecting["kind"], reconnecting["code"]) == ("server_error", 1011)


async def ready_then_reset(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.4)
    conn.abort()


async def refuse_continuation(conn: ScriptedConnection) -> None:
    await conn.ws.close(1008, "session continuation is not available")


def test_refused_continuation_falls_back_to_a_fresh_session(tmp_path: Path) -> None:
    plans = Plans(ready_then_reset, refuse_continuation, continue_then_end)
    with ScriptedServer(plans) as server:
        proc = talk(tmp_path, server.url, "--reconnect", "3", "--public-key", SECRET)
    assert proc.returncode == 0, proc.stderr
    check_initiates(server, ["s-1", None])  # the fallback is the original request
    events = read_events(tmp_path / "ev.jsonl")
    kinds = [e["kind"] for e in by_name(events, "reconnecting")]
    assert kinds == ["lost", "continuation_refused"]
    [reconnected] = by_name(events, "reconnected")
    assert reconnected["continued"] is False
    assert reconnected["fresh_reason"] == "the server refused to continue the session"
    assert "fresh session" in proc.stdout


async def reset_at_once(conn: ScriptedConnection) -> None:
    conn.abort()


def test_too_many_failures_end_with_one_sentence(tmp_path: Path) -> None:
    with ScriptedServer(Plans(ready_then_reset, reset_at_once)) as server:
        proc = talk(tmp_path, server.url, "--reconnect", "2", "--public-key", SECRET)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "reconnecting failed" in line and "2 reconnect attempts failed" in line
    check_initiates(server, ["s-1", "s-1"])
    events = read_events(tmp_path / "ev.jsonl")
    assert [e["attempt"] for e in by_name(events, "reconnecting")] == [1, 2]
    [failed] = by_name(events, "reconnect_failed")
    assert failed["attempts"] == 2
    assert events[-1]["event"] == "error"
    assert by_name(events, "closed")[-1]["code"] == 1006
    # The output is still a valid WAV covering the call.
    audio = played(tmp_path / "out.wav")
    assert audio.size / RATE >= failed["t"] - 0.25


async def ready_then_normal_close(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.4)
    await conn.ws.close(1000, "bye")


async def ready_then_session_end(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.4)
    await conn.send("onsessionended")


async def ready_then_1008(conn: ScriptedConnection) -> None:
    await conn.ready("s-1")
    await conn.at(0.4)
    await conn.ws.close(1008, "validation error: prompt")


@pytest.mark.parametrize(
    ("plan", "status"),
    [(ready_then_normal_close, 0), (ready_then_session_end, 0), (ready_then_1008, 1)],
)
def test_final_ends_are_not_retried(tmp_path: Path, plan: Any, status: int) -> None:
    with ScriptedServer(Plans(plan, continue_then_end)) as server:
        proc = talk(tmp_path, server.url, "--reconnect", "3", "--public-key", SECRET)
    assert proc.returncode == status, proc.stderr
    assert len(server.raw_initiates) == 1
    events = read_events(tmp_path / "ev.jsonl")
    assert not by_name(events, "reconnecting")
    if status:
        assert "1008" in one_error_line(proc)


def test_the_first_connect_is_not_retried(tmp_path: Path) -> None:
    """A failed first connect ends at once: there is no session to save yet."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = talk(tmp_path, f"ws://127.0.0.1:{port}/millis", "--reconnect", "3")
    assert proc.returncode == 1
    assert "refused" in one_error_line(proc)


def test_reconnect_flag_is_validated(tmp_path: Path) -> None:
    proc = run("talk", "--reconnect", "-1", "--input", str(DEMO_WAV), "--output", "o.wav")
    assert proc.returncode == 2
    assert "--reconnect" in one_error_line(proc)
    proc = run("serve", "--drop-after", "-1")
    assert proc.returncode == 2
    assert re.search(r"--drop-after", proc.stderr)


def test_live_view_shows_reconnecting() -> None:
    from io import StringIO

    from rich.console import Console

    from millis_proto import Reconnected, Reconnecting
    from transports.cli.view import RichView

    def shown(view: RichView) -> str:
        out = StringIO()
        Console(file=out, width=120).print(view._render())
        return out.getvalue()

    view = RichView()
    try:
        view.event(1.0, Reconnecting(attempt=1, delay=0.5, cause="connection lost", kind="lost"))
        assert "reconnecting…" in shown(view)
        view.event(1.5, Reconnected(session_id="s-2", continued=True, downtime=0.5, attempts=1))
        text = shown(view)
        assert "reconnected, session s-2 (continued) after 0.5 s" in text
    finally:
        view.close()
