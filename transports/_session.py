"""The adapter logic every transport shares: one reader, one send lock, one event queue.

Theory of operation
-------------------
A session joins a wire connection of the core (``ClientConnection`` or
``ServerConnection``) to an anyio byte stream. It is written against anyio, so it runs on
asyncio and on trio; the trio transport hands it trio's own streams through a thin wrapper.
It makes no protocol decisions — the core does; this module only moves bytes and events.

* **One reader task.** Before every receive it drains the core: events go to the bounded
  :class:`~transports._queue.EventQueue`, pending bytes (pong replies, the answer to a close
  frame, ``initiate``) go to the stream. Then it reads once and feeds the core. It never
  waits for the application — the queue drops rather than blocks, and agent audio goes to
  the client's playback buffer inside the core — so WebSocket pings are always answered
  (trio-websocket #65).
* **One FIFO send lock.** Whoever holds it writes everything ``data_to_send()`` has, in one
  write, and looks again before letting go, so bytes leave in the core's order in as few
  writes as possible. The reader never waits for the lock: if it is held, the holder writes
  the reader's pong as well.
* **A broken write breaks the session.** An error or a cancellation inside a write may have
  left half a frame on the wire, so the core is aborted (1006, with the reason) and the
  stream closed; nothing is written after that (trio-websocket #175, #158).
* **Time** for the core is the event loop's clock (``anyio.current_time()``), so trio's
  ``MockClock`` makes a whole run virtual and deterministic. Every deadline is the core's:
  the reader waits for bytes no longer than ``get_timer()`` and then calls
  ``handle_timer(now)``; every call into the core moves that wait to the new
  ``get_timer()``. The core decides what a deadline means (close reply overdue, liveness
  ping, server gone silent, no initiate); this module has no timeouts of its own besides
  bounding its last writes.
* **Ending.** After the core's ``ConnectionClosed`` the reader writes what is left (the
  reply to the peer's close frame), closes the stream and ends the queue. :meth:`aclose`
  starts the close handshake and waits for that — the core's close-reply deadline bounds
  it; the reader is shielded from the caller's cancel scopes so that it can still read the
  peer's answer while the caller is being cancelled, and is stopped explicitly at the end.
  Whether the end was an error is the core's call too (``ConnectionClosed.error()``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar, overload

import anyio
import anyio.abc

from millis_proto import (
    ConfigError,
    Connected,
    ConnectionClosed,
    ConnectionRejected,
    Event,
    MillisError,
    Ready,
)
from millis_proto.config import DEFAULT_DISCONNECT_TIMEOUT
from millis_proto.wire import WireConnection

from ._errors import STREAM_ERRORS, BaseExceptionGroup, describe
from ._queue import EventQueue

__all__ = [
    "DEFAULT_DISCONNECT_TIMEOUT",
    "RECEIVE_BYTES",
    "WireSession",
    "background",
    "check_timeout",
    "close_forcefully",
    "running",
]

#: Most bytes asked of the stream per read.
RECEIVE_BYTES = 65536


def check_timeout(value: float, name: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds.")


async def close_forcefully(stream: anyio.abc.AsyncResource) -> None:
    """Close ``stream`` at once, without any goodbye; never raises a stream error."""
    with contextlib.suppress(*STREAM_ERRORS):  # it is closed either way
        await anyio.aclose_forcefully(stream)


class WireSession:
    """What client and server sessions share; see the module docstring.

    Not created directly: use ``transports.trio.connect``, ``transports.anyio.connect``,
    ``transports.server.serve`` or ``transports.memory.connect_in_memory``.
    """

    #: Whether an abnormal end raises its error from the iterator and the send methods.
    _raises_on_abnormal_end = False

    def __init__(
        self,
        conn: WireConnection,
        stream: anyio.abc.ByteStream,
        *,
        disconnect_timeout: float,
        max_queued_events: int,
        max_queued_bytes: int | None = None,
    ) -> None:
        check_timeout(disconnect_timeout, "disconnect_timeout")
        self._conn = conn
        self._stream = stream
        # Bounds only our own last writes (the reply to a close, TLS close_notify); the
        # close handshake itself is bounded by the core's timer.
        self._disconnect_timeout = disconnect_timeout
        self._wait_scope: anyio.CancelScope | None = None  # the reader's wait for bytes
        self._queue = EventQueue(max_queued_events, max_bytes=max_queued_bytes)
        self._send_lock = anyio.Lock()
        self._broken = False
        self._connected = False
        self._rejection: ConnectionRejected | None = None
        self._ready = False  # onready arrived (client role)
        self._ready_or_closed = anyio.Event()  # set on onready or at the end
        self._transport_closing = False
        self._transport_closed = anyio.Event()
        self._reader_scope = anyio.CancelScope(shield=True)

    # --- public ----------------------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        """The core's :class:`ConnectionClosed` event once the WebSocket is closed."""
        return self._conn.closed

    @property
    def dropped_events(self) -> int:
        """Events dropped so far because the application read too slowly."""
        return self._queue.dropped

    async def next_event(self) -> Event | None:
        """Wait for the next event; ``None`` when the session has ended.

        The last event of a session is always ``ConnectionClosed``. After it, a session
        that ended abnormally raises its error instead of returning ``None`` (see
        :meth:`_terminal_error`); every later call does the same. Cancel-safe: a call
        cancelled while waiting takes no event with it.
        """
        event = await self._queue.get()
        if event is None:
            error = self._terminal_error()
            if error is not None:
                raise error
        return event

    def events(self) -> AsyncIterator[Event]:
        """Iterate over the events (see :meth:`next_event`); the session is iterable too."""
        return EventIterator(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return EventIterator(self)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket: send our close frame and wait for the peer's answer.

        Bounded by the core's close-reply deadline (``disconnect_timeout``), which the
        reader fires, and shielded from the caller's cancellation, so it also runs when the
        caller is being cancelled. If the peer does not answer in time the stream is closed
        anyway. Idempotent; never raises a transport error. Events that arrived before the
        close can still be read afterwards.
        """
        with anyio.CancelScope(shield=True):
            if self._conn.closed is None:
                self._conn.close(code, reason, now=self._now())
                self._pump()
                await self._flush()
            await self._transport_closed.wait()

    # --- for subclasses and transports ---------------------------------------------------

    def _terminal_error(self) -> MillisError | None:
        """The error a finished session raises from its iterator and send methods.

        The core classifies the end (``ConnectionClosed.error()``); server sessions never
        raise it.
        """
        closed = self._conn.closed
        if closed is None or not self._raises_on_abnormal_end:
            return None
        return closed.error()

    def _now(self) -> float:
        return anyio.current_time()

    def _check_sendable(self) -> None:
        """Raise the terminal error if the session ended abnormally (else the core decides)."""
        if self._conn.closed is not None:
            error = self._terminal_error()
            if error is not None:
                raise error

    async def _push(self) -> None:
        """After an application call into the core: hand out its events, write its bytes.

        Raises the terminal error if the write failed (the bytes may not have gone out).
        An end of the session that merely happens meanwhile is left to the event stream
        and the next call.
        """
        self._pump()
        await self._flush()
        if self._broken:
            self._check_sendable()

    def _pump(self) -> None:
        """Move the core's events to the queue; end the queue once the core is closed.

        Also re-arms the reader's wait: the call into the core just made may have moved
        its next deadline (a close, a ping).
        """
        for event in self._conn.events():
            if isinstance(event, Connected):
                self._connected = True
            elif isinstance(event, ConnectionRejected):
                self._rejection = event
            elif isinstance(event, Ready):
                self._ready = True
                self._ready_or_closed.set()
            self._queue.put(event)
        if self._conn.closed is not None:
            self._queue.end()
            self._ready_or_closed.set()
        waiting = self._wait_scope
        if waiting is not None:
            timer = self._conn.get_timer()
            deadline = math.inf if timer is None else timer
            if deadline != waiting.deadline:  # asyncio re-arms a timer handle on every set
                waiting.deadline = deadline

    async def _open(self) -> None:
        """Run the opening handshake; the caller bounds the time.

        Returns once the WebSocket is open (``self._connected``) or closed. Raises
        :class:`~millis_proto.RemoteProtocolError` for an invalid handshake.
        """
        await self._flush()
        # Not ``is_open``: a close the core sends at once (onsessionended in the same read
        # as the 101) ends "open" before the handshake loop would notice it.
        self._pump()
        while self._conn.closed is None and not self._connected:
            await self._receive_once()
            self._pump()
        await self._flush()

    async def _run_reader(self) -> None:
        """The reader task: receive until the core is closed, then close the stream."""
        with self._reader_scope:
            try:
                while self._conn.closed is None:
                    await self._receive_once()
            finally:
                self._pump()
                await self._close_transport()

    def _stop_reader(self) -> None:
        self._reader_scope.cancel()

    async def _receive_once(self) -> None:
        # Drain the core before every receive: events out, then bytes out.
        self._pump()
        await self._flush(wait=False)
        conn = self._conn
        if conn.closed is not None:
            return
        timer = conn.get_timer()
        data: bytes | None = None
        with anyio.CancelScope(deadline=math.inf if timer is None else timer) as waiting:
            self._wait_scope = waiting
            try:
                data = await self._stream.receive(RECEIVE_BYTES)
            except anyio.EndOfStream:
                data = None
            except STREAM_ERRORS as exc:
                conn.abort(f"connection lost: {describe(exc)}", self._now())
                return
            finally:
                self._wait_scope = None
        if waiting.cancelled_caught:
            conn.handle_timer(self._now())  # a deadline of the core came first
            return
        conn.receive_data(data, self._now())

    async def _flush(self, *, wait: bool = True) -> None:
        """Write what the core has, under the send lock.

        With ``wait=False`` (the reader) nothing is written if the lock is held: its holder
        writes everything pending, including what the reader queued, before letting go.
        """
        if wait:
            async with self._send_lock:
                await self._write_pending()
            return
        try:
            self._send_lock.acquire_nowait()
        except anyio.WouldBlock:
            return
        try:
            await self._write_pending()
        finally:
            self._send_lock.release()

    async def _write_pending(self) -> None:
        """Write until the core has nothing left; call with the send lock held."""
        while not self._broken:
            data = self._conn.data_to_send()
            if not data:
                return
            try:
                await self._stream.send(data)
            except BaseException as exc:
                cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
                if not cancelled and not isinstance(exc, STREAM_ERRORS):
                    raise
                # Part of a frame may be on the wire: the stream cannot carry another byte.
                why = "a write was cancelled part-way" if cancelled else describe(exc)
                await self._break(f"connection lost: {why}")
                if cancelled:
                    raise
                return

    async def _break(self, reason: str) -> None:
        self._broken = True
        self._conn.abort(reason, self._now())
        self._pump()
        await close_forcefully(self._stream)

    async def _close_transport(self, *, force: bool = False) -> None:
        """Write what is left (the reply to a close frame), then close the stream.

        Shielded, bounded by ``disconnect_timeout``; idempotent. ``force`` closes at once.
        """
        with anyio.CancelScope(shield=True):
            if force:
                await close_forcefully(self._stream)
                self._transport_closed.set()
                return
            if self._transport_closing:
                await self._transport_closed.wait()
                return
            self._transport_closing = True
            with anyio.move_on_after(self._disconnect_timeout) as scope:
                async with self._send_lock:
                    await self._write_pending()
                    with contextlib.suppress(*STREAM_ERRORS):
                        await self._stream.aclose()  # graceful: TLS sends close_notify
            if scope.cancelled_caught:
                await close_forcefully(self._stream)
            self._transport_closed.set()


class _HasEvents(Protocol):
    async def next_event(self) -> Event | None: ...


class EventIterator:
    """``async for event in session`` — a plain iterator, not an async generator, so
    abandoning it mid-way leaves nothing to finalize. For any session's ``next_event``."""

    def __init__(self, session: _HasEvents) -> None:
        self._session = session

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> Event:
        event = await self._session.next_event()
        if event is None:
            raise StopAsyncIteration
        return event


_Group = TypeVar("_Group")


@overload
def background() -> AbstractAsyncContextManager[anyio.abc.TaskGroup]: ...
@overload
def background(
    open_group: Callable[[], AbstractAsyncContextManager[_Group]],
) -> AbstractAsyncContextManager[_Group]: ...
def background(
    open_group: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
) -> AbstractAsyncContextManager[Any]:
    """A task group for background tasks whose body's own exception comes out unwrapped.

    Task groups wrap even a lone exception of their body in an ``ExceptionGroup``; the
    background tasks here never raise (failures become events), so a group holding one
    exception is the body's, and the caller gets it as if no task group were there.
    ``open_group`` makes the group: anyio's by default; the trio transport passes
    ``trio.open_nursery`` (anyio's wrappers cost memory in every session).
    """
    return _unwrapped(open_group or anyio.create_task_group)


@asynccontextmanager
async def _unwrapped(
    open_group: Callable[[], AbstractAsyncContextManager[_Group]],
) -> AsyncIterator[_Group]:
    lone: BaseException | None = None
    try:
        async with open_group() as group:
            yield group
    except BaseExceptionGroup as exc_group:
        if len(exc_group.exceptions) != 1:
            raise
        lone = exc_group.exceptions[0]
    if lone is not None:
        raise lone


@asynccontextmanager
async def running(session: WireSession) -> AsyncIterator[None]:
    """Run ``session``'s reader around the body; on the way out, close it (bounded)."""
    async with background() as group:
        group.start_soon(session._run_reader)
        try:
            yield
        finally:
            await session.aclose()
            session._stop_reader()
