"""Playback buffer, PCM helpers, endpoints, envelope and state table in isolation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millis_proto import ConfigError, PlaybackBuffer, parse_endpoint
from millis_proto.agent_state import TRANSITIONS, AgentState, Trigger, next_state
from millis_proto.envelope import ABSENT, Envelope, decode_envelope, encode_envelope
from millis_proto.pcm import Rechunker, SampleAligner, ms_to_samples, samples_to_ms


def test_pull_returns_exactly_n_samples_audio_then_zeros() -> None:
    b = PlaybackBuffer()
    b.push(b"\x01\x00\x02\x00\x03")  # 2.5 samples: the odd byte waits
    assert b.queued_samples == 2
    b.push(b"\x00")
    chunk = b.pull(5)
    assert chunk.pcm == b"\x01\x00\x02\x00\x03\x00" + bytes(4)
    assert (chunk.real_samples, chunk.drained) == (3, True)
    assert b.pull(0).pcm == b""
    assert b.pull(2) == type(chunk)(bytes(4), 0, False)
    with pytest.raises(ValueError):
        b.pull(-1)


def test_pause_keeps_and_accepts_resume_is_sample_exact_clear_drops() -> None:
    b = PlaybackBuffer()
    b.push(bytes(range(10)))
    assert b.pull(2).pcm == bytes(range(4))
    b.pause()
    assert b.paused
    b.push(bytes(range(10, 14)))
    assert b.pull(3).real_samples == 0
    b.resume()
    assert b.pull(5).pcm == bytes(range(4, 14))
    b.push(b"\x01\x02\x03")
    b.pause()
    assert b.clear() == 1
    assert not b.paused
    b.push(b"\x09\x09")  # the odd byte from before the clear is gone
    assert b.pull(1).pcm == b"\x09\x09"
    assert (b.received_samples, b.played_samples) == (9, 8)


def test_overflow_drops_newest_and_counts() -> None:
    b = PlaybackBuffer(max_seconds=0.001)  # 16 samples
    assert b.push(bytes(20)) == 0  # 10 samples
    assert b.push(bytes(20)) == 4  # 6 fit, the newest 4 are dropped
    assert b.push(bytes(2)) == 1
    assert (b.queued_samples, b.dropped_samples) == (16, 5)
    with pytest.raises(ValueError):
        PlaybackBuffer(0)


@given(st.lists(st.binary(max_size=50), max_size=30), st.lists(st.integers(0, 40), max_size=30))
def test_playback_never_loses_or_duplicates_bytes(frames: list[bytes], pulls: list[int]) -> None:
    b = PlaybackBuffer()
    for f in frames:
        b.push(f)
    stream = b"".join(frames)
    whole = len(stream) // 2 * 2
    got = bytearray()
    for n in pulls:
        q = b.queued_samples
        chunk = b.pull(n)
        assert chunk.real_samples == min(n, q)
        assert len(chunk.pcm) == 2 * n
        assert chunk.drained == (0 < q <= n)
        got += chunk.pcm[: 2 * chunk.real_samples]
    got += b.pull(b.queued_samples).pcm
    assert bytes(got) == stream[:whole]


@given(st.lists(st.tuples(st.binary(max_size=24), st.integers(0, 14)), max_size=40))
def test_playback_interleaved_with_pushes_keeps_the_stream(steps: list[tuple[bytes, int]]) -> None:
    # Frames the size of the pull (the usual case, a fast path) mixed with every other size.
    b = PlaybackBuffer()
    pushed = bytearray()
    got = bytearray()
    for frame, n in steps:
        b.push(frame)
        pushed += frame
        q = b.queued_samples
        chunk = b.pull(n)
        assert chunk.real_samples == min(n, q)
        assert chunk.drained == (0 < q <= n)
        got += chunk.pcm[: 2 * chunk.real_samples]
        assert chunk.pcm[2 * chunk.real_samples :] == bytes(2 * (n - chunk.real_samples))
    got += b.pull(b.queued_samples).pcm
    assert bytes(got) == bytes(pushed[: len(pushed) // 2 * 2])


@given(st.lists(st.binary(max_size=40), max_size=40), st.integers(1, 20))
def test_rechunker_and_aligner_preserve_the_stream(chunks: list[bytes], frame: int) -> None:
    a = SampleAligner()
    r = Rechunker(frame * 2)
    out = bytearray()
    for c in chunks:
        for f in r.push(a.align(c)):
            assert len(f) == frame * 2
            out += f
    out += r.flush()
    stream = b"".join(chunks)
    assert bytes(out) == stream[: len(stream) // 2 * 2]
    assert a.pending == len(stream) % 2


def test_rechunker_rejects_odd_frames_and_helpers() -> None:
    with pytest.raises(ValueError):
        Rechunker(3)
    assert ms_to_samples(20) == 320
    assert samples_to_ms(8000) == 500.0
    r = Rechunker(4)
    r.push(b"\0\0")
    assert r.pending == 2


@pytest.mark.parametrize(
    ("url", "host", "port", "target", "header"),
    [
        (
            "wss://api-west.millis.ai:8080/millis",
            "api-west.millis.ai",
            8080,
            "/millis",
            "api-west.millis.ai:8080",
        ),
        (
            "wss://api-eu-west.millis.ai/millis",
            "api-eu-west.millis.ai",
            443,
            "/millis",
            "api-eu-west.millis.ai",
        ),
        ("ws://127.0.0.1:9/", "127.0.0.1", 9, "/", "127.0.0.1:9"),
        ("WS://localhost", "localhost", 80, "/", "localhost"),
        ("wss://[::1]:8443/a?b=c", "::1", 8443, "/a?b=c", "[::1]:8443"),
    ],
)
def test_parse_endpoint(url: str, host: str, port: int, target: str, header: str) -> None:
    ep = parse_endpoint(url)
    assert (ep.host, ep.port, ep.target, ep.host_header) == (host, port, target, header)


@pytest.mark.parametrize("url", ["", "http://x/", "wss://", "wss://h:99999/", "ftp://h", "  "])
def test_parse_endpoint_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="endpoint URL"):
        parse_endpoint(url)


def test_envelope_round_trip_and_absent_keys() -> None:
    assert encode_envelope("m") == '{"method":"m"}'
    assert encode_envelope("m", None) == '{"method":"m","data":null}'
    assert encode_envelope("m", ABSENT, {"é": 1}) == '{"method":"m","payload":{"é":1}}'
    assert decode_envelope('{"method":"m","data":1,"payload":2}') == Envelope("m", 1, 2)
    assert repr(ABSENT) == "ABSENT"


@given(st.text(max_size=60))
def test_decode_envelope_never_raises(text: str) -> None:
    result = decode_envelope(text)
    assert isinstance(result, (Envelope, str))


@given(st.sampled_from(list(AgentState)), st.sampled_from(list(Trigger)))
def test_state_table_rows(state: AgentState, trigger: Trigger) -> None:
    new = next_state(state, trigger)
    expected = {
        Trigger.READY: AgentState.IDLE,
        Trigger.START_ANSWERING: AgentState.PREPARE_ANSWER,
        Trigger.PAUSE: AgentState.PAUSE,
        Trigger.CLEAR: AgentState.IDLE,
        Trigger.CLOSED: AgentState.IDLE,
    }
    if trigger in expected:
        assert new is expected[trigger]
    elif trigger is Trigger.AGENT_AUDIO:
        assert new is (
            AgentState.ANSWER if state in (AgentState.IDLE, AgentState.PREPARE_ANSWER) else state
        )
    elif trigger is Trigger.UNPAUSE:
        assert new is (AgentState.ANSWER if state is AgentState.PAUSE else state)
    else:
        assert new is (AgentState.IDLE if state is AgentState.ANSWER else state)
    assert len(TRANSITIONS) == 4 * 5 + 4
