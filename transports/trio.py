"""Millis sessions over trio's own streams: ``trio.open_tcp_stream`` and ``trio.SSLStream``.

The primary transport, with nothing between the session and trio on the hot path. On a
plain socket (Linux) every session of a trio run is read, and its timers run, by one
shared reader task (see :mod:`transports._trio_reader`: trio waits for one epoll
descriptor, not for each socket on every frame), and each session has one task of its own,
the writer, parked unless a write could not complete at once. Elsewhere, and over TLS,
each session has its own reader task (which on a plain socket also runs the timers, and
over TLS leaves them to a third task). :mod:`transports._native`
says how they share the work::

    import trio
    from millis_proto import StartRequest, US_WEST
    from transports.trio import connect

    async def main():
        request = StartRequest(public_key=KEY, agent_id=AGENT)
        async with connect(US_WEST, request) as session:
            await session.send_audio(pcm)
            async for event in session:
                print(event)

    trio.run(main)
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import trio

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
from millis_proto.pcm import Buffer

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
from ._read_buffer import RECEIVE_BYTES
from ._session import background
from ._trio_reader import AVAILABLE as _SHARED_READS
from ._trio_reader import SharedReader, shared_reader

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EU_WEST", "US_WEST", "ClientSession", "ConnectOptions", "TrioSession", "connect"]

#: What trio's streams raise when the connection under them fails.
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def connect(
    url: str | Endpoint, request: StartRequest, **options: Unpack[ConnectOptions]
) -> AbstractAsyncContextManager[TrioSession]:
    """Open a Millis session to a ``ws://`` or ``wss://`` URL, over trio.

    ``url`` is any WebSocket URL; :data:`US_WEST` is the documented default endpoint and
    :data:`EU_WEST` the European one. ``options`` are those of :class:`ConnectOptions`
    (the same for every transport). Use as ``async with connect(url, request) as
    session:`` — on the way out the session is closed with the close handshake (bounded
    by ``disconnect_timeout``), also when the block is cancelled; no task is left behind.

    Raises :class:`~millis_proto.ConfigError` for bad arguments and
    :class:`~millis_proto.ConnectionFailed` when the session cannot be opened; its
    ``kind`` says why (DNS, REFUSED, TLS, TIMEOUT, HANDSHAKE_REJECTED with
    ``status_code``, HANDSHAKE_INVALID, NETWORK). See :class:`TrioSession` for how a
    session ends and how it bounds every write and wait.
    """
    return redacted(_connect(url, request, options), getattr(request, "public_key", None))


@asynccontextmanager
async def _connect(
    url: str | Endpoint, request: StartRequest, options: ConnectOptions
) -> AsyncIterator[TrioSession]:
    endpoint = url if isinstance(url, Endpoint) else parse_endpoint(url)
    settings = connect_settings(endpoint, options)
    conn = ClientConnection(
        request,
        endpoint,
        settings.config,
        wall_clock_offset=(
            time.time() - trio.current_time()
            if settings.wall_clock_offset is None
            else settings.wall_clock_offset
        ),
        mask_entropy=os.urandom,
    )
    stream: trio.abc.Stream | None = None
    opened = False
    try:
        with trio.fail_after(settings.connect_timeout):
            try:
                stream = await _open_stream(endpoint, settings.ssl_context)
            except _STREAM_ERRORS as exc:
                raise connect_failure(exc, endpoint) from exc
            session = TrioSession(conn, stream, settings)
            await session._handshake()
            opened = True
    except trio.TooSlowError:
        raise timeout_failure(
            endpoint, connected=stream is not None, timeout=settings.connect_timeout
        ) from None
    finally:
        if stream is not None and not opened:
            await trio.aclose_forcefully(stream)
    if session._fd is not None and _SHARED_READS:
        try:
            session._read_shared(session._fd)  # the run's one reader reads this socket
        except OSError as exc:  # no epoll set, or no room in it (descriptors, memory)
            await trio.aclose_forcefully(stream)
            raise connect_failure(exc, endpoint) from exc
    async with background(trio.open_nursery) as group:
        if session._shared is None:
            group.start_soon(session._read_loop)
        session._group = group  # the writer starts in it once there is work for it
        # ... in the context of the task that opened the session, not of the shared
        # reader's task, which may be the one that starts it (see _hand_to_writer).
        session._context = contextvars.copy_context()
        if session._outbox or session._ending:
            session._wake_writer()  # what the handshake's last read queued (an initiate)
        if session._fd is None:
            group.start_soon(session._timer_loop)  # else its reader (or the shared one) does
        try:
            yield session
        finally:
            try:
                await session.aclose()
            finally:
                session._stop()


#: The read buffer of the sessions of one trio run (see _read_buffer).
_READ_BUFFER: trio.lowlevel.RunVar[tuple[list[bytearray], memoryview]] = trio.lowlevel.RunVar(
    "millis_proto_read_buffer"
)


def _read_buffer() -> tuple[list[bytearray], memoryview]:
    """The buffer every session of the current trio run reads its socket into.

    One for all sessions: a reader hands the bytes to its core, which takes them, before it
    waits again, and a trio run is one thread. A fresh ``os.read`` of ``RECEIVE_BYTES``
    per read would ask the allocator for 64 KiB every time and hand most of it back at
    once; with hundreds of sessions that churn spread the heap (kilobytes of resident
    memory per session) for reads that are mostly one small frame.
    """
    try:
        return _READ_BUFFER.get()
    except LookupError:
        buffer = bytearray(RECEIVE_BYTES)
        shared = ([buffer], memoryview(buffer))
        _READ_BUFFER.set(shared)
        return shared


def _raw_fd(stream: trio.abc.Stream) -> int | None:
    """The socket's file descriptor for direct reads and writes, if it may be used.

    Only for a plain TCP ``trio.SocketStream`` on a POSIX system (where ``os.read`` and
    ``os.write`` work on sockets); trio's stream layer then costs more than the frame.
    Trio still owns the socket: it waits for readiness and closes it.
    """
    if os.name != "posix" or type(stream) is not trio.SocketStream:
        return None
    return stream.socket.fileno()


async def _open_stream(endpoint: Endpoint, context: ssl.SSLContext | None) -> trio.abc.Stream:
    tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    if context is None:
        return tcp
    # https_compatible=False: a peer that vanishes without close_notify is reported as a
    # broken stream (connection lost), not mistaken for a clean end of stream.
    tls = trio.SSLStream(tcp, context, server_hostname=endpoint.host, https_compatible=False)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


class TrioSession(NativeSession):
    """A live Millis session over a trio stream; see :class:`~transports._client.ClientSession`.

    Its tasks (the writer, and a reader and a timer of its own unless the run's shared
    reader serves it; see the module docstring) are shielded from the caller's cancellation so that
    the close handshake can still run while the caller is cancelled; they are stopped
    when ``connect``'s block ends. Every wait is bounded: writes by ``write_timeout``
    (then ``ConnectionLost``), a silent server by the core's liveness check, the close
    handshake by ``disconnect_timeout``.
    """

    def __init__(
        self, conn: ClientConnection, stream: trio.abc.Stream, settings: ConnectSettings
    ) -> None:
        super().__init__(
            conn,
            max_queued_events=settings.max_queued_events,
            write_timeout=settings.write_timeout,
            max_send_backlog=settings.max_send_backlog,
            new_event=trio.Event,
            # The run's clock, looked up once: the time is asked several times per frame.
            clock=trio.lowlevel.current_clock().current_time,
        )
        self._stream = stream
        # Plain TCP on a POSIX system: read and write the socket's descriptor directly
        # (see _raw_fd). TLS, and anything else, goes through the stream.
        self._fd = _raw_fd(stream)
        # The writer task starts only when a write cannot be done at once (or at the end,
        # to close the stream): until then, and while it is parked waiting for bytes, the
        # session writes the socket itself (_write_now). A task less per session for the
        # scheduler and for every garbage collection to walk.
        self._group: trio.Nursery | None = None
        self._context: contextvars.Context | None = None
        self._writer_started = False
        self._parked: trio.lowlevel.Task | None = None  # the writer, waiting for bytes
        self._timer_wait: trio.CancelScope | None = None
        self._reader_scope = trio.CancelScope(shield=True)
        self._writer_scope = trio.CancelScope(shield=True)
        self._timer_scope = trio.CancelScope(shield=True)
        self._transport_closed = trio.Event()
        # A plain socket read by the run's shared reader (see _trio_reader), and what went
        # wrong, if anything, in handling what it read: raised from the session's own task.
        self._shared: SharedReader | None = None
        self._crash: Exception | None = None

    # --- the adapter hooks ----------------------------------------------------------------

    def _wake_writer(self) -> None:
        task = self._parked
        if task is None and (self._writer_started or self._group is None):
            return  # the writer is busy (it takes the new bytes with the rest), or not yet
        if self._fd is not None and not self._ending and self._write_now(self._fd):
            return  # written in full, here and now: no task switch for the common case
        self._hand_to_writer()

    def _hand_to_writer(self) -> None:
        """The writer must run: wake it, or start it."""
        task, self._parked = self._parked, None
        if task is not None:
            trio.lowlevel.reschedule(task)
        elif not self._writer_started and self._group is not None:
            self._writer_started = True
            if self._context is None:
                self._group.start_soon(self._write_loop)
            else:
                self._context.run(self._group.start_soon, self._write_loop)

    def _write_now(self, fd: int) -> bool:
        """Write the outbox straight to the socket; True if it all went.

        Only while the writer is parked or not started, so nothing else is being written
        and the bytes stay in order. What the socket does not take now (a full send
        buffer), and any error, is left to the writer task, which waits for the socket
        (bounded by ``write_timeout``) and reports errors.
        """
        data = self._take_output()
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._outbox.append(data)  # the writer repeats it and reports the error
            return False
        self._wrote(n)
        if n == len(data):
            return True
        self._outbox.append(data[n:])
        self._writing(trio.current_time())
        return False

    async def send_audio(self, pcm: Buffer) -> None:
        fd = self._fd
        if fd is not None and not self._outbox and (self._parked or not self._writer_started):
            # The hot path on a plain socket, 50 times a second: nothing is waiting to be
            # written, so the core hands over this frame's bytes (when they are all there
            # is to send) and they are written here and now, without the queue and the
            # pump that the general path below runs for every send.
            now = self._now()
            frame = self.connection._audio_frame(pcm, now) if not self._dropping else None
            if frame is not None:
                try:
                    n = os.write(fd, frame)
                except OSError:  # full (BlockingIOError), or failed: the writer's job
                    n = 0
                if n != len(frame):
                    rest = frame[n:]
                    self._outbox.append(rest)
                    self._outbox_bytes += len(rest)
                    self._writing(now)  # the writer waits for the socket, bounded
                    self._hand_to_writer()
                await trio.lowlevel.checkpoint_if_cancelled()
                return
        await super().send_audio(pcm)

    send_audio.__doc__ = NativeSession.send_audio.__doc__

    def _move_timer(self, deadline: float) -> None:
        shared, fd = self._shared, self._fd
        if shared is not None and fd is not None:
            shared.schedule(deadline, fd, self)
        elif self._timer_wait is not None:
            self._timer_wait.deadline = deadline

    def _abort_transport(self) -> None:
        self._writer_scope.cancel()  # a write in progress is abandoned; the writer closes
        if not self._writer_started:
            self._hand_to_writer()  # (started in a cancelled scope, it goes straight there)

    async def _checkpoint(self) -> None:
        if self._fd is None:
            await trio.lowlevel.checkpoint()  # the writer task must get to run
        else:
            # Sends write the socket themselves (_write_now), so here a cancel point is
            # enough: a second trip through the scheduler per frame was most of a send's
            # cost. A sender that never sleeps still yields once its backlog is full.
            await trio.lowlevel.checkpoint_if_cancelled()

    async def _yield(self) -> None:
        await trio.lowlevel.checkpoint()

    async def _wait_transport_closed(self) -> None:
        with trio.CancelScope(shield=True):
            await self._transport_closed.wait()

    # --- opening --------------------------------------------------------------------------

    async def _handshake(self) -> None:
        """Run the opening handshake (the caller bounds the time); raise ConnectionFailed
        unless the WebSocket is open at the end."""
        stream = self._stream
        await stream.send_all(self._take_output_now())
        while self.connection.closed is None and not self._connected:
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except _STREAM_ERRORS as exc:
                raise connect_failure(exc, self.connection.endpoint) from exc
            try:
                self._received(bytes(data) or None)
            except RemoteProtocolError as exc:
                raise ConnectionFailed(
                    sentence(str(exc)), kind=FailureKind.HANDSHAKE_INVALID
                ) from exc
        if not self._connected:
            raise open_failure(self.connection, self._rejection)

    def _take_output_now(self) -> bytes:
        self._pump()
        data = self._take_output()
        self._wrote(len(data))
        return data

    # --- the tasks ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            await self._read()
        except Exception:
            # A bug: it comes out of connect's block, but first the writer must close the
            # stream, or the close on the way out would wait for a reply nobody reads.
            self._abort_transport()
            raise

    async def _read(self) -> None:
        with self._reader_scope:
            if self._fd is not None:
                await self._read_fd(self._fd)
                return
            stream = self._stream
            received = self._received
            while self.connection.closed is None:
                try:
                    data = await stream.receive_some(RECEIVE_BYTES)
                except _STREAM_ERRORS as exc:
                    self._lost(f"connection lost: {describe(exc)}")
                    return
                received(data or None)  # b"" is EOF
                del data  # not held while waiting: a read may be 64 KiB, in every session

    async def _read_fd(self, fd: int) -> None:
        # Wait first, then read: a paced peer's next frame is not there yet right after
        # the last one, so reading first would cost a failed system call per frame.
        wait_readable = trio.lowlevel.wait_readable
        # _received, inlined: this runs for every frame of agent audio.
        receive_data = self.connection.receive_data
        pump = self._pump
        clock = self._now
        readv = os.readv
        into, view = _read_buffer()
        # The reader is also the timer (no third task, no second shielded scope per
        # session): its wait for bytes is the only place it yields, and waiting is all a
        # cancelled wait_readable abandons, so the next deadline cancels that wait.
        while self.connection.closed is None:
            with trio.CancelScope(deadline=self._next_deadline()) as wait:
                self._timer_wait = wait
                while self.connection.closed is None:
                    try:
                        await wait_readable(fd)
                        n = readv(fd, into)
                    except BlockingIOError:
                        continue
                    except _STREAM_ERRORS as exc:
                        self._lost(f"connection lost: {describe(exc)}")
                        return
                    # The core copies what it keeps before returning (the buffer is reused
                    # by the next read of any session): no view of it outlives this call.
                    receive_data(view[:n] if n else None, clock())  # 0 bytes is EOF
                    pump()
            self._timer_wait = None
            if wait.cancelled_caught:
                self._on_timer()

    def _read_shared(self, fd: int) -> None:
        """Have the run's shared reader read the socket (instead of a reader task)."""
        shared = shared_reader()
        receive_data = self.connection.receive_data
        pump = self._pump
        clock = self._now
        readv = os.readv
        into, view = _read_buffer()

        def on_readable() -> None:
            # What _read_fd does for one read, called by the shared reader's task: this
            # runs for every frame of agent audio, hence the names bound above.
            try:
                n = readv(fd, into)
            except BlockingIOError:
                return
            except _STREAM_ERRORS as exc:
                self._unshare()
                try:
                    self._lost(f"connection lost: {describe(exc)}")
                except Exception as bug:  # as below: never out of the shared task
                    self._end_crashed(bug)
                return
            try:
                # The core copies what it keeps before returning (the buffer is shared
                # by every session of the run): no view of it outlives this call.
                receive_data(view[:n] if n else None, clock())  # 0 bytes is EOF
                pump()
            except Exception as exc:  # a bug; it must not stop the other sessions' reads
                self._unshare()
                self._end_crashed(exc)
                return
            if not n or self.connection.closed is not None:
                self._unshare()  # nothing more to read; at EOF it would stay readable

        shared.add(fd, on_readable, self)
        self._shared = shared
        shared.schedule(self._next_deadline(), fd, self)

    def _shared_timer(self) -> None:
        """For the shared reader: this session's deadline has come."""
        try:
            self._on_timer()
            shared, fd = self._shared, self._fd
            if shared is not None and fd is not None and self.connection.closed is None:
                shared.schedule(self._next_deadline(), fd, self)
        except Exception as exc:  # a bug; as in on_readable
            self._unshare()
            self._end_crashed(exc)

    def _unshare(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None and self._fd is not None:
            shared.discard(self._fd, self)

    def _end_crashed(self, exc: Exception) -> None:
        """For the shared reader: handling a read or a timer raised ``exc`` (a bug). Stop
        the session as a crashed reader task would (see _read_loop): its writer closes
        the stream, then raises ``exc`` out of ``connect``'s block, instead of it
        vanishing in the shared task."""
        self._crash = exc
        self._outbox.clear()  # nothing more is written: the writer goes straight to closing
        self._outbox_bytes = 0
        self._abort_transport()

    async def _write_fd(self, fd: int) -> None:
        # The slow path: bytes that could not be written at once (see _write_now).
        while True:
            if self._outbox:
                data = self._take_output()
                if self._write_since is None:
                    self._writing(trio.current_time())
                try:
                    n = os.write(fd, data)
                except BlockingIOError:
                    n = 0
                except _STREAM_ERRORS as exc:
                    self._lost(f"connection lost: {describe(exc)}")
                    return
                if n == len(data):
                    self._wrote(n)
                    await trio.lowlevel.checkpoint()
                    continue
                self._outbox.insert(0, data[n:])
                if n:  # progress: the write_timeout clock starts again
                    self._wrote(n)
                    self._writing(trio.current_time())
                try:
                    with trio.move_on_at(self._write_deadline()) as bound:
                        await trio.lowlevel.wait_writable(fd)
                except _STREAM_ERRORS as exc:
                    self._lost(f"connection lost: {describe(exc)}")
                    return
                if bound.cancelled_caught:
                    self._on_timer()  # the write bound has passed: a lost connection
            elif self._ending:
                return
            else:
                await self._park()

    def _write_deadline(self) -> float:
        """When the write in progress counts as stalled. The timer checks that too, but
        not once the connection is closed (the reply to a close may still be waiting
        behind a backlog the server no longer reads): the writer bounds its own waits."""
        since = self._write_since
        return math.inf if since is None else since + self._write_timeout

    async def _write_stream(self, stream: trio.abc.Stream) -> None:
        while True:
            if self._outbox:
                data = self._take_output()
                self._writing(trio.current_time())
                try:
                    with trio.move_on_at(self._write_deadline()) as bound:
                        await stream.send_all(data)
                except _STREAM_ERRORS as exc:
                    self._lost(f"connection lost: {describe(exc)}")
                    return
                if bound.cancelled_caught:  # an abandoned send_all leaves the stream unusable
                    self._write_stalled()
                    return
                self._wrote(len(data))
            elif self._ending:
                return
            else:
                await self._park()

    async def _write_loop(self) -> None:
        with self._writer_scope:
            if self._fd is not None:
                await self._write_fd(self._fd)
            else:
                await self._write_stream(self._stream)
        await self._close_stream()
        if self._crash is not None:
            raise self._crash  # from the shared reader (see _end_crashed)

    async def _park(self) -> None:
        self._parked = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._parked = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def _timer_loop(self) -> None:
        with self._timer_scope:
            while self.connection.closed is None:
                with trio.CancelScope(deadline=self._next_deadline()) as wait:
                    self._timer_wait = wait
                    await trio.sleep_forever()
                self._timer_wait = None
                self._on_timer()

    async def _close_stream(self) -> None:
        """After the end: close the stream (gracefully when nothing went wrong), bounded."""
        with trio.CancelScope(shield=True):
            self._unshare()  # before the descriptor is closed (and perhaps reused)
            self._reader_scope.cancel()
            self._timer_scope.cancel()
            graceful = self.connection.closed is not None and not self._writer_scope.cancel_called
            if graceful:
                with trio.move_on_after(self._write_timeout), contextlib.suppress(*_STREAM_ERRORS):
                    await self._stream.aclose()  # TLS sends close_notify
            await trio.aclose_forcefully(self._stream)
            self._transport_closed.set()

    def _stop(self) -> None:
        """``connect``'s block ended: stop the tasks that are still running."""
        self._unshare()
        for scope in (self._reader_scope, self._writer_scope, self._timer_scope):
            scope.cancel()
        if self._timer_wait is not None:
            self._timer_wait.deadline = -math.inf
