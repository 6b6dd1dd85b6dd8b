"""The trio transport's reads on a plain socket: the run's shared reader, and the session's
own reader task where epoll is missing (every test runs both ways).

A plain-socket peer (its own thread, no library) sends each session its own agent audio
in small frames; the sessions' playback must hold exactly their own bytes, and reading
them must not allocate a ``RECEIVE_BYTES`` object per read (tracemalloc's peak says). A bug
in handling one session's read must come out of that session's ``connect`` block and leave
the other sessions of the run reading.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from raw_peers import read_head

import transports.trio
from bench.rfc6455 import BINARY, CLOSE, TEXT, encode, server_handshake
from millis_proto import ClientConfig, ClientConnection, ConnectionLost, StartRequest
from transports import _trio_reader
from transports._read_buffer import RECEIVE_BYTES
from transports.trio import connect

FRAMES = 30
FRAME_BYTES = 640  # 20 ms of audio
ONREADY = b'{"method": "onready", "payload": {"session_id": "s"}}'


@contextlib.contextmanager
def paced_peers(
    n: int, go: threading.Event, *, eof: bool = False, frames: int = FRAMES
) -> Iterator[str]:
    """A server for ``n`` sessions: each gets onready, then (once ``go`` is set)
    ``frames`` frames of audio made of its own byte value, a few milliseconds apart (then,
    with ``eof``, the end of the stream without a close frame)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    conns: list[socket.socket] = []

    def serve() -> None:
        for _ in range(n):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(10)
            head = read_head(conn)
            assert head is not None
            answer = server_handshake(head)
            assert answer is not None
            conn.sendall(answer[0] + encode(TEXT, ONREADY, masked=False))
            conns.append(conn)
        if not go.wait(10):
            return
        audio = [encode(BINARY, bytes([i + 1]) * FRAME_BYTES, masked=False) for i in range(n)]
        for _ in range(frames):
            for conn, frame in zip(conns, audio, strict=True):
                with contextlib.suppress(OSError):  # a session the test ended early
                    conn.sendall(frame)
            time.sleep(0.003)
        for conn in conns if eof else ():
            conn.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/millis"
    finally:
        go.set()
        thread.join(10)
        for conn in conns:
            conn.close()
        listener.close()


@pytest.fixture(autouse=True, params=["shared", "own"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of reading a plain socket: the run's shared reader (Linux), a reader task
    per session (elsewhere)."""
    if request.param == "shared" and not _trio_reader.AVAILABLE:
        pytest.skip("no epoll here")
    monkeypatch.setattr(transports.trio, "_SHARED_READS", request.param == "shared")
    return str(request.param)


def session_tasks() -> list[str]:
    """The tasks of the session opened last in the current task (its nursery's)."""
    nursery = trio.lowlevel.current_task().child_nurseries[-1]
    return sorted(t.name.rsplit(".", 1)[-1] for t in nursery.child_tasks)


def test_sessions_share_one_read_buffer_and_keep_their_own_bytes() -> None:
    n = 3
    go = threading.Event()
    request = StartRequest(public_key="reads-test-public-key", agent_id="agent")
    config = ClientConfig(emit_audio_events=False)
    got = [0] * n  # bytes of audio each session played, each checked on the way
    peak_above = [0]

    async def main(url: str) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(
                    connect(url, request, config=config, disconnect_timeout=0.2)
                )
                for _ in range(n)
            ]
            await trio.sleep(0.05)  # handshakes done, onready read, buffers made
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                go.set()
                with trio.fail_after(10):
                    while min(got) < FRAMES * FRAME_BYTES:
                        await trio.sleep(0.001)
                        for i, s in enumerate(sessions):
                            # a frame at a time, checked without a copy: the test's
                            # own allocations stay small too
                            while s.connection.playback.queued_samples >= FRAME_BYTES // 2:
                                pcm = s.pull_playback(FRAME_BYTES // 2).pcm
                                assert pcm.count(i + 1) == FRAME_BYTES, f"session {i}"
                                got[i] += FRAME_BYTES
                peak_above[0] = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()

    with paced_peers(n, go) as url:
        trio.run(main, url)
    assert got == [FRAMES * FRAME_BYTES] * n
    # Reading 90 small frames never held a RECEIVE_BYTES object: ~50 kB of other
    # transients here with the shared buffer, ~100 kB with a fresh os.read per read.
    assert peak_above[0] < RECEIVE_BYTES, peak_above[0]


def test_eof_after_the_frames_ends_the_session_with_every_frame_read() -> None:
    go = threading.Event()
    request = StartRequest(public_key="reads-test-public-key", agent_id="agent")

    async def main(url: str) -> None:
        async with connect(url, request, disconnect_timeout=0.2) as session:
            go.set()
            with trio.fail_after(10), pytest.raises(ConnectionLost):
                async for _event in session:
                    pass
            assert session.closed is not None and not session.closed.normal
            assert session.connection.playback.queued_samples * 2 == FRAMES * FRAME_BYTES

    with paced_peers(1, go, eof=True) as url:
        trio.run(main, url)


def test_on_a_socket_the_timers_fire_without_a_task_of_their_own(reads: str) -> None:
    """No task of its own for a session with the shared reader, one without (the reader,
    which is also the timer; the writer starts only for a write that cannot be done at
    once), and the core's timers fire: a silent server gets a liveness ping, then the
    pong timeout ends the session."""
    go = threading.Event()
    request = StartRequest(public_key="reads-test-public-key", agent_id="agent")
    config = ClientConfig(liveness_timeout=0.2, pong_timeout=0.2)

    async def main(url: str) -> None:
        async with connect(url, request, config=config, disconnect_timeout=0.2) as session:
            assert session_tasks() == ([] if reads == "shared" else ["_read_loop"])
            started = trio.current_time()
            with trio.fail_after(5), pytest.raises(ConnectionLost):
                async for _event in session:
                    pass
            # liveness ping after 0.2 s of silence, no answer for 0.2 s more: lost
            assert 0.35 < trio.current_time() - started < 2
            assert session.closed is not None and session.closed.code == 1006

    with paced_peers(1, go, frames=0) as url:  # the handshake and onready, then silence
        trio.run(main, url)


@pytest.mark.parametrize("where", ["receive_data", "handle_timer"])
def test_a_bug_in_handling_a_read_ends_that_session_only_and_comes_out_of_its_block(
    monkeypatch: pytest.MonkeyPatch, reads: str, where: str
) -> None:
    """The core raising (a bug) while handling a read, or a timer, is not lost in the
    shared reader:
    that session stops and its ``connect`` block raises the error, within bounds (the way
    out does not wait for a close reply nobody reads), while the other session of the run
    goes on reading its audio; no socket of theirs is left with the shared reader."""
    go = threading.Event()
    request = StartRequest(public_key="reads-test-public-key", agent_id="agent")
    # liveness_timeout: the broken session's first timer is due 0.2 s after it opens
    config = ClientConfig(emit_audio_events=False, liveness_timeout=0.2)
    real = getattr(ClientConnection, where)
    broken: list[ClientConnection] = []

    def buggy(self: ClientConnection, *args: Any) -> None:
        if self in broken and args[0]:  # data (not EOF), or the time
            raise RuntimeError("a bug in the core")
        real(self, *args)

    monkeypatch.setattr(ClientConnection, where, buggy)
    outcome: list[str] = []

    async def healthy(url: str, task_status: trio.TaskStatus[None]) -> None:
        async with connect(url, request, config=config, disconnect_timeout=0.2) as session:
            task_status.started()
            with trio.fail_after(10):
                while session.connection.playback.queued_samples * 2 < FRAMES * FRAME_BYTES:
                    await trio.sleep(0.005)
            outcome.append("healthy read everything")

    async def broken_session(url: str) -> None:
        async with connect(url, request, config=config, disconnect_timeout=0.2) as session:
            broken.append(session.connection)
            go.set()
            async for _event in session:
                pass

    async def main(url: str) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(healthy, url)
            with trio.fail_after(5), pytest.raises(RuntimeError, match="a bug in the core"):
                await broken_session(url)
            outcome.append("broken raised")
        if reads == "shared":
            assert not _trio_reader.shared_reader()._readers  # both sockets let go

    with paced_peers(2, go) as url:
        trio.run(main, url)
    assert sorted(outcome) == ["broken raised", "healthy read everything"]


def test_a_close_stuck_behind_a_backlog_the_server_no_longer_reads_is_bounded() -> None:
    """The server stops reading, our audio backs up (the writer waits for the socket), then
    the server sends its close and still reads nothing: the reply waits behind the backlog
    once the connection is closed, when no timer runs for it any more. Leaving ``connect``
    must still end within ``write_timeout``, not wait for the socket forever."""
    request = StartRequest(public_key="reads-test-public-key", agent_id="agent")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.settimeout(10)
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/millis"
    backed_up = threading.Event()
    peer: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        peer.append(conn)
        head = read_head(conn)
        assert head is not None
        answer = server_handshake(head)
        assert answer is not None
        conn.sendall(answer[0] + encode(TEXT, ONREADY, masked=False))
        if backed_up.wait(10):  # then close, and never read again
            conn.sendall(encode(CLOSE, (1000).to_bytes(2, "big") + b"bye", masked=False))

    async def main() -> float:
        chunk = bytes(65536)
        async with connect(url, request, write_timeout=0.5, disconnect_timeout=0.2) as s:
            with trio.fail_after(10):
                while not s.dropped_audio_samples:  # the backlog is full: the writer waits
                    await s.send_audio(chunk)
                backed_up.set()
                async for _event in s:
                    pass
            leaving = trio.current_time()
        return trio.current_time() - leaving

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    took: list[float] = []
    runner = threading.Thread(target=lambda: took.append(trio.run(main)), daemon=True)
    try:
        runner.start()
        runner.join(15)  # a hang must fail the test, not stop the suite
        assert not runner.is_alive(), "leaving connect waited for the socket forever"
        assert took and took[0] < 3, took
    finally:
        for conn in peer:
            conn.close()
        listener.close()
        thread.join(5)


def test_a_stale_registration_is_not_the_new_owners_to_lose() -> None:
    """A descriptor number reused by a new session: the old session's late discard leaves
    the new one read."""

    class Session:
        _timer_at = math.inf

        def _shared_timer(self) -> None:
            pass

    async def main() -> None:
        reader = _trio_reader.shared_reader()
        a, b = socket.socketpair()
        try:
            old, new = Session(), Session()
            reader.add(a.fileno(), lambda: None, old)

            def on_readable() -> None:
                a.recv(100)

            reader.add(a.fileno(), on_readable, new)  # the old one never discarded it
            reader.discard(a.fileno(), old)
            assert reader._readers[a.fileno()] is on_readable
            reader.discard(a.fileno(), new)
            assert a.fileno() not in reader._readers
        finally:
            a.close()
            b.close()

    trio.run(main)
