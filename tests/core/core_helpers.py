"""Helpers for core tests: a client/server pair exchanging real bytes, and raw frames."""

from __future__ import annotations

import struct
from typing import Any

from millis_proto import (
    ClientConfig,
    ClientConnection,
    Event,
    ServerConfig,
    ServerConnection,
    StartRequest,
)

REQUEST = StartRequest(public_key="pk-secret-123", agent_id="agent-1")


class Pair:
    """A client wire machine and a server wire machine joined by a byte pipe (h11 style).

    ``pump()`` moves bytes both ways until neither side has anything to send and returns the
    events each side produced. Time is ``self.now``, advanced by the test.
    """

    def __init__(
        self,
        request: StartRequest = REQUEST,
        config: ClientConfig | None = None,
        server_config: ServerConfig | None = None,
        **wire: Any,
    ) -> None:
        if config is None:
            # Core tests look at every agent frame, so ask for the per-frame events.
            config = ClientConfig(emit_audio_events=True)
        self.cw = ClientConnection(request, "ws://127.0.0.1:8080/millis", config, **wire)
        self.sw = ServerConnection(server_config, now=0.0)
        # One object per side: the names are kept so tests read as before.
        self.client = self.cw
        self.server = self.sw
        self.now = 0.0
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.c2s = bytearray()  # every byte the client wrote
        self.s2c = bytearray()  # every byte the server wrote

    def pump(self) -> tuple[list[Event], list[Event]]:
        ce: list[Event] = []
        se: list[Event] = []
        for _ in range(100):
            a = self.cw.data_to_send()
            if a:
                self.c2s += a
                self.sw.receive_data(a, self.now)
            se += self.sw.events()
            b = self.sw.data_to_send()
            if b:
                self.s2c += b
                self.cw.receive_data(b, self.now)
            ce += self.cw.events()
            if not a and not b:
                break
        self.client_events += ce
        self.server_events += se
        return ce, se

    def open(self, session_id: str = "sess-1") -> tuple[list[Event], list[Event]]:
        """Handshake, initiate, onready."""
        ce, se = self.pump()
        self.server.send_ready(session_id)
        ce2, se2 = self.pump()
        return ce + ce2, se + se2


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """An unmasked (server-to-client) WebSocket frame, built by hand from RFC 6455 §5.2."""
    head = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([head, n]) + payload
    if n < 65536:
        return bytes([head, 126]) + struct.pack("!H", n) + payload
    return bytes([head, 127]) + struct.pack("!Q", n) + payload


def parse_client_frame(data: bytes) -> tuple[int, bytes, bytes]:
    """Decode one masked (client-to-server) frame: (first byte, payload, rest)."""
    assert data[1] & 0x80, "client frames must be masked"
    n = data[1] & 0x7F
    pos = 2
    if n == 126:
        n = struct.unpack("!H", data[2:4])[0]
        pos = 4
    elif n == 127:
        n = struct.unpack("!Q", data[2:10])[0]
        pos = 10
    mask = data[pos : pos + 4]
    body = data[pos + 4 : pos + 4 + n]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    return data[0], payload, data[pos + 4 + n :]
