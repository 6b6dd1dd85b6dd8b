"""Turn latency: from the end of the user's speech to the agent's answer, received and heard.

The one definition the CLI (``talk``), :class:`~transports.Conversation` and the test
suites (:mod:`transports.suite.measure`) share. A turn's latency is measured from the end
of the user's speech (the last voiced moment) to

* **received**: the agent state entering ``answer`` (from ``idle`` or ``prepare_answer``)
  at or after that end — the agent's first audio is on its way;
* **played**: the first agent audio played after that — what a person hears.

:class:`TurnLatencyMeter` applies the rule to moments fed in the order they happened;
:meth:`TurnLatencyMeter.feed` and :meth:`TurnLatencyMeter.event` adapt the live loop's
audio levels and events to it (a level block is *voiced* above :data:`VOICE_DBFS`), and
the suite feeds its exact sample times. Each measured turn is a :class:`TurnLatency`
event (``"turn_latency"`` in an event log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from audio_backends import AudioLevel
from millis_proto import AgentState, AgentStateChanged, Event

__all__ = ["VOICE_DBFS", "TurnLatency", "TurnLatencyMeter"]

#: Level blocks louder than this (RMS, dBFS) count as speech.
VOICE_DBFS = -45.0
#: The agent state changes that start an answer.
_ANSWER_FROM = (AgentState.IDLE, AgentState.PREPARE_ANSWER)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnLatency(Event):
    """End of the user's speech → first agent audio received / played, in ms (None: none)."""

    name: ClassVar[str] = "turn_latency"
    turn: int
    received_ms: float | None
    played_ms: float | None


class TurnLatencyMeter:
    """Measure turn after turn: tell it when speech ended, the answer started and agent
    audio played, in the order they happened (seconds, one clock).

    ``block_s`` is the length of a level block, for :meth:`feed`: the user's speech ends
    at the end of their last voiced block, and a played block may be stamped up to one
    block before the answer's start (block times are stream positions, events are clock
    readings). After each turn, :attr:`received` and :attr:`played` hold its moments
    (``None`` until they come).
    """

    def __init__(self, block_s: float = 0.0) -> None:
        self._block_s = block_s
        self._turn = 0
        self._speech_end: float | None = None
        #: When the current turn's answer started (the agent state entered ``answer``).
        self.received: float | None = None
        #: When the current turn's answer was first played.
        self.played: float | None = None

    def speech_ended(self, t: float) -> None:
        """The user's speech ended at ``t`` (again: more speech moves the end, and speech
        after the agent began answering starts a new turn)."""
        if self._speech_end is None or self.received is not None:
            self._turn += 1
            self.received = self.played = None
        self._speech_end = t

    def answer_started(self, t: float) -> None:
        """The agent began an answer at ``t``: the first one at or after the speech end
        is the turn's *received* moment."""
        if self._speech_end is not None and self.received is None and t >= self._speech_end:
            self.received = t

    def agent_played(self, t: float) -> TurnLatency | None:
        """Agent audio was played at ``t``; the first after the answer started completes
        the turn and gives its measurement."""
        if self._speech_end is None or self.received is None or self.played is not None:
            return None
        if t < self.received - self._block_s:
            return None
        self.played = t
        return TurnLatency(
            turn=self._turn,
            received_ms=_ms(self.received - self._speech_end),
            played_ms=_ms(max(0.0, t - self._speech_end)),
        )

    # --- adapters for the live conversation loop ------------------------------------------

    def feed(self, level: AudioLevel) -> TurnLatency | None:
        """A level block of the user (sent) or the agent (played); its measurement if
        this block is the turn's first agent audio heard."""
        if level.rms_dbfs <= VOICE_DBFS:
            return None
        if level.source == "user":
            self.speech_ended(level.t + self._block_s)
            return None
        return self.agent_played(level.t)

    def event(self, t: float, event: Event) -> None:
        """A session event at ``t``: an answer's start is noted."""
        if (
            isinstance(event, AgentStateChanged)
            and event.state is AgentState.ANSWER
            and event.previous in _ANSWER_FROM
        ):
            self.answer_started(t)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
