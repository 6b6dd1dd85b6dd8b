"""Fault injection for servers: make a network failure happen on purpose (demos, tests).

:func:`drop_after` wraps a :data:`~transports.server.Handler` so that a session's TCP
connection is dropped — no close frame, no TLS close_notify — a fixed time after it
opened. The client sees exactly what a dead Wi-Fi or a recycled load balancer gives it: a
lost connection (1006). ``millis-proto serve --drop-after SECONDS`` uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from millis_proto import ConfigError

from .server import Handler, ServerSession

__all__ = ["check_drop", "drop_after"]


def check_drop(seconds: float, sessions: int) -> None:
    """Raise :class:`ConfigError` unless ``seconds`` and ``sessions`` are valid drop settings."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ConfigError("--drop-after must be a non-negative number of seconds.")
    if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 0:
        raise ConfigError("--drop-sessions must be a non-negative integer.")


def drop_after(
    handler: Handler,
    seconds: float,
    *,
    sessions: int = 1,
    on_drop: Callable[[ServerSession], None] | None = None,
) -> Handler:
    """``handler``, but the connection is dropped ``seconds`` after it opened.

    Only the first ``sessions`` connections are dropped (``0``: every one), so a client
    that reconnects gets a connection that lasts. ``on_drop`` is told of each drop.
    Raises :class:`ConfigError` for a negative time or count.
    """
    check_drop(seconds, sessions)
    opened = 0

    async def dropping(session: ServerSession) -> None:
        nonlocal opened
        opened += 1
        if sessions and opened > sessions:
            await handler(session)
            return
        with anyio.move_on_after(seconds) as scope:
            await handler(session)
        if scope.cancelled_caught and session.closed is None:
            if on_drop is not None:
                on_drop(session)
            await session.abort("fault injection: the connection was dropped")

    return dropping
