"""Thin I/O adapters over the millis_proto core.

* :class:`Conversation` (:mod:`transports.app`) — the front door for applications: one
  call from a source to a sink with callbacks, ending by itself.
* :mod:`transports.trio` — ``connect()`` over trio TCP/TLS (the primary transport).
* :mod:`transports.anyio` — the same ``connect()`` over anyio (asyncio or trio).
* :mod:`transports.server` — ``serve()``: accept connections, run a handler per session.
* :mod:`transports.memory` — a client and a server in one process, without sockets.

The adapters make no protocol decisions: they move bytes between a socket and the core's
wire connection, run one reader task per session, and turn I/O failures into the
millis_proto error family. This package imports neither trio nor asyncio by itself.
"""

from __future__ import annotations

from ._client import ClientSession, ConnectOptions
from ._queue import DEFAULT_MAX_QUEUED_EVENTS, EventsDropped
from .app import Conversation, ConversationResult
from .server import ServerAddress, ServerSession

__all__ = [
    "DEFAULT_MAX_QUEUED_EVENTS",
    "ClientSession",
    "ConnectOptions",
    "Conversation",
    "ConversationResult",
    "EventsDropped",
    "ServerAddress",
    "ServerSession",
]
