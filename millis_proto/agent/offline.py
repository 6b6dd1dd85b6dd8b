"""A whole call with the local agent in virtual time, summarized as it goes.

Theory of operation
-------------------
:func:`offline_call` puts a client machine (:class:`~millis_proto.MessageClient`) and the
local agent (an :class:`~.session.AgentSession` on a :class:`~millis_proto.MessageServer`)
face to face and hands each one's messages to the other directly: no sockets, no event
loop, no clock. A virtual clock advances one frame of ``frame_ms`` per step; each step the
next frame of user audio is sent (silence once the input is over, like a quiet
microphone), the agent hears it and runs its timers, its messages reach the client, and
one frame of playback is pulled, as a speaker would.

The call ends when the agent ends the session (``"server_closed"``), when the input is
over and the agent has been idle, with nothing left to play, for ``idle_timeout`` seconds
(``"idle"``), or after ``max_duration`` seconds (``"max_duration"``).

What happened is counted in a :class:`CallSummary` while it happens: events per type,
audio each way, answered turns. Events and transcript lines are kept only when asked for
(the transcript bounded to its last lines), so with the defaults the memory a call needs
does not grow with its length — an hour of audio from a generator costs what a minute does.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..agent_state import AgentState
from ..client import MessageClient
from ..config import ClientConfig, StartRequest
from ..events import AgentStateChanged, Event, Ready, ResponseText, StartAnswering, Transcript
from ..machine import CloseRequest
from ..pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, Buffer, ms_to_samples
from ..server import MessageServer
from ._fields import check_number, field_error
from .local_agent import AgentSetup
from .session import AgentSession
from .store import TranscriptLine

__all__ = ["CallSummary", "EndReason", "offline_call"]

EndReason = Literal["server_closed", "idle", "max_duration"]

#: The request sent when the caller gives none (the local agent accepts any key).
OFFLINE_REQUEST = StartRequest(public_key="offline-key", agent_id="local-agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSummary:
    """What :func:`offline_call` measured.

    * ``end_reason``: ``"server_closed"`` (the agent ended the session), ``"idle"`` or
      ``"max_duration"``; ``duration_s``: virtual seconds from start to end.
    * ``session_id``: from ``onready`` (``None`` if it never came).
    * ``event_counts``: client events per class name (``{"Transcript": 3, ...}``).
    * ``turns``: answers to user turns the agent began (``start_answering``).
    * ``user_audio_s``: the input sent (the silence after it not counted);
      ``agent_audio_s``: agent audio received into the playback buffer;
      ``played_audio_s``: agent audio the speaker pulled (the rest was cleared or left).
    * ``transcript``: the last ``transcript_lines`` final lines, user and agent, in order.
    * ``events``: every client event in order with ``keep_events``, else ``None``.
    """

    end_reason: EndReason
    duration_s: float
    session_id: str | None
    event_counts: dict[str, int] = field(hash=False)
    turns: int
    user_audio_s: float
    agent_audio_s: float
    played_audio_s: float
    transcript: tuple[TranscriptLine, ...] = ()
    events: tuple[Event, ...] | None = field(default=None, hash=False, repr=False)


def offline_call(
    user_audio: Buffer | Iterable[Buffer],
    *,
    setup: AgentSetup | None = None,
    request: StartRequest = OFFLINE_REQUEST,
    config: ClientConfig | None = None,
    frame_ms: float = 20.0,
    idle_timeout: float = 2.0,
    max_duration: float | None = None,
    keep_events: bool = False,
    transcript_lines: int = 0,
) -> CallSummary:
    """Hold one call with the local agent in virtual time; see the module docstring.

    ``user_audio`` is 16 kHz mono s16le PCM: one buffer (sent ``frame_ms`` at a time) or an
    iterable of buffers (one per step, best ``frame_ms`` long; a generator keeps even a
    long input out of memory; an endless one needs ``max_duration``). ``setup`` is the
    agent's (default: the echo agent) and ``config`` the client's. Raises
    :class:`~millis_proto.ConfigError` naming the argument when one is out of range; what
    the agent's injected voice raises propagates.
    """
    check_number("frame_ms", frame_ms)
    frame_samples = ms_to_samples(frame_ms)
    if frame_samples < 1:
        raise field_error("frame_ms", "must be at least one sample (1/16 ms).")
    check_number("idle_timeout", idle_timeout, allow_equal=True)
    if max_duration is not None:
        check_number("max_duration", max_duration)
    if isinstance(transcript_lines, bool) or not isinstance(transcript_lines, int):
        raise field_error("transcript_lines", "must be a whole number.")
    if transcript_lines < 0:
        raise field_error("transcript_lines", "must not be negative.")

    step_s = frame_samples / SAMPLE_RATE
    silence = bytes(frame_samples * BYTES_PER_SAMPLE)
    frames = _frames(user_audio, len(silence))
    server = MessageServer()
    agent = AgentSession(setup, server=server)
    client = MessageClient(request, config)
    counts: Counter[str] = Counter()
    kept: list[Event] | None = [] if keep_events else None
    lines: deque[TranscriptLine] = deque(maxlen=transcript_lines)
    user_bytes = 0
    turns = 0
    input_done = False
    quiet_since = 0.0  # the later of the input's end and the agent's last change
    reason: EndReason | None = None
    step = 0
    now = 0.0
    client.start(now)
    while reason is None:
        now = step * step_s
        if max_duration is not None and now >= max_duration:
            reason = "max_duration"
            break
        frame = None if input_done else next(frames, None)
        if frame is None:
            if not input_done:
                input_done, quiet_since = True, max(quiet_since, now)
            frame = silence
        else:
            user_bytes += len(frame)
        client.send_audio(frame, now)
        for message in client.messages_to_send():
            if not isinstance(message, CloseRequest):
                server.receive_message(message, now)
        for event in server.events():
            agent.feed(event, now)
        deadline = agent.get_timer()
        if deadline is not None and deadline <= now:
            agent.on_tick(now)
        for message in server.messages_to_send():
            if isinstance(message, CloseRequest):
                reason = "server_closed"
                break
            client.receive_message(message, now)
        client.pull_playback(frame_samples, now)
        for event in client.events():
            name = type(event).__name__
            counts[name] += 1
            if kept is not None:
                kept.append(event)
            if isinstance(event, AgentStateChanged | Ready):
                quiet_since = now
            elif isinstance(event, StartAnswering):
                turns += 1
            elif isinstance(event, Transcript | ResponseText) and event.is_final and lines.maxlen:
                role: Literal["user", "agent"] = (
                    "user" if isinstance(event, Transcript) else "agent"
                )
                lines.append(TranscriptLine(role=role, text=event.text or ""))
        if reason is None and client.closing:
            reason = "server_closed"  # the client hung up on the agent's onsessionended
        elif (
            reason is None
            and input_done
            and now - quiet_since >= idle_timeout
            and client.agent_state is AgentState.IDLE
            and not client.playback.queued_samples
        ):
            reason = "idle"
        step += 1

    # Hang up (or acknowledge the agent's close): both ends see the connection go.
    server.connection_closed(now)
    agent.agent.on_closed(now)
    client.connection_closed(now)
    for event in client.events():
        counts[type(event).__name__] += 1
        if kept is not None:
            kept.append(event)
    playback = client.playback
    return CallSummary(
        end_reason=reason,
        duration_s=now,
        session_id=client.session_id,
        event_counts=dict(counts),
        turns=turns,
        user_audio_s=user_bytes / BYTES_PER_SAMPLE / SAMPLE_RATE,
        agent_audio_s=playback.received_samples / SAMPLE_RATE,
        played_audio_s=playback.played_samples / SAMPLE_RATE,
        transcript=tuple(lines),
        events=None if kept is None else tuple(kept),
    )


def _frames(user_audio: Buffer | Iterable[Buffer], frame_bytes: int) -> Iterator[Buffer]:
    if isinstance(user_audio, (bytes, bytearray, memoryview)):
        pcm = memoryview(user_audio).cast("B")
        return (pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes))
    return iter(user_audio)
