"""The two hangs of issue 10, against real misbehaving servers on loopback (raw sockets).

* A server that stops reading while it floods WebSocket pings: our pongs and audio pile
  up; the write that makes no progress for ``write_timeout`` ends the session with
  ``ConnectionLost`` — no lock is held across it, no audio silently disappears.
* A half-open server (handshake done, then silent, socket never closed): after
  ``liveness_timeout`` with no byte we send a Millis ping, and ``pong_timeout`` later the
  session ends with ``ConnectionLost`` ("the server stopped answering").

Library-level with short bounds on the native transports; the CLI runs (``talk`` exits 1
with one sentence, within the default bounds) are marked slow.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_helpers import run
from conftest import FLAVORS, NATIVE
from raw_peers import read_head

from millis_proto import ClientConfig, ConnectionLost, StartRequest

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BadServer:
    """A one-connection WebSocket server on a raw socket that misbehaves after the handshake.

    ``mode`` is ``"flood"`` (never read again, send pings as fast as the socket takes
    them), ``"silent"`` (never read, never send, never close) or ``"ready_silent"``
    (send ``onready``, then the same silence: a server that vanished mid-session).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/millis"
        self.stop = threading.Event()
        self.pings = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(30)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            head = read_head(conn)
            if head is None:
                return
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            if self.mode == "ready_silent":
                conn.sendall(_text_frame(READY_MESSAGE))
            if self.mode == "flood":
                ping = struct.pack("!BB", 0x89, 125) + bytes(125)
                conn.settimeout(0.2)
                while not self.stop.is_set():
                    try:
                        conn.sendall(ping * 64)
                        self.pings += 64
                    except TimeoutError:
                        continue  # the client stopped reading too: keep trying
                    except OSError:
                        return
            self.stop.wait(60)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(10)


#: What the ``ready_silent`` server says before it goes silent.
READY_MESSAGE = json.dumps({"method": "onready", "payload": {"session_id": "half-open"}})


def _text_frame(text: str) -> bytes:
    """One unmasked (server-to-client) text frame."""
    payload = text.encode()
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, len(payload)) + payload


@pytest.fixture
def bad_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    servers: list[BadServer] = []

    def make(mode: str) -> BadServer:
        servers.append(BadServer(mode))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture(params=sorted(NATIVE))
def native(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(native: str) -> str:
    return FLAVORS[native][0]


REQUEST = StartRequest(public_key="test-key", agent_id="agent")


async def _read_all(session: Any) -> None:
    async for _ in session:
        pass


async def _stream_audio(session: Any) -> None:
    while True:  # an app streaming audio, with its own pacing
        await session.send_audio(bytes(6400))
        await anyio.sleep(0.002)


@pytest.mark.anyio
async def test_flooding_server_that_stops_reading_is_a_lost_connection(
    native: str, bad_server: Any
) -> None:
    server = bad_server("flood")
    connect = FLAVORS[native][1]
    started = anyio.current_time()
    with anyio.fail_after(30):
        async with connect(server.url, REQUEST, write_timeout=1.0) as session:
            with pytest.raises(ConnectionLost, match=r"made no progress for 1 s|could not be"):
                await _stream_audio(session)
            assert session.closed is not None and session.closed.code == 1006
            reported = session.dropped_audio_samples
    assert anyio.current_time() - started < 25
    assert server.pings > 0
    # What could not go out was counted, not swallowed (it may be none if the write
    # stalled before the backlog filled).
    assert reported >= 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["silent", "ready_silent"])
async def test_half_open_server_is_noticed_by_the_liveness_check(
    native: str, bad_server: Any, mode: str
) -> None:
    """Silent from the handshake on, or from ``onready`` on: the same liveness bound."""
    server = bad_server(mode)
    connect = FLAVORS[native][1]
    config = ClientConfig(liveness_timeout=0.5, pong_timeout=0.5)
    with anyio.fail_after(10):
        async with connect(server.url, REQUEST, config=config) as session:
            if mode == "ready_silent":
                await session.wait_ready()
            silent_since = anyio.current_time()
            with pytest.raises(ConnectionLost, match=r"^The server stopped answering\.$"):
                await _read_all(session)
    assert session.session_id == ("half-open" if mode == "ready_silent" else None)
    assert 0.9 <= anyio.current_time() - silent_since < 5  # liveness 0.5 s + pong 0.5 s
    assert session.closed is not None and session.closed.code == 1006


@pytest.mark.anyio
async def test_close_a_ready_then_silent_server_never_answers_is_a_lost_connection(
    native: str, bad_server: Any
) -> None:
    """Our close (a hang-up) unanswered while the session was live: ``ConnectionLost``."""
    server = bad_server("ready_silent")
    connect = FLAVORS[native][1]
    with anyio.fail_after(10):
        async with connect(server.url, REQUEST, disconnect_timeout=0.5) as session:
            await session.wait_ready()
            started = anyio.current_time()
            await session.aclose()  # never raises: the end is reported by the events
            took = anyio.current_time() - started
            with pytest.raises(ConnectionLost, match=r"no reply to our close within 0\.5 s"):
                await _read_all(session)
    assert 0.45 <= took < 3
    closed = session.closed
    assert closed is not None and closed.code == 1006 and not closed.normal
    with pytest.raises(ConnectionLost):
        await session.send_audio(bytes(640))


@pytest.mark.anyio
async def test_liveness_end_abandons_a_write_the_silent_server_never_reads(
    native: str, bad_server: Any
) -> None:
    """An app streams audio into a ready-then-silent server until the socket buffers are
    full and a write blocks. The liveness check ends the session; the blocked write must
    not keep ``connect``'s block open (the server would hold it for 60 s)."""
    server = bad_server("ready_silent")
    connect = FLAVORS[native][1]
    config = ClientConfig(liveness_timeout=2.5, pong_timeout=0.5)
    with anyio.fail_after(12):
        async with connect(server.url, REQUEST, config=config, write_timeout=30) as session:
            await session.wait_ready()
            started = anyio.current_time()
            with pytest.raises(ConnectionLost, match=r"^The server stopped answering\.$"):
                await _stream_audio(session)
        took = anyio.current_time() - started
    assert session.dropped_audio_samples > 0  # the buffers were full: a write was blocked
    assert 2.9 <= took < 6


def _wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(bytes(int(seconds * 16000) * 2))
    return path


def _talk(url: str, wav: Path, *extra: str, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = run(
        "talk", "--endpoint", url, "--agent-id", "a", "--plain", "--input", str(wav),
        "--output", str(wav.with_name("out.wav")), *extra,
        timeout=timeout, env={"MILLIS_PUBLIC_KEY": "test-key"},
    )  # fmt: skip
    return proc.returncode, proc.stderr, time.monotonic() - started


@pytest.mark.slow
def test_talk_exits_1_against_a_flooding_server(bad_server: Any, tmp_path: Path) -> None:
    server = bad_server("flood")
    wav = _wav(tmp_path / "in.wav", 20)
    rc, stderr, elapsed = _talk(server.url, wav, "--max-duration", "15", timeout=60)
    assert rc == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert any(re.search("made no progress for 10 s|could not be written", x) for x in lines), (
        stderr
    )
    assert "Traceback" not in stderr
    assert elapsed < 40  # the write bound (10 s) once the buffers are full


@pytest.mark.slow
def test_talk_exits_1_against_a_half_open_server(bad_server: Any, tmp_path: Path) -> None:
    server = bad_server("silent")
    wav = _wav(tmp_path / "in.wav", 3)
    # The default idle timeout (3 s) must not end this call as normal: the server never
    # sent onready, so only the liveness check can end it, with exit 1.
    rc, stderr, elapsed = _talk(server.url, wav, "--max-duration", "60", timeout=90)
    assert rc == 1, stderr
    assert "stopped answering" in stderr
    assert "Traceback" not in stderr
    assert 14 <= elapsed < 30  # liveness 10 s + pong 5 s


def test_talk_exits_1_when_its_hang_up_to_a_ready_then_silent_server_goes_unanswered(
    bad_server: Any, tmp_path: Path
) -> None:
    """The server said onready, then vanished (socket open, nothing answered).

    The idle hang-up fires (input done, agent idle), our close is never answered, and the
    close-reply bound (5 s) ends the call: exit 1 with one sentence, not "idle" with 0.
    """
    server = bad_server("ready_silent")
    wav = _wav(tmp_path / "in.wav", 1)
    events = tmp_path / "ev.jsonl"
    rc, stderr, elapsed = _talk(
        server.url, wav, "--idle-timeout", "1", "--events", str(events), timeout=60
    )
    assert rc == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "stopped answering" in lines[0] and "no reply to our close within 5 s" in lines[0]
    assert "test-key" not in stderr
    # input 1 s + idle 1 s + the 5 s close bound, plus start-up; never the 60 s default
    assert 6.5 <= elapsed < 20, elapsed
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert written[-1]["event"] == "error" and "stopped answering" in written[-1]["message"]
    assert not any(e["event"] == "finished" for e in written)
    with wave.open(str(tmp_path / "out.wav"), "rb") as out:  # finalized, valid
        assert out.getframerate() == 16000


@pytest.mark.slow
def test_talk_exits_1_when_a_ready_then_silent_server_fails_the_liveness_check(
    bad_server: Any, tmp_path: Path
) -> None:
    """No hang-up comes first (a long idle timeout): the liveness check ends the call."""
    server = bad_server("ready_silent")
    wav = _wav(tmp_path / "in.wav", 1)
    rc, stderr, elapsed = _talk(server.url, wav, "--idle-timeout", "60", timeout=90)
    assert rc == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["millis-proto: The server stopped answering."], stderr
    assert 14 <= elapsed < 30  # liveness 10 s + pong 5 s


# --- the same bounds set from the command line (short, so in the default run) -------------


def test_talk_liveness_flags_end_a_half_open_call_within_their_bounds(
    bad_server: Any, tmp_path: Path
) -> None:
    """``--liveness-timeout`` and ``--pong-timeout`` are the bounds ``talk`` keeps to."""
    server = bad_server("silent")
    wav = _wav(tmp_path / "in.wav", 3)
    rc, stderr, elapsed = _talk(
        server.url, wav, "--liveness-timeout", "1", "--pong-timeout", "0.5", timeout=60
    )
    assert rc == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["millis-proto: The server stopped answering."], stderr
    assert 1.5 <= elapsed < 10, elapsed  # liveness 1 s + pong 0.5 s, plus start-up


def test_talk_liveness_flags_after_onready_finalize_the_files(
    bad_server: Any, tmp_path: Path
) -> None:
    """Ready, then silent, and no hang-up comes first: the flags' bound ends the call, the
    event log ends with the error and the WAV is finalized."""
    server = bad_server("ready_silent")
    wav = _wav(tmp_path / "in.wav", 1)
    events = tmp_path / "ev.jsonl"
    rc, stderr, elapsed = _talk(
        server.url, wav, "--idle-timeout", "60", "--liveness-timeout", "1.5",
        "--pong-timeout", "0.5", "--events", str(events), timeout=60,
    )  # fmt: skip
    assert rc == 1, stderr
    assert [x for x in stderr.splitlines() if x.strip()] == [
        "millis-proto: The server stopped answering."
    ], stderr
    assert 2 <= elapsed < 12, elapsed
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(e["event"] == "onready" for e in written), written
    assert written[-1]["event"] == "error" and "stopped answering" in written[-1]["message"]
    with wave.open(str(tmp_path / "out.wav"), "rb") as out:
        assert out.getframerate() == 16000 and out.getnchannels() == 1


def test_talk_write_timeout_flag_ends_a_call_to_a_server_that_stops_reading(
    bad_server: Any, tmp_path: Path
) -> None:
    server = bad_server("flood")
    wav = _wav(tmp_path / "in.wav", 30)
    rc, stderr, elapsed = _talk(
        server.url, wav, "--write-timeout", "1", "--max-duration", "25", timeout=60
    )
    assert rc == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert re.search(r"made no progress for 1 s|could not be written", lines[0]), stderr
    assert elapsed < 20, elapsed  # never the 25 s cap: the write bound ended it


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--liveness-timeout", "-1", "--liveness-timeout must be 0 or more seconds."),
        ("--pong-timeout", "0", "--pong-timeout must be more than 0 seconds."),
        ("--write-timeout", "nan", "--write-timeout must be more than 0 seconds."),
        ("--connect-timeout", "inf", "--connect-timeout must be more than 0 seconds."),
        ("--pong-timeout", "1e9", "--pong-timeout must be at most 86400 seconds."),
    ],
)
def test_bad_bounds_flags_exit_2_with_one_sentence(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    wav = _wav(tmp_path / "in.wav", 0.1)
    rc, stderr, _ = _talk("ws://127.0.0.1:9/millis", wav, flag, value, timeout=60)
    assert rc == 2
    assert stderr.strip() == f"millis-proto: {message}", stderr


def test_connect_timeout_flag_bounds_a_server_that_never_answers_the_handshake(
    tmp_path: Path,
) -> None:
    """A listener that accepts and never answers: ``--connect-timeout`` is the bound."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/millis"
        wav = _wav(tmp_path / "in.wav", 1)
        rc, stderr, elapsed = _talk(url, wav, "--connect-timeout", "1", timeout=60)
    assert rc == 1, stderr
    assert len([x for x in stderr.splitlines() if x.strip()]) == 1, stderr
    assert "1 s" in stderr and "Traceback" not in stderr
    assert elapsed < 8, elapsed


def test_test_and_load_take_the_same_bounds(bad_server: Any, tmp_path: Path) -> None:
    """``test`` fails its case and ``load`` counts the lost call, within the flags' bounds."""
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\n[[case]]\nname = "c"\n[[case.turn]]\nsay = "Hi."\n')
    server = bad_server("silent")
    started = time.monotonic()
    proc = run(
        "test", str(suite), "--endpoint", server.url, "--plain",
        "--liveness-timeout", "1", "--pong-timeout", "0.5", timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert "FAIL c" in proc.stdout and "stopped answering" in proc.stdout, proc.stdout
    assert took < 20, took

    server = bad_server("silent")
    started = time.monotonic()
    proc = run(
        "load", "--endpoint", server.url, "--sessions", "1", "--plain",
        "--connect-timeout", "30", "--liveness-timeout", "1", "--pong-timeout", "0.5",
        timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "ConnectionLost" in proc.stdout + proc.stderr, proc.stdout
    assert took < 20, took
