"""Differential tests: the frame fast path (millis_proto.frames) against wsproto alone.

Encoding: byte for byte what wsproto sends, for every message type and size class and
random masks. Decoding: a stream of frames — plain messages, control frames, fragments and
malformed frames of every kind wsproto rejects — fed in any split gives exactly the
messages, control events and verdict (close code and reason) that wsproto alone gives.
"""

from __future__ import annotations

import re
import struct
from typing import Any
from unittest import mock

import pytest
import wsproto
import wsproto.frame_protocol
import wsproto.utilities
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from millis_proto.frames import BINARY, TEXT, ForWsproto, FrameSplitter, encode_frame

MAX_FRAME = 1 << 20


def _open_pair() -> tuple[wsproto.WSConnection, wsproto.WSConnection]:
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    server = wsproto.WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return client, server


# --- encoding -----------------------------------------------------------------------------


def _sized(sizes: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """Payloads of the given sizes, built from a short random seed (cheap to generate)."""
    return st.builds(
        lambda seed, n: (seed * (n // len(seed) + 1))[:n],
        st.binary(min_size=1, max_size=16),
        sizes,
    )


#: Every length encoding: 7-bit, the 16-bit edges, 64-bit.
payloads = st.one_of(
    st.binary(max_size=130),
    _sized(st.integers(125, 127) | st.integers(65530, 65540) | st.integers(65536, 70000)),
)


@given(payload=payloads, text=st.booleans(), mask=st.binary(min_size=4, max_size=4))
@settings(max_examples=200)
def test_client_frames_are_wsprotos_bytes(payload: bytes, text: bool, mask: bytes) -> None:
    client, _ = _open_pair()
    message: Message[Any]
    if text:
        body = payload.decode("latin-1")
        message, raw = TextMessage(data=body), body.encode()
    else:
        message, raw = BytesMessage(data=payload), payload
    with mock.patch.object(wsproto.frame_protocol.os, "urandom", return_value=mask):
        expected = client.send(message)
    assert encode_frame(TEXT if text else BINARY, raw, mask) == expected


@given(payload=payloads, text=st.booleans())
@settings(max_examples=100)
def test_server_frames_are_wsprotos_bytes(payload: bytes, text: bool) -> None:
    _, server = _open_pair()
    if text:
        body = payload.decode("latin-1")
        expected = server.send(TextMessage(data=body))
        assert encode_frame(TEXT, body.encode(), None) == expected
    else:
        assert encode_frame(BINARY, payload, None) == server.send(BytesMessage(data=payload))


# --- decoding: building streams -------------------------------------------------------------


def _raw(
    b0: int, payload: bytes, *, mask: bytes | None = None, length: bytes | None = None
) -> bytes:
    """A hand-made frame: first byte ``b0``, any length encoding, optional mask."""
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if length is None:
        length = (
            bytes([bit | n])
            if n < 126
            else bytes([bit | 126]) + struct.pack("!H", n)
            if n < 65536
            else bytes([bit | 127]) + struct.pack("!Q", n)
        )
    else:
        length = bytes([length[0] | bit]) + length[1:]
    if mask is None:
        return bytes([b0]) + length + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([b0]) + length + mask + masked


def _frame(spec: tuple[Any, ...], sender: wsproto.WSConnection, masked: bool) -> bytes:
    """Bytes of one generated frame, sent by ``sender`` (valid) or made by hand (malformed)."""
    kind, arg = spec
    mask = b"\x01\x02\x03\x04" if masked else None
    if kind == "binary":
        return sender.send(BytesMessage(data=arg))
    if kind == "text":
        return sender.send(TextMessage(data=arg))
    if kind == "ping":
        return sender.send(Ping(payload=arg))
    if kind == "pong":
        return sender.send(Pong(payload=arg))
    if kind == "fragments":
        first, rest = arg
        return sender.send(BytesMessage(data=first, message_finished=False)) + sender.send(
            BytesMessage(data=rest, message_finished=True)
        )
    if kind == "rsv":
        return _raw(0x80 | 0x40 | BINARY, arg, mask=mask)
    if kind == "opcode":
        return _raw(0x80 | 0x3, arg, mask=mask)
    if kind == "wrong_mask":
        return _raw(0x80 | BINARY, arg, mask=None if masked else b"\x09\x08\x07\x06")
    if kind == "non_minimal":
        return _raw(
            0x80 | BINARY, arg, mask=mask, length=bytes([126]) + struct.pack("!H", len(arg))
        )
    if kind == "bad_utf8":
        return _raw(0x80 | TEXT, b"ok\xff\xfe" + arg, mask=mask)
    if kind == "long_ping":
        return _raw(0x80 | 0x9, bytes(126) + arg, mask=mask)
    if kind == "fragmented_ping":
        return _raw(0x9, arg, mask=mask)
    if kind == "lone_continuation":
        return _raw(0x80, arg, mask=mask)
    if kind == "huge":
        return _raw(0x80 | BINARY, b"", mask=mask, length=bytes([127]) + struct.pack("!Q", 1 << 62))
    if kind == "close":
        return sender.send(CloseConnection(code=arg, reason="bye"))
    raise AssertionError(kind)


small = st.binary(max_size=300)
valid = st.one_of(
    st.tuples(st.just("binary"), payloads | small),
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
    st.tuples(st.just("pong"), st.binary(max_size=125)),
)
unusual = st.one_of(
    st.tuples(st.just("fragments"), st.tuples(small, small)),
    st.tuples(
        st.sampled_from(
            [
                "rsv",
                "opcode",
                "wrong_mask",
                "non_minimal",
                "bad_utf8",
                "long_ping",
                "fragmented_ping",
                "lone_continuation",
                "huge",
            ]
        ),
        st.binary(max_size=130),
    ),
    st.tuples(st.just("close"), st.sampled_from([1000, 1001, 1011, 4000])),
)
streams = st.lists(st.one_of(valid, valid, valid, unusual), min_size=1, max_size=8)


def _stream(specs: list[tuple[Any, ...]], to_client: bool) -> bytes:
    # A fresh sender per frame: one that sent a close frame would refuse to send more.
    return b"".join(
        _frame(spec, _open_pair()[0 if not to_client else 1], masked=not to_client)
        for spec in specs
    )


# --- decoding: the two receivers ----------------------------------------------------------


class Receiver:
    """Collects what a receiving side sees: whole messages, control events, the verdict."""

    def __init__(self, to_client: bool, *, fast: bool) -> None:
        client, server = _open_pair()
        self.ws = client if to_client else server
        self.splitter = FrameSplitter(client=to_client, max_frame_bytes=MAX_FRAME) if fast else None
        self.seen: list[Any] = []
        self._parts: list[Any] = []

    @property
    def done(self) -> bool:
        return self.ws.state is not ConnectionState.OPEN

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        if self.splitter is None:
            self._wsproto(data)
            return
        for item in self.splitter.feed(data):
            if self.done:
                return
            if isinstance(item, ForWsproto):
                self._wsproto(item.data)
            else:
                self.seen.append(("message", item))

    def _wsproto(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, (BytesMessage, TextMessage)):
                self._parts.append(event.data)
                if event.message_finished:
                    first = self._parts[0]
                    whole = (
                        "".join(self._parts) if isinstance(first, str) else b"".join(self._parts)
                    )
                    self.seen.append(("message", whole))
                    self._parts = []
            elif isinstance(event, Ping):
                self.seen.append(("ping", event.payload))
            elif isinstance(event, Pong):
                self.seen.append(("pong", event.payload))
            elif isinstance(event, CloseConnection):
                # wsproto's UTF-8 error names a position in the piece it was decoding, which
                # depends on the read sizes even for wsproto alone: compare without it.
                reason = re.sub(r"position \d+", "position N", event.reason or "")
                self.seen.append(("close", event.code, reason))
                return


def _run(
    stream: bytes, cuts: list[int], to_client: bool, *, fast: bool, reused: bool = False
) -> list[Any]:
    """What the receiver makes of ``stream`` read in the pieces ``cuts`` gives.

    ``reused``: every read arrives as a memoryview of one buffer that is overwritten as
    soon as the call returns, as the asyncio transport reads (so nothing may keep it).
    """
    receiver = Receiver(to_client, fast=fast)
    shared = bytearray(len(stream))
    view = memoryview(shared)
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        if start < cut <= len(stream):
            if reused:
                n = cut - start
                shared[:n] = stream[start:cut]
                receiver.feed(view[:n])  # type: ignore[arg-type]
                shared[:n] = b"\xaa" * n
            else:
                receiver.feed(stream[start:cut])
            start = cut
    return receiver.seen


@given(specs=streams, to_client=st.booleans(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_any_stream_any_split_gives_what_wsproto_gives(
    specs: list[tuple[Any, ...]], to_client: bool, data: st.DataObject
) -> None:
    stream = _stream(specs, to_client)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    expected = _run(stream, cuts, to_client, fast=False)
    assert _run(stream, cuts, to_client, fast=True) == expected
    assert _run(stream, [], to_client, fast=True) == expected
    assert _run(stream, cuts, to_client, fast=True, reused=True) == expected


@given(
    spec=st.one_of(
        valid,
        unusual,
        # Any first byte (FIN, RSV bits, opcode) on a frame of an audio frame's size.
        st.tuples(st.just("raw"), st.integers(0, 255), st.integers(120, 700)),
    ),
    limit=st.sampled_from([0, 125, 126, 200, 639, 640, 641, 65535, MAX_FRAME]),
    masked=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_a_one_frame_read_splits_as_the_loop_splits_it(
    spec: tuple[Any, ...], limit: int, masked: bool
) -> None:
    """A client's usual read is exactly one frame, which the splitter takes in one step;
    that step must give what its general loop gives (a bytearray read goes to the loop)."""
    if spec[0] == "raw":
        frame = _raw(spec[1], bytes(spec[2]), mask=b"\x01\x02\x03\x04" if masked else None)
    else:
        frame = _frame(spec, _open_pair()[0 if masked else 1], masked=masked)

    def split(data: bytes | bytearray | memoryview) -> tuple[Any, ...]:
        splitter = FrameSplitter(client=True, max_frame_bytes=limit)
        return splitter.feed(data), splitter.passthrough, bytes(splitter._buf)

    loop = split(bytearray(frame))
    assert split(frame) == loop
    assert split(memoryview(frame)) == loop


SAMPLE_SPECS: list[tuple[Any, ...]] = [
    ("text", '{"method":"onready"}'),
    ("binary", bytes(range(256)) * 3),
    ("ping", b"p"),
    ("binary", b""),
    ("text", "é€😀"),
    ("pong", b""),
    ("binary", bytes(70000)),
]


@pytest.mark.parametrize("to_client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize(
    "tail",
    [
        [],
        [("fragments", (b"ab", b"cd")), ("binary", b"after")],
        [("bad_utf8", b"")],
        [("rsv", b"x")],
        [("non_minimal", b"x" * 5)],
        [("huge", b"")],
        [("long_ping", b"")],
        [("close", 1000), ("binary", b"ignored")],
    ],
    ids=["plain", "fragments", "utf8", "rsv", "length", "huge", "control", "close"],
)
def test_every_split_offset(to_client: bool, tail: list[tuple[Any, ...]]) -> None:
    specs = SAMPLE_SPECS[:4] + tail if tail else SAMPLE_SPECS
    stream = _stream(specs, to_client)
    expected = _run(stream, [], to_client, fast=False)
    # The large frame makes every offset slow; step through it, every byte elsewhere.
    offsets = [
        i for i in range(len(stream) + 1) if i < 1100 or i % 4999 == 0 or i > len(stream) - 20
    ]
    for cut in offsets:
        assert _run(stream, [cut], to_client, fast=True) == expected, cut
        assert _run(stream, [cut], to_client, fast=True, reused=True) == expected, cut
    assert _run(stream, list(range(min(len(stream), 1500))), to_client, fast=True) == expected


def test_fast_frames_skip_wsproto_and_the_unusual_ones_do_not() -> None:
    stream = _stream([("binary", b"a"), ("ping", b"p"), ("text", "t")], to_client=True)
    splitter = FrameSplitter(client=True, max_frame_bytes=MAX_FRAME)
    items = splitter.feed(stream)
    assert items[0] == b"a"
    assert isinstance(items[1], ForWsproto)
    assert items[2] == "t"
    assert not splitter.passthrough
    splitter.feed(_stream([("fragments", (b"x", b"y"))], to_client=True))
    assert splitter.passthrough


# --- the wired-in fast path: a whole client connection, fast against wsproto alone -----------


def _entropy() -> Any:
    """A deterministic stand-in for ``os.urandom``: masking keys from one counting stream
    (the fast path draws them in bulk, wsproto four at a time: the same keys either way);
    the 16-byte handshake key is all zeros, so one server stream fits every client."""
    stream = iter(range(1 << 30))

    def draw(n: int) -> bytes:
        return bytes(n) if n == 16 else bytes(next(stream) % 251 for _ in range(n))

    return draw


_FIXED_KEY = mock.patch.object(wsproto.utilities.os, "urandom", side_effect=_entropy())


def _server_stream(items: list[tuple[str, Any]]) -> bytes:
    """What a server sends: the handshake answer, onready, then ``items``; as raw bytes."""
    from millis_proto import ClientConnection, ServerConnection, StartRequest

    with _FIXED_KEY:
        probe = ClientConnection(StartRequest(public_key="k", agent_id="a"), "ws://h/millis")
    server = ServerConnection(now=0.0)
    server.receive_data(probe.data_to_send(), 0.0)
    wire = bytearray(server.data_to_send())
    probe.receive_data(bytes(wire), 0.0)
    server.receive_data(probe.data_to_send(), 0.0)  # initiate
    server.events()
    server.send_ready("s-1")
    wire += server.data_to_send()
    return bytes(wire) + _sent(server, items, from_client=False)


def _sent(conn: Any, items: list[tuple[str, Any]], *, from_client: bool) -> bytes:
    """The bytes ``conn`` (an open client or server connection) sends for ``items``; the
    kinds it cannot send itself are frames made by hand (masked when from the client)."""
    wire = bytearray()
    for kind, arg in items:
        if kind == "audio":
            if from_client:
                conn.send_audio(arg, 0.0)
            else:
                conn.send_audio(arg)
        elif kind == "message":
            conn.send_message(arg)
        else:
            wire += conn.data_to_send()
            wire += _frame((kind, arg), _open_pair()[0 if from_client else 1], masked=from_client)
            continue
        wire += conn.data_to_send()
    return bytes(wire)


def _client_run(stream: bytes, cuts: list[int], *, fast: bool) -> tuple[list[Any], bytes]:
    from millis_proto import ClientConfig, ClientConnection, StartRequest

    draw = _entropy()
    with mock.patch.object(wsproto.frame_protocol.os, "urandom", side_effect=draw):
        conn = ClientConnection(
            StartRequest(public_key="k", agent_id="a"),
            "ws://h/millis",
            ClientConfig(emit_audio_events=True),
            mask_entropy=draw if fast else None,
        )
        if not fast:
            conn._splitter = None  # wsproto alone, as before the fast path
        out = bytearray(conn.data_to_send())
        events: list[Any] = []
        start = 0
        for cut in [*sorted(set(cuts)), len(stream)]:
            if start < cut <= len(stream):
                conn.receive_data(stream[start:cut], 1.0)
                start = cut
            events += conn.events()
            if conn.closed is None:
                conn.send_audio(bytes(64), 1.0)
            out += conn.data_to_send()
    # wsproto's UTF-8 error names a position counted from the start of the read that held
    # the bad byte, so it depends on how the bytes were cut (see Receiver._wsproto).
    return [re.sub(r"position \d+", "position N", repr(e)) for e in events], bytes(out)


@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.just("audio"), st.binary(min_size=2, max_size=3000)),
            st.tuples(st.just("message"), st.sampled_from(["pause", "unpause", "clear"])),
            st.tuples(st.just("ping"), st.binary(max_size=125)),
            st.tuples(st.just("fragments"), st.tuples(small, small)),
            st.tuples(st.sampled_from(["rsv", "bad_utf8", "close"]), st.just(b"")),
        ),
        max_size=8,
    ),
    data=st.data(),
)
@settings(max_examples=30, deadline=None)
def test_client_connection_fast_path_is_wsproto_alone(
    items: list[tuple[str, Any]], data: st.DataObject
) -> None:
    """The same server bytes in the same reads give the same events and the same bytes out
    (pongs, close replies, masked audio) with the fast path as with wsproto alone."""
    items = [(k, 1000 if k == "close" else a) for k, a in items]
    stream = _server_stream(items)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    fast_events, fast_out = _client_run(stream, cuts, fast=True)
    slow_events, slow_out = _client_run(stream, cuts, fast=False)
    assert fast_events == slow_events
    # The bytes out are the same frames; their masking keys differ only because wsproto
    # draws its own for control frames, so compare what a server reads from them.
    head, _, frames = fast_out.partition(b"\r\n\r\n")
    assert slow_out.startswith(head + b"\r\n\r\n")
    slow_frames = slow_out[len(head) + 4 :]
    assert _run(frames, [], False, fast=False) == _run(slow_frames, [], False, fast=False)


@pytest.mark.parametrize("to_client", [True, False])
@pytest.mark.parametrize("bad_at", [0, 1, 5, 300])
def test_bad_utf8_in_a_partial_text_frame_fails_on_the_same_read(
    to_client: bool, bad_at: int
) -> None:
    """wsproto checks a text frame's UTF-8 as its bytes arrive; fed one byte per read, the
    fast path must fail the connection on the very read wsproto alone does, not later."""
    payload = ("é" * 400).encode()[:bad_at] + b"\xff" + b"x" * 200
    # Even bad_at keeps "é" whole; an odd one cuts it, and the cut sequence plus 0xff
    # must fail right at 0xff too.
    stream = _raw(0x80 | TEXT, payload, mask=None if to_client else b"\x01\x02\x03\x04")

    def failing_read(fast: bool) -> int:
        receiver = Receiver(to_client, fast=fast)
        for i in range(len(stream)):
            receiver.feed(stream[i : i + 1])
            if receiver.seen:
                assert receiver.seen[0][0] == "close"
                return i
        raise AssertionError("the bad frame was never refused")

    assert failing_read(fast=True) == failing_read(fast=False) < len(stream) - 1


# --- the wired-in fast path: a whole server connection, fast against wsproto alone -----------


def _client_stream(items: list[tuple[str, Any]]) -> bytes:
    """What a client sends: the handshake, ``initiate``, then ``items`` (masked); raw bytes."""
    from millis_proto import ClientConnection, ServerConnection, StartRequest

    client = ClientConnection(
        StartRequest(public_key="k", agent_id="a"), "ws://h/millis", mask_entropy=_entropy()
    )
    probe = ServerConnection(now=0.0)  # only to get the client past the handshake and onready
    wire = bytearray(client.data_to_send())
    probe.receive_data(bytes(wire), 0.0)
    client.receive_data(probe.data_to_send(), 0.0)
    initiate = client.data_to_send()
    wire += initiate
    probe.receive_data(initiate, 0.0)
    probe.send_ready("s-1")
    client.receive_data(probe.data_to_send(), 0.0)
    return bytes(wire) + _sent(client, items, from_client=True)


def _server_run(stream: bytes, cuts: list[int], *, fast: bool) -> tuple[list[str], bytes]:
    from millis_proto import InitiateReceived, ServerConnection

    conn = ServerConnection(now=0.0)
    if not fast:
        conn._splitter = None  # wsproto alone, as before the fast path
    out = bytearray()
    events: list[Any] = []
    ready = False
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        if start < cut <= len(stream):
            conn.receive_data(stream[start:cut], 1.0)
            start = cut
        events += conn.events()
        if not ready and not conn.closing and any(isinstance(e, InitiateReceived) for e in events):
            ready = True
            conn.send_ready("s-1")
        if ready and not conn.closing:
            conn.send_audio(bytes(64))
        out += conn.data_to_send()
    return [repr(e) for e in events], bytes(out)


@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.just("audio"), st.binary(min_size=2, max_size=3000)),
            st.tuples(st.just("message"), st.sampled_from(["note", "custom"])),
            st.tuples(st.just("ping"), st.binary(max_size=125)),
            st.tuples(st.just("text"), st.text(max_size=50)),
            st.tuples(st.just("fragments"), st.tuples(small, small)),
            st.tuples(
                st.sampled_from(["rsv", "bad_utf8", "wrong_mask", "lone_continuation"]),
                st.just(b""),
            ),
            st.tuples(st.just("close"), st.sampled_from([1000, 1001, 4000])),
        ),
        max_size=8,
    ),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_server_connection_fast_path_is_wsproto_alone(
    items: list[tuple[str, Any]], data: st.DataObject
) -> None:
    """The same client bytes in the same reads — ``initiate`` and then frames of every kind,
    in any split — give the same events and byte for byte the same server output with the
    fast path as with wsproto alone. The handshake comes in a read of its own: wsproto alone
    drops what is pipelined behind it (test_timers_and_fidelity covers that case)."""
    stream = _client_stream(items)
    head = stream.index(b"\r\n\r\n") + 4
    cuts = [head, *data.draw(st.lists(st.integers(head, len(stream)), max_size=10))]
    assert _server_run(stream, cuts, fast=True) == _server_run(stream, cuts, fast=False)


def test_server_connection_takes_the_fast_path() -> None:
    """Whole masked audio frames after the handshake never reach wsproto's frame parser."""
    stream = _client_stream([("audio", bytes(640))] * 3)
    parsed: list[int] = []
    real = wsproto.frame_protocol.FrameProtocol.receive_bytes

    def receive_bytes(self: Any, data: bytes) -> None:
        parsed.append(len(data))
        real(self, data)

    with mock.patch.object(wsproto.frame_protocol.FrameProtocol, "receive_bytes", receive_bytes):
        events, _ = _server_run(stream, [], fast=True)
    assert sum("ClientAudio" in e for e in events) == 3
    assert sum(parsed) == 0


@pytest.mark.parametrize(
    "items",
    [[("bad_utf8", b"")], [("text", "héllo wörld"), ("bad_utf8", b""), ("audio", bytes(300))]],
)
def test_invalid_utf8_split_across_reads_is_reported_as_wsproto_would(
    items: list[tuple[str, Any]],
) -> None:
    """A text frame with invalid UTF-8 whose bytes come in two reads, cut at every offset:
    the 1007 close and its reason (where wsproto's decoder says the bad byte is, counted
    from the start of the read it came in) are byte for byte wsproto's. Hypothesis found
    the fast path counting from the start of the frame instead."""
    stream = _client_stream(items)
    head = stream.index(b"\r\n\r\n") + 4
    for cut in range(head, len(stream) + 1):
        cuts = [head, cut]
        assert _server_run(stream, cuts, fast=True) == _server_run(stream, cuts, fast=False), cut
