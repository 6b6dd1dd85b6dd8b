"""The client machine at the message level: initiate, audio framing, pings, server events."""

from __future__ import annotations

import json

import pytest
from core_helpers import REQUEST, types

from millis_proto import (
    AgentAudio,
    AgentState,
    AgentStateChanged,
    AIAction,
    AnswerLatency,
    BadMessage,
    Clear,
    ClientConfig,
    CloseRequest,
    ConfigError,
    FunctionCall,
    LocalProtocolError,
    MessageClient,
    Pause,
    PlaybackFinished,
    PlaybackLatency,
    PlaybackOverflow,
    Pong,
    PreReadyAudio,
    Ready,
    ResponseText,
    SessionEnded,
    SessionPhase,
    SessionReady,
    StartAnswering,
    StartRequest,
    Transcript,
    UnknownMessage,
    Unpause,
)


def started(config: ClientConfig | None = None, request: StartRequest = REQUEST) -> MessageClient:
    # These tests look at every agent frame: ask for the per-frame events (off by default)
    # unless the test says otherwise.
    c = MessageClient(request, config or ClientConfig(emit_audio_events=True))
    c.start(0.0)
    return c


def ready(config: ClientConfig | None = None) -> MessageClient:
    c = started(config)
    c.messages_to_send()
    c.receive_message('{"method":"onready","payload":{"session_id":"s1"}}', 0.0)
    c.events()
    return c


def sent_json(c: MessageClient) -> list[dict[str, object]]:
    return [json.loads(m) for m in c.messages_to_send() if isinstance(m, str)]


# --- initiate ------------------------------------------------------------------------------


def test_initiate_is_first_and_omits_absent_keys() -> None:
    c = MessageClient(REQUEST)
    c.send_message("custom", {"a": 1})  # queued before start, must go after initiate
    assert c.messages_to_send() == []  # nothing leaves before start
    c.start(0.0)
    msgs = sent_json(c)
    assert msgs[0] == {
        "method": "initiate",
        "data": {"public_key": "pk-secret-123", "agent": {"agent_id": "agent-1"}},
    }
    assert msgs[1] == {"method": "custom", "data": {"a": 1}}


def test_initiate_carries_every_option() -> None:
    req = StartRequest(
        public_key="k",
        agent_id="a",
        agent_config={"prompt": "p", "voice": {"provider": "rime", "voice_id": "v"}, "x": [1]},
        metadata={"name": "Ann"},
        include_metadata_in_prompt=True,
        session_id="prev",
        extra={"future_key": 1},
    )
    data = req.to_initiate_data()
    assert data == {
        "public_key": "k",
        "agent": {
            "agent_id": "a",
            "agent_config": {
                "prompt": "p",
                "voice": {"provider": "rime", "voice_id": "v"},
                "x": [1],
            },
        },
        "metadata": {"name": "Ann"},
        "include_metadata_in_prompt": True,
        "session_continuation": {"session_id": "prev"},
        "future_key": 1,
    }
    assert StartRequest.from_initiate_data(data) == req  # the server parses what we send


def test_agent_config_alone_is_a_temporary_agent() -> None:
    data = StartRequest(public_key="k", agent_config={"prompt": "hi"}).to_initiate_data()
    assert data["agent"] == {"agent_config": {"prompt": "hi"}}


def test_public_key_never_in_repr() -> None:
    assert "pk-secret-123" not in repr(REQUEST)
    assert "pk-secret-123" not in repr(MessageClient(REQUEST).request)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"public_key": "", "agent_id": "a"}, "public_key"),
        ({"public_key": "   ", "agent_id": "a"}, "public_key"),
        ({"public_key": None, "agent_id": "a"}, "public_key"),
        ({"public_key": 5, "agent_id": "a"}, "public_key"),
        ({"public_key": "k"}, "agent"),
        ({"public_key": "k", "agent_id": ""}, "agent_id"),
        ({"public_key": "k", "agent_config": []}, "agent_config"),
        ({"public_key": "k", "agent_config": {"prompt": 3}}, "agent_config.prompt"),
        (
            {"public_key": "k", "agent_config": {"voice": {"voice_id": 1}}},
            "agent_config.voice.voice_id",
        ),
        (
            {"public_key": "k", "agent_config": {"tools": [{"params": [{"required": "yes"}]}]}},
            "agent_config.tools[0].params[0].required",
        ),
        ({"public_key": "k", "agent_config": {"llm": 4}}, "agent_config.llm"),
        (
            {"public_key": "k", "agent_config": {"vad_threshold": True}},
            "agent_config.vad_threshold",
        ),
        (
            {"public_key": "k", "agent_config": {"flow": {"interruption": {"allowed": 1}}}},
            "agent_config.flow.interruption.allowed",
        ),
        (
            {"public_key": "k", "agent_config": {"custom_vocabulary": {"keywords": [1]}}},
            "agent_config.custom_vocabulary.keywords[0]",
        ),
        ({"public_key": "k", "agent_id": "a", "metadata": [1]}, "metadata"),
        ({"public_key": "k", "agent_id": "a", "metadata": {"x": object()}}, "metadata"),
        ({"public_key": "k", "agent_id": "a", "metadata": {"x": "y" * 70_000}}, "metadata"),
        (
            {"public_key": "k", "agent_id": "a", "include_metadata_in_prompt": "yes"},
            "include_metadata_in_prompt",
        ),
        ({"public_key": "k", "agent_id": "a", "session_id": ""}, "session_id"),
        ({"public_key": "k", "agent_id": "a", "extra": {"agent": {}}}, "extra"),
        ({"public_key": "k", "agent_id": "a", "extra": []}, "extra"),
    ],
)
def test_invalid_start_request_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        StartRequest(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert field.split("[", maxsplit=1)[0].split(".", maxsplit=1)[0] in message
    if "." in field or "[" in field:
        assert field in message
    assert message.endswith(".")


def test_unknown_agent_config_keys_pass_untouched() -> None:
    cfg = {"prompt": "p", "knowledge_base": {"files": [1]}, "flow": {"voicemail": 7}, "z": None}
    data = StartRequest(public_key="k", agent_config=cfg).to_initiate_data()
    assert data["agent"]["agent_config"] == cfg


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "initiate data"),
        ({"public_key": "k", "agent": 3}, "agent must be an object"),
        (
            {"public_key": "k", "agent": {"agent_id": "a"}, "session_continuation": 1},
            "session_continuation",
        ),
        (
            {"public_key": "k", "agent": {"agent_id": "a"}, "session_continuation": {}},
            "session_continuation.session_id",
        ),
        ({"agent": {"agent_id": "a"}}, "public_key"),
        ({"public_key": "k"}, "agent is missing"),
    ],
)
def test_from_initiate_data_rejects(data: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        StartRequest.from_initiate_data(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pre_ready_buffer_seconds": -1},
        {"chunk_ms": 0},
        {"chunk_ms": 0.01},
        {"chunk_ms": 20.03},
        {"ping_every_packets": -1},
        {"max_playback_seconds": 0},
        {"max_pending_bytes": 0},
        {"pre_ready_audio": "buffer"},
    ],
)
def test_invalid_client_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ClientConfig(**kwargs)  # type: ignore[arg-type]


def test_client_needs_a_start_request() -> None:
    with pytest.raises(ConfigError):
        MessageClient({"public_key": "k"})  # type: ignore[arg-type]


def test_start_twice_is_local_error() -> None:
    c = started()
    with pytest.raises(LocalProtocolError):
        c.start(1.0)


# --- outgoing audio --------------------------------------------------------------------------


def test_odd_bytes_are_carried_to_the_next_call() -> None:
    c = ready()
    c.send_audio(b"\x01\x02\x03", 0)
    c.send_audio(memoryview(b"\x04"), 0)
    c.send_audio(bytearray(b"\x05"), 0)
    c.send_audio(b"\x06\x07\x08", 0)
    assert c.messages_to_send() == [b"\x01\x02", b"\x03\x04", b"\x05\x06\x07\x08"]


def test_rechunking_to_fixed_frames_and_flush() -> None:
    c = ready(ClientConfig(chunk_ms=1))  # 16 samples = 32 bytes
    c.send_audio(bytes(range(50)), 0)
    c.send_audio(bytes(range(50, 71)), 0)  # 71 bytes total: 2 frames + 6 + 1 odd
    frames = c.messages_to_send()
    assert frames == [bytes(range(32)), bytes(range(32, 64))]
    c.flush_audio(0)
    assert c.messages_to_send() == [bytes(range(64, 70))]
    c.flush_audio(0)
    assert c.messages_to_send() == []


def test_mute_keeps_cadence_with_zeros() -> None:
    c = ready()
    c.send_audio(b"\x11" * 640, 0)
    c.mute()
    assert c.muted
    c.send_audio(b"\x22" * 640, 0)
    c.unmute()
    c.send_audio(b"\x33" * 640, 0)
    assert c.messages_to_send() == [b"\x11" * 640, bytes(640), b"\x33" * 640]
    assert c.audio_packets_sent == 3


def test_pre_ready_buffer_keeps_newest_and_flushes_in_order_after_onready() -> None:
    c = started(ClientConfig(pre_ready_buffer_seconds=0.04))  # 1280 bytes
    c.messages_to_send()
    for i in range(4):
        c.send_audio(bytes([i]) * 640, 0)
    assert c.messages_to_send() == []
    assert c.pre_ready_dropped_samples == 640
    c.receive_message('{"method":"onready"}', 0)
    assert c.messages_to_send() == [bytes([2]) * 640, bytes([3]) * 640]


def test_pre_ready_send_policy_sends_right_after_initiate() -> None:
    c = MessageClient(REQUEST, ClientConfig(pre_ready_audio=PreReadyAudio.SEND))
    c.send_audio(b"\x01" * 4, 0)  # before the socket opened: held
    c.start(0)
    c.send_audio(b"\x02" * 4, 0)
    out = c.messages_to_send()
    assert isinstance(out[0], str) and "initiate" in out[0]
    assert out[1:] == [b"\x01" * 4, b"\x02" * 4]


def test_pre_ready_drop_policy() -> None:
    c = started(ClientConfig(pre_ready_audio=PreReadyAudio.DROP))
    c.messages_to_send()
    c.send_audio(b"\x01" * 8, 0)
    c.receive_message('{"method":"onready"}', 0)
    c.send_audio(b"\x02" * 8, 0)
    assert c.messages_to_send() == [b"\x02" * 8]
    assert c.pre_ready_dropped_samples == 4


def test_ping_every_n_packets_and_rtt_from_pong() -> None:
    c = ready(ClientConfig(ping_every_packets=3))
    for i in range(7):
        c.send_audio(b"\0\0", 10.0 + i)
    out = c.messages_to_send()
    pings = [json.loads(m) for m in out if isinstance(m, str)]
    assert pings == [{"method": "ping", "data": "12000"}, {"method": "ping", "data": "15000"}]
    assert out.index('{"method":"ping","data":"12000"}') == 3  # right after the 3rd packet
    c.receive_message('{"method":"pong","data":"12000"}', 12.25)
    c.receive_message('{"method":"pong","data":15000}', 15.5)  # numeric echo accepted
    c.receive_message('{"method":"pong","data":"12000"}', 13)  # already answered
    c.receive_message('{"method":"pong"}', 13)  # someone else's ping
    pongs = [e for e in c.events() if isinstance(e, Pong)]
    assert [p.rtt_ms for p in pongs] == [250.0, 500.0, None, None]


def test_pings_disabled_and_outstanding_pings_bounded() -> None:
    c = ready(ClientConfig(ping_every_packets=0))
    for _ in range(50):
        c.send_audio(b"\0\0", 0)
    assert all(isinstance(m, bytes) for m in c.messages_to_send())
    for i in range(100):
        c.send_ping(float(i))
    c.messages_to_send()
    c.receive_message('{"method":"pong","data":"0"}', 200.0)  # evicted (oldest)
    c.receive_message('{"method":"pong","data":"99000"}', 99.5)
    assert [e.rtt_ms for e in c.events() if isinstance(e, Pong)] == [None, 500.0]


def test_custom_message_and_its_errors() -> None:
    c = ready()
    c.send_message("web_form_response", {"ok": True})
    c.send_message("bare")
    assert c.messages_to_send() == [
        '{"method":"web_form_response","data":{"ok":true}}',
        '{"method":"bare"}',
    ]
    with pytest.raises(ConfigError, match="JSON"):
        c.send_message("x", {1, 2})
    with pytest.raises(ConfigError):
        c.send_message("")
    with pytest.raises(ConfigError):
        c.send_message("initiate", {})


def test_nothing_accepted_after_close() -> None:
    c = ready()
    c.close(1000, "bye")
    c.close()  # idempotent
    assert c.messages_to_send() == [CloseRequest(1000, "bye")]
    for call in (
        lambda: c.send_audio(b"\0\0", 0),
        lambda: c.send_message("m"),
        lambda: c.send_ping(0),
        lambda: c.flush_audio(0),
    ):
        with pytest.raises(LocalProtocolError, match="closed"):
            call()
    c.connection_closed(1.0)
    c.connection_closed(1.0)
    assert c.phase is SessionPhase.CLOSED
    with pytest.raises(LocalProtocolError):
        c.receive_message('{"method":"pause"}', 2.0)


def test_pending_bound_raises_when_transport_does_not_drain() -> None:
    c = ready(ClientConfig(max_pending_bytes=1000))
    c.send_audio(bytes(640), 0)
    with pytest.raises(LocalProtocolError, match="draining"):
        c.send_audio(bytes(640), 0)
    assert c.messages_to_send() == [bytes(640)]  # the machine is unchanged


# --- incoming messages -----------------------------------------------------------------------


def test_every_server_message_becomes_a_typed_event() -> None:
    c = started()
    msgs = [
        '{"method":"onready","payload":{"session_id":"abc"}}',
        '{"method":"ontranscript","data":"hi","payload":{"is_final":true}}',
        '{"method":"ontranscript","data":"h"}',
        '{"method":"onresponsetext","data":"Hel","payload":{"is_final":false}}',
        '{"method":"onfunction","data":"","payload":{"name":"get_weather","params":{"city":"Paris"}}}',
        '{"method":"onfunction","data":{"name":"f2"}}',
        '{"method":"onfunction","payload":{"name":"f3","params":5}}',
        '{"method":"ai_action","data":{"step":[1,2]}}',
        '{"method":"open_web_form","data":{"form":"x"},"payload":7}',
        '{"method":"onsessionended","data":{"reason":"done"}}',
    ]
    for m in msgs:
        c.receive_message(m, 0)
    ev = [e for e in c.events() if not isinstance(e, AgentStateChanged)]
    assert ev == [
        Ready(session_id="abc", payload={"session_id": "abc"}),
        Transcript(text="hi", is_final=True, payload={"is_final": True}),
        Transcript(text="h", is_final=None),  # absent is not False
        ResponseText(text="Hel", is_final=False, payload={"is_final": False}),
        FunctionCall(
            function="get_weather",
            params={"city": "Paris"},
            data="",
            payload={"name": "get_weather", "params": {"city": "Paris"}},
        ),
        FunctionCall(function="f2", params={}, data={"name": "f2"}),
        FunctionCall(function="f3", params={"value": 5}, payload={"name": "f3", "params": 5}),
        AIAction(data={"step": [1, 2]}),
        UnknownMessage(method="open_web_form", data={"form": "x"}, payload=7),
        SessionEnded(data={"reason": "done"}),
    ]
    assert c.session_id == "abc"
    assert c.messages_to_send()[-1] == CloseRequest(1000, "session ended")


def test_session_end_without_auto_close() -> None:
    c = ready(ClientConfig(close_on_session_end=False))
    c.receive_message('{"method":"onsessionended"}', 0)
    assert c.messages_to_send() == []
    assert not c.closing


def test_onready_session_id_in_data_or_absent() -> None:
    c = started()
    c.receive_message('{"method":"onready","data":{"session_id":"d1"}}', 0)
    c2 = started()
    c2.receive_message('{"method":"onready"}', 0)
    assert c.session_id == "d1"
    assert c2.session_id is None
    assert [e for e in c2.events() if isinstance(e, Ready)] == [Ready(session_id=None)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1,2]", "JSON array, not an object"),
        ('"s"', "JSON string"),
        ("{}", "no 'method'"),
        ('{"method":5}', "'method' is a number"),
        ('{"method":null}', "'method' is a null"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_text_becomes_bad_message_and_session_goes_on(text: str, reason: str) -> None:
    c = ready()
    c.receive_message(text, 0)
    c.receive_message('{"method":"ontranscript","data":"still here"}', 0)
    ev = c.events()
    assert isinstance(ev[0], BadMessage)
    assert reason in ev[0].reason
    assert ev[0].raw == text
    assert ev[1] == Transcript(text="still here", is_final=None)


@pytest.mark.parametrize(
    ("text", "expected", "bad"),
    [
        # a number is readable text: the event only, as the SDK passes it on
        ('{"method":"ontranscript","data":5}', Transcript(text="5", is_final=None, data=5), None),
        (
            '{"method":"ontranscript","data":true,"payload":{"is_final":true}}',
            Transcript(text="true", is_final=True, payload={"is_final": True}, data=True),
            None,
        ),
        # an array has no text: the event with text None and the raw data, and a BadMessage
        (
            '{"method":"onresponsetext","data":[]}',
            ResponseText(text=None, is_final=None, data=[]),
            "onresponsetext: data must be text",
        ),
        (
            '{"method":"onresponsetext","data":{"t":1},"payload":{"is_final":false}}',
            ResponseText(text=None, is_final=False, payload={"is_final": False}, data={"t": 1}),
            "onresponsetext: data must be text",
        ),
        # onfunction with no name passes through (the SDK does)
        (
            '{"method":"onfunction","payload":{"params":{}}}',
            FunctionCall(function=None, params={}, payload={"params": {}}),
            None,
        ),
    ],
)
def test_odd_text_messages_are_read_liberally(text: str, expected: object, bad: str | None) -> None:
    c = ready()
    c.receive_message(text, 0)
    ev = c.events()
    assert ev[0] == expected
    if bad is None:
        assert len(ev) == 1
    else:
        assert len(ev) == 2 and isinstance(ev[1], BadMessage)
        assert bad in ev[1].reason and ev[1].raw == text


def test_agent_state_latency_and_playback_flow() -> None:
    c = ready(ClientConfig(drain_grace_ms=0, emit_audio_events=True))  # the SDK's behaviour
    c.receive_message('{"method":"start_answering"}', 1.0)
    c.receive_message(b"\x01\x00" * 160, 1.25)
    c.receive_message(b"\x02\x00" * 160, 1.3)
    ev = c.events()
    assert ev == [
        StartAnswering(),
        AgentStateChanged(previous=AgentState.IDLE, state=AgentState.PREPARE_ANSWER),
        AgentAudio(data=b"\x01\x00" * 160),
        AnswerLatency(ms=250.0),
        AgentStateChanged(previous=AgentState.PREPARE_ANSWER, state=AgentState.ANSWER),
        AgentAudio(data=b"\x02\x00" * 160),
    ]
    chunk = c.pull_playback(200, 1.5)
    assert chunk.real_samples == 200
    assert c.events() == [PlaybackLatency(ms=500.0)]
    chunk = c.pull_playback(200, 1.6)
    assert chunk.real_samples == 120
    assert chunk.pcm == b"\x02\x00" * 120 + bytes(160)
    assert c.events() == [
        PlaybackFinished(),
        AgentStateChanged(previous=AgentState.ANSWER, state=AgentState.IDLE),
    ]


def test_pause_unpause_clear_drive_buffer_and_state() -> None:
    c = ready()
    c.receive_message(b"\x01\x00" * 100, 0)  # greeting: idle -> answer without start_answering
    c.receive_message('{"method":"pause"}', 0)
    c.receive_message(b"\x02\x00" * 100, 0)  # kept while paused
    assert c.pull_playback(50, 0).real_samples == 0
    c.receive_message('{"method":"unpause"}', 0)
    assert c.pull_playback(150, 0).pcm == b"\x01\x00" * 100 + b"\x02\x00" * 50
    c.receive_message('{"method":"pause"}', 0)
    c.receive_message('{"method":"clear"}', 0)
    assert not c.playback.paused  # clear lifts the pause (fix vs the SDK)
    assert c.pull_playback(10, 0).real_samples == 0
    states = [e.state for e in c.events() if isinstance(e, AgentStateChanged)]
    assert states == [
        AgentState.ANSWER,
        AgentState.PAUSE,
        AgentState.ANSWER,
        AgentState.PAUSE,
        AgentState.IDLE,
    ]
    assert [type(e) for e in c.events()] == []
    c.receive_message('{"method":"pause"}', 0)
    c.receive_message('{"method":"unpause"}', 0)
    c.receive_message('{"method":"clear"}', 0)
    assert types_of(c) == [
        "Pause",
        "AgentStateChanged",
        "Unpause",
        "AgentStateChanged",
        "Clear",
        "AgentStateChanged",
    ]


def test_drain_grace_avoids_answer_idle_flapping() -> None:
    c = ready(ClientConfig(drain_grace_ms=10))  # 160 samples of silence
    c.receive_message(b"\1\0" * 100, 0)
    c.pull_playback(150, 0)  # drains, 50 samples of silence
    c.receive_message(b"\1\0" * 100, 0.02)  # next frame arrives: the count restarts
    c.pull_playback(150, 0.02)
    c.pull_playback(100, 0.04)  # 50 + 100 = 150 < 160: still answering
    assert c.agent_state is AgentState.ANSWER
    c.pull_playback(10, 0.05)  # 160: finished
    assert c.agent_state is AgentState.IDLE
    states = [e.state for e in c.events() if isinstance(e, AgentStateChanged)]
    assert states == [AgentState.ANSWER, AgentState.IDLE]  # no flapping in between
    with pytest.raises(ConfigError):
        ClientConfig(drain_grace_ms=-1)


def test_clear_reports_what_was_heard_and_what_was_dropped() -> None:
    c = ready()
    c.receive_message('{"method":"start_answering"}', 0)
    c.receive_message(b"\1\0" * 500, 0)
    c.pull_playback(120, 0)
    c.pull_playback(80, 0)
    c.receive_message('{"method":"pause"}', 0)
    c.receive_message(b"\1\0" * 11 + b"\1", 0)  # an odd byte is not a sample
    c.receive_message('{"method":"clear"}', 0)
    clears = [e for e in c.events() if isinstance(e, Clear)]
    assert clears == [Clear(played_samples=200, dropped_samples=311)]
    c.receive_message(b"\2\0" * 50, 1)  # the next answer starts counting from zero
    c.pull_playback(30, 1)
    c.receive_message('{"method":"clear"}', 1)
    assert [e for e in c.events() if isinstance(e, Clear)] == [
        Clear(played_samples=30, dropped_samples=20)
    ]


def types_of(c: MessageClient) -> list[str]:
    return types(c.events())


def test_session_ready_needs_onready_and_first_audio_either_order() -> None:
    c = started(ClientConfig(pre_ready_audio=PreReadyAudio.SEND))
    c.send_audio(b"\0\0", 0)
    assert not any(isinstance(e, SessionReady) for e in c.events())
    c.receive_message('{"method":"onready","payload":{"session_id":"x"}}', 0)
    assert c.events()[-1] == SessionReady(session_id="x")
    c2 = ready()  # onready first
    c2.send_audio(b"\0\0", 0)
    c2.send_audio(b"\0\0", 0)
    assert c2.events() == [SessionReady(session_id="s1")]


def test_playback_overflow_is_reported() -> None:
    c = ready(ClientConfig(max_playback_seconds=0.01, emit_audio_events=False))  # 160 samples
    c.receive_message(b"\0\0" * 100, 0)
    c.receive_message(b"\0\0" * 100, 0)
    ev = [e for e in c.events() if isinstance(e, PlaybackOverflow)]
    assert ev == [PlaybackOverflow(dropped_samples=40, capacity_samples=160)]
    assert c.playback.queued_samples == 160


def test_connection_closed_stops_and_keeps_goodbye_playable() -> None:
    c = ready()
    c.receive_message(b"\x05\x00" * 10, 0)
    c.send_audio(b"\0\0", 0)
    c.connection_closed(1.0)
    assert c.messages_to_send() == []
    assert c.agent_state is AgentState.IDLE
    assert c.pull_playback(10, 1.0).pcm == b"\x05\x00" * 10
    assert isinstance(c.events()[-1], AgentStateChanged)


def test_unknown_method_named_by_itself_in_dict() -> None:
    from millis_proto import event_to_dict

    d = event_to_dict(UnknownMessage(method="open_web_form", data={"a": 1}))
    assert d == {"event": "open_web_form", "source": "server", "data": {"a": 1}, "payload": None}
    assert event_to_dict(AgentAudio(data=b"1234")) == {"event": "agent_audio", "bytes": 4}
    assert event_to_dict(Pause()) == {"event": "pause", "source": "server"}
    assert event_to_dict(Clear())["event"] == "clear"
    assert event_to_dict(Unpause())["event"] == "unpause"
    st = event_to_dict(AgentStateChanged(previous=AgentState.IDLE, state=AgentState.ANSWER))
    assert st == {"event": "agent_state", "previous": "idle", "state": "answer"}


def test_event_to_dict_redacts_the_public_key() -> None:
    from millis_proto import InitiateReceived, event_to_dict

    data = REQUEST.to_initiate_data()
    record = event_to_dict(InitiateReceived(request=REQUEST, data=data))
    assert "pk-secret-123" not in json.dumps(record)
    assert record["data"]["public_key"] == "***"
    assert data["public_key"] == "pk-secret-123"  # the event itself is untouched


def test_initiate_event_repr_hides_the_public_key() -> None:
    from millis_proto import InitiateReceived

    event = InitiateReceived(request=REQUEST, data=REQUEST.to_initiate_data())
    assert "pk-secret-123" not in repr(event)
