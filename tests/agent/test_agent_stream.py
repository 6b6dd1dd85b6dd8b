"""The paced answer stream on its own: chunking, lead, pause/resume, the end."""

from __future__ import annotations

import pytest

from millis_proto.agent import AnswerStream, _samples


def pcm(ms: int) -> bytes:
    return bytes(range(256)) * (ms * 32 // 256) + bytes(ms * 32 % 256)


def test_chunks_follow_the_clock_with_a_lead() -> None:
    audio = pcm(250)
    stream = AnswerStream(audio + b"\x09", chunk_samples=1600, ahead_samples=1600, now=10.0)
    assert [len(c) for c in stream.due(10.0)] == [3200, 3200]  # 0 and 100 ms (100 ahead)
    assert stream.next_deadline() == pytest.approx(10.1)
    assert stream.due(10.05) == []
    assert [len(c) for c in stream.due(10.1)] == [1600]  # the short last chunk
    assert stream.total_samples == 4000  # the odd byte is not audio
    assert stream.next_deadline() == pytest.approx(10.25)  # the end of playback
    assert not stream.finished(10.2499)
    assert stream.finished(10.25)
    assert stream.position(99.0) == 4000  # never beyond the end


def test_pause_freezes_the_position_and_is_idempotent() -> None:
    audio = pcm(500)
    stream = AnswerStream(audio, chunk_samples=1600, ahead_samples=0, now=0.0)
    sent = stream.due(0.0)  # the chunk at 0 ms
    stream.pause(0.12)
    stream.pause(0.3)  # already paused: the position stays at 120 ms
    assert stream.position(5.0) == 1920
    assert stream.due(5.0) == []
    assert stream.next_deadline() is None
    stream.resume(1.0)
    stream.resume(2.0)  # already running: the clock keeps its start at 1.0
    assert stream.position(1.1) == 3520
    assert stream.next_deadline() == pytest.approx(0.98)  # 100 ms chunk was due at 100 ms
    sent += stream.due(1.0) + stream.due(1.4)
    assert not stream.finished(1.379)
    sent += stream.due(1.38)
    assert b"".join(sent) == audio
    assert stream.finished(1.38)  # 500 ms played: 120 before the pause, 380 after


def test_a_clock_going_backwards_does_not_rewind() -> None:
    stream = AnswerStream(pcm(100), chunk_samples=1600, ahead_samples=0, now=5.0)
    assert stream.position(4.0) == 0


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError):
        AnswerStream(b"", chunk_samples=0, ahead_samples=0, now=0.0)
    with pytest.raises(ValueError):
        AnswerStream(b"", chunk_samples=1, ahead_samples=-1, now=0.0)


def test_sample_conversion_on_a_big_endian_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_samples, "_SWAP", True)
    samples = _samples.to_samples(b"\x00\x01")  # bytes as a big-endian host would read them
    assert list(samples) == [1]
    assert _samples.to_pcm(samples) == b"\x00\x01"
    assert list(samples) == [1]  # the caller's array is left alone
