"""The suite file: voice-agent test cases in TOML or JSON, parsed and validated. Pure.

A suite is a ``[suite]`` table (``name``, the local agent's ``scenario``, ``defaults``)
and ``[[case]]`` tables, each with ``[[case.turn]]`` entries (what the caller says and
when) and ``expect`` tables (what must happen); ``SUITES.md`` next to this module lists
every key. :func:`parse_suite` turns a document into frozen dataclasses and raises
:class:`~millis_proto.ConfigError` naming the key for anything unknown or invalid, e.g.
``case[0].turn[1].expect.functon: unknown key (known keys: ...)``. Paths (``scenario``,
``audio``) are kept as written; the runner resolves them next to the suite file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from millis_proto.agent._fields import (
    check_json,
    check_keys,
    check_number,
    check_str,
    field_error,
    parse_document,
    prefixed,
    require_list,
    require_mapping,
)

__all__ = [
    "DEFAULT_GREETING_WAIT_MS",
    "DEFAULT_PAUSE_MS",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_TRANSCRIPT_MAX_WER",
    "Case",
    "CaseExpect",
    "Suite",
    "TurnExpect",
    "TurnSpec",
    "parse_suite",
]

#: Silence the caller leaves after the agent's answer has played out, before speaking on.
DEFAULT_PAUSE_MS = 300.0
#: Longest the caller waits for an answer (from the end of its speech) before failing.
DEFAULT_TIMEOUT_MS = 15000.0
#: How long after ``onready`` the caller listens for a greeting before its first turn.
DEFAULT_GREETING_WAIT_MS = 1000.0
#: Word error rate at or under which an expected transcript phrase counts as heard.
DEFAULT_TRANSCRIPT_MAX_WER = 0.25

_TURN_EXPECT_KEYS = frozenset(
    {
        "transcript",
        "transcript_max_wer",
        "function",
        "params",
        "response",
        "response_regex",
        "latency_ms",
        "played_latency_ms",
        "interrupted_within_ms",
    }
)
_TURN_KEYS = frozenset({"say", "audio", "barge_in_after_ms", "pause_ms", "timeout_ms", "expect"})
_CASE_EXPECT_KEYS = frozenset({"session_ended", "max_duration_ms", "no_bad_message"})
_AGENT_KEYS = frozenset({"agent_id", "agent_config", "metadata"})
_CASE_KEYS = _AGENT_KEYS | {"name", "scenario", "greeting_wait_ms", "turn", "expect"}
_DEFAULT_KEYS = _AGENT_KEYS | {
    "pause_ms",
    "timeout_ms",
    "greeting_wait_ms",
    "transcript_max_wer",
    "latency_ms",
    "played_latency_ms",
}
_SUITE_KEYS = frozenset({"name", "scenario", "defaults"})
_TOP_KEYS = frozenset({"suite", "case"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnExpect:
    """What must happen during one turn (each ``None`` is not checked).

    * ``transcript``: a phrase the agent's ``ontranscript`` must contain, fuzzily: its
      word error rate against the best-matching stretch is at most ``transcript_max_wer``.
    * ``function`` / ``params``: an ``onfunction`` with this name, whose params include
      ``params`` (a subset match, recursive for objects).
    * ``response`` (case-insensitive substring) / ``response_regex`` (``re.search``) of
      the agent's final ``onresponsetext``.
    * ``latency_ms``: end of the caller's speech → first agent audio received;
      ``played_latency_ms``: → first agent audio played.
    * ``interrupted_within_ms``: the agent's audio stopped (``pause``/``clear``, playback
      silent) within this long of the caller's barge-in; needs ``barge_in_after_ms``.
    """

    transcript: str | None = None
    transcript_max_wer: float = DEFAULT_TRANSCRIPT_MAX_WER
    function: str | None = None
    params: Mapping[str, Any] | None = None
    response: str | None = None
    response_regex: str | None = None
    latency_ms: float | None = None
    played_latency_ms: float | None = None
    interrupted_within_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnSpec:
    """One thing the caller says: ``say`` (synthesized) or ``audio`` (a WAV path).

    Without ``barge_in_after_ms`` the caller speaks after the agent's previous answer has
    played out plus ``pause_ms``; with it, that many milliseconds into the answer (or the
    greeting, for the first turn). ``timeout_ms`` bounds the wait for this turn's answer.
    """

    say: str | None = None
    audio: str | None = None
    barge_in_after_ms: float | None = None
    pause_ms: float = DEFAULT_PAUSE_MS
    timeout_ms: float = DEFAULT_TIMEOUT_MS
    expect: TurnExpect = field(default_factory=TurnExpect)

    @property
    def label(self) -> str:
        """What the caller says, for messages and reports."""
        return self.say if self.say is not None else f"<{self.audio}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseExpect:
    """What must hold for the whole case.

    * ``session_ended``: True = the server ended the session (``onsessionended``) by the
      end; False = it did not. ``None`` is not checked.
    * ``max_duration_ms``: the case, connection to end, took at most this long.
    * ``no_bad_message``: no malformed server message was received (default: checked).
    """

    session_ended: bool | None = None
    max_duration_ms: float | None = None
    no_bad_message: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One scripted call: its own session, turns and expectations.

    ``agent_id`` / ``agent_config`` / ``metadata`` go into the ``initiate``; ``scenario``
    overrides the suite's scenario for the local agent (ignored against an endpoint).
    """

    name: str
    turns: tuple[TurnSpec, ...]
    expect: CaseExpect = field(default_factory=CaseExpect)
    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    scenario: str | None = None
    greeting_wait_ms: float = DEFAULT_GREETING_WAIT_MS

    def texts(self) -> list[str]:
        """Every ``say`` text, in order (what a voice must render)."""
        return [t.say for t in self.turns if t.say is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """A parsed suite file."""

    name: str
    cases: tuple[Case, ...]
    scenario: str | None = None

    def case(self, name: str) -> Case:
        """The case called ``name``; :class:`KeyError` if there is none."""
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(name)


def parse_suite(text: str, format: Literal["json", "toml"] = "toml") -> Suite:
    """Parse a suite document; :class:`ConfigError` naming the key for any problem."""
    return suite_from_dict(parse_document(text, format, "suite"))


def suite_from_dict(obj: object) -> Suite:
    """Validate a decoded suite document (the same shape in JSON and TOML)."""
    top = require_mapping("suite file", obj)
    check_keys("", top, _TOP_KEYS)
    if "suite" not in top:
        raise field_error("suite", "is missing (a [suite] table with at least a name).")
    head = require_mapping("suite", top["suite"])
    check_keys("suite", head, _SUITE_KEYS)
    name = head.get("name")
    check_str("suite.name", name)
    scenario = _optional_str("suite.scenario", head.get("scenario"))
    defaults = require_mapping("suite.defaults", head.get("defaults", {}))
    check_keys("suite.defaults", defaults, _DEFAULT_KEYS)
    defaults = prefixed("suite.defaults", _checked_defaults, defaults)
    cases = require_list("case", top.get("case", []))
    if not cases:
        raise field_error("case", "a suite needs at least one [[case]].")
    parsed = tuple(prefixed(f"case[{i}]", _case, case, defaults) for i, case in enumerate(cases))
    seen: set[str] = set()
    for i, case in enumerate(parsed):
        if case.name in seen:
            raise field_error(f"case[{i}].name", f"{case.name!r} is used by another case.")
        seen.add(case.name)
    assert isinstance(name, str)
    return Suite(name=name, cases=parsed, scenario=scenario)


def _checked_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Check the defaults' values on their own, so an error names ``suite.defaults.*``."""
    out = dict(defaults)
    _agent_fields(out)
    for key in ("pause_ms", "timeout_ms", "greeting_wait_ms", "latency_ms", "played_latency_ms"):
        if key in out:
            _ms(key, out[key], allow_zero=key in ("pause_ms", "greeting_wait_ms"))
    if "transcript_max_wer" in out:
        _wer(out["transcript_max_wer"])
    return out


def _case(obj: object, defaults: Mapping[str, Any]) -> Case:
    case = require_mapping("", obj)
    check_keys("", case, _CASE_KEYS)
    name = case.get("name")
    check_str("name", name)
    merged = {**defaults, **case}
    agent = _agent_fields(merged)
    greeting_wait = merged.get("greeting_wait_ms", DEFAULT_GREETING_WAIT_MS)
    _ms("greeting_wait_ms", greeting_wait, allow_zero=True)
    turns = require_list("turn", case.get("turn", []))
    if not turns:
        raise field_error("turn", "a case needs at least one [[case.turn]].")
    parsed = tuple(
        prefixed(f"turn[{i}]", _turn, turn, defaults, first=i == 0) for i, turn in enumerate(turns)
    )
    expect = require_mapping("expect", case.get("expect", {}))
    check_keys("expect", expect, _CASE_EXPECT_KEYS)
    assert isinstance(name, str)
    return Case(
        name=name,
        turns=parsed,
        expect=prefixed("expect", _case_expect, expect),
        scenario=_optional_str("scenario", case.get("scenario")),
        greeting_wait_ms=float(greeting_wait),
        **agent,
    )


def _turn(obj: object, defaults: Mapping[str, Any], *, first: bool) -> TurnSpec:
    turn = require_mapping("", obj)
    check_keys("", turn, _TURN_KEYS)
    say = _optional_str("say", turn.get("say"))
    audio = _optional_str("audio", turn.get("audio"))
    if (say is None) == (audio is None):
        raise field_error("say", "give exactly one of say (text to speak) or audio (a WAV).")
    barge = turn.get("barge_in_after_ms")
    if barge is not None:
        _ms("barge_in_after_ms", barge, allow_zero=True)
    pause = turn.get("pause_ms", defaults.get("pause_ms", DEFAULT_PAUSE_MS))
    _ms("pause_ms", pause, allow_zero=True)
    timeout = turn.get("timeout_ms", defaults.get("timeout_ms", DEFAULT_TIMEOUT_MS))
    _ms("timeout_ms", timeout)
    expect = require_mapping("expect", turn.get("expect", {}))
    check_keys("expect", expect, _TURN_EXPECT_KEYS)
    parsed = prefixed("expect", _turn_expect, expect, defaults)
    if parsed.interrupted_within_ms is not None and barge is None:
        raise field_error(
            "expect.interrupted_within_ms",
            "needs barge_in_after_ms on the same turn (the caller must interrupt).",
        )
    return TurnSpec(
        say=say,
        audio=audio,
        barge_in_after_ms=None if barge is None else float(barge),
        pause_ms=float(pause),
        timeout_ms=float(timeout),
        expect=parsed,
    )


def _turn_expect(expect: Mapping[str, Any], defaults: Mapping[str, Any]) -> TurnExpect:
    transcript = expect.get("transcript")
    if transcript is not None:
        check_str("transcript", transcript)
    max_wer = expect.get(
        "transcript_max_wer", defaults.get("transcript_max_wer", DEFAULT_TRANSCRIPT_MAX_WER)
    )
    _wer(max_wer, "transcript_max_wer")
    function = _optional_str("function", expect.get("function"))
    params = expect.get("params")
    if params is not None:
        require_mapping("params", params)
        check_json("params", params)
        if function is None:
            raise field_error("params", "needs function (the call whose params to check).")
    response = _optional_str("response", expect.get("response"))
    regex = _optional_str("response_regex", expect.get("response_regex"))
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise field_error(
                "response_regex", f"is not a valid regular expression ({exc})."
            ) from None
    latency: dict[str, float | None] = {}
    for key in ("latency_ms", "played_latency_ms", "interrupted_within_ms"):
        value = expect.get(key, defaults.get(key) if key != "interrupted_within_ms" else None)
        if value is not None:
            _ms(key, value)
        latency[key] = None if value is None else float(value)
    return TurnExpect(
        transcript=transcript,
        transcript_max_wer=float(max_wer),
        function=function,
        params=dict(params) if params is not None else None,
        response=response,
        response_regex=regex,
        **latency,
    )


def _case_expect(expect: Mapping[str, Any]) -> CaseExpect:
    ended = expect.get("session_ended")
    if ended is not None:
        _bool("session_ended", ended)
    duration = expect.get("max_duration_ms")
    if duration is not None:
        _ms("max_duration_ms", duration)
    no_bad = expect.get("no_bad_message", True)
    _bool("no_bad_message", no_bad)
    return CaseExpect(
        session_ended=ended,
        max_duration_ms=None if duration is None else float(duration),
        no_bad_message=no_bad,
    )


def _agent_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``agent_id`` (string) and the ``agent_config`` / ``metadata`` objects, checked."""
    agent_id = _optional_str("agent_id", obj.get("agent_id"))
    out: dict[str, Any] = {"agent_id": agent_id}
    for key in ("agent_config", "metadata"):
        value = obj.get(key)
        if value is not None:
            require_mapping(key, value)
            check_json(key, value)
            value = dict(value)
        out[key] = value
    return out


def _optional_str(name: str, value: object) -> str | None:
    if value is None:
        return None
    check_str(name, value)
    assert isinstance(value, str)
    return value


def _ms(name: str, value: object, *, allow_zero: bool = False) -> None:
    check_number(name, value, allow_equal=allow_zero)


def _wer(value: object, name: str = "transcript_max_wer") -> None:
    check_number(name, value, allow_equal=True)


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise field_error(name, f"must be true or false, not {value!r}.")
