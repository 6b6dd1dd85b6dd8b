"""Thin I/O adapters over the millis_proto core, and the front door for applications.

Start with :class:`Conversation` (:mod:`transports.app`): one call from an audio source
to a sink, with callbacks, ending by itself::

    from millis_proto import StartRequest
    from transports import Conversation

    result = Conversation(
        url, StartRequest(public_key=KEY, agent_id=AGENT),
        source="question.wav", sink="reply.wav",
        on_transcript=print, on_response=print,
    ).wait_for_end()                                  # or: await conversation.run()
    print(result.reason, result.turn_latencies_ms)

For finer control, open a session yourself:

* :mod:`transports.blocking` — ``connect_blocking()`` for scripts and notebooks.
* :mod:`transports.trio` — ``connect()`` over trio TCP/TLS (the primary transport).
* :mod:`transports.asyncio` — the same ``connect()`` on asyncio.
* :mod:`transports.anyio` — the same ``connect()`` for anyio code: it opens the running
  backend's session (trio's or asyncio's); ``connect_stream()`` over a stream of your own.
* :mod:`transports.server` — ``serve()``: accept connections, run a handler per session.
* :mod:`transports.memory` — a client and a server in one process, without sockets.

The adapters make no protocol decisions: they move bytes between a socket and the core's
wire connection, with one reader per session (on trio, one shared by a run's sessions),
and turn I/O failures into the
millis_proto error family. Their errors never carry the public key; for log records,
:class:`RedactingFilter` (:mod:`transports.redaction`). This package imports neither trio
nor asyncio by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import ClientSession, ConnectOptions
    from ._queue import DEFAULT_MAX_QUEUED_EVENTS, EventsDropped
    from .app import Conversation, ConversationResult
    from .redaction import RedactingFilter
    from .server import ServerAddress, ServerSession

#: Where each public name lives. Everything loads when first asked for: a client
#: (``import transports.trio``) does not pay for the serving side or TLS, and the pytest
#: plugin (``transports.pytest_plugin``, loaded by every pytest run) imports nothing of the
#: library until a suite is asked for — so coverage measures the library from the start.
_LAZY = {
    "ClientSession": "._client",
    "ConnectOptions": "._client",
    "DEFAULT_MAX_QUEUED_EVENTS": "._queue",
    "EventsDropped": "._queue",
    "Conversation": ".app",
    "ConversationResult": ".app",
    "RedactingFilter": ".redaction",
    "ServerAddress": ".server",
    "ServerSession": ".server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "DEFAULT_MAX_QUEUED_EVENTS",
    "ClientSession",
    "ConnectOptions",
    "Conversation",
    "ConversationResult",
    "EventsDropped",
    "RedactingFilter",
    "ServerAddress",
    "ServerSession",
]
