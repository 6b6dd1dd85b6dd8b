"""One reader for all the plain-socket trio sessions of a run: a shared ``epoll`` set.

Why it exists: a trio task that waits for its own socket pays, for every frame the agent
sends (50 a second per session), a registration with trio's I/O manager (an ``epoll_ctl``
system call), a reschedule and a task switch — more than handling the frame itself. With
hundreds of sessions in one process that was the largest cost left after the application's
own pacing, and what held the sessions per core of a trio client below an asyncio one's.

Here each session's socket is registered once, in one ``epoll`` set of our own. An epoll
descriptor is itself readable while any socket in it is, so trio waits for that one
descriptor, and one system task (per trio run) reads every ready socket in one go and hands
each session its bytes, exactly as the session's own reader would (see
:meth:`transports.trio.TrioSession._on_readable`). Level-triggered: a socket that still has
bytes after one read is reported again on the next round.

The same task runs the sessions' timers (the core's deadlines: liveness ping, pong timeout,
close reply; the write bound), from one heap: its wait for the epoll descriptor is bounded
by the earliest deadline. So a session on a plain socket has one task of its own, the
writer, parked unless a write could not complete at once — fewer objects per session for
every garbage collection to walk, and no wake-ups but its own writes.

Linux only (``select.epoll``); elsewhere, and over TLS, each session keeps its own reader
task. The set is the run's (a ``RunVar``), created by the first session that needs it; its
task lives until the run ends and closes the epoll descriptor then.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import select
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Protocol

import trio

__all__ = ["AVAILABLE", "TASK_NAME", "SharedReader", "shared_reader"]

#: Whether this platform has epoll (Linux). Tests switch it off to cover the other path.
AVAILABLE = hasattr(select, "epoll")

#: The shared reader task's name (it lives as long as the run, like trio's own tasks).
TASK_NAME = "millis_proto shared reader"

_RUN_READER: trio.lowlevel.RunVar[SharedReader] = trio.lowlevel.RunVar("millis_proto_reader")


class Timed(Protocol):
    """What the shared reader runs timers for (a session)."""

    #: The deadline the session's timer is set to; an entry for any other is stale.
    _timer_at: float

    def _shared_timer(self) -> None:
        """The deadline has come (called from the reader's task; must not raise)."""


class SharedReader:
    """The sockets of a trio run's sessions, and the task that reads them when ready.

    ``add(fd, on_readable, session)`` registers a socket; its ``on_readable()`` is then
    called (from this reader's task) whenever the socket has bytes or has reached its end,
    until ``discard(fd, session)``. ``on_readable`` must not raise, and must read, or discard the
    socket: the set is level-triggered. ``schedule(deadline, fd, session)`` has
    ``session._shared_timer()`` called once the run's clock reaches ``deadline``, if that
    is still the session's ``_timer_at`` then and its socket is still read here.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._sessions: dict[int, Timed] = {}
        # (deadline, order, fd, session), a heap; stale entries are skipped when popped.
        self._timers: list[tuple[float, int, int, Timed]] = []
        self._order = itertools.count()  # ties of deadline: first scheduled, first fired
        self._wait: trio.CancelScope | None = None  # the task's wait, while it waits

    def add(self, fd: int, on_readable: Callable[[], None], session: Timed) -> None:
        """Read ``fd`` from now on (``on_readable()`` when it is readable), and run
        ``session``'s timers."""
        stale = self._sessions.get(fd)
        if stale is not None:  # a socket closed without discard(): its number is reused
            self.discard(fd, stale)
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable
        self._sessions[fd] = session

    def discard(self, fd: int, session: Timed) -> None:
        """Stop reading ``fd`` for ``session`` (before it is closed: descriptors are
        reused) and drop its timers. Idempotent; nothing if ``fd`` is another's now."""
        if self._sessions.get(fd) is not session:
            return
        del self._sessions[fd]
        del self._readers[fd]
        with contextlib.suppress(OSError, ValueError):  # already closed
            self._epoll.unregister(fd)
        timers = self._timers
        if len(timers) > 2 * len(self._sessions) + 16:
            # Entries of ended sessions wait for their deadline (up to the liveness timeout)
            # before they are skipped; past this many, drop them now, so that neither the
            # heap nor the sessions it refers to outlive the live sessions by much.
            sessions = self._sessions
            timers[:] = [entry for entry in timers if sessions.get(entry[2]) is entry[3]]
            heapify(timers)

    def schedule(self, deadline: float, fd: int, session: Timed) -> None:
        """Call ``session._shared_timer()`` at ``deadline`` (see the class docstring)."""
        if deadline == math.inf or self._sessions.get(fd) is not session:
            return
        heappush(self._timers, (deadline, next(self._order), fd, session))
        wait = self._wait
        if wait is not None and deadline < wait.deadline:
            wait.deadline = deadline

    def _fire(self, now: float) -> None:
        timers = self._timers
        sessions = self._sessions
        while timers and timers[0][0] <= now:
            deadline, _, fd, session = heappop(timers)
            if sessions.get(fd) is session and session._timer_at == deadline:
                session._shared_timer()

    async def run(self) -> None:
        """Until the run ends: wait for any socket or the next deadline, then serve every
        ready socket and fire every due timer."""
        epoll = self._epoll
        poll = epoll.poll
        readers = self._readers
        timers = self._timers
        wait_readable = trio.lowlevel.wait_readable
        clock = trio.lowlevel.current_clock().current_time
        try:
            while True:
                # One cancel scope per deadline, not per wake-up: schedule() moves its
                # deadline earlier when a session needs it; when it passes, the wait is
                # cancelled, the due timers fire, and the next scope takes the next one.
                with trio.CancelScope(deadline=timers[0][0] if timers else math.inf) as wait:
                    self._wait = wait
                    while True:
                        await wait_readable(epoll)
                        for fd, _mask in poll(0):
                            on_readable = readers.get(fd)
                            if on_readable is not None:
                                on_readable()
                self._wait = None
                self._fire(clock())
        finally:
            self._wait = None
            readers.clear()
            self._sessions.clear()
            timers.clear()
            epoll.close()


def shared_reader() -> SharedReader:
    """The current trio run's shared reader, started on first use."""
    try:
        return _RUN_READER.get()
    except LookupError:
        reader = SharedReader()
        _RUN_READER.set(reader)
        trio.lowlevel.spawn_system_task(reader.run, name=TASK_NAME)
        return reader
