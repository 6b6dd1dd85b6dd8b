"""A fast path for whole, unfragmented data frames; wsproto stays the authority for the rest.

Theory of operation
-------------------
Audio is 50-125 binary frames a second each way per session, and wsproto's generic send
and parse paths (extension hooks, a masker object, a buffer with commit/rollback, partial
events) cost more than the frame itself. This module does only the common case, and
hands everything else to wsproto untouched:

* :func:`encode_frame` builds one whole frame (FIN set, no RSV bits, minimal length
  encoding, masked with the given key on the client side) — byte for byte what wsproto's
  ``send`` gives for the same message and mask.
* :class:`FrameSplitter` cuts the received byte stream at frame boundaries. A whole frame
  that is a plain binary or text message (FIN, no RSV bits, masking as the role demands,
  minimal length, valid UTF-8 for text) comes out as its payload (``bytes`` or ``str``).
  A well-formed control frame (ping, pong, close) comes out as :class:`ForWsproto` holding
  the frame's exact bytes, for wsproto to handle; since it is whole, wsproto's buffer is
  empty again afterwards and the next frame can take the fast path. Anything unusual — a
  fragment, a continuation, RSV bits, an unknown opcode, wrong masking, a non-minimal or
  oversized length, invalid UTF-8 — switches the splitter to *passthrough* for good:
  those bytes and every later one go to wsproto as they are, so its verdict (the close
  code and reason) is exactly what wsproto alone would have given.

The owner must stop feeding the splitter's output to the message layer once wsproto has
left the OPEN state (a close frame came): bytes after that are wsproto's to ignore.
The differential tests (``tests/core/test_frames.py``) check all of this against wsproto
alone: every message type, every split offset, random masks, generated streams, and the
malformed frames wsproto rejects.
"""

from __future__ import annotations

import codecs
import struct
from typing import NamedTuple

__all__ = ["BINARY", "CLOSE", "PING", "PONG", "TEXT", "ForWsproto", "FrameSplitter", "encode_frame"]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80
_MASK_BIT = 0x80
_CONTROL = frozenset({CLOSE, PING, PONG})
_LEN16 = struct.Struct("!H")
_LEN64 = struct.Struct("!Q")


class ForWsproto(NamedTuple):
    """Bytes of the stream that wsproto must see (a control frame, or passthrough)."""

    data: bytes


#: Per payload length: the integer whose 32-bit words are all 1, so that a 4-byte key as
#: an integer, times it, is the key repeated over the payload (one multiplication instead
#: of building the repeated key as bytes).
_REPUNITS: dict[int, int] = {}
#: Frame heads by (first byte, payload length, masked); audio frames all have a few sizes.
_HEADS: dict[tuple[int, int, bool], bytes] = {}
_CACHE_LIMIT = 256
_UTF8 = codecs.getincrementaldecoder("utf-8")


def _repunit(n: int) -> int:
    unit = _REPUNITS.get(n)
    if unit is None:
        words = (n + 3) // 4
        unit = ((1 << (32 * words)) - 1) // 0xFFFFFFFF
        if len(_REPUNITS) < _CACHE_LIMIT:
            _REPUNITS[n] = unit
    return unit


def _xor(payload: bytes, mask: bytes) -> bytes:
    # One big-integer XOR instead of a loop over bytes: a few µs for an audio frame.
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes(mask, "little") * (_REPUNITS.get(n) or _repunit(n))
    if n & 3:  # the key's last repeat is cut short, as the payload is
        key &= (1 << (8 * n)) - 1
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def _head(first: int, n: int, masked: bool) -> bytes:
    head = _HEADS.get((first, n, masked))
    if head is None:
        bit = _MASK_BIT if masked else 0
        if n < 126:
            head = bytes((first, bit | n))
        elif n < 65536:
            head = bytes((first, bit | 126)) + _LEN16.pack(n)
        else:
            head = bytes((first, bit | 127)) + _LEN64.pack(n)
        if len(_HEADS) < _CACHE_LIMIT:
            _HEADS[first, n, masked] = head
    return head


def encode_frame(opcode: int, payload: bytes, mask: bytes | None) -> bytes:
    """One whole frame; ``mask`` is the client's fresh 4-byte key, ``None`` on the server."""
    n = len(payload)
    if mask is None:
        return (_HEADS.get((_FIN | opcode, n, False)) or _head(_FIN | opcode, n, False)) + payload
    head = _HEADS.get((_FIN | opcode, n, True)) or _head(_FIN | opcode, n, True)
    return b"".join((head, mask, _xor(payload, mask)))


#: A partial text frame's UTF-8 check so far: the decoder and how many bytes it has seen.
_Utf8Check = tuple["codecs.IncrementalDecoder", int]


def _check_utf8(
    buf: bytes | bytearray | memoryview, at: int, end: int, masked: int, checked: _Utf8Check | None
) -> _Utf8Check | None:
    """Go on checking the partial payload ``buf[at:end]``; ``None`` if it is invalid."""
    decoder, done = checked if checked is not None else (_UTF8(), 0)
    part = bytes(buf[at + done : end])
    if masked:
        key = bytes(buf[at - 4 : at])
        shift = done & 3
        part = _xor(part, key[shift:] + key[:shift])
    try:
        decoder.decode(part, final=False)
    except UnicodeDecodeError:
        return None
    return decoder, end - at


class FrameSplitter:
    """Splits received bytes into fast-path messages and what wsproto must see.

    ``client`` is the role of the receiving side (a client expects unmasked frames, a
    server masked ones). ``max_frame_bytes`` bounds what the splitter buffers for one
    frame; a frame announcing more goes to wsproto (the owner's message-size limit then
    applies as it does to wsproto's partial messages).
    """

    __slots__ = ("_buf", "_client", "_max", "_partial", "passthrough")

    def __init__(self, *, client: bool, max_frame_bytes: int) -> None:
        self._buf = bytearray()
        self._client = client
        self._max = max_frame_bytes
        #: True once the stream was handed to wsproto for good.
        self.passthrough = False
        # The UTF-8 check of the text frame held at the start of the buffer, if any.
        self._partial: _Utf8Check | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | str | ForWsproto]:
        """The complete items in ``data`` (plus what was buffered), in stream order."""
        if self.passthrough:
            return [ForWsproto(bytes(data))] if data else []
        partial, self._partial = self._partial, None
        buf: bytes | bytearray | memoryview
        held = len(self._buf)  # bytes of earlier reads, at the start of buf
        if held:
            buf = self._buf
            buf += data
        elif isinstance(data, bytes) or (
            isinstance(data, memoryview) and data.ndim == 1 and data.format == "B"
        ):
            if (
                self._client
                and len(data) > 129  # a binary frame with a 16-bit length, then nothing
                and data[0] == _FIN | BINARY
                and data[1] == 126
                and (data[2] << 8 | data[3]) + 4 == len(data)
                and len(data) - 4 <= self._max
            ):
                # The usual read on a client: exactly one agent audio frame. The loop
                # below would find the same (tests/core/test_frames.py feeds both ways).
                return [bytes(data[4:])]
            # Nothing held back (the usual case: a read ends at a frame boundary): parse
            # the read itself, no copy of it; payloads and an incomplete tail are copied
            # out, so a transport may reuse its read buffer once this returns.
            buf = data
        else:
            buf = bytes(data)
        out: list[bytes | str | ForWsproto] = []
        pos = 0
        end = len(buf)
        want_mask = 0 if self._client else _MASK_BIT
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            minimal = True
            if n == 126:
                if end - at < 2:
                    break
                (n,) = _LEN16.unpack_from(buf, at)
                at += 2
                minimal = n > 125
            elif n == 127:
                if end - at < 8:
                    break
                (n,) = _LEN64.unpack_from(buf, at)
                at += 8
                minimal = n > 65535
            opcode = b0 & 0x0F
            clean = (b0 & 0xF0) == _FIN and (b1 & _MASK_BIT) == want_mask and minimal
            control = opcode in _CONTROL
            if not clean or n > (125 if control else self._max):
                return self._give_up(out, buf, pos, held)
            if not control and opcode not in (TEXT, BINARY):
                return self._give_up(out, buf, pos, held)
            if want_mask:
                at += 4
            stop = at + n
            if stop > end:
                if opcode == TEXT and end > at:
                    # wsproto checks a text frame's UTF-8 as its bytes arrive, so it fails
                    # the connection on this read, before the frame is whole: so do we.
                    # Incrementally: only the bytes new since the last read are decoded.
                    checked = partial if pos == 0 else None
                    self._partial = _check_utf8(buf, at, end, want_mask, checked)
                    if self._partial is None:
                        return self._give_up(out, buf, pos, held)
                break
            if control:
                frame = bytes(buf[pos:stop])
                last = out[-1] if out else None
                if isinstance(last, ForWsproto):  # adjacent control frames: one wsproto call
                    out[-1] = ForWsproto(last.data + frame)
                else:
                    out.append(ForWsproto(frame))
            else:
                payload = bytes(buf[at:stop])
                if want_mask:
                    payload = _xor(payload, bytes(buf[at - 4 : at]))
                if opcode == BINARY:
                    out.append(payload)
                else:
                    try:
                        out.append(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        return self._give_up(out, buf, pos, held)
            pos = stop
        if buf is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(buf[pos:])
        return out

    def _give_up(
        self,
        out: list[bytes | str | ForWsproto],
        rest: bytes | bytearray | memoryview,
        pos: int,
        held: int,
    ) -> list[bytes | str | ForWsproto]:
        """Hand the rest of the stream, from the frame at ``pos``, to wsproto for good.

        ``rest[:held]`` came in earlier reads: wsproto gets it, then this read's bytes, in
        two calls, as it would have without the fast path. It matters: wsproto checks a
        text frame's UTF-8 as it arrives, and the position in its error (the reason of
        the 1007 close) counts from the start of the read the bad byte came in."""
        self.passthrough = True
        if pos < held < len(rest):
            out.append(ForWsproto(bytes(rest[pos:held])))
            pos = held
        out.append(ForWsproto(bytes(rest[pos:])))
        self._buf = bytearray()
        return out
