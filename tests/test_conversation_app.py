"""``transports.Conversation`` against a real ``millis-proto serve --scenario example``."""

from __future__ import annotations

import socket
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from serve_helpers import serve_process

from audio_backends import MemorySink, MemorySource
from millis_proto import (
    ConnectionClosed,
    ConnectionFailed,
    Event,
    FailureKind,
    FunctionCall,
    LocalProtocolError,
    Ready,
    ResponseText,
    StartRequest,
    Transcript,
)
from transports import Conversation, EventsDropped
from transports.examples import demo_wav

REQUEST = StartRequest(public_key="local-test-key", agent_id="local-agent")


def unstartable() -> Conversation:
    """A conversation with a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Conversation(
        f"ws://127.0.0.1:{port}/millis", REQUEST, source=MemorySource(b""), sink=MemorySink()
    )


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
    conversation = unstartable()
    with pytest.raises(ConnectionFailed) as caught:
        conversation.wait_for_end(timeout=30)
    assert caught.value.kind is FailureKind.REFUSED


# --- async for event in conversation -------------------------------------------------


def question(url: str, **options: Any) -> Conversation:
    """The bundled spoken question to the example agent, hung up after 1 s of quiet."""
    return Conversation(
        url, REQUEST, source=demo_wav(), sink=MemorySink(), idle_timeout=1.0, **options
    )


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_iterating_a_conversation_gives_every_event_to_its_end(url: str, backend: str) -> None:
    seen_by_callback: list[Event] = []
    iterated: list[Event] = []
    conversation = question(url, on_event=seen_by_callback.append)

    async def main() -> None:
        with anyio.fail_after(60):
            async with conversation:
                async for event in conversation:
                    iterated.append(event)

    anyio.run(main, backend=backend)
    assert iterated == seen_by_callback  # the same events, in the same order
    assert any(isinstance(e, Ready) for e in iterated)
    assert isinstance(iterated[-1], ConnectionClosed)
    assert any(isinstance(e, Transcript) and e.is_final for e in iterated)
    assert any(isinstance(e, ResponseText) and "sunny" in e.text for e in iterated)
    assert any(isinstance(e, FunctionCall) and e.function == "get_weather" for e in iterated)
    result = conversation.result
    assert result is not None and result.reason == "idle" and len(result.turn_latencies_ms) == 1


def test_leaving_the_block_early_hangs_up(url: str) -> None:
    conversation = Conversation(
        url, REQUEST, source=MemorySource(bytes(2 * 16000 * 60)), sink=MemorySink()
    )

    async def main() -> float:
        async with conversation:
            async for event in conversation:
                if isinstance(event, Ready):
                    break
            started = anyio.current_time()
        return anyio.current_time() - started

    took = anyio.run(main, backend="trio")
    assert took < 5  # the close handshake, not the minute of input
    result = conversation.result
    assert result is not None and result.reason == "ended"
    assert result.closed is not None and result.closed.code == 1000
    with pytest.raises(LocalProtocolError, match="runs once"):
        conversation.start()


def test_a_slow_reader_gets_a_bounded_queue_and_is_told_what_it_missed(url: str) -> None:
    every: list[Event] = []
    conversation = question(url, on_event=every.append, max_unread_events=3)

    async def main() -> list[Event]:
        async with conversation:
            await anyio.sleep(3)  # greeting, question and answer begin meanwhile
            return [event async for event in conversation]

    events = anyio.run(main, backend="trio")
    assert isinstance(events[0], EventsDropped) and events[0].count > 5
    assert isinstance(events[-1], ConnectionClosed)
    assert not any(isinstance(e, EventsDropped) for e in every)  # the session lost none
    # What was read is what happened, in order, with each gap counted where it was.
    position = 0
    for event in events:
        if isinstance(event, EventsDropped):
            position += event.count
        else:
            assert event == every[position]
            position += 1
    assert position == len(every)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_iteration_raises_the_error_of_a_call_that_cannot_start(backend: str) -> None:
    conversation = unstartable()

    async def main() -> None:
        async with conversation:
            async for _ in conversation:
                pytest.fail("an event from a call that never started")

    with pytest.raises(ConnectionFailed) as caught:  # itself, not in an exception group
        anyio.run(main, backend=backend)
    assert caught.value.kind is FailureKind.REFUSED


def test_the_error_is_raised_on_leaving_the_block_when_nobody_iterated() -> None:
    conversation = unstartable()

    async def main() -> None:
        async with conversation:
            await anyio.sleep(2)  # the connect fails meanwhile

    with pytest.raises(ConnectionFailed):
        anyio.run(main, backend="trio")


def test_events_need_the_block() -> None:
    conversation = Conversation(
        "ws://127.0.0.1:9/millis", REQUEST, source=MemorySource(b""), sink=MemorySink()
    )
    with pytest.raises(LocalProtocolError, match="async with"):
        anyio.run(conversation.next_event)
