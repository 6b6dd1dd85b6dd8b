"""The message-level server machine: the mirror of the client, for the local agent and tests.

Theory of operation
-------------------
:class:`MessageServer` is for transports that do WebSocket framing themselves; everything
else drives :class:`~millis_proto.ServerConnection`, which owns one privately and offers
the same ``send_*`` methods.

Phases move only through :data:`SERVER_TRANSITIONS`::

    awaiting_initiate + INITIATE → active
    awaiting_initiate | active + CLOSE → closing    (our close is queued)
    *                 + CLOSED   → closed

The first message must be a valid ``initiate``; anything else (audio first, another
method, an invalid start request) makes the machine close with 1008 and a reason beginning
``"validation error"``, which is how Millis reports bad configs (docs/protocol.md §4). Once
active, ``ping`` is answered with a ``pong`` echoing its data (the machine queues it
itself), binary frames become :class:`ClientAudio`, and any other method becomes
:class:`ClientMessage`. The ``send_*`` methods produce every server message of
docs/protocol.md §4 and agent audio.
"""

from __future__ import annotations

import enum
from typing import Any

from .config import StartRequest
from .envelope import ABSENT, decode_envelope, encode_envelope, json_problem
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

__all__ = ["SERVER_TRANSITIONS", "MessageServer", "ServerPhase", "ServerTrigger"]

#: Close code used for an invalid ``initiate`` (policy violation).
VALIDATION_CLOSE_CODE = 1008


class ServerPhase(str, enum.Enum):
    """Where the server side of a session is."""

    AWAITING_INITIATE = "awaiting_initiate"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"


class ServerTrigger(enum.Enum):
    """Inputs of the server session phase machine."""

    INITIATE = "initiate"
    CLOSE = "close"
    CLOSED = "closed"


_P = ServerPhase
_T = ServerTrigger

#: ``(phase, trigger) → phase``; a missing pair cannot happen (the callers guard it).
SERVER_TRANSITIONS: dict[tuple[ServerPhase, ServerTrigger], ServerPhase] = {
    (_P.AWAITING_INITIATE, _T.INITIATE): _P.ACTIVE,
    (_P.AWAITING_INITIATE, _T.CLOSE): _P.CLOSING,
    (_P.ACTIVE, _T.CLOSE): _P.CLOSING,
    **{(p, _T.CLOSED): _P.CLOSED for p in ServerPhase},
}


class MessageServer(MessageMachine):
    """Server-role Millis session machine; same output model as :class:`MessageClient`."""

    __slots__ = ()

    def __init__(self, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        super().__init__(max_pending_bytes)
        self._phase = ServerPhase.AWAITING_INITIATE
        #: The validated start request, once ``initiate`` arrived.
        self.request: StartRequest | None = None

    @property
    def phase(self) -> ServerPhase:
        """The session phase (see :data:`SERVER_TRANSITIONS`)."""
        return self._phase

    @property
    def closing(self) -> bool:
        """True once a close was requested or the connection closed."""
        return self._phase is _P.CLOSING or self._phase is _P.CLOSED

    def _advance(self, trigger: ServerTrigger) -> None:
        """Move the phase through the table; the one place that assigns it."""
        new = SERVER_TRANSITIONS.get((self._phase, trigger))
        if new is None:
            raise LocalProtocolError(f"cannot {trigger.value} a session that is {self._phase}.")
        self._phase = new

    def _advance_close(self) -> None:
        self._advance(_T.CLOSE)

    def _advance_closed(self) -> None:
        self._advance(_T.CLOSED)

    # --- input -------------------------------------------------------------------------

    def receive_message(self, message: str | Buffer, now: float) -> None:
        """Feed one whole WebSocket message: ``str`` = text frame, bytes-like = binary."""
        phase = self._phase
        if phase is _P.ACTIVE and type(message) is bytes:
            self._events.append(ClientAudio(data=message))  # hot path: 50 a second
            return
        if phase is _P.CLOSED:
            raise LocalProtocolError("the connection is closed; no more messages can arrive.")
        if self._phase is _P.CLOSING:
            return  # we are failing the session; the rest is discarded
        if self._phase is ServerPhase.AWAITING_INITIATE:
            self._expect_initiate(message)
        elif isinstance(message, str):
            self._on_text(message)
        else:
            self._events.append(ClientAudio(data=bytes(message)))

    def connection_closed(self, now: float) -> None:
        """The WebSocket is closed: nothing more is sent or received."""
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
            self._advance(_T.INITIATE)
            self._events.append(InitiateReceived(request=request, data=env.data))

    def _on_text(self, text: str) -> None:
        env = decode_envelope(text)
        if isinstance(env, str):
            self._events.append(BadMessage(reason=env, raw=text))
        elif env.method == "ping":
            if not self.closing:
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
        except (TypeError, ValueError, RecursionError):
            present = {k: v for k, v in (("data", data), ("payload", payload)) if v is not ABSENT}
            problem = json_problem(present, method)
            raise ConfigError(f"{problem}.") from None
        self._queue(text)

    def send_ready(self, session_id: str) -> None:
        """``onready`` with ``payload.session_id``."""
        self.send_message("onready", payload={"session_id": session_id})

    def send_transcript(self, text: str, *, is_final: bool | None) -> None:
        """``ontranscript`` (user text); ``is_final=None`` leaves the payload out."""
        self.send_message("ontranscript", text, _final_payload(is_final))

    def send_response_text(self, text: str, *, is_final: bool | None) -> None:
        """``onresponsetext`` (agent text); ``is_final=None`` leaves the payload out."""
        self.send_message("onresponsetext", text, _final_payload(is_final))

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


def _final_payload(is_final: bool | None) -> Any:
    return ABSENT if is_final is None else {"is_final": is_final}
