"""Fuzz targets for the two connection objects of the core, and the invariants they check.

Each target reads its input as a little program so the fuzzer can reach deep states: the
input is a sequence of records ``op, length (2 bytes, big-endian), payload``; ops feed
bytes from the peer, advance the clock and fire timers, pull playback, send audio, close,
or signal EOF. A short last record takes the rest of the input, so any byte string is a
valid program.

* :func:`client_target` — a :class:`~millis_proto.ClientConnection` that already got a
  valid ``101`` answer (the fuzzer plays the server from the first frame on).
* :func:`server_target` — a :class:`~millis_proto.ServerConnection` from the very first
  byte of the HTTP upgrade request.

Invariants (an :class:`InvariantError` when broken):

* only documented exceptions escape: :class:`~millis_proto.RemoteProtocolError` from
  ``receive_data`` (the handshake), :class:`~millis_proto.LocalProtocolError` from
  sending after the end; nothing else, ever;
* at most one ``ConnectionClosed``, and nothing is written after it;
* after our close frame went out, only the bytes of that frame are ever written (no data
  frames after our close);
* what is pending to send and the playback buffer stay within their bounds.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from millis_proto import (
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    ServerConfig,
    ServerConnection,
    StartRequest,
)

__all__ = ["InvariantError", "client_target", "handshake_response", "server_target"]

REQUEST = StartRequest(public_key="pk-fuzz-secret", agent_id="agent-fuzz")
#: Small bounds so the fuzzer reaches them quickly.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PENDING_BYTES = 256 * 1024
MAX_PLAYBACK_SECONDS = 2.0
#: Output one step may queue beyond what it was given (a close frame, ready/pong replies).
OUTPUT_SLACK_BYTES = 4096
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_FEED, OP_TIME, OP_PULL, OP_AUDIO, OP_CLOSE, OP_EOF, OP_MESSAGE = range(7)
OPS = 7


class InvariantError(AssertionError):
    """The connection broke one of the documented invariants."""


def handshake_response(request: bytes) -> bytes:
    """A valid ``101`` answer to the client's upgrade request."""
    key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", request)
    assert key is not None, request
    accept = base64.b64encode(hashlib.sha1(key.group(1) + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _records(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        op = data[i] % OPS
        if i + 3 <= len(data):
            n = int.from_bytes(data[i + 1 : i + 3], "big")
            payload = data[i + 3 : i + 3 + n]
            i += 3 + n
        else:
            payload = data[i + 1 :]
            i = len(data)
        out.append((op, payload))
    return out


class _Checker:
    """Runs the steps on a connection and checks the invariants after each."""

    def __init__(self, conn: ClientConnection | ServerConnection) -> None:
        self.conn = conn
        self.now = 0.0
        self.closed_events = 0
        self.sent_after_close = False
        self.close_frame_out = False

    def call(
        self, what: str, fn: Callable[[], object], allowed: tuple[type[Exception], ...] = ()
    ) -> None:
        try:
            fn()
        except allowed:
            pass
        except Exception as exc:
            raise InvariantError(f"{what} raised {type(exc).__name__}: {exc}") from exc

    def drain(self, given: int) -> None:
        conn = self.conn
        close_was_out = self.close_frame_out
        out = conn.data_to_send()
        if len(out) > given + MAX_PENDING_BYTES + OUTPUT_SLACK_BYTES:
            raise InvariantError(f"{len(out)} bytes pending after a {given}-byte step")
        if out and self.closed_events:
            raise InvariantError(f"{len(out)} bytes written after ConnectionClosed")
        if out and close_was_out:
            raise InvariantError(f"{len(out)} bytes written after our close frame")
        self.close_frame_out = conn.close_sent
        for event in conn.events():
            if isinstance(event, ConnectionClosed):
                self.closed_events += 1
                if self.closed_events > 1:
                    raise InvariantError("a second ConnectionClosed")
        if isinstance(conn, ClientConnection):
            playback = conn.playback
            if playback.queued_samples > playback.capacity_samples:
                raise InvariantError(
                    f"playback holds {playback.queued_samples} samples, "
                    f"more than its {playback.capacity_samples}"
                )

    def run(self, data: bytes) -> None:
        conn = self.conn
        for op, payload in _records(data):
            given = len(payload)
            if op == OP_FEED and payload:
                self.call(
                    "receive_data",
                    lambda p=payload: conn.receive_data(p, self.now),
                    (RemoteProtocolError,),
                )
            elif op == OP_TIME:
                self.now += (int.from_bytes(payload[:2].ljust(2, b"\0"), "big") or 1) / 100
                self.call("handle_timer", lambda: conn.handle_timer(self.now))
                self.call("get_timer", conn.get_timer)
            elif op == OP_PULL and isinstance(conn, ClientConnection):
                n = int.from_bytes(payload[:2].ljust(2, b"\0"), "big")
                self.call("pull_playback", lambda n=n: conn.pull_playback(n, self.now))
            elif op == OP_AUDIO:
                pcm = payload[: len(payload) // 2 * 2]
                if isinstance(conn, ClientConnection):
                    self.call(
                        "send_audio",
                        lambda p=pcm: conn.send_audio(p, self.now),
                        (LocalProtocolError,),
                    )
                else:
                    self.call("send_audio", lambda p=pcm: conn.send_audio(p), (LocalProtocolError,))
            elif op == OP_MESSAGE and isinstance(conn, ServerConnection):
                self.call("send_ready", lambda: conn.send_ready("s-1"), (LocalProtocolError,))
            elif op == OP_CLOSE:
                code = 1000 + (payload[0] % 12 if payload else 0)
                self.call("close", lambda c=code: conn.close(c, "fuzz", now=self.now))
            elif op == OP_EOF:
                self.call(
                    "receive_data(EOF)",
                    lambda: conn.receive_data(None, self.now),
                    (RemoteProtocolError,),
                )
            self.drain(given)
        # However the input ended, an EOF and the timers end the connection exactly once.
        self.call("EOF", lambda: conn.receive_data(None, self.now), (RemoteProtocolError,))
        self.call("handle_timer", lambda: conn.handle_timer(self.now + 3600))
        self.drain(0)
        if self.closed_events != 1:
            raise InvariantError(f"{self.closed_events} ConnectionClosed events after EOF")


def client_target(data: bytes) -> None:
    """A client connection after a valid handshake, fed ``data`` as a program."""
    config = ClientConfig(
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_pending_bytes=MAX_PENDING_BYTES,
        max_playback_seconds=MAX_PLAYBACK_SECONDS,
    )
    conn = ClientConnection(REQUEST, "ws://fuzz.test/millis", config)
    conn.receive_data(handshake_response(conn.data_to_send()), 0.0)
    checker = _Checker(conn)
    checker.drain(0)
    checker.run(data)


def server_target(data: bytes) -> None:
    """A server connection from the first byte, fed ``data`` as a program."""
    config = ServerConfig(max_message_bytes=MAX_MESSAGE_BYTES, max_pending_bytes=MAX_PENDING_BYTES)
    conn = ServerConnection(config, now=0.0)
    _Checker(conn).run(data)


TARGETS: dict[str, Callable[[bytes], None]] = {"client": client_target, "server": server_target}
