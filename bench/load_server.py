"""The benchmark's load server: a cheap paced agent on hand-rolled asyncio.

It speaks just enough of the Millis protocol for a paced duplex session: answers
``initiate`` with ``onready`` and a Millis ``ping`` with ``pong``, counts the uplink audio
without unmasking it, and sends one frame of agent audio per period to every ready session.
The period comes from the request target (``/millis?period_ms=20``). One ticker per period
serves all its sessions, split into buckets so that the writes of one tick are spread over
the period rather than all landing at once. It is written to cost far less than any client
(an ``asyncio.Protocol``, one precomputed audio frame, no per-session task), so that it is
never the bottleneck of the benchmark; ``GET /stats`` (a plain HTTP request) reports its
own CPU time and pacing so the harness can show that.

    python -m bench.load_server --port 0      # prints "PORT <n>", serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from urllib.parse import parse_qs, urlsplit

from bench.rfc6455 import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, encode, server_handshake

#: Writes of one period are spread over this many ticks.
BUCKETS = 4
#: Largest handshake head accepted.
MAX_HEAD = 16 * 1024


class Ticker:
    """Sends one audio frame per period to every ready session of that period."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period_ms: int) -> None:
        self.loop = loop
        self.step = period_ms / 1000 / BUCKETS
        self.frame = encode(BINARY, bytes(period_ms * 32), masked=False)  # 16 kHz s16le
        self.buckets: list[set[AgentProtocol]] = [set() for _ in range(BUCKETS)]
        self.added = 0
        self.ticks = 0
        self.late_ticks = 0  # ticks that ran more than 10 ms behind schedule
        self.next_at = loop.time() + self.step
        loop.call_at(self.next_at, self.tick)

    def add(self, session: AgentProtocol) -> None:
        self.buckets[self.added % BUCKETS].add(session)
        self.added += 1

    def discard(self, session: AgentProtocol) -> None:
        for bucket in self.buckets:
            bucket.discard(session)

    def tick(self) -> None:
        now = self.loop.time()
        if now - self.next_at > 0.010:
            self.late_ticks += 1
        frame = self.frame
        for session in self.buckets[self.ticks % BUCKETS]:
            session.transport.write(frame)
        self.ticks += 1
        self.next_at += self.step
        if self.next_at < now:  # fell behind: skip ahead rather than burst
            self.next_at = now + self.step
        self.loop.call_at(self.next_at, self.tick)


class AgentProtocol(asyncio.Protocol):
    """One client connection."""

    tickers: dict[int, Ticker] = {}  # noqa: RUF012 (one server per process)
    sessions = 0
    uplink_bytes = 0

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.head = b""
        self.reader: FrameReader | None = None
        self.ticker: Ticker | None = None
        self.period_ms = 20

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ticker is not None:
            self.ticker.discard(self)
            AgentProtocol.sessions -= 1

    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            self._handshake(data)
            return
        for opcode, payload in self.reader.feed(data):
            if opcode == BINARY:
                AgentProtocol.uplink_bytes += len(payload)
            elif opcode == TEXT:
                self._on_text(payload)
            elif opcode == PING:
                self.transport.write(encode(PONG, payload, masked=False))
            elif opcode == CLOSE:
                self.transport.write(encode(CLOSE, payload[:2], masked=False))
                self.transport.close()
                return

    def _handshake(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.transport.close()
            return
        head, rest = self.head[:end], self.head[end + 4 :]
        if head.startswith(b"GET /stats "):
            self._stats()
            return
        answer = server_handshake(head)
        if answer is None:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        response, target = answer
        query = parse_qs(urlsplit(target.decode()).query)
        self.period_ms = int(query.get("period_ms", ["20"])[0])
        self.transport.write(response)
        self.reader = FrameReader(unmask_binary=False)
        if rest:
            self.data_received(rest)

    def _on_text(self, payload: bytes) -> None:
        message = json.loads(payload)
        method = message.get("method")
        if method == "initiate" and self.ticker is None:
            AgentProtocol.sessions += 1
            reply = {"method": "onready", "payload": {"session_id": f"bench-{id(self):x}"}}
            self.transport.write(encode(TEXT, json.dumps(reply).encode(), masked=False))
            loop = asyncio.get_running_loop()
            ticker = self.tickers.get(self.period_ms)
            if ticker is None:
                ticker = self.tickers[self.period_ms] = Ticker(loop, self.period_ms)
            ticker.add(self)
            self.ticker = ticker
        elif method == "ping":
            reply = {"method": "pong", "data": message.get("data")}
            self.transport.write(encode(TEXT, json.dumps(reply).encode(), masked=False))

    def _stats(self) -> None:
        times = os.times()
        body = json.dumps(
            {
                "cpu_s": times.user + times.system,
                "sessions": AgentProtocol.sessions,
                "uplink_bytes": AgentProtocol.uplink_bytes,
                "ticks": sum(t.ticks for t in self.tickers.values()),
                "late_ticks": sum(t.late_ticks for t in self.tickers.values()),
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        self.transport.close()


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AgentProtocol, host, port, backlog=2048)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
