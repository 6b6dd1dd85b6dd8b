"""The core's fidelity fixes, shown against an independent server (``websockets``, loopback).

The server is :class:`ScriptedServer`, which shares no code with ``millis_proto``. The client
side is the plain core on a blocking socket (one ``ClientConnection``, no adapter: exactly
what the README shows), the trio transport, or the real CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import read_events
from scripted_server import ScriptedConnection, ScriptedServer
from test_cli_scripted import talk

from millis_proto import (
    ClientConfig,
    ClientConnection,
    CloseInitiator,
    ConfigError,
    ConnectionClosed,
    ConnectionLost,
    Event,
    Ready,
    StartRequest,
    Transcript,
)

REQUEST = StartRequest(public_key="pk-fidelity", agent_id="a")


class RawClient:
    """One ``ClientConnection`` on a blocking socket; waits only as long as ``get_timer()``."""

    def __init__(self, url: str, config: ClientConfig | None = None) -> None:
        self.conn = ClientConnection(
            REQUEST, url, config, wall_clock_offset=time.time() - time.monotonic()
        )
        self.sock = socket.create_connection((self.conn.endpoint.host, self.conn.endpoint.port))
        self.events: list[Event] = []

    def step(self, longest: float = 5.0) -> None:
        conn = self.conn
        self.sock.sendall(conn.data_to_send())
        timer = conn.get_timer()
        wait = longest if timer is None else min(longest, timer - time.monotonic())
        self.sock.settimeout(max(wait, 0.001))
        try:
            conn.receive_data(self.sock.recv(65536), time.monotonic())
        except TimeoutError:
            conn.handle_timer(time.monotonic())
        self.sock.sendall(conn.data_to_send())
        self.events += conn.events()

    def until(self, done: type[Event], seconds: float = 10.0) -> None:
        end = time.monotonic() + seconds
        while not any(isinstance(e, done) for e in self.events):
            assert time.monotonic() < end, f"no {done.__name__} in {seconds} s: {self.events}"
            assert self.conn.closed is None or done is ConnectionClosed, self.events
            self.step()


@contextmanager
def raw_client(url: str, config: ClientConfig | None = None) -> Iterator[RawClient]:
    client = RawClient(url, config)
    try:
        yield client
    finally:
        client.sock.close()


async def ready_transcript_then_wait(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.ws.send('{"method":"ontranscript","data":"no payload here"}')
    await asyncio.sleep(3)


def test_ping_data_is_epoch_ms_and_is_final_absent_is_none() -> None:
    with ScriptedServer(ready_transcript_then_wait) as server, raw_client(server.url) as client:
        client.until(Transcript)
        [transcript] = [e for e in client.events if isinstance(e, Transcript)]
        assert transcript.text == "no payload here" and transcript.is_final is None
        wall_ms = time.time() * 1000
        client.conn.send_ping(time.monotonic())
        client.step(0.05)
        deadline = time.monotonic() + 5
        while not any(m.get("method") == "ping" for m in server.messages if isinstance(m, dict)):
            assert time.monotonic() < deadline, server.messages
            time.sleep(0.01)
        [ping] = [m for m in server.messages if isinstance(m, dict) and m["method"] == "ping"]
        assert isinstance(ping["data"], str) and ping["data"].isdigit()
        assert abs(int(ping["data"]) - wall_ms) < 1000


def test_nan_anywhere_is_a_config_error_and_nothing_is_sent() -> None:
    with pytest.raises(ConfigError, match=r"metadata\.x"):
        StartRequest(public_key="k", agent_id="a", metadata={"x": math.nan})
    with ScriptedServer(ready_transcript_then_wait) as server, raw_client(server.url) as client:
        client.until(Ready)
        with pytest.raises(ConfigError, match=r"data\.score"):
            client.conn.send_message("web_form_response", {"score": math.inf})
        client.conn.send_message("web_form_response", {"score": 1})
        client.step(0.05)
        deadline = time.monotonic() + 5
        while not server.messages:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert server.messages == [{"method": "web_form_response", "data": {"score": 1}}]


async def ready_then_go_deaf(conn: ScriptedConnection) -> None:
    await conn.ready()
    transport = conn.ws.transport
    assert transport is not None
    transport.pause_reading()  # our close frame is never read, never answered
    await asyncio.sleep(5)


def test_close_with_a_silent_peer_ends_by_the_core_timer_alone() -> None:
    config = ClientConfig(disconnect_timeout=0.5)
    with ScriptedServer(ready_then_go_deaf) as server, raw_client(server.url, config) as client:
        client.until(Ready)
        time.sleep(0.1)  # the server has stopped reading by now
        started = time.monotonic()
        client.conn.close(1000, "bye", now=started)
        assert client.conn.get_timer() == pytest.approx(started + 0.5)
        client.until(ConnectionClosed, seconds=5)
        took = time.monotonic() - started
    closed = client.conn.closed
    # The server answered nothing while the session was live: half-open, not a normal end.
    assert closed == ConnectionClosed(
        code=1006,
        reason="the server stopped answering (no reply to our close within 0.5 s)",
        initiator=CloseInitiator.LOST,
    )
    assert isinstance(closed.error(), ConnectionLost)
    assert 0.45 < took < 2.0


async def ready_error_method_then_end(conn: ScriptedConnection) -> None:
    await conn.ready()
    await conn.send("error", data={"message": "a server method named error"})
    await conn.send("closed", data="a server method named closed")
    await conn.send("onsessionended", data={"reason": "done"})


def test_server_messages_in_the_jsonl_carry_source_server(tmp_path: Path) -> None:
    with ScriptedServer(ready_error_method_then_end) as server:
        proc = talk(tmp_path, server.url)
    assert proc.returncode == 0, proc.stderr
    events = read_events(tmp_path / "ev.jsonl")
    [server_error] = [e for e in events if e["event"] == "error"]
    assert server_error["source"] == "server"
    assert server_error["data"] == {"message": "a server method named error"}
    server_closed = [e for e in events if e["event"] == "closed" and "source" in e]
    assert [e["data"] for e in server_closed] == ["a server method named closed"]
    # our own events never say "source": "server"
    ours = [e for e in events if e.get("source") != "server"]
    assert {"closed"} <= {e["event"] for e in ours}
    assert all(e["event"] not in ("onready", "onsessionended") for e in ours)
