"""One turn-latency rule for ``talk``, ``Conversation`` and the suites (the meter), fed
live from audio levels or after the call from a suite's exact sample times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audio_backends import AudioLevel
from millis_proto import AgentState, AgentStateChanged
from transports.suite import TurnLatency as SuiteTurnLatency
from transports.suite.measure import CallLog, PlayedBlock, Utterance, observe_turn
from transports.turn_latency import TurnLatency, TurnLatencyMeter

ANSWER = AgentStateChanged(previous=AgentState.IDLE, state=AgentState.ANSWER)
BLOCK = 0.02


def level(source: str, t: float, loud: bool = True) -> AudioLevel:
    dbfs = -20.0 if loud else -70.0
    return AudioLevel(source=source, rms_dbfs=dbfs, peak_dbfs=dbfs, t=t)  # type: ignore[arg-type]


def test_one_event_type_for_every_tool() -> None:
    assert SuiteTurnLatency is TurnLatency and TurnLatency.name == "turn_latency"


def test_received_and_played_from_the_end_of_speech() -> None:
    meter = TurnLatencyMeter()
    meter.speech_ended(1.0)
    meter.answer_started(0.9)  # an answer begun before the speech ended is not this turn's
    meter.answer_started(1.6)
    assert meter.agent_played(1.5) is None  # audio before the answer started: an old one
    assert meter.agent_played(1.61) == TurnLatency(turn=1, received_ms=600.0, played_ms=610.0)
    assert meter.agent_played(1.7) is None  # one measurement a turn
    meter.speech_ended(3.0)  # the user speaks again: turn 2
    meter.answer_started(3.25)
    assert meter.agent_played(3.3) == TurnLatency(turn=2, received_ms=250.0, played_ms=300.0)


def test_more_speech_before_the_answer_moves_the_end() -> None:
    meter = TurnLatencyMeter()
    meter.speech_ended(1.0)
    meter.speech_ended(2.0)
    meter.answer_started(2.5)
    measured = meter.agent_played(2.5)
    assert measured == TurnLatency(turn=1, received_ms=500.0, played_ms=500.0)


def test_the_live_adapters_and_the_suite_measure_the_same_turn() -> None:
    # The same call as the live loop sees it (20 ms level blocks and events on one clock)
    live = TurnLatencyMeter(block_s=BLOCK)
    got = [live.feed(level("user", t / 100)) for t in range(0, 100, 2)]  # speech to 1.0 s
    got.append(live.feed(level("user", 1.0, loud=False)))
    live.event(1.6, ANSWER)
    got += [live.feed(level("agent", 1.58, loud=False)), live.feed(level("agent", 1.62))]
    assert [g for g in got if g is not None] == [
        TurnLatency(turn=1, received_ms=600.0, played_ms=620.0)
    ]
    # ... and as the suite logs it: the same numbers through the same meter.
    log = CallLog(
        events=[(1.6, ANSWER)],
        utterances=[Utterance(turn=1, start=0.0, end=1.2, voiced_end=1.0)],
        played=[PlayedBlock(1.58, 0, 320), PlayedBlock(1.62, 320, 320)],
    )
    turn = observe_turn(log, 0)
    assert (turn.received_ms, turn.played_ms) == (600.0, 620.0)


def test_a_played_block_may_be_stamped_a_block_before_the_answer_event() -> None:
    meter = TurnLatencyMeter(block_s=BLOCK)
    meter.feed(level("user", 0.98))
    meter.event(1.605, ANSWER)  # the event's clock reading, a hair after the block's position
    measured = meter.feed(level("agent", 1.6))
    assert measured is not None and measured.played_ms == 600.0


@given(
    end=st.floats(0, 100),
    answer=st.floats(0, 10),
    plays=st.lists(st.floats(-1, 10), min_size=1, max_size=20),
)
def test_at_most_one_measurement_never_before_the_answer(
    end: float, answer: float, plays: list[float]
) -> None:
    meter = TurnLatencyMeter()
    meter.speech_ended(end)
    meter.answer_started(end + answer)
    measured = [m for p in plays if (m := meter.agent_played(end + p)) is not None]
    assert len(measured) <= 1
    for m in measured:
        assert m.received_ms is not None and m.played_ms is not None
        assert m.played_ms >= m.received_ms - 0.001
        assert abs(m.received_ms - answer * 1000) < 0.01
