"""Microphone and speaker, tested without sound hardware.

A fake ``sounddevice`` module stands in for PortAudio: its input stream calls the real
callback from its own thread at real-time pace, like PortAudio does, and the output
stream's callback is driven from a thread by the test. What this cannot show — real
devices, drivers, latency, clock drift — is left to manual testing on hardware.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import trio

from audio_backends import AudioDeviceError, MissingExtraError, stream_source
from audio_backends.devices import (
    PLAYBACK_PREBUFFER_S,
    CaptureQueue,
    Microphone,
    PlaybackQueue,
    Speaker,
    find_device,
    list_devices,
)

from .signals import dominant_frequency, pcm16, tone

RATE = 16_000

DEVICES = [
    {"name": "HDA Intel PCH: ALC257 Analog", "hostapi": 0, "max_input_channels": 2,
     "max_output_channels": 2, "default_samplerate": 44_100.0},
    {"name": "USB Microphone", "hostapi": 0, "max_input_channels": 1,
     "max_output_channels": 0, "default_samplerate": 48_000.0},
    {"name": "USB Headset", "hostapi": 0, "max_input_channels": 1,
     "max_output_channels": 2, "default_samplerate": 48_000.0},
]  # fmt: skip


class FakePortAudioError(Exception):
    pass


class FakeStream:
    """Records how it was opened; an input stream feeds a tone from its own thread."""

    capture_seconds = 0.3

    def __init__(self, *, device: int, samplerate: int, channels: int, dtype: str,
                 blocksize: int, callback: Any) -> None:  # fmt: skip
        self.settings = {"device": device, "samplerate": samplerate, "channels": channels,
                         "dtype": dtype, "blocksize": blocksize}  # fmt: skip
        self.callback = callback
        self.closed = False
        self.thread: threading.Thread | None = None
        self.callback_threads: set[int] = set()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def close(self) -> None:
        self.closed = True


class FakeInputStream(FakeStream):
    def start(self) -> None:
        self.thread = threading.Thread(target=self._capture)
        self.thread.start()

    def _capture(self) -> None:
        rate, block = self.settings["samplerate"], self.settings["blocksize"]
        signal = tone(1_000, self.capture_seconds, rate).astype(np.float32)
        frames = np.repeat(signal[:, None], self.settings["channels"], axis=1)
        started = time.monotonic()
        for k, i in enumerate(range(0, len(frames), block)):
            self.callback_threads.add(threading.get_ident())
            self.callback(frames[i : i + block], block, None, 0)
            time.sleep(max(0.0, started + (k + 1) * block / rate - time.monotonic()))


def _fake_sounddevice(devices: list[dict[str, Any]], default: tuple[int, int]) -> ModuleType:
    sd = ModuleType("sounddevice")
    sd.PortAudioError = FakePortAudioError  # type: ignore[attr-defined]
    sd.query_devices = lambda: list(devices)  # type: ignore[attr-defined]
    sd.query_hostapis = lambda: [{"name": "ALSA"}]  # type: ignore[attr-defined]
    sd.default = SimpleNamespace(device=list(default))  # type: ignore[attr-defined]
    sd.streams = []  # type: ignore[attr-defined]

    def factory(kind: type[FakeStream]) -> Any:
        def open_stream(**settings: Any) -> FakeStream:
            stream = kind(**settings)
            sd.streams.append(stream)  # type: ignore[attr-defined]
            return stream

        return open_stream

    sd.InputStream = factory(FakeInputStream)  # type: ignore[attr-defined]
    sd.OutputStream = factory(FakeStream)  # type: ignore[attr-defined]
    return sd


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    sd = _fake_sounddevice(DEVICES, default=(1, 0))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


def test_devices_are_listed_with_their_native_rates(fake_sd: ModuleType) -> None:
    devices = list_devices()
    assert [(d.index, d.name, d.default_sample_rate) for d in devices] == [
        (0, "HDA Intel PCH: ALC257 Analog", 44_100.0),
        (1, "USB Microphone", 48_000.0),
        (2, "USB Headset", 48_000.0),
    ]
    assert devices[1].is_default_input and devices[0].is_default_output
    assert devices[0].host_api == "ALSA"


def test_devices_are_chosen_by_index_name_or_default(fake_sd: ModuleType) -> None:
    assert find_device(None, "input").name == "USB Microphone"  # the default
    assert find_device(None, "output").index == 0
    assert find_device(2, "input").name == "USB Headset"
    assert find_device("2", "output").name == "USB Headset"
    assert find_device("headset", "input").index == 2
    assert find_device("usb microphone", "input").index == 1  # exact name wins
    with pytest.raises(AudioDeviceError, match="'usb' is ambiguous input device"):
        find_device("usb", "input")
    with pytest.raises(AudioDeviceError, match="'USB Microphone' matches no output device"):
        find_device("USB Microphone", "output")  # it has no output channels
    with pytest.raises(AudioDeviceError, match="7 matches no input device"):
        find_device(7, "input")


def test_no_devices_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice([], default=(-1, -1)))
    assert list_devices() == []
    with pytest.raises(AudioDeviceError, match="no input device found: PortAudio sees no"):
        Microphone()
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(DEVICES[1:2], (1, -1)))
    with pytest.raises(AudioDeviceError, match="none of the 1 devices has output channels"):
        Speaker()


def test_missing_portaudio_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the real sounddevice does on import when libportaudio is not installed.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    for attempt in (list_devices, Microphone, Speaker):
        with pytest.raises(AudioDeviceError, match="PortAudio library is not installed") as err:
            attempt()
        assert "libportaudio2" in str(err.value)


def test_missing_sounddevice_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'millis-proto\[devices\]'"):
        list_devices()


def test_this_machine_gives_a_list_or_a_clear_error() -> None:
    """The real PortAudio, whatever state this machine is in (CI has no sound card)."""
    try:
        devices = list_devices()
    except AudioDeviceError as exc:
        problem = str(exc)
        devices = None
    if devices is None:
        assert "PortAudio" in problem
    elif not any(d.max_input_channels for d in devices):
        with pytest.raises(AudioDeviceError, match="no input device found"):
            find_device(None, "input")


def test_microphone_opens_at_the_native_rate_and_hands_over_across_threads(
    fake_sd: ModuleType,
) -> None:
    received: list[bytes] = []

    async def send(chunk: bytes) -> None:
        received.append(chunk)

    async def main() -> int:
        with Microphone("headset") as mic:
            assert mic.sample_rate == 48_000
            assert mic.dropped_blocks == 0

            async def stop_after_capture() -> None:
                stream = fake_sd.streams[0]
                while stream.thread.is_alive():  # the "device" is still capturing
                    await trio.sleep(0.01)
                mic.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_after_capture)
                return await stream_source(mic, send)
        raise AssertionError("unreachable")

    total = trio.run(main)
    stream = fake_sd.streams[0]
    assert stream.settings == {"device": 2, "samplerate": 48_000, "channels": 1,
                               "dtype": "float32", "blocksize": 960}  # fmt: skip
    assert threading.get_ident() not in stream.callback_threads
    assert stream.closed
    # Every captured frame arrived once, in order: 0.3 s at 48 kHz is 4800 samples at 16 kHz.
    assert total == 4_800
    assert [len(c) for c in received[:-1]] == [640] * (len(received) - 1)
    out = pcm16(b"".join(received))
    assert abs(dominant_frequency(out, RATE) - 1_000) < 0.5


def test_capture_queue_drops_the_oldest_when_the_loop_falls_behind() -> None:
    queue = CaptureQueue(16_000, max_blocks=3)
    for value in range(1, 6):
        queue.callback(np.full((160, 1), value / 100, np.float32), 160, None, 0)
    queue.callback(np.zeros((160, 1), np.float32), 160, None, 1)  # a status flag (overflow)
    queue.close()
    assert (queue.dropped_blocks, queue.status_count) == (3, 1)
    out = pcm16(trio.run(queue.aread, 10_000))
    assert out.tolist() == [1311] * 160 + [1638] * 160 + [0] * 160  # blocks 4, 5 and the last


def test_speaker_resamples_to_the_device_and_counts_what_it_handed_over(
    fake_sd: ModuleType,
) -> None:
    with Speaker() as speaker:  # default output: 44.1 kHz, stereo
        stream = fake_sd.streams[0]
        assert stream.settings["samplerate"] == 44_100
        assert stream.settings["channels"] == 2
        block = 882  # 20 ms at 44.1 kHz
        outputs: list[np.ndarray] = []

        def device_pulls(times: int) -> None:
            def run() -> None:  # PortAudio's thread
                for _ in range(times):
                    buffer = np.full((block, 2), np.nan, np.float32)
                    stream.callback(buffer, block, None, 0)
                    outputs.append(buffer)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()

        voice = (tone(1_000, 0.5, RATE) * 32768).astype("<i2").tobytes()
        speaker.write(voice[:640], 320)
        device_pulls(1)  # less than the prebuffer is queued: the device gets silence
        assert not outputs[0].any()
        assert speaker.played_samples == 0
        # The pump writes a block per period, silence included; the device pulls at its pace.
        blocks = [voice[i : i + 640] for i in range(640, len(voice), 640)] + [bytes(640)] * 5
        for pcm in blocks:
            speaker.write(pcm, len(pcm) // 2 if any(pcm) else 0)
            device_pulls(1)
        device_pulls(5)

    played = np.concatenate(outputs[1:])
    assert not np.isnan(played).any()
    assert np.array_equal(played[:, 0], played[:, 1])  # mono upmixed to both channels
    loud = np.flatnonzero(np.abs(played[:, 0]) > 0.01)
    sounding = played[loud[0] : loud[-1] + 1, 0]
    assert abs(len(sounding) - 0.5 * 44_100) < 5  # all of it, in one piece
    assert abs(dominant_frequency(sounding, 44_100) - 1_000) < 0.1
    assert speaker.played_samples == 8_000
    assert stream.closed
    assert PLAYBACK_PREBUFFER_S > 0.02


def test_speaker_drops_the_newest_audio_beyond_its_bound(fake_sd: ModuleType) -> None:
    with Speaker(max_buffer_s=0.1) as speaker:
        for _ in range(25):  # 0.5 s written at once, nobody playing
            speaker.write(bytes(640), 0)
        queue = speaker._queue
        assert queue.queued_frames <= 0.1 * 44_100
        assert queue.dropped_frames >= 0.39 * 44_100


def test_a_device_that_refuses_to_open_is_named_in_the_error(fake_sd: ModuleType) -> None:
    def refuse(**settings: Any) -> FakeStream:
        raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    fake_sd.InputStream = refuse  # type: ignore[attr-defined]
    with pytest.raises(AudioDeviceError) as err:
        Microphone("USB Microphone")
    assert str(err.value) == (
        "cannot open device 1 ('USB Microphone') at 48000 Hz, 1 channel(s): "
        "Invalid sample rate [PaErrorCode -9997]"
    )


def test_a_failing_portaudio_is_a_clear_error(fake_sd: ModuleType) -> None:
    def fail() -> list[dict[str, Any]]:
        raise FakePortAudioError("Error querying device -1")

    fake_sd.query_devices = fail  # type: ignore[attr-defined]
    with pytest.raises(AudioDeviceError, match="PortAudio cannot list the audio devices"):
        list_devices()


def test_real_samples_held_by_the_resampler_are_counted_with_the_audio() -> None:
    queue = PlaybackQueue(48_000, 1, max_buffer_s=1.0, prebuffer_s=0.0)
    voice = b"\x00\x10" * 320
    for _ in range(10):
        queue.write(voice, 320)  # 48 kHz: the resampler holds the first block back
    buffer = np.zeros((20 * 960, 1), np.float32)
    queue.callback(buffer, len(buffer), None, 0)
    # The first write produced no output; its real samples were carried to the next block.
    assert queue.played_samples == 10 * 320
