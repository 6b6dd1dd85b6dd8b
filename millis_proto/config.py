"""Validated configuration: the start request (what ``initiate`` carries) and machine options.

Both are frozen dataclasses that validate on construction and raise :class:`ConfigError`
with a sentence naming the field. :meth:`StartRequest.to_initiate_data` builds the
``initiate`` data object (docs/protocol.md §3) and :meth:`StartRequest.from_initiate_data`
parses one — the server machine uses the same checks, so both sides agree on "valid".
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from ._frozen import frozen_dataclass
from .agent_config import check_agent_config, json_type_name
from .envelope import json_problem
from .errors import ConfigError
from .pcm import BYTES_PER_SAMPLE, SAMPLE_RATE
from .playback import DEFAULT_MAX_PLAYBACK_SECONDS

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = [
    "DEFAULT_DISCONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_METADATA_BYTES",
    "ClientConfig",
    "PreReadyAudio",
    "ServerConfig",
    "StartRequest",
]

#: Largest ``metadata`` object accepted, in bytes of compact JSON.
MAX_METADATA_BYTES = 64 * 1024
#: Default largest WebSocket message accepted (reassembled); larger ones close with 1009.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
#: Default bound of the close handshake: how long our close frame waits for the reply.
DEFAULT_DISCONNECT_TIMEOUT = 5.0
#: Default bound of messages waiting to be sent.
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024

_KNOWN_KEYS = frozenset(
    {"public_key", "agent", "metadata", "include_metadata_in_prompt", "session_continuation"}
)


def _json_size(value: object, what: str) -> int:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise ConfigError(json_problem(value, what) + ".") from None
    return len(text.encode())


def _check_seconds(value: object, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        none = " (or None to disable)" if optional else ""
        raise ConfigError(f"{what} must be a positive number of seconds{none}.")
    if value == float("inf"):
        raise ConfigError(f"{what} must be finite.")


def _non_empty_str(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {json_type_name(value)}.")
    if not value.strip():
        raise ConfigError(f"{what} is empty.")


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class StartRequest:
    """What the client asks for in ``initiate``.

    Give ``agent_id`` (a stored agent), ``agent_config`` (a temporary agent), or both (the
    stored agent overridden for this session). ``session_id`` continues a previous session
    (``session_continuation``). ``extra`` holds any further top-level keys of the initiate
    data, sent verbatim — with :meth:`from_initiate_data` this is how a full payload is given.
    ``public_key`` is never shown in ``repr``.

    Raises :class:`ConfigError` naming the field when anything is invalid.
    """

    public_key: str = field(repr=False)
    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    include_metadata_in_prompt: bool | None = None
    session_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.public_key is None or self.public_key == "":
            raise ConfigError("public_key is missing: give the agent's public key.")
        _non_empty_str(self.public_key, "public_key")
        if self.agent_id is None and self.agent_config is None:
            raise ConfigError("agent is missing: give agent_id, agent_config, or both.")
        if self.agent_id is not None:
            _non_empty_str(self.agent_id, "agent_id")
        if self.agent_config is not None:
            if not isinstance(self.agent_config, Mapping):
                raise ConfigError(
                    f"agent_config must be an object, not {json_type_name(self.agent_config)}."
                )
            check_agent_config(self.agent_config)
            _json_size(self.agent_config, "agent_config")
        if self.metadata is not None:
            if not isinstance(self.metadata, Mapping):
                raise ConfigError(
                    f"metadata must be an object, not {json_type_name(self.metadata)}."
                )
            size = _json_size(self.metadata, "metadata")
            if size > MAX_METADATA_BYTES:
                raise ConfigError(
                    f"metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}."
                )
        if self.include_metadata_in_prompt is not None and not isinstance(
            self.include_metadata_in_prompt, bool
        ):
            raise ConfigError("include_metadata_in_prompt must be true or false.")
        if self.session_id is not None:
            _non_empty_str(self.session_id, "session_id")
        if not isinstance(self.extra, Mapping):
            raise ConfigError("extra must be an object of additional initiate keys.")
        clash = _KNOWN_KEYS.intersection(self.extra)
        if clash:
            raise ConfigError(f"extra repeats a key set by its own field: {sorted(clash)[0]}.")
        _json_size(dict(self.extra), "extra")

    def to_initiate_data(self) -> dict[str, Any]:
        """The ``data`` object of the ``initiate`` message; absent keys are omitted."""
        agent: dict[str, Any] = {}
        if self.agent_id is not None:
            agent["agent_id"] = self.agent_id
        if self.agent_config is not None:
            agent["agent_config"] = dict(self.agent_config)
        data: dict[str, Any] = {"public_key": self.public_key, "agent": agent}
        if self.metadata is not None:
            data["metadata"] = dict(self.metadata)
        if self.include_metadata_in_prompt is not None:
            data["include_metadata_in_prompt"] = self.include_metadata_in_prompt
        if self.session_id is not None:
            data["session_continuation"] = {"session_id": self.session_id}
        data.update(self.extra)
        return data

    @classmethod
    def from_initiate_data(cls, data: object) -> StartRequest:
        """Parse and validate the ``data`` object of an ``initiate`` message."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"initiate data must be an object, not {json_type_name(data)}.")
        agent = data.get("agent")
        if agent is None:
            agent = {}
        if not isinstance(agent, Mapping):
            raise ConfigError(f"agent must be an object, not {json_type_name(agent)}.")
        continuation = data.get("session_continuation")
        session_id = None
        if continuation is not None:
            if not isinstance(continuation, Mapping):
                raise ConfigError("session_continuation must be an object with a session_id.")
            session_id = continuation.get("session_id")
            if session_id is None:
                raise ConfigError("session_continuation.session_id is missing.")
        return cls(
            public_key=data.get("public_key"),  # type: ignore[arg-type]  # checked in post_init
            agent_id=agent.get("agent_id"),
            agent_config=agent.get("agent_config"),
            metadata=data.get("metadata"),
            include_metadata_in_prompt=data.get("include_metadata_in_prompt"),
            session_id=session_id,
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )


class PreReadyAudio(str, enum.Enum):
    """What happens to application audio sent before the server's ``onready``.

    * ``BUFFER`` (default): keep the most recent ``pre_ready_buffer_seconds`` and send it,
      in order, right after ``onready`` — nothing the person says at the start is lost, and
      the documented message order (initiate, onready, audio) is kept.
    * ``SEND``: send immediately after ``initiate``, like the official web SDK.
    * ``DROP``: discard it, like the jambonz bridge.
    """

    BUFFER = "buffer"
    SEND = "send"
    DROP = "drop"


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Options of the client machine. All have working defaults.

    * ``pre_ready_audio`` / ``pre_ready_buffer_seconds``: see :class:`PreReadyAudio`.
    * ``chunk_ms``: when set, outgoing audio is re-chunked into frames of exactly this many
      milliseconds (e.g. 20 → 640 bytes); when ``None`` each ``send_audio`` call is one frame.
    * ``ping_every_packets``: send a ``ping`` after this many audio packets (docs: 1000);
      ``0`` disables.
    * ``max_playback_seconds``: bound of the playback buffer (see :mod:`.playback`).
    * ``emit_audio_events``: report each agent audio frame as an :class:`AgentAudio` event
      (off by default: the audio always goes to the playback buffer, and an event per
      frame costs CPU and fills the event queue).
    * ``drain_grace_ms``: "playback finished" (answer → idle) is reported only after this
      much silence has been pulled from an empty queue. The SDK reports it the moment the
      queue empties, which flaps answer/idle on every frame when audio arrives at real-time
      pace with network jitter; ``0`` restores that behaviour exactly.
    * ``close_on_session_end``: close the WebSocket (1000) when ``onsessionended`` arrives,
      as the docs ask of clients.
    * ``max_pending_bytes``: bound of messages waiting to be sent; exceeding it means the
      transport is not draining ``data_to_send()`` and raises :class:`LocalProtocolError`.
    * ``max_message_bytes``: largest incoming WebSocket message (reassembled); a larger
      one fails the connection with 1009.

    Timers (seconds; they come out of ``ClientConnection.get_timer()``):

    * ``disconnect_timeout``: how long our close frame waits for the server's reply; then
      the connection is closed without it: normally after ``onsessionended``, else as
      ``ConnectionClosed(1006, "the server stopped answering ...")`` (a half-open server
      is not a normal end).
    * ``liveness_timeout``: after this long with no byte from the server, a Millis ``ping``
      is sent; ``None`` disables the liveness check.
    * ``pong_timeout``: after that ping, this long with still no byte from the server ends
      the connection: ``ConnectionClosed(1006, "the server stopped answering")``.
    * ``keepalive_interval``: also send a Millis ``ping`` this often whatever arrives
      (``None``, the default, sends none; ``ping_every_packets`` still applies).
    """

    pre_ready_audio: PreReadyAudio = PreReadyAudio.BUFFER
    pre_ready_buffer_seconds: float = 2.0
    chunk_ms: float | None = None
    ping_every_packets: int = 1000
    max_playback_seconds: float = DEFAULT_MAX_PLAYBACK_SECONDS
    emit_audio_events: bool = False
    drain_grace_ms: float = 100.0
    close_on_session_end: bool = True
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT
    liveness_timeout: float | None = 10.0
    pong_timeout: float = 5.0
    keepalive_interval: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pre_ready_audio, PreReadyAudio):
            raise ConfigError("pre_ready_audio must be a PreReadyAudio value.")
        if not self.pre_ready_buffer_seconds >= 0:
            raise ConfigError("pre_ready_buffer_seconds must not be negative.")
        if self.chunk_ms is not None:
            samples = self.chunk_ms * SAMPLE_RATE / 1000
            if not samples >= 1 or samples != int(samples):
                raise ConfigError("chunk_ms must be a positive whole number of 1/16 ms samples.")
        if self.ping_every_packets < 0:
            raise ConfigError("ping_every_packets must not be negative (0 disables pings).")
        if not self.drain_grace_ms >= 0:
            raise ConfigError("drain_grace_ms must not be negative.")
        if not self.max_playback_seconds > 0:
            raise ConfigError("max_playback_seconds must be positive.")
        if self.max_pending_bytes <= 0:
            raise ConfigError("max_pending_bytes must be positive.")
        if self.max_message_bytes <= 0:
            raise ConfigError("max_message_bytes must be positive.")
        _check_seconds(self.disconnect_timeout, "disconnect_timeout")
        _check_seconds(self.liveness_timeout, "liveness_timeout", optional=True)
        _check_seconds(self.pong_timeout, "pong_timeout")
        _check_seconds(self.keepalive_interval, "keepalive_interval", optional=True)

    @property
    def chunk_bytes(self) -> int | None:
        """Re-chunking frame size in bytes, or ``None``."""
        if self.chunk_ms is None:
            return None
        return int(self.chunk_ms * SAMPLE_RATE / 1000) * BYTES_PER_SAMPLE


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Options of the server side (``ServerConnection``). All have working defaults.

    * ``handshake_timeout``: the WebSocket opening handshake must complete within this many
      seconds of the connection's start, else it is dropped
      (``ConnectionClosed(1008, ...)``, nothing sent: there is no WebSocket yet).
    * ``initiate_timeout``: once open, ``initiate`` must arrive within this many seconds,
      else the server closes with 1008 and a reason saying so.
    * ``disconnect_timeout``: how long our close frame waits for the client's reply.
    * ``max_message_bytes`` / ``max_pending_bytes``: as in :class:`ClientConfig`.
    """

    handshake_timeout: float = 10.0
    initiate_timeout: float = 10.0
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES

    def __post_init__(self) -> None:
        _check_seconds(self.handshake_timeout, "handshake_timeout")
        _check_seconds(self.initiate_timeout, "initiate_timeout")
        _check_seconds(self.disconnect_timeout, "disconnect_timeout")
        if self.max_message_bytes <= 0:
            raise ConfigError("max_message_bytes must be positive.")
        if self.max_pending_bytes <= 0:
            raise ConfigError("max_pending_bytes must be positive.")
