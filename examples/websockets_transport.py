"""A custom transport: the `websockets` library (asyncio) driving the Sans-I/O core directly.

`websockets` does the WebSocket framing itself, so this plugs in one level up, at the
message-level machine `MessageClient`: whole messages in (`client.receive_message`), whole
messages out (`client.messages_to_send`); it is the only object with events here. No code
from `transports/` is used — the proof that the core is pluggable. Run it against a local agent:

    millis-proto serve --port 8080 &
    python examples/websockets_transport.py ws://127.0.0.1:8080/millis question.wav reply.raw
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import websockets

from millis_proto import (
    CloseRequest,
    Event,
    MessageClient,
    Ready,
    StartRequest,
    Transcript,
)

FRAME_BYTES = 640  # 20 ms of 16 kHz s16le


async def converse(url: str, request: StartRequest, user_pcm: bytes) -> tuple[list[Event], bytes]:
    """Send ``user_pcm`` in real time, then silence; return the events and the played audio."""
    loop = asyncio.get_running_loop()
    # ping data is wall-clock epoch ms: tell the core how the loop's clock maps to it
    client = MessageClient(request, wall_clock_offset=time.time() - loop.time())
    events: list[Event] = []
    played = bytearray()

    async with websockets.connect(url, max_size=1 << 20) as ws:

        async def flush() -> None:
            for item in client.messages_to_send():
                if isinstance(item, CloseRequest):
                    await ws.close(item.code, item.reason)
                    return
                await ws.send(item)

        async def read() -> None:
            async for message in ws:  # str = text frame, bytes = binary frame
                client.receive_message(message, loop.time())
                events.extend(client.events())
                await flush()  # e.g. the close after onsessionended

        async def speak_and_listen() -> None:
            start = loop.time()
            silence_frames = 0
            for i in range(0, 10**9, FRAME_BYTES):
                chunk = user_pcm[i : i + FRAME_BYTES] or bytes(FRAME_BYTES)
                silence_frames += not user_pcm[i : i + FRAME_BYTES]
                if client.closing or silence_frames > 150:  # 3 s of quiet after the input
                    break
                client.send_audio(chunk, loop.time())
                played.extend(client.pull_playback(FRAME_BYTES // 2, loop.time()).pcm)
                events.extend(client.events())
                await flush()
                await asyncio.sleep(max(0.0, start + (i // FRAME_BYTES + 1) * 0.02 - loop.time()))

        client.start(loop.time())  # initiate is the first message
        await flush()
        reader = asyncio.create_task(read())
        await speak_and_listen()
        if not client.closing:
            client.close(1000, "done")
            await flush()
        await reader
    client.connection_closed(loop.time())
    events.extend(client.events())
    return events, bytes(played)


def main() -> None:
    url, wav, out = sys.argv[1], sys.argv[2], sys.argv[3]
    import soundfile as sf  # any audio file; 16 kHz mono expected for this example

    data, rate = sf.read(wav, dtype="int16")
    if rate != 16000 or data.ndim != 1:
        sys.exit("this example needs a 16 kHz mono file")
    request = StartRequest(public_key="local-test-key", agent_id="local-agent")
    events, played = asyncio.run(converse(url, request, data.tobytes()))
    Path(out).write_bytes(played)
    for event in events:
        if isinstance(event, (Ready, Transcript)):
            print(event)
    print(f"{len(events)} events, {len(played) // 2} samples played")


if __name__ == "__main__":
    main()
