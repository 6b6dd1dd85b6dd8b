"""Hand-built inputs for the fuzz targets: the saved corpus starts from these.

Many are beyond 8 KiB, where a fuzzer starting from small inputs rarely goes: frames
announcing huge lengths (16- and 64-bit length fields), fragment floods that pass the
message bound, ping floods, an upgrade request with a 70 KiB head and an ``initiate``
pipelined behind it, non-ASCII header bytes. They are built here rather than stored (some
are hundreds of KiB); the saved corpus in ``tests/fuzz/corpus/`` holds what fuzzing found.
"""

from __future__ import annotations

import json
import struct

from targets import OP_AUDIO, OP_CLOSE, OP_EOF, OP_FEED, OP_MESSAGE, OP_PULL, OP_TIME

_MASK = b"\x11\x22\x33\x44"


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    """One WebSocket frame (RFC 6455 §5.2); clients mask, servers do not."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if masked:
        payload = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
        head += _MASK
    return head + payload


def text(obj: object, *, masked: bool = False) -> bytes:
    return frame(0x1, json.dumps(obj).encode(), masked=masked)


def record(op: int, payload: bytes = b"") -> bytes:
    return bytes([op]) + struct.pack(">H", len(payload)) + payload


def feed(data: bytes) -> bytes:
    """FEED records for ``data`` (split at the 64 KiB a record can carry)."""
    step = 0xFFFF
    return b"".join(record(OP_FEED, data[i : i + step]) for i in range(0, len(data), step))


def upgrade(extra: bytes = b"", connection: bytes = b"Upgrade") -> bytes:
    return (
        b"GET /millis HTTP/1.1\r\nHost: fuzz.test\r\nUpgrade: websocket\r\n"
        b"Connection: " + connection + b"\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + extra
        + b"\r\n"
    )


INITIATE = {
    "method": "initiate",
    "data": {"public_key": "pk-fuzz", "agent": {"agent_id": "a"}},
}
READY = {"method": "onready", "payload": {"session_id": "s-1"}}


def client_seeds() -> dict[str, bytes]:
    ready = feed(text(READY))
    audio = bytes(range(256)) * 8
    return {
        "ready-audio-pull": ready
        + feed(frame(0x2, audio))
        + record(OP_PULL, b"\x01\x40")
        + record(OP_TIME, b"\x00\x10"),
        "pause-clear": ready
        + feed(text({"method": "start_answering"}) + frame(0x2, audio) + text({"method": "pause"}))
        + feed(text({"method": "clear"}) + text({"method": "unpause"})),
        "huge-64bit-length": ready + feed(b"\x82\x7f" + struct.pack(">Q", 1 << 40) + bytes(9000)),
        "large-16bit-frames": ready + feed(frame(0x2, bytes(60_000)) * 2),
        "fragment-flood-past-the-bound": ready
        + feed(
            frame(0x1, b'{"method":"x","data":"', fin=False)
            + frame(0x0, b"a" * 7, fin=False) * 12_000
            + frame(0x0, b'"}')
        ),
        "binary-fragment-flood": ready
        + feed(frame(0x2, b"\0\0", fin=False) + frame(0x0, b"\1\1", fin=False) * 20_000),
        "ping-flood": ready + feed(frame(0x9, b"p" * 125) * 400),
        "audio-flood-overflows-playback": ready
        + b"".join(feed(frame(0x2, bytes(64_000))) for _ in range(3)),
        "close-then-more": ready
        + feed(frame(0x8, struct.pack(">H", 1000) + b"bye") + text(READY) + frame(0x2, audio)),
        "our-close-then-data": ready
        + record(OP_CLOSE)
        + feed(text({"method": "ontranscript", "data": {"script": "x", "is_final": True}}))
        + record(OP_TIME, b"\x10\x00"),
        "bad-utf8-and-json": ready + feed(frame(0x1, b"\xff\xfe{") + frame(0x1, b"[1,2")),
        "audio-after-end": ready
        + feed(text({"method": "onsessionended"}))
        + record(OP_AUDIO, bytes(640))
        + record(OP_TIME, b"\x03\x00"),
        "eof-mid-frame": ready + feed(b"\x82\x7e\x10\x00" + bytes(100)) + record(OP_EOF),
        "reserved-bits-and-opcodes": ready + feed(b"\xf2\x00" + b"\x83\x00" + b"\x0b\x00"),
    }


def server_seeds() -> dict[str, bytes]:
    init = text(INITIATE, masked=True)
    return {
        "upgrade-initiate-audio": feed(upgrade() + init + frame(0x2, bytes(640), masked=True))
        + record(OP_MESSAGE)
        + record(OP_AUDIO, bytes(640)),
        "split-upgrade": b"".join(feed(upgrade()[i : i + 7]) for i in range(0, 200, 7))
        + feed(init),
        "non-ascii-connection": feed(upgrade(connection=b"Upgr\xe1de")),
        "non-ascii-host": feed(upgrade().replace(b"fuzz.test", b"fu\xffzz.test")),
        "long-head-pipelined-initiate": feed(upgrade(b"X-Pad: " + b"p" * 70_000 + b"\r\n") + init),
        "header-16k-line": feed(upgrade(b"X-Long: " + b"l" * 16_384 + b"\r\n")),
        "many-headers": feed(upgrade(b"".join(b"X-%d: v\r\n" % i for i in range(2000)))),
        "unmasked-frame": feed(upgrade() + text(INITIATE)),
        "initiate-timeout": feed(upgrade()) + record(OP_TIME, b"\x10\x00"),
        "handshake-timeout": feed(upgrade()[:40]) + record(OP_TIME, b"\x10\x00"),
        "fragment-flood": feed(
            upgrade()
            + init
            + frame(0x2, b"\0\0", fin=False, masked=True)
            + frame(0x0, b"\1" * 4, fin=False, masked=True) * 20_000
        ),
        "huge-length-masked": feed(
            upgrade() + init + b"\x82\xff" + struct.pack(">Q", 1 << 50) + _MASK + bytes(9000)
        ),
        "http-garbage": feed(b"\x16\x03\x01\x02\x00" + bytes(9000)),
        "close-then-data": feed(
            upgrade()
            + init
            + frame(0x8, struct.pack(">H", 1000), masked=True)
            + frame(0x2, bytes(64), masked=True)
        ),
    }


SEEDS = {"client": client_seeds, "server": server_seeds}
