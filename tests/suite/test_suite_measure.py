"""Pure pieces: word error rate, played spans, turn measurements, verdict messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from millis_proto import (
    AgentState,
    AgentStateChanged,
    BadMessage,
    Clear,
    FunctionCall,
    Pause,
    ResponseText,
    Transcript,
    event_to_dict,
)
from transports.suite import parse_suite, phrase_error_rate, word_error_rate
from transports.suite.measure import (
    CallLog,
    PlayedBlock,
    TurnLatency,
    Utterance,
    observe_call,
    observe_turn,
    played_spans,
)
from transports.suite.verdicts import evaluate, params_match

words = st.lists(st.sampled_from(["a", "b", "paris", "london", "weather"]), max_size=8)


def test_word_error_rate_counts_edits_over_reference_words() -> None:
    assert word_error_rate("What's the weather in Paris?", "whats the WEATHER in paris") == 0
    assert word_error_rate("the weather in paris", "the weather in london") == 0.25
    assert word_error_rate("the weather", "the weather today") == 0.5
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "x") == 1.0
    assert word_error_rate("a b", "") == 1.0


def test_phrase_error_rate_ignores_the_rest_of_the_transcript() -> None:
    assert phrase_error_rate("weather in Paris", "What's the weather in Paris, today?") == 0
    assert phrase_error_rate("weather in Paris", "the weather in London") == 1 / 3
    assert phrase_error_rate("weather in Paris", "nothing here") == 1.0


@given(words, words)
def test_wer_properties(ref: list[str], hyp: list[str]) -> None:
    r, h = " ".join(ref), " ".join(hyp)
    assert word_error_rate(r, r) == 0
    assert 0 <= phrase_error_rate(r, h) <= word_error_rate(r, h) or not ref
    assert phrase_error_rate(r, h + " " + r) == 0


def test_played_spans_merge_contiguous_blocks_and_cut_partial_ones() -> None:
    blocks = [
        PlayedBlock(0.00, 0, 320),
        PlayedBlock(0.02, 320, 320),
        PlayedBlock(0.04, 320, 320),
        PlayedBlock(0.06, 160, 320),  # the answer ran out 10 ms in
        PlayedBlock(0.08, 0, 320),
        PlayedBlock(0.10, 320, 320),
    ]
    spans = played_spans(blocks)
    assert [(round(s.start, 6), round(s.end, 6)) for s in spans] == [(0.02, 0.07), (0.1, 0.12)]


def _log() -> CallLog:
    log = CallLog()
    log.utterances += [
        Utterance(turn=1, start=1.0, end=2.0, voiced_end=1.9, text="weather in Paris"),
        Utterance(turn=2, start=3.0, end=3.5, voiced_end=3.4, text="stop", barge_in=True),
    ]
    idle, prep, answer = AgentState.IDLE, AgentState.PREPARE_ANSWER, AgentState.ANSWER
    log.events += [
        (2.5, AgentStateChanged(previous=idle, state=prep)),
        (2.5, Transcript(text="the weather in Paris", is_final=True)),
        (2.5, FunctionCall(function="get_weather", params={"city": "Paris", "unit": "c"})),
        (2.5, ResponseText(text="It is", is_final=False)),
        (2.5, ResponseText(text="It is sunny.", is_final=True)),
        (2.6, AgentStateChanged(previous=prep, state=answer)),
        (3.02, Pause()),
        (3.3, Clear(played_samples=1, dropped_samples=2)),
        (3.4, BadMessage(reason="bad json", raw="{")),
    ]
    log.played += [PlayedBlock(2.61 + 0.02 * i, 320, 320) for i in range(21)]  # to 3.03
    log.ended_at = 5.0
    return log


def test_observe_turn_measures_latency_texts_and_calls() -> None:
    turn = observe_turn(_log(), 0)
    assert turn.received_ms == 700.0  # 1.9 -> 2.6
    assert turn.played_ms == 710.0  # 1.9 -> 2.61
    assert turn.heard == "the weather in Paris"
    assert turn.response == "It is sunny."
    assert turn.functions == (("get_weather", {"city": "Paris", "unit": "c"}),)
    assert turn.wer == 1 / 3  # one word more than said


def test_interruption_stop_time_needs_a_pause_or_clear() -> None:
    log = _log()
    turn = observe_turn(log, 1)
    assert turn.interruption_ms == 30.0  # audio played until 3.03, the caller began at 3.0
    log.events = [(t, e) for t, e in log.events if not isinstance(e, (Pause, Clear))]
    turn = observe_turn(log, 1)
    assert turn.interruption_ms is None
    assert "not stopped by a pause or clear" in turn.interruption_note
    log.played = log.played[:5]
    assert "not speaking" in observe_turn(log, 1).interruption_note


def test_verdicts_name_the_case_turn_expectation_and_measured_value() -> None:
    case = parse_suite(
        """
[suite]
name = "s"
[[case]]
name = "weather"
[case.expect]
session_ended = true
[[case.turn]]
say = "weather in Paris"
[case.turn.expect]
function = "get_forecast"
params = { city = "Paris" }
latency_ms = 500
transcript = "weather in Paris"
response_regex = "sunny"
[[case.turn]]
say = "stop"
barge_in_after_ms = 100
[case.turn.expect]
interrupted_within_ms = 20
"""
    ).cases[0]
    verdicts = {(v.turn, v.expectation): v for v in evaluate(case, observe_call(_log()))}
    function = verdicts[(1, "function")]
    assert not function.passed
    assert function.message == (
        "case 'weather', turn 1: function expected 'get_forecast', "
        'measured: onfunction get_weather {"city": "Paris", "unit": "c"}'
    )
    assert verdicts[(1, "latency_ms")].measured == "700 ms"
    assert not verdicts[(1, "latency_ms")].passed
    assert verdicts[(1, "transcript")].passed
    assert verdicts[(1, "response_regex")].passed
    assert not verdicts[(1, "params")].passed  # no get_forecast call to match
    assert verdicts[(2, "interrupted_within_ms")].measured == "30 ms"
    assert not verdicts[(2, "interrupted_within_ms")].passed
    assert not verdicts[(None, "session_ended")].passed
    assert verdicts[(None, "no_bad_message")].measured == "1 (bad json)"


def test_params_match_is_a_recursive_subset() -> None:
    assert params_match({"a": 1}, {"a": 1, "b": 2})
    assert params_match({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}})
    assert not params_match({"a": 1}, {"a": 2})
    assert not params_match({"a": True}, {"a": 1})  # True == 1 in Python; not in JSON
    assert not params_match({"a": 1}, ["a"])


def test_measurements_are_events_with_a_json_form() -> None:
    event = TurnLatency(turn=1, received_ms=600.0, played_ms=610.0)
    assert event_to_dict(event) == {
        "event": "turn_latency",
        "turn": 1,
        "received_ms": 600.0,
        "played_ms": 610.0,
    }
