"""How many paced sessions one load worker and one ``serve`` process hold on this machine.

For each session count, a fresh ``millis-proto serve`` (the local echo agent) is started
on a free loopback port and loaded by ``millis-proto load --workers 1 --agent-pacing`` for
a fixed time. Reported per row: our pacing (share of 20 ms frames sent within half a frame
of their capture time, and the p95 lateness), the agent's pacing as the callers hear it
(p95/p99 of how far its audio ran behind real time), turn and connect latency, failures,
the CPU each process used — also per frame, and so how many sessions one core would hold
at 50 frames a second, a figure that does not depend on how busy the machine is — and the
load average (the box may be shared: read the other figures next to it). The load side's
CPU is what ``load`` itself reports for its run (``pacing.cpu_s``: process start-up and
imports excluded); the server's is read from ``/proc`` around the run.

With ``--reference`` the same session counts are also run by ``websockets`` (and our
asyncio transport) against the benchmark's own cheap load server (``bench.run``), so that
the load caller's figure can be read next to what the ``websockets`` library costs on the
same machine at the same time.

    .venv/bin/python bench/load_scale.py [--sessions 100,200,400] [--seconds 15] [--reference]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
            subprocess.run(
                [
                    EXE, "load", "--plain", "--endpoint", match.group(1),
                    "--sessions", str(sessions), "--duration", str(seconds),
                    "--ramp", "200", "--agent-pacing", "--json", str(out),
                ],
                stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False,
                timeout=seconds + 120,
            )  # fmt: skip
            server_cpu = _cpu_seconds(server.pid) - server_cpu
            s = json.loads(out.read_text())
    finally:
        server.terminate()
        server.wait(timeout=10)
    m = s["metrics"]
    frames = max(s["pacing"]["frames"], 1)
    client_cpu = s["pacing"]["cpu_s"]
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


def reference(counts: list[int], seconds: float) -> list[dict[str, Any]]:
    """``websockets`` and our asyncio transport at the same counts (``bench.run``'s clients)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import Options, load_server, run_client

    opts = Options(
        rounds=1, warmup=1.0, measure=min(seconds, 5.0), max_n=max(counts), probes=0,
        offline_minutes=0, import_repeat=0, kinds=(), configs=(),
    )  # fmt: skip
    rows = []
    with load_server() as server:
        for n in counts:
            for kind in ("websockets", "asyncio"):
                r = run_client(server, kind, n, 20, opts)
                per_frame = r["cpu_us_per_session_s"] / 50
                rows.append(
                    {
                        "client": kind,
                        "sessions": n,
                        "on_time_%": round(r["on_time_pct"], 1),
                        "us_per_frame": round(per_frame),
                        "sessions_per_core": round(1e6 / (per_frame * 50)),
                        "load_avg_1m": round(os.getloadavg()[0], 2),
                    }
                )
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,200,400", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--reference", action="store_true", help="also run websockets")
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    print(f"cores: {os.cpu_count()}, {args.seconds:g} s per row, 20 ms frames")
    _print([measure(n, args.seconds) for n in counts])
    if args.reference:
        print("reference clients against bench.load_server (bench.run):")
        _print(reference(counts, args.seconds))


if __name__ == "__main__":
    main()
