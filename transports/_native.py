"""Client sessions driven natively by one event loop: what the trio and asyncio transports share.

Theory of operation
-------------------
A native session joins the core's :class:`~millis_proto.ClientConnection` to one event
loop's own I/O, with no layer in between. The loop-specific subclass
(:mod:`transports.trio`, :mod:`transports.asyncio`) supplies the clock, a way to wake its
writer, a way to move its timer earlier, and the waiting primitives; the rest is here, once.
It makes no protocol decisions — the core does.

* **One reader.** The adapter's reader (a trio task, or the trio run's shared reader;
  asyncio's ``buffer_updated``) hands each read to the core, as
  :meth:`NativeSession._received` does. The core takes the bytes; its events go to the
  bounded :class:`~transports._queue.EventQueue` (which never blocks the reader), and its
  output — pongs, the reply to a close — is queued for the writer. The reader never writes
  and never waits for anything but bytes, so pings are always answered.
* **One writer.** Application calls (``send_audio`` …) and the reader append the core's
  bytes to one outbox and wake the writer, which writes everything queued in one write.
  Only the writer writes, so there is no lock, and bytes leave in the core's order.
  ``send_audio`` does not wait for the network: it returns once the frame is queued.
* **Backpressure is never silent.** While more than ``max_send_backlog`` bytes wait for the
  writer, user audio is dropped instead of queued: counted in
  :attr:`NativeSession.dropped_audio_samples` and reported with an :class:`AudioDropped`
  event (at most one a second while it lasts, and one when it ends). Other messages are
  always queued. A write that makes no progress for ``write_timeout`` seconds, or an outbox
  past :data:`MAX_OUTBOX_BYTES`, is a lost connection (``ConnectionLost``, 1006) — a server
  that stops reading cannot hang us.
* **Timers are the core's.** After every call into the core the session compares
  ``get_timer()`` with the deadline its timer sleeps to and moves it earlier when needed;
  when it fires, ``handle_timer`` runs (close reply, liveness ping, pong timeout), plus the
  writer's ``write_timeout``. A silent server is noticed by the core's liveness check.
* **The end.** After the core's ``ConnectionClosed`` the writer sends what is left (the reply
  to a close) and closes the transport. :meth:`NativeSession.aclose` starts the close
  handshake and waits for that; the core's close-reply deadline bounds it.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from millis_proto import (
    ABSENT,
    ClientConnection,
    ConfigError,
    ConnectionClosed,
    ConnectionRejected,
    Event,
    MillisError,
    PlaybackChunk,
)
from millis_proto._frozen import frozen_dataclass
from millis_proto.pcm import Buffer

from ._client import ClientSession
from ._queue import EventQueue
from ._session import EventIterator

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = [
    "MAX_OUTBOX_BYTES",
    "AudioDropped",
    "NativeSession",
]

#: Bytes waiting for the writer above which the connection counts as lost.
MAX_OUTBOX_BYTES = 4 * 1024 * 1024
#: How often a lasting drop of user audio is reported, in seconds.
DROP_REPORT_INTERVAL = 1.0


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class AudioDropped(Event):
    """User audio was not sent because the connection could not take it (backpressure).

    ``samples`` were dropped since the previous report, ``total_samples`` since the session
    began; ``ongoing`` is False on the report that ends a run of drops.
    """

    name: ClassVar[str] = "audio_dropped"
    samples: int
    total_samples: int
    ongoing: bool


def check_backlog(value: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a sane number of bytes."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("max_send_backlog must be a positive number of bytes.")


class NativeSession(ClientSession):
    """A live Millis session; see the module docstring and :func:`transports.trio.connect`.

    Send with :meth:`send_audio`, :meth:`send_message`, :meth:`send_ping`; read typed
    events with ``async for event in session`` (or :meth:`next_event`); feed a speaker with
    :meth:`pull_playback`. Agent audio never waits for the application: it goes to the
    playback buffer of :attr:`connection`.

    How it ends: the event stream's last event is ``ConnectionClosed``. After it, iteration
    stops if the close was normal (``ConnectionClosed.normal``) and otherwise raises the
    core's ``ConnectionClosed.error()`` (:class:`~millis_proto.ConnectionLost`,
    :class:`~millis_proto.ConnectionClosedByServer`, :class:`~millis_proto.RemoteProtocolError`);
    the send methods raise the same error once the session has ended abnormally, and the
    core's :class:`~millis_proto.LocalProtocolError` after a normal end.

    Use it from the event loop's thread only.
    """

    #: Whether the send methods end with the loop's checkpoint (trio's convention; an
    #: asyncio coroutine that has nothing to wait for does not yield, so it skips the call).
    _CHECKPOINTS: ClassVar[bool] = True

    def __init__(
        self,
        conn: ClientConnection,
        *,
        max_queued_events: int,
        write_timeout: float,
        max_send_backlog: int,
        new_event: Callable[[], Any],
        clock: Callable[[], float],
    ) -> None:
        #: The core's connection (agent state, playback buffer, counters); read-only use.
        self.connection = conn
        #: The same object as :attr:`connection` (the name older code used).
        self.client = conn
        # The event loop's clock (monotonic seconds): an attribute, not a method, because
        # it is read several times per frame and a method would add a call each time.
        self._now = clock
        self._queue = EventQueue(max_queued_events, new_event=new_event)
        self._write_timeout = write_timeout
        self._max_backlog = max_send_backlog
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._write_since: float | None = None  # when the write in progress began
        self._timer_at = math.inf  # the deadline the adapter's timer sleeps to
        self._connected = False
        self._ready = False
        self._ready_or_closed = new_event()
        self._rejection: ConnectionRejected | None = None
        self._ending = False  # ConnectionClosed seen: the writer finishes and closes
        self._dropping = False
        self._drop_unreported = 0
        self._drop_reported_at = -math.inf
        #: User audio samples dropped because the connection could not take them.
        self.dropped_audio_samples = 0

    # --- public ----------------------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        """The core's ``ConnectionClosed`` event once the WebSocket is closed, else ``None``."""
        return self.connection.closed

    @property
    def dropped_events(self) -> int:
        """Events dropped so far because the application read too slowly."""
        return self._queue.dropped

    async def send_audio(self, pcm: Buffer) -> None:
        """Send user audio: s16le, 16 kHz, mono, any length.

        Queues the frame for the writer and returns; it does not wait for the network.
        While the connection cannot take more (see the module docstring) the audio is
        dropped, counted and reported with :class:`AudioDropped` instead.
        """
        if self.connection.closed is not None:
            self._check_sendable()  # raises the session's error
        now = self._now()
        if self._outbox_bytes > self._max_backlog:
            self._drop_audio(len(pcm) // 2, now)
            await self._yield()  # a sender that never sleeps must still let the writer run
            return
        if self._dropping:
            self._report_drops(now, ongoing=False)
        self.connection.send_audio(pcm, now)
        self._pump(timers=False)
        if self._CHECKPOINTS:
            await self._checkpoint()

    async def flush_audio(self) -> None:
        """Send the short last frame the re-chunker holds (``ClientConfig.chunk_ms``)."""
        self._check_sendable()
        self.connection.flush_audio(self._now())
        self._pump()
        await self._checkpoint()

    async def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method": ..., "data": ...}`` message (``data`` optional).

        Raises :class:`~millis_proto.ConfigError` for a bad method or unserializable data.
        """
        self._check_sendable()
        self.connection.send_message(method, data)
        self._pump()
        await self._checkpoint()

    async def send_ping(self) -> None:
        """Send a Millis ``ping``; its ``pong`` arrives as a ``Pong`` event with ``rtt_ms``."""
        self._check_sendable()
        self.connection.send_ping(self._now())
        self._pump()
        await self._checkpoint()

    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        """Take exactly ``n_samples`` samples for the speaker (zeros while paused or empty).

        Still works after the session ended, so a goodbye can be played out.
        """
        conn = self.connection
        chunk = conn.pull_playback(n_samples, self._now())
        # Pulling only ever gives events (playback started or finished): no bytes to
        # write and no timer to move, so the full pump is not needed 50 times a second.
        events = conn.events()
        if events:
            self._queue_events(events)
        return chunk

    async def next_event(self) -> Event | None:
        """Wait for the next event; ``None`` when the session has ended normally.

        After the last event (``ConnectionClosed``) a session that ended abnormally raises
        its error instead of returning ``None``, on every later call. Cancel-safe.
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

        Bounded by the core's close-reply deadline (``disconnect_timeout``) and shielded
        from the caller's cancellation. Idempotent; never raises a transport error.
        Events that arrived before the close can still be read afterwards.
        """
        if self.connection.closed is None:
            self.connection.close(code, reason, now=self._now())
            self._pump()
        await self._wait_transport_closed()

    # --- for the adapters -----------------------------------------------------------------

    @abstractmethod
    def _wake_writer(self) -> None:
        """Bytes were queued, or the session is ending: the writer must look."""

    @abstractmethod
    def _move_timer(self, deadline: float) -> None:
        """The next deadline is earlier than the one the timer sleeps to."""

    @abstractmethod
    async def _checkpoint(self) -> None:
        """What every send does last: the loop's convention (trio: a checkpoint)."""

    @abstractmethod
    async def _yield(self) -> None:
        """Let the other tasks run (and a cancellation in)."""

    @abstractmethod
    async def _wait_transport_closed(self) -> None:
        """Wait (shielded, bounded by the core's timers) until the transport is closed."""

    def _received(self, data: bytes | bytearray | memoryview | None) -> None:
        """The reader got ``data`` (``None``: EOF). May raise ``RemoteProtocolError``
        while the opening handshake is running, and nothing else."""
        self.connection.receive_data(data, self._now())
        self._pump()

    @abstractmethod
    def _abort_transport(self) -> None:
        """Stop the transport at once (a write in progress is abandoned)."""

    def _lost(self, reason: str) -> None:
        """The transport failed, or we gave up on it: end the connection (1006) with
        ``reason`` and stop the transport."""
        self.connection.abort(reason, self._now())
        self._outbox.clear()
        self._outbox_bytes = 0
        self._pump()
        self._abort_transport()

    def _take_output(self) -> bytes:
        """For the writer: everything queued, as one write (coalesced)."""
        out = self._outbox
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def _wrote(self, n_bytes: int) -> None:
        """For the writer: ``n_bytes`` of the taken output are written."""
        self._outbox_bytes -= n_bytes
        self._write_since = None

    def _writing(self, now: float) -> None:
        """For the writer: a write starts now; it must finish within ``write_timeout``."""
        self._write_since = now
        deadline = now + self._write_timeout
        if deadline < self._timer_at:
            self._timer_at = deadline
            self._move_timer(deadline)

    def _next_deadline(self) -> float:
        """For the timer: when it must next wake (``inf``: never)."""
        deadline = self.connection.get_timer()
        at = math.inf if deadline is None else deadline
        if self._write_since is not None:
            at = min(at, self._write_since + self._write_timeout)
        if self._dropping:
            at = min(at, self._drop_reported_at + DROP_REPORT_INTERVAL)
        self._timer_at = at
        return at

    def _write_stalled(self) -> None:
        """The write in progress made no progress for ``write_timeout``: a lost connection."""
        self._lost(
            f"connection lost: a write to the server made no progress for "
            f"{self._write_timeout:g} s (it stopped reading)"
        )

    def _on_timer(self) -> None:
        """For the timer: fire what is due (the core's timers, the write bound)."""
        now = self._now()
        since = self._write_since
        if since is not None and now - since >= self._write_timeout:
            self._write_stalled()
            return
        if self._dropping and now - self._drop_reported_at >= DROP_REPORT_INTERVAL:
            self._report_drops(now, ongoing=True)
        self.connection.handle_timer(now)
        self._pump()
        if self.connection.closed is not None:
            # Ended by a timer (no pong, no reply to our close): the server is not reading
            # either, so a write in progress would never finish. Abandon it.
            self._abort_transport()

    # --- internals ------------------------------------------------------------------------

    def _terminal_error(self) -> MillisError | None:
        closed = self.connection.closed
        return None if closed is None else closed.error()

    def _check_sendable(self) -> None:
        if self.connection.closed is not None:
            error = self._terminal_error()
            if error is not None:
                raise error

    def _pump(self, *, timers: bool = True) -> None:
        """After any call into the core: its events to the queue, its bytes to the writer,
        and its next deadline to the timer (``timers=False``: the call was one that moves
        no deadline earlier, sending audio)."""
        conn = self.connection
        events = conn.events()
        if events:
            self._queue_events(events)
        data = conn.data_to_send()
        if not data and not events and conn.closed is None:
            # A call that gave neither events nor bytes (a read of agent audio, mostly)
            # moved no deadline earlier: nothing happened that starts a timer. Both rules
            # are checked against get_timer() in tests/core/test_wire_fast.py.
            return
        if data:
            self._outbox.append(data)
            self._outbox_bytes += len(data)
            if self._outbox_bytes > MAX_OUTBOX_BYTES:
                self._lost(
                    f"connection lost: over {MAX_OUTBOX_BYTES} bytes could not be written "
                    "(the server stopped reading)"
                )
                return
            self._wake_writer()
        if conn.closed is not None:
            if not self._ending:
                self._ending = True
                self._queue.end()
                self._ready_or_closed.set()
                self._wake_writer()
            return
        if not timers:
            return
        deadline = conn.get_timer()
        if deadline is not None and deadline < self._timer_at:
            self._timer_at = deadline
            self._move_timer(deadline)

    def _queue_events(self, events: list[Event]) -> None:
        for event in events:
            self._note(event)
            if isinstance(event, ConnectionClosed) and self._dropping:
                self._report_drops(self._now(), ongoing=False)  # before the last event
            self._queue.put(event)

    def _drop_audio(self, samples: int, now: float) -> None:
        self.dropped_audio_samples += samples
        self._drop_unreported += samples
        if not self._dropping:
            self._dropping = True
            self._report_drops(now, ongoing=True)

    def _report_drops(self, now: float, *, ongoing: bool) -> None:
        self._queue.put(
            AudioDropped(
                samples=self._drop_unreported,
                total_samples=self.dropped_audio_samples,
                ongoing=ongoing,
            )
        )
        self._drop_unreported = 0
        self._drop_reported_at = now
        self._dropping = ongoing
        if ongoing and now + DROP_REPORT_INTERVAL < self._timer_at:
            self._timer_at = now + DROP_REPORT_INTERVAL
            self._move_timer(self._timer_at)
