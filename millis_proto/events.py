"""Typed events: everything the state machines report to the application.

Every event is a frozen, slotted, keyword-only dataclass. The same objects flow through
tests, logs and the CLI's JSONL file; :func:`event_to_dict` gives their JSON form, keyed by
``"event"`` — the Millis method name for server messages (``onready``, ``ontranscript`` …,
unknown methods under their own name) and a short client-side name otherwise. Events that
are server messages also carry ``"source": "server"`` (class attribute :attr:`Event.origin`),
so a server that sends ``{"method": "error"}`` or ``{"method": "closed"}`` cannot pass for
one of our own client-side events of that name.

Raw ``data``/``payload`` fields hold the decoded JSON exactly as received (``None`` when
the key was absent), because several Millis message shapes are undocumented
(docs/protocol.md §7): the application always gets what the server really said.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any, ClassVar

from ._frozen import frozen_dataclass
from .agent_state import AgentState
from .errors import (
    ConnectionClosedByServer,
    ConnectionLost,
    MillisError,
    RemoteProtocolError,
    sentence,
)

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = [
    "AIAction",
    "AgentAudio",
    "AgentStateChanged",
    "AnswerLatency",
    "BadMessage",
    "Clear",
    "ClientAudio",
    "ClientMessage",
    "ClientPing",
    "CloseInitiator",
    "Connected",
    "ConnectionClosed",
    "ConnectionRejected",
    "Event",
    "FunctionCall",
    "InitiateReceived",
    "InitiateRejected",
    "Pause",
    "PlaybackFinished",
    "PlaybackLatency",
    "PlaybackOverflow",
    "Pong",
    "Ready",
    "ReconnectFailed",
    "Reconnected",
    "Reconnecting",
    "ResponseText",
    "SessionEnded",
    "SessionReady",
    "StartAnswering",
    "Transcript",
    "UnknownMessage",
    "Unpause",
    "event_to_dict",
]

_EVENT = {"frozen": True, "slots": True, "kw_only": True}
_EVENT_OWN_REPR = {**_EVENT, "repr": False}


class Event:
    """Base class of all events. ``name`` is the event's JSON name; ``origin`` is
    ``"server"`` for events that are server messages (written as ``"source"`` in their JSON
    form) and ``None`` for our own."""

    __slots__ = ()
    name: ClassVar[str] = "event"
    origin: ClassVar[str | None] = None


# --- server -> client messages (docs/protocol.md §4) -------------------------------------------


@frozen_dataclass(**_EVENT)
class Ready(Event):
    """The server's ``onready``: the session is live. ``session_id`` is ``None`` if absent."""

    name: ClassVar[str] = "onready"
    origin: ClassVar[str | None] = "server"
    session_id: str | None
    data: Any = None
    payload: Any = None


@frozen_dataclass(**_EVENT)
class Transcript(Event):
    """``ontranscript``: live transcript of the user's speech.

    Read liberally, as the official SDK does: ``text`` is ``data`` when it is a string, a
    number or boolean written as text, ``""`` when ``data`` is absent, and ``None`` when it
    is something else. ``data`` keeps what was sent whenever it was not a string (``None``
    when it was, since ``text`` is then exactly it). ``is_final`` is ``None`` when the
    payload does not say.
    """

    name: ClassVar[str] = "ontranscript"
    origin: ClassVar[str | None] = "server"
    text: str | None
    is_final: bool | None
    payload: Any = None
    data: Any = None


@frozen_dataclass(**_EVENT)
class ResponseText(Event):
    """``onresponsetext``: the agent's text. Partials are passed on as received.

    ``text`` and ``is_final`` are read as for :class:`Transcript`.
    """

    name: ClassVar[str] = "onresponsetext"
    origin: ClassVar[str | None] = "server"
    text: str | None
    is_final: bool | None
    payload: Any = None
    data: Any = None


@frozen_dataclass(**_EVENT)
class FunctionCall(Event):
    """``onfunction``: the agent called a tool.

    ``function`` is ``None`` when no name was sent (passed on, as the SDK does);
    ``params`` is ``{}`` when absent and ``{"value": x}`` when not an object; ``result``
    is the ``result`` key when the server sent one (tools that already ran), else ``None``.
    """

    name: ClassVar[str] = "onfunction"
    origin: ClassVar[str | None] = "server"
    function: str | None
    params: dict[str, Any]
    data: Any = None
    payload: Any = None
    result: Any = None


@frozen_dataclass(**_EVENT)
class StartAnswering(Event):
    """``start_answering``: the agent began preparing an answer."""

    name: ClassVar[str] = "start_answering"
    origin: ClassVar[str | None] = "server"


@frozen_dataclass(**_EVENT)
class Pause(Event):
    """``pause``: user voice detected; playback stops but audio keeps being buffered."""

    name: ClassVar[str] = "pause"
    origin: ClassVar[str | None] = "server"


@frozen_dataclass(**_EVENT)
class Unpause(Event):
    """``unpause``: false alarm; playback resumes where it stopped."""

    name: ClassVar[str] = "unpause"
    origin: ClassVar[str | None] = "server"


@frozen_dataclass(**_EVENT)
class Clear(Event):
    """``clear``: real interruption; all unplayed agent audio was dropped.

    ``played_samples`` is how much of the interrupted answer had been handed to the sink
    (what the person heard before interrupting), ``dropped_samples`` what was thrown away.
    """

    name: ClassVar[str] = "clear"
    origin: ClassVar[str | None] = "server"
    played_samples: int = 0
    dropped_samples: int = 0


@frozen_dataclass(**_EVENT)
class AIAction(Event):
    """``ai_action``: what the agent decided to do (shape undocumented, passed raw)."""

    name: ClassVar[str] = "ai_action"
    origin: ClassVar[str | None] = "server"
    data: Any = None
    payload: Any = None


@frozen_dataclass(**_EVENT)
class SessionEnded(Event):
    """``onsessionended``: the server ended the session."""

    name: ClassVar[str] = "onsessionended"
    origin: ClassVar[str | None] = "server"
    data: Any = None
    payload: Any = None


@frozen_dataclass(**_EVENT)
class Pong(Event):
    """``pong``. ``rtt_ms`` is set when ``data`` echoes one of our own pings."""

    name: ClassVar[str] = "rtt"
    data: Any = None
    rtt_ms: float | None = None


@frozen_dataclass(**_EVENT)
class UnknownMessage(Event):
    """A server method this library does not interpret, passed on untouched."""

    name: ClassVar[str] = "unknown"
    origin: ClassVar[str | None] = "server"
    method: str
    data: Any = None
    payload: Any = None


@frozen_dataclass(**_EVENT_OWN_REPR)
class AgentAudio(Event):
    """One binary frame of agent audio (s16le 16 kHz mono; may hold an odd byte)."""

    name: ClassVar[str] = "agent_audio"
    data: bytes

    def __repr__(self) -> str:
        return f"AgentAudio(<{len(self.data)} bytes>)"


@frozen_dataclass(**_EVENT)
class BadMessage(Event):
    """A text message that could not be understood. The session goes on."""

    name: ClassVar[str] = "error"
    reason: str
    raw: str


# --- derived client-side events (docs/protocol.md §5) ------------------------------------------


@frozen_dataclass(**_EVENT)
class SessionReady(Event):
    """Both ``onready`` has arrived and our first audio packet has gone out (SDK gating)."""

    name: ClassVar[str] = "session_ready"
    session_id: str | None


@frozen_dataclass(**_EVENT)
class AgentStateChanged(Event):
    """The agent state moved (idle / prepare_answer / answer / pause)."""

    name: ClassVar[str] = "agent_state"
    previous: AgentState
    state: AgentState


@frozen_dataclass(**_EVENT)
class AnswerLatency(Event):
    """Milliseconds from ``start_answering`` to the first agent audio frame."""

    name: ClassVar[str] = "latency"
    ms: float


@frozen_dataclass(**_EVENT)
class PlaybackLatency(Event):
    """Milliseconds from ``start_answering`` to the first agent sample handed to the sink."""

    name: ClassVar[str] = "played_latency"
    ms: float


@frozen_dataclass(**_EVENT)
class PlaybackOverflow(Event):
    """The playback buffer was full; ``dropped_samples`` of new agent audio were discarded."""

    name: ClassVar[str] = "playback_overflow"
    dropped_samples: int
    capacity_samples: int


@frozen_dataclass(**_EVENT)
class PlaybackFinished(Event):
    """The playback buffer drained while the agent was answering."""

    name: ClassVar[str] = "playback_finished"


# --- connection (wire level) ---------------------------------------------------------------


@frozen_dataclass(**_EVENT)
class Connected(Event):
    """The WebSocket opening handshake completed."""

    name: ClassVar[str] = "connected"


@frozen_dataclass(**_EVENT)
class ConnectionRejected(Event):
    """The server answered the opening handshake with an HTTP error."""

    name: ClassVar[str] = "rejected"
    status_code: int
    body: bytes = b""


class CloseInitiator(str, enum.Enum):
    """Who ended the connection."""

    LOCAL = "local"  # we sent the first close frame
    REMOTE = "remote"  # the peer sent the first close frame
    PROTOCOL_ERROR = "protocol_error"  # the peer broke the framing; we failed the connection
    LOST = "lost"  # the transport ended without a close handshake (1006)


@frozen_dataclass(**_EVENT)
class ConnectionClosed(Event):
    """The WebSocket is closed; flush ``data_to_send()`` and close the transport."""

    name: ClassVar[str] = "closed"
    code: int
    reason: str
    initiator: CloseInitiator

    @property
    def normal(self) -> bool:
        """True when the session ended as sessions should end.

        That is every close we started (our close frame went out: :attr:`CloseInitiator.LOCAL`,
        also after ``onsessionended``) that the peer answered or that ended the transport
        otherwise, and a close the peer started with 1000, 1001 or 1005 (docs/protocol.md
        §4). A lost connection (a client's close the server never answered while the
        session was live counts as lost, 1006), a protocol failure and a peer's close with
        any other code are abnormal.
        """
        if self.initiator is CloseInitiator.LOCAL:
            return True
        return self.initiator is CloseInitiator.REMOTE and self.code in _NORMAL_CODES

    def error(self) -> MillisError | None:
        """The error an adapter raises for this end of a client session; ``None`` if normal.

        :class:`~millis_proto.ConnectionLost` (no close handshake, 1006),
        :class:`~millis_proto.RemoteProtocolError` (the server broke the WebSocket framing)
        or :class:`~millis_proto.ConnectionClosedByServer` (another close code). The
        wording is the client's ("the server ..."); on the server side read :attr:`normal`.
        """
        if self.normal:
            return None
        if self.initiator is CloseInitiator.LOST:
            return ConnectionLost(sentence(self.reason))
        if self.initiator is CloseInitiator.PROTOCOL_ERROR:
            return RemoteProtocolError(
                f"The server broke the WebSocket protocol, so the session was closed with "
                f"code {self.code} ({self.reason})."
            )
        said = f": {self.reason}" if self.reason else ""
        return ConnectionClosedByServer(
            sentence(f"the server closed the session with code {self.code}{said}"),
            code=self.code,
            reason=self.reason,
        )


#: Close codes that end a session normally when the peer sends them.
_NORMAL_CODES = frozenset({1000, 1001, 1005})


# --- client -> server, as seen by the server machine ---------------------------------------


@frozen_dataclass(**_EVENT)
class InitiateReceived(Event):
    """A valid ``initiate`` arrived. ``request`` is typed; ``data`` is the raw object."""

    name: ClassVar[str] = "initiate"
    request: Any  # StartRequest; typed as Any to keep events free of the config module
    data: dict[str, Any] = dataclasses.field(repr=False)  # holds the public key


@frozen_dataclass(**_EVENT)
class InitiateRejected(Event):
    """An invalid ``initiate`` arrived; the server machine is closing with ``reason``."""

    name: ClassVar[str] = "initiate_rejected"
    reason: str


@frozen_dataclass(**_EVENT_OWN_REPR)
class ClientAudio(Event):
    """One binary frame of user audio."""

    name: ClassVar[str] = "client_audio"
    data: bytes

    def __repr__(self) -> str:
        return f"ClientAudio(<{len(self.data)} bytes>)"


@frozen_dataclass(**_EVENT)
class ClientPing(Event):
    """A ``ping`` message; the server machine has already queued the ``pong``."""

    name: ClassVar[str] = "ping"
    data: Any = None


@frozen_dataclass(**_EVENT)
class ClientMessage(Event):
    """Any other text message from the client (custom methods)."""

    name: ClassVar[str] = "client_message"
    method: str
    data: Any = None


def event_to_dict(event: Event) -> dict[str, Any]:
    """Return the JSON-ready form of ``event``: ``{"event": <name>, <fields>...}``.

    Server messages also carry ``"source": "server"``; unknown server methods are named by
    their own method; bytes become their length
    (``"bytes": n``) so audio never bloats a log; enums become their values; the public key
    of an ``initiate`` is replaced by ``"***"``.
    """
    out: dict[str, Any] = {"event": event.name}
    if event.origin is not None:
        out["source"] = event.origin
    for field in dataclasses.fields(event):  # type: ignore[arg-type]
        value = getattr(event, field.name)
        if isinstance(value, bytes):
            out["bytes"] = len(value)
        elif isinstance(value, enum.Enum):
            out[field.name] = value.value
        elif field.name == "request":
            continue  # the raw ``data`` next to it holds the same, redacted below
        elif isinstance(event, InitiateReceived) and field.name == "data":
            # Logs are read by people: the public key never appears in one.
            out["data"] = {k: ("***" if k == "public_key" else v) for k, v in value.items()}
        else:
            out[field.name] = value
    if isinstance(event, UnknownMessage):
        out["event"] = out.pop("method")
    return out


# --- reconnecting (millis_proto.reconnect) -------------------------------------------------


@frozen_dataclass(**_EVENT)
class Reconnecting(Event):
    """The connection dropped (or a reconnect attempt failed); ``attempt`` starts in ``delay`` s.

    ``cause`` says why in a few words, ``kind`` is its :class:`~millis_proto.reconnect.EndKind`
    value and ``code`` the close code if there was one. ``dropped_playback_samples``: agent
    audio received but not yet played when the connection dropped (the server will not
    resend it).
    """

    name: ClassVar[str] = "reconnecting"
    attempt: int
    delay: float
    cause: str
    kind: str
    code: int | None = None
    dropped_playback_samples: int = 0


@frozen_dataclass(**_EVENT)
class Reconnected(Event):
    """A new connection is live again after ``downtime`` seconds and ``attempts`` attempts.

    ``continued``: its ``initiate`` carried ``session_continuation`` with
    ``previous_session_id`` and the server answered with ``onready``. Otherwise it is a fresh
    session and ``fresh_reason`` says why. ``dropped_user_samples``: user audio given during
    the gap, which was not sent.
    """

    name: ClassVar[str] = "reconnected"
    session_id: str | None
    continued: bool
    downtime: float
    attempts: int
    previous_session_id: str | None = None
    fresh_reason: str | None = None
    dropped_user_samples: int = 0


@frozen_dataclass(**_EVENT)
class ReconnectFailed(Event):
    """Reconnecting gave up: ``reason`` why, after ``attempts`` attempts and ``downtime`` s."""

    name: ClassVar[str] = "reconnect_failed"
    reason: str
    attempts: int
    downtime: float
    cause: str
    kind: str
