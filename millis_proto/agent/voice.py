"""Voices: text → agent audio. The core only has a tone; real speech is injected.

A :data:`Voice` is any callable turning text into 16 kHz s16le mono PCM. The I/O layer
provides a speaking one (``espeak-ng`` in a subprocess, say); the core cannot run programs,
so its default, :func:`tone_voice`, beeps once per word — enough for a client to hear and
measure that the agent answered, with a length that grows with the text.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from functools import lru_cache

from ..pcm import SAMPLE_RATE, ms_to_samples
from ._samples import to_pcm

__all__ = ["MAX_TONE_SECONDS", "Voice", "tone_voice"]

Voice = Callable[[str], bytes]

#: Longest answer the tone voice produces; longer texts are cut at a whole beep.
MAX_TONE_SECONDS = 30.0

_BEEP_MS = 120
_GAP_MS = 60
_RAMP_MS = 10  # fade in/out, so beeps do not click
_AMPLITUDE = 8000  # about -15 dBFS as a sine: clearly audible, well under clipping
# Two pitches, alternating by word, so consecutive beeps are told apart by ear.
_PITCHES_HZ = (523.25, 659.25)


@lru_cache(maxsize=len(_PITCHES_HZ))
def _beep(hz: float) -> bytes:
    n = ms_to_samples(_BEEP_MS)
    ramp = ms_to_samples(_RAMP_MS)
    step = 2 * math.pi * hz / SAMPLE_RATE
    samples = array("h", bytes(2 * n))
    for i in range(n):
        gain = min(1.0, i / ramp, (n - 1 - i) / ramp)
        samples[i] = round(_AMPLITUDE * gain * math.sin(step * i))
    return to_pcm(samples) + bytes(2 * ms_to_samples(_GAP_MS))


def tone_voice(text: str) -> bytes:
    """One beep (120 ms, then 60 ms of silence) per word of ``text``; empty text is silent.

    Bounded by :data:`MAX_TONE_SECONDS`. Pure and deterministic.
    """
    words = len(text.split())
    per_word = ms_to_samples(_BEEP_MS + _GAP_MS)
    words = min(words, int(MAX_TONE_SECONDS * SAMPLE_RATE) // per_word)
    return b"".join(_beep(_PITCHES_HZ[i % len(_PITCHES_HZ)]) for i in range(words))
