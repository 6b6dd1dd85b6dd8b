"""An in-memory transport: a client and a server session in one process, no sockets.

:func:`memory_stream_pair` gives two connected anyio byte streams built on memory object
streams; :func:`connect_in_memory` runs a client session against a server handler over
them. Every timeout is an anyio timeout and the core's clock is the event loop's, so under
``trio.testing.MockClock(autojump_threshold=0)`` a whole conversation runs in virtual time,
deterministically and instantly::

    async with connect_in_memory(handler, request) as session:
        async for event in session: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from millis_proto import ClientConfig, ClientConnection, MillisClient, StartRequest
from millis_proto.config import DEFAULT_MAX_MESSAGE_BYTES

from ._client import ClientSession, open_session
from ._queue import DEFAULT_MAX_QUEUED_EVENTS
from ._session import DEFAULT_DISCONNECT_TIMEOUT, background, check_timeout, running
from .server import Handler, serve_stream

__all__ = [
    "DEFAULT_BUFFERED_WRITES",
    "MEMORY_URL",
    "MemoryByteStream",
    "connect_in_memory",
    "memory_stream_pair",
]

#: Writes one direction holds before the writer waits (the in-memory "socket buffer").
DEFAULT_BUFFERED_WRITES = 64
#: The URL the in-memory client asks for (it only fills the Host header and path).
MEMORY_URL = "ws://millis.memory/millis"


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe; behaves like a TCP socket.

    After the peer closes, :meth:`receive` raises ``EndOfStream`` once the data is read
    and :meth:`send` raises ``BrokenResourceError``; after closing this end both raise
    ``ClosedResourceError`` (also in a task already waiting).
    """

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._rest = b""  # what a short read left of the last write

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._rest:
            self._rest = await self._receive.receive()
        else:
            await anyio.lowlevel.checkpoint()
        data, self._rest = self._rest[:max_bytes], self._rest[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if item:
            await self._send.send(bytes(item))
        else:
            await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        self._send.close()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await anyio.lowlevel.checkpoint()


def memory_stream_pair(
    buffered_writes: int = DEFAULT_BUFFERED_WRITES,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected byte streams: what one sends, the other receives."""
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](buffered_writes)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](buffered_writes)
    return (
        MemoryByteStream(a_to_b_send, b_to_a_receive),
        MemoryByteStream(b_to_a_send, a_to_b_receive),
    )


@asynccontextmanager
async def connect_in_memory(
    handler: Handler,
    request: StartRequest,
    *,
    config: ClientConfig | None = None,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
) -> AsyncIterator[ClientSession]:
    """A client session talking to ``handler`` (a server handler) in this process.

    The same :class:`ClientSession` as over a socket. On the way out the client closes,
    the server side gets ``disconnect_timeout`` to finish, then is cancelled.
    """
    check_timeout(connect_timeout, "connect_timeout")
    client_stream, server_stream = memory_stream_pair()
    conn = ClientConnection(
        MillisClient(request, config), MEMORY_URL, max_message_bytes=max_message_bytes
    )
    server_done = anyio.Event()

    async def run_server() -> None:
        try:
            await serve_stream(
                server_stream,
                handler,
                handshake_timeout=connect_timeout,
                disconnect_timeout=disconnect_timeout,
                max_message_bytes=max_message_bytes,
                max_queued_events=max_queued_events,
            )
        finally:
            server_done.set()

    async def open_stream() -> anyio.abc.ByteStream:
        return client_stream

    async with background() as group:
        group.start_soon(run_server)
        try:
            session = await open_session(
                conn,
                open_stream,
                connect_timeout=connect_timeout,
                disconnect_timeout=disconnect_timeout,
                max_queued_events=max_queued_events,
            )
            async with running(session):
                yield session
            with anyio.move_on_after(disconnect_timeout, shield=True):
                await server_done.wait()
        finally:
            group.cancel_scope.cancel()

