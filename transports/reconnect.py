"""A session that survives a network drop: reconnect with ``session_continuation``.

Built only on the public session API — a ``connect(url, request, **options)`` async
context manager giving a session with ``send_audio``, ``pull_playback``, ``next_event``,
``aclose`` and ``session_id`` — so it works over every transport (trio, anyio/asyncio,
in-memory, and the blocking API through ``connect_blocking(..., reconnect=...)``)::

    from millis_proto import ReconnectPolicy
    from transports.reconnect import connect_reconnecting

    async with connect_reconnecting(url, request, policy=ReconnectPolicy()) as session:
        async for event in session:   # runs across a reconnect
            ...

The decisions are the core's (:mod:`millis_proto.reconnect`); this module runs them.

What the event stream shows
---------------------------
The events of every connection, in order, as one stream. A dropped connection's
``ConnectionClosed`` is *not* passed on: in its place comes :class:`Reconnecting`
(attempt, delay, cause). Each failed attempt adds another ``Reconnecting``; a successful
one shows its own ``Connected`` and ``onready`` (``Ready``) followed by :class:`Reconnected`
(new session id, whether it continued, downtime). When reconnecting gives up,
:class:`ReconnectFailed` comes, then the dropped connection's ``ConnectionClosed``, and the
iterator raises :class:`~millis_proto.ConnectionLost` saying why. So, as for a plain
session, the last event is always ``ConnectionClosed``, and only once.

Audio across the gap
--------------------
From the drop until ``Reconnected``: agent audio that had not been played is dropped
(the server will not resend it; counted in ``Reconnecting.dropped_playback_samples``);
:meth:`pull_playback` hands out silence, so a sink stays on the wall-clock timeline;
:meth:`send_audio` drops the user's audio (counted in ``Reconnected.dropped_user_samples``:
a person would repeat themselves; a test harness needs to know). The old connection ends
with its agent state at idle and the new one starts idle. ``mute`` carries over.

The first connection is opened as usual: if that fails, :class:`ConnectionFailed` is raised
and nothing is retried (there is no session to save yet).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from millis_proto import (
    ABSENT,
    CloseInitiator,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionLost,
    Endpoint,
    Event,
    LocalProtocolError,
    MillisError,
    PlaybackChunk,
    Ready,
    ReconnectFailed,
    Reconnecting,
    SessionEnded,
    StartRequest,
)
from millis_proto.pcm import BYTES_PER_SAMPLE, Buffer
from millis_proto.reconnect import (
    EndKind,
    Reconnector,
    ReconnectPhase,
    ReconnectPolicy,
    SessionEnd,
    classify_close,
    classify_failure,
)

from ._client import DEFAULT_READY_TIMEOUT, ClientSession, ConnectOptions
from ._errors import sentence
from ._queue import DEFAULT_MAX_QUEUED_EVENTS, EventQueue
from ._session import DEFAULT_DISCONNECT_TIMEOUT, background

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Opener", "ReconnectingSession", "connect_reconnecting", "open_reconnecting"]

#: Opens one connection for a request: ``lambda request: connect(url, request, **options)``.
Opener = Callable[[StartRequest], AbstractAsyncContextManager[ClientSession]]
#: Draws the backoff's jitter: a float in [0, 1).
Entropy = Callable[[], float]


class ReconnectingSession:
    """One conversation over as many connections as it takes; see the module docstring.

    Has the methods of :class:`~transports._client.ClientSession`. Extra read-only
    counters: :attr:`reconnects`, :attr:`dropped_playback_samples`,
    :attr:`dropped_user_samples`; :attr:`reconnecting` is True during a gap. Not created
    directly: use :func:`connect_reconnecting` or :func:`open_reconnecting`.
    """

    def __init__(
        self,
        opener: Opener,
        reconnector: Reconnector,
        *,
        entropy: Entropy,
        max_queued_events: int,
        disconnect_timeout: float,
    ) -> None:
        self._opener = opener
        self._reconnector = reconnector
        self._entropy = entropy
        self._queue = EventQueue(max_queued_events)
        self._disconnect_timeout = disconnect_timeout
        self._inner: ClientSession | None = None  # the newest connection's session
        self._live = False  # the newest connection has had its onready (or is the first)
        self._session_ended = False  # an onsessionended arrived on the live connection
        self._closing = False
        self._closed: ConnectionClosed | None = None  # the final one, once the call is over
        self._error: MillisError | None = None
        self._inner_error: MillisError | None = None  # how the newest connection ended
        self._dropped: ConnectionClosed | None = None  # the drop being repaired
        self._gap_scope: anyio.CancelScope | None = None
        self._done = anyio.Event()
        self._muted = False
        self._gap_user_samples = 0
        #: Reconnects that succeeded so far.
        self.reconnects = 0
        #: Agent audio dropped at drops because it had not been played yet (samples).
        self.dropped_playback_samples = 0
        #: User audio given during gaps, not sent (samples).
        self.dropped_user_samples = 0

    # --- the session API ---------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The current session id (the newest ``onready``'s)."""
        inner = self._inner
        if self._live and inner is not None and inner.session_id is not None:
            return inner.session_id
        return self._reconnector.session_id

    async def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> str | None:
        """Wait for the first connection's ``onready``; return the session id.

        As :meth:`ClientSession.wait_ready <transports._client.ClientSession.wait_ready>`
        (a first connection that ends before ``onready`` is not retried, so its error is
        raised).
        """
        assert self._inner is not None  # set before the session is handed out
        await self._inner.wait_ready(timeout)
        return self.session_id

    @property
    def reconnecting(self) -> bool:
        """True from a drop until :class:`Reconnected` (or the end)."""
        return self._reconnector.phase in (ReconnectPhase.WAITING, ReconnectPhase.CONNECTING)

    @property
    def closed(self) -> ConnectionClosed | None:
        """The final ``ConnectionClosed`` once the whole call is over."""
        return self._closed

    @property
    def client(self) -> Any:
        """The newest connection's client machine (agent state, playback buffer)."""
        assert self._inner is not None  # set before the session is handed out
        return self._inner.client

    @property
    def dropped_events(self) -> int:
        """Events dropped because the application read too slowly."""
        return self._queue.dropped

    async def send_audio(self, pcm: Buffer) -> None:
        """Send user audio; during a gap it is dropped and counted (see the module doc)."""
        inner = self._usable()
        if inner is not None:
            try:
                await inner.send_audio(pcm)
                return
            except MillisError:
                if not self._will_retry(inner):
                    raise
        samples = len(memoryview(pcm).cast("B")) // BYTES_PER_SAMPLE
        self._gap_user_samples += samples
        self.dropped_user_samples += samples

    async def flush_audio(self) -> None:
        """Send the re-chunker's short last frame (nothing during a gap)."""
        await self._forward(lambda s: s.flush_audio())

    async def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom message; during a gap it is dropped."""
        await self._forward(lambda s: s.send_message(method, data))

    async def send_ping(self) -> None:
        """Send a Millis ``ping`` (nothing during a gap)."""
        await self._forward(lambda s: s.send_ping())

    def mute(self) -> None:
        """Send zeros instead of the application's audio; carries over to new connections."""
        self._muted = True
        if self._inner is not None:
            self._inner.mute()

    def unmute(self) -> None:
        """Send the application's audio again."""
        self._muted = False
        if self._inner is not None:
            self._inner.unmute()

    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        """Take ``n_samples`` for the speaker; silence during a gap."""
        inner = self._inner
        if inner is None or not self._live:
            if n_samples < 0:
                raise ValueError("n_samples must not be negative")
            return PlaybackChunk(bytes(n_samples * BYTES_PER_SAMPLE), 0, False)
        return inner.pull_playback(n_samples)

    async def next_event(self) -> Event | None:
        """The next event; ``None`` at the end, or the error of an abnormal end."""
        event = await self._queue.get()
        if event is None and self._error is not None:
            raise self._error
        return event

    def events(self) -> AsyncIterator[Event]:
        """Iterate over the events across reconnects (see the module docstring)."""
        return self

    # A plain async iterator, not an async generator: abandoning it leaves nothing behind.
    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """End the call: close the live connection (or stop reconnecting). Idempotent."""
        self._closing = True
        if self._gap_scope is not None:
            self._gap_scope.cancel()
        inner = self._inner
        if inner is not None:
            await inner.aclose()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._disconnect_timeout):
            await self._done.wait()

    # --- inside --------------------------------------------------------------------------

    def _usable(self) -> ClientSession | None:
        """The live connection, or None during a gap; raises once the call is over."""
        if self._done.is_set():
            if self._error is not None:
                raise self._error
            raise LocalProtocolError("cannot send: the session has ended.")
        return self._inner if self._live else None

    def _will_retry(self, inner: ClientSession) -> bool:
        """Whether a send that just failed on ``inner`` is part of a drop we will repair."""
        closed = inner.closed
        if closed is None or self._closing:
            return False
        return classify_close(closed, session_ended=self._session_ended).kind.retryable

    async def _forward(self, call: Callable[[ClientSession], Any]) -> None:
        inner = self._usable()
        if inner is None:
            return
        try:
            await call(inner)
        except MillisError:
            if not self._will_retry(inner):
                raise

    async def _supervise(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run connection after connection until the call is over (the one owner task)."""
        r = self._reconnector
        request = r.request
        first: anyio.abc.TaskStatus[None] | None = task_status
        try:
            while True:
                outcome = await self._connection(request, first)
                first = None
                if outcome is None:
                    return
                if not await self._wait(outcome):
                    self._finish(self._lost("closed during a reconnect"))
                    return
                request = r.attempt(anyio.current_time())
        finally:
            # ``_live`` stays as it is: after a final end the last connection's buffered
            # goodbye can still be pulled (after a drop it was dropped already).
            self._queue.end()
            self._done.set()

    async def _connection(
        self, request: StartRequest, task_status: anyio.abc.TaskStatus[None] | None
    ) -> Reconnecting | None:
        """Open one connection, pump it until it ends, and decide what comes next.

        ``task_status`` is given for the first connection only: its failure propagates.
        Returns the :class:`Reconnecting` to act on, or None when the call is over.
        """
        r = self._reconnector
        try:
            with anyio.CancelScope(deadline=r.deadline() or math.inf) as scope:
                if task_status is None:
                    self._gap_scope = scope  # aclose() stops a reconnect attempt too
                async with self._opener(request) as inner:
                    scope.deadline = math.inf  # open: the ready timeout bounds the rest
                    self._start_connection(inner, first=task_status is not None)
                    if task_status is not None:
                        task_status.started()
                    if self._closing:
                        await inner.aclose()
                    closed, end = await self._pump(inner)
                    # Decided before leaving the connection's block, whose close may take
                    # a while: the application hears of the drop at once.
                    return self._decide(end, closed)
        except ConnectionFailed as exc:
            if task_status is not None:
                raise
            end = classify_failure(exc.kind, str(exc), status_code=exc.status_code)
            return self._decide(end)
        finally:
            self._gap_scope = None
        limit = r.policy.max_downtime
        detail = f"no connection within the {limit:g} s downtime limit"
        return self._decide(SessionEnd(kind=EndKind.CONNECT_FAILED, detail=detail))

    def _decide(
        self, end: SessionEnd, closed: ConnectionClosed | None = None
    ) -> Reconnecting | None:
        """Report how a connection (or an attempt) ended; the Reconnecting to act on."""
        r = self._reconnector
        if self._closing:  # the application ended the call
            self._finish(closed or self._lost("closed during a reconnect"))
            return None
        if r.phase is ReconnectPhase.LIVE:
            self._dropped = closed  # a new drop (the first, or after a reconnect)
        lost_playback = self._drop_playback() if end.kind.retryable else 0
        outcome = r.ended(
            end, anyio.current_time(), self._entropy(), dropped_playback_samples=lost_playback
        )
        if outcome is None:  # a live session ended for good (normally or not)
            assert closed is not None
            self._finish(closed, self._inner_error)
            return None
        self._queue.put(outcome)
        if isinstance(outcome, ReconnectFailed):
            self._give_up(outcome)
            return None
        return outcome

    def _start_connection(self, inner: ClientSession, *, first: bool) -> None:
        self._inner = inner
        self._live = first  # a reconnect attempt is live from its onready on
        self._session_ended = False
        if self._muted:
            inner.mute()

    async def _pump(self, inner: ClientSession) -> tuple[ConnectionClosed | None, SessionEnd]:
        """Forward one connection's events until it closes; the gap ends at its onready."""
        r = self._reconnector
        policy = r.policy
        ready_by = math.inf
        if r.phase is ReconnectPhase.CONNECTING:
            ready_by = anyio.current_time() + policy.ready_timeout
            ready_by = min(ready_by, r.deadline() or ready_by)
        while True:
            event: Event | None = None
            with anyio.move_on_at(math.inf if self._live else ready_by):
                event = await inner.next_event()  # never past ConnectionClosed: no raise
            if event is None:
                if not self._live:
                    wait = f"{policy.ready_timeout:g} s"
                    return None, SessionEnd(kind=EndKind.NO_READY, detail=f"no onready in {wait}")
                return None, SessionEnd(kind=EndKind.LOST, detail="the connection ended")
            if isinstance(event, ConnectionClosed):
                try:  # after its ConnectionClosed a session returns None or raises its error
                    await inner.next_event()
                    self._inner_error = None
                except MillisError as exc:
                    self._inner_error = exc
                end = classify_close(
                    event, session_ended=self._session_ended, continuing=r.continuing
                )
                return event, end
            if isinstance(event, SessionEnded):
                self._session_ended = True
            self._queue.put(event)
            if isinstance(event, Ready):
                reconnected = r.ready(
                    event.session_id,
                    anyio.current_time(),
                    dropped_user_samples=self._gap_user_samples,
                )
                if reconnected is not None:
                    self._live = True
                    self._gap_scope = None  # from now on aclose() closes the connection
                    self._gap_user_samples = 0
                    self.reconnects += 1
                    self._queue.put(reconnected)

    def _drop_playback(self) -> int:
        """At a drop: throw away the agent audio not yet played, and count it."""
        self._live = False
        inner = self._inner
        if inner is None:
            return 0
        dropped: int = inner.client.playback.clear()
        self.dropped_playback_samples += dropped
        return dropped

    async def _wait(self, outcome: Reconnecting) -> bool:
        """Sleep the backoff delay; False when the application closed meanwhile."""
        if self._closing:
            return False
        with anyio.CancelScope() as scope:
            self._gap_scope = scope
            await anyio.sleep(outcome.delay)
        self._gap_scope = None
        return not scope.cancelled_caught and not self._closing

    def _lost(self, reason: str) -> ConnectionClosed:
        """The ConnectionClosed that ends a call during a gap: the drop's own."""
        if self._dropped is not None:
            return self._dropped
        return ConnectionClosed(code=1006, reason=reason, initiator=CloseInitiator.LOST)

    def _give_up(self, failed: ReconnectFailed) -> None:
        said = f"{failed.reason} (last: {failed.cause})"
        error = ConnectionLost(sentence(f"the connection dropped and reconnecting failed: {said}"))
        self._finish(self._lost(failed.cause), error)

    def _finish(self, closed: ConnectionClosed, error: MillisError | None = None) -> None:
        self._closed = closed
        self._error = error
        self._queue.put(closed)


@asynccontextmanager
async def open_reconnecting(
    opener: Opener,
    request: StartRequest,
    policy: ReconnectPolicy,
    *,
    entropy: Entropy | None = None,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
) -> AsyncIterator[ReconnectingSession]:
    """A :class:`ReconnectingSession` whose connections come from ``opener(request)``.

    ``entropy`` draws the backoff jitter (default ``random.random``; pass
    ``lambda: 0.0`` for exact delays). Raises what the first ``opener`` raises.
    """
    session = ReconnectingSession(
        opener,
        Reconnector(policy, request),
        entropy=entropy or random.random,
        max_queued_events=max_queued_events,
        disconnect_timeout=disconnect_timeout,
    )
    async with background() as group:
        await group.start(session._supervise)
        try:
            yield session
        finally:
            await session.aclose()
            group.cancel_scope.cancel()


def connect_reconnecting(
    url: str | Endpoint,
    request: StartRequest,
    *,
    policy: ReconnectPolicy,
    connect: Callable[..., AbstractAsyncContextManager[ClientSession]] | None = None,
    entropy: Entropy | None = None,
    **options: Unpack[ConnectOptions],
) -> AbstractAsyncContextManager[ReconnectingSession]:
    """Open a session to ``url`` that reconnects as ``policy`` says.

    ``connect`` is the transport's ``connect`` (default :func:`transports.trio.connect`;
    :func:`transports.anyio.connect` for asyncio); ``options`` go to every connect.
    """
    if connect is None:
        from .trio import connect as trio_connect

        connect = trio_connect
    opener_connect = connect
    return open_reconnecting(
        lambda req: opener_connect(url, req, **options),
        request,
        policy,
        entropy=entropy,
        max_queued_events=options.get("max_queued_events") or DEFAULT_MAX_QUEUED_EVENTS,
        disconnect_timeout=options.get("disconnect_timeout") or DEFAULT_DISCONNECT_TIMEOUT,
    )
