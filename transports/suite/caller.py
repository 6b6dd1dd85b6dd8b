"""The scripted caller: speaks turns on the session's clock, listens, waits, barges in.

Theory of operation
-------------------
A :class:`ScriptedCaller` holds one session through its public API only (``send_audio``,
``pull_playback``, ``async for event``) and runs three tasks while :meth:`running` is
open:

* the **mouth** sends a 20 ms chunk at the end of each block period on the call's
  timeline (``origin + k·20 ms``) — the next chunk of the utterance being spoken, or
  silence, like a quiet microphone. An utterance asked for at time *t* starts with the
  first chunk that begins at or after *t*;
* the **ear** pulls a block of agent audio every block period, offset by half a block,
  and notes whether it held audio (the call's "played" timeline);
* the **listener** reads every event and keeps the agent state.

The half-block offset is what makes virtual time deterministic: under trio's
``MockClock`` the user audio, the agent's answers and the client's reactions happen at
the block instants, the speaker's pulls strictly between them, so no pull ever races an
event that arrives at the same instant. The script (:func:`play_case`, or a test's own
code) waits on conditions — onready, an answer started, the answer played out — each
bounded by a deadline; everything seen goes into a :class:`~.measure.CallLog`.

Against the local agent over the in-memory transport under ``MockClock`` a call runs in
virtual time (milliseconds of real time, identical every run); against a real endpoint
the same code runs in real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio

from audio_backends.protocols import AudioSink
from millis_proto import (
    SAMPLE_RATE,
    AgentAudio,
    AgentState,
    AgentStateChanged,
    Event,
    MillisError,
    PlaybackChunk,
    Ready,
)
from millis_proto.pcm import ms_to_samples

from .format import Case
from .measure import CallLog, PlayedBlock, Utterance, measurement_events, observe_turn

__all__ = [
    "CallerSession",
    "ScriptedCaller",
    "play_case",
    "voiced_end",
]

#: A sample louder than this (about -54 dBFS) is speech for "end of the caller's speech".
VOICED_AMPLITUDE = 64
#: Longest one audio write may hold up the caller (a stalled peer), in seconds.
WRITE_BOUND_S = 5.0
_EPS = 1e-9


class CallerSession(Protocol):
    """The part of a client session the caller uses (any transport's session fits)."""

    async def send_audio(self, pcm: bytes) -> None: ...

    def pull_playback(self, n_samples: int) -> PlaybackChunk: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...


def voiced_end(pcm: bytes) -> int:
    """Samples up to and including the last one louder than :data:`VOICED_AMPLITUDE`
    (0 for silence): where speech ends, trailing silence aside."""
    samples = memoryview(pcm[: len(pcm) // 2 * 2]).cast("h")
    for i in range(len(samples) - 1, -1, -1):
        if abs(samples[i]) > VOICED_AMPLITUDE:
            return i + 1
    return 0


@dataclass
class _Speaking:
    pcm: bytes
    at: float
    turn: int
    text: str | None
    barge_in: bool
    start: float | None = None
    position: int = 0  # samples sent


class ScriptedCaller:
    """A caller on one session; see the module docstring.

    ``on_event(t, event)`` sees every session event and every measurement event (``t``
    in seconds of the call); ``user_tap`` / ``agent_tap`` get the audio as sent and as
    played (a :class:`~audio_backends.CallRecorder`'s channels), aligned sample for sample.
    """

    def __init__(
        self,
        session: CallerSession,
        *,
        block_ms: float = 20.0,
        on_event: Callable[[float, Event], None] | None = None,
        user_tap: AudioSink | None = None,
        agent_tap: AudioSink | None = None,
    ) -> None:
        self._session = session
        self._block = ms_to_samples(block_ms)
        if self._block < 2:
            raise ValueError("block_ms must be at least two samples.")
        self._on_event = on_event
        self._user_tap = user_tap
        self._agent_tap = agent_tap
        #: Everything seen so far.
        self.log = CallLog()
        self._origin = 0.0
        self._changed = anyio.Event()
        self._state = AgentState.IDLE
        self._ready_at: float | None = None
        self._ended_at: float | None = None  # the session's event stream ended
        self._drained = True  # the speaker's last block was not full of audio
        self._answer_starts: list[float] = []
        self._pending: _Speaking | None = None
        self._speaking: _Speaking | None = None
        self._turns = 0
        self._reported = 0  # turns whose measurements were emitted
        #: Turns that got no answer: turn number → why (set by the script).
        self.turn_errors: dict[int, str] = {}

    # --- state ---------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the call started, on the session's clock."""
        return anyio.current_time() - self._origin

    @property
    def agent_state(self) -> AgentState:
        """The agent state, from the session's ``agent_state`` events."""
        return self._state

    @property
    def ended(self) -> bool:
        """True once the session's event stream has ended."""
        return self._ended_at is not None

    @property
    def quiet(self) -> bool:
        """The agent is idle and its audio has played out."""
        return self._drained and (self._state is AgentState.IDLE or self.ended)

    # --- running -------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedCaller]:
        """Run the mouth, the ear and the listener around the body."""
        self._origin = anyio.current_time()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._mouth)
                tg.start_soon(self._ear)
                tg.start_soon(self._listen)
                try:
                    yield self
                finally:
                    self.log.ended_at = self.now()
                    tg.cancel_scope.cancel()
        finally:
            # With every task stopped, so these events come after all the session's.
            self.report_turns()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(self.now(), event)

    async def _mouth(self) -> None:
        n = self._block
        position = 0
        silence = bytes(2 * n)
        broken = False
        while True:
            await anyio.sleep_until(self._origin + (position + n) / SAMPLE_RATE)
            pcm = self._next_chunk(position / SAMPLE_RATE, n) or silence
            if self._user_tap is not None:
                self._user_tap.write(pcm, n)
            if not broken:
                try:
                    # A write cut part-way would break the session: finish it, bounded.
                    with anyio.move_on_after(WRITE_BOUND_S, shield=True):
                        await self._session.send_audio(pcm)
                except MillisError:
                    # The session has ended; the listener reports how. The timeline goes
                    # on (silence, or the rest of an utterance) so waits still resolve.
                    broken = True
            position += n

    def _next_chunk(self, t: float, n: int) -> bytes | None:
        speaking = self._speaking
        if speaking is None and self._pending is not None and self._pending.at <= t + _EPS:
            # The previous turn's window closes here: its measurements are final. Reported
            # from this task, at a block instant before any event this chunk causes, so
            # their place in the event stream is the same every (virtual) run.
            self.report_turns()
            speaking = self._speaking = self._pending
            self._pending = None
            speaking.start = t
            self._notify()
        if speaking is None:
            return None
        i = speaking.position
        pcm = speaking.pcm[2 * i : 2 * (i + n)]
        speaking.position += n
        if speaking.position * 2 >= len(speaking.pcm):
            self._finish(speaking)
        return pcm + bytes(2 * n - len(pcm))

    def _finish(self, speaking: _Speaking) -> None:
        assert speaking.start is not None
        samples = len(speaking.pcm) // 2
        self.log.utterances.append(
            Utterance(
                turn=speaking.turn,
                start=speaking.start,
                end=speaking.start + samples / SAMPLE_RATE,
                voiced_end=speaking.start + voiced_end(speaking.pcm) / SAMPLE_RATE,
                text=speaking.text,
                barge_in=speaking.barge_in,
            )
        )
        self._speaking = None
        self._notify()

    async def _ear(self) -> None:
        n = self._block
        half = n // 2
        if self._agent_tap is not None:
            self._agent_tap.write(bytes(2 * half), 0)  # aligns with the mouth's timeline
        position = half
        while True:
            await anyio.sleep_until(self._origin + position / SAMPLE_RATE)
            chunk = self._session.pull_playback(n)
            if self._agent_tap is not None:
                self._agent_tap.write(chunk.pcm, chunk.real_samples)
            self.log.played.append(PlayedBlock(position / SAMPLE_RATE, chunk.real_samples, n))
            drained = chunk.real_samples < n
            if drained != self._drained or chunk.real_samples:
                self._drained = drained
                self._notify()
            position += n

    async def _listen(self) -> None:
        try:
            async for event in self._session:
                t = self.now()
                if self._on_event is not None:
                    self._on_event(t, event)
                if isinstance(event, AgentAudio):
                    continue  # counted by the log writer; the state change marks arrival
                self.log.events.append((t, event))
                if isinstance(event, AgentStateChanged):
                    if event.state is AgentState.ANSWER and event.previous in (
                        AgentState.IDLE,
                        AgentState.PREPARE_ANSWER,
                    ):
                        self._answer_starts.append(t)
                    self._state = event.state
                elif isinstance(event, Ready) and self._ready_at is None:
                    self._ready_at = t
                self._notify()
        except MillisError as exc:
            # How an abnormal end shows (lost, closed with an error code, broken framing).
            self.log.errors.append(str(exc))
        finally:
            self._ended_at = self.now()
            self._notify()

    # --- script --------------------------------------------------------------------------

    async def _wait(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``condition()`` (re-checked on every change) or ``deadline`` (call
        seconds). Returns whether the condition holds."""
        while not condition():
            remaining = deadline - self.now()
            if remaining <= 0:
                return False
            with anyio.move_on_after(remaining):
                await self._changed.wait()
        return True

    async def sleep(self, seconds: float) -> None:
        """Let the call go on for ``seconds`` (the mouth sends silence)."""
        await anyio.sleep(max(seconds, 0.0))

    async def wait_ready(self, deadline: float) -> float | None:
        """When ``onready`` arrived (call seconds), waiting until ``deadline``; None if not."""
        await self._wait(lambda: self._ready_at is not None or self.ended, deadline)
        return self._ready_at

    async def wait_answer_start(self, after: float, deadline: float) -> float | None:
        """The first agent audio received at or after ``after``; None on timeout or end."""

        def started() -> float | None:
            return next((t for t in self._answer_starts if t >= after), None)

        await self._wait(lambda: started() is not None or self.ended, deadline)
        return started()

    async def wait_played(self, after: float, deadline: float) -> float | None:
        """When agent audio was first played at or after ``after``; None if not by then."""

        def played() -> float | None:
            first = None
            for block in reversed(self.log.played):  # newest first: stop at ``after``
                if block.t < after:
                    break
                if block.real:
                    first = block.t
            return first

        await self._wait(lambda: played() is not None or (self.ended and self._drained), deadline)
        return played()

    async def wait_quiet(self, deadline: float) -> bool:
        """Wait until the agent is idle and its audio has played out."""
        return await self._wait(lambda: self.quiet, deadline)

    async def wait_ended(self, deadline: float) -> bool:
        """Wait until the session has ended (the server closed it, say)."""
        return await self._wait(lambda: self.ended, deadline)

    async def speak(
        self,
        pcm: bytes,
        *,
        text: str | None = None,
        at: float | None = None,
        barge_in: bool = False,
    ) -> Utterance:
        """Say ``pcm`` (16 kHz s16le), starting with the first block at or after ``at``
        (default: now); returns once the last sample has been sent."""
        if self._pending is not None or self._speaking is not None:
            raise RuntimeError("the caller is already speaking")
        self._turns += 1
        turn = self._turns
        start = self.now() if at is None else at
        self._pending = _Speaking(pcm, start, turn, text, barge_in)
        block_s = self._block / SAMPLE_RATE
        deadline = max(start, self.now()) + len(pcm) / 2 / SAMPLE_RATE + 2 * block_s + 1.0
        if not await self._wait(lambda: len(self.log.utterances) >= turn, deadline):
            raise RuntimeError("the caller's audio stopped flowing")  # the mouth task died
        return self.log.utterances[turn - 1]

    def report_turns(self) -> None:
        """Emit the measurement events of every turn spoken to its end and not yet
        reported (called as the next turn starts, and when the call is over)."""
        while self._reported < len(self.log.utterances):
            index = self._reported
            observed = observe_turn(self.log, index, self.turn_errors.get(index + 1))
            for event in measurement_events(observed):
                self._emit(event)
            self._reported += 1


async def play_case(caller: ScriptedCaller, case: Case, audio: Sequence[bytes]) -> dict[int, str]:
    """Speak ``case``'s turns (``audio[i]`` for turn *i*) and wait as they say.

    Returns the turns that failed to get an answer, turn number → a sentence. The call
    stops at the first such turn. Never raises for what the agent does.
    """
    errors = caller.turn_errors
    log = caller.log
    first = case.turns[0]
    ready = await caller.wait_ready(first.timeout_ms / 1000)
    if ready is None:
        if not caller.ended:
            log.errors.append(f"no onready within {first.timeout_ms / 1000:g} s.")
        return errors
    # A greeting: agent audio soon after onready. Wait for it to play out, or barge in.
    anchor: float | None = None
    greeting = await caller.wait_answer_start(ready, ready + case.greeting_wait_ms / 1000)
    if greeting is not None:
        limit = caller.now() + first.timeout_ms / 1000
        if first.barge_in_after_ms is not None:
            anchor = await caller.wait_played(greeting, limit)
        elif await caller.wait_quiet(limit):
            await caller.sleep(first.pause_ms / 1000)
        else:
            log.errors.append(
                f"the greeting was still playing after {first.timeout_ms / 1000:g} s."
            )
            return errors
    for i, spec in enumerate(case.turns):
        number = i + 1
        at = None
        if spec.barge_in_after_ms is not None and anchor is not None:
            at = anchor + spec.barge_in_after_ms / 1000
        utterance = await caller.speak(
            audio[i], text=spec.say, at=at, barge_in=spec.barge_in_after_ms is not None
        )
        timeout = spec.timeout_ms / 1000
        deadline = utterance.voiced_end + timeout
        started = await caller.wait_answer_start(utterance.voiced_end, deadline)
        if started is None:
            errors[number] = (
                "the session ended before the agent answered."
                if caller.ended
                else f"no agent audio within {timeout:g} s of the end of the caller's speech."
            )
            break
        barge_next = i + 1 < len(case.turns) and case.turns[i + 1].barge_in_after_ms is not None
        if barge_next:
            anchor = await caller.wait_played(started, deadline)
            if anchor is None:
                errors[number] = "the agent's answer never played, so nothing to barge in on."
                break
        elif not await caller.wait_quiet(deadline):
            errors[number] = (
                f"the agent's answer was still playing {timeout:g} s after the end of the "
                "caller's speech."
            )
            break
        elif i + 1 < len(case.turns):
            await caller.sleep(spec.pause_ms / 1000)
    else:
        if case.expect.session_ended:
            await caller.wait_ended(caller.now() + case.turns[-1].timeout_ms / 1000)
    return errors
