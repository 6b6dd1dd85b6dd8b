"""The local agent: a Millis-compatible voice agent as a pure object.

Theory of operation
-------------------
A :class:`LocalAgent` serves one connection. It drives a
:class:`~millis_proto.ServerConnection` (or, at the message level, a
:class:`~millis_proto.server.MessageServer`: anything with their ``send_*`` methods, see
:class:`ServerSender`) by calling its ``send_*`` methods; the owner drains it as usual.
Its inputs all carry ``now`` (monotonic seconds from the owner's clock):
:meth:`~LocalAgent.on_initiate`, :meth:`~LocalAgent.on_client_audio`,
:meth:`~LocalAgent.on_tick` and :meth:`~LocalAgent.on_closed`. :meth:`~LocalAgent.get_timer`
says when ``on_tick`` is next needed (aioquic's ``get_timer``/``handle_timer``).

Two timelines, on purpose:

* **Speech** is judged on the sample timeline of the received audio (:mod:`.turns`), so the
  same audio gives the same turns whatever the network did to its timing.
* **Answer pacing, idle timeout and max duration** run on ``now``: they are about how long
  the person waits. Every input first brings them up to ``now`` (``on_client_audio`` runs
  ``on_tick``), so what was "already sent" is exact when a barge-in comes.

Phases (:class:`AgentPhase`): ``waiting`` until ``initiate``; then ``listening``,
``talking`` (an answer is streaming) and ``paused`` (held by a barge-in); ``ended`` once
the session is over or the connection closed. Every phase change is a row of
:data:`TRANSITIONS`, keyed by ``(phase, trigger)`` → ``(action, next phase)``; a pair that is
not in the table does nothing. The speech rows are the one place that decides barge-in,
after Millis (docs/protocol.md §4 ``pause``/``unpause``/``clear``)::

    waiting   + INITIATE        →          → listening  onready sent
    listening + GREET           →          → talking    the greeting starts
    talking   + SpeechStarted   → pause    → paused     the user may be interrupting
    paused    + SpeechDiscarded → unpause  → talking    only a cough: the answer goes on
    paused    + SpeechConfirmed → clear    → listening  a real interruption: rest dropped
    listening + TurnEnded       → answer   → talking    the user finished a turn
    talking   + ANSWER_OVER     →          → listening  the answer played out
    *         + END             →          → ended      ended by the agent, or closed

``talking + SpeechConfirmed`` and a ``TurnEnded`` while talking or paused cannot happen: an
answer starts only at ``onready`` or at a turn's end, so any speech segment open during an
answer began after it, with a ``SpeechStarted``.

An answer (:meth:`Scenario.turn`) sends ``start_answering`` and a final ``ontranscript``
(user turns only), the scripted ``onfunction``/``ai_action``/other messages, cumulative
``onresponsetext`` partials and a final, then its audio in ``chunk_ms`` frames, paced to
stay ``send_ahead_ms`` ahead of the client's playback. The echo agent cannot recognize
speech, so its transcript is a placeholder: ``"(user turn 1: 1.20 s of speech)"``.

The session ends (``onsessionended`` with ``{"reason": ...}``, then close 1000) after the
answer to turn ``end_after_turns`` has played out or been cleared, ``max_duration_s``
after ``onready``, or after ``idle_timeout_s`` of listening with no user speech.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import StartRequest
from ..errors import ConfigError, LocalProtocolError
from ..pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, ms_to_samples
from ._fields import check_number, field_error
from .scenario import Scenario, Turn
from .store import SessionIdCounter, SessionRecord, SessionStore, TranscriptLine
from .stream import AnswerStream
from .turns import (
    SpeechConfirmed,
    SpeechDiscarded,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from .voice import Voice, tone_voice

__all__ = [
    "MAX_ANSWER_SECONDS",
    "SPEECH_TRANSITIONS",
    "TRANSITIONS",
    "AgentPhase",
    "AgentSetup",
    "AgentTrigger",
    "LocalAgent",
    "ServerSender",
    "SpeechAction",
]

#: Longest answer audio the agent streams; a longer clip or voice output is cut there
#: (the client's playback buffer holds 120 s by default, too).
MAX_ANSWER_SECONDS = 120.0
#: At most this many ``onresponsetext`` partials precede the final one.
MAX_PARTIALS = 2


class AgentPhase(str, enum.Enum):
    """What the local agent is doing (see the module docstring)."""

    WAITING = "waiting"
    LISTENING = "listening"
    TALKING = "talking"
    PAUSED = "paused"
    ENDED = "ended"


class SpeechAction(enum.Enum):
    """What a speech event makes the agent do."""

    PAUSE = "pause"
    UNPAUSE = "unpause"
    CLEAR = "clear"
    ANSWER = "answer"


class AgentTrigger(enum.Enum):
    """Inputs of the agent phase machine besides the speech events of :mod:`.turns`."""

    INITIATE = "initiate"
    GREET = "greet"
    ANSWER_OVER = "answer_over"
    END = "end"


_P = AgentPhase
_A = SpeechAction
_T = AgentTrigger

#: ``(phase, trigger) → (action, next phase)``; absent pairs do nothing. A trigger is an
#: :class:`AgentTrigger` or the type of a speech event (:data:`~.turns.TurnEvent`).
TRANSITIONS: dict[
    tuple[AgentPhase, AgentTrigger | type[TurnEvent]], tuple[SpeechAction | None, AgentPhase]
] = {
    (_P.WAITING, _T.INITIATE): (None, _P.LISTENING),
    (_P.LISTENING, _T.GREET): (None, _P.TALKING),
    (_P.TALKING, SpeechStarted): (_A.PAUSE, _P.PAUSED),
    (_P.PAUSED, SpeechDiscarded): (_A.UNPAUSE, _P.TALKING),
    (_P.PAUSED, SpeechConfirmed): (_A.CLEAR, _P.LISTENING),
    (_P.LISTENING, TurnEnded): (_A.ANSWER, _P.TALKING),
    (_P.TALKING, _T.ANSWER_OVER): (None, _P.LISTENING),
    (_P.LISTENING, _T.ANSWER_OVER): (None, _P.LISTENING),  # after a clear
    **{(p, _T.END): (None, _P.ENDED) for p in AgentPhase},
}
#: The same table (its speech rows were once a table of their own); kept for old callers.
SPEECH_TRANSITIONS = TRANSITIONS


class ServerSender(Protocol):
    """What the agent drives: a ``ServerConnection`` or a ``MessageServer``."""

    @property
    def closing(self) -> bool: ...
    def send_ready(self, session_id: str) -> None: ...
    def send_transcript(self, text: str, *, is_final: bool | None) -> None: ...
    def send_response_text(self, text: str, *, is_final: bool | None) -> None: ...
    def send_function_call(self, name: str, params: dict[str, Any]) -> None: ...
    def send_start_answering(self) -> None: ...
    def send_pause(self) -> None: ...
    def send_unpause(self) -> None: ...
    def send_clear(self) -> None: ...
    def send_ai_action(self, data: Any) -> None: ...
    def send_session_ended(self, data: Any = ...) -> None: ...
    def send_audio(self, pcm: bytes) -> None: ...
    def send_message(self, method: str, data: Any = ..., payload: Any = ...) -> None: ...
    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSetup:
    """Everything the connections of one local agent server share.

    * ``scenario``: the script (default: the echo agent).
    * ``voice``: text → 16 kHz s16le PCM (default: :func:`tone_voice`). The I/O layer
      injects a speaking one; exceptions it raises propagate out of the agent's inputs.
    * ``clips``: PCM of every ``audio`` path of the scenario, keyed by the path as written.
    * ``store`` and ``new_session_id``: shared state by design — one per server, so a
      continued session finds its predecessor and ids stay unique.
    * ``chunk_ms``: agent audio frame length; ``send_ahead_ms``: how far audio is sent
      ahead of the client's playback; ``max_utterance_s``: bound of the user audio kept for
      echoing (the start of a longer utterance is kept).

    Raises :class:`ConfigError` naming the field when anything is invalid, including a
    scenario audio path with no clip.
    """

    scenario: Scenario = field(default_factory=Scenario)
    voice: Voice = tone_voice
    clips: Mapping[str, bytes] = field(default_factory=dict)
    store: SessionStore = field(default_factory=SessionStore)
    new_session_id: Callable[[], str] = field(default_factory=SessionIdCounter)
    chunk_ms: float = 100.0
    send_ahead_ms: float = 200.0
    max_utterance_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, Scenario):
            raise field_error("scenario", "must be a Scenario (see load_scenario).")
        if not callable(self.voice):
            raise field_error("voice", "must be a callable text -> PCM.")
        if not isinstance(self.clips, Mapping):
            raise field_error("clips", "must map scenario audio paths to PCM bytes.")
        for path in self.scenario.audio_paths():
            if not isinstance(self.clips.get(path), (bytes, bytearray)):
                raise field_error("clips", f"no PCM was given for the scenario audio {path!r}.")
        if not isinstance(self.store, SessionStore):
            raise field_error("store", "must be a SessionStore.")
        if not callable(self.new_session_id):
            raise field_error("new_session_id", "must be a callable returning a string.")
        check_number("chunk_ms", self.chunk_ms)
        if ms_to_samples(self.chunk_ms) < 1:
            raise field_error("chunk_ms", "must be at least one sample (1/16 ms).")
        check_number("send_ahead_ms", self.send_ahead_ms, allow_equal=True)
        check_number("max_utterance_s", self.max_utterance_s)


class LocalAgent:
    """One connection's agent, driving ``server``. See the module docstring.

    Inputs raise :class:`LocalProtocolError` on misuse (a second ``initiate``) and
    :class:`ConfigError` if ``new_session_id`` returns no string; an exception from the
    injected voice propagates unchanged. Once the server machine is closing or closed,
    inputs are ignored and the phase is ``ended``.
    """

    def __init__(self, server: ServerSender, setup: AgentSetup | None = None) -> None:
        self.setup = setup if setup is not None else AgentSetup()
        self._server = server
        scenario = self.setup.scenario
        self._detector = TurnDetector(
            scenario.turn_detection,
            max_capture_samples=int(self.setup.max_utterance_s * SAMPLE_RATE),
        )
        self._phase = AgentPhase.WAITING
        self._record = SessionRecord()
        self._stream: AnswerStream | None = None
        self._idle_since = 0.0
        self._end_at: float | None = None  # max-duration deadline
        #: This session's id, from ``onready``; ``None`` before ``initiate``.
        self.session_id: str | None = None
        #: The session id this one continues, when ``session_continuation`` named a known one.
        self.continued_from: str | None = None
        #: Why the agent ended the session (``end_after_turns`` / ``max_duration`` /
        #: ``idle_timeout``); ``None`` if it did not.
        self.end_reason: str | None = None

    # --- state -------------------------------------------------------------------------

    @property
    def phase(self) -> AgentPhase:
        """The agent's phase."""
        return self._phase

    @property
    def ended(self) -> bool:
        """True once the session is over (ended by the agent, or the connection closed)."""
        return self._phase is AgentPhase.ENDED

    @property
    def record(self) -> SessionRecord:
        """Turns answered and transcript so far (resumed ones included)."""
        return self._record

    def get_timer(self) -> float | None:
        """The next time :meth:`on_tick` must be called, or ``None`` if nothing is timed."""
        if self._phase in (AgentPhase.WAITING, AgentPhase.ENDED):
            return None
        # The earliest of up to three deadlines; asked at every wake-up, so no temporaries.
        earliest = self._end_at
        idle = self._idle_deadline()
        if idle is not None and (earliest is None or idle < earliest):
            earliest = idle
        if self._stream is not None:
            answer = self._stream.next_deadline()
            if answer is not None and (earliest is None or answer < earliest):
                earliest = answer
        return earliest

    # --- inputs ------------------------------------------------------------------------

    def on_initiate(self, request: StartRequest, now: float) -> None:
        """The client's valid ``initiate``: send ``onready`` (and the greeting, if any).

        A ``session_continuation`` naming a session in the store resumes its turn count and
        transcript under a fresh id (and skips the greeting); an unknown id starts afresh.
        """
        if self._phase is not AgentPhase.WAITING:
            raise LocalProtocolError("the agent already handled an initiate.")
        if not self._live():
            return
        setup = self.setup
        previous = setup.store.get(request.session_id) if request.session_id else None
        session_id = setup.new_session_id()
        if not isinstance(session_id, str) or not session_id:
            raise ConfigError("new_session_id must return a non-empty string.")
        self.session_id = session_id
        if previous is not None:
            self.continued_from = request.session_id
            self._record = previous
        setup.store.put(session_id, self._record)
        if setup.scenario.max_duration_s is not None:
            self._end_at = now + setup.scenario.max_duration_s
        self._server.send_ready(session_id)
        self._listen(_T.INITIATE, now)
        greeting = self._greeting(request) if previous is None else None
        if greeting is not None:
            self._advance(_T.GREET)
            self._answer(greeting, None, now)

    def on_client_audio(self, pcm: bytes, now: float) -> None:
        """User audio (any byte length). Timers are brought up to ``now`` first."""
        if not self._run_timers(now):
            return
        events = self._detector.push(pcm)
        for event in events:
            self._on_speech(event, now)
            if self.ended:
                return
        if events or self._detector.in_speech:
            self._idle_since = now  # the user is talking: not idle

    def on_tick(self, now: float) -> None:
        """Timers: end the session on max duration / idle timeout; stream due audio."""
        self._run_timers(now)

    def on_closed(self, now: float) -> None:
        """The connection closed: stop everything."""
        self._stop()

    # --- speech ------------------------------------------------------------------------

    def _on_speech(self, event: TurnEvent, now: float) -> None:
        action = self._advance(type(event))
        if action is None:
            return
        stream = self._stream
        if action is SpeechAction.ANSWER:
            assert isinstance(event, TurnEnded)
            number = self._record.turns + 1
            self._answer(self.setup.scenario.turn(number), event, now)
            return
        assert stream is not None  # talking and paused always have an answer streaming
        if action is SpeechAction.PAUSE:
            stream.pause(now)
            self._server.send_pause()
        elif action is SpeechAction.UNPAUSE:
            self._server.send_unpause()
            stream.resume(now)
            self._pump(now)
        else:  # CLEAR: the client drops its queue; we stop sending this answer
            self._server.send_clear()
            self._answer_over(now)

    # --- answering ---------------------------------------------------------------------

    def _greeting(self, request: StartRequest) -> Turn | None:
        if self.setup.scenario.greeting is not None:
            return self.setup.scenario.greeting
        # Millis speaks agent_config.first_message when the session opens (docs/protocol.md §6).
        config = request.agent_config or {}
        first = config.get("first_message")
        return Turn(reply=first) if isinstance(first, str) and first.strip() else None

    def _answer(self, turn: Turn, user: TurnEnded | None, now: float) -> None:
        server = self._server
        record = self._record
        reply = turn.reply
        if user is not None:
            number = record.turns + 1
            heard = turn.transcript
            if heard is None:
                heard = f"(user turn {number}: {user.duration_s:.2f} s of speech)"
            server.send_start_answering()
            server.send_transcript(heard, is_final=True)
            record = record.with_line(TranscriptLine(role="user", text=heard), turns=number)
            if reply is None and turn.echo:
                reply = f"(echo of user turn {number})"
        for call in turn.function_calls:
            server.send_function_call(call.name, dict(call.params))
        for action in turn.ai_actions:
            server.send_ai_action(action)
        for message in turn.messages:
            server.send_message(message.method, message.data, message.payload)
        if reply:
            for partial in _partials(reply):
                server.send_response_text(partial, is_final=False)
            server.send_response_text(reply, is_final=True)
            record = record.with_line(TranscriptLine(role="agent", text=reply))
        self._record = record
        assert self.session_id is not None
        self.setup.store.put(self.session_id, record)
        self._stream = AnswerStream(
            self._answer_audio(turn, reply, user),
            chunk_samples=ms_to_samples(self.setup.chunk_ms),
            ahead_samples=ms_to_samples(self.setup.send_ahead_ms),
            now=now,
        )
        self._pump(now)

    def _answer_audio(self, turn: Turn, reply: str | None, user: TurnEnded | None) -> bytes:
        if turn.audio is not None:
            pcm = bytes(self.setup.clips[turn.audio])
        elif turn.echo and user is not None:
            pcm = user.audio
        elif reply:
            pcm = bytes(self.setup.voice(reply))
        else:
            return b""
        return pcm[: int(MAX_ANSWER_SECONDS * SAMPLE_RATE) * BYTES_PER_SAMPLE]

    def _pump(self, now: float) -> None:
        stream = self._stream
        if stream is None or self._phase is not AgentPhase.TALKING:
            return
        for chunk in stream.due(now):
            self._server.send_audio(chunk)
        if stream.finished(now):
            self._answer_over(now)

    def _answer_over(self, now: float) -> None:
        """The answer played out or was cleared: listen, or end after the last turn."""
        self._listen(_T.ANSWER_OVER, now)
        end_after = self.setup.scenario.end_after_turns
        if end_after is not None and self._record.turns >= end_after:
            self._end("end_after_turns", now)

    # --- phases ------------------------------------------------------------------------

    def _run_timers(self, now: float) -> bool:
        """Bring timers and the answer stream up to ``now``; False if the session is over."""
        phase = self._phase
        if phase is AgentPhase.WAITING or phase is AgentPhase.ENDED or not self._live():
            return False
        if self._end_at is not None and now >= self._end_at:
            self._end("max_duration", now)
            return False
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            self._end("idle_timeout", now)
            return False
        if self._stream is not None:
            self._pump(now)
        return self._phase is not AgentPhase.ENDED

    def _advance(self, trigger: AgentTrigger | type[TurnEvent]) -> SpeechAction | None:
        """Apply the table's row for ``trigger``; the one place that assigns the phase."""
        row = TRANSITIONS.get((self._phase, trigger))
        if row is None:
            return None
        action, self._phase = row
        return action

    def _listen(self, trigger: AgentTrigger, now: float) -> None:
        self._advance(trigger)
        self._stream = None
        self._idle_since = now

    def _idle_deadline(self) -> float | None:
        timeout = self.setup.scenario.idle_timeout_s
        if timeout is None or self._phase is not AgentPhase.LISTENING:
            return None
        return self._idle_since + timeout

    def _end(self, reason: str, now: float) -> None:
        self.end_reason = reason
        self._stop()
        self._server.send_session_ended({"reason": reason})
        self._server.close(1000, "session ended", now=now)

    def _stop(self) -> None:
        self._advance(_T.END)
        self._stream = None

    def _live(self) -> bool:
        # The peer may have closed while events were still queued for us (the wire layer
        # closes the machine first): sending now would raise, so the session is simply over.
        if self._server.closing:
            self._stop()
            return False
        return True


_WORD = re.compile(r"\S+")


def _partials(text: str) -> list[str]:
    """Cumulative prefixes of ``text`` at word ends: up to :data:`MAX_PARTIALS`, none for a
    single word. Prefixes are cut from ``text`` itself, so each one is exactly how the final
    text begins."""
    ends = [m.end() for m in _WORD.finditer(text)]
    groups = min(MAX_PARTIALS + 1, len(ends))
    cuts = [(j * len(ends) + groups - 1) // groups for j in range(1, groups)]
    return [text[: ends[cut - 1]] for cut in cuts]
