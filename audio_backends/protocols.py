"""The two small protocols every backend implements, and the callables the pumps take.

A *source* yields the user's audio, a *sink* plays the agent's. Both speak the protocol's
format only — s16le, 16 kHz, mono (docs/protocol.md §2) — and convert at their own edge, so a
WAV file, a numpy array, a microphone and a test fake are interchangeable.

* :class:`AudioSource` is pulled without waiting (files, memory): the pump in
  :mod:`.pacing` decides *when* to read, which is what makes virtual time possible.
* :class:`LiveAudioSource` paces itself (a microphone): reading waits for the audio.
* :class:`AudioSink` receives exactly what was pulled from the playback buffer, silence
  included, so its output has the playback timeline. A sink never owns the buffer.

Every backend in this package is also a context manager that calls ``close()`` on exit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from millis_proto import PlaybackChunk

__all__ = ["AudioSink", "AudioSource", "LiveAudioSource", "PullPlayback", "SendAudio"]

#: Takes ``n`` samples from the session's playback buffer, e.g.
#: ``lambda n: client.pull_playback(n, anyio.current_time())``; see :func:`.pacing.playback_of`.
PullPlayback = Callable[[int], PlaybackChunk]

#: Sends one chunk of user audio (s16le, 16 kHz, mono) to the session.
SendAudio = Callable[[bytes], Awaitable[None]]


class AudioSource(Protocol):
    """User audio that can be read at any moment without waiting (a file, a buffer)."""

    def read(self, n_samples: int) -> bytes:
        """Return the next ``n_samples`` samples as s16le bytes.

        Fewer only at the end of the audio, then ``b""`` forever.
        """
        ...

    def close(self) -> None:
        """Release what the source holds; idempotent."""
        ...


@runtime_checkable
class LiveAudioSource(Protocol):
    """User audio that arrives at its own pace (a microphone)."""

    async def aread(self, n_samples: int) -> bytes:
        """Wait for the next ``n_samples`` samples; fewer or ``b""`` once the source ended."""
        ...

    def close(self) -> None:
        """Stop capturing; a pending or later :meth:`aread` returns what is left, then ``b""``."""
        ...


class AudioSink(Protocol):
    """Plays (or stores) agent audio pulled from the playback buffer."""

    @property
    def played_samples(self) -> int:
        """Real (non-silence) samples played so far: what the user has actually heard."""
        ...

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Play ``pcm`` (s16le, 16 kHz, mono), of which the first ``real_samples`` are audio.

        ``pcm`` is exactly what the pump pulled — zeros while paused or drained — so a sink
        that stores it keeps the playback timeline.
        """
        ...

    def close(self) -> None:
        """Finish playing or writing and release the device or file; idempotent."""
        ...
