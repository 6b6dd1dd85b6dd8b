"""What the message-level machines share: the event queue and the bounded outbox.

A machine's output is pulled by its owner: :meth:`MessageMachine.events` for typed events
and :meth:`MessageMachine.messages_to_send` for whole WebSocket messages (``str`` = text,
``bytes`` = binary, :class:`CloseRequest` = close the WebSocket). The outbox is bounded by
``max_pending_bytes``: going over it means the transport is not draining the machine, which
raises :class:`LocalProtocolError` rather than growing without limit.

Each subclass keeps its session phase in one transition table; this base only asks it
whether the session is closing (:attr:`MessageMachine.closing`) and tells it when a close
is requested (``_advance_close``) or the connection is gone (``_advance_closed``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._frozen import frozen_dataclass
from .config import DEFAULT_MAX_PENDING_BYTES
from .errors import LocalProtocolError
from .events import Event

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = ["DEFAULT_MAX_PENDING_BYTES", "CloseRequest", "MessageMachine", "OutgoingMessage"]


@frozen_dataclass(frozen=True, slots=True)
class CloseRequest:
    """An outgoing item asking the wire layer to close the WebSocket."""

    code: int = 1000
    reason: str = ""


OutgoingMessage = str | bytes | CloseRequest


class MessageMachine:
    """Base of :class:`~millis_proto.client.MessageClient` and ``MessageServer``."""

    __slots__ = (
        "_events",
        "_max_pending_bytes",
        "_out",
        "_out_bytes",
        "_phase",
        "request",
    )

    def __init__(self, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self._events: deque[Event] = deque()
        self._out: deque[OutgoingMessage] = deque()
        self._out_bytes = 0
        self._max_pending_bytes = max_pending_bytes

    @property
    def closing(self) -> bool:
        """True once a close was requested or the connection closed."""
        raise NotImplementedError

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Pop every pending event, oldest first."""
        if not self._events:
            return []
        out = list(self._events)
        self._events.clear()
        return out

    def messages_to_send(self) -> list[OutgoingMessage]:
        """Pop every message ready to go on the wire, oldest first."""
        if not self._out:
            return []
        out = list(self._out)
        self._out.clear()
        self._out_bytes = 0
        return out

    def close(self, code: int = 1000, reason: str = "", *, now: float | None = None) -> None:
        """Ask the wire layer to close the WebSocket; idempotent.

        Messages queued before it are still sent; sending afterwards raises
        :class:`LocalProtocolError`. ``now`` is accepted so that code driving either this
        or a wire connection (whose ``close`` needs it for the reply deadline) is the same;
        a message-level machine has no timers and ignores it.
        """
        if self.closing:
            return
        self._advance_close()
        self._out.append(CloseRequest(code, reason))

    def connection_closed(self, now: float) -> None:
        """The WebSocket is closed (for any reason): drop what can no longer be sent."""
        self._advance_closed()
        self._out.clear()
        self._out_bytes = 0

    def _advance_close(self) -> None:
        raise NotImplementedError

    def _advance_closed(self) -> None:
        raise NotImplementedError

    def _check_open(self, action: str) -> None:
        if self.closing:
            raise LocalProtocolError(f"cannot {action}: the session is closed.")

    def _queue(self, item: str | bytes) -> None:
        size = len(item)
        if self._out_bytes + size > self._max_pending_bytes:
            raise LocalProtocolError(
                f"more than {self._max_pending_bytes} bytes are waiting to be sent; "
                "the transport is not draining data_to_send()."
            )
        self._out.append(item)
        self._out_bytes += size
