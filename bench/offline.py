"""The pure virtual-time run, and the import times, for the benchmark table.

    python -m bench.offline --minutes 60      # one JSON line
    python -m bench.offline --imports 7       # import times, fresh interpreters

The virtual-time run is a conversation between the client machine and the local agent with
no sockets and no event loop: the two message machines hand their messages to each other
directly on a virtual clock advanced 20 ms a step. The user talks in bursts (1.2 s of a
loud tone, then 3.8 s of silence, over and over) and the echo agent answers each burst;
playback is pulled every step, and only a summary (counts per event type) is kept, so its
memory must not grow with the length. Reported: CPU seconds, speed against real time, and
resident memory at a tenth of the run and at its end.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import struct
import subprocess
import sys
from collections import Counter

STEP_MS = 20
BURST_S, GAP_S = 1.2, 3.8


def _user_audio() -> tuple[bytes, bytes]:
    """One 20 ms frame of speech-loud tone, and one of silence."""
    samples = STEP_MS * 16
    tone = [round(12000 * math.sin(2 * math.pi * 220 * i / 16000)) for i in range(samples)]
    return struct.pack(f"<{samples}h", *tone), bytes(samples * 2)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def virtual_run(minutes: float) -> dict[str, object]:
    """Run the conversation; see the module docstring."""
    from millis_proto import ClientConfig, MessageClient, MessageServer, StartRequest
    from millis_proto.agent import AgentSession, AgentSetup
    from millis_proto.machine import CloseRequest

    tone, silence = _user_audio()
    cycle = round((BURST_S + GAP_S) * 1000 / STEP_MS)
    burst = round(BURST_S * 1000 / STEP_MS)
    steps = round(minutes * 60_000 / STEP_MS)
    samples = STEP_MS * 16
    setup = AgentSetup()
    server = MessageServer()
    agent = AgentSession(setup, server=server)
    client = MessageClient(
        StartRequest(public_key="offline-key", agent_id="local-agent"),
        ClientConfig(emit_audio_events=False),
    )
    summary: Counter[str] = Counter()
    played = 0
    ended_at: int | None = None
    tenth = max(steps // 10, 1)
    rss_tenth = 0
    cpu0 = _cpu()
    rss0 = _rss_kb()
    client.start(0.0)
    for step in range(steps):
        now = step * STEP_MS / 1000
        client.send_audio(tone if step % cycle < burst else silence, now)
        for message in client.messages_to_send():
            if not isinstance(message, CloseRequest):
                server.receive_message(message, now)
        for event in server.events():
            agent.feed(event, now)
        deadline = agent.get_timer()
        if deadline is not None and deadline <= now:
            agent.on_tick(now)
        for message in server.messages_to_send():
            if isinstance(message, CloseRequest):
                ended_at = step
                break
            client.receive_message(message, now)
        played += len(client.pull_playback(samples, now).pcm)
        for event in client.events():
            summary[type(event).__name__] += 1
        if ended_at is not None:
            break
        if step == tenth:
            rss_tenth = _rss_kb()
    cpu = _cpu() - cpu0
    virtual_s = (ended_at + 1 if ended_at is not None else steps) * STEP_MS / 1000
    return {
        "minutes": minutes,
        "virtual_s": virtual_s,
        "cpu_s": cpu,
        "speed": virtual_s / cpu if cpu else math.inf,
        "rss_start_kb": rss0,
        "rss_tenth_kb": rss_tenth,
        "rss_end_kb": _rss_kb(),
        "played_bytes": played,
        "ended_early": ended_at is not None,
        "events": dict(summary),
    }


_IMPORT = "import time, sys\nt = time.perf_counter()\nimport {0}\nprint(time.perf_counter() - t)\n"


def import_times(repeat: int) -> dict[str, object]:
    """Median wall time of a fresh interpreter's ``import X``, alternating the modules."""
    modules = ("wsproto", "millis_proto", "transports.trio")
    times: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(repeat):
        for module in modules:
            out = subprocess.run(
                [sys.executable, "-c", _IMPORT.format(module)],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            times[module].append(float(out.stdout))
    probe = (
        "import sys, transports.trio\n"
        "print(' '.join(m for m in ('transports.server', 'transports.local_agent', "
        "'anyio.streams.tls', 'millis_proto.agent') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {
        "median_ms": {m: statistics.median(v) * 1000 for m, v in times.items()},
        "range_ms": {m: (min(v) * 1000, max(v) * 1000) for m, v in times.items()},
        "transports_trio_loads": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--imports", type=int, metavar="REPEAT")
    args = parser.parse_args()
    result = virtual_run(args.minutes) if args.minutes else import_times(args.imports or 5)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
