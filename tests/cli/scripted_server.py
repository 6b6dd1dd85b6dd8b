"""An independent Millis-like WebSocket server for CLI tests, built on ``websockets``.

It shares no code with ``millis_proto``: the wire format is written out here by hand from
docs/protocol.md §3-4. The server runs its own asyncio loop in a daemon thread, listens on
127.0.0.1 port 0 (``ws://`` or ``wss://``), accepts one connection at a time and runs a
*script* coroutine against it::

    async def script(conn: ScriptedConnection) -> None:
        await conn.ready()                 # onready; conn.t0 = the server's clock now
        await conn.at(0.5)                 # sleep until t0 + 0.5 s on the server's clock
        await conn.send("start_answering")
        await conn.send_audio(pcm)         # odd-sized binary frames

    with ScriptedServer(script) as server:
        ... run the CLI against server.url ...
    server.initiate                        # the client's first message, parsed

The client's ``initiate`` is read (and must be a JSON text frame) before the script starts;
everything the client sends afterwards is drained in the background (audio bytes counted,
text messages kept) so the client's writes never stall. Exceptions of the script are
re-raised by ``__exit__`` (``check=True``) so a broken script fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from itertools import cycle
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["ODD_FRAME_SIZES", "ScriptedConnection", "ScriptedServer", "marker_pcm"]

#: Byte sizes of the downlink binary frames, cycled: odd, so samples straddle frames.
ODD_FRAME_SIZES = (1001, 333, 2047, 7, 4095, 641, 1)
#: Bound of every wait inside the server (reading initiate, starting, stopping).
WAIT_SECONDS = 10.0

Script = Callable[["ScriptedConnection"], Awaitable[None]]


def marker_pcm(n: int, *, sign: int = 1, modulo: int = 30000) -> bytes:
    """``n`` s16le samples whose value encodes their own index: ``sign * (1 + i % modulo)``.

    Never zero, so silence (zeros) and audio can be told apart sample by sample.
    """
    import numpy as np

    values = sign * (1 + np.arange(n, dtype=np.int64) % modulo)
    return values.astype("<i2").tobytes()


class ScriptedConnection:
    """One client connection as the script sees it."""

    def __init__(self, ws: ServerConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.ws = ws
        self._loop = loop
        #: The server's clock (``loop.time()``) when ``onready`` went out.
        self.t0 = loop.time()

    def now(self) -> float:
        """Seconds since ``t0`` on the server's clock."""
        return self._loop.time() - self.t0

    async def at(self, t: float) -> None:
        """Sleep until ``t0 + t`` (returns at once if that is past)."""
        await asyncio.sleep(max(0.0, t - self.now()))

    async def send(self, method: str, **fields: Any) -> None:
        """Send ``{"method": method, **fields}`` as a text frame."""
        await self.ws.send(json.dumps({"method": method, **fields}))

    async def ready(self, session_id: str = "s-1") -> None:
        """Send ``onready`` with a session id and start the script's clock."""
        await self.send("onready", payload={"session_id": session_id})
        self.t0 = self._loop.time()

    async def send_audio(self, pcm: bytes, sizes: Iterable[int] = ODD_FRAME_SIZES) -> int:
        """Send ``pcm`` as binary frames of the given byte sizes (cycled); returns frames."""
        frames = 0
        pos = 0
        for size in cycle(sizes):
            if pos >= len(pcm):
                break
            await self.ws.send(pcm[pos : pos + size])
            pos += size
            frames += 1
        return frames

    def abort(self) -> None:
        """Drop the TCP connection at once: no close frame, no TLS close_notify."""
        transport = self.ws.transport
        assert transport is not None
        transport.abort()


class ScriptedServer:
    """The server; a context manager (see the module docstring)."""

    def __init__(
        self,
        script: Script,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        check: bool = True,
    ) -> None:
        self._script = script
        self._ssl = ssl_context
        self._host = host
        self._check = check
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="scripted-millis-server"
        )
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0
        #: The parsed ``initiate`` of every connection, in order.
        self.initiates: list[dict[str, Any]] = []
        #: The same, as the exact text frames received.
        self.raw_initiates: list[str] = []
        #: Text messages the client sent after ``initiate`` (parsed when JSON).
        self.messages: list[Any] = []
        #: Bytes of client audio received after ``initiate``.
        self.audio_bytes = 0
        #: Exceptions raised by scripts / the handler.
        self.errors: list[BaseException] = []
        #: How the client's side of the connection ended (code, reason), per connection.
        self.client_close: list[tuple[int | None, str | None]] = []

    @property
    def initiate(self) -> dict[str, Any]:
        assert self.initiates, "the client never sent initiate"
        return self.initiates[0]

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self._host}:{self.port}/millis"

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            future.result(WAIT_SECONDS)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
            future.result(WAIT_SECONDS)
        finally:
            self._stop_loop()
        if self._check and exc_type is None and self.errors:
            raise self.errors[0]

    async def _start(self) -> None:
        self._server = await serve(
            self._handler,
            self._host,
            0,
            ssl=self._ssl,
            max_size=2**20,
            ping_interval=None,
            open_timeout=WAIT_SECONDS,
            close_timeout=2,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for task in self._handlers:  # a script still waiting is over: the test is done
            task.cancel()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), WAIT_SECONDS)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()

    # --- one connection ----------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        drain: asyncio.Task[None] | None = None
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            first = await asyncio.wait_for(ws.recv(), WAIT_SECONDS)
            assert isinstance(first, str), f"first message is binary ({len(first)} bytes)"
            self.raw_initiates.append(first)
            self.initiates.append(json.loads(first))
            drain = asyncio.ensure_future(self._drain(ws))
            await self._script(ScriptedConnection(ws, asyncio.get_running_loop()))
            # Let the client end it (it closes on onsessionended); bounded.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(drain), WAIT_SECONDS)
        except ConnectionClosed:
            pass  # the client went away: that is the client's choice, checked by the test
        except asyncio.CancelledError:
            raise  # stopped by __exit__
        except BaseException as exc:  # recorded, re-raised in the test's thread
            self.errors.append(exc)
        finally:
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(BaseException):
                    await drain
            rcvd = ws.protocol.close_rcvd
            self.client_close.append((rcvd.code, rcvd.reason) if rcvd else (None, None))

    async def _drain(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if isinstance(message, bytes):
                    self.audio_bytes += len(message)
                else:
                    try:
                        self.messages.append(json.loads(message))
                    except ValueError:
                        self.messages.append(message)
