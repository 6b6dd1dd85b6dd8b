"""PCM framing helpers: sample carry across odd byte counts and fixed-size re-chunking.

The protocol's audio is headerless s16le, 16 kHz, mono (docs/protocol.md §2). Chunk sizes are
arbitrary in both directions, including odd byte counts, so a sample may be split across
two binary messages: :class:`SampleAligner` carries the odd byte to the next call.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = [
    "BYTES_PER_SAMPLE",
    "SAMPLE_RATE",
    "Rechunker",
    "SampleAligner",
    "ms_to_samples",
    "samples_to_ms",
]

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2

Buffer = bytes | bytearray | memoryview


def ms_to_samples(ms: float) -> int:
    """Number of whole samples in ``ms`` milliseconds at 16 kHz."""
    return round(ms * SAMPLE_RATE / 1000)


def samples_to_ms(samples: int) -> float:
    """Duration in milliseconds of ``samples`` samples at 16 kHz."""
    return samples * 1000 / SAMPLE_RATE


class SampleAligner:
    """Turns a stream of arbitrary byte chunks into whole-sample chunks.

    ``align(chunk)`` returns the bytes that complete whole samples and keeps a trailing odd
    byte for the next call, so no sample is ever split, lost or duplicated.
    """

    __slots__ = ("_odd",)

    def __init__(self) -> None:
        self._odd: bytes = b""

    @property
    def pending(self) -> int:
        """Bytes held back (0 or 1)."""
        return len(self._odd)

    def align(self, chunk: Buffer) -> bytes:
        """Return the whole-sample bytes of ``pending + chunk``; keep any odd byte."""
        if self._odd:
            data = self._odd + bytes(chunk)
        elif len(chunk) & 1 == 0:
            # hot path: no carry, nothing held back, and no copy of an immutable chunk
            return chunk if isinstance(chunk, bytes) else bytes(chunk)
        else:
            data = bytes(chunk)
        if len(data) & 1:
            self._odd = data[-1:]
            return data[:-1]
        self._odd = b""
        return data

    def reset(self) -> None:
        """Forget a held-back byte (used when the stream is cut, e.g. by ``clear``)."""
        self._odd = b""


class Rechunker:
    """Cuts a byte stream into frames of exactly ``frame_bytes`` bytes."""

    __slots__ = ("_buf", "frame_bytes")

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0 or frame_bytes % BYTES_PER_SAMPLE:
            raise ConfigError("frame_bytes must be a positive, even number of bytes.")
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes waiting for a full frame."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every complete frame now available, oldest first."""
        n = self.frame_bytes
        if not self._buf and len(data) == n and type(data) is bytes:
            return [data]  # hot path: one whole frame, nothing carried (bytes are immutable)
        self._buf += data
        if len(self._buf) < n:
            return []
        full = len(self._buf) - len(self._buf) % n
        frames = [bytes(self._buf[i : i + n]) for i in range(0, full, n)]
        del self._buf[:full]
        return frames

    def flush(self) -> bytes:
        """Return and forget whatever is left (fewer than ``frame_bytes`` bytes)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest
