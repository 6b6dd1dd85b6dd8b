"""The local agent served from asyncio's protocol callbacks: what ``millis-proto serve`` runs.

Theory of operation
-------------------
:func:`transports.server.serve` gives every connection a handler task, an event queue and
a send lock, so that any handler can be a plain ``async for`` loop. The built-in agent
needs none of them: :class:`~millis_proto.agent.AgentSession` is a pure object, driven by
the connection's events and by its own timer. So :func:`serve_agent` runs each connection
as one :class:`asyncio.Protocol` doing, in its callbacks, the loop the agent documents:

* ``data_received`` feeds the core's :class:`~millis_proto.ServerConnection`, hands its
  events to the agent, and writes what both queued in one write;
* one timer handle per connection, at the earliest of the core's and the agent's
  deadlines, runs ``handle_timer`` and ``on_tick`` the same way. It is moved only when the
  deadline comes earlier; a timer that fires early just looks again;
* after the core's ``ConnectionClosed`` what is left (the reply to a close) is written and
  the transport closed, bounded by ``disconnect_timeout``.

No task, queue or lock per session: a frame costs the core, the agent and one system call
each way. Serving many sessions, this is where a process's CPU goes (``bench/load_scale.py``).

Limits are :func:`~transports.server.serve`'s: the handshake and ``initiate`` timeouts are
the core's timers (TLS, when used, is bounded by ``handshake_timeout`` as well); beyond
``max_sessions`` a connection is answered HTTP 503 before the upgrade, and beyond twice
that it is closed unread. A client that stops reading is dropped (1006) once the
transport has refused more bytes for ``write_timeout`` seconds, or holds more than
:data:`MAX_WRITE_BUFFER` bytes for it. An error of the agent is logged and its session
closed with 1011; the server goes on. Cancelling :func:`serve_agent` closes every
session with 1001 and waits for them, bounded by ``disconnect_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Callable

from millis_proto import Connected, Event, RemoteProtocolError, ServerConfig, ServerConnection
from millis_proto.agent import AgentSession, AgentSetup
from millis_proto.config import DEFAULT_DISCONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES

from ._client import DEFAULT_WRITE_TIMEOUT
from ._queue import check_count
from ._read_buffer import shared_read_view
from ._session import check_timeout
from .faults import check_drop
from .server import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_INITIATE_TIMEOUT,
    DEFAULT_MAX_SESSIONS,
    FULL_BODY,
    ServerAddress,
)

__all__ = ["MAX_WRITE_BUFFER", "AgentEventHook", "serve_agent"]

_log = logging.getLogger(__name__)

#: Bytes a client may leave unread in our write buffer before it is dropped.
MAX_WRITE_BUFFER = 4 * 1024 * 1024

#: Told of every event of every session: its connection number (from 1), the agent
#: session (``agent.agent.session_id`` is the id the client was given) and the event.
AgentEventHook = Callable[[int, AgentSession, Event], None]


class _Server:
    """What the connections of one :func:`serve_agent` share."""

    def __init__(
        self,
        setup: AgentSetup,
        config: ServerConfig,
        *,
        max_sessions: int,
        write_timeout: float,
        on_event: AgentEventHook | None,
        drop: tuple[float, int] | None,
        on_drop: Callable[[int], None] | None,
    ) -> None:
        self.setup = setup
        self.config = config
        self.max_sessions = max_sessions
        self.write_timeout = write_timeout
        self.on_event = on_event
        self.drop = drop
        self.on_drop = on_drop
        self.live: set[_AgentProtocol] = set()
        self.refusing = 0
        self.accepted = 0  # connections numbered so far
        self.opened = 0  # sessions past the handshake (--drop-sessions counts these)
        self.all_gone: asyncio.Future[None] | None = None

    def gone(self, protocol: _AgentProtocol) -> None:
        self.live.discard(protocol)
        if protocol.refused:
            self.refusing -= 1
        if not self.live and self.all_gone is not None and not self.all_gone.done():
            self.all_gone.set_result(None)


class _AgentProtocol(asyncio.BufferedProtocol):
    """One connection: the core's server connection and the agent answering on it.

    Reads go into the thread's shared buffer (:mod:`transports._read_buffer`): the core
    copies what it keeps before ``buffer_updated`` returns.
    """

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._conn = ServerConnection(server.config, now=self._loop.time())
        self._agent = AgentSession(server.setup, server=self._conn)
        self._number = 0
        self._open = False  # the handshake completed (the agent's session began)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._paused_since: float | None = None
        self._finished = False
        self._view = shared_read_view()
        self.refused = False

    # --- asyncio's callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        sessions = len(server.live) - server.refusing
        server.live.add(self)
        if sessions >= server.max_sessions:
            if server.refusing >= server.max_sessions:  # a flood: do not even read it
                self.refused = True
                server.refusing += 1
                transport.abort()
                return
            self.refused = True
            server.refusing += 1
            self._conn.reject(503, FULL_BODY)
        else:
            server.accepted += 1
            self._number = server.accepted
        self._arm()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # An invalid handshake: the core queued a 400 response and closed; written below.
        with contextlib.suppress(RemoteProtocolError):
            self._conn.receive_data(self._view[:nbytes], self._loop.time())
        self._run()

    def eof_received(self) -> bool:
        self._conn.receive_data(None, self._loop.time())
        self._run()
        return True  # we close the transport ourselves once the core is done

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn.closed is None:
            why = f"connection lost: {exc}" if exc is not None else "connection lost"
            self._conn.abort(why, self._loop.time())
            self._run()
        self._finish()
        self._server.gone(self)

    def pause_writing(self) -> None:
        self._paused_since = self._loop.time()
        self._arm()

    def resume_writing(self) -> None:
        self._paused_since = None

    # --- the loop --------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake (the server is shutting down)."""
        if self._conn.closed is None:
            self._conn.close(code, reason, now=self._loop.time())
            self._run()

    def _run(self) -> None:
        """After any call into the core: events to the agent, bytes out, timer re-armed."""
        conn = self._conn
        now = self._loop.time()
        while events := conn.events():
            for event in events:
                self._feed(event, now)
        transport = self._transport
        if transport is None:
            return
        data = conn.data_to_send()
        if data and not transport.is_closing():
            transport.write(data)
            if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self._drop_reader(f"over {MAX_WRITE_BUFFER} bytes were left unread")
                return
        if conn.closed is not None:
            self._finish()
        else:
            self._arm()

    def _feed(self, event: Event, now: float) -> None:
        server = self._server
        if isinstance(event, Connected) and not self.refused:
            self._open = True
            server.opened += 1
            drop = server.drop
            if drop is not None and (not drop[1] or server.opened <= drop[1]):
                self._loop.call_later(drop[0], self._drop)
        if not self._open:
            return  # a refused or failed handshake: no session for the agent
        try:
            self._agent.feed(event, now)
            if server.on_event is not None:
                server.on_event(self._number, self._agent, event)
        except Exception:
            _log.exception("the local agent failed; closing the connection with 1011")
            if self._conn.closed is None:
                self._conn.close(1011, "internal server error", now=now)

    def _arm(self) -> None:
        deadline = self._deadline()
        timer = self._timer
        if timer is not None:
            if deadline >= self._timer_at:
                return  # it fires first and looks again
            timer.cancel()
        if deadline == math.inf:
            self._timer, self._timer_at = None, math.inf
            return
        self._timer = self._loop.call_at(deadline, self._fire)
        self._timer_at = deadline

    def _deadline(self) -> float:
        at = math.inf
        for deadline in (self._conn.get_timer(), self._agent.get_timer()):
            if deadline is not None and deadline < at:
                at = deadline
        if self._paused_since is not None:
            at = min(at, self._paused_since + self._server.write_timeout)
        return at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._finished:
            return
        now = self._loop.time()
        paused = self._paused_since
        if paused is not None and now - paused >= self._server.write_timeout:
            self._drop_reader(f"no write made progress for {self._server.write_timeout:g} s")
            return
        self._conn.handle_timer(now)
        if self._open and self._conn.closed is None:
            try:
                self._agent.on_tick(now)
            except Exception:
                _log.exception("the local agent failed; closing the connection with 1011")
                self._conn.close(1011, "internal server error", now=now)
        self._run()

    def _drop_reader(self, why: str) -> None:
        self._conn.abort(f"connection lost: the client stopped reading ({why})", self._loop.time())
        self._run()
        if self._transport is not None:
            self._transport.abort()

    def _drop(self) -> None:
        """``--drop-after``: drop the TCP connection without a close frame."""
        if self._conn.closed is not None or self._transport is None:
            return
        if self._server.on_drop is not None:
            self._server.on_drop(self._number)
        self._conn.abort("fault injection: the connection was dropped", self._loop.time())
        self._run()
        self._transport.abort()

    def _finish(self) -> None:
        """The core is closed: flush and close the transport (bounded), stop the timer."""
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()  # after the buffered bytes (the close reply) are written
            self._loop.call_later(self._server.config.disconnect_timeout, transport.abort)


async def serve_agent(
    setup: AgentSetup | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    initiate_timeout: float = DEFAULT_INITIATE_TIMEOUT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    on_event: AgentEventHook | None = None,
    drop_after: float | None = None,
    drop_sessions: int = 1,
    on_drop: Callable[[int], None] | None = None,
    started: Callable[[ServerAddress], None] | None = None,
) -> None:
    """Serve the local agent on ``host:port`` until cancelled (``port=0``: any free port).

    The same limits and defaults as :func:`transports.server.serve` (see the module
    docstring), for the built-in agent only: one ``setup`` for the whole server (it holds
    the session store for continuations). ``on_event`` sees every event of every session;
    ``drop_after`` (seconds) drops the TCP connection of the first ``drop_sessions``
    sessions (``0``: every one) that long after their handshake, telling ``on_drop``
    (fault injection, as :func:`transports.faults.drop_after`). ``started`` receives the
    :class:`~transports.server.ServerAddress` once clients can connect. Raises
    ``OSError`` if the address cannot be bound, :class:`~millis_proto.ConfigError` for a
    bad limit.
    """
    check_timeout(handshake_timeout, "handshake_timeout")
    check_timeout(initiate_timeout, "initiate_timeout")
    check_timeout(disconnect_timeout, "disconnect_timeout")
    check_timeout(write_timeout, "write_timeout")
    check_count(max_sessions, "max_sessions")
    if drop_after is not None:
        check_drop(drop_after, drop_sessions)
    config = ServerConfig(
        handshake_timeout=handshake_timeout,
        initiate_timeout=initiate_timeout,
        disconnect_timeout=disconnect_timeout,
        max_message_bytes=max_message_bytes,
    )
    server = _Server(
        setup if setup is not None else AgentSetup(),
        config,
        max_sessions=max_sessions,
        write_timeout=write_timeout,
        on_event=on_event,
        drop=None if drop_after is None else (drop_after, drop_sessions),
        on_drop=on_drop,
    )
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: _AgentProtocol(server),
        host,
        port,
        ssl=ssl_context,
        ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
    )
    try:
        bound = listener.sockets[0].getsockname()[1]
        if started is not None:
            started(ServerAddress(host=host, port=bound, secure=ssl_context is not None))
        await loop.create_future()  # until cancelled
    finally:
        listener.close()
        server.all_gone = loop.create_future()
        for protocol in list(server.live):
            protocol.close(1001, "the server is shutting down")
        if server.live:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(server.all_gone), disconnect_timeout)
