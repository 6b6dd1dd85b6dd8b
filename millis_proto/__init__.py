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

Every public name is importable from here (``from millis_proto import ClientConnection``);
each submodule loads on first use, so ``import millis_proto`` itself costs almost nothing
and a program pays only for the parts it touches.
"""

from __future__ import annotations

# ``typing`` itself is not imported: this module must load in no time (mypy treats the
# name as true, so the imports below are what type checkers see).
TYPE_CHECKING = False

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
    from typing import Any

    from .agent_state import AgentState
    from .client import (
        SESSION_TRANSITIONS,
        MessageClient,
        SessionPhase,
        SessionTrigger,
    )
    from .config import (
        ClientConfig,
        PreReadyAudio,
        ServerConfig,
        StartRequest,
    )
    from .endpoint import (
        EU_WEST,
        US_WEST,
        Endpoint,
        parse_endpoint,
    )
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
    from .reconnect import ContinuationFallback, ReconnectPolicy
    from .server import (
        SERVER_TRANSITIONS,
        MessageServer,
        ServerPhase,
        ServerTrigger,
    )
    from .wire import ClientConnection, ServerConnection

#: The submodule that holds each public name (loaded by :func:`__getattr__`, PEP 562).
_SUBMODULE_NAMES: dict[str, tuple[str, ...]] = {
    "agent_state": ("AgentState",),
    "client": ("SESSION_TRANSITIONS", "MessageClient", "SessionPhase", "SessionTrigger"),
    "config": ("ClientConfig", "PreReadyAudio", "ServerConfig", "StartRequest"),
    "endpoint": ("EU_WEST", "US_WEST", "Endpoint", "parse_endpoint"),
    "envelope": ("ABSENT",),
    "errors": (
        "ConfigError",
        "ConnectionClosedByServer",
        "ConnectionFailed",
        "ConnectionLost",
        "FailureKind",
        "LocalProtocolError",
        "MillisError",
        "RemoteProtocolError",
        "TransportError",
    ),
    "events": (
        "AgentAudio",
        "AgentStateChanged",
        "AIAction",
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
        "Reconnected",
        "ReconnectFailed",
        "Reconnecting",
        "ResponseText",
        "SessionEnded",
        "SessionReady",
        "StartAnswering",
        "Transcript",
        "UnknownMessage",
        "Unpause",
        "event_to_dict",
    ),
    "machine": ("CloseRequest",),
    "pcm": ("BYTES_PER_SAMPLE", "SAMPLE_RATE"),
    "playback": ("PlaybackBuffer", "PlaybackChunk"),
    "reconnect": ("ContinuationFallback", "ReconnectPolicy"),
    "server": ("SERVER_TRANSITIONS", "MessageServer", "ServerPhase", "ServerTrigger"),
    "wire": ("ClientConnection", "ServerConnection"),
}
_HOME = {name: module for module, names in _SUBMODULE_NAMES.items() for name in names}


def __getattr__(name: str) -> Any:
    # Loading on first use keeps ``import millis_proto`` (and every program that needs only
    # part of the core, e.g. the message machines without the WebSocket layer) cheap.
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
