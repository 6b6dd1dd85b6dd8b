"""Energy voice-activity detection over fixed 20 ms frames of s16le audio.

Theory of operation
-------------------
User audio arrives in chunks of any size, odd byte counts included (docs/protocol.md §2). The
VAD re-cuts it into frames of :data:`FRAME_SAMPLES` on the stream's own sample timeline —
frame *k* covers samples ``[k*320, (k+1)*320)`` — so every decision depends on the audio
alone, never on how it was chunked or when it arrived.

A frame is *voiced* when its mean square reaches the threshold, given in dBFS where 0 dBFS
is a full-scale square wave (a full-scale sine is about -3 dBFS). The comparison is done
on the sum of squares itself, so there is no logarithm per frame: this runs 50 times a
second per connection in pure Python.

Summing 320 squares in Python is most of the local agent's cost, and most frames do not
need it: a sample's high byte puts its magnitude within one octave, so eight counts over
the translated high bytes (``bytes`` methods, no Python loop) bound the sum of squares
from below and above. Only a frame whose bounds straddle the threshold (within a few dB
of it) is summed exactly, and digital silence (a muted microphone) is recognized whole.
The verdict is therefore always the exact one; only its cost depends on the audio.

There is no hangover here on purpose: the turn detector's trailing-silence windows are what
bridge the gaps between syllables, and a second hangover would make their durations lie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import mul

from ..errors import ConfigError
from ..pcm import BYTES_PER_SAMPLE, Buffer, Rechunker, SampleAligner, ms_to_samples
from ._samples import to_samples

__all__ = [
    "DEFAULT_THRESHOLD_DBFS",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "EnergyVad",
    "VadFrame",
    "level_dbfs",
]

#: VAD frame length: the common 20 ms of speech codecs and mobile clients.
FRAME_MS = 20
FRAME_SAMPLES = ms_to_samples(FRAME_MS)
#: Default voiced threshold. Quiet rooms sit near -60 dBFS and close speech near -25 dBFS.
DEFAULT_THRESHOLD_DBFS = -40.0

_FULL_SCALE_SQUARED = 32768.0**2
_FRAME_BYTES = FRAME_SAMPLES * BYTES_PER_SAMPLE
_SILENT_FRAME = bytes(_FRAME_BYTES)


def _octave(high_byte: int) -> int:
    """Octave of the magnitudes a sample with this (little-endian) high byte can have.

    With ``m`` the high byte's magnitude (``h`` for ``h >= 0``, ``-h - 1`` below), every
    such sample has ``256*m <= |s| <= 256*(m + 1)``; the octave is ``m.bit_length()``.
    """
    magnitude = high_byte if high_byte < 128 else 255 - high_byte
    return magnitude.bit_length()


_OCTAVE_OF_HIGH_BYTE = bytes(_octave(b) for b in range(256))
_OCTAVES = range(8)
#: Least and greatest square of a sample in each octave: octave 0 is ``|s| <= 256``,
#: octave ``k >= 1`` is ``2**(k + 7) <= |s| <= 2**(k + 8)``.
_LEAST_SQUARE = tuple(0 if k == 0 else 4 ** (k + 7) for k in _OCTAVES)
_GREATEST_SQUARE = tuple(4 ** (k + 8) for k in _OCTAVES)


def _reaches(frame: bytes, threshold: float) -> bool:
    """Whether the sum of squares of the s16le ``frame`` (whole samples) is ``>= threshold``.

    Exact for any ``frame`` and ``threshold``; see the module docstring for how.
    """
    if frame == _SILENT_FRAME:
        return threshold <= 0
    counts = list(map(frame[1::2].translate(_OCTAVE_OF_HIGH_BYTE).count, _OCTAVES))
    if sum(map(mul, counts, _LEAST_SQUARE)) >= threshold:
        return True
    if sum(map(mul, counts, _GREATEST_SQUARE)) < threshold:
        return False
    samples = to_samples(frame)
    total: int = sum(map(mul, samples, samples))
    return total >= threshold


def level_dbfs(pcm: Buffer) -> float:
    """Mean-square level of whole-sample s16le ``pcm`` in dBFS (``-inf`` for digital silence)."""
    samples = to_samples(pcm)
    if not samples:
        return -math.inf
    mean_square = sum(map(mul, samples, samples)) / len(samples)
    if mean_square == 0:
        return -math.inf
    return 10 * math.log10(mean_square / _FULL_SCALE_SQUARED)


@dataclass(frozen=True, slots=True, kw_only=True)
class VadFrame:
    """One 20 ms frame: where it starts on the stream's sample timeline, and the verdict."""

    start: int
    voiced: bool
    pcm: bytes = field(repr=False)

    @property
    def end(self) -> int:
        """Index of the first sample after the frame."""
        return self.start + FRAME_SAMPLES


class EnergyVad:
    """Cuts a byte stream into 20 ms frames and marks each voiced or not.

    Raises :class:`ValueError` for a threshold that is not a finite number.
    """

    __slots__ = ("_aligner", "_frames", "_position", "_threshold_ms", "threshold_dbfs")

    def __init__(self, threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS) -> None:
        if not math.isfinite(threshold_dbfs):
            raise ConfigError("threshold_dbfs must be a finite number.")
        self.threshold_dbfs = threshold_dbfs
        # The threshold as a mean square of raw samples (sum of squares / count).
        self._threshold_ms = _FULL_SCALE_SQUARED * 10 ** (threshold_dbfs / 10)
        self._aligner = SampleAligner()
        self._frames = Rechunker(_FRAME_BYTES)
        self._position = 0

    @property
    def position(self) -> int:
        """Samples framed so far: the start of the next frame."""
        return self._position

    def push(self, pcm: Buffer) -> list[VadFrame]:
        """Add audio of any byte length; return every frame completed by it, oldest first."""
        return [
            VadFrame(start=start, voiced=voiced, pcm=frame)
            for start, voiced, frame in self._classify(pcm)
        ]

    def _classify(self, pcm: Buffer) -> list[tuple[int, bool, bytes]]:
        """:meth:`push` as ``(start, voiced, pcm)`` tuples, for the turn detector: it reads
        every frame, 50 times a second, and needs no object per frame."""
        out: list[tuple[int, bool, bytes]] = []
        threshold = self._threshold_ms * FRAME_SAMPLES  # compare sums, not means
        for frame in self._frames.push(self._aligner.align(pcm)):
            out.append((self._position, _reaches(frame, threshold), frame))
            self._position += FRAME_SAMPLES
        return out
