"""The agent state machine: the one place that decides idle / prepare_answer / answer / pause.

Theory of operation
-------------------
The agent state is what the person hears the agent doing. It follows docs/protocol.md §5 (the
official SDK's table) with its two fixes:

* ``clear`` lifts a pause (the SDK leaves playback paused; the Flutter plugin lifts it), and
* audio that arrives while paused is kept (the playback buffer keeps accepting it).

Every transition is a row in :data:`TRANSITIONS`, keyed by ``(state, trigger)``; a pair that
is not in the table leaves the state unchanged. Rows marked ``*`` apply from every state.
``AGENT_AUDIO`` moves ``idle`` to ``answer`` too, because a greeting (``first_message``)
arrives with no ``start_answering`` before it. ``DRAINED`` is reported by the playback buffer
when a pull empties it while answering. The machine never looks at time: latency is measured
by the client machine, which owns the clock arguments.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "AgentState", "Trigger", "next_state"]


class AgentState(str, enum.Enum):
    """What the agent is doing, as the official SDK reports it."""

    IDLE = "idle"
    PREPARE_ANSWER = "prepare_answer"
    ANSWER = "answer"
    PAUSE = "pause"

    # The table below is looked up on every agent audio frame; Enum's own __hash__ is
    # Python code. A str enum equals its value, so hashing as the value is also the
    # hash that agrees with that equality.
    __hash__ = str.__hash__


class Trigger(enum.Enum):
    """Inputs of the agent state machine."""

    __hash__ = object.__hash__  # members are singletons compared by identity

    READY = "onready"
    START_ANSWERING = "start_answering"
    AGENT_AUDIO = "agent_audio"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    CLEAR = "clear"
    DRAINED = "drained"
    CLOSED = "closed"


_ALL = tuple(AgentState)
_S = AgentState
_T = Trigger

TRANSITIONS: dict[tuple[AgentState, Trigger], AgentState] = {
    **{(s, _T.READY): _S.IDLE for s in _ALL},  # *  onready
    **{(s, _T.START_ANSWERING): _S.PREPARE_ANSWER for s in _ALL},  # *  start_answering
    (_S.IDLE, _T.AGENT_AUDIO): _S.ANSWER,  # greeting with no start_answering
    (_S.PREPARE_ANSWER, _T.AGENT_AUDIO): _S.ANSWER,  # first audio after t0
    **{(s, _T.PAUSE): _S.PAUSE for s in _ALL},  # *  pause: stop playing, keep queueing
    (_S.PAUSE, _T.UNPAUSE): _S.ANSWER,  # resume from the buffer
    **{(s, _T.CLEAR): _S.IDLE for s in _ALL},  # *  clear: drop the queue, lift the pause
    (_S.ANSWER, _T.DRAINED): _S.IDLE,  # playback finished
    **{(s, _T.CLOSED): _S.IDLE for s in _ALL},  # *  socket closed
}


def next_state(state: AgentState, trigger: Trigger) -> AgentState:
    """Return the state after ``trigger``; unchanged when the table has no row for it."""
    return TRANSITIONS.get((state, trigger), state)
