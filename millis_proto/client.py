"""The message-level client machine: the Millis protocol over whole messages, with no I/O.

Theory of operation
-------------------
:class:`MessageClient` is for transports that already do WebSocket framing themselves (the
``websockets`` library, a browser bridge): they feed it whole messages and send what it
hands out. Everything else should drive :class:`~millis_proto.ClientConnection`, which owns
one of these privately and adds the WebSocket layer and the timers.

Input is whole WebSocket messages (``str`` for text frames, ``bytes`` for binary frames) fed
to :meth:`MessageClient.receive_message`, and application calls (``send_audio``, ``mute``,
``send_message``, ``pull_playback``, ``close``). Output is three things, all pulled by the
owner: outgoing messages (:meth:`messages_to_send`), typed events (:meth:`events`), and the
audio in :attr:`MessageClient.playback`, which a sink pulls through :meth:`pull_playback`.

Every method that needs time takes ``now`` (monotonic seconds, from the caller's clock).
The wall clock is never read here either: ``ping`` data (epoch milliseconds, as the official
SDK sends) is ``now + wall_clock_offset``, an offset the owner measured once
(``time.time() - time.monotonic()``); RTTs are matched on the monotonic ``now``.

Session phases move only through :data:`SESSION_TRANSITIONS`::

    new      + START      → started   initiate queued (always the first message)
    started  + READY      → ready     onready seen; the audio gate opens
    ready    + AUDIO_SENT → live      our first audio packet went out: SessionReady
    started  + AUDIO_SENT → started   (pre-ready policy SEND) counted for SessionReady
    *        + CLOSE      → closing   our close is queued; nothing may follow it
    *        + CLOSED     → closed    the WebSocket is gone

``onready`` before ``start`` or while closing changes nothing; ``start`` twice raises
:class:`LocalProtocolError`. Outgoing audio passes a gate: it opens on ``onready`` (or on
``start`` when the pre-ready policy is ``SEND``); before that the policy buffers (bounded,
oldest dropped) or drops it. Agent state lives in :mod:`.agent_state`; this module only
feeds it triggers.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from typing import Any

from .agent_state import TRANSITIONS, AgentState, Trigger, next_state
from .config import ClientConfig, PreReadyAudio, StartRequest
from .envelope import ABSENT, Envelope, decode_envelope, encode_envelope, json_problem
from .errors import ConfigError, LocalProtocolError
from .events import (
    AgentAudio,
    AgentStateChanged,
    AIAction,
    AnswerLatency,
    BadMessage,
    Clear,
    FunctionCall,
    Pause,
    PlaybackFinished,
    PlaybackLatency,
    PlaybackOverflow,
    Pong,
    Ready,
    ResponseText,
    SessionEnded,
    SessionReady,
    StartAnswering,
    Transcript,
    UnknownMessage,
    Unpause,
)
from .machine import MessageMachine, OutgoingMessage
from .pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, Buffer, Rechunker, SampleAligner
from .playback import PlaybackBuffer, PlaybackChunk

__all__ = ["SESSION_TRANSITIONS", "MessageClient", "SessionPhase", "SessionTrigger"]

#: How many of our own ping timestamps are remembered for RTT matching.
MAX_OUTSTANDING_PINGS = 32


class SessionPhase(str, enum.Enum):
    """Where the client session is in its life (see the module docstring)."""

    NEW = "new"
    STARTED = "started"
    READY = "ready"
    LIVE = "live"
    CLOSING = "closing"
    CLOSED = "closed"


class SessionTrigger(enum.Enum):
    """Inputs of the client session phase machine."""

    START = "start"
    READY = "onready"
    AUDIO_SENT = "audio_sent"
    CLOSE = "close"
    CLOSED = "closed"


_P = SessionPhase
_T = SessionTrigger
_OPEN_PHASES = (_P.NEW, _P.STARTED, _P.READY, _P.LIVE)

#: ``(phase, trigger) → phase``; a missing pair is a misuse (:class:`LocalProtocolError`).
SESSION_TRANSITIONS: dict[tuple[SessionPhase, SessionTrigger], SessionPhase] = {
    (_P.NEW, _T.START): _P.STARTED,
    (_P.NEW, _T.READY): _P.NEW,  # onready before initiate: nothing to open yet
    (_P.STARTED, _T.READY): _P.READY,
    (_P.READY, _T.READY): _P.READY,
    (_P.LIVE, _T.READY): _P.LIVE,
    (_P.CLOSING, _T.READY): _P.CLOSING,  # onready racing our close
    (_P.STARTED, _T.AUDIO_SENT): _P.STARTED,
    (_P.READY, _T.AUDIO_SENT): _P.LIVE,
    (_P.LIVE, _T.AUDIO_SENT): _P.LIVE,
    **{(p, _T.CLOSE): _P.CLOSING for p in (*_OPEN_PHASES, _P.CLOSING)},
    **{(p, _T.CLOSED): _P.CLOSED for p in SessionPhase},
}


#: The agent states that agent audio moves (read off the state table, not repeated here).
_MOVED_BY_AUDIO = frozenset(s for s, trigger in TRANSITIONS if trigger is Trigger.AGENT_AUDIO)


class MessageClient(MessageMachine):
    """Client-role Millis session machine at the message level; see the module docstring.

    ``wall_clock_offset`` is added to ``now`` for the data of our ``ping`` messages (epoch
    seconds = ``now + wall_clock_offset``); pass ``time.time() - time.monotonic()`` when
    ``now`` comes from ``time.monotonic()``.

    Raises :class:`LocalProtocolError` on misuse (the machine is left unchanged) and never
    raises on anything the server sends: bad messages become :class:`BadMessage` events.
    """

    __slots__ = (
        "_agent_state",
        "_aligner",
        "_answer_origin",
        "_answer_t0",
        "_grace_samples",
        "_held",
        "_held_bytes",
        "_held_limit",
        "_muted",
        "_pings",
        "_played_t0",
        "_rechunker",
        "_starved",
        "_wall_clock_offset",
        "audio_packets_sent",
        "config",
        "playback",
        "pre_ready_dropped_samples",
        "session_ended",
        "session_id",
    )

    def __init__(
        self,
        request: StartRequest,
        config: ClientConfig | None = None,
        *,
        wall_clock_offset: float = 0.0,
    ) -> None:
        if not isinstance(request, StartRequest):
            raise ConfigError("request must be a StartRequest.")
        self.request = request
        self.config = config if config is not None else ClientConfig()
        if not isinstance(self.config, ClientConfig):
            raise ConfigError("config must be a ClientConfig.")
        super().__init__(self.config.max_pending_bytes)
        #: Agent audio waiting to be played; pull it with :meth:`pull_playback`.
        self.playback = PlaybackBuffer(self.config.max_playback_seconds)
        #: The server's session id, from ``onready`` (keep it for continuation).
        self.session_id: str | None = None
        self._wall_clock_offset = float(wall_clock_offset)
        self._phase = SessionPhase.NEW
        self._agent_state = AgentState.IDLE
        self._aligner = SampleAligner()
        chunk = self.config.chunk_bytes
        self._rechunker = Rechunker(chunk) if chunk else None
        self._held: deque[bytes] = deque()  # audio waiting for the gate to open
        self._held_bytes = 0
        self._held_limit = (
            int(self.config.pre_ready_buffer_seconds * SAMPLE_RATE) * BYTES_PER_SAMPLE
        )
        self._muted = False
        self._pings: OrderedDict[str, float] = OrderedDict()
        self._answer_t0: float | None = None  # start_answering time, until first audio
        self._played_t0: float | None = None  # start_answering time, until first played
        self._grace_samples = round(self.config.drain_grace_ms * SAMPLE_RATE / 1000)
        self._starved = 0  # silence samples pulled from an empty queue while answering
        self._answer_origin = 0  # playback.played_samples when the current answer began
        #: Audio packets sent so far (pings are counted against this).
        self.audio_packets_sent = 0
        #: Samples discarded by the pre-ready policy (``DROP``, or ``BUFFER`` overflow).
        self.pre_ready_dropped_samples = 0
        #: True once the server said ``onsessionended``: the session is over.
        self.session_ended = False

    # --- state -------------------------------------------------------------------------

    @property
    def phase(self) -> SessionPhase:
        """The session phase (see :data:`SESSION_TRANSITIONS`)."""
        return self._phase

    @property
    def closing(self) -> bool:
        """True once a close was requested or the connection closed."""
        return self._phase is _P.CLOSING or self._phase is _P.CLOSED

    @property
    def agent_state(self) -> AgentState:
        """The agent state (docs/protocol.md §5)."""
        return self._agent_state

    @property
    def muted(self) -> bool:
        """True while outgoing audio is replaced by zeros."""
        return self._muted

    def _advance(self, trigger: SessionTrigger) -> SessionPhase:
        """Move the session phase through the table; the one place that assigns it."""
        new = SESSION_TRANSITIONS.get((self._phase, trigger))
        if new is None:
            raise LocalProtocolError(
                f"cannot {trigger.value} a session that is {self._phase.value}."
            )
        old, self._phase = self._phase, new
        if new is _P.LIVE and old is not _P.LIVE:
            self._events.append(SessionReady(session_id=self.session_id))
        return old

    def _advance_close(self) -> None:
        self._advance(_T.CLOSE)

    def _advance_closed(self) -> None:
        self._advance(_T.CLOSED)

    # --- output ------------------------------------------------------------------------

    def messages_to_send(self) -> list[OutgoingMessage]:
        """Pop every message ready to go on the wire, oldest first.

        Nothing is handed out before :meth:`start`, so ``initiate`` always goes first.
        """
        if self._phase is _P.NEW:
            return []
        return super().messages_to_send()

    # --- application calls --------------------------------------------------------------

    def start(self, now: float) -> None:
        """Queue ``initiate`` — call when the socket opens. Raises if already started."""
        if self._phase is not _P.NEW:
            raise LocalProtocolError("the session was already started.")
        self._advance(_T.START)
        initiate = encode_envelope("initiate", self.request.to_initiate_data())
        self._out.appendleft(initiate)
        self._out_bytes += len(initiate)
        if self.config.pre_ready_audio is PreReadyAudio.SEND:
            self._release_held(now)

    def send_audio(self, pcm: Buffer, now: float) -> None:
        """Send user audio: s16le, 16 kHz, mono, any byte length (an odd byte is carried).

        While muted the same number of bytes is sent as zeros, keeping the cadence.
        Raises :class:`LocalProtocolError` once the session is closing.
        """
        phase = self._phase
        if phase is _P.CLOSING or phase is _P.CLOSED:
            self._check_open("send audio")  # raises
        data = self._aligner.align(pcm)
        if not data:
            return
        if self._muted:
            data = bytes(len(data))
        if self._rechunker is None:
            if phase is _P.LIVE:  # the hot path: 50 frames a second, the gate open
                self._send_audio_frame(data, now)
            else:
                self._route_audio(data, now)
        else:
            for frame in self._rechunker.push(data):
                self._route_audio(frame, now)

    def flush_audio(self, now: float) -> None:
        """Send what the re-chunker holds (a short last frame), e.g. at the end of a file."""
        self._check_open("send audio")
        if self._rechunker is not None:
            rest = self._rechunker.flush()
            if rest:
                self._route_audio(rest, now)

    def mute(self) -> None:
        """Replace outgoing audio with zeros of the same length until :meth:`unmute`."""
        self._muted = True

    def unmute(self) -> None:
        """Send the application's audio again."""
        self._muted = False

    def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method": ..., "data": ...}`` message (``data`` optional).

        Raises :class:`ConfigError` if ``data`` is not JSON-serializable (NaN and Infinity
        included; the message names the field) or ``method`` is not a non-empty string or
        is ``initiate`` (use the start request for that).
        """
        self._check_open("send a message")
        if not isinstance(method, str) or not method:
            raise ConfigError("method must be a non-empty string.")
        if method == "initiate":
            raise ConfigError("initiate is sent by the machine from the StartRequest.")
        try:
            text = encode_envelope(method, data)
        except (TypeError, ValueError, RecursionError):
            raise ConfigError(f"{json_problem(data, 'data')} (method {method!r}).") from None
        self._queue(text)

    def send_ping(self, now: float) -> None:
        """Send a ``ping`` whose data is the wall-clock time in epoch milliseconds.

        The data is ``now + wall_clock_offset`` as a decimal string, as the official SDK
        sends ``Date.now()``; its ``pong`` yields an RTT measured on the monotonic ``now``.
        """
        self._check_open("send a ping")
        stamp = str(round((now + self._wall_clock_offset) * 1000))
        self._pings[stamp] = now
        self._pings.move_to_end(stamp)
        while len(self._pings) > MAX_OUTSTANDING_PINGS:
            self._pings.popitem(last=False)
        self._queue(encode_envelope("ping", stamp))

    def pull_playback(self, n_samples: int, now: float) -> PlaybackChunk:
        """Take exactly ``n_samples`` samples for the speaker (zeros while paused or empty).

        Reports :class:`PlaybackLatency` on the first real sample after ``start_answering``
        and :class:`PlaybackFinished` (state → idle) once the queue has been empty while
        answering for ``config.drain_grace_ms`` of pulled audio.
        """
        chunk = self.playback.pull(n_samples)
        if chunk.real_samples and self._played_t0 is not None:
            self._events.append(PlaybackLatency(ms=(now - self._played_t0) * 1000))
            self._played_t0 = None
        if self._agent_state is AgentState.ANSWER and not self.playback.queued_samples:
            self._starved += n_samples - chunk.real_samples
            if n_samples and self._starved >= self._grace_samples:
                self._events.append(PlaybackFinished())
                self._trigger(Trigger.DRAINED)
        return chunk

    # --- input from the wire -------------------------------------------------------------

    def receive_message(self, message: str | Buffer, now: float) -> None:
        """Feed one whole WebSocket message: ``str`` = text frame, bytes-like = binary."""
        if self._phase is _P.CLOSED:
            raise LocalProtocolError("the connection is closed; no more messages can arrive.")
        if isinstance(message, str):
            self._on_text(message, now)
        else:
            self._on_agent_audio(message if isinstance(message, bytes) else bytes(message), now)

    def connection_closed(self, now: float) -> None:
        """The WebSocket is closed (for any reason): stop sending, agent state → idle.

        The playback buffer is left as it is, so a goodbye that arrived before the close can
        still be played out by the sink.
        """
        if self._phase is _P.CLOSED:
            return
        super().connection_closed(now)
        self.pre_ready_dropped_samples += self._held_bytes // BYTES_PER_SAMPLE
        self._held.clear()
        self._held_bytes = 0
        self._trigger(Trigger.CLOSED)

    # --- internals ---------------------------------------------------------------------

    def _gate_open(self) -> bool:
        phase = self._phase
        if phase is _P.LIVE or phase is _P.READY:
            return True
        return phase is _P.STARTED and self.config.pre_ready_audio is PreReadyAudio.SEND

    def _route_audio(self, frame: bytes, now: float) -> None:
        if self._phase is _P.LIVE or self._gate_open():
            self._send_audio_frame(frame, now)
        elif self.config.pre_ready_audio is PreReadyAudio.DROP:
            self.pre_ready_dropped_samples += len(frame) // BYTES_PER_SAMPLE
        else:
            # BUFFER, or SEND before the socket opened: keep the newest audio, bounded.
            self._held.append(frame)
            self._held_bytes += len(frame)
            while self._held_bytes > self._held_limit:
                old = self._held.popleft()
                self._held_bytes -= len(old)
                self.pre_ready_dropped_samples += len(old) // BYTES_PER_SAMPLE

    def _release_held(self, now: float) -> None:
        held = self._held
        self._held = deque()
        self._held_bytes = 0
        if self.closing:
            # An onready racing our close: nothing may follow the close request. The audio
            # is counted as dropped, so it does not vanish unaccounted.
            self.pre_ready_dropped_samples += sum(map(len, held)) // BYTES_PER_SAMPLE
            return
        for frame in held:
            self._send_audio_frame(frame, now)

    def _send_audio_frame(self, frame: bytes, now: float) -> None:
        self._queue(frame)
        self.audio_packets_sent += 1
        if self._phase is not _P.LIVE:
            self._advance(_T.AUDIO_SENT)
        every = self.config.ping_every_packets
        if every and self.audio_packets_sent % every == 0:
            self.send_ping(now)

    def _trigger(self, trigger: Trigger) -> None:
        old = self._agent_state
        new = next_state(old, trigger)
        if new is not old:
            self._agent_state = new
            self._events.append(AgentStateChanged(previous=old, state=new))

    def _on_agent_audio(self, data: bytes, now: float) -> None:
        self._starved = 0
        if self.config.emit_audio_events:
            self._events.append(AgentAudio(data=data))
        dropped = self.playback.push(data)
        if dropped:
            self._events.append(
                PlaybackOverflow(
                    dropped_samples=dropped, capacity_samples=self.playback.capacity_samples
                )
            )
        if self._answer_t0 is not None:
            self._events.append(AnswerLatency(ms=(now - self._answer_t0) * 1000))
            self._answer_t0 = None
        state = self._agent_state
        if state is AgentState.IDLE:  # an answer (e.g. a greeting) begins
            self._answer_origin = self.playback.played_samples
        if state in _MOVED_BY_AUDIO:  # most frames arrive mid-answer, where audio moves nothing
            self._trigger(Trigger.AGENT_AUDIO)

    def _on_text(self, text: str, now: float) -> None:
        env = decode_envelope(text)
        if isinstance(env, str):
            self._events.append(BadMessage(reason=env, raw=text))
            return
        handler = _HANDLERS.get(env.method)
        if handler is None:
            self._events.append(
                UnknownMessage(method=env.method, data=env.data, payload=env.payload)
            )
            return
        problem = handler(self, env, now)
        if problem:
            self._events.append(BadMessage(reason=f"{env.method}: {problem}", raw=text))

    # One small handler per server method; a returned string means "malformed: <why>".

    def _on_ready(self, env: Envelope, now: float) -> str | None:
        session_id = _get_str(env.payload, "session_id") or _get_str(env.data, "session_id")
        if session_id is not None:
            self.session_id = session_id
        self._events.append(Ready(session_id=session_id, data=env.data, payload=env.payload))
        old = self._advance(_T.READY)
        if old is _P.STARTED:
            self._release_held(now)
            if self.audio_packets_sent and self._phase is _P.READY:
                # audio went out before onready (policy SEND): the session is live now
                self._advance(_T.AUDIO_SENT)
        self._trigger(Trigger.READY)
        return None

    def _on_transcript(self, env: Envelope, now: float) -> str | None:
        text, problem = _text_of(env)
        final = _get_bool(env.payload, "is_final")
        self._events.append(
            Transcript(text=text, is_final=final, payload=env.payload, data=_raw_if_coerced(env))
        )
        return problem

    def _on_response_text(self, env: Envelope, now: float) -> str | None:
        text, problem = _text_of(env)
        final = _get_bool(env.payload, "is_final")
        self._events.append(
            ResponseText(text=text, is_final=final, payload=env.payload, data=_raw_if_coerced(env))
        )
        return problem

    def _on_function(self, env: Envelope, now: float) -> str | None:
        # The SDK passes every onfunction on, named or not; so do we.
        in_payload = _get_str(env.payload, "name") is not None
        source = env.payload if in_payload or not isinstance(env.data, dict) else env.data
        name = _get_str(source, "name")
        params: Any = source.get("params", {}) if isinstance(source, dict) else {}
        if not isinstance(params, dict):
            params = {"value": params}
        result = source.get("result") if isinstance(source, dict) else None
        self._events.append(
            FunctionCall(
                function=name, params=params, data=env.data, payload=env.payload, result=result
            )
        )
        return None

    def _on_start_answering(self, env: Envelope, now: float) -> str | None:
        self._answer_t0 = self._played_t0 = now
        self._answer_origin = self.playback.played_samples
        self._events.append(StartAnswering())
        self._trigger(Trigger.START_ANSWERING)
        return None

    def _on_pause(self, env: Envelope, now: float) -> str | None:
        self.playback.pause()
        self._events.append(Pause())
        self._trigger(Trigger.PAUSE)
        return None

    def _on_unpause(self, env: Envelope, now: float) -> str | None:
        self.playback.resume()
        self._events.append(Unpause())
        self._trigger(Trigger.UNPAUSE)
        return None

    def _on_clear(self, env: Envelope, now: float) -> str | None:
        dropped = self.playback.clear()
        played = self.playback.played_samples - self._answer_origin
        self._answer_origin = self.playback.played_samples
        self._events.append(Clear(played_samples=played, dropped_samples=dropped))
        self._trigger(Trigger.CLEAR)
        return None

    def _on_ai_action(self, env: Envelope, now: float) -> str | None:
        self._events.append(AIAction(data=env.data, payload=env.payload))
        return None

    def _on_session_ended(self, env: Envelope, now: float) -> str | None:
        self._events.append(SessionEnded(data=env.data, payload=env.payload))
        self.session_ended = True
        if self.config.close_on_session_end:
            self.close(1000, "session ended")
        return None

    def _on_pong(self, env: Envelope, now: float) -> str | None:
        rtt = None
        key = _ping_key(env.data)
        if key is not None:
            sent = self._pings.pop(key, None)
            if sent is not None:
                rtt = (now - sent) * 1000
        self._events.append(Pong(data=env.data, rtt_ms=rtt))
        return None


_HANDLERS = {
    "onready": MessageClient._on_ready,
    "ontranscript": MessageClient._on_transcript,
    "onresponsetext": MessageClient._on_response_text,
    "onfunction": MessageClient._on_function,
    "start_answering": MessageClient._on_start_answering,
    "pause": MessageClient._on_pause,
    "unpause": MessageClient._on_unpause,
    "clear": MessageClient._on_clear,
    "ai_action": MessageClient._on_ai_action,
    "onsessionended": MessageClient._on_session_ended,
    "pong": MessageClient._on_pong,
}


def _get_str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _get_bool(obj: Any, key: str) -> bool | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, bool) else None


def _text_of(env: Envelope) -> tuple[str | None, str | None]:
    """The text of a transcript-like message, read liberally, and what was unreadable.

    A string is the text; absent or ``null`` is ``""``; a number or boolean is written as
    JSON writes it (``7``, ``2.5``, ``true``); an object or array has no text (``None``)
    and is reported beside the event.
    """
    data = env.data
    if data is None:
        return "", None
    if isinstance(data, str):
        return data, None
    if isinstance(data, bool):
        return ("true" if data else "false"), None
    if isinstance(data, (int, float)):
        return str(data), None
    return None, "data must be text, not a JSON object or array"


def _raw_if_coerced(env: Envelope) -> Any:
    """``data`` as received when it was not already the text itself (else ``None``)."""
    return None if isinstance(env.data, str) else env.data


def _ping_key(value: Any) -> str | None:
    """The stamp a pong echoes, as we wrote it: ``2000``, ``2000.0`` and ``" 2000 "`` match."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    return None
