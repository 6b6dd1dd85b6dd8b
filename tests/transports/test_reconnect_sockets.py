"""Reconnecting over real loopback sockets: trio, anyio on asyncio, and the blocking API.

The server is our own ``serve`` running the local agent behind ``drop_after`` (its first
connection's TCP is dropped mid-call). The continued session must go on where it was: no
second greeting, the next turn number.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest

from millis_proto import (
    Event,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    ResponseText,
    StartRequest,
)
from millis_proto.agent import AgentSetup, load_scenario, tone_voice
from transports.blocking import connect_blocking
from transports.faults import drop_after
from transports.local_agent import agent_handler
from transports.reconnect import connect_reconnecting
from transports.server import ServerAddress, serve

pytestmark = pytest.mark.anyio
RATE = 16000
SCENARIO = json.dumps({"greeting": "hello there", "turns": ["one", "two", "three"]})
REQUEST = StartRequest(public_key="pk-sock", agent_id="local-agent")
POLICY = ReconnectPolicy(initial_delay=0.1, jitter=0.0)


def speech(seconds: float) -> bytes:
    """A loud tone (voiced for the agent's VAD) followed by 0.8 s of silence."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return tone + bytes(int(0.8 * RATE) * 2)


@asynccontextmanager
async def dropping_agent(after: float) -> AsyncIterator[str]:
    setup = AgentSetup(scenario=load_scenario(SCENARIO), voice=tone_voice)
    handler = drop_after(agent_handler(setup), after)
    async with anyio.create_task_group() as tg:
        address: ServerAddress = await tg.start(serve, handler, "127.0.0.1", 0)
        yield address.url
        tg.cancel_scope.cancel()


async def speak(session: Any, pcm: bytes) -> None:
    """Send ``pcm`` in real time, 20 ms at a time, pulling playback as a speaker would."""
    for i in range(0, len(pcm), 640):
        await session.send_audio(pcm[i : i + 640])
        session.pull_playback(320)
        await anyio.sleep(0.02)


def finals(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ResponseText) and e.is_final]


@pytest.mark.parametrize("flavor", ["asyncio-anyio", "trio-trio"])
async def test_continued_session_skips_the_greeting_and_counts_on(connect: Any) -> None:
    async with dropping_agent(after=2.2) as url:
        events: list[Event] = []
        async with connect_reconnecting(
            url, REQUEST, policy=POLICY, connect=connect, entropy=lambda: 0.0
        ) as session:

            async def collect() -> None:
                async for event in session:
                    events.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                await speak(session, speech(0.5))  # turn 1, answered before the drop
                with anyio.fail_after(10):
                    while not any(isinstance(e, Reconnected) for e in events):
                        await speak(session, bytes(640))
                await speak(session, speech(0.5))  # turn 2, on the continued session
                with anyio.fail_after(10):
                    while "two" not in finals(events):
                        await speak(session, bytes(640))
                tg.cancel_scope.cancel()
    back = next(i for i, e in enumerate(events) if isinstance(e, Reconnected))
    reconnected = events[back]
    assert isinstance(reconnected, Reconnected) and reconnected.continued
    assert reconnected.previous_session_id == "local-session-1"
    assert reconnected.session_id == "local-session-2"
    assert [type(e) for e in events].count(Reconnecting) == 1
    assert finals(events[:back]) == ["hello there", "one"]
    assert finals(events[back:]) == ["two"]  # no second greeting; the turn count went on


def test_blocking_api_reconnects() -> None:
    from anyio.from_thread import start_blocking_portal

    # The server runs on its own event loop thread; the blocking client on another.
    with (
        start_blocking_portal("asyncio") as server_portal,
        server_portal.wrap_async_context_manager(dropping_agent(after=0.5)) as url,
        connect_blocking(url, REQUEST, reconnect=POLICY) as session,
    ):
        seen = []
        for event in session.events(timeout=10):
            seen.append(event)
            if isinstance(event, Reconnected):
                break
        assert session.session_id == "local-session-2"
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("Reconnecting") < kinds.index("Reconnected")
