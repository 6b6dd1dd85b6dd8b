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

Linux only (``select.epoll``); elsewhere, and over TLS, each session keeps its own reader
task. The set is the run's (a ``RunVar``), created by the first session that needs it; its
task lives until the run ends and closes the epoll descriptor then.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable

import trio

__all__ = ["AVAILABLE", "TASK_NAME", "SharedReader", "shared_reader"]

#: Whether this platform has epoll (Linux). Tests switch it off to cover the other path.
AVAILABLE = hasattr(select, "epoll")

#: The shared reader task's name (it lives as long as the run, like trio's own tasks).
TASK_NAME = "millis_proto shared reader"

_RUN_READER: trio.lowlevel.RunVar[SharedReader] = trio.lowlevel.RunVar("millis_proto_reader")


class SharedReader:
    """The sockets of a trio run's sessions, and the task that reads them when ready.

    ``add(fd, on_readable)`` registers a socket; its ``on_readable()`` is then called (from
    this reader's task) whenever the socket has bytes or has reached its end, until
    ``discard(fd)``. ``on_readable`` must not raise, and must read, or discard the socket:
    the set is level-triggered.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Read ``fd`` from now on: ``on_readable()`` when it is readable."""
        if fd in self._readers:  # a socket closed without discard(): its number is reused
            self.discard(fd)
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = on_readable

    def discard(self, fd: int) -> None:
        """Stop reading ``fd`` (before it is closed: descriptors are reused). Idempotent."""
        if self._readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # already closed
                self._epoll.unregister(fd)

    async def run(self) -> None:
        """Until the run ends: wait for any socket, then serve every ready one."""
        epoll = self._epoll
        poll = epoll.poll
        readers = self._readers
        wait_readable = trio.lowlevel.wait_readable
        try:
            while True:
                await wait_readable(epoll)
                for fd, _mask in poll(0):
                    on_readable = readers.get(fd)
                    if on_readable is not None:
                        on_readable()
        finally:
            readers.clear()
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
