"""Millis sessions on plain asyncio, built the way fast asyncio protocols are.

An :class:`asyncio.BufferedProtocol` whose ``buffer_updated`` feeds the core (reads land
in one reused buffer) and whose writes go straight to the transport, with the transport's
write-buffer backpressure (``pause_writing``/``resume_writing``); timers are
``loop.call_at`` handles. No task per session and no anyio: see :mod:`transports._native`
for the design::

    import asyncio
    from transports.asyncio import connect

    async def main():
        async with connect(US_WEST, request) as session:
            await session.send_audio(pcm)
            async for event in session:
                print(event)

    asyncio.run(main())

The same ``connect`` options, session API and errors as :func:`transports.trio.connect`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from millis_proto import (
    EU_WEST,
    US_WEST,
    ClientConnection,
    ConnectionFailed,
    Endpoint,
    FailureKind,
    RemoteProtocolError,
    StartRequest,
    parse_endpoint,
)

from ._client import (
    ClientSession,
    ConnectOptions,
    ConnectSettings,
    connect_settings,
    open_failure,
    timeout_failure,
)
from ._errors import connect_failure, describe, redacted, sentence
from ._native import NativeSession
from ._read_buffer import shared_read_view

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EU_WEST", "US_WEST", "AsyncioSession", "ClientSession", "ConnectOptions", "connect"]


def connect(
    url: str | Endpoint, request: StartRequest, **options: Unpack[ConnectOptions]
) -> AbstractAsyncContextManager[AsyncioSession]:
    """Open a Millis session over asyncio; see :func:`transports.trio.connect`.

    Same arguments, same session API, same errors.
    """
    return redacted(_connect(url, request, options), getattr(request, "public_key", None))


@asynccontextmanager
async def _connect(
    url: str | Endpoint, request: StartRequest, options: ConnectOptions
) -> AsyncIterator[AsyncioSession]:
    endpoint = url if isinstance(url, Endpoint) else parse_endpoint(url)
    settings = connect_settings(endpoint, options)
    loop = asyncio.get_running_loop()
    conn = ClientConnection(
        request,
        endpoint,
        settings.config,
        wall_clock_offset=(
            time.time() - loop.time()
            if settings.wall_clock_offset is None
            else settings.wall_clock_offset
        ),
        mask_entropy=os.urandom,
    )
    session = AsyncioSession(conn, loop, settings)
    try:
        await asyncio.wait_for(session._open(), settings.connect_timeout)
    except asyncio.TimeoutError:
        session._abort_transport()
        raise timeout_failure(
            endpoint, connected=session._transport is not None, timeout=settings.connect_timeout
        ) from None
    except BaseException:
        session._abort_transport()
        raise
    try:
        yield session
    finally:
        await session.aclose()
        session._stop()


class _Protocol(asyncio.BufferedProtocol):
    """The transport's callbacks, handed to the session (kept off its public surface)."""

    def __init__(self, session: AsyncioSession) -> None:
        self._session = session
        self._view = shared_read_view()  # see transports._read_buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._session._made(transport)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._session._data(self._view[:nbytes])

    def eof_received(self) -> bool:
        self._session._data(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._session._gone(exc)

    def pause_writing(self) -> None:
        self._session._paused = True

    def resume_writing(self) -> None:
        self._session._resume()


class AsyncioSession(NativeSession):
    """A live Millis session over an asyncio transport; see :class:`ClientSession`.

    Every wait is bounded: a write the transport cannot take (it paused writing) for
    ``write_timeout`` ends the session as lost, a silent server is noticed by the core's
    liveness check, the close handshake is bounded by ``disconnect_timeout``.
    """

    _CHECKPOINTS = False  # asyncio's convention: nothing to wait for, no yield

    def __init__(
        self, conn: ClientConnection, loop: asyncio.AbstractEventLoop, settings: ConnectSettings
    ) -> None:
        super().__init__(
            conn,
            max_queued_events=settings.max_queued_events,
            write_timeout=settings.write_timeout,
            max_send_backlog=settings.max_send_backlog,
            new_event=asyncio.Event,
            clock=loop.time,
        )
        self._loop = loop
        self._ssl = settings.ssl_context
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._opened: asyncio.Future[None] = loop.create_future()
        self._closed_future: asyncio.Future[None] = loop.create_future()
        self._handshake_error: RemoteProtocolError | None = None

    # --- opening --------------------------------------------------------------------------

    async def _open(self) -> None:
        endpoint = self.connection.endpoint
        try:
            await self._loop.create_connection(
                lambda: _Protocol(self),
                endpoint.host,
                endpoint.port,
                ssl=self._ssl,
                server_hostname=endpoint.host if self._ssl is not None else None,
            )
        except OSError as exc:
            raise connect_failure(exc, endpoint) from exc
        await self._opened
        if self._handshake_error is not None:
            raise ConnectionFailed(
                sentence(str(self._handshake_error)), kind=FailureKind.HANDSHAKE_INVALID
            ) from self._handshake_error
        if not self._connected:
            raise open_failure(self.connection, self._rejection)

    def _made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pump()  # the handshake request, queued by the core on construction

    def _data(self, data: memoryview | None) -> None:
        if self._connected:  # the hot path: the handshake is over
            self._received(data)
            return
        try:
            self._received(data)
        except RemoteProtocolError as exc:  # only while the opening handshake runs
            self._handshake_error = exc
            self._abort_transport()
        if not self._opened.done() and (self._connected or self.connection.closed is not None):
            self._opened.set_result(None)

    def _gone(self, exc: Exception | None) -> None:
        if self.connection.closed is None:
            why = describe(exc) if exc is not None else "the server closed the connection"
            self.connection.abort(f"connection lost: {why}", self._now())
            self._outbox.clear()
            self._pump()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._closed_future.done():
            self._closed_future.set_result(None)
        if not self._opened.done():
            self._opened.set_result(None)

    # --- the adapter hooks ----------------------------------------------------------------

    def _wake_writer(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._outbox and not self._paused and not transport.is_closing():
            data = self._take_output()
            transport.write(data)
            self._wrote(len(data))
        elif self._outbox and self._write_since is None:
            self._writing(self._now())  # paused: the write waits, bounded by write_timeout
        if self._ending:
            if not self._closing:
                self._closing = True
                # The last bytes (a close reply) and the buffer's flush are bounded too.
                self._loop.call_later(self._write_timeout, transport.abort)
            if not self._outbox and not transport.is_closing():
                transport.close()  # flushes the transport's buffer first

    def _resume(self) -> None:
        self._paused = False
        self._write_since = None
        self._wake_writer()

    def _move_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        try:
            self._on_timer()
        except Exception as exc:
            # A bug (the core raising): end the session rather than leave it running with
            # no timer, and report it the loop's way (its handler logs the traceback).
            self._lost(f"connection lost: an internal error in a timer ({type(exc).__name__})")
            self._loop.call_exception_handler(
                {"message": "millis-proto: a session's timer raised", "exception": exc}
            )
            return
        if self.connection.closed is None:
            deadline = self._next_deadline()
            if deadline != float("inf"):
                self._timer = self._loop.call_at(deadline, self._fire)

    def _abort_transport(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _checkpoint(self) -> None:
        return None  # asyncio's convention: an await that has nothing to wait for does not yield

    async def _yield(self) -> None:
        await asyncio.sleep(0)

    async def _wait_transport_closed(self) -> None:
        if self._transport is None:
            return
        # Shielded: a cancelled caller still waits for the close (the core's deadline and
        # the write bound end it), then the cancellation goes on. A plain future, no task.
        cancelled = False
        while not self._closed_future.done():
            try:
                await asyncio.shield(self._closed_future)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort_transport()
