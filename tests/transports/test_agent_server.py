"""``serve_agent``: the local agent served from asyncio's callbacks, on real loopback sockets.

The command-line tests (``tests/cli``: ``test_serve_limits``, ``test_cli``,
``test_cli_reconnect``) run it as ``millis-proto serve`` against hostile clients, ``talk``
and ``--drop-after``; these drive it in-process for what they cannot see: a client that
stops reading, an agent that fails, and the shutdown.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from millis_proto import (
    ClientAudio,
    ClientConnection,
    ConnectionClosed,
    ConnectionClosedByServer,
    Event,
    InitiateReceived,
    Ready,
    StartRequest,
)
from millis_proto.agent import AgentSession
from transports.agent_server import serve_agent
from transports.asyncio import connect
from transports.server import ServerAddress

REQUEST = StartRequest(public_key="pk-agent-server", agent_id="a")
#: One second of a loud 440 Hz square-ish tone, then a second of silence: one user turn.
TURN = (b"\x00\x30" * 18 + b"\x00\xd0" * 18) * 444 + bytes(32000)


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[str, list[tuple[int, Event]]]]:
    """A ``serve_agent`` task on a free port; yields its URL and every (number, event)."""
    seen: list[tuple[int, Event]] = []
    hook: Callable[[int, AgentSession, Event], None] | None = options.pop("on_event", None)

    def on_event(number: int, agent: AgentSession, event: Event) -> None:
        seen.append((number, event))
        if hook is not None:
            hook(number, agent, event)

    address: asyncio.Future[ServerAddress] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(
        serve_agent(on_event=on_event, started=address.set_result, **options)
    )
    try:
        yield (await asyncio.wait_for(address, 10)).url, seen
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        assert task.done()


async def until_ready(session: Any) -> None:
    while not isinstance(await session.next_event(), Ready):
        pass


async def read_to_the_end(url: str) -> None:
    async with connect(url, REQUEST) as session:
        async for _ in session:
            pass


def closes(seen: list[tuple[int, Event]]) -> list[tuple[int, ConnectionClosed]]:
    return [(n, e) for n, e in seen if isinstance(e, ConnectionClosed)]


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.02)


def test_a_turn_is_answered_and_the_close_is_seen_by_both_sides() -> None:
    async def main() -> None:
        async with serving() as (url, seen):
            async with connect(url, REQUEST) as session:
                await asyncio.wait_for(until_ready(session), 10)
                for i in range(0, len(TURN), 640):
                    await session.send_audio(TURN[i : i + 640])
                    await asyncio.sleep(0.02)
                    if session.connection.playback.received_samples:
                        break
                await eventually(lambda: session.connection.playback.received_samples > 0, 10)
            await eventually(lambda: bool(closes(seen)), 5)
            assert any(isinstance(e, InitiateReceived) for _, e in seen)
            [(number, closed)] = closes(seen)
            assert number == 1 and closed.code == 1000

    asyncio.run(main())


def test_a_client_that_stops_reading_is_dropped_within_the_write_bound() -> None:
    async def main() -> None:
        async with serving(write_timeout=0.5) as (url, seen):
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            client = ClientConnection(REQUEST, url)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, client.data_to_send())
            client.receive_data(await loop.sock_recv(sock, 65536), loop.time())
            # Now flood WebSocket pings and never read a pong: the server's writes back up.
            ping = b"\x89\xfd" + bytes(4) + bytes(125)  # masked with a zero key
            started = loop.time()
            try:
                while not closes(seen) and loop.time() - started < 20:
                    await asyncio.wait_for(loop.sock_sendall(sock, ping * 256), 1)
            except (OSError, asyncio.TimeoutError):
                pass  # the server dropped us, or our own send blocked: the drop comes
            await eventually(lambda: bool(closes(seen)), 10)
            sock.close()
            [(_, closed)] = closes(seen)
            assert closed.code == 1006 and "stopped reading" in closed.reason

    asyncio.run(main())


def test_an_agent_failure_closes_1011_and_the_next_session_is_served() -> None:
    failures = [RuntimeError("a bug in the agent")]

    def fail_once(_number: int, _agent: AgentSession, event: Event) -> None:
        if isinstance(event, InitiateReceived) and failures:
            raise failures.pop()

    async def main() -> None:
        async with serving(on_event=fail_once) as (url, seen):
            with pytest.raises(ConnectionClosedByServer) as failed:
                await read_to_the_end(url)
            assert failed.value.code == 1011
            async with connect(url, REQUEST) as session:
                await asyncio.wait_for(until_ready(session), 10)
            codes = sorted(c.code for _, c in closes(seen))
            assert codes == [1000, 1011]

    asyncio.run(main())


def test_shutting_down_closes_every_session_with_1001() -> None:
    async def main() -> None:
        seen: list[Event] = []
        address: asyncio.Future[ServerAddress] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(serve_agent(started=address.set_result))
        url = (await asyncio.wait_for(address, 10)).url
        async with connect(url, REQUEST) as session:
            await asyncio.wait_for(until_ready(session), 10)
            task.cancel()
            async for event in session:
                seen.append(event)
        await asyncio.wait({task}, timeout=10)
        assert task.done()
        assert session.closed is not None
        assert (session.closed.code, session.closed.reason) == (
            1001,
            "the server is shutting down",
        )

    asyncio.run(main())


def test_sessions_read_through_one_buffer_each_get_their_own_bytes() -> None:
    """Three clients whose handshakes and frames arrive in small interleaved pieces: each
    session's agent sees exactly its own audio. The served side reads every connection into
    one shared buffer, overwritten by the next read, so nothing of a read may be kept."""

    async def main() -> None:
        async with serving() as (url, seen):
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            clients = [ClientConnection(REQUEST, url, mask_entropy=os.urandom) for _ in range(3)]
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in clients]
            for _, writer in streams:
                writer.get_extra_info("socket").setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                )

            async def interleaved(pieces: list[bytes], size: int) -> None:
                # One small write per client in turn, with a pause: each a read of its own.
                for at in range(0, max(map(len, pieces)), size):
                    for (_, writer), data in zip(streams, pieces, strict=True):
                        if data[at : at + size]:
                            writer.write(data[at : at + size])
                            await writer.drain()
                    await asyncio.sleep(0.002)

            async def opened(index: int) -> None:
                conn, (reader, writer) = clients[index], streams[index]
                while conn.phase.name != "READY":
                    conn.receive_data(await reader.read(65536), 0.0)
                    conn.events()
                    writer.write(conn.data_to_send())

            await interleaved([conn.data_to_send() for conn in clients], 5)
            for index in range(len(clients)):
                await asyncio.wait_for(opened(index), 10)
            audio = []
            for value, conn in enumerate(clients, start=1):
                for _ in range(3):
                    conn.send_audio(bytes([value]) * 640, 0.1)
                audio.append(conn.data_to_send())
            await interleaved(audio, 7)
            await eventually(
                lambda: sum(len(e.data) for _, e in seen if isinstance(e, ClientAudio)) >= 5760,
                10,
            )
            heard: dict[int, bytes] = {}
            for number, event in seen:
                if isinstance(event, ClientAudio):
                    heard[number] = heard.get(number, b"") + event.data
            assert sorted(heard.values()) == [bytes([v]) * 1920 for v in (1, 2, 3)]
            for _, writer in streams:
                writer.close()

    asyncio.run(main())
