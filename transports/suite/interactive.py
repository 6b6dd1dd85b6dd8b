"""A caller for test code: ``say``, ``barge_in``, ``wait_for_answer`` and expectations.

:class:`BlockingCaller` drives a :class:`~.caller.ScriptedCaller` from ordinary
(synchronous) test code. The session runs on trio in a background thread (anyio's
blocking portal). Against the local agent the loop runs on a ``MockClock`` that is
*frozen* between calls (``rate=0``, no autojump) and jumps only while a call runs, so
the conversation stays in virtual time and deterministic however long the test thinks
between two calls::

    caller = BlockingCaller.local("examples/suite_scenario.json")
    first = caller.say("What's the weather in Paris?")
    caller.barge_in("Actually, make that London.", after_ms=800)
    caller.wait_for_answer()
    first.expect(function="get_weather", params={"city": "Paris"})
    caller.close()

Expectations take the keys of a suite file's ``[case.turn.expect]`` table and raise
``AssertionError`` with the same messages as a suite's verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, ExitStack
from pathlib import Path
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from millis_proto import StartRequest
from millis_proto.agent import Voice

from ..local_agent import LOCAL_REQUEST, espeak_voice, load_setup
from .caller import ScriptedCaller
from .format import (
    DEFAULT_GREETING_WAIT_MS,
    DEFAULT_PAUSE_MS,
    DEFAULT_TIMEOUT_MS,
    TurnExpect,
    _turn_expect,
)
from .measure import TurnObservation, observe_turn
from .runner import OpenSession, endpoint_opener, local_opener
from .verdicts import Verdict, turn_checks

__all__ = ["BlockingCaller", "SpokenTurn"]

T = TypeVar("T")


class SpokenTurn:
    """One turn the caller spoke; its measurements are read fresh on every access."""

    def __init__(self, caller: BlockingCaller, index: int) -> None:
        self._caller = caller
        self.index = index

    @property
    def number(self) -> int:
        """The turn's number (1-based)."""
        return self.index + 1

    @property
    def observation(self) -> TurnObservation:
        """What was measured for this turn so far."""
        return self._caller._observe(self.index)

    def expect(self, **expectations: Any) -> SpokenTurn:
        """Check ``[case.turn.expect]`` keys against this turn (e.g. ``function=...``,
        ``params={...}``, ``response=...``, ``latency_ms=...``). Raises ``AssertionError``
        naming the turn, the expectation and the measured value."""
        spec = _turn_expect(expectations, {})
        failed = [v for v in self._verdicts(spec) if not v.passed]
        if failed:
            raise AssertionError("\n".join(v.message for v in failed))
        return self

    def _verdicts(self, spec: TurnExpect) -> list[Verdict]:
        return [
            Verdict(
                case=self._caller.name,
                turn=self.number,
                expectation=key,
                expected=expected,
                measured=measured,
                passed=ok,
            )
            for key, expected, measured, ok in turn_checks(spec, self.observation)
        ]

    def expect_function(self, name: str, **params: Any) -> SpokenTurn:
        """An ``onfunction`` called ``name`` whose params include ``params``."""
        return self.expect(function=name, params=params or None)

    def expect_response(self, text: str) -> SpokenTurn:
        """The agent's answer contains ``text`` (case-insensitive)."""
        return self.expect(response=text)

    def expect_transcript(self, phrase: str, max_wer: float = 0.25) -> SpokenTurn:
        """The agent heard ``phrase`` (word error rate at most ``max_wer``)."""
        return self.expect(transcript=phrase, transcript_max_wer=max_wer)

    def expect_latency(self, ms: float) -> SpokenTurn:
        """End of the caller's speech → first agent audio received within ``ms``."""
        return self.expect(latency_ms=ms)

    def expect_interrupted(self, within_ms: float) -> SpokenTurn:
        """This barge-in stopped the agent's audio within ``within_ms``."""
        return self.expect(interrupted_within_ms=within_ms)


class BlockingCaller:
    """A scripted call driven by blocking calls; see the module docstring."""

    def __init__(
        self,
        open_session: OpenSession,
        request: StartRequest,
        *,
        virtual: bool,
        voice: Voice | None = None,
        name: str = "python case",
        ready_timeout_s: float = 10.0,
        greeting_wait_ms: float = DEFAULT_GREETING_WAIT_MS,
    ) -> None:
        import trio.testing

        self.name = name
        self._voice = voice or _speaking_voice
        self._stack = ExitStack()
        self._clock = trio.testing.MockClock(rate=0) if virtual else None
        options = {"clock": self._clock} if virtual else {}
        self._portal: BlockingPortal = self._stack.enter_context(
            start_blocking_portal("trio", backend_options=options)
        )
        try:
            session_cm: AbstractAsyncContextManager[Any] = open_session(request)
            session = self._stack.enter_context(
                self._portal.wrap_async_context_manager(self._timed_cm(session_cm))
            )
            self._caller = ScriptedCaller(session)
            self._stack.enter_context(
                self._portal.wrap_async_context_manager(self._timed_cm(self._caller.running()))
            )
            self._call(lambda: self._start(ready_timeout_s, greeting_wait_ms / 1000))
        except BaseException:
            self._stack.close()
            raise
        self._turns: list[SpokenTurn] = []
        self._answered_to = 0  # turns whose answer has been waited for

    @classmethod
    def local(cls, scenario: str | Path | None = None, **kwargs: Any) -> BlockingCaller:
        """A call with the local agent (``scenario``), in frozen virtual time."""
        return cls(local_opener(load_setup(scenario)), LOCAL_REQUEST, virtual=True, **kwargs)

    @classmethod
    def endpoint(cls, url: str, request: StartRequest, **kwargs: Any) -> BlockingCaller:
        """A call with a real endpoint, in real time."""
        return cls(endpoint_opener(url), request, virtual=False, **kwargs)

    async def _start(self, ready_timeout: float, greeting_wait: float) -> None:
        """Wait for ``onready``, then let a greeting (agent audio soon after it) play out."""
        caller = self._caller
        ready = await caller.wait_ready(ready_timeout)
        if ready is None:
            raise AssertionError(f"{self.name}: no onready within {ready_timeout:g} s.")
        if await caller.wait_answer_start(ready, ready + greeting_wait) is not None:
            await caller.wait_quiet(caller.now() + DEFAULT_TIMEOUT_MS / 1000)
            await caller.sleep(DEFAULT_PAUSE_MS / 1000)

    # --- running calls on the loop ---------------------------------------------------------

    def _timed_cm(self, cm: AbstractAsyncContextManager[T]) -> AbstractAsyncContextManager[T]:
        caller = self

        class _Timed:
            async def __aenter__(self) -> T:
                with caller._running_clock():
                    return await cm.__aenter__()

            async def __aexit__(self, *exc: Any) -> bool | None:
                with caller._running_clock():
                    return await cm.__aexit__(*exc)

        return _Timed()

    def _running_clock(self) -> ExitStack:
        """Let virtual time run (autojump) for the duration of a call, frozen after it."""
        stack = ExitStack()
        clock = self._clock
        if clock is not None:
            clock.autojump_threshold = 0
            stack.callback(setattr, clock, "autojump_threshold", math.inf)
        return stack

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            with self._running_clock():
                return await make()

        return self._portal.call(run)

    # --- the script ---------------------------------------------------------------------------

    def _pcm(self, text: str | None, audio: bytes | None) -> bytes:
        if (text is None) == (audio is None):
            raise ValueError("give text to speak or audio (16 kHz s16le PCM), not both")
        if audio is not None:
            return audio
        assert text is not None
        return self._voice(text)

    def say(self, text: str | None = None, *, audio: bytes | None = None) -> SpokenTurn:
        """Speak now (after the last answer, if :meth:`wait_for_answer` was called);
        returns once the last sample has been sent."""
        pcm = self._pcm(text, audio)
        self._call(lambda: self._caller.speak(pcm, text=text))
        return self._new_turn()

    def barge_in(
        self,
        text: str | None = None,
        *,
        after_ms: float,
        audio: bytes | None = None,
        timeout_ms: float = DEFAULT_TIMEOUT_MS,
    ) -> SpokenTurn:
        """Speak ``after_ms`` into the agent's answer to the last turn (waiting for it to
        start playing, up to ``timeout_ms``). Raises ``AssertionError`` if it never plays."""
        pcm = self._pcm(text, audio)

        async def run() -> None:
            caller = self._caller
            after = caller.log.utterances[-1].voiced_end if caller.log.utterances else 0.0
            deadline = caller.now() + timeout_ms / 1000
            started = await caller.wait_answer_start(after, deadline)
            anchor = None if started is None else await caller.wait_played(started, deadline)
            if anchor is None:
                raise AssertionError(
                    f"{self.name}: turn {len(self._turns) + 1}: nothing to barge in on — the "
                    f"agent's answer did not play within {timeout_ms:g} ms."
                )
            await caller.speak(pcm, text=text, at=anchor + after_ms / 1000, barge_in=True)

        self._call(run)
        return self._new_turn()

    def _new_turn(self) -> SpokenTurn:
        turn = SpokenTurn(self, len(self._turns))
        self._turns.append(turn)
        return turn

    def wait_for_answer(
        self, *, timeout_ms: float = DEFAULT_TIMEOUT_MS, pause_ms: float = DEFAULT_PAUSE_MS
    ) -> SpokenTurn:
        """Wait until the agent's answer to the last turn has played out, then ``pause_ms``.

        Raises ``AssertionError`` with a sentence when no answer comes in ``timeout_ms``.
        """
        if not self._turns:
            raise ValueError("say something first")
        turn = self._turns[-1]
        timeout = timeout_ms / 1000

        async def run() -> str | None:
            caller = self._caller
            end = caller.log.utterances[-1].voiced_end
            if await caller.wait_answer_start(end, end + timeout) is None:
                return f"no agent audio within {timeout:g} s of the end of the caller's speech."
            if not await caller.wait_quiet(end + timeout):
                return f"the agent's answer was still playing {timeout:g} s after the speech."
            await caller.sleep(pause_ms / 1000)
            return None

        problem = self._call(run)
        if problem is not None:
            raise AssertionError(f"{self.name}: turn {turn.number}: {problem}")
        return turn

    def turn(self, number: int) -> SpokenTurn:
        """Turn ``number`` (1-based)."""
        return self._turns[number - 1]

    def _observe(self, index: int) -> TurnObservation:
        return self._portal.call(lambda: _now(observe_turn(self._caller.log, index)))

    @property
    def session_ended(self) -> bool:
        """True once the server ended the session."""
        return self._portal.call(lambda: _now(self._caller.ended))

    def close(self) -> None:
        """Hang up (close handshake, bounded) and stop the loop; idempotent."""
        self._stack.close()

    def __enter__(self) -> BlockingCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _speaking_voice(text: str) -> bytes:
    """espeak-ng when installed (tones otherwise), rendered when first said."""
    return espeak_voice([text])(text)


async def _now(value: T) -> T:
    return value
