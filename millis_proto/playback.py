"""The playback buffer: agent audio waiting to be played, pulled by a sink at its own pace.

Theory of operation
-------------------
Agent audio is pushed in frames of any byte size; a :class:`~millis_proto.pcm.SampleAligner`
rebuilds whole samples across odd byte counts. A sink calls :meth:`PlaybackBuffer.pull`
with the number of samples its device wants and always gets exactly that many: queued audio
while playing, zeros while paused or empty. ``real_samples`` says how much of it was audio.

* ``pause`` stops handing out audio but keeps everything and keeps accepting new audio.
* ``resume`` continues at the very next queued sample.
* ``clear`` drops every unplayed sample (and a held-back odd byte) and lifts the pause.

The buffer is bounded by ``max_seconds`` of audio. Overflow policy: audio that does not fit
is **dropped on arrival** (the oldest queued audio is what the person is about to hear, so
it is kept); :meth:`push` returns how many samples were dropped so the owner can report it.
The buffer is pure: no clock, no threads. It is not thread-safe; one owner drives it.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._frozen import frozen_dataclass
from .errors import ConfigError
from .pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, Buffer, SampleAligner

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = ["DEFAULT_MAX_PLAYBACK_SECONDS", "PlaybackBuffer", "PlaybackChunk"]

#: Default bound of the playback buffer. Agent answers stream faster than real time, so
#: the buffer must hold a whole long answer; 120 s is 3.84 MB.
DEFAULT_MAX_PLAYBACK_SECONDS = 120.0


@frozen_dataclass(frozen=True, slots=True)
class PlaybackChunk:
    """What a pull returned: exactly the requested samples, of which ``real_samples`` are audio.

    ``pcm`` always holds the ``real_samples`` of audio first and zero padding after them
    (never silence in between), so a sink may split a block at ``real_samples``.
    ``drained`` is True when this pull handed out the last queued sample.
    """

    pcm: bytes
    real_samples: int
    drained: bool


class PlaybackBuffer:
    """Bounded FIFO of agent audio with pause / resume / clear; see the module docstring."""

    __slots__ = (
        "_aligner",
        "_chunks",
        "_head",
        "_paused",
        "_queued_bytes",
        "_silence",
        "capacity_samples",
        "dropped_samples",
        "played_samples",
        "received_samples",
    )

    def __init__(self, max_seconds: float = DEFAULT_MAX_PLAYBACK_SECONDS) -> None:
        if not max_seconds > 0:
            raise ConfigError("max_seconds must be positive.")
        self.capacity_samples = int(max_seconds * SAMPLE_RATE)
        self._aligner = SampleAligner()
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already played
        self._queued_bytes = 0
        self._paused = False
        self._silence = PlaybackChunk(b"", 0, False)  # the last all-zero chunk handed out
        #: Whole samples accepted into the queue since creation.
        self.received_samples = 0
        #: Real (non-silence) samples handed out by :meth:`pull` since creation.
        self.played_samples = 0
        #: Samples dropped by the overflow policy since creation.
        self.dropped_samples = 0

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` / :meth:`clear`."""
        return self._paused

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be played."""
        return self._queued_bytes // BYTES_PER_SAMPLE

    def push(self, data: Buffer) -> int:
        """Queue agent audio of any byte length; return how many samples were dropped."""
        pcm = self._aligner.align(data)
        if not pcm:
            return 0
        # _queued_bytes is always whole samples (what is queued was aligned).
        room = self.capacity_samples * BYTES_PER_SAMPLE - self._queued_bytes
        dropped = 0
        if len(pcm) > room:
            dropped = (len(pcm) - room) // BYTES_PER_SAMPLE
            pcm = pcm[:room]
            self.dropped_samples += dropped
        if pcm:
            self._chunks.append(pcm)
            self._queued_bytes += len(pcm)
            self.received_samples += len(pcm) // BYTES_PER_SAMPLE
        return dropped

    def pull(self, n_samples: int) -> PlaybackChunk:
        """Return exactly ``n_samples`` samples (s16le bytes): audio while playing, else zeros."""
        if n_samples < 0:
            raise ConfigError("n_samples must not be negative.")
        want = n_samples * BYTES_PER_SAMPLE
        if self._paused or not self._queued_bytes or not want:
            # Silence is pulled 50 times a second between answers: reuse the (immutable)
            # chunk of the last such pull when the size is the same.
            if len(self._silence.pcm) != want:
                self._silence = PlaybackChunk(bytes(want), 0, False)
            return self._silence
        chunks = self._chunks
        if not self._head and len(chunks[0]) == want:
            # The usual case: the agent's frames are the size the sink pulls.
            pcm = chunks.popleft()
            self._queued_bytes -= want
            self.played_samples += n_samples
            return PlaybackChunk(pcm, n_samples, not self._queued_bytes)
        parts: list[bytes] = []
        got = 0
        while got < want and chunks:
            head = chunks[0]
            take = min(len(head) - self._head, want - got)
            parts.append(head[self._head : self._head + take])
            got += take
            self._head += take
            if self._head == len(head):
                chunks.popleft()
                self._head = 0
        self._queued_bytes -= got
        real = got // BYTES_PER_SAMPLE
        self.played_samples += real
        if got < want:
            parts.append(bytes(want - got))
        pcm = parts[0] if len(parts) == 1 else b"".join(parts)
        return PlaybackChunk(pcm, real, self._queued_bytes == 0)

    def pause(self) -> None:
        """Stop handing out audio; keep the queue and keep accepting audio."""
        self._paused = True

    def resume(self) -> None:
        """Continue at the very next queued sample."""
        self._paused = False

    def clear(self) -> int:
        """Drop every unplayed sample and lift the pause; return how many were dropped."""
        dropped = self.queued_samples
        self._chunks.clear()
        self._head = 0
        self._queued_bytes = 0
        self._aligner.reset()
        self._paused = False
        return dropped
