"""Hypothesis state machine over the wire-level pair: ClientConnection <-> ServerConnection.

Bytes travel both ways through two pipes that deliver any prefix of what is pending (so
frames and the handshake are split at random points); either side sends, closes, loses the
link, or lets time pass and fires its timers. The invariants are what an adapter relies on:

* nothing but :class:`RemoteProtocolError` ever leaves ``receive_data`` (between two
  well-behaved peers: nothing at all);
* each side gives at most one ``ConnectionClosed``, and it is that side's last event;
* ``get_timer()`` is ``None`` once closed, and ``handle_timer(get_timer())`` always moves
  the timer forward (an adapter sleeping on it can never spin);
* once closed and flushed, a side never produces another byte;
* whatever happened, closing both sides and only delivering bytes and firing timers ends
  both connections within a bounded number of steps.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from millis_proto import (
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Event,
    InitiateReceived,
    ServerConfig,
    ServerConnection,
    StartRequest,
)

REQUEST = StartRequest(public_key="k", agent_id="a")
CONFIG = ClientConfig(
    disconnect_timeout=2.0, liveness_timeout=3.0, pong_timeout=1.0, ping_every_packets=5
)
SERVER_CONFIG = ServerConfig(handshake_timeout=4.0, initiate_timeout=4.0, disconnect_timeout=2.0)


class Side:
    """One connection and what the test saw of it."""

    def __init__(self, conn: ClientConnection | ServerConnection) -> None:
        self.conn = conn
        self.events: list[Event] = []
        self.flushed_after_close = False

    def collect(self) -> None:
        new = self.conn.events()
        if self.events and isinstance(self.events[-1], ConnectionClosed):
            assert new == [], f"events after ConnectionClosed: {new}"
        self.events += new

    def closes(self) -> int:
        return sum(isinstance(e, ConnectionClosed) for e in self.events)


class WirePair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.client = Side(ClientConnection(REQUEST, "ws://h/millis", CONFIG))
        self.server = Side(ServerConnection(SERVER_CONFIG, now=0.0))
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.initiated = False

    # --- plumbing ---------------------------------------------------------------------

    def _flush(self, side: Side, pipe: bytearray) -> None:
        data = side.conn.data_to_send()
        if side.conn.closed is not None:
            if side.flushed_after_close:
                assert data == b"", "bytes after the close was flushed"
            side.flushed_after_close = True
        pipe += data

    def _deliver(self, pipe: bytearray, side: Side, n: int) -> None:
        chunk = bytes(pipe[:n])
        del pipe[:n]
        if chunk:
            side.conn.receive_data(chunk, self.now)  # well-behaved peers: nothing may raise
        side.collect()
        if any(isinstance(e, InitiateReceived) for e in side.events):
            self.initiated = True

    def _pump_all(self) -> None:
        for _ in range(10):
            self._flush(self.client, self.c2s)
            self._deliver(self.c2s, self.server, len(self.c2s))
            self._flush(self.server, self.s2c)
            self._deliver(self.s2c, self.client, len(self.s2c))

    @initialize(start=st.sampled_from(["fresh", "open", "ready"]))
    def begin(self, start: str) -> None:
        """Most runs start from a live session; some go through the handshake by chance."""
        if start == "fresh":
            return
        self._pump_all()
        assert self.initiated
        if start == "ready":
            server = self.server.conn
            assert isinstance(server, ServerConnection)
            server.send_ready("sess-0")
            self._pump_all()

    # --- rules ------------------------------------------------------------------------

    @rule()
    def client_flushes(self) -> None:
        self._flush(self.client, self.c2s)

    @rule()
    def server_flushes(self) -> None:
        self._flush(self.server, self.s2c)

    @rule(n=st.integers(0, 400))
    def deliver_to_server(self, n: int) -> None:
        self._deliver(self.c2s, self.server, n)

    @rule(n=st.integers(0, 400))
    def deliver_to_client(self, n: int) -> None:
        self._deliver(self.s2c, self.client, n)

    @rule(dt=st.floats(0, 2.5))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule()
    def client_timer(self) -> None:
        self._fire(self.client)

    @rule()
    def server_timer(self) -> None:
        self._fire(self.server)

    def _fire(self, side: Side) -> None:
        timer = side.conn.get_timer()
        if timer is None:
            return
        self.now = max(self.now, timer)
        side.conn.handle_timer(self.now)
        side.collect()
        after = side.conn.get_timer()
        assert after is None or after > timer, (timer, after)

    @precondition(lambda self: self.client.conn.closed is None and not self.client.conn.closing)
    @rule(n=st.integers(1, 700), muted=st.booleans())
    def client_sends_audio(self, n: int, muted: bool) -> None:
        conn = self.client.conn
        assert isinstance(conn, ClientConnection)
        conn.mute() if muted else conn.unmute()
        conn.send_audio(bytes([3]) * n, self.now)

    @precondition(lambda self: self.client.conn.closed is None and not self.client.conn.closing)
    @rule(ping=st.booleans())
    def client_sends_text(self, ping: bool) -> None:
        conn = self.client.conn
        assert isinstance(conn, ClientConnection)
        if ping:
            conn.send_ping(self.now)
        else:
            conn.send_message("custom", {"x": [1, "é"]})

    @precondition(
        lambda self: (
            self.initiated and self.server.conn.closed is None and not self.server.conn.closing
        )
    )
    @rule(
        what=st.sampled_from(
            ["ready", "transcript", "audio", "pause", "unpause", "clear", "answer", "end"]
        ),
        n=st.integers(1, 900),
    )
    def server_sends(self, what: str, n: int) -> None:
        s = self.server.conn
        assert isinstance(s, ServerConnection)
        if what == "ready":
            s.send_ready("sess")
        elif what == "transcript":
            s.send_transcript("t" * (n % 50), is_final=n % 3 == 0 or None)
        elif what == "audio":
            s.send_audio(bytes([5]) * n)
        elif what == "pause":
            s.send_pause()
        elif what == "unpause":
            s.send_unpause()
        elif what == "clear":
            s.send_clear()
        elif what == "answer":
            s.send_start_answering()
        else:
            s.send_session_ended({"reason": "done"})

    @rule(code=st.sampled_from([1000, 1001, 1011]))
    def client_closes(self, code: int) -> None:
        self.client.conn.close(code, "c", now=self.now)
        self.client.collect()

    @rule(code=st.sampled_from([1000, 1008, 1011]))
    def server_closes(self, code: int) -> None:
        self.server.conn.close(code, "s", now=self.now)
        self.server.collect()

    @precondition(lambda self: self.client.conn.closed is None or self.server.conn.closed is None)
    @rule(dice=st.integers(0, 5))
    def link_lost(self, dice: int) -> None:
        """The TCP connection dies (one draw in six): pending bytes vanish, both read EOF."""
        if dice:
            return
        self.c2s.clear()
        self.s2c.clear()
        for side in (self.client, self.server):
            side.conn.receive_data(None, self.now)
            side.collect()

    @rule(n=st.integers(0, 200))
    def pull_playback(self, n: int) -> None:
        conn = self.client.conn
        assert isinstance(conn, ClientConnection)
        assert len(conn.pull_playback(n, self.now).pcm) == 2 * n
        self.client.collect()

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def one_close_and_it_is_last(self) -> None:
        for side in (self.client, self.server):
            assert side.closes() <= 1
            if side.closes():
                assert isinstance(side.events[-1], ConnectionClosed)
                assert side.events[-1] == side.conn.closed
                assert side.conn.get_timer() is None

    @invariant()
    def playback_is_bounded(self) -> None:
        conn = self.client.conn
        assert isinstance(conn, ClientConnection)
        assert conn.playback.queued_samples <= conn.playback.capacity_samples

    def teardown(self) -> None:
        """Close both and let only the pipes and the timers run: both must end."""
        for side in (self.client, self.server):
            side.conn.close(1000, "teardown", now=self.now)
            side.collect()
        for _ in range(60):
            if self.client.conn.closed is not None and self.server.conn.closed is not None:
                break
            self._flush(self.client, self.c2s)
            self._flush(self.server, self.s2c)
            self._deliver(self.c2s, self.server, len(self.c2s))
            self._deliver(self.s2c, self.client, len(self.s2c))
            self._fire(self.client)
            self._fire(self.server)
        assert self.client.conn.closed is not None and self.server.conn.closed is not None
        self.one_close_and_it_is_last()
        event(f"initiated={self.initiated}")
        for name, side in (("client", self.client), ("server", self.server)):
            closed = side.conn.closed
            assert closed is not None
            event(f"{name} closed by {closed.initiator.value} {closed.code}")


TestWirePair = WirePair.TestCase
TestWirePair.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
