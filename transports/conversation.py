"""One conversation, start to end: audio in, audio out, events, and when to stop.

:func:`run_conversation` is the loop both the CLI and the offline harness run on a client
session: the source is streamed at its pace (then silence, like a quiet microphone), the
sink pulls the playback buffer at its pace, every event goes to ``on_event``. It ends when
the server closes, when the input has finished and the agent has been idle for
``idle_timeout`` seconds (only once the session is ready: a server that never sends
``onready`` is not an idle agent, and the core's liveness check finds it), after
``max_duration`` seconds, or when ``stop`` is set (a signal); then the agent audio still
buffered (a goodbye) is played out, bounded by ``drain_timeout`` (not after ``stop``).

The session may be a :class:`~transports.reconnect.ReconnectingSession`: a reconnect is
then part of the conversation (between ``reconnecting`` and ``reconnected``), never
counted as idle. The input keeps streaming at its pace and the sink keeps pulling
(silence during the gap), so the outputs stay on the wall-clock timeline, and
``max_duration`` counts the whole call.

Two kinds of failure are kept apart. The session refusing a send means it is closing or
has ended: the input stops and the event stream says how it ended. A failure of our own
side — the source, the sink, a tap or ``on_event``/``on_level`` raising a
:class:`~millis_proto.MillisError` (an unreadable file, a full disk) — ends the
conversation: the session is closed with the close handshake and that error is raised.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from audio_backends.levels import AudioLevel
from audio_backends.pacing import play_to_sink, stream_source
from audio_backends.protocols import AudioSink, AudioSource, LiveAudioSource
from millis_proto import (
    SAMPLE_RATE,
    AgentState,
    AgentStateChanged,
    ConnectionClosed,
    Event,
    MillisError,
    PlaybackChunk,
    Ready,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
)

from ._client import ClientSession
from .reconnect import ReconnectingSession

__all__ = ["Outcome", "Silence", "run_conversation"]

#: Longest a single audio write may hold up the end of a conversation.
WRITE_SHIELD_SECONDS = 5.0


class _SendRefused(Exception):
    """The session refused user audio: it is closing or has ended (not our failure)."""


class Silence:
    """An endless source of zeros (a quiet microphone)."""

    def read(self, n_samples: int) -> bytes:
        return bytes(2 * n_samples)

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class Outcome:
    """How the conversation ended."""

    reason: str  # "server_closed" | "idle" | "max_duration" | "stopped"
    closed: ConnectionClosed | None
    sent_samples: int
    played_samples: int


async def run_conversation(
    session: ClientSession | ReconnectingSession,
    source: AudioSource | LiveAudioSource,
    sink: AudioSink,
    *,
    on_event: Callable[[float, Event], None] = lambda t, e: None,
    on_level: Callable[[AudioLevel], None] | None = None,
    chunk_ms: float = 20.0,
    idle_timeout: float = 3.0,
    max_duration: float | None = None,
    drain_timeout: float = 30.0,
    user_taps: Sequence[AudioSink] = (),
    agent_taps: Sequence[AudioSink] = (),
    stop: anyio.Event | None = None,
) -> Outcome:
    """Run the conversation; see the module docstring.

    Errors of the session propagate, and so does the first error of our own side (after
    the session was closed); the sink and taps are not closed here, their owner does it.
    """
    origin = anyio.current_time()
    sent = 0
    input_done = anyio.Event()
    input_done_at = math.inf
    state = AgentState.IDLE
    idle_since = origin
    reconnecting = False
    ready = False  # an onready was seen: only a ready session can be idle
    played = 0
    reason = "server_closed"
    failure: MillisError | None = None  # the first failure of our side

    async def send(pcm: bytes) -> None:
        # Stopping the conversation cancels this task; a write cut part-way would break
        # the session (half a frame on the wire), so each write finishes, bounded.
        try:
            with anyio.move_on_after(WRITE_SHIELD_SECONDS, shield=True):
                await session.send_audio(pcm)
        except MillisError as exc:
            raise _SendRefused from exc

    async def send_user(pcm: bytes) -> None:
        nonlocal sent  # counted as it goes: the task may be cancelled before the input ends
        await send(pcm)
        sent += len(pcm) // 2

    async def send_input() -> None:
        nonlocal input_done_at
        try:
            await stream_source(
                source,
                send_user,
                chunk_ms=chunk_ms,
                start=origin,
                taps=user_taps,
                on_level=on_level,
            )
            input_done_at = anyio.current_time()
            input_done.set()
            await stream_source(
                Silence(),
                send,
                chunk_ms=chunk_ms,
                start=origin + sent / SAMPLE_RATE,
                taps=user_taps,
            )
        except _SendRefused:
            # The session is closing or has ended (normally or not): stop sending. The
            # event stream ends with ConnectionClosed, and the check after the loop
            # raises the session's error if the end was abnormal. No more input will go
            # out, so the idle timeout may end a close the server never answers.
            input_done_at = min(input_done_at, anyio.current_time())
            input_done.set()

    def pull(n_samples: int) -> PlaybackChunk:
        # Counted here, not by a playback buffer: a reconnect brings a new buffer, and
        # ``play`` is cancelled, so its return value is lost.
        nonlocal played
        chunk = session.pull_playback(n_samples)
        played += chunk.real_samples
        return chunk

    async def play() -> None:
        await play_to_sink(
            pull,
            sink,
            block_ms=chunk_ms,
            start=origin,
            taps=agent_taps,
            on_level=on_level,
        )

    def fail(exc: MillisError) -> None:
        nonlocal failure
        if failure is None:
            failure = exc
        tg.cancel_scope.cancel()

    async def guarded(pump: Callable[[], Awaitable[None]]) -> None:
        try:
            await pump()
        except MillisError as exc:  # the source, the sink, a tap or a callback
            fail(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(guarded, send_input)
        tg.start_soon(guarded, play)
        events = session.events()
        deadline = math.inf if max_duration is None else origin + max_duration
        while True:
            now = anyio.current_time()
            if stop is not None and stop.is_set():
                reason = "stopped"
                break
            if now >= deadline:
                reason = "max_duration"
                break
            quiet = (
                ready
                and not reconnecting
                and state is AgentState.IDLE
                and input_done.is_set()
                and not session.client.playback.queued_samples
            )
            # Idle counts from the later of the input's end and the agent's last change.
            if quiet and now - max(idle_since, input_done_at) >= idle_timeout:
                reason = "idle"
                break
            event: Event | None = None
            with anyio.move_on_after(min(0.1, max(deadline - now, 0.0))):
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    break
            if event is None:
                continue
            try:
                on_event(anyio.current_time() - origin, event)
            except MillisError as exc:
                fail(exc)
                break
            if isinstance(event, Ready):
                ready = True
                idle_since = anyio.current_time()
            if isinstance(event, AgentStateChanged):
                state = event.state
                idle_since = anyio.current_time()
            elif isinstance(event, (Reconnecting, Reconnected, ReconnectFailed)):
                reconnecting = isinstance(event, Reconnecting)
                idle_since = anyio.current_time()
            if isinstance(event, ConnectionClosed):
                break
        tg.cancel_scope.cancel()
    if failure is not None:
        # Our side failed: say goodbye properly, then report it (nothing is drained into
        # a sink that may be the thing that failed).
        await session.aclose()
        with contextlib.suppress(MillisError):
            async for event in session.events():
                on_event(anyio.current_time() - origin, event)
        raise failure
    if reason == "server_closed":
        # None after a normal end; raises ConnectionLost / ConnectionClosedByServer /
        # RemoteProtocolError otherwise (outside the task group, so it is not wrapped in
        # an exception group; the buffered audio is not played out after such an end).
        await session.next_event()
    else:
        await session.aclose()
        async for event in session.events():  # what arrived during the close handshake
            on_event(anyio.current_time() - origin, event)
    # Play out what is still buffered (a goodbye before the server's close), bounded.
    end = anyio.current_time()
    with anyio.move_on_after(drain_timeout):
        while reason != "stopped" and session.client.playback.queued_samples:
            block = round(chunk_ms * SAMPLE_RATE / 1000)
            await play_to_sink(
                pull,
                sink,
                block_ms=chunk_ms,
                start=end,
                duration=block / SAMPLE_RATE,
                taps=agent_taps,
            )
            end += block / SAMPLE_RATE
    return Outcome(
        reason=reason,
        closed=session.closed,
        sent_samples=sent,
        played_samples=played,
    )
