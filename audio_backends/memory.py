"""In-memory backends: a source over PCM bytes, a sink that keeps what it played, a null sink.

They need nothing beyond the standard library. For numpy arrays at any rate or channel
count, convert first with :func:`audio_backends.convert.pcm_from_array` (and back with
:func:`~audio_backends.convert.array_from_pcm`).
"""

from __future__ import annotations

from millis_proto import BYTES_PER_SAMPLE

from ._base import BlockSource, CloseOnExit, check_pcm

__all__ = ["MemorySink", "MemorySource", "NullSink"]

#: Size of the blocks a :class:`MemorySource` hands to its reader (1 s of audio).
_BLOCK_BYTES = 16_000 * BYTES_PER_SAMPLE


class MemorySource(BlockSource):
    """Reads protocol PCM (s16le, 16 kHz, mono) from memory.

    ``loop`` starts over at the end; otherwise ``tail_silence_s`` of zeros follow the
    audio (useful to let an agent answer before the source ends). Raises ValueError for
    PCM that is not whole samples, or for looping over no audio at all.
    """

    def __init__(
        self,
        pcm: bytes | bytearray | memoryview,
        *,
        loop: bool = False,
        tail_silence_s: float = 0.0,
    ) -> None:
        check_pcm(pcm, "pcm")
        if loop and not pcm:
            raise ValueError("cannot loop over empty audio.")
        super().__init__(loop=loop, tail_silence_s=tail_silence_s)
        self._pcm = bytes(pcm)
        self._pos = 0

    def _next_block(self) -> bytes | None:
        if self._pos >= len(self._pcm):
            return None
        block = self._pcm[self._pos : self._pos + _BLOCK_BYTES]
        self._pos += len(block)
        return block

    def _rewind(self) -> None:
        self._pos = 0


class MemorySink(CloseOnExit):
    """Keeps every sample written to it: the playback timeline, silence included.

    ``pcm`` is the whole recording; ``played_samples`` counts the real samples in it.
    Writing after :meth:`close` raises ValueError.
    """

    def __init__(self) -> None:
        self._pcm = bytearray()
        self.played_samples = 0
        self.closed = False

    @property
    def pcm(self) -> bytes:
        """Everything written so far (s16le, 16 kHz, mono)."""
        return bytes(self._pcm)

    @property
    def written_samples(self) -> int:
        """Samples written so far, silence included (the length of the timeline)."""
        return len(self._pcm) // BYTES_PER_SAMPLE

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Append ``pcm``; count ``real_samples`` as played."""
        if self.closed:
            raise ValueError("write to a closed MemorySink.")
        check_pcm(pcm, "pcm")
        self._pcm += pcm
        self.played_samples += real_samples

    def close(self) -> None:
        """Stop accepting audio; the recording stays readable."""
        self.closed = True


class NullSink(CloseOnExit):
    """Discards audio but counts it, for sessions without a speaker."""

    def __init__(self) -> None:
        self.played_samples = 0
        self.written_samples = 0

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Count and forget ``pcm``."""
        self.written_samples += check_pcm(pcm, "pcm")
        self.played_samples += real_samples
