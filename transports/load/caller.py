"""One simulated caller: calls placed one after another, each a real paced duplex session.

Theory of operation
-------------------
A call is what a phone would do, over the public session API (``transports.trio.connect``):

* **Connect** — TCP, TLS, the WebSocket handshake and ``initiate``, then wait for
  ``onready``; ``connect_ms`` times all of it, bounded by ``connect_timeout``.
* **One pacing loop** sends each ``chunk_ms`` frame of the input when its last sample
  would have been captured (``origin + end/16000``, absolute deadlines, so errors never
  add up), then silence like a quiet microphone, and in the same tick pulls the same
  amount of playback like a sound card. How late each frame left is our own health: a
  saturated load generator shows up as late frames (``send_lateness_ms``), never as a
  slow agent.
* **One event task** reads the session's events: ``AnswerLatency`` (start_answering ->
  first agent audio), ``Pong`` RTTs of the pings the loop sends every ``ping_interval``,
  and the agent's state; the first switch to ``answer`` after the end of our speech (the
  last voiced 20 ms frame of the input, as it actually left) gives ``turn_ms``.
* **Hang up** once the agent has answered our speech, and since then has been idle for
  ``idle_timeout`` with nothing playing (no answer within ``answer_timeout`` of the end
  of our speech fails the call: ``NoAnswer``); or at the run's deadline; or after
  ``max_call_seconds``. The server
  may end the call first. Every failure is counted by kind, every close by its code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from millis_proto import (
    SAMPLE_RATE,
    AgentAudio,
    AgentState,
    AgentStateChanged,
    AnswerLatency,
    ClientConfig,
    ConnectionClosedByServer,
    ConnectionFailed,
    MillisError,
    Pong,
    Ready,
    StartRequest,
)
from millis_proto.pcm import ms_to_samples

from .._client import ClientSession
from ..trio import connect
from .stats import LoadStats

if TYPE_CHECKING:
    from .suite_calls import SuiteCall

__all__ = ["CallPlan", "error_kind", "place_call"]

#: Our sessions need no per-frame audio events: playback is pulled from the buffer.
CLIENT_CONFIG = ClientConfig(emit_audio_events=False)
#: With ``agent_pacing`` every agent frame is an event, timed against real time.
PACING_CONFIG = ClientConfig(emit_audio_events=True)
#: A pause in the agent's audio longer than this starts a new answer's timeline (s).
ANSWER_GAP = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPlan:
    """What every call of a run does."""

    url: str
    request: StartRequest
    #: The caller's speech: s16le 16 kHz mono, streamed at its real-time pace.
    audio: bytes
    #: End of the last voiced frame of ``audio``, in samples (``speech.speech_end``).
    speech_end_samples: int
    chunk_ms: float = 20.0
    idle_timeout: float = 1.0
    #: A call whose speech got no agent audio this long after it ended has failed.
    answer_timeout: float = 10.0
    max_call_seconds: float = 60.0
    connect_timeout: float = 10.0
    ping_interval: float = 1.0
    cafile: str | None = None
    #: Also time each agent audio frame against real time (``agent_lateness_ms``).
    agent_pacing: bool = False
    #: With ``--suite``: the cases, played in turn instead of ``audio``.
    suite: tuple[SuiteCall, ...] = ()

    @property
    def late_after(self) -> float:
        """A frame leaving more than half a frame after its capture time is late (s)."""
        return self.chunk_ms / 2000


def error_kind(exc: BaseException) -> str:
    """A short, stable name for a failure: the error class, plus why or which code."""
    if isinstance(exc, ConnectionFailed):
        return f"ConnectionFailed:{exc.kind.name}"
    if isinstance(exc, ConnectionClosedByServer):
        return f"ConnectionClosedByServer:{exc.code}"
    return type(exc).__name__


class NoReady(MillisError):
    """The session opened but ``onready`` did not come (in time, or at all)."""


class NoAnswer(MillisError):
    """The agent did not answer our speech within ``answer_timeout``."""


class _Call:
    """The state of one call while it runs (see the module docstring)."""

    def __init__(self, plan: CallPlan, stats: LoadStats) -> None:
        self.plan = plan
        self.stats = stats
        self.state = AgentState.IDLE
        self.idle_since = -math.inf
        self.speech_end_at = math.inf  # set when the last voiced frame is sent
        self.turn_pending = plan.speech_end_samples > 0
        self.ended = trio.Event()  # the session ended (the event task saw its end)
        self.failure: MillisError | None = None
        self.last_audio_at = -math.inf
        self.answer_start = 0.0
        self.answer_samples = 0

    async def wait_ready(self, session: ClientSession, deadline: float) -> None:
        with trio.move_on_at(deadline):
            while True:
                event = await session.next_event()
                if event is None:
                    raise NoReady("the session ended before onready")
                if isinstance(event, Ready):
                    return
        raise NoReady(f"no onready within {self.plan.connect_timeout:g} s")

    async def read_events(self, session: ClientSession) -> None:
        try:
            while (event := await session.next_event()) is not None:
                self.on_event(event)
        except MillisError as exc:
            self.failure = exc
        self.ended.set()

    def on_event(self, event: object) -> None:
        now = trio.current_time()
        if isinstance(event, AgentStateChanged):
            self.state = event.state
            self.idle_since = now
            if event.state is AgentState.ANSWER and self.turn_pending and now >= self.speech_end_at:
                self.turn_pending = False
                self.stats.sample("turn_ms", (now - self.speech_end_at) * 1000)
        elif isinstance(event, AnswerLatency):
            self.stats.sample("answer_ms", event.ms)
        elif isinstance(event, Pong) and event.rtt_ms is not None:
            self.stats.sample("ping_rtt_ms", event.rtt_ms)
        elif isinstance(event, AgentAudio):
            self.time_agent_audio(now, len(event.data) // 2)

    def time_agent_audio(self, now: float, samples: int) -> None:
        """How far the agent's audio runs behind real time (the server's own pacing).

        An answer's timeline starts at its first frame; sample ``k`` is due by
        ``start + k/16000``. A server streaming ahead of playback is never late; one that
        falls behind by more than its lead is, by the amount measured here.
        """
        if now - self.last_audio_at > ANSWER_GAP:
            self.answer_start, self.answer_samples = now, 0
        else:
            due = self.answer_start + self.answer_samples / SAMPLE_RATE
            self.stats.sample("agent_lateness_ms", max(now - due, 0.0) * 1000)
        self.answer_samples += samples
        self.last_audio_at = now

    async def pace(self, session: ClientSession, origin: float, hang_up_at: float) -> None:
        """Send audio and pull playback on the input's real-time pace until hang-up."""
        plan, stats = self.plan, self.stats
        n = ms_to_samples(plan.chunk_ms)
        silence = bytes(2 * n)
        audio = plan.audio
        input_samples = len(audio) // 2
        input_sent_at = math.inf  # when the last input frame actually went out
        stop_at = min(hang_up_at, origin + plan.max_call_seconds)
        next_ping = origin + plan.ping_interval
        position = 0
        while not self.ended.is_set():
            due = origin + (position + n) / SAMPLE_RATE
            # Checked against the clock as well: a saturated sender may be far behind.
            if due > stop_at or trio.current_time() >= stop_at:
                return
            await trio.sleep_until(due)
            now = trio.current_time()
            lateness = now - due
            stats.frames += 1
            if lateness > plan.late_after:
                stats.late_frames += 1
            stats.sample("send_lateness_ms", lateness * 1000)
            chunk = audio[2 * position : 2 * (position + n)] if position < input_samples else b""
            try:
                await session.send_audio(chunk.ljust(2 * n, b"\0") if chunk else silence)
                if now >= next_ping:
                    next_ping = now + plan.ping_interval
                    await session.send_ping()
            except MillisError:
                return  # the session is ending: the event task reports how
            played = session.pull_playback(n)
            position += n
            if position >= plan.speech_end_samples and self.speech_end_at == math.inf:
                # Our speech ended when its last frame actually left (late or not).
                self.speech_end_at = now
            if position >= input_samples and input_sent_at == math.inf:
                input_sent_at = now
            quiet = self.state is AgentState.IDLE and not played.real_samples
            if quiet and now - max(self.idle_since, input_sent_at) >= plan.idle_timeout:
                if not self.turn_pending:
                    return  # answered, and quiet since: the call is done
                if now - self.speech_end_at >= plan.answer_timeout:
                    self.failure = NoAnswer(
                        f"no answer within {plan.answer_timeout:g} s of the end of our speech"
                    )
                    return


async def place_call(plan: CallPlan, stats: LoadStats, *, hang_up_at: float) -> bool:
    """Place one call (see the module docstring); True if it got ``onready``.

    Never raises a :class:`MillisError`: failures are counted in ``stats`` by kind.
    """
    stats.calls_started += 1
    start = trio.current_time()
    call = _Call(plan, stats)
    connected = False
    session: ClientSession | None = None
    try:
        async with connect(
            plan.url,
            plan.request,
            config=PACING_CONFIG if plan.agent_pacing else CLIENT_CONFIG,
            connect_timeout=plan.connect_timeout,
            cafile=plan.cafile,
        ) as session:
            stats.active += 1
            try:
                await call.wait_ready(session, start + plan.connect_timeout)
                stats.sample("connect_ms", (trio.current_time() - start) * 1000)
                stats.calls_connected += 1
                connected = True
                origin = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(call.read_events, session)
                    await call.pace(session, origin, hang_up_at)
                    if session.closed is not None:
                        # The session is ending on its own: let the event task see how,
                        # bounded like a close handshake.
                        with trio.move_on_after(plan.connect_timeout):
                            await call.ended.wait()
                    nursery.cancel_scope.cancel()
            finally:
                stats.active -= 1
        if call.failure is not None:
            raise call.failure
    except MillisError as exc:
        stats.calls_failed += 1
        stats.error(error_kind(exc))
    else:
        stats.calls_ok += 1
    finally:
        stats.sample("call_s", trio.current_time() - start)
        if session is not None and session.closed is not None:
            stats.closed(session.closed.code)
    return connected
