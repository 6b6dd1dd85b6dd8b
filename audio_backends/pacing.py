"""The pumps: user audio from a source to the session, agent audio from the session to a sink.

Theory of operation
-------------------
Both pumps keep a *timeline*: sample ``i`` of a stream belongs to time ``start + i/16000``
on the event loop's clock. They never sleep "for 20 ms"; they sleep until the absolute
deadline of the next block (``anyio.sleep_until``), computed by multiplication from
``start``, so errors never accumulate. A pump that falls behind (a stalled loop) catches up
by handling the overdue blocks at once, which keeps the timeline intact.

* :func:`play_to_sink` pulls block ``k`` at ``start + k·block`` — the moment it starts to
  play, like a sound card asking for its next buffer — and writes it to the sink, silence
  included. A sink that stores what it gets therefore has sample ``i`` = what was played
  at ``i/16000`` s.
* :func:`stream_source` sends a chunk when its *last* sample would have been captured,
  ``start + (end index)/16000``, like a microphone: audio is never sent before it exists.
  A :class:`~.protocols.LiveAudioSource` paces itself, so its chunks go out as they come.

The clock is the event loop's (``anyio.current_time()``). Under trio with
``trio.testing.MockClock(autojump_threshold=0)`` the same code runs in virtual time:
faster than real time and byte-identical every run. Works on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from millis_proto import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE,
    ClientConnection,
    MessageClient,
    PlaybackChunk,
)
from millis_proto.pcm import ms_to_samples

from ._base import check_pcm
from .duplex import HalfDuplexGate
from .levels import AudioLevel, level_event
from .protocols import AudioSink, AudioSource, LiveAudioSource, PullPlayback, SendAudio

__all__ = ["playback_of", "play_to_sink", "stream_source"]

LevelCallback = Callable[[AudioLevel], None]


def _block_samples(ms: float, what: str) -> int:
    samples = ms_to_samples(ms)
    if samples <= 0:
        raise ValueError(f"{what} must be at least one sample (1/16 ms).")
    return samples


def playback_of(client: ClientConnection | MessageClient) -> PullPlayback:
    """The pull callable for :func:`play_to_sink` from a client connection (or a
    message-level client), timed by the loop's clock.

    Must be called from inside the event loop (it reads ``anyio.current_time()``).
    """

    def pull(n_samples: int) -> PlaybackChunk:
        return client.pull_playback(n_samples, anyio.current_time())

    return pull


async def play_to_sink(
    pull: PullPlayback,
    sink: AudioSink,
    *,
    block_ms: float = 20.0,
    start: float | None = None,
    duration: float | None = None,
    taps: Sequence[AudioSink] = (),
    on_level: LevelCallback | None = None,
) -> int:
    """Pull ``block_ms`` of agent audio per block period and write it to ``sink``.

    ``start`` is the timeline's origin on the loop clock (default: now); give the source
    pump the same one to align user and agent audio. ``taps`` get the same writes (a call
    recorder's agent channel, a :class:`~.duplex.HalfDuplexGate`). ``on_level`` gets an
    agent :class:`~.levels.AudioLevel` per block.

    Runs until cancelled, or for ``duration`` seconds of timeline (returning when the last
    block has played). Returns the real samples played. The sink is not closed: its owner
    does that (``with sink:``), which is what finalizes a file on every way out. Raises
    ValueError if ``pull`` returns a block of the wrong size; whatever the sink raises
    propagates.
    """
    block = _block_samples(block_ms, "block_ms")
    origin = anyio.current_time() if start is None else start
    limit = None if duration is None else round(duration * SAMPLE_RATE)
    position = 0  # samples written = index of the next sample on the timeline
    played = 0
    while limit is None or position < limit:
        n = block if limit is None else min(block, limit - position)
        await anyio.sleep_until(origin + position / SAMPLE_RATE)
        # No await between the pull and the writes: a cancellation cannot separate them,
        # so every pulled sample reaches the sink.
        chunk = pull(n)
        if len(chunk.pcm) != n * BYTES_PER_SAMPLE:
            raise ValueError(f"pull({n}) returned {len(chunk.pcm)} bytes, not {2 * n}.")
        sink.write(chunk.pcm, chunk.real_samples)
        for tap in taps:
            tap.write(chunk.pcm, chunk.real_samples)
        if on_level is not None:
            on_level(level_event("agent", chunk.pcm, position))
        position += n
        played += chunk.real_samples
    await anyio.sleep_until(origin + position / SAMPLE_RATE)
    return played


async def stream_source(
    source: AudioSource | LiveAudioSource,
    send: SendAudio,
    *,
    chunk_ms: float = 20.0,
    start: float | None = None,
    gate: HalfDuplexGate | None = None,
    taps: Sequence[AudioSink] = (),
    on_level: LevelCallback | None = None,
) -> int:
    """Read ``chunk_ms`` chunks from ``source`` and ``send`` each at wall-clock pace.

    An :class:`~.protocols.AudioSource` is paced against ``start`` (default: now); a
    :class:`~.protocols.LiveAudioSource` paces itself. ``gate`` mutes chunks while the
    agent plays; ``taps`` get every chunk as sent (a call recorder's user channel);
    ``on_level`` gets a user :class:`~.levels.AudioLevel` per chunk.

    Returns the number of samples sent when the source ends. The source is not closed.
    Raises ValueError if the source returns a split sample; whatever ``send`` raises
    propagates.
    """
    n = _block_samples(chunk_ms, "chunk_ms")
    origin = anyio.current_time() if start is None else start
    read = source.aread if isinstance(source, LiveAudioSource) else _paced(source, origin)
    position = 0  # samples sent = index of the next sample on the timeline
    while True:
        pcm = await read(n)
        count = check_pcm(pcm, "source audio")
        if not count:
            return position
        if gate is not None:
            pcm = gate.filter(pcm)
        for tap in taps:
            tap.write(pcm, count)
        if on_level is not None:
            on_level(level_event("user", pcm, position))
        await send(pcm)
        position += count


def _paced(source: AudioSource, origin: float) -> Callable[[int], Awaitable[bytes]]:
    """Reads from ``source`` and waits until the chunk's last sample would exist."""
    position = 0

    async def read(n_samples: int) -> bytes:
        nonlocal position
        pcm = source.read(n_samples)
        position += len(pcm) // BYTES_PER_SAMPLE
        await anyio.sleep_until(origin + position / SAMPLE_RATE)
        return pcm

    return read
