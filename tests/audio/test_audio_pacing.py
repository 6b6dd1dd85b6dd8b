"""The pumps keep wall-clock pace from absolute deadlines, in virtual and in real time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import numpy as np
import pytest
import trio
import trio.testing

from audio_backends import (
    AudioLevel,
    HalfDuplexGate,
    MemorySink,
    MemorySource,
    play_to_sink,
    playback_of,
    stream_source,
)
from millis_proto import MessageClient, PlaybackChunk, StartRequest

RATE = 16_000


def _virtual(main: Callable[[], Awaitable[object]]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def _silence_pull(n: int) -> PlaybackChunk:
    return PlaybackChunk(bytes(2 * n), 0, False)


def test_a_source_is_sent_when_each_chunk_would_have_been_captured() -> None:
    pcm = np.arange(1, 16_001 + 50, dtype="<i2").tobytes()  # 1 s and 50 samples
    sent: list[tuple[float, bytes]] = []

    async def main() -> None:
        t0 = trio.current_time()

        async def send(chunk: bytes) -> None:
            sent.append((trio.current_time() - t0, chunk))

        total = await stream_source(MemorySource(pcm), send, chunk_ms=20)
        assert total == 16_050

    _virtual(main)
    assert b"".join(chunk for _, chunk in sent) == pcm
    assert [len(chunk) for _, chunk in sent] == [640] * 50 + [100]
    # Chunk k leaves when its last sample exists: at (k+1)·20 ms, the short last one at 1.003125 s.
    assert [t for t, _ in sent] == [(k + 1) * 320 / RATE for k in range(50)] + [16_050 / RATE]


def test_pacing_does_not_drift_over_ten_virtual_minutes() -> None:
    seconds = 600
    deadlines: list[float] = []

    async def main() -> None:
        t0 = trio.current_time()

        async def send(chunk: bytes) -> None:
            deadlines.append(trio.current_time() - t0)

        source = MemorySource(bytes(2 * RATE * seconds))
        await stream_source(source, send, start=t0)

    started = time.perf_counter()
    _virtual(main)
    wall = time.perf_counter() - started
    assert len(deadlines) == seconds * 50
    assert deadlines[-1] == seconds  # exactly, no accumulated error
    assert wall < seconds / 20  # far faster than real time


def test_play_to_sink_catches_up_after_a_stall_and_keeps_the_timeline() -> None:
    pulls: list[float] = []

    def pull(n: int) -> PlaybackChunk:
        pulls.append(trio.current_time())
        return _silence_pull(n)

    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        t0 = trio.current_time()
        sink = MemorySink()

        async def stall() -> None:
            await trio.sleep_until(t0 + 0.0505)
            clock.jump(0.1)  # 100 ms pass without the loop running anything: a stall

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall)
            await play_to_sink(pull, sink, start=t0, duration=0.2)
        assert sink.written_samples == 0.2 * RATE

    trio.run(main, clock=clock)
    assert len(pulls) == 10
    late = [round(t, 4) for t in pulls]
    # Blocks due at 0.06, 0.08, 0.10, 0.12, 0.14 come at once after the stall (0.1505) …
    assert late[:3] == [0.0, 0.02, 0.04]
    assert late[3:8] == [0.1505] * 5
    # … and the rest are back on their own deadlines.
    assert late[8:] == [0.16, 0.18]


def test_play_to_sink_rejects_a_pull_of_the_wrong_size() -> None:
    async def main() -> None:
        await play_to_sink(lambda n: PlaybackChunk(bytes(2 * n - 2), 0, False), MemorySink())

    with pytest.raises(ValueError, match="returned 638 bytes"):
        _virtual(main)


def test_block_sizes_must_hold_a_sample() -> None:
    async def main() -> None:
        await play_to_sink(_silence_pull, MemorySink(), block_ms=0.01)

    with pytest.raises(ValueError, match="at least one sample"):
        _virtual(main)


def test_levels_are_reported_per_block_on_the_timeline() -> None:
    loud = (np.full(320, 16384, dtype="<i2")).tobytes()  # -6.02 dBFS square
    levels: list[AudioLevel] = []

    def pull(n: int) -> PlaybackChunk:
        return PlaybackChunk(loud, n, False)

    async def ignore(chunk: bytes) -> None:
        pass

    async def main() -> None:
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: stream_source(
                    MemorySource(bytes(640 * 3)), ignore, start=t0, on_level=levels.append
                )
            )
            await play_to_sink(pull, MemorySink(), start=t0, duration=0.06, on_level=levels.append)

    _virtual(main)
    agent = [lv for lv in levels if lv.source == "agent"]
    user = [lv for lv in levels if lv.source == "user"]
    assert [lv.t for lv in agent] == [0.0, 0.02, 0.04]
    assert [lv.t for lv in user] == [0.0, 0.02, 0.04]
    assert all(round(lv.rms_dbfs, 2) == round(lv.peak_dbfs, 2) == -6.02 for lv in agent)
    assert all(lv.rms_dbfs == lv.peak_dbfs == -100.0 for lv in user)


def test_the_half_duplex_gate_mutes_the_user_while_the_agent_plays() -> None:
    client = MessageClient(StartRequest(public_key="pk", agent_id="a"))
    user = np.full(RATE, 1000, dtype="<i2").tobytes()  # 1 s of constant "speech"
    sent: list[bytes] = []

    async def send(chunk: bytes) -> None:
        sent.append(chunk)

    async def main() -> None:
        t0 = trio.current_time()
        client.start(t0)
        client.receive_message('{"method":"onready"}', t0)
        client.receive_message(np.full(4_000, 7, dtype="<i2").tobytes(), t0)  # 0.25 s agent
        gate = HalfDuplexGate(tail_ms=100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: stream_source(MemorySource(user), send, start=t0 + 0.001, gate=gate)
            )
            await play_to_sink(
                playback_of(client), MemorySink(), start=t0, duration=1.0, taps=[gate]
            )
        assert gate.muted_samples == 17 * 320

    _virtual(main)
    # The agent plays from 0 to 0.25 s and the tail lasts to 0.35 s; the gate opens at the
    # next block boundary, 0.36 s. User chunks leave 1 ms after each boundary.
    spoken = [chunk != bytes(len(chunk)) for chunk in sent]
    assert spoken == [False] * 17 + [True] * 33  # the chunk sent at 0.361 s is the first heard


def test_pumps_run_on_asyncio_in_real_time() -> None:
    sink = MemorySink()
    sent: list[bytes] = []

    async def send(chunk: bytes) -> None:
        sent.append(chunk)

    async def main() -> float:
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream_source, MemorySource(bytes(3_200)), send)
            await play_to_sink(_silence_pull, sink, duration=0.1)
        return anyio.current_time() - started

    elapsed = anyio.run(main, backend="asyncio")
    assert 0.1 <= elapsed < 2.0  # paced to the wall clock, not as fast as possible
    assert sink.written_samples == 1_600
    assert len(sent) == 5
