"""The client's audio fast path and the quiet-call timer rule, against the slow route.

Two clients with the same handshake key and masking entropy get the same server bytes (cut
at the same random points) and the same application calls. One may send live audio
straight to the wire (``ClientConnection.send_audio``'s hot path); the other is held to the
machine's route (``_direct_audio`` off). Every byte each writes and every event each gives
must be equal: the fast path is an optimisation, never a behaviour.

The same run checks the rules the native transports rely on to skip ``get_timer()``: a call
that gives neither events nor bytes to send (a read of agent audio, mostly), and any
``send_audio``, move no deadline earlier.
"""

from __future__ import annotations

import copy
from unittest import mock

import hypothesis.strategies as st
from core_helpers import REQUEST, parse_client_frame
from hypothesis import event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from millis_proto import (
    ClientConfig,
    ClientConnection,
    Event,
    ServerConfig,
    ServerConnection,
)
from millis_proto.client import MessageClient

CONFIG = ClientConfig(
    disconnect_timeout=2.0, liveness_timeout=3.0, pong_timeout=1.0, ping_every_packets=3
)
SERVER_CONFIG = ServerConfig(handshake_timeout=9.0, initiate_timeout=9.0, disconnect_timeout=2.0)


class Entropy:
    """Deterministic 'random' bytes, the same sequence for each client built with one."""

    def __init__(self) -> None:
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        out = bytes((self.counter + i * 37) & 0xFF for i in range(n))
        self.counter += 1
        return out


def frames(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """A client's output as (first byte, mask, payload) per frame; the handshake as is.

    Data frames must match byte for byte, their masks included (both clients draw them
    from equal entropy). Control frames (close, pings) are wsproto's, masked with its own
    random keys: their masks are left out.
    """
    if data.startswith(b"GET "):
        return [(0, b"", data)]
    out = []
    while data:
        first, payload, rest = parse_client_frame(data)
        head = len(data) - len(rest) - len(payload) - 4
        mask = data[head : head + 4] if first & 0x0F in (1, 2) else b""
        out.append((first, mask, payload))
        data = rest
    return out


def earlier(after: float | None, before: float | None) -> bool:
    """Whether the deadline ``after`` is earlier than ``before`` (``None``: never)."""
    if after is None:
        return False
    return before is None or after < before


class FastAgainstSlow(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.fast = ClientConnection(REQUEST, "ws://h/millis", CONFIG, mask_entropy=Entropy())
        # A copy, so that both send the same handshake key (and hold equal entropy).
        self.slow = copy.deepcopy(self.fast)
        assert self.fast._direct_audio
        self.slow._direct_audio = False  # held to the machine's route
        self.server = ServerConnection(SERVER_CONFIG, now=0.0)
        self.s2c = bytearray()
        self.fast_events: list[Event] = []
        self.slow_events: list[Event] = []
        self.direct_sends = 0

    # --- plumbing ---------------------------------------------------------------------

    def _both(self, call: str, *args: object, **kwargs: object) -> None:
        """Make the same call on both clients; check they write and report the same, and
        that a quiet call (no events, no bytes) or an audio send moved no deadline earlier."""
        before = self.fast.get_timer()
        results = []
        for conn in (self.fast, self.slow):
            error: BaseException | None = None
            try:
                getattr(conn, call)(*args, **kwargs)
            except Exception as exc:  # the same error on both sides is the same behaviour
                error = exc
            results.append((type(error), str(error), conn.events(), conn.data_to_send()))
        (e1, m1, ev1, out1), (e2, m2, ev2, out2) = results
        assert (e1, m1) == (e2, m2)
        assert ev1 == ev2, (call, ev1, ev2)
        assert frames(out1) == frames(out2), call
        self.fast_events += ev1
        self.slow_events += ev2
        if out1:
            self.server.receive_data(out1, self.now)
            self.server.events()
        if self.fast.closed is None and (call == "send_audio" or (not ev1 and not out1)):
            assert not earlier(self.fast.get_timer(), before), (call, before)

    def _server_out(self) -> None:
        self.s2c += self.server.data_to_send()
        self.server.events()

    @initialize(start=st.sampled_from(["open", "ready", "ready"]))
    def begin(self, start: str) -> None:
        self._both("get_timer")  # takes the handshake request to the server
        for _ in range(6):
            if self.s2c:
                self._both("receive_data", bytes(self.s2c), self.now)
                self.s2c.clear()
            self._server_out()
        if start == "ready":
            self.server.send_ready("sess-0")
            self._server_out()
            self._both("receive_data", bytes(self.s2c), self.now)
            self.s2c.clear()
            self.send_audio(640, bytes)  # live from here

    # --- rules ------------------------------------------------------------------------

    @rule(n=st.integers(1, 600))
    def deliver(self, n: int) -> None:
        chunk = bytes(self.s2c[:n])
        del self.s2c[:n]
        if chunk:
            self._both("receive_data", chunk, self.now)

    @rule(
        n=st.integers(0, 700),
        kind=st.sampled_from([bytes, bytes, bytes, bytearray, memoryview]),
    )
    def send_audio(self, n: int, kind: type) -> None:
        pcm = kind(bytes((i * 7) & 0xFF for i in range(n)))
        if self.fast.phase.name == "LIVE":
            self.direct_sends += 1
        self._both("send_audio", pcm, self.now)

    @rule()
    def send_audio_frame(self) -> None:
        """What a live session does most: one 20 ms frame."""
        self.send_audio(640, bytes)

    @rule(muted=st.booleans())
    def mute(self, muted: bool) -> None:
        self._both("mute" if muted else "unmute")

    @rule(ping=st.booleans())
    def send_text(self, ping: bool) -> None:
        if ping:
            self._both("send_ping", self.now)
        else:
            self._both("send_message", "custom", {"x": 1})

    @rule()
    def flush_audio(self) -> None:
        self._both("flush_audio", self.now)

    @rule(n=st.integers(0, 320))
    def pull(self, n: int) -> None:
        a = self.fast.pull_playback(n, self.now)
        b = self.slow.pull_playback(n, self.now)
        assert a == b
        assert self.fast.events() == self.slow.events()

    @precondition(lambda self: self.server.closed is None and not self.server.closing)
    @rule(
        what=st.sampled_from(["ready", "audio", "audio", "transcript", "answer", "end", "ping"]),
        n=st.integers(1, 900),
    )
    def server_sends(self, what: str, n: int) -> None:
        s = self.server
        if what == "ready":
            s.send_ready("sess")
        elif what == "audio":
            s.send_audio(bytes([5]) * n)
        elif what == "transcript":
            s.send_transcript("t" * (n % 40), is_final=True)
        elif what == "answer":
            s.send_start_answering()
        elif what == "ping":
            s.send_message("ping", n)
        else:
            s.send_session_ended({"reason": "done"})
        self._server_out()

    @rule(dt=st.floats(0, 2.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule()
    def timers(self) -> None:
        deadline = self.fast.get_timer()
        assert deadline == self.slow.get_timer()
        if deadline is not None:
            self.now = max(self.now, deadline)
            self._both("handle_timer", self.now)

    @rule()
    def client_closes(self) -> None:
        self._both("close", 1000, "bye", now=self.now)

    @rule()
    def server_closes(self) -> None:
        self.server.close(1000, "s", now=self.now)
        self._server_out()

    # --- invariants -------------------------------------------------------------------

    def teardown(self) -> None:
        event(f"audio sent live: {min(self.direct_sends, 3)}+")

    @invariant()
    def same_state(self) -> None:
        assert self.fast.audio_packets_sent == self.slow.audio_packets_sent
        assert self.fast.phase == self.slow.phase
        assert self.fast.get_timer() == self.slow.get_timer()


TestFastAgainstSlow = FastAgainstSlow.TestCase
TestFastAgainstSlow.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def _ready(config: ClientConfig) -> ClientConnection:
    """A client whose session is ready (onready received), against our own server."""
    conn = ClientConnection(REQUEST, "ws://h/millis", config, mask_entropy=Entropy())
    server = ServerConnection(SERVER_CONFIG, now=0.0)
    for _ in range(6):
        if data := conn.data_to_send():
            server.receive_data(data, 0.0)
        if data := server.data_to_send():
            conn.receive_data(data, 0.0)
    server.send_ready("s")
    conn.receive_data(server.data_to_send(), 0.0)
    return conn


def test_live_audio_takes_the_fast_path() -> None:
    """The fast path is what a live session uses (else the differential test proves little)."""
    conn = _ready(CONFIG)
    assert conn.phase.name in ("READY", "LIVE")
    conn.send_audio(bytes(640), 0.1)  # the first frame makes the session live
    assert conn.phase.name == "LIVE"
    conn.data_to_send()
    slow = AssertionError("the machine's route was taken")
    with mock.patch.object(MessageClient, "send_audio", side_effect=slow):
        conn.send_audio(bytes(640), 0.12)  # must not need it
        assert len(conn.data_to_send()) == 4 + 4 + 640
        assert conn.audio_packets_sent == 2
    conn.send_audio(bytes(640), 0.13)  # packet 3, and the ping due behind it
    conn.data_to_send()
    # The transports' variant hands the same frame over instead of queuing it: the same
    # bytes send_audio queues from the same masking key (rewound in between).
    at, sent = conn._mask_at, conn.audio_packets_sent
    frame = conn._audio_frame(b"\x01\x02" * 320, 0.14)
    assert frame is not None and conn.data_to_send() == b""
    assert conn.audio_packets_sent == sent + 1
    conn._mask_at, conn._client.audio_packets_sent = at, sent
    conn.send_audio(b"\x01\x02" * 320, 0.14)
    assert frame == conn.data_to_send()
    # Anything that must go too (here a wire frame already queued) means no frame.
    conn.send_ping(0.15)
    conn._client.messages_to_send()  # drop the machine's ping: only the wire's counts
    conn._out.append(b"queued")
    assert conn._audio_frame(bytes(640), 0.16) is None
    assert conn.audio_packets_sent == sent + 1


def test_no_handed_over_frame_when_a_ping_is_due_behind_it() -> None:
    """``ping_every_packets``: the frame that makes a ping due goes the queued way."""
    conn = _ready(ClientConfig(ping_every_packets=3))
    conn.send_audio(bytes(640), 0.1)
    conn.data_to_send()
    assert conn._audio_frame(bytes(640), 0.12) is not None  # packet 2
    assert conn._audio_frame(bytes(640), 0.14) is None  # packet 3 brings a ping
    conn.send_audio(bytes(640), 0.14)
    data = conn.data_to_send()
    assert data[0] == 0x82 and data[4 + 4 + 640] == 0x81  # the frame, then the ping (text)


def test_fast_path_off_where_the_route_is_not_plain() -> None:
    """Re-chunking, or no masking entropy (no fast frames at all), keep the machine's route."""
    for config, entropy in ((ClientConfig(chunk_ms=20), Entropy()), (ClientConfig(), None)):
        conn = ClientConnection(REQUEST, "ws://h/millis", config, mask_entropy=entropy)
        assert not conn._direct_audio
