"""A blocking API for scripts and notebooks, on anyio's ``BlockingPortal``.

The session runs on an event loop in a background thread (trio by default); every call
here is handed to that loop with ``portal.call``, so the core is only ever touched from
one thread and the reader keeps answering pings while your code blocks or thinks::

    with connect_blocking(US_WEST, StartRequest(public_key=key, agent_id=agent)) as s:
        s.send_audio(pcm)
        for event in s.events(timeout=10):
            print(event)

Leaving the ``with`` block closes the session (close handshake, bounded) and stops the
thread. Errors are the same ``MillisError`` family as the async API. With
``reconnect=ReconnectPolicy(...)`` a dropped connection is reconnected with session
continuation, as :mod:`transports.reconnect` describes; the events iterate on across it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from millis_proto import ABSENT, Endpoint, Event, PlaybackChunk, ReconnectPolicy, StartRequest

from ._client import DEFAULT_READY_TIMEOUT, ClientSession, ConnectOptions
from .anyio import connect
from .reconnect import ReconnectingSession, connect_reconnecting

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["BlockingSession", "connect_blocking"]


class BlockingSession:
    """A :class:`~transports._client.ClientSession` driven from ordinary code."""

    def __init__(
        self, portal: BlockingPortal, session: ClientSession | ReconnectingSession
    ) -> None:
        self._portal = portal
        self._session = session
        self._events = session.events()

    @property
    def session_id(self) -> str | None:
        """The server's session id, once ``onready`` arrived."""
        return self._portal.call(lambda: self._session.session_id)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> str | None:
        """Block until the server's ``onready``; return the session id.

        See :meth:`ClientSession.wait_ready` (``connect_blocking`` does not wait for it);
        raises :class:`~millis_proto.ConnectionFailed` (kind ``TIMEOUT``) after
        ``timeout`` seconds.
        """
        return self._portal.call(self._session.wait_ready, timeout)

    def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Send user audio (s16le, 16 kHz, mono, any size)."""
        self._portal.call(self._session.send_audio, bytes(pcm))

    def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method", "data"}`` message."""
        self._portal.call(self._session.send_message, method, data)

    def mute(self) -> None:
        """Send zeros instead of the audio given, at the same cadence."""
        self._portal.call(self._session.mute)

    def unmute(self) -> None:
        """Send the audio given again."""
        self._portal.call(self._session.unmute)

    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        """Take ``n_samples`` of agent audio for a speaker (zeros while paused or empty)."""
        return self._portal.call(self._session.pull_playback, n_samples)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: no limit).

        Returns ``None`` when the session has ended; raises :class:`TimeoutError` when
        nothing arrived in time.
        """
        return self._portal.call(self._next, math.inf if timeout is None else timeout)

    async def _next(self, timeout: float) -> Event | None:
        with anyio.move_on_after(timeout):
            try:
                return await self._events.__anext__()
            except StopAsyncIteration:
                return None
        raise TimeoutError(f"no event within {timeout} s")

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate over events until the session ends (or ``timeout`` passes between two)."""
        while (event := self.next_event(timeout)) is not None:
            yield event

    def close(self) -> None:
        """Close the session (idempotent); ``connect_blocking``'s ``with`` also does this."""
        self._portal.call(self._session.aclose)


@contextmanager
def connect_blocking(
    url: str | Endpoint,
    request: StartRequest,
    *,
    backend: str = "trio",
    reconnect: ReconnectPolicy | None = None,
    **options: Unpack[ConnectOptions],
) -> Iterator[BlockingSession]:
    """Open a session from blocking code; see the module docstring.

    ``backend`` is the event loop run in the background thread ("trio" or "asyncio");
    ``reconnect`` turns on reconnecting (off by default); ``options`` are those of the
    async ``connect``. Raises the ``MillisError`` family.
    """
    opening: AbstractAsyncContextManager[ClientSession | ReconnectingSession]
    if reconnect is None:
        opening = connect(url, request, **options)
    else:
        opening = connect_reconnecting(url, request, policy=reconnect, connect=connect, **options)
    with start_blocking_portal(backend) as portal:
        wrapped: AbstractContextManager[ClientSession | ReconnectingSession]
        wrapped = portal.wrap_async_context_manager(opening)
        with wrapped as session:
            yield BlockingSession(portal, session)
