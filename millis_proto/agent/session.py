"""One WebSocket connection served by the local agent: the glue the I/O layer drives.

The transport stays a thin loop, driving one connection object::

    conn = ServerConnection(now=now)
    session = AgentSession(setup, server=conn)    # one AgentSetup shared per server
    # on bytes read:
    conn.receive_data(data, now)
    for event in conn.events():
        session.feed(event, now)
    transport.write(conn.data_to_send())
    # when session.get_timer() or conn.get_timer() passes:
    session.on_tick(now); conn.handle_timer(now); transport.write(conn.data_to_send())
"""

from __future__ import annotations

from ..events import ClientAudio, ConnectionClosed, Event, InitiateReceived
from ..server import MessageServer
from .local_agent import AgentSetup, LocalAgent, ServerSender

__all__ = ["AgentSession"]


class AgentSession:
    """A server (a ``ServerConnection``, or a :class:`MessageServer`) and the
    :class:`LocalAgent` answering on it.

    ``server`` defaults to a new message-level machine; pass the connection you drive. Pass the same
    ``setup`` to every session of a server (it holds the shared session store and ids).
    """

    __slots__ = ("agent", "server")

    def __init__(
        self, setup: AgentSetup | None = None, *, server: ServerSender | None = None
    ) -> None:
        self.server: ServerSender = server if server is not None else MessageServer()
        self.agent = LocalAgent(self.server, setup)

    def feed(self, event: Event, now: float) -> None:
        """Hand one event of the server machine (or its wire connection) to the agent.

        ``InitiateReceived`` starts the session, ``ClientAudio`` is listened to,
        ``ConnectionClosed`` stops it; every other event needs nothing from the agent (the
        server machine already answered pings and rejected invalid initiates).
        """
        if isinstance(event, InitiateReceived):
            self.agent.on_initiate(event.request, now)
        elif isinstance(event, ClientAudio):
            self.agent.on_client_audio(event.data, now)
        elif isinstance(event, ConnectionClosed):
            self.agent.on_closed(now)

    def on_tick(self, now: float) -> None:
        """Run the agent's timers; call when :meth:`get_timer` has passed."""
        self.agent.on_tick(now)

    def get_timer(self) -> float | None:
        """When :meth:`on_tick` is next needed (monotonic seconds), or ``None``."""
        return self.agent.get_timer()
