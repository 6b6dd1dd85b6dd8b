"""The suite file: the example parses; every unknown key and bad value is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from millis_proto import ConfigError
from transports.suite import load_suite, parse_suite
from transports.suite.format import DEFAULT_PAUSE_MS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "suite.toml"

MINIMAL = """
[suite]
name = "s"
[[case]]
name = "c"
[[case.turn]]
say = "hello there"
"""


def test_the_example_suite_parses_with_defaults_applied() -> None:
    suite = load_suite(EXAMPLE).suite
    assert suite.name == "weather agent"
    assert suite.scenario == "suite_scenario.json"
    first, second = suite.cases
    assert [t.say for t in first.turns][:2] == [
        "What's the weather in Paris?",
        "Actually, make that London.",
    ]
    turn1, turn2, turn3 = first.turns
    assert turn1.expect.function == "get_weather"
    assert turn1.expect.params == {"city": "Paris"}
    assert turn1.expect.latency_ms == 2000  # the turn's own budget wins
    assert turn3.expect.latency_ms == 2500  # the suite default
    assert turn2.barge_in_after_ms == 800
    assert turn2.expect.interrupted_within_ms == 500
    assert first.expect.session_ended is True
    assert second.metadata == {"caller": "suite", "plan": "free"}
    assert second.expect.session_ended is False


def test_json_has_the_same_shape() -> None:
    doc = {
        "suite": {"name": "s", "defaults": {"pause_ms": 50}},
        "case": [{"name": "c", "turn": [{"audio": "q.wav", "expect": {"response": "x"}}]}],
    }
    suite = parse_suite(json.dumps(doc), "json")
    turn = suite.cases[0].turns[0]
    assert (turn.audio, turn.pause_ms, turn.expect.response) == ("q.wav", 50, "x")


def test_minimal_suite_takes_the_defaults() -> None:
    turn = parse_suite(MINIMAL).cases[0].turns[0]
    assert turn.pause_ms == DEFAULT_PAUSE_MS
    assert turn.expect.function is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('[case.turn.expect]\nfuncton = "x"', "case[0].turn[0].expect.functon: unknown key"),
        ("[case.turn.expect]\nlatency_ms = -5", "case[0].turn[0].expect.latency_ms: must be more"),
        (
            '[case.turn.expect]\nlatency_ms = "fast"',
            "case[0].turn[0].expect.latency_ms: must be a finite number",
        ),
        (
            "[case.turn.expect]\nparams = { city = 1 }",
            "case[0].turn[0].expect.params: needs function",
        ),
        (
            '[case.turn.expect]\nresponse_regex = "("',
            "case[0].turn[0].expect.response_regex: is not a valid",
        ),
        (
            "[case.turn.expect]\ninterrupted_within_ms = 10",
            "case[0].turn[0].expect.interrupted_within_ms: needs barge_in",
        ),
        (
            '[case.turn.expect]\ntranscript_max_wer = "a"',
            "case[0].turn[0].expect.transcript_max_wer: must be",
        ),
        ("[case.expect]\nsession_ended = 1", "case[0].expect.session_ended: must be true or false"),
        ('[case.expect]\nmax_duration_ms = "x"', "case[0].expect.max_duration_ms: must be"),
        ("[case.expect]\nended = true", "case[0].expect.ended: unknown key"),
    ],
)
def test_bad_expectations_are_named(edit: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + _escape(message)):
        parse_suite(MINIMAL + edit)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[suite]\nname = "s"\n', "case: a suite needs at least one"),
        ('[suite]\nname = ""\n', "suite.name: must not be empty"),
        ('[suite]\nnam = "s"\n', "suite.nam: unknown key"),
        ("[[case]]\nname='c'\n", "suite: is missing"),
        ('[suite]\nname = "s"\n[suite.defaults]\npause = 1\n', "suite.defaults.pause: unknown"),
        ('[suite]\nname = "s"\n[suite.defaults]\ntimeout_ms = 0\n', "suite.defaults.timeout_ms:"),
        ('[suite]\nname = "s"\nextra = 1\n', "suite.extra: unknown key"),
        ('[suite]\nname = "s"\n[[case]]\nname = "c"\n', "case[0].turn: a case needs at least"),
        (
            '[suite]\nname = "s"\n[[case]]\nname = "c"\n[[case.turn]]\npause_ms = 1\n',
            "case[0].turn[0].say: give exactly one of say",
        ),
        (
            '[suite]\nname = "s"\n[[case]]\nname = "c"\n[[case.turn]]\nsay = "a"\naudio = "b"\n',
            "case[0].turn[0].say: give exactly one",
        ),
        (
            '[suite]\nname = "s"\n[[case]]\nname = "c"\nagent_config = 3\n[[case.turn]]\nsay="a"\n',
            "case[0].agent_config: must be an object",
        ),
        (MINIMAL + '[[case]]\nname = "c"\n[[case.turn]]\nsay = "a"\n', "case[1].name: 'c' is used"),
        ("not toml [", "suite is not valid TOML"),
    ],
)
def test_bad_documents_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + _escape(message)):
        parse_suite(text)


def test_load_suite_names_the_file_and_missing_paths(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL.replace('say = "hello there"', 'audio = "nope.wav"'))
    with pytest.raises(ConfigError, match=r"s\.toml: case\[0\]\.turn\[0\]\.audio: no such file"):
        load_suite(path)
    path.write_text(MINIMAL.replace('name = "s"', 'name = "s"\nscenario = "gone.json"'))
    with pytest.raises(ConfigError, match=r"suite\.scenario: no such file 'gone\.json'"):
        load_suite(path)
    with pytest.raises(ConfigError, match="cannot read the suite"):
        load_suite(tmp_path / "missing.toml")


def test_suites_md_documents_exactly_the_known_keys() -> None:
    import re

    from transports.suite import format as fmt

    doc = (ROOT / "transports" / "suite" / "SUITES.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", doc, re.M))
    known = (fmt._SUITE_KEYS | fmt._TURN_KEYS | fmt._TURN_EXPECT_KEYS | fmt._CASE_EXPECT_KEYS) - {
        "expect",
        "transcript_max_wer",
    }
    assert known <= documented, known - documented
    assert documented <= known | fmt._CASE_KEYS | fmt._DEFAULT_KEYS
    for key in (fmt._CASE_KEYS | fmt._DEFAULT_KEYS) - {"turn", "expect"}:
        assert f"`{key}`" in doc, key
