"""Judging a call against its case: one :class:`Verdict` per expectation. Pure.

Each verdict names the case, the turn (1-based; ``None`` for the whole case), the
expectation key as written in the suite file, what was expected and what was measured,
so a failure message reads, for example (one line)::

    case 'asks the weather', turn 1: function expected 'get_forecast',
    measured: onfunction get_weather {"city": "Paris"}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .format import Case, TurnExpect
from .measure import CallObservation, TurnObservation
from .wer import phrase_error_rate

__all__ = ["Verdict", "evaluate", "params_match", "turn_checks"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One expectation's outcome."""

    case: str
    turn: int | None
    expectation: str
    expected: str
    measured: str
    passed: bool

    @property
    def message(self) -> str:
        """One line naming the case, the turn, the expectation and the measured value."""
        where = f"case {self.case!r}" + (f", turn {self.turn}" if self.turn is not None else "")
        return f"{where}: {self.expectation} expected {self.expected}, measured: {self.measured}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for ``verdicts.json``)."""
        return {
            "case": self.case,
            "turn": self.turn,
            "expectation": self.expectation,
            "expected": self.expected,
            "measured": self.measured,
            "passed": self.passed,
            "message": self.message,
        }


def params_match(expected: Mapping[str, Any], actual: object) -> bool:
    """True when every key of ``expected`` is in ``actual`` with a matching value;
    objects are compared the same way, recursively (a subset match)."""
    if not isinstance(actual, Mapping):
        return False
    for key, want in expected.items():
        if key not in actual:
            return False
        got = actual[key]
        if isinstance(want, Mapping):
            if not params_match(want, got):
                return False
        elif want != got or isinstance(want, bool) != isinstance(got, bool):
            return False
    return True


def _js(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _ms(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f} ms"


def turn_checks(spec: TurnExpect, obs: TurnObservation) -> list[tuple[str, str, str, bool]]:
    """``(key, expected, measured, passed)`` for each expectation the turn sets."""
    out: list[tuple[str, str, str, bool]] = []
    if spec.transcript is not None:
        heard = obs.heard
        wer = phrase_error_rate(spec.transcript, heard) if obs.transcripts else None
        measured = "no ontranscript" if wer is None else f"{heard!r} (WER {wer:.2f})"
        out.append(
            (
                "transcript",
                f"{spec.transcript!r} (WER <= {spec.transcript_max_wer:g})",
                measured,
                wer is not None and wer <= spec.transcript_max_wer,
            )
        )
    if spec.function is not None:
        calls = [(n, p) for n, p in obs.functions if n == spec.function]
        seen = ", ".join(f"{n} {_js(p)}" for n, p in obs.functions) or "none"
        out.append(("function", repr(spec.function), f"onfunction {seen}", bool(calls)))
        if spec.params is not None:
            ok = any(params_match(spec.params, p) for _, p in calls)
            got = ", ".join(_js(p) for _, p in calls) if calls else "no such call"
            out.append(("params", _js(spec.params) + " (subset)", got, ok))
    response = obs.response
    shown = repr(response) if obs.responses else "no onresponsetext"
    if spec.response is not None:
        ok = spec.response.casefold() in response.casefold() and bool(obs.responses)
        out.append(("response", f"to contain {spec.response!r}", shown, ok))
    if spec.response_regex is not None:
        ok = bool(obs.responses) and re.search(spec.response_regex, response) is not None
        out.append(("response_regex", f"to match {spec.response_regex!r}", shown, ok))
    for key, budget, value in (
        ("latency_ms", spec.latency_ms, obs.received_ms),
        ("played_latency_ms", spec.played_latency_ms, obs.played_ms),
    ):
        if budget is not None:
            ok = value is not None and value <= budget
            out.append((key, f"<= {budget:g} ms", _ms(value), ok))
    if spec.interrupted_within_ms is not None:
        stop = obs.interruption_ms
        measured = _ms(stop) if stop is not None else obs.interruption_note or "no stop"
        ok = stop is not None and stop <= spec.interrupted_within_ms
        out.append(("interrupted_within_ms", f"<= {spec.interrupted_within_ms:g} ms", measured, ok))
    return out


def evaluate(case: Case, call: CallObservation) -> tuple[Verdict, ...]:
    """Every verdict of ``case`` against what was observed. Turns the call never reached
    fail each of their expectations with ``"turn not reached"``."""
    verdicts: list[Verdict] = []

    def add(turn: int | None, key: str, expected: str, measured: str, ok: bool) -> None:
        verdicts.append(
            Verdict(
                case=case.name,
                turn=turn,
                expectation=key,
                expected=expected,
                measured=measured,
                passed=ok,
            )
        )

    for i, spec in enumerate(case.turns):
        number = i + 1
        if i >= len(call.turns):
            why = call.errors[0] if call.errors else "the call ended before it"
            add(number, "turn", "to be spoken", f"turn not reached ({why})", False)
            continue
        obs = call.turns[i]
        if obs.error is not None:
            add(number, "answer", "within the turn's timeout", obs.error, False)
        for key, expected, measured, ok in turn_checks(spec.expect, obs):
            add(number, key, expected, measured, ok)
    reached = len(call.turns) == len(case.turns)
    if call.errors and reached and not any(t.error for t in call.turns):
        add(None, "session", "to run without errors", "; ".join(call.errors), False)
    expect = case.expect
    if expect.session_ended is not None:
        measured = "onsessionended received" if call.session_ended else "no onsessionended"
        add(
            None,
            "session_ended",
            str(expect.session_ended).lower(),
            measured,
            call.session_ended == expect.session_ended,
        )
    if expect.max_duration_ms is not None:
        add(
            None,
            "max_duration_ms",
            f"<= {expect.max_duration_ms:g} ms",
            _ms(call.duration_ms),
            call.duration_ms <= expect.max_duration_ms,
        )
    if expect.no_bad_message:
        bad = call.bad_messages
        add(
            None,
            "no_bad_message",
            "no malformed server message",
            f"{len(bad)} ({bad[0]})" if bad else "0",
            not bad,
        )
    return tuple(verdicts)
