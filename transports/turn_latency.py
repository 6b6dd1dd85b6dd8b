"""Turn latency as a person hears it: from the end of your speech to the agent's first audio.

Measured from the two level streams the conversation loop reports (the user's audio as it
is sent, the agent's as it is played; both on the same timeline), so it includes the
network, the agent's thinking and the playback buffer. A block is *voiced* above
:data:`VOICE_DBFS`; the user's speech has ended at the end of their last voiced block, and
the agent *starts* when it goes from quiet (at least :data:`AGENT_QUIET_S` without a
voiced block, so the short gaps between its words do not count) to voiced. One turn gives
one measurement: the first agent start after the user spoke.
"""

from __future__ import annotations

import math

from audio_backends import AudioLevel

__all__ = ["AGENT_QUIET_S", "VOICE_DBFS", "TurnLatency"]

#: Blocks louder than this (RMS, dBFS) count as speech.
VOICE_DBFS = -45.0
#: How long the agent must be quiet before its next voiced block counts as a new start.
AGENT_QUIET_S = 0.3


class TurnLatency:
    """Feed it every :class:`AudioLevel`; :meth:`feed` returns a latency when one completes."""

    def __init__(self, block_s: float) -> None:
        self._block_s = block_s  # the length of one level block (the conversation's chunk)
        self._user_end: float | None = None  # end of the user's last voiced block
        self._awaiting = False  # the user spoke and the agent has not started since
        self._agent_voiced_until = -math.inf

    def feed(self, level: AudioLevel) -> float | None:
        """The turn latency in seconds if ``level`` is the agent's start after a user turn."""
        voiced = level.rms_dbfs > VOICE_DBFS
        if not voiced:
            return None
        end = level.t + self._block_s
        if level.source == "user":
            self._user_end = end
            self._awaiting = True
            return None
        starts = level.t - self._agent_voiced_until >= AGENT_QUIET_S
        self._agent_voiced_until = end
        if starts and self._awaiting and self._user_end is not None:
            self._awaiting = False
            return max(0.0, level.t - self._user_end)
        return None
