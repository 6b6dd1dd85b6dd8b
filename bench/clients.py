"""One benchmark client process: N paced duplex sessions of one client kind.

    python -m bench.clients KIND --url ws://127.0.0.1:PORT/millis --n 100 --period-ms 20

Every session does what an application does: from the moment it is ready it sends one frame
of user audio per period on its own schedule (sessions are staggered over the period), pulls
one period of playback right after, and reads every incoming message or event in a reader as
it arrives (text is parsed as JSON, audio goes to a bounded playback buffer). Once every
session is ready the run warms up, then measures for ``--measure`` seconds: the process's
own CPU time (``getrusage``, user + system) per session-second of audio actually sent in the
window, its resident memory, and how many of the frames scheduled in the window were sent
within 10 ms of their schedule (and how much of the scheduled audio went out at all). It
prints one JSON line and exits at once (no goodbye: the close handshake is not measured). Kinds:

* ``floor`` — hand-rolled RFC 6455 on an ``asyncio.Protocol`` (``bench.rfc6455``);
* ``websockets`` — the ``websockets`` library's asyncio client;
* ``wsproto`` — raw wsproto over trio sockets, no millis-proto;
* ``trio-floor`` — the same hand-rolled RFC 6455 on trio's raw socket readiness
  (``wait_readable``, ``os.read``, ``os.write``): what trio itself costs, the floor for
  ``trio``;
* ``trio``, ``asyncio``, ``anyio`` — millis-proto's ``transports.trio`` (trio),
  ``transports.asyncio`` (asyncio) and ``transports.anyio`` (on asyncio, where it opens the
  asyncio transport's session);
* ``anyio-streams`` — ``transports.anyio.connect_generic``: the session on anyio's stream
  interface (what ``connect_stream`` runs), on asyncio.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

KINDS = (
    "floor",
    "websockets",
    "wsproto",
    "trio-floor",
    "trio",
    "asyncio",
    "anyio",
    "anyio-streams",
)
#: A frame counts as on time when it was sent within this long of its schedule.
ON_TIME = 0.010
#: How long the sessions go on pacing after the measured window (the report comes first).
TAIL = 1.0
#: Sessions connecting at once (the rest wait their turn).
CONNECTING = 32
#: Bound of the playback buffer of the non-millis clients (10 s of audio), as an app has.
MAX_PLAYBACK = 10 * 32000
#: How long all sessions may take to become ready.
READY_TIMEOUT = 60.0
INITIATE = json.dumps(
    {"method": "initiate", "data": {"public_key": "bench-key", "agent": {"agent_id": "bench"}}}
)


@dataclass
class Plan:
    """The shared timeline, fixed once every session is ready."""

    n: int
    period: float
    warmup: float
    measure: float
    origin: float = field(default_factory=time.monotonic)
    t0: float = 0.0
    warm_end: float = 0.0
    meas_end: float = 0.0
    sent_in_window: int = 0  # frames scheduled in the window and sent by the report
    done: int = 0  # sent in the window, whenever scheduled: the work done
    on_time: int = 0
    messages: int = 0
    worst: float = 0.0
    rss_end_kb: int = 0  # resident memory at the end of the measured window
    objects_end: int = 0  # objects the garbage collector tracks, then
    gc_s: float = 0.0  # time in the cyclic garbage collector during the measured window
    gc_max_s: float = 0.0  # its longest single pause there
    gc_runs: int = 0
    _gc_start: float = 0.0

    def watch_gc(self) -> None:
        """Time every collection that runs in the measured window (``gc.callbacks``).

        A pause longer than ``ON_TIME`` makes every frame due during it late, so the
        pauses are reported beside the on-time share: they tell a client starved of CPU
        from one stalled by its own heap.
        """

        def timed(phase: str, _info: dict[str, int]) -> None:
            now = time.perf_counter()
            if phase == "start":
                self._gc_start = now
                return
            if self.warm_end <= time.monotonic() < self.meas_end:
                pause = now - self._gc_start
                self.gc_s += pause
                self.gc_runs += 1
                self.gc_max_s = max(self.gc_max_s, pause)

        gc.callbacks.append(timed)

    def start(self, now: float) -> None:
        self.t0 = now + 0.05
        self.warm_end = self.t0 + self.warmup
        self.meas_end = self.warm_end + self.measure

    def first(self, index: int, now: float) -> float:
        """When session ``index``, ready at ``now``, sends its first frame.

        Sessions start as soon as they are ready (an app plays the agent's audio from the
        first frame, so no backlog builds up while the others connect), on one grid
        staggered over the period: session ``index`` always sends at ``index / n`` of it.
        """
        offset = self.origin + self.period * index / self.n
        return offset + self.period * math.ceil((now - offset) / self.period)

    def running(self, due: float) -> bool:
        """Whether a frame due then is still sent: until well after the measured window.

        The process reports and exits first (``report``), so every session is still pacing
        when the window ends. Stopping at the window's end instead would let the sessions
        that stop first start their goodbyes (a millis session's close handshake) inside
        the window, beside the others' last frames: work that no steady call does.
        """
        return not self.meas_end or due < self.meas_end + TAIL

    def sent(self, scheduled: float, done: float) -> None:
        if self.warm_end <= done < self.meas_end:
            self.done += 1
        if self.warm_end <= scheduled < self.meas_end:
            self.sent_in_window += 1
            late = done - scheduled
            if late <= ON_TIME:
                self.on_time += 1
            elif late > self.worst:
                self.worst = late

    def scheduled(self) -> int:
        """How many frames all sessions were due to send in the measured window.

        Counted from the schedule (session ``i`` sends on its grid, see :meth:`first`),
        not from the frames sent: a frame still unsent when the report is made counts as
        late, so a client that falls behind cannot look punctual by not sending.
        """
        total = 0
        for index in range(self.n):
            offset = self.origin + self.period * index / self.n
            total += math.ceil((self.meas_end - offset) / self.period) - math.ceil(
                (self.warm_end - offset) / self.period
            )
        return total


class Playback:
    """What the non-millis clients do with agent audio: a bounded byte FIFO."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def push(self, pcm: bytes) -> None:
        self.buf += pcm
        if len(self.buf) > MAX_PLAYBACK:
            del self.buf[: len(self.buf) - MAX_PLAYBACK]

    def pull(self, n_bytes: int) -> bytes:
        chunk = bytes(self.buf[:n_bytes])
        del self.buf[:n_bytes]
        return chunk if len(chunk) == n_bytes else chunk + bytes(n_bytes - len(chunk))


def on_text(plan: Plan, text: str | bytes) -> Any:
    """An app's handling of a control message: parse it."""
    plan.messages += 1
    return json.loads(text)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def report(plan: Plan, args: argparse.Namespace, base_kb: int, cpu: float, wall: float) -> None:
    frames = plan.scheduled()
    result = {
        "kind": args.kind,
        "n": args.n,
        "period_ms": args.period_ms,
        "cpu_s": cpu,
        "wall_s": wall,
        # Per session-second of audio actually sent: a client starved of CPU (a loaded
        # machine) falls behind and does less, so per wall second it would look cheaper.
        "cpu_us_per_session_s": cpu / (plan.done * plan.period) * 1e6 if plan.done else 0.0,
        "sent_share_pct": 100.0 * plan.done * plan.period / (args.n * wall),
        "frames": frames,
        "frames_unsent": frames - plan.sent_in_window,
        "on_time": plan.on_time,
        "on_time_pct": 100.0 * plan.on_time / frames if frames else 0.0,
        "worst_late_ms": plan.worst * 1000,
        "messages": plan.messages,
        "gc_ms": plan.gc_s * 1000,
        "gc_max_ms": plan.gc_max_s * 1000,
        "gc_runs": plan.gc_runs,
        "rss_base_kb": base_kb,
        # At the end of the measured window, with every session still running (not after
        # the pacers stopped and the millis sessions began to close).
        "rss_kb": plan.rss_end_kb,
        "rss_mb_per_session": (plan.rss_end_kb - base_kb) / 1024 / args.n,
        # What every full collection walks: a pause grows with it, and past ~10 ms a pause
        # makes every frame due during it late.
        "gc_objects_per_session": (plan.objects_end - args.base_objects) / args.n,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no goodbyes: the sessions' close is not measured


def cpu_now() -> float:
    """User + system CPU seconds of this process (getrusage: microsecond resolution)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- asyncio kinds --------------------------------------------------------------------------


def run_asyncio(args: argparse.Namespace, base_kb: int) -> None:
    import asyncio

    plan = Plan(args.n, args.period_ms / 1000, args.warmup, args.measure)
    plan.watch_gc()
    frame = bytes(args.period_ms * 32)
    session: Callable[..., Awaitable[None]]
    if args.kind == "floor":
        session = _floor_session
    elif args.kind == "websockets":
        session = _websockets_session
    else:
        session = _millis_asyncio_session(args.kind)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECTING)
        ready: list[int] = []

        async def one(i: int) -> None:
            async def opened() -> None:
                gate.release()
                ready.append(i)

            await gate.acquire()
            await session(args.url, plan, i, frame, opened)

        tasks = [asyncio.ensure_future(one(i)) for i in range(args.n)]
        deadline = loop.time() + READY_TIMEOUT
        while len(ready) < args.n:
            if loop.time() > deadline or any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
                raise SystemExit(f"only {len(ready)} of {args.n} sessions became ready")
            await asyncio.sleep(0.02)
        plan.start(time.monotonic())
        await asyncio.sleep(max(0.0, plan.warm_end - time.monotonic()))
        cpu0, wall0 = cpu_now(), time.monotonic()
        await asyncio.sleep(max(0.0, plan.meas_end - time.monotonic()))
        cpu1, wall1 = cpu_now(), time.monotonic()
        plan.rss_end_kb = rss_kb()
        plan.objects_end = len(gc.get_objects())
        await asyncio.sleep(ON_TIME * 2)  # let the window's last frames finish
        report(plan, args, base_kb, cpu1 - cpu0, wall1 - wall0)

    asyncio.run(main())


async def _asyncio_pace(
    plan: Plan, i: int, send: Callable[[], Awaitable[None] | None], pull: Callable[[], object]
) -> None:
    import asyncio

    clock = time.monotonic
    period = plan.period
    due = plan.first(i, clock())
    while plan.running(due):
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        pending = send()
        if pending is not None:
            await pending
        pull()
        plan.sent(due, clock())
        due += period


async def _floor_session(
    url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
) -> None:
    import asyncio

    from bench.rfc6455 import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, encode

    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    playback = Playback()
    nbytes = len(frame)
    target = parts.path + ("?" + parts.query if parts.query else "")

    from bench.rfc6455 import client_handshake

    request, accept = client_handshake(parts.netloc, target)

    class Floor(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.head = b""
            self.reader: FrameReader | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.transport.write(request)  # type: ignore[union-attr]

        def data_received(self, data: bytes) -> None:
            if self.reader is None:
                self.head += data
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, data = self.head[:end], self.head[end + 4 :]
                if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                    raise ConnectionError("handshake rejected")
                self.reader = FrameReader()
                self.transport.write(encode(TEXT, INITIATE.encode(), masked=True))  # type: ignore[union-attr]
            for opcode, payload in self.reader.feed(data):
                if opcode == BINARY:
                    playback.push(payload)
                elif opcode == TEXT:
                    message = on_text(plan, payload)
                    if message.get("method") == "onready" and not ready.done():
                        ready.set_result(None)
                elif opcode == PING:
                    self.transport.write(encode(PONG, payload, masked=True))  # type: ignore[union-attr]
                elif opcode == CLOSE:
                    self.transport.close()  # type: ignore[union-attr]

    transport, _ = await loop.create_connection(
        Floor, parts.hostname or "127.0.0.1", parts.port or 80
    )
    await ready
    await opened()
    write = transport.write

    def send() -> None:
        write(encode(BINARY, frame, masked=True))

    await _asyncio_pace(plan, i, send, lambda: playback.pull(nbytes))


async def _websockets_session(
    url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
) -> None:
    import asyncio

    from websockets.asyncio.client import connect

    playback = Playback()
    nbytes = len(frame)
    ws = await connect(url)
    await ws.send(INITIATE)
    while True:
        message = await ws.recv()
        if isinstance(message, str) and on_text(plan, message).get("method") == "onready":
            break

    async def reader() -> None:
        async for message in ws:
            if isinstance(message, bytes):
                playback.push(message)
            else:
                on_text(plan, message)

    task = asyncio.ensure_future(reader())
    await opened()
    await _asyncio_pace(plan, i, lambda: ws.send(frame), lambda: playback.pull(nbytes))
    task.cancel()


def _millis_asyncio_session(kind: str) -> Callable[..., Awaitable[None]]:
    import asyncio
    from contextlib import AbstractAsyncContextManager

    from millis_proto import ClientConfig, Ready, StartRequest
    from transports._client import ClientSession

    # Only the kind's own transport is imported (the other would count in its memory).
    connect: Callable[..., AbstractAsyncContextManager[ClientSession]]
    if kind == "asyncio":
        from transports.asyncio import connect as asyncio_connect

        connect = asyncio_connect
    elif kind == "anyio":
        from transports.anyio import connect as anyio_connect

        connect = anyio_connect
    else:
        from transports.anyio import connect_generic

        connect = connect_generic

    request = StartRequest(public_key="bench-key", agent_id="bench")
    config = ClientConfig()

    async def session_main(
        url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
    ) -> None:
        samples = len(frame) // 2
        async with connect(url, request, config=config) as session:
            async for event in session:
                plan.messages += 1
                if isinstance(event, Ready):
                    break

            async def reader() -> None:
                async for _event in session:
                    plan.messages += 1

            task = asyncio.ensure_future(reader())
            await opened()
            await _asyncio_pace(
                plan, i, lambda: session.send_audio(frame), lambda: session.pull_playback(samples)
            )
            task.cancel()

    return session_main


# --- trio kinds -------------------------------------------------------------------------------


def run_trio(args: argparse.Namespace, base_kb: int) -> None:
    import trio

    plan = Plan(args.n, args.period_ms / 1000, args.warmup, args.measure)
    plan.watch_gc()
    frame = bytes(args.period_ms * 32)
    session = {"wsproto": _wsproto_session, "trio-floor": _trio_floor_session}.get(
        args.kind, _millis_trio_session
    )

    async def main() -> None:
        gate = trio.Semaphore(CONNECTING)
        ready: list[int] = []

        async def one(i: int) -> None:
            async def opened() -> None:
                gate.release()
                ready.append(i)

            await gate.acquire()
            await session(args.url, plan, i, frame, opened)

        async with trio.open_nursery() as nursery:
            for i in range(args.n):
                nursery.start_soon(one, i)
            with trio.fail_after(READY_TIMEOUT):
                while len(ready) < args.n:
                    await trio.sleep(0.02)
            plan.start(time.monotonic())
            await trio.sleep(max(0.0, plan.warm_end - time.monotonic()))
            cpu0, wall0 = cpu_now(), time.monotonic()
            await trio.sleep(max(0.0, plan.meas_end - time.monotonic()))
            cpu1, wall1 = cpu_now(), time.monotonic()
            plan.rss_end_kb = rss_kb()
            plan.objects_end = len(gc.get_objects())
            await trio.sleep(ON_TIME * 2)
            report(plan, args, base_kb, cpu1 - cpu0, wall1 - wall0)

    trio.run(main)


async def _trio_pace(
    plan: Plan, i: int, send: Callable[[], Awaitable[None]], pull: Callable[[], object]
) -> None:
    import trio

    clock = time.monotonic
    period = plan.period
    due = plan.first(i, clock())
    while plan.running(due):
        delay = due - clock()
        if delay > 0:
            await trio.sleep(delay)
        await send()
        pull()
        plan.sent(due, clock())
        due += period


async def _wsproto_session(
    url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
) -> None:
    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

    parts = urlsplit(url)
    playback = Playback()
    nbytes = len(frame)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    ws = WSConnection(ConnectionType.CLIENT)
    target = parts.path + ("?" + parts.query if parts.query else "")
    await stream.send_all(ws.send(Request(host=parts.netloc, target=target)))
    ready = trio.Event()

    async def reader() -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, BytesMessage):
                    playback.push(event.data)  # type: ignore[arg-type]
                elif isinstance(event, TextMessage):
                    if on_text(plan, event.data).get("method") == "onready":
                        ready.set()
                elif isinstance(event, AcceptConnection):
                    await stream.send_all(ws.send(TextMessage(data=INITIATE)))

    async def send() -> None:
        await stream.send_all(ws.send(BytesMessage(data=frame)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await ready.wait()
        await opened()
        await _trio_pace(plan, i, send, lambda: playback.pull(nbytes))
        nursery.cancel_scope.cancel()


async def _trio_floor_session(
    url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
) -> None:
    import trio

    from bench.rfc6455 import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, client_handshake, encode

    parts = urlsplit(url)
    playback = Playback()
    nbytes = len(frame)
    target = parts.path + ("?" + parts.query if parts.query else "")
    request, accept = client_handshake(parts.netloc, target)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    fd = stream.socket.fileno()
    await stream.send_all(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(65536)
    head, rest = head.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101") or accept not in head:
        raise ConnectionError("handshake rejected")
    await stream.send_all(encode(TEXT, INITIATE.encode(), masked=True))
    reader = FrameReader()
    ready = trio.Event()

    def handle(data: bytes) -> None:
        for opcode, payload in reader.feed(data):
            if opcode == BINARY:
                playback.push(payload)
            elif opcode == TEXT:
                if on_text(plan, payload).get("method") == "onready":
                    ready.set()
            elif opcode == PING:
                os.write(fd, encode(PONG, payload, masked=True))
            elif opcode == CLOSE:
                return

    async def read_loop() -> None:
        handle(rest)
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                return
            handle(data)

    async def send() -> None:
        os.write(fd, encode(BINARY, frame, masked=True))
        await trio.lowlevel.checkpoint_if_cancelled()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_loop)
        await ready.wait()
        await opened()
        await _trio_pace(plan, i, send, lambda: playback.pull(nbytes))
        nursery.cancel_scope.cancel()


async def _millis_trio_session(
    url: str, plan: Plan, i: int, frame: bytes, opened: Callable[[], Awaitable[None]]
) -> None:
    import trio

    from millis_proto import ClientConfig, Ready, StartRequest
    from transports.trio import connect

    request = StartRequest(public_key="bench-key", agent_id="bench")
    samples = len(frame) // 2
    async with connect(url, request, config=ClientConfig()) as session:
        async for event in session:
            plan.messages += 1
            if isinstance(event, Ready):
                break

        async def reader() -> None:
            async for _event in session:
                plan.messages += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await opened()
            await _trio_pace(
                plan, i, lambda: session.send_audio(frame), lambda: session.pull_playback(samples)
            )
            nursery.cancel_scope.cancel()


_MODULES = {
    "floor": ("asyncio", "bench.rfc6455"),
    "websockets": ("asyncio", "websockets.asyncio.client"),
    "wsproto": ("trio", "wsproto"),
    "trio-floor": ("trio", "bench.rfc6455"),
    "trio": ("trio", "transports.trio"),
    "asyncio": ("asyncio", "transports.asyncio"),
    "anyio": ("asyncio", "transports.anyio", "transports.asyncio"),
    "anyio-streams": ("asyncio", "transports.anyio"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--period-ms", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--measure", type=float, default=3.0)
    args = parser.parse_args(argv)
    sep = "&" if "?" in args.url else "?"
    args.url = f"{args.url}{sep}period_ms={args.period_ms}"
    # Everything the kind imports is imported before the memory baseline: also the IDNA
    # codec (and its unicodedata tables), which socket.getaddrinfo loads on first use for
    # a str host; trio resolves every host through it, asyncio skips it for an IP address.
    import encodings.idna  # noqa: F401
    import importlib

    for module in _MODULES[args.kind]:
        importlib.import_module(module)
    base_kb = rss_kb()
    args.base_objects = len(gc.get_objects())
    if args.kind in ("wsproto", "trio-floor", "trio"):
        run_trio(args, base_kb)
    else:
        run_asyncio(args, base_kb)


if __name__ == "__main__":
    main()
