"""A half-duplex gate against echo: the microphone is muted while the agent plays.

With laptop speakers the microphone hears the agent, and the agent then hears itself —
it may interrupt itself or answer its own words. Headphones solve this properly and are
the recommendation. When they are not an option, a :class:`HalfDuplexGate` mutes the
user's audio (zeros, keeping the cadence as docs/protocol.md §3 asks of a mute) while agent
audio is being played and for a short tail after it, so room echo dies away first. The
price: the user cannot interrupt the agent by speaking over it.

Wiring: the gate is a sink tap on the playback pump (it sees what is played) and the
``gate`` of the source pump (it mutes what is sent)::

    gate = HalfDuplexGate(tail_ms=300)
    tg.start_soon(partial(play_to_sink, pull, speaker, taps=[gate]))
    tg.start_soon(partial(stream_source, mic, send, gate=gate))
"""

from __future__ import annotations

from millis_proto import BYTES_PER_SAMPLE
from millis_proto.pcm import ms_to_samples

from ._base import CloseOnExit, check_pcm

__all__ = ["DEFAULT_TAIL_MS", "HalfDuplexGate"]

#: How long the microphone stays muted after the last agent sample: long enough for the
#: echo of a small room to decay, short enough not to swallow a quick reply.
DEFAULT_TAIL_MS = 300.0


class HalfDuplexGate(CloseOnExit):
    """Mutes user audio while agent audio plays and for ``tail_ms`` after it.

    Time is counted in played samples, not read from a clock: the playback pump writes one
    block per block period, so samples are time, and the gate behaves the same in virtual
    time. Raises ValueError for a negative ``tail_ms``.
    """

    def __init__(self, tail_ms: float = DEFAULT_TAIL_MS) -> None:
        if not tail_ms >= 0:
            raise ValueError("tail_ms must not be negative.")
        self._tail = ms_to_samples(tail_ms)
        self._quiet = self._tail  # silent samples played since the last real agent sample
        self._playing_silence = 0  # trailing silence of the block being played now
        self.played_samples = 0
        #: User samples replaced by zeros so far.
        self.muted_samples = 0

    @property
    def muting(self) -> bool:
        """True while user audio is being replaced by zeros."""
        return self._quiet < self._tail

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Sink side: note what the agent plays (the real samples come first in a block).

        A block is written when it *starts* playing, so its trailing silence only counts
        once the next block is written: the gate opens at the first block boundary after
        the tail, never before it.
        """
        n = check_pcm(pcm, "pcm")
        self.played_samples += real_samples
        self._quiet = min(self._quiet + self._playing_silence, self._tail)
        if real_samples:
            self._quiet = 0
        self._playing_silence = n - real_samples

    def filter(self, pcm: bytes) -> bytes:
        """Source side: ``pcm`` unchanged, or zeros of the same length while muting."""
        if not self.muting:
            return pcm
        self.muted_samples += len(pcm) // BYTES_PER_SAMPLE
        return bytes(len(pcm))
