"""Turn detection: when the user has spoken a turn, and when a burst was only a cough.

Theory of operation
-------------------
The detector runs on the sample timeline of the received audio, not on the clock: sample
*n* is at ``n / 16000`` s of the user's stream. Network jitter and the chunk sizes a client
picks (docs/protocol.md §2) therefore change nothing — the same audio always yields the same
events at the same sample positions. Decisions are made at 20 ms frame ends
(:mod:`.vad`), so every duration below is effectively rounded up to whole frames.

A *segment* opens on the first voiced frame after silence and reports
:class:`SpeechStarted`. From then on:

* when voiced frames span ``min_speech_ms`` from the segment's start (gaps included), the
  segment is real speech: :class:`SpeechConfirmed`, once per segment;
* a confirmed segment ends after ``end_silence_ms`` of unbroken silence:
  :class:`TurnEnded`, carrying the utterance's audio up to its last voiced frame;
* an unconfirmed segment ends sooner, after ``cough_silence_ms`` of silence:
  :class:`SpeechDiscarded` — a cough, a click, a short "mm".

Any voiced frame inside a segment resets the silence count, so pauses between words
shorter than those windows never split a turn. Every :class:`SpeechStarted` is followed by
exactly one :class:`TurnEnded` or :class:`SpeechDiscarded`, and :class:`SpeechConfirmed`
(if any) comes between them. The captured utterance is bounded by ``max_capture_samples``
(the start of a longer one is kept; the rest is not stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, Buffer, ms_to_samples
from ._fields import check_number, field_error
from .vad import DEFAULT_THRESHOLD_DBFS, FRAME_SAMPLES, EnergyVad

__all__ = [
    "SpeechConfirmed",
    "SpeechDiscarded",
    "SpeechStarted",
    "TurnConfig",
    "TurnDetector",
    "TurnEnded",
    "TurnEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnConfig:
    """Tunables of turn detection (see the module docstring for their meaning).

    Raises :class:`ConfigError` naming the field when a duration is not a positive number
    or the threshold is not a number of dBFS in (-200, 0].
    """

    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS
    min_speech_ms: float = 300.0
    end_silence_ms: float = 600.0
    cough_silence_ms: float = 200.0

    def __post_init__(self) -> None:
        check_number("threshold_dbfs", self.threshold_dbfs, minimum=-200.0)
        if self.threshold_dbfs > 0:
            raise field_error("threshold_dbfs", "must be at most 0 (dBFS).")
        check_number("min_speech_ms", self.min_speech_ms)
        check_number("end_silence_ms", self.end_silence_ms)
        check_number("cough_silence_ms", self.cough_silence_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted:
    """A voiced frame after silence opened a segment at sample ``start``."""

    start: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechConfirmed:
    """The segment spans ``min_speech_ms``; known at sample ``at``."""

    start: int
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechDiscarded:
    """An unconfirmed segment ``[start, end)`` fell silent; known at sample ``at``."""

    start: int
    end: int
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEnded:
    """The user spoke a turn over ``[start, end)``; known at sample ``at``.

    ``audio`` is the utterance (s16le) from ``start`` to ``end``, cut at the capture bound.
    """

    start: int
    end: int
    at: int
    audio: bytes = field(repr=False)

    @property
    def duration_s(self) -> float:
        """Length of the utterance in seconds (first to last voiced frame)."""
        return (self.end - self.start) / SAMPLE_RATE


TurnEvent = SpeechStarted | SpeechConfirmed | SpeechDiscarded | TurnEnded


class TurnDetector:
    """Energy VAD + the segment state machine of the module docstring. Pure, no clock."""

    __slots__ = (
        "_capture",
        "_capture_limit",
        "_confirmed",
        "_cough_silence",
        "_end_silence",
        "_last_voiced_end",
        "_min_speech",
        "_start",
        "_vad",
        "config",
    )

    def __init__(self, config: TurnConfig | None = None, *, max_capture_samples: int) -> None:
        self.config = config if config is not None else TurnConfig()
        if max_capture_samples < 0:
            raise ConfigError("max_capture_samples must not be negative.")
        self._vad = EnergyVad(self.config.threshold_dbfs)
        self._min_speech = ms_to_samples(self.config.min_speech_ms)
        self._end_silence = ms_to_samples(self.config.end_silence_ms)
        self._cough_silence = ms_to_samples(self.config.cough_silence_ms)
        self._capture_limit = max_capture_samples * BYTES_PER_SAMPLE
        self._capture = bytearray()
        self._start: int | None = None  # start of the open segment, None in silence
        self._last_voiced_end = 0
        self._confirmed = False

    @property
    def in_speech(self) -> bool:
        """True while a segment is open (speech, or a pause inside speech)."""
        return self._start is not None

    def push(self, pcm: Buffer) -> list[TurnEvent]:
        """Add received audio of any byte length; return the events it completes, in order."""
        events: list[TurnEvent] = []
        for frame_start, voiced, frame in self._vad._classify(pcm):
            start = self._start
            frame_end = frame_start + FRAME_SAMPLES
            if voiced:
                if start is None:
                    start = self._start = frame_start
                    self._confirmed = False
                    self._capture.clear()
                    events.append(SpeechStarted(start=start))
                self._last_voiced_end = frame_end
                self._keep(frame)
                if not self._confirmed and frame_end - start >= self._min_speech:
                    self._confirmed = True
                    events.append(SpeechConfirmed(start=start, at=frame_end))
            elif start is not None:
                self._keep(frame)  # may turn out to be a pause between words
                silence = frame_end - self._last_voiced_end
                end = self._last_voiced_end
                if self._confirmed and silence >= self._end_silence:
                    audio = bytes(self._capture[: (end - start) * BYTES_PER_SAMPLE])
                    events.append(TurnEnded(start=start, end=end, at=frame_end, audio=audio))
                    self._close_segment()
                elif not self._confirmed and silence >= self._cough_silence:
                    events.append(SpeechDiscarded(start=start, end=end, at=frame_end))
                    self._close_segment()
        return events

    def _keep(self, pcm: bytes) -> None:
        room = self._capture_limit - len(self._capture)
        if room > 0:
            self._capture += pcm[:room]

    def _close_segment(self) -> None:
        self._start = None
        self._capture.clear()
