"""The local agent under a fake clock: exact server message order for each behaviour.

Audio is fed in 20 ms frames like a real-time client (the clock follows the audio), with
the default setup: 100 ms agent frames sent 200 ms ahead, 300 ms of speech makes a turn,
600 ms of silence ends it, 200 ms of silence ends a cough.
"""

from __future__ import annotations

import json

import pytest
from agent_helpers import Harness, compact, noise, silence

from millis_proto import ClientAudio, CloseInitiator, ConnectionClosed, LocalProtocolError
from millis_proto.agent import (
    AgentPhase,
    AgentSetup,
    FunctionCallSpec,
    MessageSpec,
    Scenario,
    SessionStore,
    TranscriptLine,
    Turn,
    tone_voice,
)
from millis_proto.config import StartRequest
from millis_proto.errors import ConfigError

ECHO_1 = [
    "start_answering",
    "ontranscript final: (user turn 1: 1.00 s of speech)",
    "onresponsetext partial: (echo of",
    "onresponsetext partial: (echo of user turn",
    "onresponsetext final: (echo of user turn 1)",
]


def words_voice(text: str) -> bytes:
    """A fake voice: 100 ms of quiet per word, so durations are easy to reason about."""
    return bytes(3200 * len(text.split()))


def scripted(**fields: object) -> Harness:
    return Harness(AgentSetup(scenario=Scenario(**fields), voice=words_voice))  # type: ignore[arg-type]


def phase(h: Harness) -> AgentPhase:
    """The agent's phase (a call, so mypy does not carry narrowing between checks)."""
    return h.agent.phase


def started(h: Harness) -> Harness:
    h.initiate()
    return h


def test_a_normal_turn() -> None:
    h = started(Harness())
    assert h.log == [(0.0, "onready local-session-1")]
    assert h.agent.get_timer() is None  # nothing is timed while listening without timeouts
    h.clear_log()

    h.speak(noise(1000) + silence(580))
    assert h.log == []  # 20 ms short of the trailing silence
    h.speak(silence(20))
    # Everything at 1.6 s: the turn's end is known at the last frame of trailing silence.
    assert compact(h.lines()) == [*ECHO_1, "audio x3 9600"]  # 0-300 ms: 200 ms ahead
    assert {t for t, _ in h.log} == {1.6}
    assert phase(h) is AgentPhase.TALKING
    assert h.agent.get_timer() == pytest.approx(1.7)

    h.tick_to(5.0)
    times = [t for t, line in h.log if line.startswith("audio")]
    assert times == pytest.approx([1.6, 1.6, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3])
    assert bytes(h.audio) == noise(1000)  # the echo is the user's own utterance
    assert phase(h) is AgentPhase.LISTENING
    assert h.agent.record.turns == 1
    assert h.agent.record.transcript == (
        TranscriptLine(role="user", text="(user turn 1: 1.00 s of speech)"),
        TranscriptLine(role="agent", text="(echo of user turn 1)"),
    )


def test_timer_marks_each_chunk_and_the_end_of_the_answer() -> None:
    h = started(Harness())
    h.speak(noise(1000) + silence(600))
    deadlines = []
    while (timer := h.session.get_timer()) is not None:
        deadlines.append(round(timer, 6))
        h.now = timer
        h.session.on_tick(timer)
        h.drain()
    # One tick per chunk still to send (100 ms apart), then one when playback ends.
    assert deadlines == pytest.approx([1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.6])
    assert bytes(h.audio) == noise(1000)


def answer_two_seconds() -> Harness:
    """Turn 1 is 2 s of speech, so its echo streams from 2.6 s to 4.6 s."""
    h = started(Harness())
    h.speak(noise(2000) + silence(600) + silence(400))  # now 3.0: 400 ms played
    h.clear_log()
    return h


def test_a_cough_pauses_then_unpauses_and_the_answer_goes_on() -> None:
    h = answer_two_seconds()
    h.speak(noise(100, seed=5) + silence(300))
    h.tick_to(6.0)
    marks = [(t, line) for t, line in h.log if not line.startswith("audio")]
    # pause at the cough's first frame; unpause once 200 ms of silence show it was a cough
    assert marks == [(3.02, "pause"), (3.3, "unpause")]
    assert not [t for t, line in h.log if line.startswith("audio") and 3.0 < t < 3.38]
    # The whole answer was sent, nothing lost or repeated: 7 chunks before, 13 after.
    everything = noise(2000)
    assert bytes(h.audio) == everything[7 * 3200 :]
    assert len([1 for _, line in h.log if line.startswith("audio")]) == 13
    # Playback stood still for 280 ms (3.02 → 3.3), so the answer ends at 4.88 s, not 4.6.
    assert phase(h) is AgentPhase.LISTENING
    assert h.agent.record.turns == 1


def test_a_cough_pause_holds_the_playback_clock() -> None:
    h = answer_two_seconds()
    h.speak(noise(100, seed=5))
    assert phase(h) is AgentPhase.PAUSED
    assert h.agent.get_timer() is None  # no chunk is due while paused
    h.speak(silence(200))
    assert phase(h) is AgentPhase.TALKING
    assert h.agent.get_timer() == pytest.approx(3.38)  # resumes at 420 ms of 2000
    h.tick_to(4.87)
    assert phase(h) is AgentPhase.TALKING
    h.tick_to(4.89)
    assert phase(h) is AgentPhase.LISTENING


def test_a_real_interruption_pauses_then_clears_and_the_answer_stops() -> None:
    h = answer_two_seconds()
    interruption = noise(800, seed=9)
    h.speak(interruption + silence(600))
    h.tick_to(8.0)
    lines = compact(h.lines())
    assert lines == [
        "pause",
        "clear",
        "start_answering",
        "ontranscript final: (user turn 2: 0.80 s of speech)",
        "onresponsetext partial: (echo of",
        "onresponsetext partial: (echo of user turn",
        "onresponsetext final: (echo of user turn 2)",
        "audio x8 25600",
    ]
    marks = {line: t for t, line in h.log if line in ("pause", "clear", "start_answering")}
    # pause at the first voiced frame, clear once 300 ms of speech confirm it, and the
    # interruption becomes turn 2 after its 600 ms of trailing silence.
    assert marks == {"pause": 3.02, "clear": 3.3, "start_answering": 4.4}
    assert bytes(h.audio) == interruption  # no frame of the first answer after the clear
    assert h.agent.record.turns == 2


def test_scripted_session_ends_after_its_last_turn() -> None:
    h = scripted(
        turns=(
            Turn(
                transcript="What's the weather in Paris?",
                function_calls=(FunctionCallSpec(name="get_weather", params={"city": "Paris"}),),
                ai_actions=({"step": "tool"},),
                messages=(MessageSpec(method="open_web_form", data={"form": "contact"}),),
                reply="Sunny in Paris",
            ),
            Turn(reply="Goodbye"),
        ),
        end_after_turns=2,
    )
    h.initiate()
    h.speak(noise(500) + silence(600) + silence(400))
    h.speak(noise(500, seed=3) + silence(600) + silence(200))
    h.speak(noise(1000))  # after the end: ignored
    assert compact(h.lines()) == [
        "onready local-session-1",
        "start_answering",
        "ontranscript final: What's the weather in Paris?",
        'onfunction get_weather {"city": "Paris"}',
        'ai_action {"step": "tool"}',
        'open_web_form {"form": "contact"}',
        "onresponsetext partial: Sunny",
        "onresponsetext partial: Sunny in",
        "onresponsetext final: Sunny in Paris",
        "audio x3 9600",
        "start_answering",
        "ontranscript final: (user turn 2: 0.50 s of speech)",
        "onresponsetext final: Goodbye",
        "audio x1 3200",
        'onsessionended {"reason": "end_after_turns"}',
        "close 1000 session ended",
    ]
    # Ended when the last answer (100 ms from 2.6 s) had played out.
    assert h.log[-2][0] == pytest.approx(2.7)
    assert phase(h) is AgentPhase.ENDED
    assert h.agent.end_reason == "end_after_turns"
    assert h.agent.get_timer() is None


def test_interrupting_the_last_answer_still_ends_the_session() -> None:
    h = scripted(turns=(Turn(reply="One two three four five six seven"),), end_after_turns=1)
    h.initiate()
    h.speak(noise(500) + silence(600) + noise(400, seed=4))
    assert compact(h.lines())[-4:] == [
        "pause",
        "clear",
        'onsessionended {"reason": "end_after_turns"}',
        "close 1000 session ended",
    ]


def test_a_turn_with_no_reply_and_no_audio_answers_at_once() -> None:
    h = scripted(
        turns=(Turn(function_calls=(FunctionCallSpec(name="hang_up"),)),), end_after_turns=1
    )
    h.initiate()
    h.speak(noise(500) + silence(600))
    assert h.lines()[1:] == [
        "start_answering",
        "ontranscript final: (user turn 1: 0.50 s of speech)",
        "onfunction hang_up {}",
        'onsessionended {"reason": "end_after_turns"}',
        "close 1000 session ended",
    ]


def test_idle_timeout_counts_only_silent_listening() -> None:
    h = scripted(idle_timeout_s=5)
    h.initiate()
    assert h.agent.get_timer() == 5.0
    h.speak(silence(3000) + noise(1000) + silence(600))  # a turn at 4.6 s: echo until 5.6 s
    h.tick_to(20.0)
    [(t, end)] = [(t, line) for t, line in h.log if line.startswith("onsessionended")]
    assert end == 'onsessionended {"reason": "idle_timeout"}'
    assert t == pytest.approx(10.6)
    assert h.lines()[-1] == "close 1000 session ended"


def test_idle_timeout_with_no_speech_at_all() -> None:
    h = scripted(idle_timeout_s=5)
    h.initiate()
    h.speak(silence(6000))
    assert h.log[-2:] == [
        (5.0, 'onsessionended {"reason": "idle_timeout"}'),
        (5.0, "close 1000 session ended"),
    ]


def test_max_duration_ends_even_mid_answer() -> None:
    h = scripted(max_duration_s=2.0)
    h.initiate()
    h.speak(noise(1000) + silence(600) + silence(1000))
    assert compact(h.lines())[-3:] == [
        # 0-600 ms of the echo; the chunk due at 2.0 s is not sent: the end comes first
        "audio x6 19200",
        'onsessionended {"reason": "max_duration"}',
        "close 1000 session ended",
    ]
    assert h.log[-1][0] == 2.0


def test_session_continuation_resumes_turns_and_transcript() -> None:
    setup = AgentSetup(scenario=Scenario(greeting=Turn(reply="Hello")), voice=words_voice)
    first = Harness(setup)
    first.initiate()
    first.speak(noise(500) + silence(600))
    first.session.feed(
        ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.REMOTE), first.now
    )
    assert first.agent.ended

    second = Harness(setup)
    second.initiate(session_continuation={"session_id": "local-session-1"})
    second.speak(noise(700) + silence(600))
    assert compact(second.lines())[:3] == [
        "onready local-session-2",  # a fresh id, and no greeting on a continued session
        "start_answering",
        "ontranscript final: (user turn 2: 0.70 s of speech)",
    ]
    assert second.agent.continued_from == "local-session-1"
    assert second.agent.record.turns == 2
    assert [line.text for line in second.agent.record.transcript] == [
        "Hello",
        "(user turn 1: 0.50 s of speech)",
        "(echo of user turn 1)",
        "(user turn 2: 0.70 s of speech)",
        "(echo of user turn 2)",
    ]
    assert setup.store.get("local-session-2") == second.agent.record

    third = Harness(setup)
    third.initiate(session_continuation={"session_id": "never-seen"})
    assert compact(third.lines())[:2] == ["onready local-session-3", "onresponsetext final: Hello"]
    assert third.agent.continued_from is None
    assert third.agent.record.turns == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"method": "initiate", "data": {"agent": {"agent_id": "a"}}}, "public_key is missing"),
        ({"method": "initiate", "data": {"public_key": "k"}}, "agent is missing"),
        ({"method": "hello"}, "the first message must be initiate"),
        (b"\x00\x00", "audio arrived before initiate"),
    ],
)
def test_invalid_initiate_closes_with_a_validation_error(
    message: dict[str, object] | bytes, reason: str
) -> None:
    h = Harness()
    h.receive(message if isinstance(message, bytes) else json.dumps(message))
    [(_, line)] = h.log
    assert line.startswith("close 1008 validation error: ")
    assert reason in line
    assert phase(h) is AgentPhase.WAITING
    assert h.agent.get_timer() is None
    h.session.on_tick(10.0)  # nothing to do, nothing raised
    assert h.server.messages_to_send() == []


def test_greeting_is_spoken_without_start_answering() -> None:
    h = Harness(AgentSetup(scenario=Scenario(greeting=Turn(reply="Hi there friend"))))
    h.initiate()
    h.tick_to(2.0)
    greeting = tone_voice("Hi there friend")  # 3 beeps: 540 ms
    assert compact(h.lines()) == [
        "onready local-session-1",
        "onresponsetext partial: Hi",
        "onresponsetext partial: Hi there",
        "onresponsetext final: Hi there friend",
        "audio x6 17280",
    ]
    assert bytes(h.audio) == greeting
    assert h.agent.record.turns == 0
    assert phase(h) is AgentPhase.LISTENING


def test_first_message_of_the_agent_config_is_the_default_greeting() -> None:
    h = Harness(AgentSetup(voice=words_voice))
    h.initiate(agent={"agent_config": {"prompt": "Be brief.", "first_message": "Welcome"}})
    assert compact(h.lines()) == [
        "onready local-session-1",
        "onresponsetext final: Welcome",
        "audio x1 3200",
    ]


def test_scripted_audio_clip_and_echo_turns() -> None:
    clip = noise(250, seed=11) + b"\x01"  # an odd byte is not sent
    scenario = Scenario(
        turns=(Turn(reply="Here is a clip", audio="clip.wav"), Turn(echo=True, reply="Again"))
    )
    h = Harness(AgentSetup(scenario=scenario, clips={"clip.wav": clip}))
    h.initiate()
    h.speak(noise(400) + silence(600))
    h.tick_to(h.now + 1)
    assert bytes(h.audio) == clip[:-1]
    h.clear_log()
    h.speak(noise(600, seed=2) + silence(600))
    h.tick_to(h.now + 1)
    assert "onresponsetext final: Again" in h.lines()
    assert bytes(h.audio) == noise(600, seed=2)


def test_injected_voice_speaks_the_reply() -> None:
    spoken: list[str] = []

    def voice(text: str) -> bytes:
        spoken.append(text)
        return words_voice(text)

    h = Harness(AgentSetup(scenario=Scenario(turns=(Turn(reply="It is sunny"),)), voice=voice))
    h.initiate()
    h.speak(noise(400) + silence(600))
    h.tick_to(h.now + 1)
    assert spoken == ["It is sunny"]
    assert bytes(h.audio) == bytes(9600)


def test_echo_is_bounded() -> None:
    h = Harness(AgentSetup(max_utterance_s=0.5))
    h.initiate()
    h.speak(noise(1000) + silence(600))
    h.tick_to(h.now + 2)
    assert "ontranscript final: (user turn 1: 1.00 s of speech)" in h.lines()
    assert bytes(h.audio) == noise(1000)[:16000]


def test_chunking_and_lead_are_configurable() -> None:
    h = Harness(AgentSetup(chunk_ms=20, send_ahead_ms=0))
    h.initiate()
    h.speak(noise(1000) + silence(600))
    assert compact(h.lines())[-1] == "audio x1 640"  # only the first 20 ms is due
    h.tick_to(h.now + 2)
    assert bytes(h.audio) == noise(1000)


def test_audio_after_the_connection_closed_is_ignored() -> None:
    h = started(Harness())
    h.speak(noise(1000) + silence(600))
    # The wire layer closes the machine before the owner feeds it the batch's events.
    h.server.connection_closed(h.now)
    h.session.feed(ClientAudio(data=noise(100)), h.now + 0.1)
    h.session.on_tick(h.now + 0.5)
    assert h.agent.ended
    assert h.agent.get_timer() is None
    assert h.server.messages_to_send() == []


def test_audio_after_our_own_close_is_ignored() -> None:
    h = scripted(max_duration_s=1.0)
    h.initiate()
    h.speak(silence(1000))
    assert h.server.closing
    h.session.feed(ClientAudio(data=noise(600)), 2.0)
    assert h.lines()[-1] == "close 1000 session ended"


def test_a_second_initiate_is_a_local_error() -> None:
    h = started(Harness())
    with pytest.raises(LocalProtocolError):
        h.agent.on_initiate(StartRequest(public_key="k", agent_id="a"), 1.0)


def test_a_bad_session_id_factory_is_a_config_error() -> None:
    h = Harness(AgentSetup(new_session_id=lambda: ""))
    with pytest.raises(ConfigError, match="new_session_id"):
        h.initiate()


def test_store_is_bounded() -> None:
    store = SessionStore(max_sessions=2)
    setup = AgentSetup(store=store)
    for _ in range(3):
        Harness(setup).initiate()
    assert "local-session-1" not in store
    assert len(store) == 2
    with pytest.raises(ValueError):
        SessionStore(0)
