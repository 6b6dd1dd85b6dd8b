"""Tiny scripted Millis-like server for a self-check of the web-SDK harness (not our real server).

    python fake_server.py --port 0 [--hold 2.0] [--log server.jsonl]

Prints "LISTENING <port>" on stdout once bound. One scripted conversation per connection:
initiate -> onready; after ~1.5 s of received audio: start_answering, ontranscript,
onresponsetext, ~1 s of 16 kHz s16le tone in 8 frames; `--hold` seconds later onsessionended and
close(1000). Answers ping with pong. Writes what it saw as JSON lines to --log.
Needs the `websockets` package (>= 12).
"""

import argparse
import asyncio
import json
import math
import struct
import sys
import time
from collections import Counter

import websockets

RATE = 16000


def tone(seconds: float, hz: float = 440.0) -> bytes:
    n = int(RATE * seconds)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / RATE))) for i in range(n)
    )


async def handle(ws, args, log):
    t0 = time.monotonic()

    def note(kind, **kw):
        log({"t": round(time.monotonic() - t0, 3), "kind": kind, **kw})

    note("connect", path=getattr(getattr(ws, "request", None), "path", None))
    audio_bytes, sizes, answered = 0, Counter(), asyncio.Event()

    async def answer():
        await ws.send(json.dumps({"method": "start_answering"}))
        await ws.send(
            json.dumps({"method": "ontranscript", "data": "hello", "payload": {"is_final": True}})
        )
        await ws.send(
            json.dumps(
                {"method": "onresponsetext", "data": "Hi there", "payload": {"is_final": True}}
            )
        )
        await asyncio.sleep(0.3)  # so the client sees a non-zero latency
        pcm = tone(1.0)
        step = len(pcm) // 8
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])
            await asyncio.sleep(0.02)
        note("sent_agent_audio", bytes=len(pcm), frames=math.ceil(len(pcm) / step))
        await asyncio.sleep(args.hold)
        await ws.send(json.dumps({"method": "onsessionended"}))
        note("sent_onsessionended")
        await ws.close(1000, "session ended")

    task = None
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                audio_bytes += len(msg)
                sizes[len(msg)] += 1
                if task is None and audio_bytes >= int(1.5 * RATE * 2):
                    note("audio_threshold", bytes=audio_bytes)
                    task = asyncio.create_task(answer())
                continue
            try:
                m = json.loads(msg)
            except ValueError:
                note("bad_text", raw=msg)
                continue
            note("text", message=m, audio_bytes_so_far=audio_bytes)
            if m.get("method") == "initiate":
                await ws.send(json.dumps({"method": "onready", "payload": {"session_id": "s-1"}}))
            elif m.get("method") == "ping":
                await ws.send(json.dumps({"method": "pong", "data": m.get("data")}))
    except websockets.ConnectionClosed:
        pass
    finally:
        if task:
            task.cancel()
        note(
            "closed",
            code=ws.close_code,
            reason=ws.close_reason,
            audio_bytes=audio_bytes,
            audio_frames=sum(sizes.values()),
            frame_sizes=dict(sizes),
        )


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--hold", type=float, default=2.0, help="seconds between agent audio and onsessionended"
    )
    p.add_argument("--log", default=None, help="JSON-lines file (default stderr)")
    args = p.parse_args()
    out = open(args.log, "a", buffering=1) if args.log else sys.stderr

    def log(rec):
        out.write(json.dumps(rec) + "\n")

    async with websockets.serve(lambda ws: handle(ws, args, log), "127.0.0.1", args.port) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
