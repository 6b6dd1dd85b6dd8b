"""``load --suite``: every call runs one case of a voice-agent test suite.

The suite runner's own per-case function (:func:`transports.suite.run_case`) plays the
case — its scripted caller speaks the turns on the call's clock, barges in, waits for
answers — on a session this module opens over ``transports.asyncio.connect`` and meters:
connect time through ``onready``, our own send lateness, a Millis ping every
``ping_interval``, and the close code. The case's measured turn latencies feed
``turn_ms``; a case whose verdicts fail is a failed call, counted by the first failed
expectation (``Verdict:latency_ms``), or by the connection's error kind.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from millis_proto import (
    SAMPLE_RATE,
    AnswerLatency,
    ConfigError,
    Event,
    MillisError,
    PlaybackChunk,
    Pong,
    Ready,
    StartRequest,
)

from .._client import ClientSession
from ..asyncio import connect
from ..local_agent import espeak_voice
from ..suite import Case, case_audio, case_request, load_suite, run_case
from .caller import CallPlan, error_kind
from .stats import LoadStats

__all__ = ["SuiteCall", "place_suite_call", "prepare_suite"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteCall:
    """One case, ready to be played: its start request and each turn's audio."""

    case: Case
    request: StartRequest
    audio: tuple[bytes, ...]


def prepare_suite(path: str, base: StartRequest) -> tuple[tuple[SuiteCall, ...], Path | None]:
    """The suite's cases, rendered once, and the scenario the local agent should play.

    Raises :class:`ConfigError` for a bad suite, or one whose cases need different
    local-agent scenarios (one ``serve`` process plays one).
    """
    loaded = load_suite(path)
    calls = tuple(
        SuiteCall(
            case=case,
            request=case_request(case, base),
            audio=tuple(case_audio(case, loaded, espeak_voice(case.texts()))),
        )
        for case in loaded.suite.cases
    )
    if not calls:
        raise ConfigError(f"--suite {path}: the suite has no case.")
    scenarios = {case.scenario or loaded.suite.scenario for case in loaded.suite.cases}
    if len(scenarios) > 1:
        raise ConfigError(
            f"--suite {path}: its cases use different scenarios; the local agent under load "
            "plays one (give the suite one scenario, or load a real endpoint)."
        )
    scenario = scenarios.pop()
    return calls, None if scenario is None else loaded.resolve(scenario)


class _MeteredSession:
    """The session the case's caller drives, timing our sends and adding pings."""

    def __init__(self, session: ClientSession, plan: CallPlan, stats: LoadStats) -> None:
        self._session = session
        self._plan = plan
        self._stats = stats
        self._first_at: float | None = None
        self._sent = 0  # samples sent since the first chunk began
        self._next_ping = _now() + plan.ping_interval

    async def send_audio(self, pcm: bytes) -> None:
        now = _now()
        if self._first_at is None:
            self._first_at = now
        else:
            lateness = now - (self._first_at + self._sent / SAMPLE_RATE)
            self._stats.frames += 1
            if lateness > self._plan.late_after:
                self._stats.late_frames += 1
            self._stats.sample("send_lateness_ms", max(lateness, 0.0) * 1000)
        self._sent += len(pcm) // 2  # chunk k is due once the samples before it have played
        await self._session.send_audio(pcm)
        if now >= self._next_ping:
            self._next_ping = now + self._plan.ping_interval
            await self._session.send_ping()

    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        return self._session.pull_playback(n_samples)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._session.events()


_case_numbers = itertools.count()


def _now() -> float:
    return asyncio.get_running_loop().time()


def next_case(plan: CallPlan) -> SuiteCall:
    """The suite's cases in turn, across this process's callers."""
    return plan.suite[next(_case_numbers) % len(plan.suite)]


async def place_suite_call(plan: CallPlan, stats: LoadStats, *, hang_up_at: float) -> bool:
    """Play the next case of the suite as one call; True if it got ``onready``."""
    call = next_case(plan)
    stats.calls_started += 1
    start = _now()
    connected = False
    failure: str | None = None
    close_code: int | None = None

    @asynccontextmanager
    async def open_session(request: StartRequest) -> AsyncIterator[_MeteredSession]:
        nonlocal failure, close_code
        session: ClientSession | None = None
        try:
            async with connect(
                plan.url,
                request,
                config=plan.client_config(audio_events=False),
                connect_timeout=plan.connect_timeout,
                write_timeout=plan.write_timeout,
                cafile=plan.cafile,
                allow_insecure=plan.allow_insecure,
            ) as session:
                stats.active += 1
                try:
                    yield _MeteredSession(session, plan, stats)
                finally:
                    stats.active -= 1
        except MillisError as exc:
            failure = error_kind(exc)
            raise
        finally:
            if session is not None and session.closed is not None:
                close_code = session.closed.code

    def on_event(_t: float, event: Event) -> None:
        nonlocal connected
        if isinstance(event, Ready) and not connected:
            connected = True
            stats.calls_connected += 1
            stats.sample("connect_ms", (_now() - start) * 1000)
        elif isinstance(event, AnswerLatency):
            stats.sample("answer_ms", event.ms)
        elif isinstance(event, Pong) and event.rtt_ms is not None:
            stats.sample("ping_rtt_ms", event.rtt_ms)

    with anyio.CancelScope(deadline=hang_up_at) as deadline:
        result = await run_case(
            call.case, open_session, request=call.request, audio=call.audio, on_event=on_event
        )
    stats.sample("call_s", _now() - start)
    if close_code is not None:
        stats.closed(close_code)
    if deadline.cancelled_caught:
        stats.calls_ok += 1  # cut by the end of the run: nothing to judge
        return connected
    for turn in result.observation.turns:
        if turn.received_ms is not None:
            stats.sample("turn_ms", turn.received_ms)
    if result.passed and failure is None:
        stats.calls_ok += 1
    else:
        stats.calls_failed += 1
        failed = result.failures
        if failure is None:
            failure = f"Verdict:{failed[0].expectation}" if failed else "CaseError"
        stats.error(failure)
    return connected
