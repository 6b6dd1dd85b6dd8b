"""offline_call: a whole call against the local agent in virtual time, summarized.

The summary is checked against the events themselves (kept on request), against the
audio the test sent, and its memory against the length of the call.
"""

from __future__ import annotations

import math
import struct
import tracemalloc
from collections import Counter
from collections.abc import Iterator

import pytest

from millis_proto import (
    ConfigError,
    PlaybackFinished,
    ResponseText,
    SessionEnded,
    StartAnswering,
    Transcript,
)
from millis_proto.agent import (
    AgentSetup,
    CallSummary,
    Scenario,
    TranscriptLine,
    Turn,
    offline_call,
)

FRAME = 320  # samples in 20 ms
TONE = struct.pack(
    f"<{FRAME}h", *(round(12000 * math.sin(2 * math.pi * 220 * i / 16000)) for i in range(FRAME))
)
SILENCE = bytes(2 * FRAME)


def bursts(n: int, *, speech_frames: int = 60, gap_frames: int = 190) -> Iterator[bytes]:
    """``n`` times 1.2 s of a loud tone and 3.8 s of silence, one 20 ms frame at a time."""
    for _ in range(n):
        yield from [TONE] * speech_frames
        yield from [SILENCE] * gap_frames


def test_the_echo_agent_answers_every_burst_and_the_summary_adds_up() -> None:
    summary = offline_call(bursts(3), keep_events=True, transcript_lines=10)
    assert isinstance(summary, CallSummary)
    assert summary.end_reason == "idle"
    assert summary.session_id is not None
    assert summary.turns == 3
    assert summary.events is not None
    assert summary.event_counts == dict(Counter(type(e).__name__ for e in summary.events))
    assert summary.event_counts["StartAnswering"] == 3
    assert summary.event_counts["PlaybackFinished"] == 3
    assert summary.user_audio_s == pytest.approx(3 * 5.0)
    # The echo is the utterance (1.2 s each), all of it played; the call went on until the
    # agent had been idle for the default 2 s after the input.
    assert summary.agent_audio_s == pytest.approx(3 * 1.2, abs=0.03)
    assert summary.played_audio_s == summary.agent_audio_s
    assert 15.0 + 2.0 <= summary.duration_s < 15.0 + 2.1
    user = [e.text for e in summary.events if isinstance(e, Transcript) and e.is_final]
    agent = [e.text for e in summary.events if isinstance(e, ResponseText) and e.is_final]
    assert [line.text for line in summary.transcript if line.role == "user"] == user
    assert [line.text for line in summary.transcript if line.role == "agent"] == agent
    assert len(summary.transcript) == 6
    assert summary.transcript[0] == TranscriptLine(role="user", text=user[0])


def test_by_default_no_event_and_no_transcript_is_kept() -> None:
    summary = offline_call(bursts(2))
    assert summary.events is None
    assert summary.transcript == ()
    assert summary.turns == 2


def test_the_transcript_keeps_only_its_last_lines() -> None:
    summary = offline_call(bursts(4), transcript_lines=3)
    assert len(summary.transcript) == 3
    assert [line.role for line in summary.transcript] == ["agent", "user", "agent"]
    assert summary.transcript[-1].text == "(echo of user turn 4)"


def test_one_buffer_and_the_same_audio_as_frames_give_the_same_call() -> None:
    frames = list(bursts(2))
    as_frames = offline_call(iter(frames), keep_events=True)
    as_buffer = offline_call(b"".join(frames), keep_events=True)
    assert as_frames == as_buffer
    assert as_frames.events == as_buffer.events


def test_the_agent_ending_the_session_ends_the_call() -> None:
    setup = AgentSetup(scenario=Scenario(end_after_turns=1))
    summary = offline_call(bursts(3), setup=setup, keep_events=True)
    assert summary.end_reason == "server_closed"
    assert summary.event_counts[SessionEnded.__name__] == 1
    assert summary.turns == 1
    assert summary.duration_s < 5.0 + 2.0  # during the first gap, not after the input
    assert summary.events is not None
    assert any(isinstance(e, SessionEnded) for e in summary.events)


def test_max_duration_cuts_the_call() -> None:
    summary = offline_call(bursts(10), max_duration=6.0)
    assert summary.end_reason == "max_duration"
    assert summary.duration_s == pytest.approx(6.0)
    assert summary.user_audio_s == pytest.approx(6.0)
    assert summary.turns == 1


def test_a_greeting_is_played_but_is_not_a_turn() -> None:
    setup = AgentSetup(scenario=Scenario(greeting=Turn(reply="hello there")))
    summary = offline_call(b"", setup=setup, transcript_lines=5)
    assert summary.turns == 0
    assert StartAnswering.__name__ not in summary.event_counts  # no user turn to answer
    assert summary.event_counts[PlaybackFinished.__name__] == 1
    assert summary.played_audio_s > 0
    assert summary.transcript == (TranscriptLine(role="agent", text="hello there"),)
    assert summary.end_reason == "idle"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"frame_ms": 0}, "frame_ms"),
        ({"frame_ms": 0.01}, "frame_ms"),
        ({"frame_ms": math.nan}, "frame_ms"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"max_duration": 0}, "max_duration"),
        ({"transcript_lines": -1}, "transcript_lines"),
        ({"transcript_lines": 1.5}, "transcript_lines"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: "):
        offline_call(b"", **kwargs)  # type: ignore[arg-type]


def _peak_bytes(minutes: float) -> int:
    cycles = round(minutes * 60 / 5)
    tracemalloc.start()
    try:
        summary = offline_call(bursts(cycles))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.turns == cycles
    return peak


def test_memory_does_not_grow_with_the_length_of_the_call() -> None:
    short, long = _peak_bytes(1), _peak_bytes(10)
    # Ten times the audio, the same peak: what is kept per call is bounded (a few agent
    # answers in flight), nothing per frame or per event.
    assert long < short + 64 * 1024, (short, long)
