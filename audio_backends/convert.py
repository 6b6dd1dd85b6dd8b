"""Conversion between any audio and the protocol's PCM (s16le, 16 kHz, mono).

Every backend converts at its edge with these functions, so the conversion rules live in
one place:

* **Scale**: integer samples are divided by their full scale (int16 by 32768, int32 by
  2³¹, uint8 centred on 128); floats are taken as they are, ±1.0 = full scale.
* **Down-mix**: the equal-weight average of all channels — not the left channel alone,
  which loses a voice panned right, and not the sum, which clips.
* **Resampling**: soxr's streaming resampler at high quality (``"HQ"``, 20-bit, linear
  phase; live devices use ``"LQ"``, see :data:`LIVE_RESAMPLER_QUALITY`); its delay is
  compensated, so the output has ``round(n · 16000 / rate)`` samples
  aligned with the input. Equal rates are passed through untouched.
* **To s16le**: round to nearest, then **clamp** to [-32768, 32767] — never wrap (the web
  SDK wraps +1.0 to -32768, docs/protocol.md §2). NaN becomes 0.

A 16 kHz mono int16 input therefore comes out bit-exact.

Needs the ``audio`` extra (numpy, soxr); importing this module without them raises
:class:`~.errors.MissingExtraError`.
"""

from __future__ import annotations

from millis_proto import SAMPLE_RATE

from ._base import check_pcm
from .errors import MissingExtraError

try:
    import numpy as np
    import soxr
    from numpy.typing import ArrayLike, NDArray
except ImportError as exc:  # the optional extra is not installed
    raise MissingExtraError.for_module("audio conversion", exc.name, "audio") from exc

__all__ = [
    "Resampler",
    "StreamConverter",
    "array_from_pcm",
    "float_frames",
    "float_to_pcm",
    "pcm_from_array",
    "pcm_to_float",
]

#: soxr quality for files and arrays: 20-bit, flat to 7.6 kHz at 16 kHz (-3 dB there).
RESAMPLER_QUALITY = "HQ"
#: soxr quality for live devices. soxr's HQ stream hands out its output in bursts of
#: 50-70 ms whatever the block size, which a real-time path would have to buffer (latency)
#: or suffer as underruns; LQ streams steadily block by block. Measured at 16 kHz: flat
#: within 0.3 dB to 6 kHz, -13 dB at 7 kHz, aliases below -100 dB — enough for speech.
LIVE_RESAMPLER_QUALITY = "LQ"

FloatArray = NDArray[np.float32]


def float_frames(samples: ArrayLike) -> FloatArray:
    """Return ``samples`` as float32 frames, shape ``(frames, channels)``, ±1.0 = full scale.

    Accepts 1-D (mono) or 2-D frames-first arrays of float, int16, int32, int8 or uint8.
    Raises ValueError for other shapes and TypeError for other dtypes.
    """
    a = np.asarray(samples)
    if a.ndim == 1:
        a = a[:, np.newaxis]
    elif a.ndim != 2:
        raise ValueError(f"expected 1-D or (frames, channels) audio, got shape {a.shape}.")
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    scale = _INT_SCALE.get(a.dtype.str.lstrip("<>=|"))
    if scale is None:
        raise TypeError(f"unsupported sample type {a.dtype}.")
    offset, full_scale = scale
    return ((a.astype(np.float32) - offset) / full_scale).astype(np.float32, copy=False)


#: dtype code -> (offset, full scale) of integer sample formats.
_INT_SCALE: dict[str, tuple[float, float]] = {
    "i2": (0.0, 32768.0),
    "i4": (0.0, 2147483648.0),
    "i1": (0.0, 128.0),
    "u1": (128.0, 128.0),
}


def downmix(frames: FloatArray) -> FloatArray:
    """Average the channels of ``(frames, channels)`` float audio into one."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0])
    mixed: FloatArray = frames.mean(axis=1, dtype=np.float32)
    return mixed


def float_to_pcm(samples: FloatArray) -> bytes:
    """Mono float (±1.0) to s16le: rounded, clamped, never wrapped; NaN becomes 0."""
    scaled = np.rint(np.nan_to_num(samples, nan=0.0) * np.float32(32768.0))
    return bytes(np.clip(scaled, -32768, 32767).astype("<i2"))


def pcm_to_float(pcm: bytes) -> FloatArray:
    """s16le to mono float32 (±1.0). Raises ValueError on a split sample."""
    check_pcm(pcm, "pcm")
    samples: FloatArray = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)
    return samples


class Resampler:
    """Streaming mono float32 resampler (soxr); a pass-through when the rates are equal.

    Feed :meth:`process` in order, then :meth:`flush` once at the end of the stream.
    ``quality`` is a soxr preset (:data:`RESAMPLER_QUALITY` by default).
    """

    def __init__(self, in_rate: float, out_rate: float, quality: str = RESAMPLER_QUALITY) -> None:
        if not (in_rate > 0 and out_rate > 0):
            raise ValueError("sample rates must be positive.")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    def process(self, samples: FloatArray) -> FloatArray:
        """Resample the next part of the stream (may return fewer samples at first)."""
        if self._stream is None:
            return samples
        out: FloatArray = self._stream.resample_chunk(np.ascontiguousarray(samples))
        return out

    def flush(self) -> FloatArray:
        """Return the samples still inside the resampler; call once, at the end."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out: FloatArray = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        return out


class StreamConverter:
    """Converts a stream of audio at ``in_rate`` into protocol PCM, block by block.

    Blocks are anything :func:`float_frames` accepts, with a constant channel count.
    """

    def __init__(self, in_rate: float, quality: str = RESAMPLER_QUALITY) -> None:
        self._resampler = Resampler(in_rate, SAMPLE_RATE, quality)

    def push(self, samples: ArrayLike) -> bytes:
        """Convert the next block; the resampler may hold some samples back until later."""
        return float_to_pcm(self._resampler.process(downmix(float_frames(samples))))

    def flush(self) -> bytes:
        """Return the held-back samples at the end of the stream."""
        return float_to_pcm(self._resampler.flush())


def pcm_from_array(samples: ArrayLike, sample_rate: float = SAMPLE_RATE) -> bytes:
    """Convert a whole array (see :func:`float_frames`) at ``sample_rate`` to protocol PCM."""
    converter = StreamConverter(sample_rate)
    return converter.push(samples) + converter.flush()


def array_from_pcm(pcm: bytes) -> NDArray[np.int16]:
    """Protocol PCM as a 1-D native int16 array. Raises ValueError on a split sample."""
    check_pcm(pcm, "pcm")
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)
