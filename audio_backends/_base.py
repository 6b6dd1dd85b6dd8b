"""Shared building blocks of the concrete backends (private)."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TypeVar

from millis_proto import BYTES_PER_SAMPLE, SAMPLE_RATE

_C = TypeVar("_C", bound="CloseOnExit")


class CloseOnExit:
    """Mixin: ``with backend:`` calls ``close()`` on every exit, exceptions included."""

    __slots__ = ()

    def close(self) -> None:
        """Release resources; idempotent."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_pcm(pcm: bytes | bytearray | memoryview, what: str) -> int:
    """Return the sample count of ``pcm``; raise ValueError on a split sample."""
    if len(pcm) % BYTES_PER_SAMPLE:
        raise ValueError(f"{what} must be whole s16le samples (got {len(pcm)} bytes).")
    return len(pcm) // BYTES_PER_SAMPLE


class BlockSource(CloseOnExit, abc.ABC):
    """An :class:`~.protocols.AudioSource` over a decoder that yields PCM blocks.

    Subclasses produce protocol PCM in blocks of any size (:meth:`_next_block`; a block
    may be empty while a resampler fills up, ``None`` marks the end of the input) and can
    start over (:meth:`_rewind`). This class cuts the blocks to the sizes asked for and
    adds looping and a tail of silence, once for every source.
    """

    def __init__(self, *, loop: bool = False, tail_silence_s: float = 0.0) -> None:
        if not tail_silence_s >= 0:
            raise ValueError("tail_silence_s must not be negative.")
        self.loop = loop
        self._tail_bytes = round(tail_silence_s * SAMPLE_RATE) * BYTES_PER_SAMPLE
        self._buf = bytearray()
        self._produced = False  # any audio since the last rewind (an empty loop would spin)
        self._ended = False
        self._closed = False

    @abc.abstractmethod
    def _next_block(self) -> bytes | None:
        """Return the next block of protocol PCM (maybe empty), ``None`` at the end."""

    @abc.abstractmethod
    def _rewind(self) -> None:
        """Start the input over (for looping)."""

    def _release(self) -> None:
        """Free what the subclass holds (called once by :meth:`close`)."""

    def read(self, n_samples: int) -> bytes:
        """Return the next ``n_samples`` samples; fewer at the end, then ``b""``.

        Raises ValueError after :meth:`close`.
        """
        if n_samples < 0:
            raise ValueError("n_samples must not be negative.")
        if self._closed:
            raise ValueError("read from a closed audio source.")
        want = n_samples * BYTES_PER_SAMPLE
        buf = self._buf
        while len(buf) < want and not self._ended:
            block = self._next_block()
            if block is not None:
                self._produced = self._produced or bool(block)
                buf += block
            elif self.loop and self._produced:
                self._produced = False
                self._rewind()
            elif self._tail_bytes:
                # The tail is added as it is asked for, so a long one costs no memory.
                pad = min(self._tail_bytes, want - len(buf))
                buf += bytes(pad)
                self._tail_bytes -= pad
            else:
                self._ended = True
        out = bytes(buf[:want])
        del buf[:want]
        return out

    def close(self) -> None:
        """Release the input; idempotent. Reading afterwards raises ValueError."""
        if not self._closed:
            self._closed = True
            self._buf.clear()
            self._release()
