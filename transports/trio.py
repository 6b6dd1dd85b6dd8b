"""Millis sessions over trio: TCP from ``trio.open_tcp_stream``, TLS from ``trio.SSLStream``.

The primary transport. Everything but opening the stream is shared with the anyio
transport (``transports._client``); this module only adapts trio's streams::

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

import ssl
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import trio

from millis_proto import EU_WEST, US_WEST, Endpoint, StartRequest

from ._client import ClientSession, ConnectOptions, open_client

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EU_WEST", "US_WEST", "ClientSession", "ConnectOptions", "TrioStream", "connect"]


def connect(
    url: str | Endpoint, request: StartRequest, **options: Unpack[ConnectOptions]
) -> AbstractAsyncContextManager[ClientSession]:
    """Open a Millis session to a ``ws://`` or ``wss://`` URL, over trio.

    ``url`` is any WebSocket URL; :data:`US_WEST` is the documented default endpoint and
    :data:`EU_WEST` the European one. ``options`` are those of :class:`ConnectOptions`.
    Use as ``async with connect(url, request) as session:`` — on the way out the session
    is closed with the close handshake (bounded by ``disconnect_timeout``), also when the
    block is cancelled; no task is left behind.

    Raises :class:`~millis_proto.ConfigError` for bad arguments and
    :class:`~millis_proto.ConnectionFailed` when the session cannot be opened; its
    ``kind`` says why (DNS, REFUSED, TLS, TIMEOUT, HANDSHAKE_REJECTED with
    ``status_code``, HANDSHAKE_INVALID, NETWORK). See :class:`ClientSession` for how a
    session ends.
    """
    return open_client(url, request, _open_stream, **options)


async def _open_stream(endpoint: Endpoint, context: ssl.SSLContext | None) -> TrioStream:
    tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    if context is None:
        return TrioStream(tcp)
    # https_compatible=False: a peer that vanishes without close_notify is reported as a
    # broken stream (connection lost), not mistaken for a clean end of stream.
    tls = trio.SSLStream(tcp, context, server_hostname=endpoint.host, https_compatible=False)
    try:
        with _as_anyio_errors():
            await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return TrioStream(tls)


@contextmanager
def _as_anyio_errors() -> Iterator[None]:
    """Re-raise trio's stream errors as anyio's, keeping trio's as the cause."""
    try:
        yield
    except trio.BrokenResourceError as exc:
        raise anyio.BrokenResourceError(str(exc)) from exc
    except trio.ClosedResourceError as exc:
        raise anyio.ClosedResourceError(str(exc)) from exc


class TrioStream(anyio.abc.ByteStream):
    """A trio stream behind anyio's ``ByteStream`` interface, for the shared session code.

    Only the names change: ``receive_some`` → ``receive`` (EOF becomes ``EndOfStream``),
    ``send_all`` → ``send``, and trio's stream errors become anyio's.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        #: The wrapped trio stream.
        self.stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with _as_anyio_errors():
            data = await self.stream.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        with _as_anyio_errors():
            await self.stream.send_all(item)

    async def send_eof(self) -> None:
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise NotImplementedError("this trio stream cannot half-close")
        with _as_anyio_errors():
            await self.stream.send_eof()

    async def aclose(self) -> None:
        with _as_anyio_errors():
            await self.stream.aclose()
