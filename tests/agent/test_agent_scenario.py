"""Scenario files: JSON and TOML loading, the shipped examples, and field-named errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from millis_proto.agent import (
    ECHO_TURN,
    AgentSetup,
    FunctionCallSpec,
    MessageSpec,
    Scenario,
    Turn,
    TurnConfig,
    load_scenario,
)
from millis_proto.envelope import ABSENT
from millis_proto.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_files_load_and_agree() -> None:
    from_json = load_scenario((EXAMPLES / "scenario.json").read_text())
    from_toml = load_scenario((EXAMPLES / "scenario.toml").read_text(), format="toml")
    assert from_json == from_toml
    assert from_json.end_after_turns == 3
    assert from_json.greeting == Turn(reply="Hi! Ask me about the weather.")
    first = from_json.turn(1)
    assert first.function_calls == (FunctionCallSpec(name="get_weather", params={"city": "Paris"}),)
    assert first.ai_actions == ({"action": "call_tool", "tool": "get_weather"},)
    assert from_json.turn(2).messages == (
        MessageSpec(method="open_web_form", data={"form": "contact"}),
    )
    assert from_json.turn(4) is ECHO_TURN  # beyond the script: echo
    assert from_json.turn_detection == TurnConfig()


def test_minimal_scenarios() -> None:
    assert load_scenario("{}") == Scenario()
    scenario = load_scenario('{"turns": ["Hi", {"echo": true}, {"audio": "a.wav"}]}')
    assert scenario.turns == (Turn(reply="Hi"), Turn(echo=True), Turn(audio="a.wav"))
    assert scenario.turn(0) is ECHO_TURN


def test_message_keys_stay_absent_unless_given() -> None:
    scenario = load_scenario(
        '{"turns": [{"messages": [{"method": "x"}, {"method": "y", "data": null}]}]}'
    )
    x, y = scenario.turns[0].messages
    assert x.data is ABSENT and x.payload is ABSENT
    assert y.data is None and y.payload is ABSENT


def test_audio_paths_lists_what_the_io_layer_must_load() -> None:
    scenario = Scenario.from_dict(
        {
            "greeting": {"reply": "hi", "audio": "hi.wav"},
            "turns": [{"audio": "a.wav"}, "text", {"audio": "hi.wav"}],
        }
    )
    assert scenario.audio_paths() == ("hi.wav", "a.wav")
    with pytest.raises(
        ConfigError, match=r"^clips: no PCM was given for the scenario audio 'a.wav'"
    ):
        AgentSetup(scenario=scenario, clips={"hi.wav": b""})
    AgentSetup(scenario=scenario, clips={"hi.wav": b"", "a.wav": b"\x00\x00"})


BAD: list[tuple[Any, str]] = [
    ([], "scenario: must be an object"),
    ({"turn": []}, "turn: unknown key"),
    ({"turns": {}}, "turns: must be a list"),
    ({"turns": [1]}, "turns[0]: must be an object"),
    ({"turns": [{"replly": "x"}]}, "turns[0].replly: unknown key"),
    ({"turns": [{"reply": 3}]}, "turns[0].reply: must be a string"),
    ({"turns": [{"echo": "yes"}]}, "turns[0].echo: must be true or false"),
    ({"turns": [{"echo": True, "audio": "a.wav"}]}, "turns[0].echo: cannot be combined"),
    ({"turns": [{"audio": " "}]}, "turns[0].audio: must not be empty"),
    (
        {"turns": ["ok", {"function_calls": [{"name": "ok"}, {"name": ""}]}]},
        "turns[1].function_calls[1].name: must not be empty",
    ),
    (
        {"turns": [{"function_calls": [{"params": {}}]}]},
        "turns[0].function_calls[0].name: is missing",
    ),
    (
        {"turns": [{"function_calls": [{"name": "f", "params": [1]}]}]},
        "turns[0].function_calls[0].params: must be an object",
    ),
    (
        {"turns": [{"function_calls": [{"name": "f", "city": "Paris"}]}]},
        "turns[0].function_calls[0].city: unknown key",
    ),
    ({"turns": [{"function_calls": "f"}]}, "turns[0].function_calls: must be a list"),
    ({"turns": [{"messages": [{"data": 1}]}]}, "turns[0].messages[0].method: is missing"),
    ({"turns": [{"messages": ["x"]}]}, "turns[0].messages[0]: must be an object"),
    ({"turns": [{"ai_actions": {"a": 1}}]}, "turns[0].ai_actions: must be a list"),
    ({"greeting": {"echo": True}}, "greeting.echo: a greeting has no user audio"),
    ({"greeting": {"transcript": "x"}}, "greeting.transcript: a greeting has no user turn"),
    ({"greeting": 5}, "greeting: must be an object"),
    ({"end_after_turns": 0}, "end_after_turns: must be a whole number of at least 1"),
    ({"end_after_turns": 1.5}, "end_after_turns: must be a whole number"),
    ({"end_after_turns": True}, "end_after_turns: must be a whole number"),
    ({"max_duration_s": 0}, "max_duration_s: must be more than 0"),
    ({"idle_timeout_s": "10"}, "idle_timeout_s: must be a finite number"),
    ({"turn_detection": []}, "turn_detection: must be an object"),
    ({"turn_detection": {"min_speech": 1}}, "turn_detection.min_speech: unknown key"),
    ({"turn_detection": {"min_speech_ms": -5}}, "turn_detection.min_speech_ms: must be more"),
]


@pytest.mark.parametrize(("document", "message"), BAD)
def test_invalid_scenarios_name_the_field(document: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario(json.dumps(document))
    assert str(info.value).startswith(message)


def test_toml_values_that_json_cannot_carry_are_rejected() -> None:
    text = "[[turns]]\nai_actions = [{ at = 1979-05-27T07:32:00Z }]\n"
    with pytest.raises(ConfigError, match=r"^turns\[0\]\.ai_actions\[0\]: is not JSON"):
        load_scenario(text, format="toml")


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("{", "json", "scenario is not valid JSON"),
        ("turns = [", "toml", "scenario is not valid TOML"),
        ("{}", "yaml", "scenario format must be 'json' or 'toml'"),
    ],
)
def test_unparsable_scenarios(text: str, fmt: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_scenario(text, format=fmt)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^turns: must be a tuple"):
        Scenario(turns=[Turn()])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^function_calls\[0\]: must be a FunctionCallSpec"):
        Turn(function_calls=({"name": "f"},))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^ai_actions: must be a tuple"):
        Turn(ai_actions=[1])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^data: is not JSON-serializable"):
        MessageSpec(method="x", data={1, 2})
    with pytest.raises(ConfigError, match=r"^payload: is not JSON-serializable"):
        MessageSpec(method="x", payload=object())
    with pytest.raises(ConfigError, match=r"^greeting: must be a Turn"):
        Scenario(greeting="hi")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^turn_detection: must be a TurnConfig"):
        Scenario(turn_detection={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scenario": {}}, "scenario: must be a Scenario"),
        ({"voice": "espeak"}, "voice: must be a callable"),
        ({"clips": []}, "clips: must map"),
        ({"store": {}}, "store: must be a SessionStore"),
        ({"new_session_id": "id"}, "new_session_id: must be a callable"),
        ({"chunk_ms": 0}, "chunk_ms: must be more than 0"),
        ({"chunk_ms": 0.01}, "chunk_ms: must be at least one sample"),
        ({"send_ahead_ms": -1}, "send_ahead_ms: must be at least 0"),
        ({"max_utterance_s": 0}, "max_utterance_s: must be more than 0"),
    ],
)
def test_agent_setup_is_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        AgentSetup(**fields)
