"""s16le bytes <-> ``array('h')``, independent of the machine's byte order."""

from __future__ import annotations

import sys
from array import array

from ..pcm import Buffer

# array('h') uses the native byte order; the wire is little-endian (docs/protocol.md §2).
_SWAP = sys.byteorder == "big"


def to_samples(pcm: Buffer) -> array[int]:
    """The signed 16-bit samples of whole-sample s16le ``pcm``."""
    samples = array("h")
    samples.frombytes(pcm)
    if _SWAP:
        samples.byteswap()
    return samples


def to_pcm(samples: array[int]) -> bytes:
    """s16le bytes of ``samples`` (the array is not modified)."""
    if _SWAP:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()
