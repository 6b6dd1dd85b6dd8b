"""The blocking API against a real ``millis-proto serve`` process, on trio and asyncio."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import serve_process

from millis_proto import (
    Connected,
    ConnectionClosed,
    ConnectionFailed,
    FailureKind,
    Ready,
    SessionEnded,
    StartRequest,
)
from transports.blocking import connect_blocking

EXE = str(Path(sys.executable).with_name("millis-proto"))
REQUEST = StartRequest(public_key="local-test-key", agent_id="local-agent")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    scenario = tmp_path_factory.mktemp("scn") / "idle.json"
    scenario.write_text(json.dumps({"idle_timeout_s": 1.0}))  # the agent hangs up after 1 s
    with serve_process("--scenario", str(scenario)) as (url, _):
        yield url


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_blocking_session_runs_to_the_servers_end(url: str, backend: str) -> None:
    before = threading.active_count()
    with connect_blocking(url, REQUEST, backend=backend) as session:
        session.send_audio(bytes(640))
        session.mute()
        session.send_audio(b"\x01" * 640)
        session.unmute()
        session.send_message("custom", {"x": 1})
        events = list(session.events(timeout=10))
        assert session.session_id is not None and session.session_id.startswith("local-")
        assert session.pull_playback(160).pcm == bytes(320)
        session.close()
        session.close()  # idempotent
    kinds = [type(e) for e in events]
    assert Ready in kinds and SessionEnded in kinds
    assert isinstance(events[-1], ConnectionClosed) and events[-1].code == 1000
    assert threading.active_count() == before  # the loop thread is gone


def test_next_event_times_out_and_returns_none_at_the_end(url: str) -> None:
    with connect_blocking(url, REQUEST) as session:
        first = session.next_event(timeout=5)
        assert isinstance(first, Connected)
        assert isinstance(session.next_event(timeout=5), Ready)
        with pytest.raises(TimeoutError):
            session.next_event(timeout=0.05)
        while session.next_event(timeout=10) is not None:
            pass
        assert session.next_event(timeout=1) is None


def test_connection_failure_is_the_same_typed_error() -> None:
    with (
        pytest.raises(ConnectionFailed) as info,
        connect_blocking("ws://127.0.0.1:1/millis", REQUEST),
    ):
        pass
    assert info.value.kind is FailureKind.REFUSED
