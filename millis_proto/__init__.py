"""millis-proto: a Sans-I/O implementation of the Millis AI voice-agent WebSocket protocol.

The core is pure: it parses bytes and messages and produces bytes, events and playback
audio, with no sockets, threads, event loops or clocks of its own — time arrives as a
``now`` argument. Transports (``transports``) and audio backends (``audio_backends``) are
thin layers over it.

Typical use (see the README for complete examples) — one object per connection::

    conn = ClientConnection(StartRequest(public_key=key, agent_id=agent), US_WEST)
    sock.sendall(conn.data_to_send())          # the handshake
    conn.receive_data(sock.recv(65536), now)   # ... and the rest
    for event in conn.events(): ...
    conn.send_audio(pcm, now); sock.sendall(conn.data_to_send())
    # and sleep no longer than conn.get_timer(), then conn.handle_timer(now)

:class:`MessageClient` / :class:`MessageServer` are the message-level machines, for
transports that do WebSocket framing themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .agent_state import AgentState
from .client import SESSION_TRANSITIONS, MessageClient, SessionPhase, SessionTrigger
from .config import ClientConfig, PreReadyAudio, ServerConfig, StartRequest
from .endpoint import EU_WEST, US_WEST, Endpoint, parse_endpoint
from .envelope import ABSENT
from .errors import (
    ConfigError,
    ConnectionClosedByServer,
    ConnectionFailed,
    ConnectionLost,
    FailureKind,
    LocalProtocolError,
    MillisError,
    RemoteProtocolError,
    TransportError,
)
from .events import (
    AgentAudio,
    AgentStateChanged,
    AIAction,
    AnswerLatency,
    BadMessage,
    Clear,
    ClientAudio,
    ClientMessage,
    ClientPing,
    CloseInitiator,
    Connected,
    ConnectionClosed,
    ConnectionRejected,
    Event,
    FunctionCall,
    InitiateReceived,
    InitiateRejected,
    Pause,
    PlaybackFinished,
    PlaybackLatency,
    PlaybackOverflow,
    Pong,
    Ready,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ResponseText,
    SessionEnded,
    SessionReady,
    StartAnswering,
    Transcript,
    UnknownMessage,
    Unpause,
    event_to_dict,
)
from .machine import CloseRequest
from .pcm import BYTES_PER_SAMPLE, SAMPLE_RATE
from .playback import PlaybackBuffer, PlaybackChunk
from .server import SERVER_TRANSITIONS, MessageServer, ServerPhase, ServerTrigger
from .wire import ClientConnection, ServerConnection

__version__ = "0.1.0"

__all__ = [
    "ABSENT",
    "BYTES_PER_SAMPLE",
    "EU_WEST",
    "SAMPLE_RATE",
    "SERVER_TRANSITIONS",
    "SESSION_TRANSITIONS",
    "US_WEST",
    "AIAction",
    "AgentAudio",
    "AgentState",
    "AgentStateChanged",
    "AnswerLatency",
    "BadMessage",
    "Clear",
    "ClientAudio",
    "ClientConfig",
    "ClientConnection",
    "ClientMessage",
    "ClientPing",
    "CloseInitiator",
    "CloseRequest",
    "ConfigError",
    "Connected",
    "ConnectionClosed",
    "ConnectionClosedByServer",
    "ConnectionFailed",
    "ConnectionLost",
    "ConnectionRejected",
    "ContinuationFallback",
    "Endpoint",
    "Event",
    "FailureKind",
    "FunctionCall",
    "InitiateReceived",
    "InitiateRejected",
    "LocalProtocolError",
    "MessageClient",
    "MessageServer",
    "MillisError",
    "Pause",
    "PlaybackBuffer",
    "PlaybackChunk",
    "PlaybackFinished",
    "PlaybackLatency",
    "PlaybackOverflow",
    "Pong",
    "PreReadyAudio",
    "Ready",
    "ReconnectFailed",
    "ReconnectPolicy",
    "Reconnected",
    "Reconnecting",
    "RemoteProtocolError",
    "ResponseText",
    "ServerConfig",
    "ServerConnection",
    "ServerPhase",
    "ServerTrigger",
    "SessionEnded",
    "SessionPhase",
    "SessionTrigger",
    "SessionReady",
    "StartAnswering",
    "StartRequest",
    "Transcript",
    "TransportError",
    "UnknownMessage",
    "Unpause",
    "event_to_dict",
    "parse_endpoint",
]


if TYPE_CHECKING:
    from .reconnect import ContinuationFallback, ReconnectPolicy


def __getattr__(name: str) -> Any:
    # The reconnect policy loads on first use: most programs never ask for it, and
    # ``import millis_proto`` should cost little more than ``import wsproto``.
    if name in ("ContinuationFallback", "ReconnectPolicy"):
        from . import reconnect

        return getattr(reconnect, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
