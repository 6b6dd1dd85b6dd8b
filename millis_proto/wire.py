"""The wire level: a message machine composed with wsproto, bytes in and bytes out.

Theory of operation
-------------------
:class:`ClientConnection` and :class:`ServerConnection` own a ``wsproto.WSConnection`` and a
message machine (:class:`~millis_proto.client.MillisClient` / ``MillisServer``). The owner
feeds received bytes to :meth:`WireConnection.receive_data` (``None`` = EOF), writes what
:meth:`WireConnection.data_to_send` returns (everything pending, so many frames go out in
one write), and reads :meth:`WireConnection.events` — the machine's events interleaved, in
order, with the connection's own (:class:`Connected`, :class:`ConnectionRejected`,
:class:`ConnectionClosed`).

The connection state is wsproto's. This layer adds what wsproto leaves to its caller:

* reassembly of fragmented messages, bounded by ``max_message_bytes`` (text counted in
  characters); a larger message fails the connection with 1009;
* automatic pong replies to WebSocket pings — only while open, never after our own close
  (trio-websocket #184);
* the close handshake both ways, and a malformed frame (wsproto reports it as a close with
  1002/1007) fails the connection: our close frame is queued and the connection is closed;
* exactly one :class:`ConnectionClosed` event, with the code, reason and initiator. After
  it, flush ``data_to_send()`` once more and close the transport; later input is ignored.

A broken opening handshake raises :class:`RemoteProtocolError` (sticky); on the server side
the 400 response is queued first, so flush before closing (as h2 does).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Protocol

import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.events import Event as WsEvent

from .client import MillisClient
from .config import DEFAULT_MAX_MESSAGE_BYTES
from .endpoint import Endpoint, parse_endpoint
from .errors import RemoteProtocolError
from .events import (
    CloseInitiator,
    Connected,
    ConnectionClosed,
    ConnectionRejected,
    Event,
)
from .machine import CloseRequest, OutgoingMessage
from .server import MillisServer

__all__ = ["ClientConnection", "ServerConnection", "WireConnection"]

#: How much of a handshake rejection body is kept for the error message.
MAX_REJECT_BODY = 4096
#: Largest opening-handshake request the server side keeps while parsing it.
MAX_HANDSHAKE_BYTES = 64 * 1024


class _Machine(Protocol):
    def events(self) -> list[Event]: ...
    def messages_to_send(self) -> list[OutgoingMessage]: ...
    def receive_message(self, message: str | bytes, now: float) -> None: ...
    def connection_closed(self, now: float) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...


class WireConnection:
    """Shared wire logic; use :class:`ClientConnection` or :class:`ServerConnection`."""

    def __init__(self, machine: _Machine, role: ConnectionType, max_message_bytes: int) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self._machine = machine
        self._ws = wsproto.WSConnection(role)
        self.max_message_bytes = max_message_bytes
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._parts: list[str | bytes] = []  # fragments of the message being reassembled
        self._parts_size = 0
        self._local_close: CloseRequest | None = None
        self._reject_status: int | None = None
        self._reject_body = b""
        self._error: RemoteProtocolError | None = None
        #: The :class:`ConnectionClosed` event once the connection is closed, else ``None``.
        self.closed: ConnectionClosed | None = None

    @property
    def close_sent(self) -> bool:
        """True once our close frame is queued: from then on only the peer's reply is awaited."""
        return self._local_close is not None

    @property
    def is_open(self) -> bool:
        """True between the handshake and the first close frame (ours or theirs)."""
        return self.closed is None and self._ws.state is ConnectionState.OPEN

    # --- output ------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or ``None``."""
        self._collect()
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Pop every pending event, oldest first."""
        self._collect()
        out = list(self._events)
        self._events.clear()
        return out

    def data_to_send(self) -> bytes:
        """Everything waiting to be written to the transport, as one ``bytes``."""
        self._encode_machine_output()
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return data

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close: the machine's queued messages go out, then our close frame.

        Idempotent. :class:`ConnectionClosed` comes when the peer answers (or at EOF);
        before the opening handshake completes it comes at once.
        """
        if self.closed is not None:
            return
        self._machine.close(code, reason)
        if self._ws.state is ConnectionState.OPEN:
            self._encode_machine_output()
        elif self._ws.state is ConnectionState.CONNECTING:
            self._finish(
                code,
                reason or "closed before the handshake completed",
                CloseInitiator.LOCAL,
                now=0.0,
            )

    def abort(self, reason: str, now: float) -> None:
        """The transport failed (a reset, a TLS error, a broken or cancelled write).

        Gives the :class:`ConnectionClosed` event: code 1006 with ``reason`` — or, when our
        close frame had already gone out, our own close, exactly as EOF does in
        :meth:`receive_data`. Nothing more can be sent, so pending output is dropped.
        Idempotent; ignored once closed.
        """
        if self.closed is not None:
            return
        self._out.clear()
        if self._local_close is not None:
            self._finish(
                self._local_close.code, self._local_close.reason, CloseInitiator.LOCAL, now
            )
        else:
            self._finish(1006, reason, CloseInitiator.LOST, now)

    def _encode_machine_output(self) -> None:
        if self._ws.state is not ConnectionState.OPEN or self.closed is not None:
            return
        ws = self._ws
        out = self._out
        for item in self._machine.messages_to_send():
            if isinstance(item, bytes):
                out.append(ws.send(BytesMessage(data=item)))
            elif isinstance(item, str):
                out.append(ws.send(TextMessage(data=item)))
            else:
                self._send_close(item)
                return

    # --- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview | None, now: float) -> None:
        """Feed bytes read from the transport; ``None`` (or ``b""``) means EOF.

        Raises :class:`RemoteProtocolError` for an invalid opening handshake (sticky).
        """
        if self._error is not None:
            raise self._error
        if self.closed is not None:
            return  # RFC 6455 §7.1.1: after closing, remaining data is discarded
        eof = data is None or len(data) == 0
        if eof and self._ws.state is ConnectionState.CONNECTING:
            self._finish(
                1006,
                "connection lost before the WebSocket handshake completed",
                CloseInitiator.LOST,
                now,
            )
            return
        try:
            self._ws.receive_data(None if eof else data)  # type: ignore[arg-type]
            for event in self._ws.events():
                self._handle(event, now)
                if self.closed is not None:
                    break
        except wsproto.utilities.RemoteProtocolError as exc:
            self._fail_handshake(exc, now)
        if eof and self.closed is None:
            if self._local_close is not None:
                self._finish(
                    self._local_close.code, self._local_close.reason, CloseInitiator.LOCAL, now
                )
            else:
                self._finish(
                    1006,
                    "connection lost: the peer closed the connection without "
                    "a WebSocket close handshake",
                    CloseInitiator.LOST,
                    now,
                )

    # --- internals ---------------------------------------------------------------------

    def _collect(self) -> None:
        # Machine events first-in-first-out behind the connection events already queued.
        self._events.extend(self._machine.events())

    def _fail_handshake(self, exc: wsproto.utilities.RemoteProtocolError, now: float) -> None:
        raise NotImplementedError

    def _send_close(self, request: CloseRequest) -> None:
        self._local_close = request
        self._out.append(
            self._ws.send(CloseConnection(code=request.code, reason=request.reason or None))
        )

    def _finish(self, code: int, reason: str, initiator: CloseInitiator, now: float) -> None:
        self._machine.connection_closed(now)
        self._collect()  # the machine's last events (state -> idle) come before the close
        self.closed = ConnectionClosed(code=code, reason=reason, initiator=initiator)
        self._events.append(self.closed)
        self._parts.clear()

    def _handle(self, event: WsEvent, now: float) -> None:
        if isinstance(event, (BytesMessage, TextMessage)):
            self._on_data(event.data, event.message_finished, now)
        elif isinstance(event, Ping):
            if self._ws.state is ConnectionState.OPEN:
                self._out.append(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._on_close(event, now)
        else:
            self._on_handshake(event, now)

    def _on_handshake(self, event: WsEvent, now: float) -> None:
        """Role-specific handshake events; Pong and unknown events are ignored."""

    def _on_data(self, data: str | bytes | bytearray, finished: bool, now: float) -> None:
        if finished and not self._parts:
            if len(data) > self.max_message_bytes:
                self._too_big(now)
                return
            # hot path: a whole message in one frame
            self._machine.receive_message(data if isinstance(data, str) else bytes(data), now)
            return
        self._parts.append(data if isinstance(data, str) else bytes(data))
        self._parts_size += len(data)
        if self._parts_size > self.max_message_bytes:
            self._too_big(now)
            return
        if finished:
            parts = self._parts
            message: str | bytes
            if isinstance(parts[0], str):
                message = "".join(p for p in parts if isinstance(p, str))
            else:
                message = b"".join(p for p in parts if isinstance(p, bytes))
            self._parts = []
            self._parts_size = 0
            self._machine.receive_message(message, now)

    def _too_big(self, now: float) -> None:
        reason = f"message too big: over {self.max_message_bytes} bytes"
        self._fail(1009, reason, now)

    def _fail(self, code: int, reason: str, now: float) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send our close, then consider it closed."""
        if self._ws.state is ConnectionState.OPEN:
            self._send_close(CloseRequest(code, reason))
        self._finish(code, reason, CloseInitiator.PROTOCOL_ERROR, now)

    def _on_close(self, event: CloseConnection, now: float) -> None:
        state = self._ws.state
        reason = event.reason or ""
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the close: answer it (echoing the code) and we are done.
            # Queued messages are dropped: RFC 6455 allows no data after a received close.
            self._out.append(self._ws.send(event.response()))
            self._finish(int(event.code), reason, CloseInitiator.REMOTE, now)
        elif state is ConnectionState.CLOSED and self._local_close is not None:
            # The peer answered our close.
            self._finish(
                self._local_close.code, self._local_close.reason, CloseInitiator.LOCAL, now
            )
        elif state is ConnectionState.CLOSED:
            pass  # EOF: handled in receive_data so the reason is worded there
        else:
            # wsproto reports a malformed frame as a close it did not receive (1002/1007).
            self._fail(int(event.code), f"protocol error from the peer: {reason}", now)


class ClientConnection(WireConnection):
    """A client WebSocket to a Millis endpoint, driving a :class:`MillisClient`.

    The opening handshake request is queued on construction: write ``data_to_send()`` as
    soon as the transport is connected. ``initiate`` follows as soon as the server accepts.
    """

    def __init__(
        self,
        client: MillisClient,
        endpoint: str | Endpoint,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(client, ConnectionType.CLIENT, max_message_bytes)
        self.client = client
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
        self._out.append(
            self._ws.send(
                Request(
                    host=self.endpoint.host_header,
                    target=self.endpoint.target,
                    extra_headers=list(extra_headers or []),
                )
            )
        )

    def _on_handshake(self, event: WsEvent, now: float) -> None:
        if isinstance(event, AcceptConnection):
            self._events.append(Connected())
            self.client.start(now)
        elif isinstance(event, RejectConnection):
            self._reject_status = event.status_code
            if not event.has_body:
                self._rejected(now)
        elif isinstance(event, RejectData):
            room = MAX_REJECT_BODY - len(self._reject_body)
            self._reject_body += bytes(event.data[: max(room, 0)])
            if event.body_finished:
                self._rejected(now)

    def _rejected(self, now: float) -> None:
        status = self._reject_status or 0
        self._events.append(ConnectionRejected(status_code=status, body=self._reject_body))
        self._finish(
            1006,
            f"the server rejected the WebSocket handshake with HTTP {status}",
            CloseInitiator.REMOTE,
            now,
        )

    def _fail_handshake(self, exc: wsproto.utilities.RemoteProtocolError, now: float) -> None:
        self._error = RemoteProtocolError(
            f"the server's WebSocket handshake response is invalid ({exc})."
        )
        self._finish(1006, str(self._error), CloseInitiator.PROTOCOL_ERROR, now)
        raise self._error


class ServerConnection(WireConnection):
    """The server side of one WebSocket, driving a :class:`MillisServer`.

    Every WebSocket upgrade request is accepted (no subprotocol, any path, as Millis does).
    """

    def __init__(
        self,
        server: MillisServer | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        server = server if server is not None else MillisServer()
        super().__init__(server, ConnectionType.SERVER, max_message_bytes)
        self.server = server
        #: The request path of the accepted handshake.
        self.path: str | None = None
        self._handshake_bytes: bytearray | None = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview | None, now: float) -> None:
        """Feed bytes read from the transport; ``None`` (or ``b""``) means EOF."""
        if self._handshake_bytes is not None and data:
            # wsproto's server drops bytes pipelined after the upgrade request (it does not
            # hand h11's trailing data to the new connection), so keep the request's bytes
            # and re-feed what follows its blank line once we have accepted.
            self._handshake_bytes += data
            if len(self._handshake_bytes) > MAX_HANDSHAKE_BYTES:
                self._handshake_bytes = None  # h11 rejects oversized requests itself
        super().receive_data(data, now)

    def _on_handshake(self, event: WsEvent, now: float) -> None:
        if isinstance(event, Request):
            self.path = event.target
            self._out.append(self._ws.send(AcceptConnection()))
            self._events.append(Connected())
            head = self._handshake_bytes or b""
            self._handshake_bytes = None
            end = head.find(b"\r\n\r\n")
            if end >= 0 and len(head) > end + 4:
                self._ws.receive_data(bytes(head[end + 4 :]))

    def _fail_handshake(self, exc: wsproto.utilities.RemoteProtocolError, now: float) -> None:
        hint = exc.event_hint
        if isinstance(hint, RejectConnection):
            # If the HTTP side is already beyond answering, there is nothing to send.
            with contextlib.suppress(wsproto.utilities.LocalProtocolError):
                self._out.append(self._ws.send(hint))
        self._error = RemoteProtocolError(f"invalid WebSocket handshake from the client ({exc}).")
        self._finish(1002, str(self._error), CloseInitiator.PROTOCOL_ERROR, now)
        raise self._error
