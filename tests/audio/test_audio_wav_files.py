"""WAV output is a valid, finalized file after every way a session can end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio
import trio.testing

from audio_backends import CallRecorder, MemorySource, WavSink, play_to_sink, stream_source, wavfile
from audio_backends.errors import AudioFileError
from millis_proto import PlaybackChunk

from .signals import pcm16

RATE = 16_000
BLOCK = 320  # 20 ms


def _counter_pull() -> Callable[[int], PlaybackChunk]:
    """A pull callable handing out a counter (1, 2, 3 …), all real samples."""
    state = {"next": 1}

    def pull(n: int) -> PlaybackChunk:
        start = state["next"]
        state["next"] += n
        pcm = ((np.arange(start, start + n) % 32767) + 1).astype("<i2").tobytes()
        return PlaybackChunk(pcm, n, False)

    return pull


def _assert_valid_counter_wav(path: Path, frames: int) -> None:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        RATE,
        1,
        "PCM_16",
        frames,
    )
    assert path.stat().st_size == 44 + 2 * frames  # the header's sizes match the file
    data, _ = sf.read(str(path), dtype="int16")
    assert np.array_equal(data, (np.arange(1, frames + 1) % 32767) + 1)


def test_file_is_final_after_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    counter = _counter_pull()

    def pull(n: int) -> PlaybackChunk:
        if trio.current_time() >= 0.5:
            raise RuntimeError("the session broke")
        return counter(n)

    async def main() -> None:
        with WavSink(path) as sink:
            await play_to_sink(pull, sink, start=0.0)

    with pytest.raises(RuntimeError, match="the session broke"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    _assert_valid_counter_wav(path, 25 * BLOCK)  # blocks pulled at 0.00 … 0.48 s


def test_file_is_final_after_cancellation(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    pull = _counter_pull()

    async def main() -> None:
        with WavSink(path) as sink, trio.move_on_after(1.2345):
            await play_to_sink(pull, sink)
        assert sink.written_samples == 62 * BLOCK

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    _assert_valid_counter_wav(path, 62 * BLOCK)  # blocks at 0.00 … 1.22 s


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import trio
    from audio_backends import WavSink, play_to_sink
    from millis_proto import PlaybackChunk

    state = {"next": 1}

    def pull(n):
        start = state["next"]
        state["next"] += n
        pcm = ((np.arange(start, start + n) % 32767) + 1).astype("<i2").tobytes()
        return PlaybackChunk(pcm, n, False)

    async def play():
        with WavSink(sys.argv[1]) as sink:
            await play_to_sink(pull, sink, block_ms=5)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play)
            await trio.sleep(0.3)
            print("ready", flush=True)  # the parent interrupts us now

    trio.run(main)
    """
)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_file_is_valid_after_the_process_is_interrupted(tmp_path: Path, how: int) -> None:
    path = tmp_path / "out.wav"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # 0.3 s of audio written
        child.send_signal(how)
        _, stderr = child.communicate(timeout=10)
    finally:
        child.kill()
    info = sf.info(str(path))
    assert info.frames >= 80  # at least one block (how many depends on the machine's load)
    if how == signal.SIGINT:
        assert "KeyboardInterrupt" in stderr
        # The with block finalized it: the header counts exactly the samples in the file.
        _assert_valid_counter_wav(path, info.frames)
    else:
        assert child.returncode == -signal.SIGKILL
        # Nothing ran after the kill: the header may lag the last write (it is patched
        # after the samples), never lead it, and what it counts is intact.
        assert 44 + 2 * info.frames <= path.stat().st_size <= 44 + 2 * (info.frames + 80)
        data, _ = sf.read(str(path), dtype="int16")
        assert np.array_equal(data, (np.arange(1, info.frames + 1) % 32767) + 1)


def test_wav_sink_counts_and_refuses_writes_after_close(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    with WavSink(path) as sink:
        sink.write(bytes(640), 0)
        sink.write(b"\x01\x00" * 320, 100)
        assert (sink.written_samples, sink.played_samples) == (640, 100)
        with pytest.raises(ValueError, match="whole s16le samples"):
            sink.write(b"\x00", 0)
    with pytest.raises(ValueError, match="closed"):
        sink.write(bytes(2), 0)
    sink.close()  # idempotent
    assert sf.info(str(path)).frames == 640


def test_wav_sink_reports_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="cannot be written") as err:
        WavSink(tmp_path / "no-such-dir" / "out.wav")
    assert err.value.path.endswith("out.wav")


def test_a_full_wav_file_stops_at_the_bound_and_stays_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wavfile, "MAX_WAV_DATA_BYTES", 1001)  # the real bound is 4 GiB
    path = tmp_path / "out.wav"
    with WavSink(path) as sink:
        sink.write(bytes(600), 0)
        with pytest.raises(AudioFileError, match="is full"):
            sink.write(b"\x01\x00" * 300, 300)
    assert sf.info(str(path)).frames == 500  # 1000 bytes: whole samples up to the bound


def test_call_recording_is_time_aligned_stereo(tmp_path: Path) -> None:
    """User left, agent right, on one timeline, under virtual time."""
    user = ((np.arange(RATE) % 1000) + 1).astype("<i2")  # 1 s, then the source ends
    agent = -((np.arange(3 * RATE) % 1000) + 1).astype("<i2")
    agent_chunks = iter(agent.tobytes()[i : i + 2 * BLOCK] for i in range(0, 6 * RATE, 640))
    sent: list[bytes] = []
    path = tmp_path / "call.wav"

    def pull(n: int) -> PlaybackChunk:
        return PlaybackChunk(next(agent_chunks), n, False)

    async def send(pcm: bytes) -> None:
        sent.append(pcm)

    async def main() -> None:
        t0 = trio.current_time()
        with CallRecorder(path) as recorder:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: stream_source(
                        MemorySource(user.tobytes()), send, start=t0, taps=[recorder.user]
                    )
                )
                await play_to_sink(pull, _Null(), start=t0, duration=3.0, taps=[recorder.agent])
            assert recorder.user.played_samples == RATE
            assert recorder.agent.played_samples == 3 * RATE

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE
    assert data.shape == (3 * RATE, 2)
    assert np.array_equal(data[:RATE, 0], user)
    assert not data[RATE:, 0].any()  # the ended source became silence
    assert np.array_equal(data[:, 1], agent)
    assert b"".join(sent) == user.tobytes()


class _Null:
    played_samples = 0

    def write(self, pcm: bytes, real_samples: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_call_recorder_pads_the_short_side_and_refuses_late_writes(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with CallRecorder(path) as recorder:
        recorder.user.write(b"\x01\x00" * 10, 10)
        recorder.agent.write(b"\x02\x00" * 4, 4)
        assert recorder.frames == 4
    data, _ = sf.read(str(path), dtype="int16")
    assert data[:, 0].tolist() == [1] * 10
    assert data[:, 1].tolist() == [2] * 4 + [0] * 6
    with pytest.raises(ValueError, match="closed"):
        recorder.agent.write(bytes(2), 0)
    assert pcm16(path.read_bytes()[44:]).tolist()[:4] == [1, 2, 1, 2]
