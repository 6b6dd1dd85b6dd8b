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
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from millis_proto import StartRequest
from millis_proto.config import DEFAULT_DISCONNECT_TIMEOUT

from ._client import ClientSession, ConnectOptions
from ._session import background, check_timeout
from .anyio import connect_stream
from .server import DEFAULT_HANDSHAKE_TIMEOUT, Handler, serve_stream

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[ClientSession]:
    """A client session talking to ``handler`` (a server handler) in this process.

    The same :class:`ClientSession` as over a socket; ``options`` as for
    :func:`transports.trio.connect` (the TLS ones excepted). On the way out the client
    closes, the server side gets ``disconnect_timeout`` to finish, then is cancelled.
    """
    disconnect_timeout = options.get("disconnect_timeout")
    if disconnect_timeout is None:
        config = options.get("config")
        disconnect_timeout = (
            config.disconnect_timeout if config is not None else DEFAULT_DISCONNECT_TIMEOUT
        )
    check_timeout(disconnect_timeout, "disconnect_timeout")
    check_timeout(handshake_timeout, "handshake_timeout")
    client_stream, server_stream = memory_stream_pair()
    server_done = anyio.Event()

    async def run_server() -> None:
        try:
            await serve_stream(
                server_stream,
                handler,
                handshake_timeout=handshake_timeout,
                disconnect_timeout=disconnect_timeout,
            )
        finally:
            server_done.set()

    async with background() as group:
        group.start_soon(run_server)
        try:
            async with connect_stream(client_stream, request, url=MEMORY_URL, **options) as session:
                yield session
            with anyio.move_on_after(disconnect_timeout, shield=True):
                await server_done.wait()
        finally:
            group.cancel_scope.cancel()
