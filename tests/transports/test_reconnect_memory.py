"""The whole reconnect story in virtual time: in-memory transport under trio's MockClock.

A scripted agent (one plan per connection) answers, drops the connection mid-answer, then
continues the session on the next connection. The conversation loop runs on a
:class:`ReconnectingSession`; every figure is exact because the clock is virtual.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np
import pytest
import trio.testing

from audio_backends import MemorySink, MemorySource
from millis_proto import (
    ConnectionClosed,
    ConnectionClosedByServer,
    ConnectionLost,
    Event,
    InitiateReceived,
    LocalProtocolError,
    MillisError,
    Ready,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ReconnectPolicy,
    StartRequest,
    event_to_dict,
)
from millis_proto.events import ClientAudio
from transports.conversation import run_conversation
from transports.memory import connect_in_memory
from transports.reconnect import ReconnectingSession, open_reconnecting
from transports.server import ServerSession

pytestmark = pytest.mark.anyio
RATE = 16000
REQUEST = StartRequest(public_key="pk-mem", agent_id="agent-1", metadata={"k": 1})
Plan = Callable[[ServerSession, int], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def marker(n: int) -> bytes:
    """``n`` never-zero samples: 1, 2, 3 …"""
    return (1 + np.arange(n) % 30000).astype("<i2").tobytes()


class Agent:
    """Runs ``plans[n]`` on the n-th connection; records every initiate and user audio."""

    def __init__(self, *plans: Plan) -> None:
        self.plans = plans
        self.initiates: list[dict[str, Any]] = []
        self.user_bytes: list[int] = []

    async def handler(self, session: ServerSession) -> None:
        number = len(self.initiates)
        self.user_bytes.append(0)
        events = session.events()
        async for event in events:
            if isinstance(event, InitiateReceived):
                self.initiates.append(event.data)
                break
        plan = self.plans[min(number, len(self.plans) - 1)]

        async def drain() -> None:
            async for event in events:
                if isinstance(event, ClientAudio):
                    self.user_bytes[number] += len(event.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(plan, session, number)
            await drain()  # until the client ends it (or the drop did)
            tg.cancel_scope.cancel()


async def answer_then_drop(session: ServerSession, number: int) -> None:
    session.server.send_ready(f"sess-{number + 1}")
    session.server.send_start_answering()
    session.server.send_audio(marker(2 * RATE))  # 2 s of answer, all at once
    await session.flush()
    # 1 s of it has been played when the network fails; the odd 10 ms keep the drop off
    # the 20 ms frame grid, so no frame and no drop happen at the same virtual instant.
    await anyio.sleep(1.01)
    await session.abort("network failure")


async def answer_then_end(session: ServerSession, number: int) -> None:
    session.server.send_ready(f"sess-{number + 1}")
    session.server.send_start_answering()
    session.server.send_audio(marker(RATE // 2))
    await session.flush()
    await anyio.sleep(2.0)
    session.server.send_session_ended()
    await session.flush()


async def drop_at_once(session: ServerSession, number: int) -> None:
    await session.abort("still failing")


async def close_1011(session: ServerSession, number: int) -> None:
    session.server.send_ready(f"sess-{number + 1}")
    await session.flush()
    await anyio.sleep(0.5)
    await session.aclose(1011, "internal error")


async def refuse(session: ServerSession, number: int) -> None:
    await session.aclose(1008, "unknown session")


def policy(**kw: Any) -> ReconnectPolicy:
    return ReconnectPolicy(**{"initial_delay": 0.5, "jitter": 0.0, **kw})


#: User frames (20 ms, 320 samples) given during the 0.5 s gap from 1.01 s to 1.51 s.
GAP_USER_SAMPLES = 25 * 320


async def talk(
    agent: Agent, pol: ReconnectPolicy, seconds: float = 4.0, max_duration: float = 30
) -> dict[str, Any]:
    """Run the conversation loop on a reconnecting in-memory session."""
    events: list[tuple[float, Event]] = []
    sink = MemorySink()
    result: dict[str, Any] = {"events": events, "sink": sink}
    started = anyio.current_time()
    async with open_reconnecting(
        lambda req: connect_in_memory(agent.handler, req), REQUEST, pol, entropy=lambda: 0.0
    ) as session:
        result["session"] = session
        try:
            result["outcome"] = await run_conversation(
                session,
                MemorySource(marker(int(seconds * RATE))),
                sink,
                on_event=lambda t, e: events.append((t, e)),
                idle_timeout=1.0,
                max_duration=max_duration,
            )
        except MillisError as exc:
            result["error"] = exc
    result["took"] = anyio.current_time() - started
    return result


def of(kind: type, result: dict[str, Any]) -> list[Any]:
    return [e for _, e in result["events"] if isinstance(e, kind)]


async def test_drop_mid_answer_continues_the_session_in_virtual_time() -> None:
    agent = Agent(answer_then_drop, answer_then_end)
    result = await talk(agent, policy())
    session: ReconnectingSession = result["session"]
    # The second initiate is the first plus session_continuation, nothing else.
    first, second = agent.initiates
    assert second == {**first, "session_continuation": {"session_id": "sess-1"}}
    [reconnecting] = of(Reconnecting, result)
    assert (reconnecting.attempt, reconnecting.delay, reconnecting.kind) == (1, 0.5, "lost")
    [reconnected] = of(Reconnected, result)
    assert reconnected.session_id == "sess-2" and reconnected.continued
    assert reconnected.previous_session_id == "sess-1"
    assert reconnected.downtime == pytest.approx(0.5, abs=0.05)
    # One final ConnectionClosed only, a normal one after onsessionended.
    [closed] = of(ConnectionClosed, result)
    assert closed.normal and result["events"][-1][1] is closed
    assert result["outcome"].reason == "server_closed" and "error" not in result
    # What was not played of the first answer was dropped and counted, exactly.
    sink: MemorySink = result["sink"]
    pcm = np.frombuffer(sink.pcm, "<i2")
    heard = int(np.count_nonzero(pcm))
    assert reconnecting.dropped_playback_samples == session.dropped_playback_samples
    assert heard + reconnecting.dropped_playback_samples == 2 * RATE + RATE // 2
    assert RATE * 0.9 <= 2 * RATE - reconnecting.dropped_playback_samples <= RATE * 1.1
    # The output is one timeline: silence in the gap, and as long as the call.
    t_drop = next(t for t, e in result["events"] if isinstance(e, Reconnecting))
    t_back = next(t for t, e in result["events"] if isinstance(e, Reconnected))
    gap = pcm[int(t_drop * RATE) + 400 : int(t_back * RATE) - 400]
    assert gap.size > 0.3 * RATE and not gap.any()
    assert abs(sink.written_samples / RATE - result["took"]) < 0.2
    # User audio given during the gap was dropped and counted; the rest reached the agent.
    assert reconnected.dropped_user_samples == session.dropped_user_samples
    assert reconnected.dropped_user_samples == GAP_USER_SAMPLES  # the gap, to the frame
    sent = result["outcome"].sent_samples
    accounted = sum(agent.user_bytes) // 2 + session.dropped_user_samples
    # Only what was in flight when the connection broke (one 20 ms frame) is unaccounted.
    assert sent - 320 <= accounted <= sent
    # The agent state went idle at the drop.
    names = [e.name for _, e in result["events"]]
    assert names.index("reconnecting") > names.index("closed") - len(names)  # present
    idle_after_drop = [
        e
        for t, e in result["events"]
        if e.name == "agent_state" and t_drop - 0.05 <= t <= t_back and e.state.value == "idle"
    ]
    assert idle_after_drop


def test_runs_are_deterministic() -> None:
    """Two runs, each on a fresh virtual clock, give the very same story and audio."""

    def story(result: dict[str, Any]) -> list[Any]:
        # Sorted within each instant: trio randomizes the order in which tasks ready at
        # the same virtual time run (the sender's SessionReady vs the player's latency).
        return sorted((t, json.dumps(event_to_dict(e))) for t, e in result["events"])

    def run() -> dict[str, Any]:
        async def main() -> dict[str, Any]:
            return await talk(Agent(answer_then_drop, answer_then_end), policy())

        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    one, two = run(), run()
    assert story(one) == story(two)
    assert one["sink"].pcm == two["sink"].pcm


async def test_too_many_failures_give_up_with_connection_lost() -> None:
    agent = Agent(answer_then_drop, drop_at_once)
    result = await talk(agent, policy(max_attempts=3, backoff=2.0))
    delays = [e.delay for e in of(Reconnecting, result)]
    assert delays == [0.5, 1.0, 2.0]
    [failed] = of(ReconnectFailed, result)
    assert failed.attempts == 3 and "3 reconnect attempts failed" in failed.reason
    assert isinstance(result["events"][-1][1], ConnectionClosed)
    assert isinstance(result["error"], ConnectionLost)
    assert "reconnecting failed" in str(result["error"])
    assert len(agent.initiates) == 4
    assert all(
        i.get("session_continuation") == {"session_id": "sess-1"} for i in agent.initiates[1:]
    )


async def test_server_1011_is_retried() -> None:
    agent = Agent(close_1011, answer_then_end)
    result = await talk(agent, policy(), seconds=1.0)
    [reconnecting] = of(Reconnecting, result)
    assert (reconnecting.kind, reconnecting.code) == ("server_error", 1011)
    assert of(Reconnected, result)[0].continued


async def test_refused_continuation_falls_back_to_a_fresh_session() -> None:
    agent = Agent(answer_then_drop, refuse, answer_then_end)
    result = await talk(agent, policy())
    first, refused, fresh = agent.initiates
    assert refused["session_continuation"] == {"session_id": "sess-1"}
    assert fresh == first
    causes = [e.kind for e in of(Reconnecting, result)]
    assert causes == ["lost", "continuation_refused"]
    [reconnected] = of(Reconnected, result)
    assert not reconnected.continued
    assert reconnected.fresh_reason == "the server refused to continue the session"


async def test_refused_continuation_can_stop() -> None:
    from millis_proto import ContinuationFallback

    agent = Agent(answer_then_drop, refuse)
    result = await talk(agent, policy(on_continuation_refused=ContinuationFallback.STOP))
    [failed] = of(ReconnectFailed, result)
    assert failed.kind == "continuation_refused"
    assert "refused" in str(result["error"])


@pytest.mark.parametrize("end", ["normal", "session_ended", "1008"])
async def test_final_ends_are_not_retried(end: str) -> None:
    async def plan(session: ServerSession, number: int) -> None:
        session.server.send_ready("only")
        await session.flush()
        await anyio.sleep(0.5)
        if end == "session_ended":
            session.server.send_session_ended()
            await session.flush()
        else:
            await session.aclose(1000 if end == "normal" else 1008, "bye")

    agent = Agent(plan)
    result = await talk(agent, policy(), seconds=1.0)
    assert len(agent.initiates) == 1
    assert not of(Reconnecting, result)
    [closed] = of(ConnectionClosed, result)
    if end == "1008":  # the session's own error, not retried
        assert closed.code == 1008 and isinstance(result["error"], ConnectionClosedByServer)
    else:
        assert "error" not in result


async def test_max_duration_counts_the_whole_call() -> None:
    """The gap is part of the call: 2 s of call are 2 s, reconnect included."""
    result = await talk(Agent(answer_then_drop, answer_then_end), policy(), max_duration=2.0)
    assert result["outcome"].reason == "max_duration"
    assert of(Reconnected, result)
    t_end = result["events"][-1][0]
    assert t_end == pytest.approx(2.0, abs=0.05)
    assert result["sink"].written_samples == pytest.approx(2.0 * RATE, abs=0.05 * RATE)


async def test_a_goodbye_after_a_reconnect_is_played_out() -> None:
    async def goodbye(session: ServerSession, number: int) -> None:
        session.server.send_ready(f"sess-{number + 1}")
        session.server.send_start_answering()
        session.server.send_audio(marker(RATE))
        session.server.send_session_ended()  # at once: the audio plays after the end
        await session.flush()

    result = await talk(Agent(answer_then_drop, goodbye), policy(), seconds=1.0)
    assert of(Reconnected, result)
    pcm = np.frombuffer(result["sink"].pcm, "<i2")
    heard = int(np.count_nonzero(pcm))
    assert heard + result["session"].dropped_playback_samples == 2 * RATE + RATE
    assert result["took"] < 5  # no drain spinning on silence


async def test_aclose_during_the_gap_stops_reconnecting() -> None:
    agent = Agent(answer_then_drop)
    async with open_reconnecting(
        lambda req: connect_in_memory(agent.handler, req),
        REQUEST,
        policy(initial_delay=5.0),
        entropy=lambda: 0.0,
    ) as session:
        seen: list[Event] = []
        async for event in session:
            seen.append(event)
            if isinstance(event, Reconnecting):
                break
        assert session.reconnecting
        await session.send_audio(b"\x00\x00" * 320)  # dropped, not an error
        assert session.dropped_user_samples == 320
        assert session.pull_playback(160).real_samples == 0
        started = anyio.current_time()
        await session.aclose()
        assert anyio.current_time() - started < 1
        rest = [e async for e in session]
    assert isinstance(rest[-1], ConnectionClosed) and rest[-1].code == 1006
    with pytest.raises(LocalProtocolError):  # over: sending is a mistake, not a gap
        await session.send_audio(b"\x00\x00")
    assert len(agent.initiates) == 1
    assert any(isinstance(e, Ready) for e in seen)
