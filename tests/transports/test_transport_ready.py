"""``session.wait_ready()``: bounded, returns the session id, clear errors — on every flavor.

Against the independent ``websockets`` peer: one that answers ``onready`` late, one that
never does, one that closes first; and the blocking API against a real ``serve``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from serve_helpers import serve_process
from transport_helpers import Peer, expect_initiate, open_session

from millis_proto import (
    ConnectionClosedByServer,
    ConnectionFailed,
    ConnectionLost,
    FailureKind,
    Ready,
    StartRequest,
)
from transports.blocking import connect_blocking

pytestmark = pytest.mark.anyio


async def late_ready(ws: Any, peer: Peer) -> None:
    await expect_initiate(ws)
    await asyncio.sleep(0.3)  # connect has long returned by then
    await ws.send('{"method": "onready", "payload": {"session_id": "late-1"}}')
    await asyncio.sleep(1)


async def test_wait_ready_waits_for_onready_and_returns_the_id(
    connect: Any, start_request: StartRequest, peer: Any
) -> None:
    server = peer(late_ready)
    async with connect(server.url(), start_request) as session:
        assert session.session_id is None  # connect does not wait for onready
        started = anyio.current_time()
        assert await session.wait_ready(timeout=5) == "late-1"
        assert 0.2 < anyio.current_time() - started < 3
        assert await session.wait_ready(timeout=0.01) == "late-1"  # at once, once ready
        first = await session.next_event()
        while not isinstance(first, Ready):  # the event itself stays in the stream
            first = await session.next_event()
        assert first.session_id == "late-1"


async def never_ready(ws: Any, peer: Peer) -> None:
    await expect_initiate(ws)
    await asyncio.sleep(3)


async def test_wait_ready_is_bounded(connect: Any, start_request: StartRequest, peer: Any) -> None:
    server = peer(never_ready)
    async with connect(server.url(), start_request) as session:
        started = anyio.current_time()
        with pytest.raises(ConnectionFailed) as caught:
            await session.wait_ready(timeout=0.3)
        assert 0.25 < anyio.current_time() - started < 2
        assert caught.value.kind is FailureKind.TIMEOUT
        assert str(caught.value) == (
            f"The server at 127.0.0.1:{server.port} did not say onready within 0.3 s."
        )
        assert session.closed is None  # still open: the caller decides what to do


async def closes_first(ws: Any, peer: Peer) -> None:
    await expect_initiate(ws)
    await ws.close(1000, "no agent here")


async def drops_first(ws: Any, peer: Peer) -> None:
    await expect_initiate(ws)
    ws.transport.abort()


@pytest.mark.parametrize(
    ("script", "error"), [(closes_first, ConnectionClosedByServer), (drops_first, ConnectionLost)]
)
async def test_wait_ready_raises_when_the_session_ends_first(
    connect: Any, start_request: StartRequest, peer: Any, script: Any, error: type
) -> None:
    server = peer(script)
    async with connect(server.url(), start_request) as session:
        with anyio.fail_after(5), pytest.raises(error) as caught:
            await session.wait_ready(timeout=10)  # returns long before its bound
    if script is closes_first:
        assert "ended (code 1000) before the server said onready" in str(caught.value)


async def test_wait_ready_rejects_a_bad_timeout(
    connect: Any, start_request: StartRequest, peer: Any
) -> None:
    server = peer(open_session)
    async with connect(server.url(), start_request) as session:
        for bad in (0, -1, float("nan")):
            with pytest.raises(ValueError, match="timeout must be a positive number"):
                await session.wait_ready(timeout=bad)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_blocking_wait_ready_against_serve(backend: str) -> None:
    request = StartRequest(public_key="local-test-key", agent_id="local-agent")
    with serve_process() as (url, _), connect_blocking(url, request, backend=backend) as session:
        session_id = session.wait_ready(timeout=10)
        assert session_id is not None and session_id.startswith("local-session-")
        assert session.session_id == session_id
