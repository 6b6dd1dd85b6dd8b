"""Millis sessions for anyio code — the same API as :mod:`transports.trio`, on any backend.

Runs on every anyio backend (asyncio and trio)::

    import anyio
    from transports.anyio import connect

    async def main():
        async with connect(US_WEST, request) as session:
            async for event in session:
                print(event)

    anyio.run(main)  # asyncio; backend="trio" works too

:func:`connect` opens the running backend's native session (:mod:`transports.asyncio` or
:mod:`transports.trio`): the cheap ones, whose sends never wait for the network. Over a
stream of your own (a memory pipe, a proxy), :func:`connect_stream` runs the session on
anyio's stream interface instead.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from millis_proto import EU_WEST, US_WEST, Endpoint, StartRequest

from ._client import ClientSession, ConnectOptions, open_client

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "EU_WEST",
    "US_WEST",
    "ClientSession",
    "ConnectOptions",
    "connect",
    "connect_generic",
    "connect_stream",
]


def connect(
    url: str | Endpoint, request: StartRequest, **options: Unpack[ConnectOptions]
) -> AbstractAsyncContextManager[ClientSession]:
    """Open a Millis session on the running anyio backend; see :func:`transports.trio.connect`.

    Same arguments, same session API, same errors. The session is the backend's native
    one (:class:`transports.asyncio.AsyncioSession` on asyncio,
    :class:`transports.trio.TrioSession` on trio), chosen when the block is entered.
    """
    return _native(url, request, options)


@asynccontextmanager
async def _native(
    url: str | Endpoint, request: StartRequest, options: ConnectOptions
) -> AsyncIterator[ClientSession]:
    # The backend is whichever loop runs this task: trio's (trio is imported by then, and
    # in_trio_run says so), else asyncio's. The other transport is never imported.
    trio = sys.modules.get("trio")
    native: Callable[..., AbstractAsyncContextManager[ClientSession]]
    if trio is not None and trio.lowlevel.in_trio_run():
        from .trio import connect as native
    else:
        from .asyncio import connect as native
    async with native(url, request, **options) as session:
        yield session


def connect_generic(
    url: str | Endpoint, request: StartRequest, **options: Unpack[ConnectOptions]
) -> AbstractAsyncContextManager[ClientSession]:
    """Open a Millis session over ``anyio.connect_tcp`` and anyio's stream interface.

    What :func:`connect` did before it chose the backend's native session: the same
    session as :func:`connect_stream` (sends wait while the network cannot take more).
    Kept for code that depends on that; it costs about three times the CPU per session.
    """
    return open_client(url, request, _open_stream, **options)


def connect_stream(
    stream: anyio.abc.ByteStream,
    request: StartRequest,
    *,
    url: str | Endpoint = "ws://millis.local/millis",
    **options: Unpack[ConnectOptions],
) -> AbstractAsyncContextManager[ClientSession]:
    """Run a Millis session over a byte stream that is already connected.

    For in-memory pipes (:mod:`transports.memory`), proxies and tests. The stream is used
    as it is — wrap it in TLS first if it needs TLS — and ``url`` only fills the handshake's
    ``Host`` header and path. Options, session and errors as for :func:`connect`; the
    stream is closed when the session ends. Whether the stream is safe for the key is the
    caller's call, so a ``ws://`` ``url`` is not refused here (``allow_insecure``).
    """
    options.setdefault("allow_insecure", True)

    async def already_open(
        endpoint: Endpoint, context: ssl.SSLContext | None
    ) -> anyio.abc.ByteStream:
        return stream

    return open_client(url, request, already_open, **options)


async def _open_stream(endpoint: Endpoint, context: ssl.SSLContext | None) -> anyio.abc.ByteStream:
    if context is None:
        return await anyio.connect_tcp(endpoint.host, endpoint.port)
    # tls_standard_compatible: a peer that vanishes without close_notify is reported as a
    # broken stream (connection lost), not mistaken for a clean end of stream.
    return await anyio.connect_tcp(
        endpoint.host,
        endpoint.port,
        ssl_context=context,
        tls_hostname=endpoint.host,
        tls_standard_compatible=True,
    )
