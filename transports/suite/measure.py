"""What a scripted call measured: the call's log, per-turn observations, measurement events.

Pure. The caller (:mod:`.caller`) fills a :class:`CallLog` as the call happens — every
session event with its time, each utterance it spoke, each block the speaker played —
and :func:`observe_turn` / :func:`observe_call` read the measurements off it:

* **turn latency** (:class:`~transports.turn_latency.TurnLatencyMeter`, the rule ``talk``
  uses too): end of the caller's speech (its last voiced sample) → the first agent audio
  *received* after it (the agent state entering ``answer``), and → the first agent audio
  *played* (the first block of the speaker holding real samples);
* **answer latency**: the client's ``latency`` event (``start_answering`` → first audio);
* **interruption stop time**: for a barge-in, the caller's first sample → the end of the
  agent audio played across it, when a ``pause`` or ``clear`` came after the barge-in;
* **transcript word error rate**: what the caller said against the agent's transcript.

Times are seconds from the start of the call on the session's clock (virtual time under
trio's ``MockClock``). Measurements are also :class:`~millis_proto.Event` subclasses so
they can join an event stream and the JSONL log (``event_to_dict`` works on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from millis_proto import (
    SAMPLE_RATE,
    AnswerLatency,
    BadMessage,
    Clear,
    Event,
    FunctionCall,
    Pause,
    ResponseText,
    SessionEnded,
    Transcript,
    Unpause,
)

from ..turn_latency import TurnLatency, TurnLatencyMeter
from .wer import word_error_rate

__all__ = [
    "CallLog",
    "CallObservation",
    "CallerSpeech",
    "InterruptionStop",
    "PlayedBlock",
    "Span",
    "TranscriptScore",
    "TurnLatency",
    "TurnObservation",
    "Utterance",
    "measurement_events",
    "observe_call",
    "observe_turn",
    "played_spans",
]


# --- measurement events ---------------------------------------------------------------------

_EVENT = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_EVENT)
class CallerSpeech(Event):
    """The caller spoke turn ``turn`` (1-based) over ``[start_s, end_s]`` of the call."""

    name: ClassVar[str] = "caller_speech"
    turn: int
    start_s: float
    end_s: float
    barge_in: bool = False


@dataclass(**_EVENT)
class InterruptionStop(Event):
    """A barge-in: how long the agent's audio went on after the caller started (ms)."""

    name: ClassVar[str] = "interruption"
    turn: int
    stop_ms: float | None
    note: str = ""


@dataclass(**_EVENT)
class TranscriptScore(Event):
    """The agent's transcript of turn ``turn`` against what the caller said."""

    name: ClassVar[str] = "transcript_wer"
    turn: int
    wer: float | None
    heard: str


# --- the raw log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Utterance:
    """One turn as spoken: first sample at ``start``, last voiced sample at ``voiced_end``,
    last sample at ``end`` (seconds of the call). ``text`` is what was said, if known."""

    turn: int
    start: float
    end: float
    voiced_end: float
    text: str | None = None
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class PlayedBlock:
    """One speaker block: pulled at ``t``, ``real`` of its ``size`` samples were audio."""

    t: float
    real: int
    size: int


@dataclass(frozen=True, slots=True)
class Span:
    """An interval of the call, ``[start, end]`` seconds."""

    start: float
    end: float


@dataclass
class CallLog:
    """Everything a call produced, appended as it happens (the caller owns it)."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    played: list[PlayedBlock] = field(default_factory=list)
    #: Problems that ended or marred the call, as sentences (timeouts, session errors).
    errors: list[str] = field(default_factory=list)
    #: When the call ended (seconds); None while it runs.
    ended_at: float | None = None


def played_spans(blocks: list[PlayedBlock]) -> list[Span]:
    """Merge consecutive blocks holding audio into spans of audible agent speech.

    A block's audio comes first (zero padding after it), so a partly real block ends
    the span ``real`` samples in.
    """
    spans: list[Span] = []
    current: Span | None = None
    for block in blocks:
        if not block.real:
            if current is not None:
                spans.append(current)
                current = None
            continue
        end = block.t + block.real / SAMPLE_RATE
        if current is not None and abs(current.end - block.t) < _SAME_INSTANT:
            current = Span(current.start, end)
        else:
            if current is not None:
                spans.append(current)
            current = Span(block.t, end)
    if current is not None:
        spans.append(current)
    return spans


#: Two times closer than this are the same instant (block times are computed sums).
_SAME_INSTANT = 1e-6


# --- observations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnObservation:
    """What happened during one turn's window (its speech start to the next one's)."""

    turn: int
    said: str | None
    speech: Span
    barge_in: bool
    transcripts: tuple[str, ...] = ()
    functions: tuple[tuple[str, dict[str, Any]], ...] = ()
    responses: tuple[str, ...] = ()
    received_ms: float | None = None
    played_ms: float | None = None
    answer_latency_ms: float | None = None
    wer: float | None = None
    interruption_ms: float | None = None
    interruption_note: str = ""
    error: str | None = None

    @property
    def heard(self) -> str:
        """The agent's transcript of the turn (final texts joined)."""
        return " ".join(self.transcripts)

    @property
    def response(self) -> str:
        """The agent's answer text (final texts joined)."""
        return " ".join(self.responses)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallObservation:
    """The whole call: its turns and what held across it."""

    turns: tuple[TurnObservation, ...]
    session_ended: bool
    duration_ms: float
    bad_messages: tuple[str, ...]
    errors: tuple[str, ...]


def _finals(texts: list[tuple[str, bool]]) -> tuple[str, ...]:
    """Final texts; if none arrived, the last partial (all an agent may send)."""
    finals = tuple(text for text, final in texts if final)
    if finals or not texts:
        return finals
    return (texts[-1][0],)


def observe_turn(log: CallLog, index: int, error: str | None = None) -> TurnObservation:
    """Measure turn ``index`` (0-based in ``log.utterances``) from the log so far."""
    utter = log.utterances[index]
    window_end = (
        log.utterances[index + 1].start if index + 1 < len(log.utterances) else float("inf")
    )
    events = [(t, e) for t, e in log.events if utter.start <= t < window_end]
    transcripts: list[tuple[str, bool]] = []
    responses: list[tuple[str, bool]] = []
    functions: list[tuple[str, dict[str, Any]]] = []
    answer_latency: float | None = None
    meter = TurnLatencyMeter()  # exact sample times here: no block slack
    meter.speech_ended(utter.voiced_end)
    for t, event in events:
        meter.event(t, event)
        # The core reads text liberally (``None`` when unreadable, ``is_final`` ``None``
        # when the server did not say); here an unsaid is_final counts as not final.
        if isinstance(event, Transcript):
            transcripts.append((event.text or "", event.is_final is True))
        elif isinstance(event, ResponseText):
            responses.append((event.text or "", event.is_final is True))
        elif isinstance(event, FunctionCall) and event.function is not None:
            functions.append((event.function, dict(event.params)))
        elif isinstance(event, AnswerLatency) and answer_latency is None:
            answer_latency = event.ms
    for block in log.played:
        if block.real and block.t < window_end and meter.agent_played(block.t):
            break
    received, played = meter.received, meter.played
    heard = " ".join(_finals(transcripts))
    stop, note = (None, "")
    if utter.barge_in:
        stop, note = _interruption(log, utter, window_end)
    return TurnObservation(
        turn=utter.turn,
        said=utter.text,
        speech=Span(utter.start, utter.voiced_end),
        barge_in=utter.barge_in,
        transcripts=_finals(transcripts),
        functions=tuple(functions),
        responses=_finals(responses),
        received_ms=None if received is None else _ms(received - utter.voiced_end),
        played_ms=None if played is None else _ms(played - utter.voiced_end),
        answer_latency_ms=answer_latency,
        wer=None if utter.text is None or not transcripts else word_error_rate(utter.text, heard),
        interruption_ms=stop,
        interruption_note=note,
        error=error,
    )


def _interruption(log: CallLog, utter: Utterance, window_end: float) -> tuple[float | None, str]:
    """The barge-in's stop time: the end of the agent audio played across its start, when
    a ``pause`` or ``clear`` stopped it (not the answer simply running out)."""
    spans = played_spans(log.played)
    # A block period of slack: the block playing when the caller started may end a hair
    # before the caller's first sample yet still be what the caller talked over.
    slack = max((b.size for b in log.played), default=0) / SAMPLE_RATE
    across = next((s for s in spans if s.start <= utter.start <= s.end + slack), None)
    if across is None:
        return None, "the agent was not speaking when the caller barged in"
    stops = [
        t for t, e in log.events if isinstance(e, (Pause, Clear)) and utter.start <= t < window_end
    ]
    if not stops or stops[0] > across.end + slack:
        return None, "the agent's audio was not stopped by a pause or clear"
    return _ms(max(across.end, utter.start) - utter.start), ""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def observe_call(log: CallLog, turn_errors: dict[int, str] | None = None) -> CallObservation:
    """Measure every turn spoken and the call as a whole."""
    errors = turn_errors or {}
    turns = tuple(observe_turn(log, i, errors.get(u.turn)) for i, u in enumerate(log.utterances))
    ended = any(isinstance(e, SessionEnded) for _, e in log.events)
    bad = tuple(e.reason for _, e in log.events if isinstance(e, BadMessage))
    end = log.ended_at if log.ended_at is not None else (log.events[-1][0] if log.events else 0)
    return CallObservation(
        turns=turns,
        session_ended=ended,
        duration_ms=_ms(end),
        bad_messages=bad,
        errors=tuple(log.errors),
    )


def measurement_events(turn: TurnObservation) -> list[Event]:
    """The measurement events of an observed turn."""
    out: list[Event] = [
        CallerSpeech(
            turn=turn.turn,
            start_s=turn.speech.start,
            end_s=turn.speech.end,
            barge_in=turn.barge_in,
        ),
        TurnLatency(turn=turn.turn, received_ms=turn.received_ms, played_ms=turn.played_ms),
        TranscriptScore(turn=turn.turn, wer=turn.wer, heard=turn.heard),
    ]
    if turn.barge_in:
        out.append(
            InterruptionStop(
                turn=turn.turn, stop_ms=turn.interruption_ms, note=turn.interruption_note
            )
        )
    return out


#: Events that mark the timeline picture, and their labels.
TIMELINE_MARKS: dict[type[Event], str] = {
    Pause: "pause",
    Unpause: "unpause",
    Clear: "clear",
    FunctionCall: "function",
    SessionEnded: "session ended",
}
