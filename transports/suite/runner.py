"""Running suites: one case on any session factory, or a whole suite offline or live.

* :func:`run_case` runs one case on a session opened by ``open_session(request)`` — the
  local agent in memory, a real endpoint, or whatever the caller passes (the load tool
  reuses it) — and returns its :class:`CaseResult`: verdicts, measurements, timeline.
* :func:`run_suite` runs every case ``repeat`` times, ``concurrency`` at a time: against
  the local agent in virtual time (trio's ``MockClock``: fast, identical every run), or
  against ``endpoint`` in real time over the trio transport.

Per case, when given a directory: ``recording.wav`` (stereo: caller left, agent right, as
played), ``events.jsonl`` (every event and measurement) and ``verdicts.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from audio_backends import CallRecorder
from millis_proto import ConfigError, Event, MillisError, StartRequest
from millis_proto.agent import AgentSetup, SessionIdCounter, SessionStore, Voice

from .._client import ConnectOptions
from ..cli.eventlog import EventLog
from ..local_agent import LOCAL_REQUEST, agent_handler, espeak_voice, load_setup
from .caller import CallerSession, ScriptedCaller, play_case
from .format import Case, Suite, parse_suite
from .measure import TIMELINE_MARKS, CallLog, CallObservation, observe_call, played_spans
from .verdicts import Verdict, evaluate

__all__ = [
    "CaseResult",
    "LoadedSuite",
    "OpenSession",
    "SuiteResult",
    "SuiteRunner",
    "Timeline",
    "case_audio",
    "case_request",
    "load_suite",
    "local_opener",
    "run_case",
    "run_suite",
]

#: Opens a session for a start request: ``async with open_session(request) as session``.
OpenSession = Callable[[StartRequest], AbstractAsyncContextManager[CallerSession]]

#: Slack added to a case's own timeouts for the whole case's bound, in seconds.
CASE_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class LoadedSuite:
    """A suite and the directory its relative paths are resolved against."""

    suite: Suite
    base_dir: Path
    path: Path | None = None

    def resolve(self, relative: str) -> Path:
        """``relative`` as written in the suite file, resolved next to it."""
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and parse a suite file (``.toml``, else JSON). :class:`ConfigError` starting
    with the file's name for any problem, including a missing ``audio`` or scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the suite ({exc.strerror}).") from None
    fmt: Literal["json", "toml"] = "toml" if path.suffix.lower() == ".toml" else "json"
    try:
        suite = parse_suite(text, fmt)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    loaded = LoadedSuite(suite, path.parent, path)
    for ci, case in enumerate(suite.cases):
        for ti, turn in enumerate(case.turns):
            if turn.audio is not None and not loaded.resolve(turn.audio).is_file():
                raise ConfigError(
                    f"{path}: case[{ci}].turn[{ti}].audio: no such file {turn.audio!r}."
                )
        scenario = case.scenario or suite.scenario
        if scenario is not None and not loaded.resolve(scenario).is_file():
            where = f"case[{ci}].scenario" if case.scenario else "suite.scenario"
            raise ConfigError(f"{path}: {where}: no such file {scenario!r}.")
    return loaded


def case_request(case: Case, base: StartRequest) -> StartRequest:
    """``base`` with the case's agent overrides; :class:`ConfigError` if that is invalid."""
    changes: dict[str, Any] = {}
    if case.agent_id is not None:
        changes["agent_id"] = case.agent_id
    if case.agent_config is not None:
        changes["agent_config"] = case.agent_config
    if case.metadata is not None:
        changes["metadata"] = case.metadata
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as exc:
        raise ConfigError(f"case {case.name!r}: {exc}") from None


def case_audio(case: Case, loaded: LoadedSuite, voice: Voice) -> list[bytes]:
    """The PCM the caller speaks for each turn of ``case``: ``say`` through ``voice``
    (:func:`~transports.local_agent.espeak_voice` renders with espeak-ng, or tones when it
    is missing — enough for the local agent, which only hears energy), ``audio`` read from
    the file."""
    from ..local_agent import _read_all

    out = []
    for turn in case.turns:
        if turn.say is not None:
            out.append(voice(turn.say))
        else:
            assert turn.audio is not None
            from audio_backends.files import FileSource

            with FileSource(loaded.resolve(turn.audio)) as source:
                out.append(_read_all(source))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """What the report draws: speech spans and marked events, in call seconds."""

    caller: tuple[tuple[float, float, int], ...]  # (start, end, turn)
    agent: tuple[tuple[float, float], ...]
    marks: tuple[tuple[float, str, str], ...]  # (t, kind, detail)
    duration: float

    @classmethod
    def of(cls, log: CallLog) -> Timeline:
        """The timeline of a finished call."""
        marks = []
        for t, event in log.events:
            kind = TIMELINE_MARKS.get(type(event))
            if kind is not None:
                detail = getattr(event, "function", "") if kind == "function" else ""
                marks.append((round(t, 4), kind, detail))
        return cls(
            caller=tuple((round(u.start, 4), round(u.end, 4), u.turn) for u in log.utterances),
            agent=tuple((round(s.start, 4), round(s.end, 4)) for s in played_spans(log.played)),
            marks=tuple(marks),
            duration=round(log.ended_at or 0.0, 4),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One run of one case."""

    case: Case
    run: int
    verdicts: tuple[Verdict, ...]
    observation: CallObservation
    timeline: Timeline
    directory: Path | None = None

    @property
    def passed(self) -> bool:
        """Every verdict passed."""
        return all(v.passed for v in self.verdicts)

    @property
    def failures(self) -> list[Verdict]:
        """The verdicts that failed."""
        return [v for v in self.verdicts if not v.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``verdicts.json``."""
        obs = self.observation
        return {
            "case": self.case.name,
            "run": self.run,
            "passed": self.passed,
            "duration_ms": obs.duration_ms,
            "session_ended": obs.session_ended,
            "errors": list(obs.errors),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "turns": [
                {
                    "turn": t.turn,
                    "said": t.said,
                    "heard": t.heard,
                    "response": t.response,
                    "functions": [{"name": n, "params": p} for n, p in t.functions],
                    "latency_ms": t.received_ms,
                    "played_latency_ms": t.played_ms,
                    "answer_latency_ms": t.answer_latency_ms,
                    "wer": t.wer,
                    "interruption_ms": t.interruption_ms,
                    "error": t.error,
                }
                for t in obs.turns
            ],
        }


def case_dir(out_dir: Path, case: Case, run: int, repeat: int) -> Path:
    """Where one run's files go: ``OUT/<case-slug>[/run-N]``."""
    slug = re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-") or "case"
    return out_dir / slug / f"run-{run}" if repeat > 1 else out_dir / slug


async def run_case(
    case: Case,
    open_session: OpenSession,
    *,
    request: StartRequest,
    audio: Sequence[bytes],
    directory: Path | None = None,
    run: int = 1,
    on_event: Callable[[float, Event], None] | None = None,
) -> CaseResult:
    """Run ``case`` once on a session from ``open_session(request)``; see the module
    docstring. A session that fails (cannot connect, drops) fails the case's verdicts
    with the reason; it is not raised. ``audio[i]`` is turn *i*'s PCM (:func:`case_audio`).
    """
    if len(audio) != len(case.turns):
        raise ValueError("audio needs one PCM per turn of the case.")
    bound = sum(
        t.timeout_ms / 1000 + len(a) / 32000 for t, a in zip(case.turns, audio, strict=True)
    )
    bound += case.greeting_wait_ms / 1000 + CASE_SLACK_S
    turn_errors: dict[int, str] = {}
    with ExitStack() as stack:
        recorder = log_file = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            recorder = stack.enter_context(CallRecorder(directory / "recording.wav"))
            log_file = stack.enter_context(
                EventLog(directory / "events.jsonl", secret=request.public_key)
            )

        def on_any(t: float, event: Event) -> None:
            if log_file is not None:
                log_file.write(t, event)
            if on_event is not None:
                on_event(t, event)

        caller: ScriptedCaller | None = None
        log = CallLog()
        try:
            with anyio.move_on_after(bound) as scope:
                async with open_session(request) as session:
                    caller = ScriptedCaller(
                        session,
                        on_event=on_any,
                        user_tap=recorder.user if recorder else None,
                        agent_tap=recorder.agent if recorder else None,
                    )
                    log = caller.log
                    async with caller.running():
                        turn_errors = await play_case(caller, case, audio)
            if scope.cancelled_caught:
                log.errors.append(f"the case did not finish within {bound:.0f} s.")
        except MillisError as exc:
            log.errors.append(str(exc))
        if log.ended_at is None and log.events:
            log.ended_at = log.events[-1][0]
        observation = observe_call(log, turn_errors)
        result = CaseResult(
            case=case,
            run=run,
            verdicts=evaluate(case, observation),
            observation=observation,
            timeline=Timeline.of(log),
            directory=directory,
        )
        if directory is not None:
            text = json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
            if request.public_key:
                text = text.replace(request.public_key, "***")
            (directory / "verdicts.json").write_text(text + "\n", encoding="utf-8")
    return result


def local_opener(setup: AgentSetup) -> OpenSession:
    """Sessions with the local agent over the in-memory transport; each session gets a
    fresh session store and id counter, so a case's run never depends on another's."""
    from ..memory import connect_in_memory

    def open_session(request: StartRequest) -> AbstractAsyncContextManager[CallerSession]:
        own = dataclasses.replace(setup, store=SessionStore(), new_session_id=SessionIdCounter())
        # Virtual time: the wall-clock stamps of pings are virtual too, so runs repeat.
        return connect_in_memory(agent_handler(own), request, wall_clock_offset=0.0)

    return open_session


def endpoint_opener(
    url: str,
    *,
    cafile: str | None = None,
    allow_insecure: bool = False,
    connect_options: ConnectOptions | None = None,
) -> OpenSession:
    """Sessions with a real endpoint over the trio transport (``allow_insecure``: plain
    ``ws://`` to a host that is not loopback; ``connect_options``: more of
    ``transports.trio.connect``'s options, such as the timeouts)."""
    from .. import trio as trio_transport

    options: ConnectOptions = {
        **(connect_options or {}),
        "cafile": cafile,
        "allow_insecure": allow_insecure,
    }

    def open_session(request: StartRequest) -> AbstractAsyncContextManager[CallerSession]:
        return trio_transport.connect(url, request, **options)

    return open_session


@dataclass
class SuiteResult:
    """Every run of every case, in suite order."""

    suite: Suite
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every run of every case passed."""
        return all(r.passed for r in self.results)

    def runs(self, case: Case) -> list[CaseResult]:
        """The runs of ``case``, in run order."""
        return sorted((r for r in self.results if r.case is case), key=lambda r: r.run)

    def pass_rate(self, case: Case) -> float:
        """Fraction of ``case``'s runs that passed."""
        runs = self.runs(case)
        return sum(r.passed for r in runs) / len(runs) if runs else math.nan


class SuiteRunner:
    """Runs the cases of one suite, against the local agent or ``endpoint``.

    Requests are built (and validated) up front; each case's audio and each scenario's
    agent setup are prepared once, when first needed. :meth:`run_sync` runs one case in
    its own event loop — in virtual time for the local agent — and :meth:`run_all` the
    whole suite. Raises :class:`ConfigError` for a bad request.
    """

    def __init__(
        self,
        loaded: LoadedSuite,
        *,
        endpoint: str | None = None,
        request: StartRequest = LOCAL_REQUEST,
        cafile: str | None = None,
        allow_insecure: bool = False,
        connect_options: ConnectOptions | None = None,
    ) -> None:
        self.loaded = loaded
        self.endpoint = endpoint
        self._cafile = cafile
        self._allow_insecure = allow_insecure
        self._connect_options = connect_options
        self._requests = {case.name: case_request(case, request) for case in loaded.suite.cases}
        self._audio: dict[str, list[bytes]] = {}
        self._openers: dict[str | None, OpenSession] = {}

    @property
    def virtual(self) -> bool:
        """True against the local agent: runs use trio's ``MockClock``."""
        return self.endpoint is None

    def audio(self, case: Case) -> list[bytes]:
        """The caller's PCM for each turn of ``case`` (rendered once)."""
        if case.name not in self._audio:
            self._audio[case.name] = case_audio(case, self.loaded, espeak_voice(case.texts()))
        return self._audio[case.name]

    def opener(self, case: Case) -> OpenSession:
        """How ``case`` opens its session."""
        if self.endpoint is not None:
            return endpoint_opener(
                self.endpoint,
                cafile=self._cafile,
                allow_insecure=self._allow_insecure,
                connect_options=self._connect_options,
            )
        scenario = case.scenario or self.loaded.suite.scenario
        if scenario not in self._openers:
            path = None if scenario is None else self.loaded.resolve(scenario)
            self._openers[scenario] = local_opener(load_setup(path))
        return self._openers[scenario]

    async def run(self, case: Case, *, run: int = 1, directory: Path | None = None) -> CaseResult:
        """Run ``case`` once in the current event loop."""
        return await run_case(
            case,
            self.opener(case),
            request=self._requests[case.name],
            audio=self.audio(case),
            directory=directory,
            run=run,
        )

    def _trio_run(self, main: Callable[[], Awaitable[None]]) -> None:
        import trio
        import trio.testing

        clock = trio.testing.MockClock(autojump_threshold=0) if self.virtual else None
        trio.run(main, clock=clock)

    def run_sync(self, case: Case, *, run: int = 1, directory: Path | None = None) -> CaseResult:
        """Run ``case`` once in an event loop of its own; blocks until done."""
        out: list[CaseResult] = []

        async def main() -> None:
            out.append(await self.run(case, run=run, directory=directory))

        self._trio_run(main)
        return out[0]

    def run_all(
        self,
        *,
        repeat: int = 1,
        concurrency: int = 1,
        out_dir: Path | None = None,
        on_start: Callable[[Case, int], None] | None = None,
        on_result: Callable[[CaseResult], None] | None = None,
    ) -> SuiteResult:
        """Every case ``repeat`` times, ``concurrency`` at a time; blocks until done."""
        import trio

        if repeat < 1:
            raise ConfigError("--repeat must be at least 1.")
        if concurrency < 1:
            raise ConfigError("--concurrency must be at least 1.")
        suite = self.loaded.suite
        for case in suite.cases:  # prepare everything before the clock starts
            self.audio(case)
            self.opener(case)
        outcome = SuiteResult(suite)
        pending = iter([(case, run) for case in suite.cases for run in range(1, repeat + 1)])

        async def worker() -> None:
            # Workers take jobs in suite order, so cases start in the order they are written.
            for case, run in pending:
                if on_start is not None:
                    on_start(case, run)
                directory = None if out_dir is None else case_dir(out_dir, case, run, repeat)
                result = await self.run(case, run=run, directory=directory)
                outcome.results.append(result)
                if on_result is not None:
                    on_result(result)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(min(concurrency, len(suite.cases) * repeat)):
                    nursery.start_soon(worker)

        self._trio_run(main)
        order = {id(case): i for i, case in enumerate(suite.cases)}
        outcome.results.sort(key=lambda r: (order[id(r.case)], r.run))
        return outcome


def run_suite(
    loaded: LoadedSuite,
    *,
    endpoint: str | None = None,
    request: StartRequest = LOCAL_REQUEST,
    cafile: str | None = None,
    allow_insecure: bool = False,
    connect_options: ConnectOptions | None = None,
    repeat: int = 1,
    concurrency: int = 1,
    out_dir: Path | None = None,
    on_start: Callable[[Case, int], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> SuiteResult:
    """Run the suite (see the module docstring); blocks until done.

    ``request`` is the base start request (the cases' agent overrides go on it);
    ``connect_options`` are more options of ``transports.trio.connect`` for ``endpoint``
    (timeouts, ``config``). Raises :class:`ConfigError` for a bad suite or request before
    anything runs; session failures fail cases instead.
    """
    runner = SuiteRunner(
        loaded,
        endpoint=endpoint,
        request=request,
        cafile=cafile,
        allow_insecure=allow_insecure,
        connect_options=connect_options,
    )
    return runner.run_all(
        repeat=repeat,
        concurrency=concurrency,
        out_dir=out_dir,
        on_start=on_start,
        on_result=on_result,
    )
