"""Hypothesis state machine over the local agent: random speech, silence, time and closes.

The agent is driven through its message-level server exactly as a connection would drive
it. Whatever the order, the invariants are those of a Millis server as a client sees it:

* ``onready`` is the first message; after ``onsessionended`` only the close follows;
* barge-in is well formed: ``unpause`` and ``clear`` only answer a ``pause``, and no answer
  audio is sent while paused;
* the phase agrees with what was sent (``paused`` exactly while a pause is open, ``ended``
  once the session is over) and only ever moves along rows of the transition table;
* ``get_timer()`` is ``None`` while waiting or ended, and ticking at it moves it forward.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
from agent_helpers import INITIATE, Harness, noise, silence, syllables
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from millis_proto import CloseInitiator, ConnectionClosed
from millis_proto.agent import TRANSITIONS, AgentPhase, AgentSetup, Scenario, Turn
from millis_proto.machine import CloseRequest

SCENARIO = Scenario(
    greeting=Turn(reply="Hello there"),
    turns=(Turn(reply="One two three four"), Turn(echo=True)),
    end_after_turns=3,
    max_duration_s=40.0,
    idle_timeout_s=6.0,
)

#: Every phase a single row of the table can lead to from a given phase.
_NEXT: dict[AgentPhase, set[AgentPhase]] = {}
for (_phase, _trigger), (_action, _new) in TRANSITIONS.items():
    _NEXT.setdefault(_phase, set()).add(_new)


def _reachable(start: AgentPhase) -> set[AgentPhase]:
    """Phases reachable from ``start`` through any number of table rows."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in _NEXT.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


class AgentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(AgentSetup(scenario=SCENARIO))
        self.initiated = False
        self.closed = False
        self.methods: list[str] = []  # every message the server sent, "audio" for binary
        self.phase = self.h.agent.phase
        self.sent_at_close = 0

    def _observe(self) -> None:
        for item in self.h.server.messages_to_send():
            if isinstance(item, bytes):
                self.methods.append("audio")
            elif isinstance(item, CloseRequest):
                self.methods.append("close")
            else:
                self.methods.append(json.loads(item)["method"])
        new = self.h.agent.phase
        assert new in _reachable(self.phase), (self.phase, new)
        self.phase = new

    @precondition(lambda self: not self.initiated and not self.closed)
    @rule()
    def initiate(self) -> None:
        self.initiated = True
        self.h.server.receive_message(
            json.dumps({"method": "initiate", "data": INITIATE}), self.h.now
        )
        for event in self.h.server.events():
            self.h.session.feed(event, self.h.now)
        self._observe()

    @precondition(lambda self: self.initiated and not self.closed)
    @rule(
        kind=st.sampled_from(["noise", "silence", "syllables"]),
        ms=st.sampled_from([20, 100, 260, 400, 700, 1200]),
    )
    def user_audio(self, kind: str, ms: int) -> None:
        pcm = {"noise": noise, "silence": silence, "syllables": syllables}[kind](ms)
        for i in range(0, len(pcm), 640):
            if self.h.server.closing:
                break
            self.h.now += len(pcm[i : i + 640]) / 32000
            self.h.server.receive_message(pcm[i : i + 640], self.h.now)
            for event in self.h.server.events():
                self.h.session.feed(event, self.h.now)
            self._observe()

    @rule(dt=st.floats(0, 8))  # also after the close: ticking then must send nothing
    def time_passes(self, dt: float) -> None:
        self.h.now += dt
        self.h.session.on_tick(self.h.now)
        self._observe()

    @rule()
    def tick_at_the_timer(self) -> None:
        timer = self.h.session.get_timer()
        if timer is None:
            return
        self.h.now = max(self.h.now, timer)
        self.h.session.on_tick(self.h.now)
        self._observe()
        after = self.h.session.get_timer()
        assert after is None or after > timer, (timer, after)

    @precondition(lambda self: not self.closed)
    @rule()
    def connection_closes(self) -> None:
        self.closed = True
        self.sent_at_close = len(self.methods)
        self.h.server.connection_closed(self.h.now)
        self.h.session.feed(
            ConnectionClosed(code=1005, reason="", initiator=CloseInitiator.REMOTE), self.h.now
        )
        self._observe()

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def messages_are_well_ordered(self) -> None:
        m = self.methods
        if m:
            assert m[0] == "onready"
        if "onsessionended" in m:
            assert m[m.index("onsessionended") + 1 :] in ([], ["close"])
        if self.closed:
            assert m[self.sent_at_close :] == [], "sent after the connection closed"
        paused = False
        for method in m:
            if method == "pause":
                assert not paused
                paused = True
            elif method in ("unpause", "clear"):
                assert paused, m
                paused = False
            elif method == "audio":
                assert not paused, "answer audio sent while paused"
        if not self.h.agent.ended:  # a close may end a session in the middle of a pause
            assert (self.h.agent.phase is AgentPhase.PAUSED) == paused

    @invariant()
    def phase_agrees_with_the_session(self) -> None:
        agent = self.h.agent
        assert agent.ended == (agent.phase is AgentPhase.ENDED)
        if "onsessionended" in self.methods or self.closed:
            assert agent.ended
        if agent.phase in (AgentPhase.WAITING, AgentPhase.ENDED):
            assert self.h.session.get_timer() is None
        if not self.initiated and not self.closed:
            assert agent.phase is AgentPhase.WAITING


TestAgentMachine = AgentMachine.TestCase
TestAgentMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
