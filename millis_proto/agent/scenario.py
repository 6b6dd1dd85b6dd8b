"""Scenarios: scripted conversations for the local agent, loaded from JSON or TOML.

A scenario says what the agent does on each user turn — the text it answers, the audio it
plays, the tool calls, ``ai_action`` messages and any other server messages it sends — and
when the session ends. The format is documented with examples in ``SCENARIOS.md`` next to
this module; :func:`load_scenario` parses it and :meth:`Scenario.from_dict` validates it.

Every object is a frozen dataclass that validates on construction. A problem raises
:class:`~millis_proto.errors.ConfigError` whose message starts with the field's path, e.g.
``turns[1].function_calls[0].name: must not be empty.``

The core reads no files: ``audio`` holds a path as written, and the I/O layer loads the
WAVs listed by :meth:`Scenario.audio_paths` and passes their PCM to the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..agent_config import json_type_name
from ..envelope import ABSENT
from ._fields import (
    check_json,
    check_keys,
    check_number,
    check_optional_str,
    check_str,
    check_tuple,
    field_error,
    parse_document,
    prefixed,
    require_list,
    require_mapping,
)
from .turns import TurnConfig

__all__ = ["FunctionCallSpec", "MessageSpec", "Scenario", "Turn", "load_scenario"]

_FUNCTION_KEYS = frozenset({"name", "params"})
_MESSAGE_KEYS = frozenset({"method", "data", "payload"})
_TURN_KEYS = frozenset(
    {"transcript", "reply", "audio", "echo", "function_calls", "ai_actions", "messages"}
)
_DETECTION_KEYS = frozenset(
    {"threshold_dbfs", "min_speech_ms", "end_silence_ms", "cough_silence_ms"}
)
_SCENARIO_KEYS = frozenset(
    {"greeting", "turns", "end_after_turns", "max_duration_s", "idle_timeout_s", "turn_detection"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallSpec:
    """An ``onfunction`` the agent fires: ``payload {name, params}``."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_str("name", self.name)
        require_mapping("params", self.params)
        check_json("params", self.params)

    @classmethod
    def from_dict(cls, obj: object) -> FunctionCallSpec:
        """Parse ``{"name": ..., "params": {...}}``."""
        obj = require_mapping("", obj)
        check_keys("", obj, _FUNCTION_KEYS)
        params = obj.get("params", {})
        return cls(
            name=obj.get("name"),  # type: ignore[arg-type]  # checked in __post_init__
            params=dict(params) if isinstance(params, Mapping) else params,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    """Any server message ``{"method", "data"?, "payload"?}``; absent keys stay absent."""

    method: str
    data: Any = ABSENT
    payload: Any = ABSENT

    def __post_init__(self) -> None:
        check_str("method", self.method)
        if self.data is not ABSENT:
            check_json("data", self.data)
        if self.payload is not ABSENT:
            check_json("payload", self.payload)

    @classmethod
    def from_dict(cls, obj: object) -> MessageSpec:
        """Parse ``{"method": ..., "data": ..., "payload": ...}``."""
        obj = require_mapping("", obj)
        check_keys("", obj, _MESSAGE_KEYS)
        return cls(
            method=obj.get("method"),  # type: ignore[arg-type]  # checked in __post_init__
            data=obj.get("data", ABSENT),
            payload=obj.get("payload", ABSENT),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """What the agent does for one user turn (or for the greeting).

    Messages go out in this order: ``start_answering`` and ``ontranscript`` (turns only),
    each ``function_calls`` entry as ``onfunction``, each ``ai_actions`` entry as
    ``ai_action``, each ``messages`` entry, ``onresponsetext`` for ``reply``, then audio.
    The audio is the ``audio`` clip if given, else the user's own utterance if ``echo``,
    else ``reply`` spoken by the voice; with none of them the answer has no audio.
    ``transcript`` replaces the placeholder user transcript the agent sends.
    """

    transcript: str | None = None
    reply: str | None = None
    audio: str | None = None
    echo: bool = False
    function_calls: tuple[FunctionCallSpec, ...] = ()
    ai_actions: tuple[Any, ...] = ()
    messages: tuple[MessageSpec, ...] = ()

    def __post_init__(self) -> None:
        check_optional_str("transcript", self.transcript, allow_empty=True)
        check_optional_str("reply", self.reply, allow_empty=True)
        check_optional_str("audio", self.audio)
        if not isinstance(self.echo, bool):
            raise field_error("echo", f"must be true or false, not {json_type_name(self.echo)}.")
        if self.echo and self.audio is not None:
            raise field_error("echo", "cannot be combined with audio: pick one source.")
        check_tuple("function_calls", self.function_calls, FunctionCallSpec)
        check_tuple("messages", self.messages, MessageSpec)
        if not isinstance(self.ai_actions, tuple):
            raise field_error("ai_actions", "must be a tuple.")
        for i, action in enumerate(self.ai_actions):
            check_json(f"ai_actions[{i}]", action)

    @classmethod
    def from_dict(cls, obj: object) -> Turn:
        """Parse a turn object, or a string as shorthand for ``{"reply": <string>}``."""
        if isinstance(obj, str):
            return cls(reply=obj)
        obj = require_mapping("", obj)
        check_keys("", obj, _TURN_KEYS)
        calls = require_list("function_calls", obj.get("function_calls", []))
        messages = require_list("messages", obj.get("messages", []))
        return cls(
            transcript=obj.get("transcript"),
            reply=obj.get("reply"),
            audio=obj.get("audio"),
            echo=obj.get("echo", False),
            function_calls=tuple(
                prefixed(f"function_calls[{i}]", FunctionCallSpec.from_dict, call)
                for i, call in enumerate(calls)
            ),
            ai_actions=tuple(require_list("ai_actions", obj.get("ai_actions", []))),
            messages=tuple(
                prefixed(f"messages[{i}]", MessageSpec.from_dict, message)
                for i, message in enumerate(messages)
            ),
        )


#: What an unscripted user turn gets: the user's own utterance played back.
ECHO_TURN = Turn(echo=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A scripted conversation. The default, ``Scenario()``, is the echo agent.

    * ``greeting``: spoken right after ``onready`` (no ``start_answering``, as Millis sends
      ``first_message``); not counted as a turn; not repeated on a continued session.
    * ``turns``: user turn *n* gets ``turns[n-1]``; later turns get :data:`ECHO_TURN`.
    * ``end_after_turns``: after the answer to that user turn has played out (or was
      cleared by an interruption), ``onsessionended`` then close 1000. Turns of a continued
      session count too.
    * ``max_duration_s``: the same, that many seconds after ``onready``.
    * ``idle_timeout_s``: the same, after that many seconds with neither user speech nor
      agent audio.
    * ``turn_detection``: :class:`TurnConfig` tunables.
    """

    greeting: Turn | None = None
    turns: tuple[Turn, ...] = ()
    end_after_turns: int | None = None
    max_duration_s: float | None = None
    idle_timeout_s: float | None = None
    turn_detection: TurnConfig = field(default_factory=TurnConfig)

    def __post_init__(self) -> None:
        if self.greeting is not None:
            if not isinstance(self.greeting, Turn):
                raise field_error("greeting", "must be a Turn.")
            if self.greeting.echo:
                raise field_error("greeting.echo", "a greeting has no user audio to echo.")
            if self.greeting.transcript is not None:
                raise field_error("greeting.transcript", "a greeting has no user turn.")
        check_tuple("turns", self.turns, Turn)
        if self.end_after_turns is not None and (
            isinstance(self.end_after_turns, bool)
            or not isinstance(self.end_after_turns, int)
            or self.end_after_turns < 1
        ):
            raise field_error(
                "end_after_turns",
                f"must be a whole number of at least 1, not {self.end_after_turns!r}.",
            )
        if self.max_duration_s is not None:
            check_number("max_duration_s", self.max_duration_s)
        if self.idle_timeout_s is not None:
            check_number("idle_timeout_s", self.idle_timeout_s)
        if not isinstance(self.turn_detection, TurnConfig):
            raise field_error("turn_detection", "must be a TurnConfig.")

    def turn(self, number: int) -> Turn:
        """What to do for user turn ``number`` (1-based)."""
        return self.turns[number - 1] if 1 <= number <= len(self.turns) else ECHO_TURN

    def audio_paths(self) -> tuple[str, ...]:
        """Every ``audio`` path, in order, without repeats: what the I/O layer must load."""
        answers = ([self.greeting] if self.greeting is not None else []) + list(self.turns)
        paths = (t.audio for t in answers if t.audio is not None)
        return tuple(dict.fromkeys(paths))

    @classmethod
    def from_dict(cls, obj: object) -> Scenario:
        """Validate a decoded scenario document. Raises :class:`ConfigError` naming the field."""
        obj = require_mapping("scenario", obj)
        check_keys("", obj, _SCENARIO_KEYS)
        greeting = obj.get("greeting")
        turns = require_list("turns", obj.get("turns", []))
        detection = require_mapping("turn_detection", obj.get("turn_detection", {}))
        check_keys("turn_detection", detection, _DETECTION_KEYS)
        return cls(
            greeting=None if greeting is None else prefixed("greeting", Turn.from_dict, greeting),
            turns=tuple(
                prefixed(f"turns[{i}]", Turn.from_dict, turn) for i, turn in enumerate(turns)
            ),
            end_after_turns=obj.get("end_after_turns"),
            max_duration_s=obj.get("max_duration_s"),
            idle_timeout_s=obj.get("idle_timeout_s"),
            turn_detection=prefixed("turn_detection", TurnConfig, **detection),
        )


def load_scenario(text: str, format: Literal["json", "toml"] = "json") -> Scenario:
    """Parse a scenario document written in JSON or TOML.

    Raises :class:`ConfigError` when the text does not parse (with the parser's reason),
    when a field is invalid (naming it), or for TOML on Python 3.10 (no ``tomllib``).
    """
    obj = parse_document(text, format, "scenario")
    return Scenario.from_dict(obj)
