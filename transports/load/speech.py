"""What a simulated caller says: the input audio, and where its speech ends.

Free of any event loop, so the trio load runner and the gevent Locust user share it.
"""

from __future__ import annotations

import os
import wave

from millis_proto import SAMPLE_RATE
from millis_proto.agent.vad import EnergyVad

__all__ = ["read_speech", "speech_end"]


def read_speech(path: str | os.PathLike[str]) -> bytes:
    """The s16le 16 kHz mono PCM of an audio file.

    A WAV already in that format is read with the standard library; anything else needs
    the ``audio`` extra (read and resampled by :class:`audio_backends.FileSource`, whose
    errors — a missing file, an unreadable format — propagate).
    """
    try:
        with wave.open(os.fspath(path), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2):
                return w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError):
        pass  # not a plain WAV (or not readable so): FileSource says why
    from audio_backends import FileSource

    chunks = []
    with FileSource(path) as source:
        while chunk := source.read(SAMPLE_RATE):
            chunks.append(chunk)
    return b"".join(chunks)


def speech_end(pcm: bytes) -> int:
    """Sample index just after the last voiced 20 ms frame of ``pcm`` (its end if none).

    The end of the caller's speech: turn latency counts from the moment it is sent.
    """
    voiced = [frame.end for frame in EnergyVad().push(pcm) if frame.voiced]
    return min(voiced[-1], len(pcm) // 2) if voiced else len(pcm) // 2
