"""A real client against the local agent, through WebSocket bytes in-process (no sockets).

A ClientConnection on one side, a ServerConnection driven by an AgentSession on the
other, exchanging ``data_to_send()`` bytes; the client must see the typed events a Millis
client expects.
"""

from __future__ import annotations

from typing import TypeVar

from agent_helpers import FRAME_BYTES, noise, silence

from millis_proto import (
    AgentAudio,
    AgentState,
    AgentStateChanged,
    Clear,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Event,
    FunctionCall,
    Pause,
    Pong,
    Ready,
    ResponseText,
    ServerConnection,
    SessionEnded,
    StartAnswering,
    StartRequest,
    Transcript,
)
from millis_proto.agent import AgentSession, AgentSetup, FunctionCallSpec, Scenario, Turn

E = TypeVar("E", bound=Event)


class Link:
    """Client and agent joined by a byte pipe; the clock follows the audio the client sends."""

    def __init__(self, setup: AgentSetup | None = None, *, connect: bool = True) -> None:
        self.cw = ClientConnection(
            StartRequest(public_key="pk-test", agent_id="agent-1"),
            "ws://127.0.0.1:8080/millis",
            ClientConfig(emit_audio_events=True),  # the tests look at every agent frame
        )
        self.client = self.cw
        self.sw = ServerConnection(now=0.0)
        self.session = AgentSession(setup, server=self.sw)
        self.now = 0.0
        self.events: list[Event] = []
        if connect:
            self.pump()

    def pump(self) -> None:
        timer = self.session.get_timer()
        if timer is not None and timer <= self.now:
            self.session.on_tick(self.now)
        for _ in range(100):
            up = self.cw.data_to_send()
            if up:
                self.sw.receive_data(up, self.now)
            for event in self.sw.events():
                self.session.feed(event, self.now)
            down = self.sw.data_to_send()
            if down:
                self.cw.receive_data(down, self.now)
            self.events += self.cw.events()
            if not up and not down:
                return

    def talk(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), FRAME_BYTES):
            self.now += 0.02
            if self.client.closing:
                self.pump()
                continue
            self.client.send_audio(pcm[i : i + FRAME_BYTES], self.now)
            self.pump()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def kinds(self, *kinds: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kinds)]


def test_client_sees_a_full_echo_turn() -> None:
    link = Link()
    link.talk(noise(1000) + silence(600) + silence(1200))
    [ready] = link.of(Ready)
    assert ready.session_id == "local-session-1"
    assert link.client.session_id == "local-session-1"
    assert link.kinds(StartAnswering, Transcript, ResponseText) == [
        StartAnswering(),
        Transcript(
            text="(user turn 1: 1.00 s of speech)", is_final=True, payload={"is_final": True}
        ),
        ResponseText(text="(echo of", is_final=False, payload={"is_final": False}),
        ResponseText(text="(echo of user turn", is_final=False, payload={"is_final": False}),
        ResponseText(text="(echo of user turn 1)", is_final=True, payload={"is_final": True}),
    ]
    audio = link.of(AgentAudio)
    assert [len(a.data) for a in audio] == [3200] * 10
    assert b"".join(a.data for a in audio) == noise(1000)
    states = [e.state for e in link.of(AgentStateChanged)]
    assert states[:2] == [AgentState.PREPARE_ANSWER, AgentState.ANSWER]
    assert link.client.playback.received_samples == 16000


def test_client_is_paused_then_cleared_by_an_interruption() -> None:
    link = Link()
    link.talk(noise(2000) + silence(600) + silence(400))
    link.talk(noise(800, seed=9))
    received = link.client.playback.received_samples
    # nothing was pulled for a speaker here, so the whole answer so far was dropped
    assert link.kinds(Pause, Clear, StartAnswering) == [
        StartAnswering(),
        Pause(),
        Clear(played_samples=0, dropped_samples=received),
    ]
    assert received > 0
    assert link.client.agent_state is AgentState.IDLE
    assert link.client.playback.queued_samples == 0  # the unplayed answer was dropped
    assert not link.client.playback.paused


def test_client_sees_function_calls_and_the_session_end() -> None:
    scenario = Scenario(
        turns=(
            Turn(
                reply="Checking",
                function_calls=(FunctionCallSpec(name="get_weather", params={"city": "Paris"}),),
            ),
        ),
        end_after_turns=1,
    )
    link = Link(AgentSetup(scenario=scenario))
    link.client.send_ping(link.now)
    link.pump()
    link.talk(noise(500) + silence(600) + silence(500))
    [pong] = link.of(Pong)
    assert pong.rtt_ms == 0.0
    [call] = link.of(FunctionCall)
    assert (call.function, call.params) == ("get_weather", {"city": "Paris"})
    [ended] = link.of(SessionEnded)
    assert ended.data == {"reason": "end_after_turns"}
    [closed] = link.of(ConnectionClosed)
    assert closed.code == 1000 and closed.normal
    assert link.session.agent.ended


def test_initiate_then_close_in_one_read_starts_nothing() -> None:
    """The wire layer closes the machine before the owner feeds it the batch's events."""
    link = Link(connect=False)
    link.sw.receive_data(link.cw.data_to_send(), 0.0)  # the handshake request
    link.cw.receive_data(link.sw.data_to_send(), 0.0)  # accepted: initiate is queued
    link.cw.close(1000, now=0.0)  # ... and the close right behind it, in the same write
    link.sw.receive_data(link.cw.data_to_send(), 0.0)
    events = link.sw.events()
    assert [type(e).__name__ for e in events] == [
        "Connected",
        "InitiateReceived",
        "ConnectionClosed",
    ]
    for event in events:
        link.session.feed(event, 0.0)
    assert link.session.agent.ended
    assert link.session.agent.session_id is None
    assert link.session.get_timer() is None
