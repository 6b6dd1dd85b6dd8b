"""The serving side against raw TCP clients that do not speak WebSocket properly."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

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
