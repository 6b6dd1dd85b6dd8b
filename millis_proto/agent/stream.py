"""One answer's audio, handed out in chunks at the pace of the caller's clock.

Theory of operation
-------------------
The stream keeps a *playback position*: how much of the answer the client has played by
``now``, assuming it plays each chunk as soon as it arrives. The position runs with the
clock while the stream runs and stands still while it is paused (the client keeps the
unplayed audio queued during a ``pause``, docs/protocol.md §4). A chunk is due once the position
is within ``ahead_samples`` of its start: servers stream slightly ahead of playback so
network jitter does not starve the client's player, and the lead is what a ``clear``
drops on the client's side.

Positions are counted in samples, and ``now - resumed_at`` is rounded to the nearest
sample, so a deadline from :meth:`AnswerStream.next_deadline` is met even when the caller's
clock wakes a hair early.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..pcm import BYTES_PER_SAMPLE, SAMPLE_RATE

__all__ = ["AnswerStream"]


class AnswerStream:
    """Answer audio (whole-sample s16le) sent in ``chunk_samples`` pieces, paced by ``now``."""

    __slots__ = ("_ahead", "_chunk", "_pcm", "_played", "_resumed_at", "_sent")

    def __init__(self, pcm: bytes, *, chunk_samples: int, ahead_samples: int, now: float) -> None:
        if chunk_samples <= 0 or ahead_samples < 0:
            raise ConfigError("chunk_samples must be positive and ahead_samples not negative.")
        self._pcm = pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]
        self._chunk = chunk_samples
        self._ahead = ahead_samples
        self._sent = 0  # samples handed out
        self._played = 0  # position when last paused (or at the start)
        self._resumed_at: float | None = now  # None while paused

    @property
    def total_samples(self) -> int:
        """Length of the answer in samples."""
        return len(self._pcm) // BYTES_PER_SAMPLE

    def position(self, now: float) -> int:
        """Samples the client has played by ``now`` (never beyond the answer's end)."""
        if self._resumed_at is None:
            return self._played
        running = max(0, round((now - self._resumed_at) * SAMPLE_RATE))
        return min(self._played + running, self.total_samples)

    def due(self, now: float) -> list[bytes]:
        """The chunks to send at ``now`` (none while paused), oldest first."""
        if self._resumed_at is None:
            return []
        limit = self.position(now) + self._ahead
        total = self.total_samples
        chunks: list[bytes] = []
        while self._sent < total and self._sent <= limit:
            end = min(self._sent + self._chunk, total)
            chunks.append(self._pcm[self._sent * BYTES_PER_SAMPLE : end * BYTES_PER_SAMPLE])
            self._sent = end
        return chunks

    def finished(self, now: float) -> bool:
        """True once everything was sent and has played out."""
        return self._sent == self.total_samples and self.position(now) >= self.total_samples

    def next_deadline(self) -> float | None:
        """When the next chunk is due, or when the answer ends; ``None`` while paused."""
        if self._resumed_at is None:
            return None
        if self._sent < self.total_samples:
            target = max(self._sent - self._ahead, 0)
        else:
            target = self.total_samples
        return self._resumed_at + (target - self._played) / SAMPLE_RATE

    def pause(self, now: float) -> None:
        """Freeze the playback position (the client holds its queue)."""
        if self._resumed_at is not None:
            self._played = self.position(now)
            self._resumed_at = None

    def resume(self, now: float) -> None:
        """Let the position run again from where it stood."""
        if self._resumed_at is None:
            self._resumed_at = now
