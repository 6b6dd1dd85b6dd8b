"""``transports.Conversation`` against a real ``millis-proto serve --scenario example``."""

from __future__ import annotations

import socket
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from serve_helpers import serve_process

from audio_backends import MemorySink, MemorySource
from millis_proto import ConnectionFailed, Event, FailureKind, FunctionCall, StartRequest
from transports import Conversation
from transports.examples import demo_wav

REQUEST = StartRequest(public_key="local-test-key", agent_id="local-agent")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_process("--scenario", "example") as (address, _):
        yield address


def test_wait_for_end_question_to_reply(url: str, tmp_path: Path) -> None:
    said: list[str] = []
    answers: list[str] = []
    events: list[Event] = []
    reply = tmp_path / "reply.wav"
    conversation = Conversation(
        url,
        REQUEST,
        source=demo_wav(),
        sink=reply,
        on_transcript=said.append,
        on_response=answers.append,
        on_event=events.append,
        idle_timeout=1.0,
    )
    result = conversation.wait_for_end(timeout=60)
    assert result.reason == "idle"
    assert result.session_id is not None and result.session_id.startswith("local-session-")
    assert said == ["What's the weather in Paris?"]
    assert answers == ["Hi! Ask me about the weather.", "It is sunny in Paris, twenty-one degrees."]
    assert [(line.speaker, line.text) for line in result.transcript] == [
        ("agent", answers[0]),
        ("user", said[0]),
        ("agent", answers[1]),
    ]
    assert any(isinstance(e, FunctionCall) and e.function == "get_weather" for e in events)
    # One answer after the user's turn (the greeting came before any speech): its latency
    # is that of the local agent's turn detection, hundreds of ms, well under two seconds.
    assert len(result.turn_latencies_ms) == 1
    assert 200 < result.turn_latencies_ms[0] < 2000
    assert result.latencies_ms  # the server's own figure, start_answering to first audio
    with wave.open(str(reply)) as w:
        assert w.getnframes() >= result.played_samples > 16000  # silence included
    assert result.sent_samples >= 16000 * 3  # the whole question went up
    assert result.closed is not None and result.closed.code == 1000


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_run_on_the_callers_event_loop(url: str, backend: str) -> None:
    sink = MemorySink()
    conversation = Conversation(
        url, REQUEST, source=MemorySource(bytes(16000)), sink=sink, idle_timeout=0.5
    )
    result = anyio.run(conversation.run, backend=backend)
    assert result.reason == "idle"
    assert [line.speaker for line in result.transcript] == ["agent"]  # only the greeting
    assert sink.played_samples == result.played_samples > 16000  # the spoken greeting


def test_end_hangs_up_from_another_thread(url: str) -> None:
    conversation = Conversation(
        url, REQUEST, source=MemorySource(bytes(2 * 16000 * 60)), sink=MemorySink()
    ).start()
    with pytest.raises(TimeoutError, match=r"did not end within 0\.5 s"):
        conversation.wait_for_end(timeout=0.5)
    started = time.monotonic()
    threading.Timer(0.2, conversation.end).start()
    result = conversation.wait_for_end(timeout=10)
    assert result.reason == "ended"
    assert time.monotonic() - started < 5  # the close handshake, not the minute of input
    assert result.closed is not None and result.closed.code == 1000


def test_a_conversation_that_cannot_start_raises_the_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conversation = Conversation(
        f"ws://127.0.0.1:{port}/millis", REQUEST, source=MemorySource(b""), sink=MemorySink()
    )
    with pytest.raises(ConnectionFailed) as caught:
        conversation.wait_for_end(timeout=30)
    assert caught.value.kind is FailureKind.REFUSED
