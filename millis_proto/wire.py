"""The wire level: the one object per role that a transport drives, bytes in and bytes out.

Theory of operation
-------------------
:class:`ClientConnection` and :class:`ServerConnection` each own a ``wsproto.WSConnection``
and, privately, a message machine (:class:`~millis_proto.client.MessageClient` /
:class:`~millis_proto.server.MessageServer`). The owner drives exactly this one object, the
h11/aioquic way:

* feed received bytes to :meth:`~WireConnection.receive_data` (``None`` or ``b""`` = EOF);
* write what :meth:`~WireConnection.data_to_send` returns (everything pending, one write);
* read :meth:`~WireConnection.events` — the machine's events interleaved, in order, with the
  connection's own (:class:`Connected`, :class:`ConnectionRejected`, :class:`ConnectionClosed`);
* sleep until :meth:`~WireConnection.get_timer` and then call
  :meth:`~WireConnection.handle_timer` — the deadlines live here, not in the adapter.

There is no second door to the message machine's events: it is private, so nothing can
take events from it behind this object's back.

The connection state is wsproto's. This layer adds what wsproto leaves to its caller:

* reassembly of fragmented messages, bounded by ``max_message_bytes`` (text counted in
  characters); a larger message fails the connection with 1009;
* automatic pong replies to WebSocket pings — only while open, never after our own close
  (trio-websocket #184);
* the close handshake both ways, and a malformed frame (wsproto reports it as a close with
  1002/1007) fails the connection: our close frame is queued and the connection is closed;
* exactly one :class:`ConnectionClosed` event, with the code, reason and initiator, and its
  classification (``normal`` / ``error()``). After it, flush ``data_to_send()`` once more and
  close the transport; later input is ignored;
* timers: the close-reply deadline (``disconnect_timeout`` after our close frame; when it
  passes the connection is closed by us without the reply), and per role the client's
  liveness check and the server's handshake and initiate deadlines (see each class).

A broken opening handshake raises :class:`RemoteProtocolError` (sticky), whatever wsproto or
h11 raised under it (a non-ASCII byte in a header raises ``UnicodeDecodeError`` there); no
other exception leaves :meth:`~WireConnection.receive_data`. On the server side the 400
response is queued first, so flush before closing (as h2 does).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

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

from .agent_state import AgentState
from .client import MessageClient, SessionPhase
from .config import ClientConfig, ServerConfig, StartRequest
from .endpoint import Endpoint, parse_endpoint
from .envelope import ABSENT
from .errors import ConfigError, LocalProtocolError, RemoteProtocolError, redact
from .events import (
    CloseInitiator,
    Connected,
    ConnectionClosed,
    ConnectionRejected,
    Event,
)
from .frames import BINARY, TEXT, ForWsproto, FrameSplitter, encode_frame
from .machine import CloseRequest, OutgoingMessage
from .pcm import Buffer
from .playback import PlaybackBuffer, PlaybackChunk
from .server import MessageServer, ServerPhase

__all__ = ["ClientConnection", "ServerConnection", "WireConnection"]

#: How much of a handshake rejection body is kept for the error message.
MAX_REJECT_BODY = 4096
#: Entropy asked for at once for masking keys (128 frames' worth: one system call every
#: 2.5 s of 20 ms audio, and little memory held per session).
_MASK_POOL_BYTES = 512
#: Most writes waiting in the wire's queue for audio to still skip the machine's.
_DIRECT_LIMIT = 64


class _Machine(Protocol):
    _events: deque[Event]  # read directly on the hot path: is anything pending?
    _out: deque[OutgoingMessage]

    @property
    def closing(self) -> bool: ...
    def events(self) -> list[Event]: ...
    def messages_to_send(self) -> list[OutgoingMessage]: ...
    def receive_message(self, message: str | bytes, now: float) -> None: ...
    def connection_closed(self, now: float) -> None: ...
    def close(self, code: int = 1000, reason: str = "", *, now: float | None = None) -> None: ...


class WireConnection:
    """Shared wire logic; use :class:`ClientConnection` or :class:`ServerConnection`."""

    __slots__ = (
        "_close_deadline",
        "_disconnect_timeout",
        "_error",
        "_events",
        "_fast_out",
        "_head_tail",
        "_last_rx",
        "_local_close",
        "_machine",
        "_mask_at",
        "_mask_entropy",
        "_masks",
        "_now",
        "_out",
        "_parts",
        "_parts_size",
        "_secret",
        "_splitter",
        "_ws",
        "closed",
        "max_message_bytes",
    )

    def __init__(
        self,
        machine: _Machine,
        role: ConnectionType,
        *,
        max_message_bytes: int,
        disconnect_timeout: float,
    ) -> None:
        self._machine = machine
        self._ws = wsproto.WSConnection(role)
        self.max_message_bytes = max_message_bytes
        self._disconnect_timeout = disconnect_timeout
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._parts: list[str | bytes] = []  # fragments of the message being reassembled
        self._parts_size = 0
        self._local_close: CloseRequest | None = None
        self._close_deadline: float | None = None
        self._error: RemoteProtocolError | None = None
        self._secret: str | None = None  # redacted from close reasons
        # The latest ``now`` the owner gave: the time of anything queued without one
        # (a close frame encoded from the machine's outbox in ``data_to_send``).
        self._now: float | None = None
        self._last_rx: float | None = None  # when bytes last arrived
        # The frame fast path (.frames): the splitter of received bytes, the
        # injected entropy for masking keys, and whether data frames skip wsproto's send.
        self._splitter: FrameSplitter | None = None
        self._head_tail = b""  # the last bytes of the handshake head seen so far
        self._mask_entropy: Callable[[int], bytes] | None = None
        self._masks = b""  # masking keys drawn ahead, used from _mask_at on
        self._mask_at = 0
        self._fast_out = role is ConnectionType.SERVER
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

    @property
    def closing(self) -> bool:
        """True once a close was requested (by either side) or the connection closed."""
        return self.closed is not None or self._machine.closing

    # --- output ------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """Pop the oldest pending event, or ``None``."""
        self._collect()
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Pop every pending event, oldest first."""
        # Called after every read and write; most of the time there is nothing.
        if not self._events and not self._machine._events:
            return []
        self._collect()
        out = list(self._events)
        self._events.clear()
        return out

    def data_to_send(self) -> bytes:
        """Everything waiting to be written to the transport, as one ``bytes``."""
        if self._machine._out:
            self._encode_machine_output()
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return data

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Close: queued messages go out, then our close frame; idempotent.

        :class:`ConnectionClosed` comes when the peer answers, at EOF, or at the
        ``disconnect_timeout`` deadline (``get_timer()``) if it never does; before the
        opening handshake completes it comes at once.
        """
        self._now = now
        if self.closed is not None:
            return
        self._machine.close(code, reason)
        state = self._ws.state
        if state is ConnectionState.OPEN:
            self._encode_machine_output()
        elif state is ConnectionState.CONNECTING:
            self._finish(
                code, reason or "closed before the handshake completed", CloseInitiator.LOCAL, now
            )

    def abort(self, reason: str, now: float) -> None:
        """The transport failed (a reset, a TLS error, a broken or cancelled write).

        Gives the :class:`ConnectionClosed` event: code 1006 with ``reason`` — or, when our
        close frame had already gone out, our own close, exactly as EOF does in
        :meth:`receive_data`. Nothing more can be sent, so pending output is dropped.
        Idempotent; ignored once closed.
        """
        self._now = now
        if self.closed is not None:
            return
        self._out.clear()
        self._end_without_reply(reason, now)

    # --- time --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (monotonic seconds) at which :meth:`handle_timer` is due.

        ``None`` when nothing is timed. Ask again after every call into this object: any
        of them may move it.
        """
        if self.closed is not None:
            return None
        if self._close_deadline is not None:
            return self._close_deadline  # only the peer's close reply is awaited now
        return self._role_timer()

    def handle_timer(self, now: float) -> None:
        """Fire every deadline that is due at ``now`` (it may queue bytes or give events)."""
        self._now = now
        if self.closed is not None:
            return
        if self._close_deadline is not None:
            if now >= self._close_deadline:
                # RFC 6455 §7.1.1 lets us close the TCP connection when the reply is late.
                self._out.clear()
                self._close_unanswered(now)
            return
        self._role_handle_timer(now)
        self._encode_if_closing()

    def _close_unanswered(self, now: float) -> None:
        """The peer let the close-reply deadline pass: end the connection without it."""
        self._end_without_reply("the peer did not answer the close in time", now)

    def _role_timer(self) -> float | None:
        return None

    def _role_handle_timer(self, now: float) -> None:
        """Role-specific timers (liveness, handshake, initiate)."""

    # --- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview | None, now: float) -> None:
        """Feed bytes read from the transport; ``None`` (or ``b""``) means EOF.

        Raises :class:`RemoteProtocolError` for an invalid opening handshake (sticky), and
        nothing else.
        """
        if (
            data
            and self.closed is None
            and self._splitter is not None
            and self._ws.connection is not None
        ):
            # The hot path: bytes after the opening handshake (wsproto has a connection
            # only once the handshake succeeded, and no error is possible after it).
            self._now = self._last_rx = now
            self._split(data, now)
            self._encode_if_closing()
            return
        if self._error is not None:
            raise self._error
        self._now = now
        if self.closed is not None:
            return  # RFC 6455 §7.1.1: after closing, remaining data is discarded
        eof = data is None or len(data) == 0
        ws = self._ws
        if eof and ws.state is ConnectionState.CONNECTING:
            self._finish(
                1006,
                "connection lost before the WebSocket handshake completed",
                CloseInitiator.LOST,
                now,
            )
            return
        if not eof:
            self._last_rx = now
        handshaking = ws.state is ConnectionState.CONNECTING
        try:
            if data is None or eof or self._splitter is None:
                self._to_wsproto(None if eof else data, now)
            elif not handshaking:
                self._split(data, now)
            else:
                rest = self._handshake_part(data, now)
                if rest and self.closed is None:
                    if ws.state is ConnectionState.CONNECTING:
                        self._to_wsproto(rest, now)  # a rejection's body
                    else:
                        self._split(rest, now)
        except wsproto.utilities.RemoteProtocolError as exc:
            hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else None
            self._fail_handshake(str(exc), hint, now)
        except ValueError as exc:  # UnicodeDecodeError and friends from header parsing
            if not handshaking:
                raise
            self._fail_handshake(f"{type(exc).__name__}: {exc}", None, now)
        if eof and self.closed is None:
            self._end_without_reply(
                "connection lost: the peer closed the connection without "
                "a WebSocket close handshake",
                now,
            )
        self._encode_if_closing()

    # --- internals ---------------------------------------------------------------------

    def _to_wsproto(self, data: bytes | bytearray | memoryview | None, now: float) -> None:
        self._ws.receive_data(data)  # type: ignore[arg-type]
        for event in self._ws.events():
            self._handle(event, now)
            if self.closed is not None:
                break

    def _split(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """The fast path (:mod:`.frames`): whole data frames skip wsproto, the rest does not."""
        assert self._splitter is not None
        for item in self._splitter.feed(data):
            if isinstance(item, ForWsproto):
                self._to_wsproto(item.data, now)
            elif self._parts:  # never: fragments send the splitter to passthrough for good
                self._on_data(item, True, now)
            else:
                # A whole message no larger than max_message_bytes (the splitter's bound):
                # straight to the machine, as _on_data would pass it.
                self._machine.receive_message(item, now)
            if self.closed is not None:
                return

    def _handshake_part(self, data: bytes | bytearray | memoryview, now: float) -> bytes:
        """Give wsproto the opening handshake's head and nothing after it; return the rest.

        So the frames that follow the head in the same read reach the splitter whole
        instead of being left half-parsed in wsproto's buffer.
        """
        buf = self._head_tail + bytes(data)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._head_tail = buf[-3:]
            self._to_wsproto(data, now)
            return b""
        cut = end + 4 - len(self._head_tail)
        self._head_tail = b""
        self._to_wsproto(data[:cut], now)
        return bytes(data[cut:])

    def _mask(self) -> bytes | None:
        """A fresh masking key for a client frame (``None`` on the server side)."""
        entropy = self._mask_entropy
        if entropy is None:
            return None
        at = self._mask_at
        if at + 4 > len(self._masks):
            self._masks = entropy(_MASK_POOL_BYTES)
            at = 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]

    def _collect(self) -> None:
        # Machine events first-in-first-out behind the connection events already queued.
        self._events.extend(self._machine.events())

    def _encode_if_closing(self) -> None:
        # A close the machine queued itself (after onsessionended, an invalid initiate)
        # goes out now, so its reply deadline starts now rather than at the next write.
        if self._local_close is None and self._machine.closing:
            self._encode_machine_output()

    def _encode_machine_output(self) -> None:
        ws = self._ws
        connection = ws.connection  # None until the handshake succeeded
        if connection is None or connection.state is not ConnectionState.OPEN:
            return
        if self.closed is not None:
            return
        out = self._out
        fast = self._fast_out
        for item in self._machine.messages_to_send():
            if isinstance(item, bytes):
                if fast:  # byte for byte what wsproto would send (tests/core/test_frames.py)
                    at = self._mask_at
                    if at + 4 <= len(self._masks):  # _mask(), inlined for audio frames
                        self._mask_at = at + 4
                        out.append(encode_frame(BINARY, item, self._masks[at : at + 4]))
                    else:
                        out.append(encode_frame(BINARY, item, self._mask()))
                else:
                    out.append(ws.send(BytesMessage(data=item)))
            elif isinstance(item, str):
                if fast:
                    out.append(encode_frame(TEXT, item.encode(), self._mask()))
                else:
                    out.append(ws.send(TextMessage(data=item)))
            else:
                self._send_close(item)
                return

    def _fail_handshake(self, why: str, hint: RejectConnection | None, now: float) -> None:
        raise NotImplementedError

    def _send_close(self, request: CloseRequest) -> None:
        self._local_close = request
        if self._now is not None:
            self._close_deadline = self._now + self._disconnect_timeout
        self._out.append(
            self._ws.send(CloseConnection(code=request.code, reason=request.reason or None))
        )

    def _end_without_reply(self, reason: str, now: float) -> None:
        """The transport ended (or we gave up on it): our own close if we sent one, else 1006."""
        if self._local_close is not None:
            self._finish(
                self._local_close.code, self._local_close.reason, CloseInitiator.LOCAL, now
            )
        else:
            self._finish(1006, reason, CloseInitiator.LOST, now)

    def _finish(self, code: int, reason: str, initiator: CloseInitiator, now: float) -> None:
        self._machine.connection_closed(now)
        self._collect()  # the machine's last events (state -> idle) come before the close
        reason = redact(reason, self._secret)  # a peer may echo the key, in any form
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

    def _release_handshake(self) -> None:
        """Once open, let go of the opening handshake's HTTP state.

        wsproto routes every later call to its ``Connection`` and never touches the
        handshake's h11 machine or the upgrade request again, but keeps both for the life
        of the connection: a dozen objects per session that the garbage collector walks in
        every full collection, which with hundreds of sessions in one process is a pause
        long enough to make paced audio late.
        """
        handshake = self._ws.handshake
        if self._ws.connection is not None and hasattr(handshake, "_h11_connection"):
            handshake._h11_connection = None  # type: ignore[assignment]
            handshake._initiating_request = None

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
    """A client session with a Millis endpoint: the one object a custom transport drives.

    Built from what the user has: the start request, the URL (or :class:`Endpoint`) and the
    options (:class:`ClientConfig`). The opening handshake request is queued on
    construction: write ``data_to_send()`` as soon as the transport is connected;
    ``initiate`` follows as soon as the server accepts.

    ``wall_clock_offset`` turns the monotonic ``now`` into the wall-clock epoch seconds that
    ``ping`` data carries (``now + wall_clock_offset``): pass
    ``time.time() - time.monotonic()`` (or the same for your event loop's clock). The core
    never reads a clock itself.

    Timers (``get_timer``/``handle_timer``, all from ``config``): the close-reply deadline
    (an unanswered close ends as ``ConnectionClosed(1006, "the server stopped answering
    ...")``, unless ``onsessionended`` had already ended the session); liveness — after
    ``liveness_timeout`` with no byte from the server a Millis ``ping`` is sent, and
    ``pong_timeout`` later with still nothing the connection ends with
    ``ConnectionClosed(1006, "the server stopped answering")``; and the optional
    ``keepalive_interval`` pings.

    Whole unfragmented data frames take a fast path (:mod:`millis_proto.frames`), byte for
    byte what wsproto would do; wsproto handles everything else. Received frames always do;
    sent ones when ``mask_entropy`` is given — a callable ``n -> n`` unpredictable bytes
    (``os.urandom``) for the masking keys, since the core reads no entropy itself.
    """

    __slots__ = (
        "_client",
        "_direct_audio",
        "_liveness_ping_at",
        "_liveness_timeout",
        "_next_keepalive",
        "_ping_every",
        "_pong_timeout",
        "_reject_body",
        "_reject_status",
        "config",
        "endpoint",
        "request",
    )

    def __init__(
        self,
        request: StartRequest,
        url: str | Endpoint,
        config: ClientConfig | None = None,
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        wall_clock_offset: float = 0.0,
        mask_entropy: Callable[[int], bytes] | None = None,
    ) -> None:
        endpoint = url if isinstance(url, Endpoint) else parse_endpoint(url)
        client = MessageClient(request, config, wall_clock_offset=wall_clock_offset)
        self.config: ClientConfig = client.config
        super().__init__(
            client,
            ConnectionType.CLIENT,
            max_message_bytes=self.config.max_message_bytes,
            disconnect_timeout=self.config.disconnect_timeout,
        )
        self._client = client
        self._secret = request.public_key
        self._splitter = FrameSplitter(client=True, max_frame_bytes=self.max_message_bytes)
        if mask_entropy is not None:
            if not callable(mask_entropy):
                raise ConfigError("mask_entropy must be a callable n -> n random bytes.")
            self._mask_entropy = mask_entropy
            self._fast_out = True
        # Audio may skip the machine's queue (send_audio) when its route there is plain: a
        # frame as given, no re-chunking.
        self._direct_audio = self._fast_out and client._rechunker is None
        self._ping_every = self.config.ping_every_packets
        #: The start request (its ``repr`` hides the public key).
        self.request = request
        #: Where this connection goes.
        self.endpoint = endpoint
        self._reject_status: int | None = None
        self._reject_body = b""
        self._liveness_ping_at: float | None = None  # when our last liveness ping went out
        self._liveness_timeout = self.config.liveness_timeout
        self._pong_timeout = self.config.pong_timeout
        self._next_keepalive: float | None = None
        self._out.append(
            self._ws.send(
                Request(
                    host=endpoint.host_header,
                    target=endpoint.target,
                    extra_headers=list(extra_headers or []),
                )
            )
        )

    # --- read-only state ---------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The server's session id from ``onready`` (keep it for continuation)."""
        return self._client.session_id

    @property
    def agent_state(self) -> AgentState:
        """The agent state (docs/protocol.md §5)."""
        return self._client.agent_state

    @property
    def phase(self) -> SessionPhase:
        """The session phase (see :data:`~millis_proto.client.SESSION_TRANSITIONS`)."""
        return self._client.phase

    @property
    def muted(self) -> bool:
        """True while outgoing audio is replaced by zeros."""
        return self._client.muted

    @property
    def playback(self) -> PlaybackBuffer:
        """The agent audio waiting to be played (pull it with :meth:`pull_playback`)."""
        return self._client.playback

    @property
    def audio_packets_sent(self) -> int:
        """Audio packets sent so far."""
        return self._client.audio_packets_sent

    @property
    def pre_ready_dropped_samples(self) -> int:
        """Samples discarded by the pre-ready policy (``DROP``, or ``BUFFER`` overflow)."""
        return self._client.pre_ready_dropped_samples

    # --- application calls -------------------------------------------------------------

    def send_audio(self, pcm: Buffer, now: float) -> None:
        """Send user audio (s16le, 16 kHz, mono, any length); see ``MessageClient``."""
        self._now = now
        client = self._client
        if (
            client._phase is SessionPhase.LIVE  # implies the WebSocket is open, no close begun
            and self._direct_audio
            and type(pcm) is bytes
            and not len(pcm) & 1
            and not client._muted
            and not client._aligner._odd
            and not client._out  # nothing of the machine's is waiting to go first
            and len(self._out) < _DIRECT_LIMIT
        ):
            # The hot path, 50 times a second: the frame goes straight to the wire, as the
            # machine's own route (MessageClient.send_audio, then _encode_machine_output)
            # would put it there. Anything unusual takes that route (tests/core/test_wire_fast).
            if pcm:
                at = self._mask_at
                if at + 4 <= len(self._masks):
                    self._mask_at = at + 4
                    self._out.append(encode_frame(BINARY, pcm, self._masks[at : at + 4]))
                else:
                    self._out.append(encode_frame(BINARY, pcm, self._mask()))
                sent = client.audio_packets_sent = client.audio_packets_sent + 1
                every = self._ping_every
                if every and sent % every == 0:
                    client.send_ping(now)  # queued behind the frame, as the machine does it
            return
        client.send_audio(pcm, now)

    def _audio_frame(self, pcm: Buffer, now: float) -> bytes | None:
        """For a native transport's hot path: ``send_audio`` of a non-empty frame when its
        bytes are all there is to write, returned instead of queued (write them at once).

        ``None``, with nothing done, when anything else is or would be queued — something
        of the wire's or the machine's, a ping due behind this frame — or the frame takes
        the machine's route: then call :meth:`send_audio` (and ``data_to_send``).
        """
        client = self._client
        every = self._ping_every
        if (
            client._phase is SessionPhase.LIVE
            and self._direct_audio
            and not self._out
            and not client._out
            and type(pcm) is bytes
            and pcm
            and not len(pcm) & 1
            and not client._muted
            and not client._aligner._odd
            and not (every and (client.audio_packets_sent + 1) % every == 0)
        ):
            self._now = now
            client.audio_packets_sent += 1
            at = self._mask_at
            if at + 4 <= len(self._masks):
                self._mask_at = at + 4
                return encode_frame(BINARY, pcm, self._masks[at : at + 4])
            return encode_frame(BINARY, pcm, self._mask())
        return None

    def flush_audio(self, now: float) -> None:
        """Send the short last frame the re-chunker holds (``ClientConfig.chunk_ms``)."""
        self._now = now
        self._client.flush_audio(now)

    def mute(self) -> None:
        """Replace outgoing audio with zeros of the same length until :meth:`unmute`."""
        self._client.mute()

    def unmute(self) -> None:
        """Send the application's audio again."""
        self._client.unmute()

    def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method": ..., "data": ...}`` message (``data`` optional).

        Raises :class:`ConfigError` naming the field for data JSON cannot carry (NaN and
        Infinity included).
        """
        self._client.send_message(method, data)

    def send_ping(self, now: float) -> None:
        """Send a Millis ``ping`` (data: wall-clock epoch ms); its ``Pong`` has ``rtt_ms``."""
        self._now = now
        self._client.send_ping(now)

    def pull_playback(self, n_samples: int, now: float) -> PlaybackChunk:
        """Take exactly ``n_samples`` samples for the speaker (zeros while paused or empty).

        Works after the close too, so a goodbye can still be played out.
        """
        return self._client.pull_playback(n_samples, now)

    # --- internals ---------------------------------------------------------------------

    def _close_unanswered(self, now: float) -> None:
        """Our close got no reply within ``disconnect_timeout``.

        After ``onsessionended`` nothing is lost: the session was over, so the end stays
        our own, normal close. Before it, a server that answers nothing — not even a close
        — has stopped answering, and a half-open connection must not pass for a normal
        end: ``ConnectionClosed(1006)``, as RFC 6455 §7.1.5 names a close without the
        peer's close frame.
        """
        if self._client.session_ended:
            super()._close_unanswered(now)
            return
        self._finish(
            1006,
            f"the server stopped answering (no reply to our close within "
            f"{self.config.disconnect_timeout:g} s)",
            CloseInitiator.LOST,
            now,
        )

    def get_timer(self) -> float | None:
        """As :meth:`WireConnection.get_timer`: when :meth:`handle_timer` is next due."""
        # Asked after every read and write: the base class's steps and the liveness and
        # keepalive deadlines, inlined — no property or method on the way.
        if self.closed is not None:
            return None
        if self._close_deadline is not None:
            return self._close_deadline  # only the peer's close reply is awaited now
        ws = self._ws
        connection = ws.connection
        if connection is None or connection.state is not ConnectionState.OPEN:
            return None
        phase = self._client._phase
        if phase is SessionPhase.CLOSING or phase is SessionPhase.CLOSED:
            return None
        last_rx = self._last_rx
        if last_rx is None:
            deadline = None
        else:
            ping_at = self._liveness_ping_at
            if ping_at is not None and last_rx < ping_at:
                deadline = ping_at + self._pong_timeout  # nothing since our ping
            elif self._liveness_timeout is None:
                deadline = None
            else:
                deadline = last_rx + self._liveness_timeout
        keepalive = self._next_keepalive
        if keepalive is not None and (deadline is None or keepalive < deadline):
            deadline = keepalive
        return deadline

    def _liveness_deadline(self) -> float | None:
        """When the liveness check next acts: pong overdue, or silence long enough to ping."""
        last_rx = self._last_rx
        if last_rx is None:
            return None
        ping_at = self._liveness_ping_at
        if ping_at is not None and last_rx < ping_at:
            return ping_at + self.config.pong_timeout  # nothing since our ping
        liveness = self.config.liveness_timeout
        return None if liveness is None else last_rx + liveness

    def _role_handle_timer(self, now: float) -> None:
        if not self.is_open or self._client.closing:
            return
        deadline = self._liveness_deadline()
        if deadline is not None and now >= deadline:
            if (
                self._liveness_ping_at is not None
                and self._last_rx is not None
                and (self._last_rx < self._liveness_ping_at)
            ):
                self._out.clear()
                self._finish(1006, "the server stopped answering", CloseInitiator.LOST, now)
                return
            self._client.send_ping(now)
            self._liveness_ping_at = now
        interval = self.config.keepalive_interval
        if (
            interval is not None
            and self._next_keepalive is not None
            and now >= self._next_keepalive
        ):
            self._client.send_ping(now)
            self._next_keepalive = now + interval

    def _on_handshake(self, event: WsEvent, now: float) -> None:
        if isinstance(event, AcceptConnection):
            self._release_handshake()
            self._events.append(Connected())
            if self.config.keepalive_interval is not None:
                self._next_keepalive = now + self.config.keepalive_interval
            self._client.start(now)
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

    def _fail_handshake(self, why: str, hint: RejectConnection | None, now: float) -> None:
        why = redact(why, self._secret)  # the response's headers may echo the key
        self._error = RemoteProtocolError(
            f"the server's WebSocket handshake response is invalid ({why})."
        )
        self._finish(1006, str(self._error), CloseInitiator.PROTOCOL_ERROR, now)
        raise self._error


class ServerConnection(WireConnection):
    """The server side of one WebSocket: the one object a serving transport drives.

    Every WebSocket upgrade request is accepted (no subprotocol, any path, as Millis does)
    unless :meth:`reject` was called first. Send server messages with the ``send_*``
    methods (the same as :class:`~millis_proto.server.MessageServer`'s), then write
    ``data_to_send()``.

    ``now`` starts the handshake timer; without it the timer starts at the first call that
    carries a ``now``. Timers (from ``config``): ``handshake_timeout`` — the opening
    handshake must complete in time, else ``ConnectionClosed(1008, ...)`` with nothing sent;
    ``initiate_timeout`` — once open, ``initiate`` must arrive in time, else we close with
    1008 and a reason; and the close-reply deadline.
    """

    __slots__ = (
        "_handshake_deadline",
        "_initiate_deadline",
        "_rejection",
        "_server",
        "config",
        "path",
    )

    def __init__(self, config: ServerConfig | None = None, *, now: float | None = None) -> None:
        config = config if config is not None else ServerConfig()
        if not isinstance(config, ServerConfig):
            raise ConfigError("config must be a ServerConfig.")
        server = MessageServer(config.max_pending_bytes)
        super().__init__(
            server,
            ConnectionType.SERVER,
            max_message_bytes=config.max_message_bytes,
            disconnect_timeout=config.disconnect_timeout,
        )
        self.config = config
        self._server = server
        #: The request path of the accepted handshake.
        self.path: str | None = None
        # Received frames take the fast path too (masked, as a client must send them).
        self._splitter = FrameSplitter(client=False, max_frame_bytes=self.max_message_bytes)
        self._rejection: tuple[int, bytes] | None = None
        self._handshake_deadline: float | None = None
        self._initiate_deadline: float | None = None
        if now is not None:
            self._start_clock(now)

    # --- read-only state ---------------------------------------------------------------

    @property
    def phase(self) -> ServerPhase:
        """The session phase (see :data:`~millis_proto.server.SERVER_TRANSITIONS`)."""
        return self._server.phase

    @property
    def request(self) -> StartRequest | None:
        """The validated start request, once ``initiate`` arrived."""
        return self._server.request

    # --- refusing ----------------------------------------------------------------------

    def reject(self, status_code: int = 503, body: bytes = b"") -> None:
        """Refuse the upgrade with an HTTP error (e.g. 503 when the server is full).

        Call before the request has been answered — right after construction; the response
        goes out as soon as the request has been read, and :class:`ConnectionClosed`
        (code 1006, initiator local) follows. Raises :class:`LocalProtocolError` once the
        upgrade was accepted and :class:`ConfigError` for a status that is not an error.
        """
        if isinstance(status_code, bool) or not isinstance(status_code, int):
            raise ConfigError("status_code must be an HTTP status number.")
        if not 400 <= status_code <= 599:
            raise ConfigError(f"status_code must be an HTTP error (400-599), not {status_code}.")
        if self.closed is not None or self.path is not None:
            raise LocalProtocolError("the WebSocket handshake was already answered.")
        self._rejection = (status_code, bytes(body))

    # --- server messages ----------------------------------------------------------------

    def send_message(self, method: str, data: Any = ABSENT, payload: Any = ABSENT) -> None:
        """Send any server message; ``data``/``payload`` are omitted when not given."""
        self._server.send_message(method, data, payload)

    def send_ready(self, session_id: str) -> None:
        """``onready`` with ``payload.session_id``."""
        self._server.send_ready(session_id)

    def send_transcript(self, text: str, *, is_final: bool | None) -> None:
        """``ontranscript`` (user text)."""
        self._server.send_transcript(text, is_final=is_final)

    def send_response_text(self, text: str, *, is_final: bool | None) -> None:
        """``onresponsetext`` (agent text)."""
        self._server.send_response_text(text, is_final=is_final)

    def send_function_call(self, name: str, params: dict[str, Any]) -> None:
        """``onfunction`` with ``payload {name, params}``."""
        self._server.send_function_call(name, params)

    def send_start_answering(self) -> None:
        """``start_answering``."""
        self._server.send_start_answering()

    def send_pause(self) -> None:
        """``pause``."""
        self._server.send_pause()

    def send_unpause(self) -> None:
        """``unpause``."""
        self._server.send_unpause()

    def send_clear(self) -> None:
        """``clear``."""
        self._server.send_clear()

    def send_ai_action(self, data: Any) -> None:
        """``ai_action`` with arbitrary data."""
        self._server.send_ai_action(data)

    def send_session_ended(self, data: Any = ABSENT) -> None:
        """``onsessionended``; follow it with :meth:`close`."""
        self._server.send_session_ended(data)

    def send_audio(self, pcm: Buffer) -> None:
        """One binary frame of agent audio (any size)."""
        self._server.send_audio(pcm)

    # --- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview | None, now: float) -> None:
        """Feed bytes read from the transport; ``None`` (or ``b""``) means EOF.

        Raises :class:`RemoteProtocolError` for an invalid opening handshake, after queueing
        a 400 response (flush it), and nothing else.
        """
        if self._handshake_deadline is None and self.path is None:
            self._start_clock(now)
        super().receive_data(data, now)

    # --- internals ---------------------------------------------------------------------

    def _start_clock(self, now: float) -> None:
        self._now = now
        self._handshake_deadline = now + self.config.handshake_timeout

    def _role_timer(self) -> float | None:
        if self._ws.state is ConnectionState.CONNECTING:
            return self._handshake_deadline
        if self.is_open and self._server.phase is ServerPhase.AWAITING_INITIATE:
            return self._initiate_deadline
        return None

    def _role_handle_timer(self, now: float) -> None:
        if self._handshake_deadline is None and self.path is None:
            self._start_clock(now)
        if self._ws.state is ConnectionState.CONNECTING:
            if self._handshake_deadline is not None and now >= self._handshake_deadline:
                self._out.clear()
                limit = self.config.handshake_timeout
                self._finish(
                    1008,
                    f"the WebSocket handshake did not complete within {limit:g} s",
                    CloseInitiator.LOCAL,
                    now,
                )
        elif (
            self.is_open
            and self._server.phase is ServerPhase.AWAITING_INITIATE
            and self._initiate_deadline is not None
            and now >= self._initiate_deadline
        ):
            limit = self.config.initiate_timeout
            self._server.close(1008, f"no initiate within {limit:g} s")

    def _on_handshake(self, event: WsEvent, now: float) -> None:
        if not isinstance(event, Request):
            return
        self.path = event.target
        if self._rejection is not None:
            self._send_rejection(now)
            return
        self._out.append(self._ws.send(AcceptConnection()))
        self._release_handshake()
        self._events.append(Connected())
        # What followed the request head in the same read was kept from wsproto (whose
        # server drops bytes pipelined after the upgrade request); receive_data hands it
        # to the splitter next.
        self._initiate_deadline = now + self.config.initiate_timeout

    def _send_rejection(self, now: float) -> None:
        assert self._rejection is not None
        status, body = self._rejection
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        self._out.append(
            self._ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        )
        self._out.append(self._ws.send(RejectData(data=body, body_finished=True)))
        self._finish(
            1006,
            f"we refused the WebSocket handshake with HTTP {status}",
            CloseInitiator.LOCAL,
            now,
        )

    def _fail_handshake(self, why: str, hint: RejectConnection | None, now: float) -> None:
        response = hint if hint is not None else RejectConnection(status_code=400)
        # If the HTTP side is already beyond answering, there is nothing to send.
        with contextlib.suppress(wsproto.utilities.LocalProtocolError):
            self._out.append(self._ws.send(response))
        self._error = RemoteProtocolError(f"invalid WebSocket handshake from the client ({why}).")
        self._finish(1002, str(self._error), CloseInitiator.PROTOCOL_ERROR, now)
        raise self._error
