"""Audio sources and sinks for millis-proto sessions: the session's ears and mouth.

Two small protocols (:mod:`.protocols`) make every backend interchangeable: a *source*
yields user audio, a *sink* plays agent audio pulled from the session's playback buffer.
The protocol's format stays 16 kHz mono s16le; each backend converts at its edge. Two
pumps (:mod:`.pacing`) move audio at wall-clock pace — or in virtual time under trio's
``MockClock``.

Always available (standard library only): the protocols, the pumps, level meters,
:class:`MemorySource`, :class:`MemorySink`, :class:`NullSink`, :class:`WavSink`,
:class:`CallRecorder` and :class:`HalfDuplexGate`.

Loaded on first use, because they need optional extras:

* ``audio`` extra (numpy, soundfile, soxr): :class:`FileSource` (any audio file),
  :func:`pcm_from_array` / :func:`array_from_pcm` (numpy arrays at any rate);
* ``devices`` extra (sounddevice, numpy, soxr, plus the PortAudio library):
  :class:`Microphone`, :class:`Speaker`, :func:`list_devices`, :func:`find_device`.

Without the extra, using one of those raises :class:`MissingExtraError` naming it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .duplex import HalfDuplexGate
from .errors import AudioDeviceError, AudioError, AudioFileError, MissingExtraError
from .levels import MIN_DBFS, AudioLevel, block_level
from .memory import MemorySink, MemorySource, NullSink
from .pacing import play_to_sink, playback_of, stream_source
from .protocols import AudioSink, AudioSource, LiveAudioSource, PullPlayback, SendAudio
from .wavfile import CallRecorder, WavSink

if TYPE_CHECKING:
    from .convert import array_from_pcm as array_from_pcm
    from .convert import pcm_from_array as pcm_from_array
    from .devices import DeviceInfo as DeviceInfo
    from .devices import Microphone as Microphone
    from .devices import Speaker as Speaker
    from .devices import find_device as find_device
    from .devices import list_devices as list_devices
    from .files import FileSource as FileSource

__all__ = [
    "MIN_DBFS",
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioLevel",
    "AudioSink",
    "AudioSource",
    "CallRecorder",
    "HalfDuplexGate",
    "LiveAudioSource",
    "MemorySink",
    "MemorySource",
    "MissingExtraError",
    "NullSink",
    "PullPlayback",
    "SendAudio",
    "WavSink",
    "block_level",
    "play_to_sink",
    "playback_of",
    "stream_source",
]

# Names that live in modules needing an optional extra, loaded when first used (PEP 562),
# so that importing this package never needs the extras. Not in __all__ on purpose:
# ``from audio_backends import *`` must work without them too.
_LAZY = {
    "FileSource": "files",
    "pcm_from_array": "convert",
    "array_from_pcm": "convert",
    "DeviceInfo": "devices",
    "Microphone": "devices",
    "Speaker": "devices",
    "find_device": "devices",
    "list_devices": "devices",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
