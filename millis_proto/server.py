"""The server machine: the mirror image of the client, for the local agent and for tests.

Theory of operation
-------------------
Phases: ``awaiting_initiate`` → ``active`` → ``closed``. The first message must be a valid
``initiate``; anything else (audio first, another method, an invalid start request) makes
the machine close with 1008 and a reason beginning ``"validation error"``, which is how
Millis reports bad configs (PROTOCOL.md §4). Once active, ``ping`` is answered with a
``pong`` echoing its data (the machine queues it itself), binary frames become
:class:`ClientAudio`, and any other method becomes :class:`ClientMessage`. The ``send_*``
methods produce every server message of PROTOCOL.md §4 and agent audio.
"""

from __future__ import annotations

import enum
from typing import Any

from .config import StartRequest
from .envelope import ABSENT, decode_envelope, encode_envelope
from .errors import ConfigError, LocalProtocolError
from .events import (
    BadMessage,
    ClientAudio,
    ClientMessage,
    ClientPing,
    InitiateReceived,
    InitiateRejected,
)
from .machine import DEFAULT_MAX_PENDING_BYTES, MessageMachine
from .pcm import Buffer

__all__ = ["MillisServer", "ServerPhase"]

#: Close code used for an invalid ``initiate`` (policy violation).
VALIDATION_CLOSE_CODE = 1008


class ServerPhase(str, enum.Enum):
    """Where the server side of a session is."""

    AWAITING_INITIATE = "awaiting_initiate"
    ACTIVE = "active"
    CLOSED = "closed"


class MillisServer(MessageMachine):
    """Server-role Millis session machine; same output model as :class:`MillisClient`."""

    def __init__(self, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        super().__init__(max_pending_bytes)
        self._phase = ServerPhase.AWAITING_INITIATE
        #: The validated start request, once ``initiate`` arrived.
        self.request: StartRequest | None = None

    @property
    def phase(self) -> ServerPhase:
        """The session phase."""
        return self._phase

    # --- input -------------------------------------------------------------------------

    def receive_message(self, message: str | Buffer, now: float) -> None:
        """Feed one whole WebSocket message: ``str`` = text frame, bytes-like = binary."""
        if self._phase is ServerPhase.CLOSED:
            raise LocalProtocolError("the connection is closed; no more messages can arrive.")
        if self._closing:
            return  # we are failing the session; the rest is discarded
        if self._phase is ServerPhase.AWAITING_INITIATE:
            self._expect_initiate(message)
        elif isinstance(message, str):
            self._on_text(message)
        else:
            self._events.append(ClientAudio(data=bytes(message)))

    def connection_closed(self, now: float) -> None:
        """The WebSocket is closed: nothing more is sent or received."""
        self._phase = ServerPhase.CLOSED
        super().connection_closed(now)

    def _reject(self, why: str) -> None:
        reason = f"validation error: {why}"
        self._events.append(InitiateRejected(reason=reason))
        self.close(VALIDATION_CLOSE_CODE, reason)

    def _expect_initiate(self, message: str | Buffer) -> None:
        if not isinstance(message, str):
            self._reject("audio arrived before initiate")
            return
        env = decode_envelope(message)
        if isinstance(env, str):
            self._reject(env)
        elif env.method != "initiate":
            self._reject(f"the first message must be initiate, not {env.method!r}")
        else:
            try:
                request = StartRequest.from_initiate_data(env.data)
            except ConfigError as exc:
                self._reject(str(exc))
                return
            self.request = request
            self._phase = ServerPhase.ACTIVE
            self._events.append(InitiateReceived(request=request, data=env.data))

    def _on_text(self, text: str) -> None:
        env = decode_envelope(text)
        if isinstance(env, str):
            self._events.append(BadMessage(reason=env, raw=text))
        elif env.method == "ping":
            if not self._closing:
                self._queue(encode_envelope("pong", ABSENT if env.data is None else env.data))
            self._events.append(ClientPing(data=env.data))
        else:
            self._events.append(ClientMessage(method=env.method, data=env.data))

    # --- output ------------------------------------------------------------------------

    def send_message(self, method: str, data: Any = ABSENT, payload: Any = ABSENT) -> None:
        """Send any server message; ``data``/``payload`` are omitted when not given."""
        self._check_open("send")
        try:
            text = encode_envelope(method, data, payload)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{method!r} is not JSON-serializable ({exc}).") from None
        self._queue(text)

    def send_ready(self, session_id: str) -> None:
        """``onready`` with ``payload.session_id``."""
        self.send_message("onready", payload={"session_id": session_id})

    def send_transcript(self, text: str, *, is_final: bool) -> None:
        """``ontranscript`` (user text)."""
        self.send_message("ontranscript", text, {"is_final": is_final})

    def send_response_text(self, text: str, *, is_final: bool) -> None:
        """``onresponsetext`` (agent text)."""
        self.send_message("onresponsetext", text, {"is_final": is_final})

    def send_function_call(self, name: str, params: dict[str, Any]) -> None:
        """``onfunction`` with ``payload {name, params}``."""
        self.send_message("onfunction", "", {"name": name, "params": params})

    def send_start_answering(self) -> None:
        """``start_answering``."""
        self.send_message("start_answering")

    def send_pause(self) -> None:
        """``pause``."""
        self.send_message("pause")

    def send_unpause(self) -> None:
        """``unpause``."""
        self.send_message("unpause")

    def send_clear(self) -> None:
        """``clear``."""
        self.send_message("clear")

    def send_ai_action(self, data: Any) -> None:
        """``ai_action`` with arbitrary data."""
        self.send_message("ai_action", data)

    def send_session_ended(self, data: Any = ABSENT) -> None:
        """``onsessionended``; follow it with :meth:`close`."""
        self.send_message("onsessionended", data)

    def send_audio(self, pcm: Buffer) -> None:
        """One binary frame of agent audio (any size)."""
        self._check_open("send audio")
        self._queue(bytes(pcm))
