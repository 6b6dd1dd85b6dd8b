"""The bounded event queue between a session's reader task and the application.

Overflow policy
---------------
The reader must never wait for the application (trio-websocket #65: a full queue stalls the
reader and pings go unanswered), so :meth:`EventQueue.put` never blocks. When the queue
holds ``max_events`` events, the **oldest** queued event is dropped to make room: an
application that fell behind sees the most recent state (transcripts, agent state) rather
than a stale backlog. The dropped events are replaced by one :class:`EventsDropped` event
with their count, delivered before the newer events, so the gap is never silent. The final
``ConnectionClosed`` event is the newest one put, so it is never the one dropped. With
``max_bytes`` the audio the queue holds (the ``data`` of audio events, e.g. a client's
uplink on a server) is bounded the same way: the oldest events go until it fits. Agent
audio is not at risk: it always goes to the client's playback buffer, and its
``AgentAudio`` events are only a copy (``ClientConfig(emit_audio_events=False)`` turns
them off).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from millis_proto import ConfigError, Event
from millis_proto._frozen import frozen_dataclass

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = ["DEFAULT_MAX_QUEUED_EVENTS", "EventQueue", "EventsDropped", "check_count"]

#: Default bound of events waiting for the application. Agent audio arrives faster than
#: real time in 20-40 ms frames, so this holds a long answer's worth of ``AgentAudio``.
DEFAULT_MAX_QUEUED_EVENTS = 4096


def check_count(value: int, name: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer.")


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped(Event):
    """``count`` events were dropped because the application read too slowly.

    Delivered where the dropped events would have been (see the overflow policy in
    :mod:`transports._queue`).
    """

    name: ClassVar[str] = "events_dropped"
    count: int


class EventQueue:
    """Events from the reader to the application: bounded, never blocking the reader.

    ``put`` and ``end`` are called by the session; ``get`` by the application, from any
    number of tasks. Events put after ``end`` are ignored: the session is over.
    ``new_event`` makes the wake-up primitive (anything with ``set``, ``is_set`` and an
    awaitable ``wait``: ``trio.Event``, ``asyncio.Event``); the default is ``anyio.Event``.
    """

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        *,
        new_event: Callable[[], Any] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        check_count(max_events, "max_queued_events")
        if max_bytes is not None:
            check_count(max_bytes, "max_queued_bytes")
        #: Bound of the audio bytes held (``None``: only the event count is bounded).
        self.max_bytes = max_bytes
        self._bytes = 0
        if new_event is None:
            import anyio  # only the anyio sessions need it

            new_event = anyio.Event
        self._new_event = new_event
        self.max_events = max_events
        self._events: deque[Event] = deque()
        self._unreported = 0  # dropped, not yet announced by an EventsDropped
        self._ended = False
        self._wakeup = new_event()
        #: Events dropped by the overflow policy since the session began.
        self.dropped = 0

    def put(self, event: Event) -> None:
        """Queue ``event``; when full, drop the oldest event. Never blocks."""
        if self._ended:
            return
        size = _audio_bytes(event)
        if len(self._events) >= self.max_events:
            self._drop_oldest()
        if self.max_bytes is not None:
            while self._events and self._bytes + size > self.max_bytes:
                self._drop_oldest()
        self._events.append(event)
        self._bytes += size
        self._wakeup.set()

    def _drop_oldest(self) -> None:
        self._bytes -= _audio_bytes(self._events.popleft())
        self._unreported += 1
        self.dropped += 1

    def end(self) -> None:
        """No more events will come: ``get`` returns ``None`` once the queue is empty."""
        self._ended = True
        self._wakeup.set()

    async def get(self) -> Event | None:
        """Wait for the next event; ``None`` once the queue has ended and is empty."""
        while True:
            if self._unreported:
                count, self._unreported = self._unreported, 0
                return EventsDropped(count=count)
            if self._events:
                event = self._events.popleft()
                self._bytes -= _audio_bytes(event)
                return event
            if self._ended:
                return None
            # Only replace a spent Event, so every waiting task waits on the same one.
            if self._wakeup.is_set():
                self._wakeup = self._new_event()
            await self._wakeup.wait()


def _audio_bytes(event: Event) -> int:
    """The audio an event carries (its ``data`` when that is bytes), for ``max_bytes``."""
    data = getattr(event, "data", None)
    return len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 0
