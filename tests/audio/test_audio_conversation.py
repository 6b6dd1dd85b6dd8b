"""A whole conversation in virtual time: file → client core → server core → agent → speaker.

The user's side is a 44.1 kHz stereo WAV file; a scripted agent on a real MessageServer core
answers one second of speech with half a second of audio. The two cores exchange their real
messages through a direct in-memory hand-off. Under trio's MockClock the three seconds run
faster than real time, and the recordings are byte-identical on every run.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import trio
import trio.testing

from audio_backends import (
    CallRecorder,
    FileSource,
    WavSink,
    play_to_sink,
    playback_of,
    stream_source,
)
from millis_proto import (
    ClientAudio,
    MessageClient,
    MessageServer,
    PlaybackLatency,
    ResponseText,
    StartRequest,
)

from .signals import dominant_frequency, tone

RATE = 16_000
THINKING_S = 0.3105  # the agent answers off the 20 ms grid: no tie with a playback pull
AGENT_AUDIO = (tone(880, 0.5, RATE) * 32768).astype("<i2").tobytes()


def _user_file(path: Path) -> None:
    speech = tone(440, 1.0, 44_100, amplitude=0.3)
    audio = np.concatenate([speech, np.zeros(2 * 44_100)])
    sf.write(str(path), np.stack([audio, audio], axis=1), 44_100, subtype="FLOAT")


def _converse(user_wav: Path, out_dir: Path) -> MessageClient:
    client = MessageClient(StartRequest(public_key="pk", agent_id="agent"))
    server = MessageServer()
    heard = 0
    heard_a_second = trio.Event()

    def to_server(now: float) -> None:
        nonlocal heard
        for message in client.messages_to_send():
            server.receive_message(message, now)  # type: ignore[arg-type]
        for event in server.events():
            if isinstance(event, ClientAudio):
                heard += len(event.data) // 2
        if heard >= RATE:
            heard_a_second.set()

    def to_client(now: float) -> None:
        for message in server.messages_to_send():
            client.receive_message(message, now)  # type: ignore[arg-type]

    async def send(pcm: bytes) -> None:
        now = trio.current_time()
        client.send_audio(pcm, now)
        to_server(now)

    async def agent() -> None:
        await heard_a_second.wait()
        await trio.sleep(THINKING_S)
        server.send_start_answering()
        server.send_response_text("Hello there.", is_final=True)
        for i in range(0, len(AGENT_AUDIO), 4_093):
            server.send_audio(AGENT_AUDIO[i : i + 4_093])
        to_client(trio.current_time())

    async def main() -> None:
        t0 = trio.current_time()
        client.start(t0)
        to_server(t0)
        server.send_ready("session-1")
        to_client(t0)
        with (
            FileSource(user_wav) as mic,
            WavSink(out_dir / "speaker.wav") as speaker,
            CallRecorder(out_dir / "call.wav") as recorder,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(agent)
                nursery.start_soon(lambda: stream_source(mic, send, start=t0, taps=[recorder.user]))
                await play_to_sink(
                    playback_of(client), speaker, start=t0, duration=3.0, taps=[recorder.agent]
                )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return client


def test_a_conversation_runs_in_virtual_time_and_lines_up(tmp_path: Path) -> None:
    user_wav = tmp_path / "user.wav"
    _user_file(user_wav)
    started = time.perf_counter()
    client = _converse(user_wav, tmp_path)
    assert time.perf_counter() - started < 3.0  # faster than the 3 s it simulates

    call, rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
    speaker, _ = sf.read(str(tmp_path / "speaker.wav"), dtype="int16")
    assert rate == RATE
    assert call.shape == (3 * RATE, 2)
    assert np.array_equal(call[:, 1], speaker)  # the recording's right side is what played

    user, agent = call[:, 0], call[:, 1]
    assert abs(dominant_frequency(user[:RATE], RATE) - 440) < 0.05
    assert np.abs(user[RATE + 320 :]).max() <= 1  # silence after the speech (resampler edge)

    # The answer arrives at 1.3105 s; playback starts on the next block boundary, 1.32 s.
    start = 21_120
    assert not agent[:start].any()
    assert agent[start : start + len(AGENT_AUDIO) // 2].tobytes() == AGENT_AUDIO
    assert not agent[start + len(AGENT_AUDIO) // 2 :].any()

    events = client.events()
    assert ResponseText(text="Hello there.", is_final=True, payload={"is_final": True}) in events
    latency = next(e for e in events if isinstance(e, PlaybackLatency))
    assert round(latency.ms, 3) == 9.5  # 1.3105 s → 1.32 s


def test_a_conversation_is_byte_identical_every_run(tmp_path: Path) -> None:
    user_wav = tmp_path / "user.wav"
    _user_file(user_wav)
    digests = set()
    for run in range(3):
        out = tmp_path / str(run)
        out.mkdir()
        _converse(user_wav, out)
        digests.add(
            hashlib.sha256(
                (out / "call.wav").read_bytes() + (out / "speaker.wav").read_bytes()
            ).hexdigest()
        )
    assert len(digests) == 1
