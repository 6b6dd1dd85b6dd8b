"""The client transports against an independent WebSocket server (the ``websockets`` library).

Every test runs three ways: the anyio transport on asyncio and on trio, and the trio
transport. The peer scripts Millis-like behaviour on a real loopback socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
import pytest
import websockets
from conftest import NATIVE
from transport_helpers import (
    SECRET_KEY,
    Peer,
    is_a,
    open_session,
    read_events,
    read_until_error,
    send_json,
    task_count,
    wait_for_method,
)

from millis_proto import (
    AgentAudio,
    ClientConfig,
    CloseInitiator,
    ConnectionClosed,
    ConnectionClosedByServer,
    ConnectionFailed,
    ConnectionLost,
    FailureKind,
    LocalProtocolError,
    Pong,
    Ready,
    StartAnswering,
    Transcript,
    UnknownMessage,
)
from transports import EventsDropped
from transports._native import AudioDropped

pytestmark = pytest.mark.anyio

#: Agent audio the peer sends, cut at odd offsets below.
AGENT_PCM = bytes(range(256)) * 8 + b"\x10\x20"  # 2050 bytes, a whole number of samples

#: Per-frame agent audio events (off by default): these tests check the framing.
AUDIO_EVENTS = ClientConfig(emit_audio_events=True)


async def test_session_exchange(connect: Any, peer: Any, start_request: Any) -> None:
    """Odd-sized and fragmented audio, fragmented text, an unknown method, in order; our
    audio (with a carried odd byte), a custom message and a Millis ping go out; close 1000."""

    async def script(ws: Any, peer: Peer) -> None:
        peer.results["initiate"] = await open_session(ws, "sess-42")
        await send_json(ws, "ontranscript", "hello", {"is_final": False})
        await ws.send(AGENT_PCM[:321])  # odd size: a sample split across messages
        await send_json(ws, "start_answering")
        await ws.send([AGENT_PCM[321:400], AGENT_PCM[400:1001], AGENT_PCM[1001:1600]])
        await ws.send(AGENT_PCM[1600:1601])  # one byte
        await ws.send(['{"method": "open_web_form", ', '"data": {"fields": [1, 2]}}'])
        await ws.send(AGENT_PCM[1601:])
        received = b""
        while True:
            message = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(message, bytes):
                received += message
                continue
            decoded = json.loads(message)
            if decoded["method"] == "ping":
                await send_json(ws, "pong", decoded["data"])
            elif decoded["method"] == "web_form_response":
                peer.results["custom"] = decoded["data"]
                break
        peer.results["audio"] = received
        await ws.wait_closed()
        peer.results["close_code"] = ws.close_code

    server = peer(script)
    user_pcm = b"\x01\x02" * 160 + b"\x03"  # 321 bytes: the last byte is carried
    async with connect(server.url(), start_request, config=AUDIO_EVENTS) as session:
        await session.send_audio(user_pcm)
        events = await read_events(session, is_a(UnknownMessage))
        await session.send_audio(b"\x04")  # completes the carried sample
        await session.send_ping()
        events += await read_events(session, is_a(Pong))
        await session.send_message("web_form_response", {"ok": True})
        assert session.session_id == "sess-42"
        played = session.pull_playback(len(AGENT_PCM) // 2)
    await server.wait_done()

    shape = [
        (type(e).__name__, len(e.data) if isinstance(e, AgentAudio) else None)
        for e in events
        if isinstance(e, (Ready, Transcript, AgentAudio, StartAnswering, UnknownMessage))
    ]
    assert shape == [
        ("Ready", None),
        ("Transcript", None),
        ("AgentAudio", 321),
        ("StartAnswering", None),
        ("AgentAudio", 1279),  # one message from three fragments
        ("AgentAudio", 1),
        ("UnknownMessage", None),
        ("AgentAudio", len(AGENT_PCM) - 1601),
    ]
    unknown = next(e for e in events if isinstance(e, UnknownMessage))
    assert (unknown.method, unknown.data) == ("open_web_form", {"fields": [1, 2]})
    pong = next(e for e in events if isinstance(e, Pong))
    assert pong.rtt_ms is not None and pong.rtt_ms >= 0
    assert played.pcm == AGENT_PCM and played.real_samples == len(AGENT_PCM) // 2
    assert server.results["initiate"]["public_key"] == SECRET_KEY
    assert server.results["initiate"]["agent"] == {"agent_id": "agent-1"}
    assert server.results["audio"] == b"\x01\x02" * 160 + b"\x03\x04"
    assert server.results["custom"] == {"ok": True}
    assert server.results["close_code"] == 1000
    assert session.closed == ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.LOCAL)


async def test_pings_answered_while_the_application_reads_nothing(
    connect: Any, peer: Any, start_request: Any
) -> None:
    """The reader never waits for the application: with a tiny event queue and nobody
    reading, a WebSocket ping is still answered; the oldest events are dropped and the
    gap is announced by one EventsDropped."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        for i in range(200):
            await send_json(ws, "ontranscript", f"t{i}", {"is_final": True})
        await ws.send(AGENT_PCM)
        pong = await ws.ping(b"still there?")
        await asyncio.wait_for(pong, 5)
        peer.mark("pong")
        await ws.close(1000, "done")

    server = peer(script)
    async with connect(server.url(), start_request, max_queued_events=8) as session:
        await server.wait_mark("pong")  # not reading a single event meanwhile
        await server.wait_done()
        events = await read_events(session)  # ends without an error: a normal close
        assert session.client.playback.queued_samples == len(AGENT_PCM) // 2
    assert isinstance(events[0], EventsDropped)
    assert events[0].count == session.dropped_events > 150
    texts = [e.text for e in events if isinstance(e, Transcript)]
    assert texts and texts[-1] == "t199"
    assert events[-1] == ConnectionClosed(code=1000, reason="done", initiator=CloseInitiator.REMOTE)


async def test_server_closes_normally(connect: Any, peer: Any, start_request: Any) -> None:
    """A 1000 close ends the iteration quietly; sending afterwards is the caller's mistake."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await send_json(ws, "ontranscript", "bye", {"is_final": True})
        await ws.close(1000, "goodbye")

    server = peer(script)
    async with connect(server.url(), start_request) as session:
        events = await read_events(session)
        assert isinstance(events[-2], Transcript)
        assert events[-1] == ConnectionClosed(
            code=1000, reason="goodbye", initiator=CloseInitiator.REMOTE
        )
        assert await session.next_event() is None
        with pytest.raises(LocalProtocolError):
            await session.send_audio(b"\x00\x00")
    await server.wait_done()


@pytest.mark.parametrize("code", [1008, 1011])
async def test_server_closes_with_an_error_code(
    connect: Any, peer: Any, start_request: Any, code: int
) -> None:
    """1008/1011 raise ConnectionClosedByServer after the events before them — and a close
    reason that echoes the public key does not put it into the error."""

    async def script(ws: Any, peer: Peer) -> None:
        data = await open_session(ws)
        await send_json(ws, "ontranscript", "hm", {"is_final": True})
        await ws.close(code, f"validation error: key {data['public_key']} refused")

    server = peer(script)
    async with connect(server.url(), start_request) as session:
        events, error = await read_until_error(session)
        assert isinstance(events[-2], Transcript)
        assert isinstance(events[-1], ConnectionClosed) and events[-1].code == code
        assert isinstance(error, ConnectionClosedByServer)
        assert error.code == code
        assert error.reason == "validation error: key <public key> refused"
        assert SECRET_KEY not in str(error)
        assert str(error).startswith(f"The server closed the session with code {code}")
        with pytest.raises(ConnectionClosedByServer):
            await session.send_audio(b"\x00\x00")
        with pytest.raises(ConnectionClosedByServer):  # sticky
            await session.next_event()
    await server.wait_done()


async def test_tcp_reset_mid_message_is_connection_lost(
    connect: Any, peer: Any, start_request: Any
) -> None:
    """Half a frame and then a TCP reset: ConnectionLost (1006), after the earlier events."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await send_json(ws, "ontranscript", "before", {"is_final": True})
        await wait_for_method(ws, "got_it")
        ws.transport.write(b"\x82\x7e\x03\xe8" + b"\x00" * 10)  # 1000-byte frame, 10 sent
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()  # with linger 0: RST

    server = peer(script)
    async with connect(server.url(), start_request) as session:
        await read_events(session, is_a(Transcript))
        await session.send_message("got_it")
        events, error = await read_until_error(session)
        assert isinstance(error, ConnectionLost)
        assert events[-1].code == 1006 and events[-1].initiator is CloseInitiator.LOST
        assert str(error).startswith("Connection lost: ")
        with pytest.raises(ConnectionLost):
            await session.send_audio(b"\x00\x00")
    await server.wait_done()


async def test_eof_mid_frame_is_connection_lost(
    connect: Any, peer: Any, start_request: Any
) -> None:
    """Half a frame and then a clean TCP FIN: still ConnectionLost, worded as such."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        ws.transport.write(b"\x82\x7e\x03\xe8" + b"\x00" * 10)
        ws.transport.write_eof()
        await asyncio.wait_for(ws.wait_closed(), 5)  # the client closes its side

    server = peer(script)
    async with connect(server.url(), start_request) as session:
        _, error = await read_until_error(session)
    assert isinstance(error, ConnectionLost)
    assert "without a WebSocket close handshake" in str(error)
    await server.wait_done()


async def test_handshake_never_answered(
    connect: Any, silent_listener: int, start_request: Any
) -> None:
    """TCP connects but the HTTP upgrade is never answered: a TIMEOUT failure, promptly."""
    before = anyio.current_time()
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(
            f"ws://127.0.0.1:{silent_listener}/millis", start_request, connect_timeout=0.3
        ):
            pytest.fail("connected to a server that never answered")
    assert caught.value.kind is FailureKind.TIMEOUT
    assert "WebSocket handshake" in str(caught.value)
    assert anyio.current_time() - before < 3


async def test_handshake_rejected_with_http_status(
    connect: Any, peer: Any, start_request: Any
) -> None:
    async def script(ws: Any, peer: Peer) -> None:
        raise AssertionError("the handshake should have been rejected")

    def reject(connection: Any, request: Any) -> Any:
        return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")

    server = peer(script, process_request=reject)
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(server.url(), start_request):
            pytest.fail("connected despite the rejection")
    assert caught.value.kind is FailureKind.HANDSHAKE_REJECTED
    assert caught.value.status_code == 403
    assert "HTTP 403 (origin not allowed)" in str(caught.value)


async def test_invalid_handshake_answer(connect: Any, start_request: Any) -> None:
    """A 101 with a wrong Sec-WebSocket-Accept is not a WebSocket: HANDSHAKE_INVALID."""
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm9wZQ==\r\n\r\n"
    )

    async def impostor(stream: Any) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            await stream.send(answer)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.receive()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, impostor)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        with pytest.raises(ConnectionFailed) as caught:
            async with connect(f"ws://127.0.0.1:{port}/millis", start_request):
                pytest.fail("accepted an invalid handshake")
        group.cancel_scope.cancel()
    assert caught.value.kind is FailureKind.HANDSHAKE_INVALID
    assert str(caught.value).startswith("The server's WebSocket handshake response is invalid")


async def test_connection_refused(connect: Any, closed_port: int, start_request: Any) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(f"ws://127.0.0.1:{closed_port}/millis", start_request):
            pytest.fail("connected to a closed port")
    assert caught.value.kind is FailureKind.REFUSED
    assert f"127.0.0.1:{closed_port} was refused" in str(caught.value)


async def test_unknown_host(connect: Any, start_request: Any) -> None:
    # .invalid never resolves (RFC 6761), so this needs no network.
    with pytest.raises(ConnectionFailed) as caught:
        async with connect("wss://millis.invalid/millis", start_request, connect_timeout=5):
            pytest.fail("resolved .invalid")
    assert caught.value.kind is FailureKind.DNS
    assert "'millis.invalid'" in str(caught.value)


async def test_cancel_while_receiving(connect: Any, peer: Any, start_request: Any) -> None:
    """Cancelling the caller mid-receive still closes politely (1000), within the
    disconnect timeout, and leaves no task behind."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as exc:
            peer.results["close"] = exc.rcvd.code if exc.rcvd else None

    server = peer(script)
    before = task_count()
    with anyio.move_on_after(0.5) as scope:
        async with connect(server.url(), start_request) as session:
            await read_events(session, is_a(Ready))
            async for _ in session:
                pass
    assert scope.cancelled_caught
    assert task_count() == before
    assert session.closed is not None and session.closed.code == 1000
    await server.wait_done()
    assert server.results["close"] == 1000


async def test_cancel_while_sending(
    connect: Any, peer: Any, start_request: Any, flavor: str
) -> None:
    """Cancelling a write that the peer does not drain breaks the session: 1006 with the
    reason, ConnectionLost on the next send, the socket closed, no task left behind.

    The native sessions never write in the caller's task (their writer does), so there
    the cancel cuts nothing: the audio the connection could not take was dropped,
    counted and reported, and the session carries on once the peer reads again."""
    if flavor in NATIVE:
        await _native_backpressure(connect, peer, start_request)
        return

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await asyncio.to_thread(peer.release.wait, 10)  # read nothing until released
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as exc:
            peer.results["close"] = exc.rcvd.code if exc.rcvd else 1006

    server = peer(script, max_size=None, max_queue=1)
    before = task_count()
    chunk = bytes(65536)
    async with connect(server.url(), start_request) as session:
        await read_events(session, is_a(Ready))
        with anyio.move_on_after(0.5) as scope:
            while True:  # fills the socket buffers, then blocks in a write
                await session.send_audio(chunk)
        assert scope.cancelled_caught
        assert session.closed is not None
        assert session.closed.code == 1006
        assert "cancelled part-way" in session.closed.reason
        with pytest.raises(ConnectionLost):
            await session.send_audio(chunk)
        leaving = anyio.current_time()
    assert anyio.current_time() - leaving < 1  # nothing left to wait for
    assert task_count() == before
    server.release.set()
    await server.wait_done()
    assert server.results["close"] == 1006  # the peer saw the socket go, no close frame


async def _native_backpressure(connect: Any, peer: Any, start_request: Any) -> None:
    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await asyncio.to_thread(peer.release.wait, 10)  # read nothing until released
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(message, str) and "after" in message:
                    peer.results["after"] = True
        except websockets.ConnectionClosed as exc:
            peer.results["close"] = exc.rcvd.code if exc.rcvd else 1006

    server = peer(script, max_size=None, max_queue=1)
    before = task_count()
    chunk = bytes(65536)
    async with connect(server.url(), start_request) as session:
        await read_events(session, is_a(Ready))
        with anyio.move_on_after(0.5) as scope:
            while True:  # fills the socket buffers, then the backlog: audio is dropped
                await session.send_audio(chunk)
        assert scope.cancelled_caught
        assert session.closed is None
        assert session.dropped_audio_samples > 0
        report = (await read_events(session, is_a(AudioDropped)))[-1]
        assert report.ongoing and report.total_samples == report.samples > 0
        server.release.set()
        await session.send_message("after")
    assert task_count() == before
    await server.wait_done()
    assert server.results["after"] is True
    assert server.results["close"] == 1000
