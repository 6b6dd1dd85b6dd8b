"""How many paced sessions one load worker and one ``serve`` process hold on this machine.

For each session count, a fresh ``millis-proto serve`` (the local echo agent) is started
on a free loopback port and loaded by ``millis-proto load --workers 1 --agent-pacing`` for
a fixed time. Reported per row: our pacing (share of 20 ms frames sent within half a frame
of their capture time, and the p95 lateness), the agent's pacing as the callers hear it
(p95/p99 of how far its audio ran behind real time), turn and connect latency, failures,
the CPU each process used — also per frame, and so how many sessions one core would hold
at 50 frames a second, a figure that does not depend on how busy the machine is — and the
load average (the box may be shared: read the other figures next to it).

    .venv/bin/python bench/load_scale.py [--sessions 100,200,400] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).with_name("millis-proto"))
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(sessions: int, seconds: float) -> dict[str, Any]:
    server = subprocess.Popen(
        [EXE, "serve", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        match = re.search(r"(ws://\S+)", server.stdout.readline())
        assert match, "serve did not start"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.json"
            server_cpu = _cpu_seconds(server.pid)
            client_cpu = _children_cpu()
            subprocess.run(
                [
                    EXE, "load", "--plain", "--endpoint", match.group(1),
                    "--sessions", str(sessions), "--duration", str(seconds),
                    "--ramp", "200", "--agent-pacing", "--json", str(out),
                ],
                stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False,
                timeout=seconds + 120,
            )  # fmt: skip
            client_cpu = _children_cpu() - client_cpu
            server_cpu = _cpu_seconds(server.pid) - server_cpu
            s = json.loads(out.read_text())
    finally:
        server.terminate()
        server.wait(timeout=10)
    m = s["metrics"]
    frames = max(s["pacing"]["frames"], 1)
    return {
        "sessions": sessions,
        "connected": s["callers_connected"],
        "failed": s["calls"]["failed"],
        "on_time_%": round(100 * (s["pacing"]["on_time_ratio"] or 0), 1),
        "send_late_p95_ms": m["send_lateness_ms"]["p95"],
        "agent_late_p95_ms": m["agent_lateness_ms"]["p95"],
        "agent_late_p99_ms": m["agent_lateness_ms"]["p99"],
        "turn_p50_ms": m["turn_ms"]["p50"],
        "turn_p95_ms": m["turn_ms"]["p95"],
        "connect_p95_ms": m["connect_ms"]["p95"],
        "client_cpu_%": round(100 * client_cpu / s["elapsed_s"]),
        "serve_cpu_%": round(100 * server_cpu / s["elapsed_s"]),
        # CPU per 20 ms frame sent (the client's send + playback + events; the server's
        # receive + agent + answer), and what one core would therefore hold at 50 frames/s.
        "client_us_per_frame": round(1e6 * client_cpu / frames),
        "serve_us_per_frame": round(1e6 * server_cpu / frames),
        "client_sessions_per_core": round(1e6 / (1e6 * client_cpu / frames * 50)),
        "serve_sessions_per_core": round(1e6 / (1e6 * server_cpu / frames * 50)),
        "load_avg_1m": s["load_average"][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,200,400", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    print(f"cores: {os.cpu_count()}, {args.seconds:g} s per row, 20 ms frames")
    rows = [measure(n, args.seconds) for n in counts]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
