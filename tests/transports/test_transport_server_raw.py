"""The serving side against raw TCP clients that do not speak WebSocket properly."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import anyio.abc
import pytest
from transport_helpers import is_a, read_events

from millis_proto import (
    ClientConnection,
    ConnectionFailed,
    FailureKind,
    InitiateReceived,
    Ready,
    ServerConnection,
    StartRequest,
)
from transports.anyio import connect
from transports.server import ServerSession, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _never_called(session: ServerSession) -> None:
    raise AssertionError("the handler ran for a connection that never completed a handshake")


async def _read_all(stream: Any) -> bytes:
    data = b""
    with anyio.fail_after(5):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


async def test_silent_client_is_dropped_after_the_handshake_timeout() -> None:
    async with anyio.create_task_group() as group:
        address = await group.start(functools.partial(serve, _never_called, handshake_timeout=0.2))
        async with await anyio.connect_tcp("127.0.0.1", address.port) as stream:
            assert await _read_all(stream) == b""  # closed without a word
        group.cancel_scope.cancel()


async def test_plain_http_request_gets_400() -> None:
    async with anyio.create_task_group() as group:
        address = await group.start(serve, _never_called)
        async with await anyio.connect_tcp("127.0.0.1", address.port) as stream:
            await stream.send(b"GET /millis HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await _read_all(stream)
        assert answer.startswith(b"HTTP/1.1 400")
        group.cancel_scope.cancel()


# --- hostile handshakes (issue 11, items 1 and 5) -------------------------------------------

HANDSHAKE = (
    b"GET /millis HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
REQUEST = StartRequest(public_key="pk-raw", agent_id="a")


async def _ready_handler(session: ServerSession) -> None:
    async for event in session:
        if isinstance(event, InitiateReceived):
            session.connection.send_ready(f"meta-{len(event.request.metadata or {})}")
            await session.flush()


@pytest.mark.parametrize(
    "bad",
    [
        HANDSHAKE.replace(b"Connection: Upgrade", b"Connection: Upgr\xe1de"),
        HANDSHAKE.replace(b"Host: h", b"Host: h\xe1"),
    ],
)
async def test_a_non_ascii_handshake_gets_400_and_the_listener_survives(bad: bytes) -> None:
    async with anyio.create_task_group() as group:
        address = await group.start(serve, _ready_handler)
        async with await anyio.connect_tcp("127.0.0.1", address.port) as stream:
            await stream.send(bad)
            assert (await _read_all(stream)).startswith(b"HTTP/1.1 400")
        # the same listener still serves a well-behaved session
        async with connect(address.url, REQUEST) as session:
            ready = await read_events(session, is_a(Ready))
            assert ready[-1] == Ready(session_id="meta-0", payload={"session_id": "meta-0"})
        group.cancel_scope.cancel()


async def test_a_pipelined_initiate_after_a_long_first_write_is_served() -> None:
    """Handshake, then an initiate with 64 kB of metadata, in one write of over 64 KiB."""
    request = StartRequest(public_key="pk-raw", agent_id="a", metadata={"blob": "y" * 65_400})
    client = ClientConnection(request, "ws://127.0.0.1/millis")
    handshake = client.data_to_send()
    helper = ServerConnection(now=0.0)  # only to produce the 101 the client needs
    helper.receive_data(handshake, 0.0)
    client.receive_data(helper.data_to_send(), 0.0)
    payload = handshake + client.data_to_send()
    assert len(payload) > 64 * 1024
    async with anyio.create_task_group() as group:
        address = await group.start(serve, _ready_handler)
        async with await anyio.connect_tcp("127.0.0.1", address.port) as stream:
            await stream.send(payload)
            answer = b""
            with anyio.fail_after(5):
                while b"meta-" not in answer:
                    answer += await stream.receive()
        assert answer.startswith(b"HTTP/1.1 101 ")
        # the handler saw the initiate and its metadata: onready names one metadata key
        assert b'{"method":"onready","payload":{"session_id":"meta-1"}}' in answer
        group.cancel_scope.cancel()


async def test_a_101_with_a_bad_byte_fails_the_connect_cleanly() -> None:
    async def bad_server(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgr\xe1de\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )
            await anyio.sleep(5)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, bad_server)
        with pytest.raises(ConnectionFailed) as failed:
            async with connect(f"ws://127.0.0.1:{port}/millis", REQUEST, connect_timeout=5):
                pass
        assert failed.value.kind is FailureKind.HANDSHAKE_INVALID
        group.cancel_scope.cancel()
