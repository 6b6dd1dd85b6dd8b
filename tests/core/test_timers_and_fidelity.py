"""The connection's timers, close classification, and the SDK-fidelity fixes of the core.

Everything here drives exactly one object per side (``ClientConnection`` /
``ServerConnection``) with real WebSocket bytes; time is only what the test passes in.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from core_helpers import REQUEST, Pair, parse_client_frame, server_frame, types

from millis_proto import (
    BadMessage,
    ClientConfig,
    ClientConnection,
    CloseInitiator,
    ConfigError,
    ConnectionClosed,
    ConnectionClosedByServer,
    ConnectionLost,
    ConnectionRejected,
    InitiateReceived,
    LocalProtocolError,
    MessageClient,
    Pong,
    RemoteProtocolError,
    ServerConfig,
    ServerConnection,
    StartRequest,
    Transcript,
    UnknownMessage,
    event_to_dict,
)

URL = "ws://127.0.0.1:8080/millis"
EPOCH = 1_700_000_000.0  # what the wall clock says when the monotonic clock says 0


def client_texts(data: bytes) -> list[dict[str, object]]:
    """Every text frame in a client byte stream, decoded."""
    out = []
    while data:
        head, payload, data = parse_client_frame(data)
        if head & 0x0F == 0x1:
            out.append(json.loads(payload))
    return out


def close_frames(data: bytes) -> list[tuple[int, str]]:
    out = []
    while data:
        head, payload, data = parse_client_frame(data)
        if head & 0x0F == 0x8:
            out.append((int.from_bytes(payload[:2], "big"), payload[2:].decode()))
    return out


# --- the close-reply deadline -------------------------------------------------------------


def test_close_with_a_silent_peer_ends_at_get_timer_with_no_adapter_help() -> None:
    pair = Pair(config=ClientConfig(disconnect_timeout=2.5))
    pair.open()
    pair.cw.close(1000, "bye", now=7.0)
    assert close_frames(pair.cw.data_to_send()) == [(1000, "bye")]  # the peer never reads it
    assert pair.cw.get_timer() == 9.5  # now + disconnect_timeout, not 0.0 + ...
    pair.cw.handle_timer(9.49)
    assert pair.cw.closed is None
    pair.cw.handle_timer(9.5)
    closed = pair.cw.events()[-1]
    # A live session whose server answers nothing, not even our close, is half-open: lost.
    assert closed == ConnectionClosed(
        code=1006,
        reason="the server stopped answering (no reply to our close within 2.5 s)",
        initiator=CloseInitiator.LOST,
    )
    assert not closed.normal
    error = closed.error()
    assert isinstance(error, ConnectionLost)
    assert str(error) == "The server stopped answering (no reply to our close within 2.5 s)."
    assert pair.cw.get_timer() is None


def test_a_close_answered_by_eof_is_still_a_normal_end() -> None:
    pair = Pair(config=ClientConfig(disconnect_timeout=2.5))
    pair.open()
    pair.cw.close(1000, "bye", now=7.0)
    pair.cw.data_to_send()
    pair.cw.receive_data(None, 8.0)  # the server reacted: it closed the TCP connection
    closed = pair.cw.events()[-1]
    assert closed == ConnectionClosed(code=1000, reason="bye", initiator=CloseInitiator.LOCAL)
    assert closed.normal and closed.error() is None


def test_a_close_the_core_sends_itself_is_timed_from_when_it_was_sent() -> None:
    pair = Pair()
    pair.open()
    pair.now = 3.0
    pair.sw.send_session_ended({"reason": "done"})
    pair.cw.receive_data(pair.sw.data_to_send(), 3.0)  # onsessionended -> our close, at 3.0
    assert pair.cw.get_timer() == 3.0 + 5.0
    pair.cw.handle_timer(8.0)
    # The session was over (onsessionended), so the missing reply loses nothing: normal.
    assert pair.cw.closed == ConnectionClosed(
        code=1000, reason="session ended", initiator=CloseInitiator.LOCAL
    )
    assert pair.cw.closed.normal


def test_close_needs_now_and_before_the_handshake_closes_at_once() -> None:
    cw = ClientConnection(REQUEST, URL)
    with pytest.raises(TypeError):
        cw.close(1000)  # type: ignore[call-arg]
    cw.close(now=4.0)
    assert cw.closed is not None and cw.closed.initiator is CloseInitiator.LOCAL


# --- liveness ----------------------------------------------------------------------------


def test_a_silent_server_gets_a_ping_then_the_connection_is_lost() -> None:
    pair = Pair(config=ClientConfig(liveness_timeout=10, pong_timeout=5), wall_clock_offset=EPOCH)
    pair.open()  # the last bytes from the server arrived at 0.0
    pair.cw.data_to_send()
    assert pair.cw.get_timer() == 10.0
    pair.cw.handle_timer(10.0)
    [ping] = client_texts(pair.cw.data_to_send())
    assert ping == {"method": "ping", "data": str(round((10.0 + EPOCH) * 1000))}
    assert pair.cw.get_timer() == 15.0
    pair.cw.handle_timer(15.0)
    closed = pair.cw.events()[-1]
    assert closed == ConnectionClosed(
        code=1006, reason="the server stopped answering", initiator=CloseInitiator.LOST
    )
    assert not closed.normal
    error = closed.error()
    assert isinstance(error, ConnectionLost) and str(error) == "The server stopped answering."


def test_any_byte_from_the_server_keeps_the_connection_alive() -> None:
    pair = Pair(config=ClientConfig(liveness_timeout=10, pong_timeout=5))
    pair.open()
    pair.cw.handle_timer(10.0)  # ping
    pair.now = 12.0
    pair.pump()  # the server machine answers with a pong at 12.0
    assert any(isinstance(e, Pong) for e in pair.client_events)
    assert pair.cw.get_timer() == 22.0  # silence is measured from the pong
    pair.cw.handle_timer(15.0)  # the old pong deadline: nothing happens
    assert pair.cw.closed is None
    pair.sw.send_pause()
    pair.cw.receive_data(pair.sw.data_to_send(), 20.0)
    assert pair.cw.get_timer() == 30.0


def test_keepalive_pings_and_disabled_liveness() -> None:
    pair = Pair(config=ClientConfig(liveness_timeout=None, keepalive_interval=3))
    pair.open()
    pair.cw.data_to_send()
    assert pair.cw.get_timer() == 3.0
    pair.cw.handle_timer(3.0)
    assert [m["method"] for m in client_texts(pair.cw.data_to_send())] == ["ping"]
    assert pair.cw.get_timer() == 6.0
    quiet = Pair(config=ClientConfig(liveness_timeout=None))
    quiet.open()
    assert quiet.cw.get_timer() is None


# --- server timers and refusing ----------------------------------------------------------


def test_server_drops_a_handshake_that_never_completes() -> None:
    sw = ServerConnection(ServerConfig(handshake_timeout=4), now=1.0)
    sw.receive_data(b"GET /millis HTTP/1.1\r\nHost: x\r\n", 2.0)  # and then nothing
    assert sw.get_timer() == 5.0
    sw.handle_timer(5.0)
    [closed] = sw.events()
    assert closed == ConnectionClosed(
        code=1008,
        reason="the WebSocket handshake did not complete within 4 s",
        initiator=CloseInitiator.LOCAL,
    )
    assert sw.data_to_send() == b""


def test_server_closes_1008_when_no_initiate_arrives() -> None:
    pair = Pair(server_config=ServerConfig(initiate_timeout=3))
    pair.sw.receive_data(pair.cw.data_to_send(), 0.5)  # only the handshake request
    pair.cw.data_to_send()  # the client's initiate is lost on the way
    assert pair.sw.get_timer() == 3.5
    pair.sw.handle_timer(3.5)
    pair.cw.receive_data(pair.sw.data_to_send(), 3.6)
    closed = pair.cw.events()[-1]
    assert isinstance(closed, ConnectionClosed)
    assert (closed.code, closed.reason) == (1008, "no initiate within 3 s")
    assert isinstance(closed.error(), ConnectionClosedByServer)
    pair.sw.receive_data(pair.cw.data_to_send(), 3.7)  # the client's reply
    assert pair.sw.closed is not None and pair.sw.closed.normal


def test_server_rejects_an_upgrade_with_503() -> None:
    cw = ClientConnection(REQUEST, URL)
    sw = ServerConnection(now=0.0)
    sw.reject(503, b"too many sessions")
    sw.receive_data(cw.data_to_send(), 0.1)
    [closed] = sw.events()
    assert closed.initiator is CloseInitiator.LOCAL and closed.normal
    cw.receive_data(sw.data_to_send(), 0.2)
    events = cw.events()
    assert events[0] == ConnectionRejected(status_code=503, body=b"too many sessions")
    with pytest.raises(LocalProtocolError):
        sw.reject(503)
    with pytest.raises(ConfigError):
        ServerConnection().reject(200)


# --- close classification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "initiator", "normal", "error"),
    [
        (1000, CloseInitiator.LOCAL, True, None),
        (1011, CloseInitiator.LOCAL, True, None),  # we chose to end it
        (1000, CloseInitiator.REMOTE, True, None),
        (1001, CloseInitiator.REMOTE, True, None),
        (1005, CloseInitiator.REMOTE, True, None),
        (1011, CloseInitiator.REMOTE, False, ConnectionClosedByServer),
        (1008, CloseInitiator.REMOTE, False, ConnectionClosedByServer),
        (1006, CloseInitiator.LOST, False, ConnectionLost),
        (1002, CloseInitiator.PROTOCOL_ERROR, False, RemoteProtocolError),
        (1009, CloseInitiator.PROTOCOL_ERROR, False, RemoteProtocolError),
    ],
)
def test_close_classification(
    code: int, initiator: CloseInitiator, normal: bool, error: type[Exception] | None
) -> None:
    closed = ConnectionClosed(code=code, reason="why", initiator=initiator)
    assert closed.normal is normal
    got = closed.error()
    assert (None if got is None else type(got)) is error


def test_a_close_reason_echoing_the_key_is_redacted() -> None:
    pair = Pair()
    pair.open()
    pair.sw.close(1011, f"bad key {REQUEST.public_key}", now=1.0)
    pair.pump()
    closed = pair.cw.closed
    assert closed is not None and REQUEST.public_key not in closed.reason
    assert REQUEST.public_key not in str(closed.error())


# --- fidelity --------------------------------------------------------------------------------


def test_ping_data_is_wall_clock_epoch_ms_and_rtt_uses_the_monotonic_clock() -> None:
    c = MessageClient(REQUEST, wall_clock_offset=EPOCH)
    c.start(0.0)
    c.messages_to_send()
    c.send_ping(2.0)
    [ping] = [json.loads(m) for m in c.messages_to_send() if isinstance(m, str)]
    assert ping == {"method": "ping", "data": "1700000002000"}
    c.receive_message('{"method":"pong","data":"1700000002000"}', 2.25)
    [pong] = [e for e in c.events() if isinstance(e, Pong)]
    assert pong.rtt_ms == 250.0


@pytest.mark.parametrize(
    ("echo", "rtt"),
    [
        # float echoes and padded strings are still our stamp
        *[(e, 500.0) for e in ('"1700000002000"', "1700000002000", "1700000002000.0")],
        ('" 1700000002000 "', 500.0),
        # anything else is someone else's ping: no RTT
        *[(e, None) for e in ('"elsewhere"', "true", "1700000002000.5", "null", "[1]")],
    ],
)
def test_pong_matching(echo: str, rtt: float | None) -> None:
    c = MessageClient(REQUEST, wall_clock_offset=EPOCH)
    c.start(0.0)
    c.send_ping(2.0)
    c.receive_message(f'{{"method":"pong","data":{echo}}}', 2.5)
    [pong] = [e for e in c.events() if isinstance(e, Pong)]
    assert pong.rtt_ms == rtt


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (math.nan, "data"),
        ({"a": [1, math.inf]}, "data.a[1]"),
        ({"deep": {"x": -math.inf}}, "data.deep.x"),
    ],
)
def test_nan_and_infinity_are_config_errors_naming_the_field(data: object, field: str) -> None:
    pair = Pair()
    pair.open()
    with pytest.raises(ConfigError, match="^" + re.escape(field) + " is "):
        pair.cw.send_message("custom", data)
    assert pair.cw.data_to_send() == b""  # nothing half-sent
    with pytest.raises(ConfigError, match=r"payload\.v"):
        pair.sw.send_message("x", payload={"v": math.nan})


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"metadata": {"score": math.nan}}, "metadata.score"),
        ({"agent_config": {"vad_threshold": math.inf}}, "agent_config.vad_threshold"),
        ({"extra": {"x": [math.nan]}}, "extra.x[0]"),
    ],
)
def test_nan_in_the_start_request_is_a_config_error(fields: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(name)):
        StartRequest(public_key="k", agent_id="a", **fields)  # type: ignore[arg-type]


def test_is_final_is_none_when_absent() -> None:
    pair = Pair()
    pair.open()
    pair.sw.send_transcript("hi", is_final=None)
    pair.sw.send_transcript("hi!", is_final=False)
    ce, _ = pair.pump()
    assert [e.is_final for e in ce if isinstance(e, Transcript)] == [None, False]


def test_function_call_result_is_typed() -> None:
    c = MessageClient(REQUEST)
    c.start(0.0)
    c.receive_message(
        '{"method":"onfunction","payload":{"name":"f","params":{"a":1},"result":{"ok":true}}}', 0
    )
    [call] = c.events()
    assert (call.function, call.params, call.result) == ("f", {"a": 1}, {"ok": True})  # type: ignore[attr-defined]


def test_server_messages_say_so_in_their_json_and_ours_never_do() -> None:
    server_error = UnknownMessage(method="error", data="boom")
    assert event_to_dict(server_error) == {
        "event": "error",
        "source": "server",
        "data": "boom",
        "payload": None,
    }
    ours = BadMessage(reason="text message is not valid JSON", raw="x")
    assert "source" not in event_to_dict(ours)
    assert "source" not in event_to_dict(
        ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.LOCAL)
    )


def test_agent_audio_events_are_off_by_default() -> None:
    assert ClientConfig().emit_audio_events is False
    pair = Pair(config=ClientConfig())
    pair.open()
    pair.sw.send_audio(b"\x01\x00" * 10)
    ce, _ = pair.pump()
    assert "AgentAudio" not in types(ce)
    assert pair.cw.playback.queued_samples == 10


# --- hostile handshakes (issue 11 items 1 and 5) ------------------------------------------

GOOD_REQUEST = (
    b"GET /millis HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize(
    "bad",
    [
        GOOD_REQUEST.replace(b"Connection: Upgrade", b"Connection: Upgr\xe1de"),
        GOOD_REQUEST.replace(b"Host: h", b"Host: h\xe1"),
        GOOD_REQUEST.replace(b"Host: h", b"Host: xn--zzz-"),  # ASCII, but not valid IDNA
    ],
)
def test_non_ascii_handshake_bytes_give_400_and_remote_protocol_error(bad: bytes) -> None:
    sw = ServerConnection(now=0.0)
    with pytest.raises(RemoteProtocolError):
        sw.receive_data(bad, 0.0)
    assert sw.data_to_send().startswith(b"HTTP/1.1 400 ")
    closed = sw.events()[-1]
    assert (
        isinstance(closed, ConnectionClosed) and closed.initiator is CloseInitiator.PROTOCOL_ERROR
    )
    with pytest.raises(RemoteProtocolError):  # sticky
        sw.receive_data(b"more", 0.1)


def test_a_101_response_with_a_bad_byte_is_a_remote_protocol_error() -> None:
    cw = ClientConnection(REQUEST, URL)
    sw = ServerConnection(now=0.0)
    sw.receive_data(cw.data_to_send(), 0.0)
    response = sw.data_to_send()
    head, _, rest = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    bad = b"\r\n".join(
        b"Connection: Upgr\xe1de" if line.lower().startswith(b"connection:") else line
        for line in lines
    )
    with pytest.raises(RemoteProtocolError):
        cw.receive_data(bad + b"\r\n\r\n" + rest, 0.1)
    assert cw.closed is not None and cw.closed.initiator is CloseInitiator.PROTOCOL_ERROR


def test_pipelined_initiate_after_a_long_first_read_is_kept() -> None:
    """The handshake and an initiate with 64 KB of metadata (over 64 KiB together), plus
    audio, all in one read: the server must see every one of them."""
    request = StartRequest(public_key="k", agent_id="a", metadata={"blob": "x" * 65_000})
    cw = ClientConnection(request, URL)
    sw = ServerConnection(now=0.0)
    first = cw.data_to_send()
    accept = ServerConnection(now=0.0)
    accept.receive_data(first, 0.0)
    cw.receive_data(accept.data_to_send(), 0.0)  # the 101: initiate is now queued
    cw.send_audio(b"\x01\x00" * 160, 0.0)
    cw.receive_data(server_frame(0x1, b'{"method":"onready"}'), 0.0)
    cw.send_audio(b"\x02\x00" * 160, 0.0)
    data = first + cw.data_to_send()
    assert len(data) > 64 * 1024
    sw.receive_data(data, 0.0)
    events = sw.events()
    assert types(events)[:2] == ["Connected", "InitiateReceived"]
    initiate = events[1]
    assert isinstance(initiate, InitiateReceived)
    assert initiate.request.metadata == {"blob": "x" * 65_000}
    assert types(events).count("ClientAudio") >= 1
