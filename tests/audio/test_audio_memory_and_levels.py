"""Memory backends, array conversion and level meters."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from audio_backends import (
    MIN_DBFS,
    AudioLevel,
    HalfDuplexGate,
    MemorySink,
    MemorySource,
    NullSink,
    array_from_pcm,
    block_level,
    pcm_from_array,
)
from millis_proto import event_to_dict

from .signals import dominant_frequency, read_all, tone

RATE = 16_000


def test_memory_source_reads_exact_sizes_then_ends() -> None:
    pcm = np.arange(1, 1_001, dtype="<i2").tobytes()
    source = MemorySource(pcm)
    assert source.read(0) == b""
    assert [len(source.read(300)) for _ in range(5)] == [600, 600, 600, 200, 0]
    with pytest.raises(ValueError, match="negative"):
        source.read(-1)


def test_memory_source_loops_and_adds_a_tail() -> None:
    pcm = np.arange(1, 11, dtype="<i2").tobytes()
    assert MemorySource(pcm, loop=True).read(25) == (pcm * 3)[:50]
    with MemorySource(pcm, tail_silence_s=0.001) as source:
        assert read_all(source, 7) == pcm + bytes(32)


def test_memory_source_rejects_split_samples_and_empty_loops() -> None:
    with pytest.raises(ValueError, match="whole s16le samples"):
        MemorySource(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="loop"):
        MemorySource(b"", loop=True)
    with pytest.raises(ValueError, match="negative"):
        MemorySource(b"", tail_silence_s=-1)


def test_memory_and_null_sinks_count_what_they_played() -> None:
    with MemorySink() as memory, NullSink() as null:
        for sink in (memory, null):
            sink.write(b"\x01\x00" * 3 + bytes(4), 3)
            sink.write(bytes(10), 0)
            assert (sink.written_samples, sink.played_samples) == (10, 3)
    assert memory.pcm == b"\x01\x00" * 3 + bytes(14)
    with pytest.raises(ValueError, match="closed"):
        memory.write(bytes(2), 0)


def test_arrays_convert_to_protocol_pcm_at_any_rate() -> None:
    stereo = np.stack([tone(440, 1.0, 48_000)] * 2, axis=1).astype(np.float32)
    pcm = pcm_from_array(stereo, 48_000)
    out = array_from_pcm(pcm)
    assert len(out) == RATE
    assert abs(dominant_frequency(out, RATE) - 440) < 0.05
    ints = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    assert np.array_equal(array_from_pcm(pcm_from_array(ints)), ints)  # 16 kHz int16: exact
    assert array_from_pcm(pcm_from_array(np.array([0, 128, 255], dtype=np.uint8))).tolist() == [
        -32768,
        0,
        32512,
    ]
    with pytest.raises(TypeError, match="unsupported sample type"):
        pcm_from_array(np.array([1 + 2j]))
    with pytest.raises(ValueError, match="shape"):
        pcm_from_array(np.zeros((2, 2, 2)))


def test_block_level_in_dbfs() -> None:
    full_sine = np.round(32767 * np.sin(2 * np.pi * np.arange(1_600) / 160)).astype("<i2")
    rms, peak = block_level(full_sine.tobytes())
    assert rms == pytest.approx(-3.0103, abs=0.001)
    assert peak == pytest.approx(0.0, abs=0.001)
    quiet = (full_sine // 10).astype("<i2")
    assert block_level(quiet.tobytes())[0] == pytest.approx(-23.01, abs=0.01)
    assert block_level(np.array([-32768, 0], dtype="<i2").tobytes()) == (
        pytest.approx(20 * math.log10(math.sqrt(0.5))),
        0.0,
    )
    assert block_level(bytes(640)) == (MIN_DBFS, MIN_DBFS)
    assert block_level(b"") == (MIN_DBFS, MIN_DBFS)
    assert block_level(b"\x01\x00") == (pytest.approx(-90.309), pytest.approx(-90.309))
    with pytest.raises(ValueError, match="whole"):
        block_level(b"\x00")


def test_audio_level_is_a_frozen_validated_event() -> None:
    level = AudioLevel(source="user", rms_dbfs=-20.0, peak_dbfs=-12.0, t=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        level.t = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="source"):
        AudioLevel(source="both", rms_dbfs=0, peak_dbfs=0, t=0)  # type: ignore[arg-type]
    assert event_to_dict(level) == {
        "event": "audio_level",
        "source": "user",
        "rms_dbfs": -20.0,
        "peak_dbfs": -12.0,
        "t": 1.5,
    }


def test_half_duplex_gate_counts_time_in_played_samples() -> None:
    gate = HalfDuplexGate(tail_ms=10)  # 160 samples
    speech = b"\x01\x00" * 80
    assert gate.filter(speech) == speech  # nothing played yet
    gate.write(b"\x05\x00" * 40 + bytes(240), 40)  # agent audio starts playing
    assert gate.muting
    assert gate.filter(speech) == bytes(160)
    gate.write(bytes(320), 0)  # the first block is over: 120 quiet samples so far
    assert gate.muting
    gate.write(bytes(320), 0)  # 280 ≥ 160
    assert not gate.muting
    assert gate.filter(speech) == speech
    assert (gate.muted_samples, gate.played_samples) == (80, 40)
    with pytest.raises(ValueError, match="negative"):
        HalfDuplexGate(tail_ms=-1)
