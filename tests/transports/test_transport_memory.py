"""The in-memory transport: client and server in one process, in real or virtual time."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from transport_helpers import is_a, read_events
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from millis_proto import (
    AnswerLatency,
    ClientMessage,
    CloseInitiator,
    ConnectionClosed,
    ConnectionLost,
    Event,
    InitiateReceived,
    LocalProtocolError,
    Ready,
    ResponseText,
    ServerConnection,
    StartRequest,
    Transcript,
    event_to_dict,
)
from transports import EventsDropped
from transports.anyio import connect_stream
from transports.memory import connect_in_memory, memory_stream_pair
from transports.server import ServerSession

pytestmark = pytest.mark.anyio

FRAME = b"\x01\x00" * 320  # 20 ms of audio


def _virtual() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture(params=["asyncio", "trio-virtual"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return "asyncio" if request.param == "asyncio" else _virtual()


def make_agent(think: float) -> Any:
    """A tiny scripted agent: ready after ``think`` s; answers ``say`` after 250 ms."""

    async def agent(session: ServerSession) -> None:
        async for event in session:
            if isinstance(event, InitiateReceived):
                await anyio.sleep(think)
                session.server.send_ready("mem-1")
                await session.flush()
            elif isinstance(event, ClientMessage) and event.method == "say":
                session.server.send_transcript(str(event.data), is_final=True)
                session.server.send_start_answering()
                await session.flush()
                await anyio.sleep(0.25)
                for _ in range(5):
                    session.server.send_audio(FRAME)
                session.server.send_response_text("done", is_final=True)
                await session.flush()

    return agent


async def converse(request: StartRequest, think: float = 0) -> tuple[list[Event], float]:
    """One conversation with the agent; returns the events and the time it took."""
    started = anyio.current_time()
    # ping stamps from the conversation's own start: the liveness pings of a 30 s silence
    # then repeat exactly from one run to the next
    async with connect_in_memory(make_agent(think), request, wall_clock_offset=-started) as session:
        events = await read_events(session, is_a(Ready), timeout=60)
        await session.send_message("say", "hello")
        events += await read_events(session, is_a(ResponseText), timeout=60)
        assert session.pull_playback(5 * 320).real_samples == 5 * 320
    events += await read_events(session)
    return events, anyio.current_time() - started


async def test_conversation_in_memory(start_request: StartRequest) -> None:
    events, _ = await converse(start_request)
    kinds = [type(e).__name__ for e in events if not e.name.startswith("agent_")]
    assert kinds[0] == "Connected"
    assert "Ready" in kinds and "Transcript" in kinds and "ResponseText" in kinds
    assert events[-1] == ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.LOCAL)


@pytest.mark.parametrize("anyio_backend", [_virtual()])
async def test_virtual_time_runs_are_instant_and_deterministic(
    start_request: StartRequest,
) -> None:
    """Under trio's MockClock, 30 s of agent thinking take no real time, latencies are
    exact, and two runs produce the very same events."""
    wall = time.monotonic()
    first, took = await converse(start_request, think=30)
    second, _ = await converse(start_request, think=30)
    assert time.monotonic() - wall < 5
    assert took >= 30.25
    latency = next(e for e in first if isinstance(e, AnswerLatency))
    assert latency.ms == pytest.approx(250.0)
    assert [event_to_dict(e) for e in first] == [event_to_dict(e) for e in second]


@pytest.mark.parametrize("anyio_backend", [_virtual()])
async def test_slow_reader_gets_the_newest_events(start_request: StartRequest) -> None:
    async def chatty(session: ServerSession) -> None:
        async for event in session:
            if isinstance(event, InitiateReceived):
                session.server.send_ready("chatty")
                for i in range(50):
                    session.server.send_transcript(f"t{i}", is_final=True)
                await session.flush()

    async with connect_in_memory(chatty, start_request, max_queued_events=5) as session:
        await anyio.sleep(1)  # virtual: everything has arrived meanwhile
        first = await session.next_event()
        rest = [await session.next_event() for _ in range(5)]
    assert isinstance(first, EventsDropped) and first.count == session.dropped_events
    assert [e.text for e in rest if isinstance(e, Transcript)] == [f"t{i}" for i in range(45, 50)]


@pytest.mark.parametrize("anyio_backend", [_virtual()])
async def test_unanswered_close_is_bounded_by_the_disconnect_timeout(
    start_request: StartRequest,
) -> None:
    """A peer that stops reading after the handshake: our close gives up after
    disconnect_timeout (virtual seconds here); the peer stopped answering while the
    session was live, so the end is a lost connection, not a normal close."""
    client_end, server_end = memory_stream_pair()

    async def deaf_peer() -> None:
        conn = ServerConnection()
        while not conn.is_open:
            conn.receive_data(await server_end.receive(), anyio.current_time())
        conn.send_ready("deaf")
        await server_end.send(conn.data_to_send())
        await anyio.sleep_forever()  # never reads again

    async with anyio.create_task_group() as group:
        group.start_soon(deaf_peer)
        async with connect_stream(client_end, start_request, disconnect_timeout=3) as session:
            await read_events(session, is_a(Ready))
            before = trio.current_time()
            await session.aclose()
            assert trio.current_time() - before == pytest.approx(3)
        group.cancel_scope.cancel()
    assert session.closed == ConnectionClosed(
        code=1006,
        reason="the server stopped answering (no reply to our close within 3 s)",
        initiator=CloseInitiator.LOST,
    )
    with pytest.raises(ConnectionLost, match="stopped answering"):
        async for _ in session:  # after its last event, ConnectionClosed
            pass


@pytest.mark.parametrize("anyio_backend", [_virtual()])
async def test_core_initiated_close_is_bounded_too(start_request: StartRequest) -> None:
    """After onsessionended the core closes by itself; a peer that never answers is given
    disconnect_timeout from the moment our close went out, without any aclose()."""
    client_end, server_end = memory_stream_pair()

    async def peer_that_hangs_up_badly() -> None:
        conn = ServerConnection()
        while not conn.is_open:
            conn.receive_data(await server_end.receive(), anyio.current_time())
        conn.send_ready("s")
        conn.send_session_ended()
        await server_end.send(conn.data_to_send())
        await anyio.sleep_forever()  # never reads our close, never answers it

    async with anyio.create_task_group() as group:
        group.start_soon(peer_that_hangs_up_badly)
        async with connect_stream(client_end, start_request, disconnect_timeout=4) as session:
            before = trio.current_time()
            with anyio.fail_after(60):  # virtual seconds: an unbounded wait fails here
                events = [event async for event in session]  # ends without our help
            assert trio.current_time() - before == pytest.approx(4)
        group.cancel_scope.cancel()
    assert isinstance(events[-1], ConnectionClosed)
    assert session.closed == ConnectionClosed(
        code=1000, reason="session ended", initiator=CloseInitiator.LOCAL
    )


async def test_memory_stream_pair_behaves_like_a_socket() -> None:
    left, right = memory_stream_pair()
    await left.send(b"hello world")
    assert await right.receive(5) == b"hello"  # short reads keep the rest
    assert await right.receive() == b" world"
    await left.aclose()
    with pytest.raises(anyio.EndOfStream):
        await right.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await right.send(b"x")
    with pytest.raises(anyio.ClosedResourceError):
        await left.receive()


async def test_closing_wakes_a_waiting_reader() -> None:
    left, _right = memory_stream_pair()
    outcome: list[type[BaseException]] = []

    async def reader() -> None:
        try:
            await left.receive()
        except anyio.ClosedResourceError as exc:
            outcome.append(type(exc))

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await left.aclose()
    assert outcome == [anyio.ClosedResourceError]


async def test_a_ping_after_our_close_is_not_answered(start_request: StartRequest) -> None:
    """trio-websocket #184: a ping that crosses our close frame gets no pong (it would be
    a protocol violation), the close completes, and sending afterwards raises a typed
    error rather than a raw wsproto one (#175)."""
    client_end, server_end = memory_stream_pair()
    after_close = bytearray()

    async def raw_peer() -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(await server_end.receive())
            for event in ws.events():
                if isinstance(event, Request):
                    ready = '{"method": "onready", "payload": {"session_id": "raw"}}'
                    await server_end.send(
                        ws.send(AcceptConnection()) + ws.send(TextMessage(data=ready))
                    )
                elif isinstance(event, CloseConnection):
                    # wsproto refuses to ping now, so the frame is written by hand
                    late_ping = b"\x89\x04late"  # FIN + ping, unmasked, 4 bytes
                    await server_end.send(late_ping + ws.send(event.response()))
                    with contextlib.suppress(anyio.EndOfStream):
                        while True:
                            after_close.extend(await server_end.receive())
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(raw_peer)
        async with connect_stream(client_end, start_request) as session:
            await read_events(session, is_a(Ready))
            await session.aclose()
            with pytest.raises(LocalProtocolError):
                await session.send_audio(FRAME)
    assert after_close == b""
    assert session.closed == ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.LOCAL)
