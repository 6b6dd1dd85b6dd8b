"""The wire machines exchanging real bytes: round-trips, splits, garbage, close paths."""

from __future__ import annotations

import json

import pytest
from core_helpers import REQUEST, Pair, parse_client_frame, server_frame, types

from millis_proto import (
    AIAction,
    ClientAudio,
    ClientConfig,
    ClientConnection,
    ClientMessage,
    ClientPing,
    CloseInitiator,
    Connected,
    ConnectionClosed,
    ConnectionRejected,
    FunctionCall,
    InitiateReceived,
    InitiateRejected,
    Pong,
    Ready,
    RemoteProtocolError,
    ResponseText,
    ServerConfig,
    ServerConnection,
    SessionEnded,
    StartRequest,
    Transcript,
    UnknownMessage,
)
from millis_proto.events import Event


def test_every_message_type_round_trips(pair: Pair) -> None:
    ce, se = pair.open("sess-9")
    assert types(ce) == ["Connected", "Ready"]  # onready keeps the state idle: no change
    assert isinstance(se[0], Connected)
    assert isinstance(se[1], InitiateReceived)
    assert se[1].request == REQUEST
    assert pair.client.session_id == "sess-9"

    s = pair.server
    s.send_transcript("what's the weather", is_final=True)
    s.send_response_text("It is", is_final=False)
    s.send_function_call("get_weather", {"city": "Paris"})
    s.send_ai_action({"do": "lookup"})
    s.send_message("open_web_form", {"f": 1}, {"p": 2})
    s.send_start_answering()
    s.send_audio(b"\x01\x02\x03")  # odd size
    s.send_audio(b"\x04")
    s.send_pause()
    s.send_unpause()
    s.send_clear()
    ce, _ = pair.pump()
    assert [e for e in ce if not type(e).__name__.startswith(("AgentState", "Answer"))] == [
        Transcript(text="what's the weather", is_final=True, payload={"is_final": True}),
        ResponseText(text="It is", is_final=False, payload={"is_final": False}),
        FunctionCall(
            function="get_weather",
            params={"city": "Paris"},
            data="",
            payload={"name": "get_weather", "params": {"city": "Paris"}},
        ),
        AIAction(data={"do": "lookup"}),
        UnknownMessage(method="open_web_form", data={"f": 1}, payload={"p": 2}),
        *[
            e
            for e in ce
            if type(e).__name__ in ("StartAnswering", "AgentAudio", "Pause", "Unpause", "Clear")
        ],
    ]
    audio = [e.data for e in ce if type(e).__name__ == "AgentAudio"]
    assert audio == [b"\x01\x02\x03", b"\x04"]

    pair.client.send_audio(b"\x10\x11" * 320, pair.now)
    pair.client.send_message("web_form_response", {"ok": 1})
    pair.client.send_ping(5.0)
    pair.now = 5.125
    ce, se = pair.pump()
    assert se == [
        ClientAudio(data=b"\x10\x11" * 320),
        ClientMessage(method="web_form_response", data={"ok": 1}),
        ClientPing(data="5000"),
    ]
    assert [e for e in ce if isinstance(e, Pong)] == [Pong(data="5000", rtt_ms=125.0)]

    s.send_session_ended({"why": "done"})
    s.close(now=pair.now)
    ce, se = pair.pump()
    assert SessionEnded(data={"why": "done"}) in ce
    closes = [e for e in ce + se if isinstance(e, ConnectionClosed)]
    # client first (it received the server's close), then the server (its close answered)
    assert [(c.code, c.initiator) for c in closes] == [
        (1000, CloseInitiator.REMOTE),
        (1000, CloseInitiator.LOCAL),
    ]
    assert pair.cw.closed is not None and pair.sw.closed is not None
    assert pair.cw.data_to_send() == b"" and pair.sw.data_to_send() == b""


def _client_events_for(data_chunks: list[bytes]) -> tuple[list[Event], ClientConnection]:
    cw = ClientConnection(REQUEST, "ws://h/millis")
    client = cw
    sw = ServerConnection()
    sw.receive_data(cw.data_to_send(), 0)
    handshake = sw.data_to_send()
    events: list[Event] = []
    for chunk in [handshake, *data_chunks]:
        cw.receive_data(chunk, 0)
        events += cw.events()
    return events, client


def _session_bytes() -> bytes:
    """A server's byte stream after the handshake: every message kind, odd audio, a close."""
    pair = Pair()
    pair.open()
    start = len(pair.s2c)
    s = pair.server
    s.send_transcript("héllo ✓", is_final=True)
    s.send_start_answering()
    s.send_audio(bytes(range(255)))
    s.send_pause()
    s.send_audio(b"\x00" * 300)
    s.send_unpause()
    s.send_function_call("f", {"x": [1, 2]})
    s.send_message("weird", payload={"deep": {"a": None}})
    s.send_clear()
    s.close(1000, "done", now=pair.now)
    pair.pump()
    return bytes(pair.s2c[start:])


def _split_all_offsets(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(1, len(data))]


def test_server_stream_split_at_every_offset_gives_identical_events() -> None:
    data = _session_bytes()
    whole, _ = _client_events_for([data])
    assert types(whole)[-1] == "ConnectionClosed"
    for chunks in _split_all_offsets(data):
        split, _ = _client_events_for(chunks)
        assert split == whole
    bytewise, _ = _client_events_for([data[i : i + 1] for i in range(len(data))])
    assert bytewise == whole


def test_handshake_response_split_at_every_offset() -> None:
    for i in range(1, 160):
        cw = ClientConnection(REQUEST, "ws://h/millis")
        sw = ServerConnection()
        sw.receive_data(cw.data_to_send(), 0)
        sw.send_ready("r")  # queued before the first flush: arrives with the 101
        response = sw.data_to_send()
        cw.receive_data(response[:i], 0)
        cw.receive_data(response[i:], 0)
        assert types(cw.events())[:2] == ["Connected", "Ready"]


def test_client_stream_split_at_every_offset_on_the_server() -> None:
    pair = Pair()
    pair.open()
    pair.client.send_audio(bytes(range(200)), 0)
    pair.client.send_message("custom", "ü")
    pair.client.close(1000, now=pair.now)
    pair.pump()
    data = bytes(pair.c2s)  # handshake request + initiate + frames + close, all masked
    expected = pair.server_events
    for i in range(1, len(data), 3):
        sw = ServerConnection()
        sw.receive_data(data[:i], 0)
        got = sw.events()
        sw.receive_data(data[i:], 0)
        got += sw.events()
        assert got == expected, i


def test_trailing_garbage_after_close_is_ignored() -> None:
    data = _session_bytes()
    events, _ = _client_events_for([data + b"\xff\x00garbage" * 10])
    whole, _ = _client_events_for([data])
    assert events == whole


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (bytes([0x83, 0x00]), 1002),  # reserved opcode
        (bytes([0xC1, 0x01, 0x61]), 1002),  # RSV1 without an extension
        (server_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text frame
        (bytes([0x81, 0x85]) + b"\0" * 9, 1002),  # masked frame from a server
        (server_frame(0x0, b"x"), 1002),  # continuation with nothing to continue
        (server_frame(0x9, b"p" * 126), 1002),  # control frame too long
    ],
)
def test_malformed_frames_fail_the_connection(garbage: bytes, code: int) -> None:
    pair = Pair()
    pair.open()
    pair.cw.receive_data(server_frame(0x1, b'{"method":"pause"}') + garbage + b"more", 1.0)
    events = pair.cw.events()
    assert "Pause" in types(events)
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.code == code and closed.initiator is CloseInitiator.PROTOCOL_ERROR
    assert not closed.normal
    # our close frame goes out, and nothing after it
    out = pair.cw.data_to_send()
    assert out[0] == 0x88
    pair.cw.receive_data(b"anything", 2.0)
    assert pair.cw.events() == []
    assert pair.client.closing


def test_fragmented_messages_are_reassembled_with_interleaved_control_frames() -> None:
    pair = Pair()
    pair.open()
    msg = json.dumps({"method": "ontranscript", "data": "a" * 300, "payload": {"is_final": True}})
    raw = msg.encode()
    frames = (
        server_frame(0x1, raw[:10], fin=False)
        + server_frame(0x9, b"ping!")  # a ping in the middle of a fragmented message
        + server_frame(0x0, raw[10:200], fin=False)
        + server_frame(0x0, raw[200:])
        + server_frame(0x2, b"\x01\x02\x03", fin=False)
        + server_frame(0x0, b"\x04")
    )
    pair.cw.receive_data(frames, 0)
    ev = pair.cw.events()
    assert Transcript(text="a" * 300, is_final=True, payload={"is_final": True}) in ev
    assert [e.data for e in ev if type(e).__name__ == "AgentAudio"] == [b"\x01\x02\x03\x04"]
    first, payload, rest = parse_client_frame(pair.cw.data_to_send())
    assert (first, payload, rest) == (0x8A, b"ping!", b"")  # the pong echoes the ping


def test_pings_are_answered_while_open_and_never_after_our_close() -> None:
    pair = Pair()
    pair.open()
    pair.cw.receive_data(server_frame(0x9, b"hb"), 0)
    pong = pair.cw.data_to_send()
    assert pong[0] == 0x8A and (pong[1] & 0x7F) == 2  # FIN+pong, masked, 2 bytes
    pair.cw.close(1000, "bye", now=pair.now)
    assert pair.cw.data_to_send()[0] == 0x88
    pair.cw.receive_data(server_frame(0x9, b"late"), 0)  # trio-websocket #184
    assert pair.cw.data_to_send() == b""
    assert pair.cw.events() == []
    pair.cw.receive_data(server_frame(0x8, b"\x03\xe8"), 0)
    assert pair.cw.events() == [
        ConnectionClosed(code=1000, reason="bye", initiator=CloseInitiator.LOCAL)
    ]


def test_message_size_limit_closes_1009_whole_and_fragmented() -> None:
    for frames in (
        server_frame(0x2, b"x" * 101),
        server_frame(0x2, b"x" * 60, fin=False) + server_frame(0x0, b"x" * 60),
        server_frame(0x1, b"y" * 60, fin=False) + server_frame(0x0, b"y" * 60),
    ):
        pair = Pair(
            config=ClientConfig(max_message_bytes=100, emit_audio_events=True),
            server_config=ServerConfig(max_message_bytes=100),
        )
        pair.open()
        pair.cw.receive_data(server_frame(0x2, b"z" * 100) + frames, 0)
        ev = pair.cw.events()
        assert [e.data for e in ev if type(e).__name__ == "AgentAudio"] == [b"z" * 100]
        assert ev[-1].code == 1009  # type: ignore[attr-defined]
        first, payload, _ = parse_client_frame(pair.cw.data_to_send())
        assert first == 0x88 and payload[:2] == (1009).to_bytes(2, "big")
        assert b"message too big" in payload


def test_server_initiated_close_is_answered_with_the_same_code() -> None:
    pair = Pair()
    pair.open()
    pair.client.send_audio(b"\0\0", 0)  # queued, but the peer closes first
    pair.cw.receive_data(server_frame(0x8, b"\x03\xf3" + b"internal"), 0)  # 1011
    ev = pair.cw.events()
    assert ev[-1] == ConnectionClosed(code=1011, reason="internal", initiator=CloseInitiator.REMOTE)
    first, payload, rest = parse_client_frame(pair.cw.data_to_send())
    # only our close reply, echoing the code; the queued audio is dropped (RFC 6455 §5.5.1)
    assert (first, payload[:2], rest) == (0x88, (1011).to_bytes(2, "big"), b"")


def test_open_connections_let_go_of_the_handshake_and_still_work_both_ways() -> None:
    """Once open, neither side keeps the opening handshake's HTTP machine (h11) or the
    upgrade request: nothing reads them again, and the collector would walk them in every
    session for the whole call. Everything after still works: messages, pings, the close."""
    pair = Pair()
    pair.open()
    for side in (pair.cw, pair.sw):
        handshake = side._ws.handshake
        assert handshake._h11_connection is None
        assert handshake._initiating_request is None
        assert side._ws.connection is not None
    pair.server.send_transcript("still here", is_final=True)
    pair.client.send_message("hello", {"n": 1})
    pair.cw.receive_data(server_frame(0x9, b"are you there"), 0)  # a WebSocket ping
    ce, se = pair.pump()
    assert Transcript(text="still here", is_final=True, payload={"is_final": True}) in ce
    assert ClientMessage(method="hello", data={"n": 1}) in se
    pair.client.close(1000, "bye", now=0)
    ce, se = pair.pump()
    assert ce[-1] == ConnectionClosed(code=1000, reason="bye", initiator=CloseInitiator.LOCAL)
    assert isinstance(se[-1], ConnectionClosed) and se[-1].code == 1000


def test_close_without_status_code() -> None:
    pair = Pair()
    pair.open()
    pair.cw.receive_data(server_frame(0x8, b""), 0)
    ev = pair.cw.events()[-1]
    assert isinstance(ev, ConnectionClosed) and ev.code == 1005 and ev.normal
    assert pair.cw.data_to_send()[0] == 0x88


def test_eof_is_connection_lost_and_eof_after_our_close_is_local() -> None:
    pair = Pair()
    pair.open()
    pair.cw.receive_data(server_frame(0x2, b"\x01\x02\x03")[:3], 0)  # EOF mid-frame
    pair.cw.receive_data(None, 0)
    ev = pair.cw.events()[-1]
    assert isinstance(ev, ConnectionClosed)
    assert (ev.code, ev.initiator) == (1006, CloseInitiator.LOST)
    assert "without a WebSocket close handshake" in ev.reason

    pair = Pair()
    pair.open()
    pair.cw.close(now=pair.now)
    pair.cw.data_to_send()
    pair.cw.receive_data(b"", 0)  # b"" is EOF too
    assert pair.cw.events()[-1] == ConnectionClosed(
        code=1000, reason="", initiator=CloseInitiator.LOCAL
    )


def test_eof_and_close_before_the_handshake() -> None:
    cw = ClientConnection(REQUEST, "ws://h/millis")
    cw.data_to_send()
    cw.receive_data(None, 0)
    ev = cw.events()
    assert len(ev) == 1 and isinstance(ev[0], ConnectionClosed)
    assert (
        ev[0].initiator is CloseInitiator.LOST and "before the WebSocket handshake" in ev[0].reason
    )
    cw2 = ClientConnection(REQUEST, "ws://h/millis")
    cw2.close(now=0.0)
    assert cw2.events()[-1].initiator is CloseInitiator.LOCAL  # type: ignore[attr-defined]
    cw2.close(now=0.0)  # idempotent


def test_rejected_handshake_reports_status_and_body() -> None:
    cw = ClientConnection(REQUEST, "ws://h/millis")
    cw.data_to_send()
    body = b"forbidden: bad origin"
    cw.receive_data(b"HTTP/1.1 403 Forbidden\r\ncontent-length: %d\r\n\r\n" % len(body) + body, 0)
    ev = cw.events()
    assert ev[0] == ConnectionRejected(status_code=403, body=body)
    assert isinstance(ev[1], ConnectionClosed) and "HTTP 403" in ev[1].reason
    cw = ClientConnection(REQUEST, "ws://h/millis")
    cw.data_to_send()
    cw.receive_data(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 0)
    assert cw.events()[0] == ConnectionRejected(status_code=404)


def test_invalid_handshake_response_raises_sticky_remote_error() -> None:
    cw = ClientConnection(REQUEST, "ws://h/millis")
    cw.data_to_send()
    bad = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
    )
    with pytest.raises(RemoteProtocolError, match="handshake response is invalid"):
        cw.receive_data(bad, 0)
    with pytest.raises(RemoteProtocolError):
        cw.receive_data(b"more", 0)
    with pytest.raises(RemoteProtocolError):
        ClientConnection(REQUEST, "ws://h/").receive_data(b"garbage\r\n\r\n", 0)


def test_server_rejects_non_websocket_request_with_400() -> None:
    sw = ServerConnection()
    with pytest.raises(RemoteProtocolError, match="invalid WebSocket handshake"):
        sw.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0)
    assert sw.data_to_send().startswith(b"HTTP/1.1 400")
    assert isinstance(sw.events()[-1], ConnectionClosed)


def test_server_validation_error_closes_1008() -> None:
    for first in (
        json.dumps({"method": "initiate", "data": {"agent": {"agent_id": "a"}}}),
        json.dumps({"method": "initiate", "data": {"public_key": "k", "agent": {}}}),
        json.dumps({"method": "ping"}),
        "nope",
        b"\x00\x01",
    ):
        pair = Pair()
        pair.pump()  # handshake; the client sends a valid initiate, so replace the server
        sw = ServerConnection()
        cw = ClientConnection(REQUEST, "ws://h/millis")
        sw.receive_data(cw.data_to_send(), 0)
        cw.receive_data(sw.data_to_send(), 0)
        cw.events()
        cw.data_to_send()  # discard the real initiate; inject ours through the raw wsproto
        raw = cw._ws.send(
            __import__("wsproto.events", fromlist=["x"]).TextMessage(data=first)
            if isinstance(first, str)
            else __import__("wsproto.events", fromlist=["x"]).BytesMessage(data=first)
        )
        sw.receive_data(raw, 0)
        ev = sw.events()
        rejected = [e for e in ev if isinstance(e, InitiateRejected)]
        assert rejected and rejected[0].reason.startswith("validation error")
        cw.receive_data(sw.data_to_send(), 0)
        closed = cw.events()[-1]
        assert isinstance(closed, ConnectionClosed) and closed.code == 1008
        assert "validation error" in closed.reason
        assert "k" not in closed.reason.split("validation error")[0]


def test_server_answers_ping_with_pong_echo_and_passes_custom_messages(pair: Pair) -> None:
    pair.open()
    pair.client.send_message("ping", {"any": "thing"})
    pair.client.send_message("ping")
    ce, se = pair.pump()
    assert se == [ClientPing(data={"any": "thing"}), ClientPing(data=None)]
    assert [e for e in ce if isinstance(e, Pong)] == [Pong(data={"any": "thing"}), Pong(data=None)]


def test_handshake_request_shape() -> None:
    cw = ClientConnection(REQUEST, "wss://api-west.millis.ai:8080/millis?x=1")
    req = cw.data_to_send()
    assert req.startswith(b"GET /millis?x=1 HTTP/1.1\r\n")
    assert b"Host: api-west.millis.ai:8080\r\n" in req
    assert b"pk-secret-123" not in req  # the key only travels inside initiate
    cw = ClientConnection(REQUEST, "wss://[::1]/")
    assert b"Host: [::1]\r\n" in cw.data_to_send()


def test_invalid_start_request_cannot_reach_the_wire() -> None:
    with pytest.raises(Exception, match="public_key"):
        StartRequest(public_key="", agent_id="a")


def test_ready_event_reaches_client_once(pair: Pair) -> None:
    ce, _ = pair.open()
    assert sum(isinstance(e, Ready) for e in ce) == 1
