"""Helpers for agent tests: synthetic audio and a harness with a fake clock.

The audio is speech-like noise from a fixed LCG (no randomness, no numpy), so every run
produces the same bytes. The harness feeds audio in 20 ms frames like a real-time client:
the clock ``now`` is the end time of the audio fed so far, so the sample timeline and the
clock agree unless a test moves the clock on its own.
"""

from __future__ import annotations

import json
from array import array
from functools import lru_cache
from typing import Any

from millis_proto import MessageServer
from millis_proto.agent import AgentSession, AgentSetup
from millis_proto.machine import CloseRequest

FRAME_BYTES = 640  # 20 ms
INITIATE: dict[str, Any] = {"public_key": "pk-test", "agent": {"agent_id": "agent-1"}}


@lru_cache(maxsize=64)
def noise(ms: int, seed: int = 1, amplitude: int = 6000) -> bytes:
    """Uniform noise (about -19.5 dBFS at the default amplitude): voiced by the VAD."""
    x = seed
    out = array("h")
    for _ in range(ms * 16):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append((x >> 12) % (2 * amplitude + 1) - amplitude)
    return out.tobytes()


def silence(ms: int) -> bytes:
    """Digital silence."""
    return bytes(ms * 32)


def syllables(ms: int, seed: int = 7) -> bytes:
    """Speech-like: 200 ms bursts with 80 ms gaps (shorter than every silence window)."""
    out = bytearray()
    n = 0
    while len(out) < ms * 32:
        out += noise(200, seed + n) + silence(80)
        n += 1
    return bytes(out[: ms * 32])


def render(item: str | bytes | CloseRequest) -> str:
    """A server message as a short readable line."""
    if isinstance(item, bytes):
        return f"audio {len(item)}"
    if isinstance(item, CloseRequest):
        return f"close {item.code} {item.reason}"
    msg = json.loads(item)
    method = msg["method"]
    payload = msg.get("payload")
    if method in ("ontranscript", "onresponsetext"):
        final = "final" if payload["is_final"] else "partial"
        return f"{method} {final}: {msg['data']}"
    if method == "onready":
        return f"onready {payload['session_id']}"
    if method == "onfunction":
        return f"onfunction {payload['name']} {json.dumps(payload['params'], sort_keys=True)}"
    parts = [method]
    if "data" in msg:
        parts.append(json.dumps(msg["data"], sort_keys=True))
    if "payload" in msg:
        parts.append(json.dumps(payload, sort_keys=True))
    return " ".join(parts)


def compact(lines: list[str]) -> list[str]:
    """Merge runs of audio lines into ``audio xN <bytes>``."""
    out: list[str] = []
    run = total = 0
    for line in [*lines, ""]:
        if line.startswith("audio "):
            run += 1
            total += int(line.split()[1])
            continue
        if run:
            out.append(f"audio x{run} {total}")
            run = total = 0
        if line:
            out.append(line)
    return out


class Harness:
    """A MessageServer + AgentSession fed whole messages, with a fake clock.

    ``log`` holds ``(now, line)`` for every message the server sent, ``audio`` the agent
    audio bytes in order.
    """

    def __init__(self, setup: AgentSetup | None = None) -> None:
        self.setup = setup if setup is not None else AgentSetup()
        self.server = MessageServer()
        self.session = AgentSession(self.setup, server=self.server)
        self.agent = self.session.agent
        self.now = 0.0
        self.samples = 0  # user audio fed so far
        self.log: list[tuple[float, str]] = []
        self.audio = bytearray()

    def receive(self, message: str | bytes) -> None:
        """One whole client message at the current time."""
        self.server.receive_message(message, self.now)
        for event in self.server.events():
            self.session.feed(event, self.now)
        self.drain()

    def drain(self) -> None:
        for item in self.server.messages_to_send():
            if isinstance(item, bytes):
                self.audio += item
            self.log.append((round(self.now, 6), render(item)))

    def initiate(self, **extra: Any) -> None:
        self.receive(json.dumps({"method": "initiate", "data": {**INITIATE, **extra}}))

    def speak(self, pcm: bytes, frame_bytes: int = FRAME_BYTES) -> None:
        """Feed ``pcm`` in frames; the clock follows the audio (a real-time client)."""
        for i in range(0, len(pcm), frame_bytes):
            frame = pcm[i : i + frame_bytes]
            self.samples += len(frame) // 2
            self.now = self.samples / 16000
            if self.server.closing:
                return
            self.receive(frame)

    def tick_to(self, until: float) -> None:
        """Advance the clock to ``until`` calling on_tick exactly at each agent deadline."""
        for _ in range(100_000):  # a deadline that never moves would loop forever
            timer = self.session.get_timer()
            if timer is None or timer > until:
                break
            self.now = max(self.now, timer)
            self.session.on_tick(self.now)
            self.drain()
        self.now = until
        self.session.on_tick(self.now)
        self.drain()

    def lines(self) -> list[str]:
        return [line for _, line in self.log]

    def clear_log(self) -> None:
        self.log.clear()
        self.audio.clear()
