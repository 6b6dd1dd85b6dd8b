"""Per-frame cost of millis-proto's wire machines against raw wsproto, in the same process.

The hot path is audio: 50-125 binary frames per second each way per session. Each case is
timed in alternating rounds (ours, baseline, ours, ...) so machine noise hits both alike,
and the report gives medians and the ratio ours/baseline.

    .venv/bin/python -m bench.micro [--frames 5000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, Request

from millis_proto import ClientConnection, ServerConnection, StartRequest

FRAME = bytes(640)  # 20 ms of 16 kHz s16le


def _open_pair() -> tuple[ClientConnection, ServerConnection, ClientConnection]:
    # With the transports' mask source: it is what switches the client onto its own frame
    # encoder (without one, sends take wsproto's general path, which no transport uses).
    cw = ClientConnection(
        StartRequest(public_key="k", agent_id="a"),
        "ws://127.0.0.1/millis",
        mask_entropy=os.urandom,
    )
    client = cw  # one object per side
    sw = ServerConnection()
    for _ in range(5):
        if data := cw.data_to_send():  # b"" would mean EOF
            sw.receive_data(data, 0.0)
        if data := sw.data_to_send():
            cw.receive_data(data, 0.0)
    sw.send_ready("s")
    cw.receive_data(sw.data_to_send(), 0.0)
    cw.events()
    sw.events()
    return cw, sw, client


def _raw_pair() -> tuple[wsproto.WSConnection, wsproto.WSConnection]:
    c = wsproto.WSConnection(ConnectionType.CLIENT)
    s = wsproto.WSConnection(ConnectionType.SERVER)
    s.receive_data(c.send(Request(host="h", target="/")))
    list(s.events())
    c.receive_data(s.send(AcceptConnection()))
    list(c.events())
    return c, s


def case_send(n: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Client sends n audio frames, flushing after each (what a transport does)."""

    def ours() -> None:
        cw, _, client = _open_pair()
        for i in range(n):
            client.send_audio(FRAME, i * 0.02)
            cw.data_to_send()

    def raw() -> None:
        c, _ = _raw_pair()
        for _ in range(n):
            c.send(BytesMessage(data=FRAME))

    return ours, raw


def case_receive(n: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Client receives n agent audio frames (one per read) and drains events + playback."""
    _, sw, _ = _open_pair()
    for _ in range(n):
        sw.send_audio(FRAME)
    wire = sw.data_to_send()
    frame_len = len(wire) // n
    chunks = [wire[i * frame_len : (i + 1) * frame_len] for i in range(n)]

    def ours() -> None:
        cw, _, client = _open_pair()
        for i, chunk in enumerate(chunks):
            cw.receive_data(chunk, i * 0.02)
            cw.events()
            client.pull_playback(320, i * 0.02)

    def raw() -> None:
        c, _ = _raw_pair()
        for chunk in chunks:
            c.receive_data(chunk)
            for _ in c.events():
                pass

    return ours, raw


def measure(
    pair: tuple[Callable[[], None], Callable[[], None]], rounds: int
) -> tuple[float, float]:
    ours_t: list[float] = []
    raw_t: list[float] = []
    for _ in range(rounds):
        for fn, out in ((pair[0], ours_t), (pair[1], raw_t)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ours_t), statistics.median(raw_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    n = args.frames
    print(f"{n} frames of 640 B, median of {args.rounds} alternating rounds")
    print(f"{'case':<10}{'ours µs/frame':>15}{'wsproto µs/frame':>18}{'ratio':>8}")
    for name, case in (("send", case_send(n)), ("receive", case_receive(n))):
        ours, raw = measure(case, args.rounds)
        print(f"{name:<10}{ours / n * 1e6:>15.2f}{raw / n * 1e6:>18.2f}{ours / raw:>8.2f}")


if __name__ == "__main__":
    main()
