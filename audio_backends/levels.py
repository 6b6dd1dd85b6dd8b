"""Level meters: RMS and peak of a PCM block in dBFS, reported as :class:`AudioLevel` events.

The Python counterpart of the web SDK's analyser nodes, for VU meters and animations. The
pumps in :mod:`.pacing` emit one event per block through their ``on_level`` callback.

Scale: 0 dBFS is full scale (32768), so a full-scale square wave measures 0 dBFS RMS and a
full-scale sine about -3.01 dBFS RMS. Digital silence has no logarithm; it is reported as
:data:`MIN_DBFS`, the web Audio API's default ``minDecibels``.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass
from typing import ClassVar, Literal

from millis_proto import SAMPLE_RATE, Event

from ._base import check_pcm

__all__ = ["MIN_DBFS", "AudioLevel", "LevelSource", "block_level"]

#: The floor of every level: silence, and anything quieter, reads -100 dBFS.
MIN_DBFS = -100.0
_FULL_SCALE = 32768.0

#: Whose audio a level belongs to.
LevelSource = Literal["user", "agent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioLevel(Event):
    """The level of one block of user or agent audio.

    ``t`` is where the block starts on its stream's timeline, in seconds from the pump's
    start (sample index / 16000), so user and agent levels line up with the recordings.
    Raises ValueError for an unknown ``source``.
    """

    name: ClassVar[str] = "audio_level"
    source: LevelSource
    rms_dbfs: float
    peak_dbfs: float
    t: float

    def __post_init__(self) -> None:
        if self.source not in ("user", "agent"):
            raise ValueError(f"source must be 'user' or 'agent', not {self.source!r}.")


def _dbfs(value: float) -> float:
    if value <= 0:
        return MIN_DBFS
    return max(MIN_DBFS, 20.0 * math.log10(value / _FULL_SCALE))


def block_level(pcm: bytes) -> tuple[float, float]:
    """Return ``(rms_dbfs, peak_dbfs)`` of an s16le block; ``MIN_DBFS`` for silence or b"".

    Raises ValueError if ``pcm`` is not whole samples.
    """
    n = check_pcm(pcm, "pcm")
    if not n:
        return MIN_DBFS, MIN_DBFS
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()  # the wire format is little-endian
    highest, lowest = max(samples), min(samples)
    peak = max(highest, -lowest)
    rms = math.sqrt(sum(x * x for x in samples) / n)
    return _dbfs(rms), _dbfs(peak)


def level_event(source: LevelSource, pcm: bytes, position: int) -> AudioLevel:
    """The :class:`AudioLevel` of ``pcm`` starting at sample ``position`` of its stream."""
    rms, peak = block_level(pcm)
    return AudioLevel(source=source, rms_dbfs=rms, peak_dbfs=peak, t=position / SAMPLE_RATE)
