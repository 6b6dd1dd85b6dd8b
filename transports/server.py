"""The serving side: accept WebSocket connections and run a server-role session on each.

:func:`serve` listens on ``host:port`` and, for every connection, runs the WebSocket
handshake (bounded by ``handshake_timeout``) and then ``await handler(session)`` with a
:class:`ServerSession`. The built-in local agent is one such handler; tests write others::

    async def handler(session: ServerSession) -> None:
        async for event in session:
            if isinstance(event, InitiateReceived):
                session.connection.send_ready("session-1")
                await session.flush()

    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, handler, "127.0.0.1", 0)
        ...  # clients connect to address.url

When the handler returns, the session is closed with 1000. A handler that raises is
logged (logger ``transports.server``) and its connection closed with 1011; the server
goes on. Cancelling :func:`serve` closes every open session with 1001. Connections that
fail the handshake are closed without calling the handler.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from millis_proto import MillisError, RemoteProtocolError, ServerConfig, ServerConnection
from millis_proto.config import DEFAULT_DISCONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES

from ._errors import STREAM_ERRORS
from ._queue import DEFAULT_MAX_QUEUED_EVENTS, check_count
from ._session import WireSession, check_timeout, close_forcefully, running

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INITIATE_TIMEOUT",
    "DEFAULT_MAX_QUEUED_AUDIO_BYTES",
    "DEFAULT_MAX_SESSIONS",
    "Handler",
    "ServerAddress",
    "ServerSession",
    "serve",
    "serve_stream",
]

_log = logging.getLogger(__name__)

#: Default bound of the TLS + WebSocket opening handshake of an accepted connection.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Default bound of the wait for ``initiate`` once the WebSocket is open (then 1008).
DEFAULT_INITIATE_TIMEOUT = 10.0
#: Default bound of concurrent sessions :func:`serve` holds; beyond it, HTTP 503.
DEFAULT_MAX_SESSIONS = 1000
#: Default bound of the client audio a session holds for its handler (30 s of audio).
DEFAULT_MAX_QUEUED_AUDIO_BYTES = 30 * 16000 * 2
#: What a client that comes when the server is full reads.
FULL_BODY = b"the server is at its session limit (--max-sessions); try again later\n"


class ServerSession(WireSession):
    """One client connection, server role; what a :data:`Handler` is given.

    Queue messages with the core connection's ``send_*`` methods (:attr:`connection`, also
    :attr:`server`), then ``await flush()`` to write them. Read the client's events
    (``InitiateReceived``, ``ClientAudio``, ``ClientPing`` — already answered with a
    ``pong`` —, ``ClientMessage``, ``BadMessage``, …) with ``async for event in session``;
    the last one is ``ConnectionClosed`` and iteration then stops, whatever the close code.
    """

    def __init__(
        self,
        conn: ServerConnection,
        stream: anyio.abc.ByteStream,
        *,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        max_queued_audio_bytes: int | None = DEFAULT_MAX_QUEUED_AUDIO_BYTES,
    ) -> None:
        super().__init__(
            conn,
            stream,
            disconnect_timeout=conn.config.disconnect_timeout,
            max_queued_events=max_queued_events,
            max_queued_bytes=max_queued_audio_bytes,
        )
        #: The core's connection: call its ``send_*`` methods, then :meth:`flush`.
        self.connection = conn
        #: The same object as :attr:`connection` (the name older code used).
        self.server = conn

    @property
    def path(self) -> str | None:
        """The request path of the WebSocket handshake."""
        return self.connection.path

    async def flush(self) -> None:
        """Write everything the server machine has queued, in order.

        A failing write ends the session (``ConnectionClosed`` with 1006) instead of
        raising; sending after the end raises the core's ``LocalProtocolError``.
        """
        await self._push()

    async def abort(self, reason: str = "the server dropped the connection") -> None:
        """Drop the connection at once, without a close frame (fault injection).

        The client sees a lost connection (1006), as after a network failure.
        """
        await self._break(reason)


#: A session handler: called once per connection, after the WebSocket handshake.
Handler = Callable[[ServerSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where :func:`serve` listens; given to ``task_status.started``."""

    host: str
    port: int
    secure: bool

    @property
    def url(self) -> str:
        """The ``ws://`` / ``wss://`` URL of the listener (path ``/millis``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}/millis"


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    initiate_timeout: float = DEFAULT_INITIATE_TIMEOUT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    max_queued_audio_bytes: int = DEFAULT_MAX_QUEUED_AUDIO_BYTES,
    task_status: anyio.abc.TaskStatus[ServerAddress] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve Millis sessions on ``host:port`` until cancelled (``port=0``: any free port).

    With ``ssl_context`` (a server-side context holding the certificate) connections are
    TLS. ``task_status.started`` receives the :class:`ServerAddress`, so
    ``await task_group.start(serve, handler)`` returns once clients can connect.
    Raises ``OSError`` if the address cannot be bound.

    Limits: the opening handshake must complete within ``handshake_timeout`` (else the
    connection is dropped) and ``initiate`` must follow within ``initiate_timeout`` (else
    close 1008 with a reason); at most ``max_sessions`` connections are served at once —
    one more is answered ``HTTP 503`` before the upgrade, and beyond twice as many the
    listener closes new connections at once (no request is read); a session's handler is
    held at most ``max_queued_audio_bytes`` of unread client audio (the oldest is dropped,
    counted in an ``EventsDropped``).
    """
    check_timeout(handshake_timeout, "handshake_timeout")
    check_timeout(initiate_timeout, "initiate_timeout")
    check_timeout(disconnect_timeout, "disconnect_timeout")
    check_count(max_sessions, "max_sessions")
    active = 0  # connections being served (sessions and their handshakes)
    refusing = 0  # connections being answered 503

    async def one(stream: anyio.abc.ByteStream) -> None:
        nonlocal active, refusing
        if active >= max_sessions:
            if refusing >= max_sessions:  # a flood: do not even read the request
                await close_forcefully(stream)
                return
            refusing += 1
            try:
                await serve_stream(
                    stream, handler, handshake_timeout=handshake_timeout, reject=(503, FULL_BODY)
                )
            finally:
                refusing -= 1
            return
        active += 1
        try:
            await serve_stream(
                stream,
                handler,
                ssl_context=ssl_context,
                handshake_timeout=handshake_timeout,
                initiate_timeout=initiate_timeout,
                disconnect_timeout=disconnect_timeout,
                max_message_bytes=max_message_bytes,
                max_queued_events=max_queued_events,
                max_queued_audio_bytes=max_queued_audio_bytes,
            )
        finally:
            active -= 1

    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(SocketAttribute.local_port)
        task_status.started(ServerAddress(host=host, port=bound, secure=ssl_context is not None))
        await listener.serve(one)


async def serve_stream(
    stream: anyio.abc.ByteStream,
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    initiate_timeout: float = DEFAULT_INITIATE_TIMEOUT,
    max_queued_audio_bytes: int | None = DEFAULT_MAX_QUEUED_AUDIO_BYTES,
    reject: tuple[int, bytes] | None = None,
) -> None:
    """Run one server session over an accepted stream: handshake, handler, close.

    Used by :func:`serve` for each connection and by the in-memory transport. Connection
    problems never raise; the stream is always closed on return. ``reject`` (an HTTP
    status and body) refuses the upgrade instead; the handler is not called.
    """
    session: ServerSession | None = None
    config = ServerConfig(
        handshake_timeout=handshake_timeout,
        initiate_timeout=initiate_timeout,
        disconnect_timeout=disconnect_timeout,
        max_message_bytes=max_message_bytes,
    )
    try:
        # The core times the WebSocket handshake; this bound covers TLS as well.
        with anyio.fail_after(handshake_timeout):
            if ssl_context is not None:
                stream = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=ssl_context, standard_compatible=True
                )
            conn = ServerConnection(config, now=anyio.current_time())
            if reject is not None:
                conn.reject(*reject)
            session = ServerSession(
                conn,
                stream,
                max_queued_events=max_queued_events,
                max_queued_audio_bytes=max_queued_audio_bytes,
            )
            await session._open()
    except RemoteProtocolError:
        pass  # the core queued a 400 response; the close below writes it
    except (TimeoutError, *STREAM_ERRORS):
        await close_forcefully(stream)
        return
    if session is None or not session._connected:
        if session is not None:
            await session._close_transport()
        else:
            await close_forcefully(stream)
        return
    async with running(session):
        await _run_handler(session, handler)


async def _run_handler(session: ServerSession, handler: Handler) -> None:
    code, reason = 1000, ""
    try:
        await handler(session)
    except anyio.get_cancelled_exc_class():
        code, reason = 1001, "the server is shutting down"
        raise
    except MillisError:
        if session.closed is None:
            _log.exception("Millis session handler failed; closing the connection with 1011")
            code, reason = 1011, "internal server error"
        # else: it sent after the client had gone — the normal end of a session
    except Exception:
        _log.exception("Millis session handler failed; closing the connection with 1011")
        code, reason = 1011, "internal server error"
    finally:
        await session.aclose(code, reason)
