"""The pure virtual-time run, and the import times, for the benchmark table.

    python -m bench.offline --minutes 60      # one JSON line
    python -m bench.offline --imports 7       # import times, fresh interpreters

The virtual-time run is the library's own :func:`millis_proto.agent.offline_call`: the
client machine and the local agent hand their messages to each other directly, with no
sockets and no event loop, on a virtual clock advanced 20 ms a step. The user talks in
bursts (1.2 s of a loud tone, then 3.8 s of silence, over and over, from a generator) and
the echo agent answers each burst; playback is pulled every step, and only the call's
summary is kept, so its memory must not grow with the length. Reported: CPU seconds, speed
against real time, and resident memory at a tenth of the run and at its end.

``import millis_proto`` loads its submodules on first use, so the import table also times
``millis_proto.wire``: the whole client and server stack a transport needs (wsproto, the
machines, the events), which is what a program that opens a connection really pays.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator

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
    from millis_proto import ClientConfig
    from millis_proto.agent import offline_call

    tone, silence = _user_audio()
    cycle = round((BURST_S + GAP_S) * 1000 / STEP_MS)
    burst = round(BURST_S * 1000 / STEP_MS)
    steps = round(minutes * 60_000 / STEP_MS)
    tenth = max(steps // 10, 1)
    rss_tenth = 0

    def microphone() -> Iterator[bytes]:
        nonlocal rss_tenth
        for step in range(steps):
            if step == tenth:
                rss_tenth = _rss_kb()
            yield tone if step % cycle < burst else silence

    cpu0 = _cpu()
    rss0 = _rss_kb()
    summary = offline_call(
        microphone(), config=ClientConfig(emit_audio_events=False), frame_ms=STEP_MS
    )
    cpu = _cpu() - cpu0
    return {
        "minutes": minutes,
        "virtual_s": summary.duration_s,
        "cpu_s": cpu,
        "speed": summary.duration_s / cpu if cpu else math.inf,
        "rss_start_kb": rss0,
        "rss_tenth_kb": rss_tenth,
        "rss_end_kb": _rss_kb(),
        "end_reason": summary.end_reason,
        "turns": summary.turns,
        "played_s": summary.played_audio_s,
        "events": summary.event_counts,
    }


_IMPORT = "import time, sys\nt = time.perf_counter()\nimport {0}\nprint(time.perf_counter() - t)\n"


def import_times(repeat: int) -> dict[str, object]:
    """Median wall time of a fresh interpreter's ``import X``, alternating the modules.

    Every module is imported from bytecode, as from an installed package (pip byte-compiles
    a wheel as it installs it). This checkout is an editable install, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (it is on the benchmark machine) nothing would ever
    cache our modules' bytecode: each run would compile the package's source, ~40 ms that
    measure CPython's compiler rather than what importing costs. So the children share a
    bytecode cache in a temporary directory (``PYTHONPYCACHEPREFIX``), filled by one
    untimed import of everything first.
    """
    modules = ("wsproto", "millis_proto", "millis_proto.wire", "transports.trio")
    times: dict[str, list[float]] = {m: [] for m in modules}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache, "PYTHONDONTWRITEBYTECODE": ""}
        subprocess.run(
            [sys.executable, "-c", "import " + ", ".join(modules)], env=env, check=True, timeout=60
        )
        for _ in range(repeat):
            for module in modules:
                out = subprocess.run(
                    [sys.executable, "-c", _IMPORT.format(module)],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                    env=env,
                )
                times[module].append(float(out.stdout))
        instructions = import_instructions(env)
    probe = (
        "import sys, transports.trio\n"
        "print(' '.join(m for m in ('transports.server', 'transports.local_agent', "
        "'anyio.streams.tls', 'millis_proto.agent') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return {
        "runs": repeat,
        "median_ms": {m: statistics.median(v) * 1000 for m, v in times.items()},
        "range_ms": {m: (min(v) * 1000, max(v) * 1000) for m, v in times.items()},
        "transports_trio_loads": loaded,
        "instructions": instructions,
    }


_COLLECTED = re.compile(r"Collected : (\d+)")


def import_instructions(env: dict[str, str]) -> dict[str, int] | None:
    """Instructions each import executes (callgrind), above a bare interpreter's start.

    Why: a fresh interpreter's import time scatters by ±20 % on a shared VM, and the
    import verdict compares medians a few milliseconds apart. An instruction count is the
    same run after run, so it shows where the ratio really is (shown, not judged: the
    target is in time). ``None`` where valgrind is not installed.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    counts: dict[str, int] = {}
    for name, code in (("start", "pass"), ("wsproto", "import wsproto"),
                       ("millis_proto.wire", "import millis_proto.wire")):  # fmt: skip
        out = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-c", code],
            capture_output=True, text=True, timeout=300, env=env, check=False,
        )  # fmt: skip
        found = _COLLECTED.search(out.stderr)
        if out.returncode != 0 or found is None:
            return None
        counts[name] = int(found.group(1))
    start = counts.pop("start")
    return {name: n - start for name, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--imports", type=int, metavar="REPEAT")
    args = parser.parse_args()
    result = virtual_run(args.minutes) if args.minutes else import_times(args.imports or 5)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
