"""Microphone and speaker through sounddevice (PortAudio).

Devices run at their own rate: many USB microphones reject 16 kHz, so both directions open
the device at its native (default) rate and resample at this edge (:mod:`.convert`, with
the steady low-latency preset :data:`~.convert.LIVE_RESAMPLER_QUALITY`).
A device is chosen by index, by name (case-insensitive, a unique part is enough) or left
to the system default; :func:`list_devices` shows what there is.

Threads: PortAudio calls back on its own audio thread. The callbacks here touch nothing
but a :class:`collections.deque` (thread-safe for append/popleft) and counters that only
that thread writes; they never touch the event loop. The loop side polls the deque
(:data:`POLL_INTERVAL_S`), converts, and hands over the result.

Echo: with loudspeakers the microphone hears the agent, and the agent hears itself —
it may interrupt itself or answer its own words. **Use headphones.** On a laptop without
them, a :class:`~.duplex.HalfDuplexGate` mutes the microphone while the agent plays (plus
a short tail), at the price of not being able to interrupt the agent by voice.

Needs the ``devices`` extra (sounddevice, numpy, soxr) and the PortAudio library.
"""

from __future__ import annotations

import importlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from millis_proto import BYTES_PER_SAMPLE, SAMPLE_RATE

from ._base import CloseOnExit
from .errors import AudioDeviceError, MissingExtraError

try:
    from .convert import (
        LIVE_RESAMPLER_QUALITY,
        FloatArray,
        Resampler,
        StreamConverter,
        pcm_to_float,
    )
except ImportError as exc:  # the optional extra is not installed
    raise MissingExtraError.for_module(
        "microphone and speaker support", exc.name, "devices"
    ) from exc

__all__ = [
    "DEFAULT_CAPTURE_BUFFER_S",
    "DEFAULT_PLAYBACK_BUFFER_S",
    "PLAYBACK_PREBUFFER_S",
    "POLL_INTERVAL_S",
    "CaptureQueue",
    "DeviceInfo",
    "Microphone",
    "PlaybackQueue",
    "Speaker",
    "find_device",
    "list_devices",
]

DeviceKind = Literal["input", "output"]

#: How often the loop side looks for captured audio: a fraction of a 20 ms block.
POLL_INTERVAL_S = 0.005
#: Captured audio kept while the loop does not read (oldest dropped beyond it).
DEFAULT_CAPTURE_BUFFER_S = 2.0
#: Agent audio queued for the speaker at most (newest dropped beyond it): bounds latency.
DEFAULT_PLAYBACK_BUFFER_S = 0.5
#: The speaker waits for this much queued audio before it starts (and after running dry),
#: absorbing the jitter between the loop's clock and the device's.
PLAYBACK_PREBUFFER_S = 0.04

_INSTALL_PORTAUDIO = (
    "install it: apt-get install libportaudio2 (Debian/Ubuntu), "
    "brew install portaudio (macOS); the Windows wheels of sounddevice bundle it"
)


def _sounddevice() -> Any:
    """Import sounddevice lazily: importing it fails when PortAudio is missing."""
    try:
        return importlib.import_module("sounddevice")
    except ImportError as exc:
        raise MissingExtraError.for_module(
            "microphone and speaker support", "sounddevice", "devices"
        ) from exc
    except OSError as exc:  # sounddevice itself raises OSError('PortAudio library not found')
        raise AudioDeviceError(
            f"the PortAudio library is not installed ({exc}); {_INSTALL_PORTAUDIO}"
        ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """One audio device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool = False
    is_default_output: bool = False

    def channels(self, kind: DeviceKind) -> int:
        """Maximum channels for ``kind`` ("input" or "output")."""
        return self.max_input_channels if kind == "input" else self.max_output_channels

    def is_default(self, kind: DeviceKind) -> bool:
        """True if this is the system's default device for ``kind``."""
        return self.is_default_input if kind == "input" else self.is_default_output


def list_devices() -> list[DeviceInfo]:
    """Every audio device PortAudio sees (possibly none).

    Raises :class:`~.errors.MissingExtraError` without sounddevice and
    :class:`~.errors.AudioDeviceError` when PortAudio is missing or fails.
    """
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        host_apis = [api["name"] for api in sd.query_hostapis()]
        default_in, default_out = (_as_index(i) for i in sd.default.device)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"PortAudio cannot list the audio devices: {exc}") from exc
    out = []
    for index, dev in enumerate(devices):
        api = dev.get("hostapi", -1)
        out.append(
            DeviceInfo(
                index=index,
                name=str(dev["name"]),
                host_api=host_apis[api] if 0 <= api < len(host_apis) else "",
                max_input_channels=int(dev["max_input_channels"]),
                max_output_channels=int(dev["max_output_channels"]),
                default_sample_rate=float(dev["default_samplerate"]),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return out


def _as_index(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def find_device(device: int | str | None = None, kind: DeviceKind = "input") -> DeviceInfo:
    """Choose a device for ``kind``: by index, by (part of its) name, or the default.

    ``None`` means the system default, or the first capable device when there is none.
    A name matches case-insensitively, an exact name first, else a unique substring.
    Raises :class:`~.errors.AudioDeviceError` naming what was looked for and what exists.
    """
    devices = list_devices()
    usable = [d for d in devices if d.channels(kind)]
    if not usable:
        seen = (
            "PortAudio sees no audio devices at all"
            if not devices
            else (f"none of the {len(devices)} devices has {kind} channels")
        )
        raise AudioDeviceError(f"no {kind} device found: {seen}.")
    if device is None:
        return next((d for d in usable if d.is_default(kind)), usable[0])
    if isinstance(device, int) or device.strip().isdigit():
        index = int(device)
        match = [d for d in usable if d.index == index]
    else:
        wanted = device.strip().casefold()
        match = [d for d in usable if d.name.casefold() == wanted] or [
            d for d in usable if wanted in d.name.casefold()
        ]
    if len(match) == 1:
        return match[0]
    names = ", ".join(f"{d.index}: {d.name}" for d in (match or usable))
    problem = "is ambiguous" if match else "matches no"
    raise AudioDeviceError(f"{kind} device {device!r} {problem} {kind} device ({names}).")


class CaptureQueue:
    """Hands captured audio from a device's callback thread to the event loop.

    :meth:`callback` runs on the audio thread and only copies the block into a bounded
    deque (the oldest block is dropped when the loop falls :data:`DEFAULT_CAPTURE_BUFFER_S`
    behind; :attr:`dropped_blocks` counts them). :meth:`aread` runs on the loop: it polls
    the deque, down-mixes and resamples to protocol PCM.
    """

    def __init__(self, sample_rate: float, max_blocks: int) -> None:
        self._blocks: deque[FloatArray] = deque(maxlen=max(1, max_blocks))
        self._converter = StreamConverter(sample_rate, LIVE_RESAMPLER_QUALITY)
        self._pcm = bytearray()
        self._closed = False
        self._flushed = False
        #: Blocks dropped because the loop did not read in time (audio thread only).
        self.dropped_blocks = 0
        #: Callbacks that reported an overflow or other PortAudio status (audio thread).
        self.status_count = 0

    def callback(self, indata: FloatArray, frames: int, time: Any, status: Any) -> None:
        """sounddevice's input callback: copy the block and return at once."""
        if status:
            self.status_count += 1
        if len(self._blocks) == self._blocks.maxlen:
            self.dropped_blocks += 1
        self._blocks.append(indata.copy())  # PortAudio reuses indata's memory

    def close(self) -> None:
        """No more blocks will come: :meth:`aread` returns what is left, then ``b""``."""
        self._closed = True

    async def aread(self, n_samples: int) -> bytes:
        """Wait for ``n_samples`` samples of protocol PCM; fewer or b"" once closed."""
        want = n_samples * BYTES_PER_SAMPLE
        pcm = self._pcm
        while len(pcm) < want:
            if self._blocks:
                pcm += self._converter.push(self._blocks.popleft())
            elif not self._closed:
                await anyio.sleep(POLL_INTERVAL_S)
            elif not self._flushed:
                self._flushed = True
                pcm += self._converter.flush()
            else:
                break
        out = bytes(pcm[:want])
        del pcm[:want]
        return out


class PlaybackQueue:
    """Hands agent audio from the event loop to a device's callback thread.

    :meth:`write` (loop side) resamples protocol PCM to the device rate and queues it,
    dropping the newest audio beyond ``max_buffer_s`` (:attr:`dropped_frames`).
    :meth:`callback` (audio thread) copies queued audio into the device buffer, zeros when
    there is none, and counts the real samples of each block once it has been handed to
    the device (:attr:`played_samples`). Every counter has a single writing thread.

    The loop's clock and the device's drift apart slowly (typically under 0.01 %): a
    device that runs fast empties the queue now and then and waits for the prebuffer
    again (a short gap), one that runs slow fills it to the bound and a block is dropped.
    Both keep the latency bounded, which matters more in a conversation.
    """

    def __init__(
        self,
        sample_rate: float,
        channels: int,
        max_buffer_s: float = DEFAULT_PLAYBACK_BUFFER_S,
        prebuffer_s: float = PLAYBACK_PREBUFFER_S,
    ) -> None:
        self.channels = channels
        self._resampler = Resampler(SAMPLE_RATE, sample_rate, LIVE_RESAMPLER_QUALITY)
        self._max_frames = round(max_buffer_s * sample_rate)
        self._prebuffer = round(prebuffer_s * sample_rate)
        self._blocks: deque[tuple[FloatArray, int]] = deque()
        self._pending_real = 0  # real samples whose audio the resampler still holds
        self._written = 0  # frames queued (loop thread)
        self._consumed = 0  # frames handed to the device (audio thread)
        self._current: tuple[FloatArray, int] | None = None  # audio thread only
        self._offset = 0  # audio thread only
        self._waiting = True  # audio thread only: prebuffering
        #: Frames dropped because the queue was full (loop thread).
        self.dropped_frames = 0
        #: Real 16 kHz samples handed to the device (audio thread).
        self.played_samples = 0
        #: Callbacks that reported an underflow or other PortAudio status (audio thread).
        self.status_count = 0

    @property
    def queued_frames(self) -> int:
        """Frames waiting for the device (approximate while the device runs)."""
        return self._written - self._consumed

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Resample and queue one block of protocol PCM."""
        samples = self._resampler.process(pcm_to_float(pcm))
        real = self._pending_real + real_samples
        if not len(samples):  # the resampler's start-up delay
            self._pending_real = real
            return
        self._pending_real = 0
        if self.queued_frames + len(samples) > self._max_frames:
            self.dropped_frames += len(samples)
            return
        self._blocks.append((samples, real))
        self._written += len(samples)

    def callback(self, outdata: FloatArray, frames: int, time: Any, status: Any) -> None:
        """sounddevice's output callback: fill ``outdata`` from the queue, zeros if dry."""
        if status:
            self.status_count += 1
        filled = 0
        if self._waiting and self.queued_frames >= self._prebuffer:
            self._waiting = False
        while filled < frames and not self._waiting:
            if self._current is None:
                if not self._blocks:
                    self._waiting = True  # ran dry: prebuffer again before resuming
                    break
                self._current, self._offset = self._blocks.popleft(), 0
            block, real = self._current
            take = min(frames - filled, len(block) - self._offset)
            outdata[filled : filled + take] = block[self._offset : self._offset + take, None]
            filled += take
            self._offset += take
            if self._offset == len(block):
                self.played_samples += real
                self._current = None
        outdata[filled:] = 0
        self._consumed += filled


@dataclass(frozen=True, slots=True)
class _StreamSettings:
    """How a device is opened: its native rate, up to two channels, one block per period."""

    device: DeviceInfo
    rate: int
    channels: int
    block: int

    @classmethod
    def choose(cls, device: int | str | None, kind: DeviceKind, block_ms: float) -> _StreamSettings:
        info = find_device(device, kind)
        rate = round(info.default_sample_rate)
        # Some devices refuse mono; up to two channels are opened and mixed at this edge.
        return cls(info, rate, min(info.channels(kind), 2), max(1, round(rate * block_ms / 1000)))

    def open(self, factory: Any, callback: Any) -> Any:
        """Open and start a sounddevice stream; AudioDeviceError if the device refuses."""
        try:
            stream = factory(
                device=self.device.index,
                samplerate=self.rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block,
                callback=callback,
            )
            stream.start()
        except Exception as exc:  # PortAudioError, or a ValueError for bad settings
            raise AudioDeviceError(
                f"cannot open device {self.device.index} ({self.device.name!r}) at "
                f"{self.rate} Hz, {self.channels} channel(s): {exc}"
            ) from exc
        return stream


def _close_stream(stream: Any) -> None:
    if not stream.closed:
        stream.stop()
        stream.close()


class Microphone(CloseOnExit):
    """Captures from an input device at its native rate; a ``LiveAudioSource``.

    ``device``: index, name or None (see :func:`find_device`). Capturing starts at
    construction and stops at :meth:`close`. Raises :class:`~.errors.AudioDeviceError`
    when PortAudio is missing, no device matches or the device refuses to open, and
    :class:`~.errors.MissingExtraError` without the ``devices`` extra.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_ms: float = 20.0,
        max_buffer_s: float = DEFAULT_CAPTURE_BUFFER_S,
    ) -> None:
        sd = _sounddevice()
        settings = _StreamSettings.choose(device, "input", block_ms)
        self.device, self.sample_rate = settings.device, settings.rate
        self._queue = CaptureQueue(
            settings.rate, round(max_buffer_s * settings.rate / settings.block)
        )
        self._stream = settings.open(sd.InputStream, self._queue.callback)

    @property
    def dropped_blocks(self) -> int:
        """Captured blocks lost because the loop did not read in time."""
        return self._queue.dropped_blocks

    async def aread(self, n_samples: int) -> bytes:
        """Wait for the next ``n_samples`` samples; what is left, then b"", after close."""
        return await self._queue.aread(n_samples)

    def close(self) -> None:
        """Stop capturing; idempotent."""
        _close_stream(self._stream)
        self._queue.close()


class Speaker(CloseOnExit):
    """Plays on an output device at its native rate; an ``AudioSink``.

    :attr:`played_samples` counts real samples once handed to the device (its own output
    latency comes on top). ``device``: index, name or None (see :func:`find_device`).
    Raises like :class:`Microphone`.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_ms: float = 20.0,
        max_buffer_s: float = DEFAULT_PLAYBACK_BUFFER_S,
    ) -> None:
        sd = _sounddevice()
        settings = _StreamSettings.choose(device, "output", block_ms)
        self.device, self.sample_rate = settings.device, settings.rate
        self._queue = PlaybackQueue(settings.rate, settings.channels, max_buffer_s)
        self._stream = settings.open(sd.OutputStream, self._queue.callback)

    @property
    def played_samples(self) -> int:
        """Real samples handed to the device so far."""
        return self._queue.played_samples

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Queue ``pcm`` for the device."""
        self._queue.write(pcm, real_samples)

    def close(self) -> None:
        """Stop playing (what the device holds still plays out); idempotent."""
        _close_stream(self._stream)
