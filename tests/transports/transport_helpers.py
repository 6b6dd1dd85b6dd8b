"""Helpers for the transport tests: an independent WebSocket peer and script helpers.

The peer is a real server written with the ``websockets`` library (asyncio), running its
own event loop in a thread, so the same scripted peer serves tests on the asyncio and the
trio backends. A script is an ``async def script(ws, peer)`` driving one connection.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import websockets.asyncio.server

from transports._trio_reader import TASK_NAME

#: Looks like a real key; the tests check it never appears in an error message.
SECRET_KEY = "pk_live_SECRET_4f9a1c"

Script = Callable[[Any, "Peer"], Awaitable[None]]


@dataclass(frozen=True)
class Tls:
    """TLS material made by trustme for one test session."""

    server: ssl.SSLContext  # certificate valid for 127.0.0.1 and localhost
    localhost_only: ssl.SSLContext  # certificate naming only localhost
    ca_file: Path  # PEM of the CA that signed both


class Peer:
    """A ``websockets`` server running ``script`` for each connection, in its own thread."""

    def __init__(self, script: Script, **serve_options: Any) -> None:
        self.results: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.done = threading.Event()  # a connection's script has finished
        self.release = threading.Event()  # the test lets a waiting script go on
        self.marks: dict[str, threading.Event] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._serve(script, serve_options, started),),
            daemon=True,
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the websockets peer did not start")

    async def _serve(
        self, script: Script, options: dict[str, Any], started: threading.Event
    ) -> None:
        async def handler(ws: Any) -> None:
            try:
                await script(ws, self)
            except Exception as exc:
                self.errors.append(exc)
            finally:
                self.done.set()

        options = {"compression": None, "ping_interval": None, "close_timeout": 1, **options}
        self._stop = asyncio.Event()
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0, **options) as srv:
            self.port = next(iter(srv.sockets)).getsockname()[1]
            started.set()
            await self._stop.wait()

    def url(self, scheme: str = "ws", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}/millis"

    def mark(self, name: str) -> None:
        """Called by a script: ``name`` happened."""
        self.marks.setdefault(name, threading.Event()).set()

    async def wait_mark(self, name: str, timeout: float = 5) -> None:
        event = self.marks.setdefault(name, threading.Event())
        assert await anyio.to_thread.run_sync(event.wait, timeout), f"peer never marked {name}"

    async def wait_done(self, timeout: float = 5) -> None:
        assert await anyio.to_thread.run_sync(self.done.wait, timeout), "peer script hung"
        if self.errors:
            raise self.errors[0]

    def close(self) -> None:
        self.release.set()
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


# --- script helpers ---------------------------------------------------------------------


async def send_json(ws: Any, method: str, data: Any = None, payload: Any = None) -> None:
    message: dict[str, Any] = {"method": method}
    if data is not None:
        message["data"] = data
    if payload is not None:
        message["payload"] = payload
    await ws.send(json.dumps(message))


async def expect_initiate(ws: Any) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert message["method"] == "initiate"
    data: dict[str, Any] = message["data"]
    return data


async def open_session(ws: Any, session_id: str = "sess-1") -> dict[str, Any]:
    """Read ``initiate`` and answer ``onready``."""
    data = await expect_initiate(ws)
    await send_json(ws, "onready", payload={"session_id": session_id})
    return data


async def wait_for_method(ws: Any, method: str, timeout: float = 5) -> dict[str, Any]:
    """Read messages (audio included) until a text message with ``method``."""
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(message, str):
            decoded: dict[str, Any] = json.loads(message)
            if decoded.get("method") == method:
                return decoded


def task_count() -> int:
    """The running tasks, but for the trio run's shared reader: it lives as long as the
    run (started by its first session), not as long as a session."""
    return sum(task.name != TASK_NAME for task in anyio.get_running_tasks())


async def read_events(
    session: Any, stop: Callable[[Any], bool] | None = None, timeout: float = 5
) -> list[Any]:
    """Read events until ``stop(event)`` is true (that event included) or the stream ends."""
    events: list[Any] = []
    with anyio.fail_after(timeout):
        async for event in session:
            events.append(event)
            if stop is not None and stop(event):
                break
    return events


async def read_until_error(session: Any, timeout: float = 5) -> tuple[list[Any], BaseException]:
    """Read events until the iterator raises; return the events and the error."""
    events: list[Any] = []
    with anyio.fail_after(timeout):
        try:
            async for event in session:
                events.append(event)
        except Exception as exc:
            return events, exc
    raise AssertionError(f"the session ended without an error after {events}")


def is_a(*kinds: type) -> Callable[[Any], bool]:
    return lambda event: isinstance(event, kinds)
