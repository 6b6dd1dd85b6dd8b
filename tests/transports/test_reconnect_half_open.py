"""A silent half-open peer: the core's liveness timer finds it, and the call reconnects.

The independent ``websockets`` peer answers ``onready`` and then goes quiet: it reads what
the client sends (so the client's writes succeed, as on a half-open TCP connection whose
far end vanished) but never sends another byte, not even a ``pong``. Nothing at the TCP
level reports a problem; only the liveness timer (no byte for ``liveness_timeout`` → a
Millis ping; no answer within ``pong_timeout`` → 1006) ends the connection, and the
reconnecting session continues on a new one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from transport_helpers import Peer, open_session, send_json

from millis_proto import ClientConfig, Reconnected, Reconnecting, ReconnectPolicy, StartRequest
from transports.reconnect import connect_reconnecting

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        "liveness_timeout" not in getattr(ClientConfig, "__dataclass_fields__", {}),
        reason="needs the core's liveness timer",
    ),
]


async def script(ws: Any, peer: Peer) -> None:
    number = peer.results["connections"] = peer.results.get("connections", 0) + 1
    initiate = await open_session(ws, f"quiet-{number}")
    peer.results.setdefault("initiates", []).append(initiate)
    if number == 1:
        async for _ in ws:  # half-open: read everything, answer nothing
            pass
        return
    await asyncio.sleep(0.3)
    await send_json(ws, "onsessionended")
    async for _ in ws:
        pass


async def test_silent_peer_is_found_by_liveness_and_the_call_continues(
    connect: Any, peer: Any, start_request: StartRequest
) -> None:
    quiet = peer(script)
    config = ClientConfig(liveness_timeout=0.6, pong_timeout=0.4)  # type: ignore[call-arg]
    events = []
    started = anyio.current_time()
    with anyio.fail_after(15):
        async with connect_reconnecting(
            quiet.url(),
            start_request,
            policy=ReconnectPolicy(initial_delay=0.1, jitter=0.0),
            connect=connect,
            config=config,
        ) as session:
            async for event in session:
                events.append(event)
                if len(events) % 5 == 0:
                    await session.send_audio(bytes(640))
    [reconnecting] = [e for e in events if isinstance(e, Reconnecting)]
    assert reconnecting.kind == "lost"
    # Found after the liveness ping went unanswered: not before 0.6 + 0.4 s.
    t_found = anyio.current_time() - started
    assert t_found >= 1.0
    [reconnected] = [e for e in events if isinstance(e, Reconnected)]
    assert reconnected.continued and reconnected.previous_session_id == "quiet-1"
    second = quiet.results["initiates"][1]
    assert second["session_continuation"] == {"session_id": "quiet-1"}
