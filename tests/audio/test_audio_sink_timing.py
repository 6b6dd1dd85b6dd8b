"""The playback pump and the WAV sink keep the playback timeline, sample-exact in virtual time.

A real MessageClient receives a 6 s burst of agent audio, then pause at 1 s, unpause at 2 s,
clear at 3.5 s and a new 1 s answer at 4 s, while ``play_to_sink`` pulls into a ``WavSink``
under trio's MockClock. Sample ``i`` of the WAV must be what was played at ``i/16000`` s.

Each server message arrives 1 ms before its nominal time, i.e. during the block before the
boundary: a message landing exactly on a pull deadline would race the pull (trio wakes
tasks due at the same instant in random order), while "just before" has one answer — the
pull at the boundary sees it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio
import trio.testing

from audio_backends import WavSink, play_to_sink, playback_of
from millis_proto import MessageClient, PlaybackFinished, PlaybackLatency, StartRequest

RATE = 16_000
EARLY = 0.001  # messages arrive this long before their nominal time
TOTAL_S = 6.0

# The agent's audio is a counter, so every sample says where it came from: the first answer
# counts up from 1, the second counts down from -1 (no zero, which would look like silence).
ANSWER_1 = ((np.arange(6 * RATE) % 32767) + 1).astype("<i2")
ANSWER_2 = -((np.arange(1 * RATE) % 32767) + 1).astype("<i2")


def _message(method: str, **fields: object) -> str:
    return json.dumps({"method": method, **fields})


def _odd_chunks(pcm: bytes, size: int = 999) -> list[bytes]:
    """Split like a server might: odd byte counts, so samples straddle messages."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def _run_timeline(path: Path, block_ms: float) -> MessageClient:
    client = MessageClient(StartRequest(public_key="pk", agent_id="agent"))

    async def server(t0: float) -> None:
        async def at(t: float) -> float:
            await trio.sleep_until(t0 + t - EARLY)
            return trio.current_time()

        now = await at(1.0)
        client.receive_message(_message("pause"), now)
        now = await at(2.0)
        client.receive_message(_message("unpause"), now)
        now = await at(3.5)
        client.receive_message(_message("clear"), now)
        now = await at(4.0)
        client.receive_message(_message("start_answering"), now)
        for chunk in _odd_chunks(ANSWER_2.tobytes(), 1001):
            client.receive_message(chunk, now)

    async def main() -> None:
        t0 = trio.current_time()
        client.start(t0)
        client.receive_message(_message("onready", payload={"session_id": "s1"}), t0)
        client.receive_message(_message("start_answering"), t0)
        for chunk in _odd_chunks(ANSWER_1.tobytes()):  # the whole 6 s burst at once
            client.receive_message(chunk, t0)
        with WavSink(path) as sink:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server, t0)
                played = await play_to_sink(
                    playback_of(client), sink, block_ms=block_ms, start=t0, duration=TOTAL_S
                )
            assert played == sink.played_samples
        assert trio.current_time() - t0 == TOTAL_S  # returns when the last block has played

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return client


def _expected(block_ms: float) -> np.ndarray:
    """The playback model: a message takes effect at the first block boundary after it."""
    block = round(block_ms * RATE / 1000)

    def boundary(t: float) -> int:
        return math.ceil((t - EARLY) * RATE / block) * block

    pause, unpause, clear, answer = (boundary(t) for t in (1.0, 2.0, 3.5, 4.0))
    out = np.zeros(round(TOTAL_S * RATE), dtype=np.int16)
    out[:pause] = ANSWER_1[:pause]
    out[unpause:clear] = ANSWER_1[pause : pause + clear - unpause]
    out[answer : answer + len(ANSWER_2)] = ANSWER_2
    return out


@pytest.mark.parametrize("block_ms", [20.0, 7.0])
def test_pause_unpause_clear_and_new_answer_are_sample_exact(
    tmp_path: Path, block_ms: float
) -> None:
    path = tmp_path / "played.wav"
    client = _run_timeline(path, block_ms)

    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    played, _ = sf.read(str(path), dtype="int16")
    expected = _expected(block_ms)
    assert len(played) == len(expected) == 6 * RATE
    mismatch = np.flatnonzero(played != expected)
    assert mismatch.size == 0, f"first wrong sample: {mismatch[:1]}"

    if block_ms == 20.0:  # the round numbers of the issue, spelled out
        assert np.array_equal(played[:16_000], ANSWER_1[:16_000])
        assert not played[16_000:32_000].any()
        assert np.array_equal(played[32_000:56_000], ANSWER_1[16_000:40_000])
        assert not played[56_000:64_000].any()
        assert np.array_equal(played[64_000:80_000], ANSWER_2)
        assert not played[80_000:].any()
    # The core and the sink agree on what the user heard.
    real = int(np.count_nonzero(expected))
    assert client.playback.played_samples == real
    events = client.events()
    latencies = [e.ms for e in events if isinstance(e, PlaybackLatency)]
    assert latencies[0] == 0.0  # first answer: played at once
    assert len([e for e in events if isinstance(e, PlaybackFinished)]) == 1


def test_virtual_time_output_is_byte_identical_every_run(tmp_path: Path) -> None:
    digests = set()
    for run in range(3):
        path = tmp_path / f"run{run}.wav"
        _run_timeline(path, 20.0)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
