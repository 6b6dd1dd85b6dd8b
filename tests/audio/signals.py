"""Test signals and measurements for the audio backend tests (needs numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from audio_backends.protocols import AudioSource


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> NDArray[np.float64]:
    """A sine of ``freq`` Hz, ``seconds`` long at ``rate``."""
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def dominant_frequency(samples: NDArray[np.generic], rate: float) -> float:
    """The strongest frequency, to a small fraction of a bin (Hann window, log-parabola)."""
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / len(x))


def rms_db(samples: NDArray[np.generic], full_scale: float = 32768.0) -> float:
    """RMS level in dB relative to ``full_scale``."""
    x = samples.astype(np.float64) / full_scale
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-20))


def pcm16(pcm: bytes) -> NDArray[np.int16]:
    """s16le bytes as an int16 array."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


def read_all(source: AudioSource, chunk: int = 320) -> bytes:
    """Everything a source yields, read ``chunk`` samples at a time."""
    parts = []
    while part := source.read(chunk):
        parts.append(part)
    return b"".join(parts)
