"""Our clients against our own serving side, on loopback (all three flavors)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from transport_helpers import SECRET_KEY, is_a, read_events, read_until_error

from millis_proto import (
    AgentAudio,
    AnswerLatency,
    ClientAudio,
    ClientConfig,
    ClientMessage,
    ClientPing,
    CloseInitiator,
    ConnectionClosed,
    ConnectionClosedByServer,
    Event,
    InitiateReceived,
    Pong,
    Ready,
    ResponseText,
    SessionEnded,
)
from transports.server import ServerAddress, ServerSession, serve

pytestmark = pytest.mark.anyio

AGENT_PCM = bytes(range(256)) * 4  # 1024 bytes

#: Per-frame agent audio events (off by default): these tests check the framing.
AUDIO_EVENTS = ClientConfig(emit_audio_events=True)


@asynccontextmanager
async def serving(
    handler: Callable[[ServerSession], Awaitable[None]], **options: Any
) -> AsyncIterator[ServerAddress]:
    """Run ``serve`` in the background for the body; stop it afterwards."""
    async with anyio.create_task_group() as group:
        address: ServerAddress = await group.start(functools.partial(serve, handler, **options))
        yield address
        group.cancel_scope.cancel()


class Recorder:
    """What a server handler saw, and a way to wait until its session ended."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.events: list[Event] = []
        self.finished = anyio.Event()

    async def wait(self) -> list[Event]:
        with anyio.fail_after(5):
            await self.finished.wait()
        return self.events


async def test_full_conversation(connect: Any, start_request: Any) -> None:
    """initiate → onready, agent audio and text; user audio (odd byte carried), a Millis
    ping answered by the server machine, a custom message; the client closes with 1000."""
    seen = Recorder()

    async def handler(session: ServerSession) -> None:
        seen.path = session.path
        async for event in session:
            seen.events.append(event)
            if isinstance(event, InitiateReceived):
                session.server.send_ready("own-1")
                session.server.send_start_answering()
                session.server.send_audio(AGENT_PCM[:333])
                session.server.send_audio(AGENT_PCM[333:])
                session.server.send_response_text("Hello!", is_final=True)
                await session.flush()
        seen.finished.set()

    async with (
        serving(handler) as address,
        connect(address.url, start_request, config=AUDIO_EVENTS) as session,
    ):
        events = await read_events(session, is_a(ResponseText))
        await session.send_audio(b"\x05\x06" * 100 + b"\x07")
        await session.send_audio(b"\x08")
        await session.send_ping()
        events += await read_events(session, is_a(Pong))
        await session.send_message("custom_thing", {"x": 1})
        assert session.session_id == "own-1"
        played = session.pull_playback(len(AGENT_PCM) // 2)
    server_events = await seen.wait()

    assert [len(e.data) for e in events if isinstance(e, AgentAudio)] == [333, len(AGENT_PCM) - 333]
    assert any(isinstance(e, AnswerLatency) for e in events)
    assert played.pcm == AGENT_PCM
    pong = next(e for e in events if isinstance(e, Pong))
    assert pong.rtt_ms is not None

    assert seen.path == "/millis"
    initiate = next(e for e in server_events if isinstance(e, InitiateReceived))
    assert initiate.request.agent_id == "agent-1"
    assert initiate.request.public_key == SECRET_KEY
    audio = b"".join(e.data for e in server_events if isinstance(e, ClientAudio))
    assert audio == b"\x05\x06" * 100 + b"\x07\x08"
    assert any(isinstance(e, ClientPing) for e in server_events)
    assert ClientMessage(method="custom_thing", data={"x": 1}) in server_events
    assert server_events[-1] == ConnectionClosed(
        code=1000, reason="", initiator=CloseInitiator.REMOTE
    )


async def test_handler_failure_closes_1011_and_the_server_goes_on(
    connect: Any, start_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def handler(session: ServerSession) -> None:
        nonlocal calls
        calls += 1
        async for event in session:
            if isinstance(event, InitiateReceived):
                session.server.send_ready(f"s{calls}")
                await session.flush()
                if calls == 1:
                    raise RuntimeError("agent bug")

    async with serving(handler) as address:
        async with connect(address.url, start_request) as session:
            events, error = await read_until_error(session)
        assert isinstance(error, ConnectionClosedByServer)
        assert error.code == 1011
        assert any(isinstance(e, Ready) for e in events)
        assert "Millis session handler failed" in caplog.text
        async with connect(address.url, start_request) as session:  # still serving
            await read_events(session, is_a(Ready))
            assert session.session_id == "s2"


async def test_handler_returning_ends_the_session_normally(
    connect: Any, start_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """onsessionended, then the handler returns: the client's iteration simply ends."""

    async def handler(session: ServerSession) -> None:
        async for event in session:
            if isinstance(event, InitiateReceived):
                session.server.send_ready("short")
                session.server.send_session_ended({"reason": "done"})
                await session.flush()
                return

    async with serving(handler) as address, connect(address.url, start_request) as session:
        events = await read_events(session)
    assert any(isinstance(e, SessionEnded) for e in events)
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.normal
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_sending_after_the_client_left_is_not_an_error(
    connect: Any, start_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that sends after the client hung up gets LocalProtocolError; the server
    takes that as the normal end of the session, not as a handler failure."""
    seen = Recorder()

    async def handler(session: ServerSession) -> None:
        try:
            async for event in session:
                if isinstance(event, InitiateReceived):
                    session.server.send_ready("x")
                    await session.flush()
            session.server.send_audio(AGENT_PCM)  # the client is gone
        finally:
            seen.finished.set()

    async with serving(handler) as address:
        async with connect(address.url, start_request) as session:
            await read_events(session, is_a(Ready))
        await seen.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_stopping_the_server_closes_sessions_with_1001(
    connect: Any, start_request: Any
) -> None:
    async def handler(session: ServerSession) -> None:
        async for event in session:
            if isinstance(event, InitiateReceived):
                session.server.send_ready("x")
                await session.flush()

    async with anyio.create_task_group() as group:
        server_scope = anyio.CancelScope()

        async def run_server(*, task_status: Any) -> None:
            with server_scope:
                await serve(handler, task_status=task_status)

        address = await group.start(run_server)
        async with connect(address.url, start_request) as session:
            await read_events(session, is_a(Ready))
            server_scope.cancel()
            events = await read_events(session)  # 1001 is a normal close: no error
        assert events[-1] == ConnectionClosed(
            code=1001, reason="the server is shutting down", initiator=CloseInitiator.REMOTE
        )
