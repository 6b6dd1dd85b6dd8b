"""The energy VAD and the turn detector: levels, decisions, and chunking invariance."""

from __future__ import annotations

import itertools
import math

import pytest
from agent_helpers import noise, silence, syllables
from hypothesis import given, settings
from hypothesis import strategies as st

from millis_proto.agent import (
    FRAME_SAMPLES,
    EnergyVad,
    SpeechConfirmed,
    SpeechDiscarded,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    level_dbfs,
)
from millis_proto.errors import ConfigError

CAPTURE = 30 * 16000


def detect(pcm: bytes, config: TurnConfig | None = None) -> list[TurnEvent]:
    return TurnDetector(config, max_capture_samples=CAPTURE).push(pcm)


def ms(n: float) -> int:
    """Milliseconds → samples."""
    return round(n * 16)


def test_level_dbfs_of_known_signals() -> None:
    full_square = (b"\xff\x7f" + b"\x00\x80") * 160
    assert level_dbfs(full_square) == pytest.approx(0.0, abs=0.01)
    assert level_dbfs(silence(20)) == -math.inf
    assert level_dbfs(b"") == -math.inf
    assert -21 < level_dbfs(noise(100)) < -18


def test_vad_frames_on_the_sample_timeline() -> None:
    vad = EnergyVad(-40.0)
    frames = vad.push(silence(20) + noise(40) + b"\x01")  # plus an odd byte
    assert [(f.start, f.voiced) for f in frames] == [(0, False), (320, True), (640, True)]
    assert vad.position == 3 * FRAME_SAMPLES
    assert vad.push(b"\x00" * 637) == []  # completes the odd sample, not yet a frame
    assert [f.start for f in vad.push(b"\x00\x00")] == [960]


def test_vad_threshold_decides() -> None:
    quiet = noise(20, amplitude=100)  # about -50 dBFS
    assert not EnergyVad(-40.0).push(quiet)[0].voiced
    assert EnergyVad(-60.0).push(quiet)[0].voiced
    with pytest.raises(ValueError):
        EnergyVad(math.nan)


def test_a_turn_is_speech_then_trailing_silence() -> None:
    speech = noise(1000)
    events = detect(silence(100) + speech + silence(600))
    start = ms(100)
    assert events[:2] == [
        SpeechStarted(start=start),
        SpeechConfirmed(start=start, at=start + ms(300)),
    ]
    [turn] = events[2:]
    assert isinstance(turn, TurnEnded)
    assert (turn.start, turn.end, turn.at) == (start, start + ms(1000), start + ms(1600))
    assert turn.audio == speech
    assert turn.duration_s == 1.0


def test_the_turn_is_not_over_before_the_full_silence() -> None:
    events = detect(noise(1000) + silence(580))
    assert [type(e) for e in events] == [SpeechStarted, SpeechConfirmed]


def test_pauses_between_words_do_not_split_a_turn() -> None:
    events = detect(syllables(1400) + silence(600))
    assert [type(e) for e in events] == [SpeechStarted, SpeechConfirmed, TurnEnded]


def test_a_cough_is_discarded_after_the_short_silence() -> None:
    events = detect(noise(100) + silence(200) + noise(1000) + silence(600))
    assert events[:2] == [
        SpeechStarted(start=0),
        SpeechDiscarded(start=0, end=ms(100), at=ms(300)),
    ]
    assert [type(e) for e in events[2:]] == [SpeechStarted, SpeechConfirmed, TurnEnded]


def test_durations_are_tunable() -> None:
    config = TurnConfig(min_speech_ms=100, end_silence_ms=200, cough_silence_ms=100)
    events = detect(noise(120) + silence(200), config)
    assert [type(e) for e in events] == [SpeechStarted, SpeechConfirmed, TurnEnded]
    assert events[-1] == TurnEnded(start=0, end=ms(120), at=ms(320), audio=noise(120))


def test_capture_is_bounded_but_the_turn_is_whole() -> None:
    detector = TurnDetector(max_capture_samples=ms(500))
    [*_, turn] = detector.push(noise(1000) + silence(600))
    assert isinstance(turn, TurnEnded)
    assert turn.end - turn.start == ms(1000)
    assert turn.audio == noise(1000)[: ms(500) * 2]
    with pytest.raises(ValueError):
        TurnDetector(max_capture_samples=-1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_speech_ms", 0),
        ("end_silence_ms", -1),
        ("cough_silence_ms", math.inf),
        ("threshold_dbfs", 3),
        ("threshold_dbfs", "loud"),
        ("min_speech_ms", True),
    ],
)
def test_turn_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TurnConfig(**{field: value})  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------

pieces = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=60)), min_size=1, max_size=12
)


def build(spec: list[tuple[bool, int]]) -> bytes:
    """Alternating noise/silence pieces of 20 ms units, each noise piece seeded differently."""
    return b"".join(
        noise(n * 20, seed=i + 1) if voiced else silence(n * 20)
        for i, (voiced, n) in enumerate(spec)
    )


@settings(max_examples=60, deadline=None)
@given(spec=pieces, cuts=st.lists(st.integers(min_value=0), max_size=20), odd=st.booleans())
def test_decisions_do_not_depend_on_chunking(
    spec: list[tuple[bool, int]], cuts: list[int], odd: bool
) -> None:
    pcm = build(spec) + (b"\x07" if odd else b"")
    whole = detect(pcm)
    points = sorted({c % (len(pcm) + 1) for c in cuts} | {0, len(pcm)})
    detector = TurnDetector(max_capture_samples=CAPTURE)
    split: list[TurnEvent] = []
    for a, b in itertools.pairwise(points):
        split += detector.push(pcm[a:b])
    assert split == whole


@settings(max_examples=80, deadline=None)
@given(spec=pieces)
def test_segments_are_well_formed(spec: list[tuple[bool, int]]) -> None:
    config = TurnConfig()
    events = detect(build(spec), config)
    open_start: int | None = None
    confirmed = False
    last_at = 0
    for event in events:
        at = event.start if isinstance(event, SpeechStarted) else event.at
        assert at >= last_at
        last_at = at
        if isinstance(event, SpeechStarted):
            assert open_start is None
            open_start, confirmed = event.start, False
        elif isinstance(event, SpeechConfirmed):
            assert event.start == open_start and not confirmed
            assert event.at - event.start >= ms(config.min_speech_ms)
            confirmed = True
        elif isinstance(event, TurnEnded):
            assert event.start == open_start and confirmed
            assert event.end - event.start >= ms(config.min_speech_ms)
            assert event.at - event.end >= ms(config.end_silence_ms)
            assert len(event.audio) == 2 * (event.end - event.start)
            open_start = None
        else:
            assert event.start == open_start and not confirmed
            assert event.end - event.start < ms(config.min_speech_ms)
            open_start = None
