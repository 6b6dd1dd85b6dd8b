"""A real ``millis-proto serve`` process against hostile and idle clients (issue 11).

Raw sockets play the bad clients — 200 that upgrade and never send ``initiate``, some that
never finish the handshake, more than ``--max-sessions``, non-ASCII handshakes, an
``initiate`` pipelined behind a 70 KiB handshake — while a well-behaved ``talk`` session
runs at the same time and must complete; the listener must survive all of it.
"""

from __future__ import annotations

import selectors
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import DEMO_WAV, EXE, cli_env
from serve_helpers import serve_process

from millis_proto import ClientConnection, ServerConnection, StartRequest

HANDSHAKE = (
    b"GET /millis HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
IDLE_CLIENTS = 200


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def _talk(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    """A well-behaved session: the demo speech, then idle; exits 0 when it went well."""
    return subprocess.Popen(
        [
            EXE, "talk", "--endpoint", url, "--plain", "--input", str(DEMO_WAV),
            "--output", str(tmp_path / "o.wav"), "--events", str(tmp_path / "e.jsonl"),
            "--idle-timeout", "1", "--max-duration", "40",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    data = b""
    sock.settimeout(timeout)
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _close_frame(data: bytes) -> tuple[int, str] | None:
    """(code, reason) of the first close frame in server-to-client ``data``, if any."""
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = struct.unpack(">H", data[i : i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack(">Q", data[i : i + 8])[0], i + 8
        payload = data[i : i + n]
        i += n
        if opcode == 0x8 and len(payload) >= 2:
            return struct.unpack(">H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
    return None


@contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_idle_connections_are_closed_while_a_session_completes(tmp_path: Path) -> None:
    with (
        serve_process("--quiet", "--initiate-timeout", "2", "--handshake-timeout", "2") as (
            url,
            server,
        ),
        _sockets() as idle,
    ):
        port = _port(url)
        talk = _talk(url, tmp_path)
        for _ in range(IDLE_CLIENTS):
            sock = _connect(port)
            sock.sendall(HANDSHAKE)  # ... and never an initiate
            idle.append(sock)
        silent = [_connect(port) for _ in range(20)]  # never even a handshake
        idle_start = time.monotonic()
        closes: list[tuple[int, str] | None] = []
        sel = selectors.DefaultSelector()
        buffers = dict.fromkeys(idle, b"")
        for sock in idle:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while buffers and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(65536)
                buffers[sock] += chunk
                close = _close_frame(buffers[sock].partition(b"\r\n\r\n")[2])
                if close is not None or not chunk:
                    closes.append(close)
                    sel.unregister(sock)
                    del buffers[sock]
        elapsed = time.monotonic() - idle_start
        for sock in silent:
            assert _read_until(sock, b"never", timeout=10) == b""  # dropped without a word
            sock.close()
        _, err = talk.communicate(timeout=60)
        assert talk.returncode == 0, err
        assert server.poll() is None  # the listener is still up
    assert len(closes) == IDLE_CLIENTS and not buffers
    assert all(c is not None and c[0] == 1008 and "initiate" in c[1] for c in closes), closes[:3]
    assert elapsed < 15


def test_beyond_max_sessions_is_refused_with_503_before_the_upgrade(tmp_path: Path) -> None:
    with (
        serve_process("--quiet", "--max-sessions", "3", "--initiate-timeout", "30") as (
            url,
            server,
        ),
        _sockets() as held,
    ):
        port = _port(url)
        for _ in range(3):
            sock = _connect(port)
            sock.sendall(HANDSHAKE)
            assert _read_until(sock, b"\r\n\r\n", 10).startswith(b"HTTP/1.1 101 ")
            held.append(sock)
        extra = _connect(port)
        extra.sendall(HANDSHAKE)
        answer = _read_until(extra, b"--max-sessions", 10)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        assert b"101" not in answer
        held.pop().close()  # one leaves: there is room again
        time.sleep(0.5)
        talk = _talk(url, tmp_path)
        _, err = talk.communicate(timeout=60)
        assert talk.returncode == 0, err
        assert server.poll() is None


def _pipelined_initiate() -> bytes:
    """Handshake, then an initiate with 64 kB of metadata, written as one >64 KiB send."""
    request = StartRequest(public_key="pk-raw", agent_id="a", metadata={"blob": "y" * 65_400})
    client = ClientConnection(request, "ws://127.0.0.1/millis")
    handshake = client.data_to_send()
    helper = ServerConnection(now=0.0)  # only to produce the 101 the client needs
    helper.receive_data(handshake, 0.0)
    client.receive_data(helper.data_to_send(), 0.0)
    return handshake + client.data_to_send()


@pytest.mark.parametrize(
    ("hostile", "expect"),
    [
        (HANDSHAKE.replace(b"Connection: Upgrade", b"Connection: Upgr\xe1de"), b"HTTP/1.1 400"),
        (HANDSHAKE.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1\xe1"), b"HTTP/1.1 400"),
        (_pipelined_initiate(), b"onready"),
    ],
    ids=["non-ascii-connection", "non-ascii-host", "pipelined-initiate-after-64k"],
)
def test_hostile_handshakes_leave_the_listener_and_a_live_session_alone(
    tmp_path: Path, hostile: bytes, expect: bytes
) -> None:
    with serve_process("--quiet") as (url, server):
        talk = _talk(url, tmp_path)
        time.sleep(1.0)  # the good session is under way
        for _ in range(3):
            sock = _connect(_port(url))
            sock.sendall(hostile)
            answer = _read_until(sock, expect, 10)
            sock.close()
            status = expect[:9] if expect.startswith(b"HTTP") else b"HTTP/1.1 101"
            assert expect in answer, answer[:120]
            assert answer.startswith(status), answer[:120]
        _, err = talk.communicate(timeout=60)
        assert talk.returncode == 0, err
        assert server.poll() is None
        again = _talk(url, tmp_path)  # and the next one too
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
