"""FileSource: real files at many rates and formats come out as 16 kHz mono s16le.

Every check measures the result — frequency, duration, level, exact samples — rather than
only running the conversion.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_backends import AudioFileError, FileSource

from .signals import dominant_frequency, pcm16, read_all, rms_db, tone

RATE = 16_000
FREQ = 997.0  # half-way between FFT bins of the 1.5 s window, where the estimator is unbiased
SECONDS = 1.5


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "tolerance_db"),
    [
        (8_000, 1, ("WAV", "ULAW"), 0.1),  # telephone µ-law
        (11_025, 1, ("WAV", "ALAW"), 0.1),
        (22_050, 1, ("WAV", "PCM_U8"), 0.1),
        (44_100, 2, ("WAV", "FLOAT"), 0.01),
        (48_000, 2, ("WAV", "PCM_24"), 0.01),
        (96_000, 1, ("WAV", "PCM_32"), 0.01),
        (32_000, 2, ("FLAC", "PCM_16"), 0.01),
        (24_000, 6, ("WAV", "PCM_16"), 0.01),  # 5.1: every channel carries the tone
    ],
)
def test_any_file_becomes_16k_mono_with_the_same_tone_and_duration(
    tmp_path: Path, rate: int, channels: int, fmt: tuple[str, str], tolerance_db: float
) -> None:
    container, subtype = fmt
    path = tmp_path / f"tone.{container.lower()}"
    signal = tone(FREQ, SECONDS, rate)
    frames = np.repeat(signal[:, None], channels, axis=1)
    sf.write(str(path), frames, rate, format=container, subtype=subtype)

    with FileSource(path) as source:
        assert (source.sample_rate, source.channels) == (rate, channels)
        out = pcm16(read_all(source))

    assert len(out) == round(len(signal) * RATE / rate)  # duration: sample-exact
    assert abs(dominant_frequency(out, RATE) - FREQ) < 0.05  # Hz
    steady = out[1600:-1600]  # away from the resampler's edges
    assert abs(rms_db(steady) - rms_db(signal * 32768)) < tolerance_db


def test_16k_mono_pcm16_passes_through_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(-32768, 32768, size=12_345, dtype=np.int16)
    path = tmp_path / "noise.wav"
    sf.write(str(path), noise, RATE, subtype="PCM_16")
    with FileSource(path) as source:
        assert np.array_equal(pcm16(read_all(source, 77)), noise)


def test_output_does_not_depend_on_read_sizes(tmp_path: Path) -> None:
    path = tmp_path / "burst.wav"
    rng = np.random.default_rng(1)
    sf.write(str(path), rng.uniform(-0.5, 0.5, (44_100, 2)).astype(np.float32), 44_100)
    results = set()
    for chunk in (1, 320, 4_093, 100_000):
        with FileSource(path) as source:
            results.add(read_all(source, chunk))
    assert len(results) == 1


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
def test_a_noise_burst_keeps_its_place_on_the_timeline(tmp_path: Path, rate: int) -> None:
    """The resampler's delay is compensated: a burst at 0.5 s stays at sample 8000."""
    rng = np.random.default_rng(3)
    audio = np.zeros(rate)  # 1 s
    burst = slice(rate // 2, rate // 2 + rate // 10)  # 0.5 s to 0.6 s
    audio[burst] = rng.uniform(-0.5, 0.5, rate // 10)
    path = tmp_path / "burst.wav"
    sf.write(str(path), audio, rate, subtype="PCM_16")
    with FileSource(path) as source:
        out = pcm16(read_all(source)).astype(np.float64)
    envelope = np.convolve(out**2, np.ones(32) / 32, mode="same")  # 2 ms smoothing
    loud = np.flatnonzero(envelope > 0.01 * envelope.max())
    assert abs(loud[0] - 8_000) <= 24  # onset within 1.5 ms (smoothing included)
    assert abs(loud[-1] - 9_600) <= 24  # end likewise


def test_down_mix_averages_the_channels(tmp_path: Path) -> None:
    rate = 48_000
    left, right = tone(440, 1.0, rate), tone(1_000, 1.0, rate)
    mixed = tmp_path / "two-tones.wav"
    sf.write(str(mixed), np.stack([left, right], axis=1), rate, subtype="FLOAT")
    with FileSource(mixed) as source:
        out = pcm16(read_all(source)).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / RATE)
    at = lambda f: spectrum[np.argmin(abs(freqs - f))]  # noqa: E731
    # Both sides are heard, equally: neither channel is dropped.
    assert abs(20 * np.log10(at(440) / at(1_000))) < 0.1
    # Each at half amplitude (-6 dB): the average, not the sum.
    assert abs(rms_db(out[1600:-1600]) - rms_db(0.5 * (left + right) * 32768)) < 0.05

    cancel = tmp_path / "opposite.wav"
    sf.write(str(cancel), np.stack([left, -left], axis=1), rate, subtype="FLOAT")
    with FileSource(cancel) as source:
        assert np.abs(pcm16(read_all(source))).max() <= 1


def test_out_of_range_audio_is_clamped_never_wrapped(tmp_path: Path) -> None:
    exact = tmp_path / "edges.wav"
    values = np.array([1.5, 1.0, 0.99999, -1.0, -1.5, 0.0, np.nan], dtype=np.float32)
    sf.write(str(exact), values, RATE, subtype="FLOAT")
    with FileSource(exact) as source:
        assert pcm16(read_all(source)).tolist() == [32767, 32767, 32767, -32768, -32768, 0, 0]

    # A full-scale square wave overshoots when resampled (Gibbs); it must saturate.
    rate = 44_100
    square = np.sign(np.sin(2 * np.pi * 100 * np.arange(rate) / rate)).astype(np.float32)
    loud = tmp_path / "square.wav"
    sf.write(str(loud), np.stack([square, square], axis=1), rate, subtype="FLOAT")
    with FileSource(loud) as source:
        out = pcm16(read_all(source))
    assert out.max() == 32767
    assert out.min() == -32768
    reference = np.sign(np.sin(2 * np.pi * 100 * np.arange(len(out)) / RATE))
    plateau = np.abs(np.sin(2 * np.pi * 100 * np.arange(len(out)) / RATE)) > 0.5
    # On every plateau the output keeps the input's sign: nothing wrapped around.
    assert np.all(np.sign(out[plateau]) == reference[plateau])


def test_looping_and_a_tail_of_silence(tmp_path: Path) -> None:
    clip = np.arange(1, 1_601, dtype=np.int16)  # 0.1 s
    path = tmp_path / "clip.wav"
    sf.write(str(path), clip, RATE, subtype="PCM_16")

    with FileSource(path, loop=True) as source:
        out = pcm16(source.read(5_600))
    assert np.array_equal(out, np.tile(clip, 4)[:5_600])

    with FileSource(path, tail_silence_s=0.25) as source:
        out = pcm16(read_all(source, 333))
        assert source.read(10) == b""
    assert np.array_equal(out[:1_600], clip)
    assert len(out) == 1_600 + 4_000
    assert not out[1_600:].any()


def test_resampled_looping_is_continuous_in_length(tmp_path: Path) -> None:
    path = tmp_path / "clip48k.wav"
    sf.write(str(path), tone(FREQ, 0.3, 48_000), 48_000, subtype="PCM_16")
    with FileSource(path, loop=True) as source:
        out = pcm16(source.read(3 * 4_800))
    assert len(out) == 3 * 4_800  # each pass is exactly 0.3 s at 16 kHz
    assert abs(dominant_frequency(out, RATE) - FREQ) < 0.5


def test_reading_after_close_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    sf.write(str(path), np.zeros(160, np.int16), RATE, subtype="PCM_16")
    source = FileSource(path)
    source.close()
    source.close()
    with pytest.raises(ValueError, match="closed"):
        source.read(1)


def _wav_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.wav"
    sf.write(str(path), tone(FREQ, 1.0, 48_000), 48_000, subtype="PCM_16")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("missing.wav", None, "does not exist"),
        ("empty.wav", lambda good: b"", "is empty (0 bytes)"),
        ("notes.wav", lambda good: b"just some text\n" * 20, "is not an audio file"),
        ("half.wav", lambda good: good[: len(good) // 2], "is truncated: its header announces"),
        ("header-only.wav", lambda good: good[:30], "is truncated or damaged"),
        ("silent.wav", lambda good: good[:40] + b"\0\0\0\0", "contains no audio"),
    ],
)
def test_unusable_files_are_clear_errors_naming_file_and_problem(
    tmp_path: Path, name: str, make: object, problem: str
) -> None:
    path = tmp_path / name
    if callable(make):
        path.write_bytes(make(_wav_bytes(tmp_path)))
    with pytest.raises(AudioFileError) as err:
        FileSource(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)
    assert err.value.path == str(path)


def test_a_directory_is_not_an_audio_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="is a directory"):
        FileSource(tmp_path)


@pytest.mark.parametrize("container", ["FLAC", "MP3"])
def test_compressed_audio_cut_short_fails_when_decoding_gets_there(
    tmp_path: Path, container: str
) -> None:
    if container not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {container}")
    path = tmp_path / f"cut.{container.lower()}"
    sf.write(str(path), tone(FREQ, 2.0, 48_000), 48_000, format=container)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with FileSource(path) as source, pytest.raises(AudioFileError) as err:
        read_all(source)
    assert str(path) in str(err.value)
    assert "is truncated" in str(err.value) or "is damaged" in str(err.value)


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")),
    reason="needs espeak-ng and sox (installed by .ci/system-deps.sh)",
)
@pytest.mark.parametrize(("rate", "channels"), [(22_050, 1), (44_100, 2), (8_000, 1)])
def test_speech_matches_sox_reference_conversion(tmp_path: Path, rate: int, channels: int) -> None:
    """Real speech, converted by us and by sox independently, must agree."""
    spoken = tmp_path / "spoken.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(spoken), "Hello, this is a test of the audio backends."],
        check=True,
        capture_output=True,
    )
    original = tmp_path / "original.wav"
    subprocess.run(
        ["sox", str(spoken), "-r", str(rate), "-c", str(channels), "-b", "16", str(original)],
        check=True,
        capture_output=True,
    )
    reference = tmp_path / "reference.wav"
    subprocess.run(
        ["sox", str(original), "-r", "16000", "-c", "1", "-e", "float", str(reference)],
        check=True,
        capture_output=True,
    )
    with FileSource(original) as source:
        ours = pcm16(read_all(source)).astype(np.float64) / 32768
    theirs, _ = sf.read(str(reference), dtype="float64")

    frames = sf.info(str(original)).frames
    assert len(ours) == round(frames * RATE / rate)  # same duration, to the sample
    assert abs(len(ours) - len(theirs)) <= 1
    n = min(len(ours), len(theirs))
    error = ours[:n] - theirs[:n]
    snr_db = 10 * np.log10(np.sum(theirs[:n] ** 2) / np.sum(error**2))
    assert snr_db > 40  # sample-aligned and the same signal (16-bit rounding included)
