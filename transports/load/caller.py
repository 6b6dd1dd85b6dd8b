"""One simulated caller: calls placed one after another, each a real paced duplex session.

Theory of operation
-------------------
A call is what a phone would do, over the public session API
(``transports.asyncio.connect``, the cheapest transport per frame):

* **Connect** — TCP, TLS, the WebSocket handshake and ``initiate``, then wait for
  ``onready``; ``connect_ms`` times all of it, bounded by ``connect_timeout``.
* **Paced by one timer.** Each ``chunk_ms`` frame of the input is sent when its last
  sample would have been captured (``origin + end/16000``, absolute deadlines, so errors
  never add up), then silence like a quiet microphone, and in the same step the same
  amount of playback is pulled like a sound card. The steps of *every* call of the process
  are run by one :class:`Pacer` — one timer, one task, woken once for all the frames that
  are due — rather than by a sleeping task per call: the native asyncio session sends
  without suspending, so a frame costs the transport's work and nothing for scheduling.
  How late each frame left is our own health: a saturated load generator shows up as
  late frames (``send_lateness_ms``), never as a slow agent.
* **One event task** per call reads the session's events: ``AnswerLatency``
  (start_answering -> first agent audio), ``Pong`` RTTs of the pings sent every
  ``ping_interval``, and the agent's state; the first switch to ``answer`` after the end of
  our speech (the last voiced 20 ms frame of the input, as it actually left) gives
  ``turn_ms``.
* **Hang up** once the agent has answered our speech, and since then has been idle for
  ``idle_timeout`` with nothing playing (no answer within ``answer_timeout`` of the end
  of our speech fails the call: ``NoAnswer``); or at the run's deadline; or after
  ``max_call_seconds``. The server may end the call first. Every failure is counted by
  kind, every close by its code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from ..asyncio import connect
from .stats import LoadStats

if TYPE_CHECKING:
    from .suite_calls import SuiteCall

__all__ = ["CallPlan", "Pacer", "error_kind", "place_call"]

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
    #: Plain ``ws://`` to a host that is not loopback is allowed (``--allow-insecure``).
    allow_insecure: bool = False
    #: Also time each agent audio frame against real time (``agent_lateness_ms``).
    agent_pacing: bool = False
    #: With ``--suite``: the cases, played in turn instead of ``audio``.
    suite: tuple[SuiteCall, ...] = ()
    #: The connection bounds (``ClientConfig`` and ``connect``'s): no byte from the server
    #: this long → a Millis ping (``None``: never); no answer to it this long → lost; a
    #: write making no progress this long → lost.
    liveness_timeout: float | None = 10.0
    pong_timeout: float = 5.0
    write_timeout: float = 10.0

    def client_config(self, *, audio_events: bool | None = None) -> ClientConfig:
        """The sessions' config: agent audio events only with ``agent_pacing`` (unless
        ``audio_events`` says), and this plan's liveness bounds."""
        pacing = self.agent_pacing if audio_events is None else audio_events
        return _client_config(pacing, self.liveness_timeout, self.pong_timeout)

    @property
    def late_after(self) -> float:
        """A frame leaving more than half a frame after its capture time is late (s)."""
        return self.chunk_ms / 2000


@functools.lru_cache(maxsize=16)
def _client_config(audio_events: bool, liveness: float | None, pong: float) -> ClientConfig:
    # One object for all the calls of a run: a call's config costs nothing to build.
    return dataclasses.replace(
        PACING_CONFIG if audio_events else CLIENT_CONFIG,
        liveness_timeout=liveness,
        pong_timeout=pong,
    )


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


class Pacer:
    """The frames of every call in this process, on one timer (see the module docstring).

    A heap of (due time, call); :meth:`run` — one task for the process — sleeps until the
    earliest is due, then runs every step that is due by then, each of which names the
    time of its call's next step. Lateness is read from the clock per frame, as it leaves.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()  # ties of equal due times: first come, first sent
        self._wakeup: asyncio.Future[None] | None = None
        self._waiting_until = math.inf

    def add(self, call: _Call, due: float) -> None:
        """Run ``call``'s first step at ``due`` (loop time)."""
        heapq.heappush(self._heap, (due, next(self._order), call))
        wakeup = self._wakeup
        if due < self._waiting_until and wakeup is not None and not wakeup.done():
            wakeup.set_result(None)  # earlier than the timer: look again now

    async def run(self) -> None:
        """Step the calls as they fall due, until cancelled."""
        loop = asyncio.get_running_loop()
        heap = self._heap
        order = self._order
        while True:
            now = loop.time()
            while heap and heap[0][0] <= now:
                due, _, call = heapq.heappop(heap)
                following = await call.step(due)
                if following is not None:
                    heapq.heappush(heap, (following, next(order), call))
                now = loop.time()
            self._waiting_until = heap[0][0] if heap else math.inf
            self._wakeup = wakeup = loop.create_future()
            timer = loop.call_at(self._waiting_until, _wake, wakeup) if heap else None
            try:
                await wakeup
            finally:
                self._wakeup = None
                if timer is not None:
                    timer.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Call:
    """The state of one call while it runs (see the module docstring)."""

    def __init__(self, plan: CallPlan, stats: LoadStats) -> None:
        self.plan = plan
        self.stats = stats
        self._clock = asyncio.get_running_loop().time
        self.state = AgentState.IDLE
        self.idle_since = -math.inf
        self.speech_end_at = math.inf  # set when the last voiced frame is sent
        self.turn_pending = plan.speech_end_samples > 0
        self.ended = False  # the session ended (the event task saw its end)
        self.failure: MillisError | None = None
        self.last_audio_at = -math.inf
        self.answer_start = 0.0
        self.answer_samples = 0
        # Pacing (see step): set by start().
        self._session: ClientSession | None = None
        self._origin = 0.0
        self._stop_at = 0.0
        self._position = 0
        self._next_ping = 0.0
        self._input_sent_at = math.inf  # when the last input frame actually went out
        self._n = ms_to_samples(plan.chunk_ms)
        self._silence = bytes(2 * self._n)
        self._late_after = plan.late_after
        self._input_samples = len(plan.audio) // 2
        self._lateness = stats.sketches["send_lateness_ms"]
        #: Set when the pacing is over (the call hangs up), or to the pacer's exception.
        self.paced: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait_ready(self, session: ClientSession) -> None:
        while True:
            event = await session.next_event()
            if event is None:
                raise NoReady("the session ended before onready")
            if isinstance(event, Ready):
                return

    async def read_events(self, session: ClientSession) -> None:
        try:
            while (event := await session.next_event()) is not None:
                self.on_event(event)
        except MillisError as exc:
            self.failure = exc
        self.ended = True

    def on_event(self, event: object) -> None:
        now = self._clock()
        if isinstance(event, AgentAudio):
            self.time_agent_audio(now, len(event.data) // 2)
        elif isinstance(event, AgentStateChanged):
            self.state = event.state
            self.idle_since = now
            if event.state is AgentState.ANSWER and self.turn_pending and now >= self.speech_end_at:
                self.turn_pending = False
                self.stats.sample("turn_ms", (now - self.speech_end_at) * 1000)
        elif isinstance(event, AnswerLatency):
            self.stats.sample("answer_ms", event.ms)
        elif isinstance(event, Pong) and event.rtt_ms is not None:
            self.stats.sample("ping_rtt_ms", event.rtt_ms)

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

    def start(self, session: ClientSession, origin: float, hang_up_at: float) -> float:
        """Begin pacing at ``origin``; returns when the first frame is due."""
        self._session = session
        self._origin = origin
        self._stop_at = min(hang_up_at, origin + self.plan.max_call_seconds)
        self._next_ping = origin + self.plan.ping_interval
        return origin + self._n / SAMPLE_RATE

    def stop(self) -> None:
        """End the pacing now (the call is over, or being cancelled)."""
        self._session = None
        if not self.paced.done():
            self.paced.set_result(None)

    async def step(self, due: float) -> float | None:
        """Send the frame due at ``due``, pull as much playback; when the next one is due.

        ``None`` when the pacing is over (hang-up); never raises (an unexpected error ends
        the pacing and is raised by the call).
        """
        try:
            following = await self._step(due)
        except Exception as exc:
            if not self.paced.done():
                self.paced.set_exception(exc)
            return None
        if following is None:
            self.stop()
        return following

    async def _step(self, due: float) -> float | None:
        session = self._session
        if session is None or self.ended:
            return None
        now = self._clock()
        stop_at = self._stop_at
        # Checked against the clock as well: a saturated sender may be far behind.
        if due > stop_at or now >= stop_at:
            return None
        plan, stats, n = self.plan, self.stats, self._n
        lateness = now - due
        stats.frames += 1
        if lateness > self._late_after:
            stats.late_frames += 1
        self._lateness.add(lateness * 1000 if lateness > 0 else 0.0)
        position = self._position
        if position < self._input_samples:
            chunk = plan.audio[2 * position : 2 * (position + n)].ljust(2 * n, b"\0")
        else:
            chunk = self._silence
        try:
            await session.send_audio(chunk)
            if now >= self._next_ping:
                self._next_ping = now + plan.ping_interval
                await session.send_ping()
        except MillisError:
            return None  # the session is ending: the event task reports how
        played = session.pull_playback(n)
        position += n
        self._position = position
        if position >= plan.speech_end_samples and self.speech_end_at == math.inf:
            # Our speech ended when its last frame actually left (late or not).
            self.speech_end_at = now
        if position >= self._input_samples and self._input_sent_at == math.inf:
            self._input_sent_at = now
        if (
            self.state is AgentState.IDLE
            and not played.real_samples
            and now - max(self.idle_since, self._input_sent_at) >= plan.idle_timeout
        ):
            if not self.turn_pending:
                return None  # answered, and quiet since: the call is done
            if now - self.speech_end_at >= plan.answer_timeout:
                self.failure = NoAnswer(
                    f"no answer within {plan.answer_timeout:g} s of the end of our speech"
                )
                return None
        return self._origin + (position + n) / SAMPLE_RATE


async def place_call(plan: CallPlan, stats: LoadStats, pacer: Pacer, *, hang_up_at: float) -> bool:
    """Place one call (see the module docstring); True if it got ``onready``.

    Never raises a :class:`MillisError`: failures are counted in ``stats`` by kind.
    """
    clock = asyncio.get_running_loop().time
    stats.calls_started += 1
    start = clock()
    call = _Call(plan, stats)
    connected = False
    session: ClientSession | None = None
    try:
        async with connect(
            plan.url,
            plan.request,
            config=plan.client_config(),
            connect_timeout=plan.connect_timeout,
            write_timeout=plan.write_timeout,
            cafile=plan.cafile,
            allow_insecure=plan.allow_insecure,
        ) as session:
            stats.active += 1
            try:
                left = start + plan.connect_timeout - clock()
                try:
                    await asyncio.wait_for(call.wait_ready(session), max(left, 0.0))
                except asyncio.TimeoutError:
                    raise NoReady(f"no onready within {plan.connect_timeout:g} s") from None
                stats.sample("connect_ms", (clock() - start) * 1000)
                stats.calls_connected += 1
                connected = True
                await _converse(call, session, pacer, hang_up_at)
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
        stats.sample("call_s", clock() - start)
        if session is not None and session.closed is not None:
            stats.closed(session.closed.code)
    return connected


async def _converse(call: _Call, session: ClientSession, pacer: Pacer, hang_up_at: float) -> None:
    """The call between ``onready`` and hang-up: the pacer's steps and the event task."""
    reader = asyncio.ensure_future(call.read_events(session))
    try:
        pacer.add(call, call.start(session, asyncio.get_running_loop().time(), hang_up_at))
        await call.paced
        if session.closed is not None:
            # The session is ending on its own: let the event task see how, bounded like a
            # close handshake.
            await asyncio.wait({reader}, timeout=call.plan.connect_timeout)
    finally:
        call.stop()
        reader.cancel()
        await asyncio.wait({reader})
    if not reader.cancelled() and (error := reader.exception()) is not None:
        raise error  # a bug, not a failure of the call
