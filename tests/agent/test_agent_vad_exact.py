"""The VAD's cheap verdict (octave bounds from the high bytes) is always the exact one.

The reference is the plain sum of squares; frames come from Hypothesis as raw bytes and as
noise at any level, thresholds from anywhere in dBFS, and on the exact sum itself (the one
place a bound could be off by one).
"""

from __future__ import annotations

import math
import random
import struct
from operator import mul

from hypothesis import given
from hypothesis import strategies as st

from millis_proto.agent import FRAME_SAMPLES, EnergyVad
from millis_proto.agent._samples import to_samples
from millis_proto.agent.vad import _reaches

FRAME_BYTES = FRAME_SAMPLES * 2


def exact_sum(frame: bytes) -> int:
    samples = to_samples(frame)
    return sum(map(mul, samples, samples))


def threshold(dbfs: float) -> float:
    return 32768.0**2 * 10 ** (dbfs / 10) * FRAME_SAMPLES


def noise_frame(seed: int, level_bits: float) -> bytes:
    rng = random.Random(seed)
    sigma = 2**level_bits
    samples = [max(-32768, min(32767, round(rng.gauss(0, sigma)))) for _ in range(FRAME_SAMPLES)]
    return struct.pack(f"<{FRAME_SAMPLES}h", *samples)


frames = st.one_of(
    st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES),
    st.builds(noise_frame, st.integers(0, 2**32), st.floats(0, 15)),
    st.just(bytes(FRAME_BYTES)),
    st.just(b"\x00\x80" * FRAME_SAMPLES),  # -32768 everywhere: the largest magnitude
    st.just(b"\xff\xff" * FRAME_SAMPLES),  # -1 everywhere: the smallest non-zero one
)


@given(frames, st.floats(-200, 20))
def test_verdict_matches_the_exact_sum_at_any_threshold(frame: bytes, dbfs: float) -> None:
    limit = threshold(dbfs)
    assert _reaches(frame, limit) == (exact_sum(frame) >= limit)


@given(frames, st.sampled_from([-1, -0.5, 0, 0.5, 1]))
def test_verdict_is_exact_on_the_boundary(frame: bytes, offset: float) -> None:
    total = exact_sum(frame)
    assert _reaches(frame, total + offset) == (offset <= 0)


def test_degenerate_thresholds() -> None:
    silent = bytes(FRAME_BYTES)
    assert _reaches(silent, 0.0)  # a sum of 0 reaches 0 (a threshold that underflowed)
    assert not _reaches(silent, 1e-300)
    assert not _reaches(b"\xff\x7f" * FRAME_SAMPLES, math.inf)


@given(
    st.lists(st.tuples(st.integers(0, 2**32), st.floats(0, 15)), min_size=1, max_size=8),
    st.lists(st.integers(1, 700), min_size=1, max_size=20),
    st.floats(-80, 0),
)
def test_energy_vad_marks_every_frame_as_the_exact_sum_does(
    spec: list[tuple[int, float]], cuts: list[int], dbfs: float
) -> None:
    stream = b"".join(noise_frame(seed, level) for seed, level in spec)
    vad = EnergyVad(dbfs)
    got = []
    position = 0
    for i, size in enumerate(cuts * (len(stream) // sum(cuts) + 1)):
        if position >= len(stream):
            break
        chunk = stream[position : position + size]
        position += size
        # bytes, bytearray and memoryview chunks, as transports hand them over
        kind = (bytes, bytearray, memoryview)[i % 3]
        got += vad.push(kind(chunk))
    limit = threshold(dbfs)
    expected = [
        exact_sum(stream[i : i + FRAME_BYTES]) >= limit
        for i in range(0, len(stream) - FRAME_BYTES + 1, FRAME_BYTES)
    ]
    assert [f.voiced for f in got] == expected
    assert [f.start for f in got] == [k * FRAME_SAMPLES for k in range(len(expected))]
    assert b"".join(f.pcm for f in got) == stream[: len(expected) * FRAME_BYTES]
