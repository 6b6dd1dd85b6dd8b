"""Just enough RFC 6455 for the benchmark's load server and its hand-rolled floor client.

Whole unfragmented frames only, no extensions: both peers here are ours, so the framing can
be as cheap as Python allows — which is the point of the "floor" row of the table. Not a
general WebSocket implementation; millis-proto's transports use wsproto and the core.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "accept_key",
    "client_handshake",
    "encode",
    "mask_payload",
    "server_handshake",
]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LEN16 = struct.Struct("!H")
_LEN64 = struct.Struct("!Q")


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def client_handshake(host: str, target: str) -> tuple[bytes, bytes]:
    """The upgrade request and the accept value the server must answer with."""
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, accept_key(key)


def server_handshake(request: bytes) -> tuple[bytes, bytes] | None:
    """``(response, request target)`` for an upgrade request head, or None if it is not one."""
    lines = request.split(b"\r\n")
    parts = lines[0].split(b" ")
    key = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if key is None or len(parts) < 2:
        return None
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
    )
    return response, parts[1]


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (one big-int XOR: no per-byte loop)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def encode(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One whole frame (FIN set); clients pass ``masked=True`` and get a fresh random mask."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, bit | 126)) + _LEN16.pack(n)
    else:
        head = bytes((0x80 | opcode, bit | 127)) + _LEN64.pack(n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + mask_payload(payload, mask)


class FrameReader:
    """Splits a byte stream into ``(opcode, payload)`` frames, unmasking when asked.

    ``unmask_binary=False`` leaves masked binary payloads as they are: the load server only
    counts uplink audio, so it skips the XOR a real agent would need.
    """

    __slots__ = ("_buf", "_unmask_binary")

    def __init__(self, *, unmask_binary: bool = True) -> None:
        self._buf = bytearray()
        self._unmask_binary = unmask_binary

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if end - at < 2:
                    break
                (n,) = _LEN16.unpack_from(buf, at)
                at += 2
            elif n == 127:
                if end - at < 8:
                    break
                (n,) = _LEN64.unpack_from(buf, at)
                at += 8
            masked = b1 & 0x80
            if masked:
                if end - at < 4:
                    break
                mask = bytes(buf[at : at + 4])
                at += 4
            if end - at < n:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[at : at + n])
            if masked and (opcode != BINARY or self._unmask_binary):
                payload = mask_payload(payload, mask)
            frames.append((opcode, payload))
            pos = at + n
        if pos:
            del buf[:pos]
        return frames
