"""The side-by-side benchmark: millis-proto's transports against websockets and a floor.

    make bench                        # or: .venv/bin/python -m bench.run
    .venv/bin/python -m bench.run --quick     # a few seconds: the harness works, no figures

One load-server process (``bench.load_server``, hand-rolled asyncio) and, for every client
kind, separate client processes (``bench.clients``) each holding N paced duplex sessions
on loopback. The kinds run in alternating order round after round (forward, then
backward) so that machine noise hits them alike, and the table gives the median of the
rounds with their range. Every figure that judges is a ratio — to ``websockets`` and to the
hand-rolled floor, measured in the same run at the same N — never an absolute time. The
floor is asyncio; ``trio-floor``, the same hand-rolled client on trio, shows how much of
the trio transport's figure is trio's own (reported, not judged).

Then the sessions-per-core knee at 20 ms frames (the largest N at which one client process
sends >= 95 % of its frames within 10 ms of schedule in each of two runs; a bounded search
starting from what the CPU figure predicts), judged against websockets' knee in the same
run; the pure virtual-time run against the local agent and its speed, and import times.
Everything is bounded: at most ``--max-n`` sessions, a fixed number of probes (of at most
two runs each), a timeout on every child process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import KINDS

ROOT = Path(__file__).resolve().parent.parent
#: (frame ms, sessions) of the two table columns.
CONFIGS = ((20, 100), (8, 40))
QUICK_CONFIGS = ((20, 4), (8, 3))
KNEE_KINDS = ("floor", "websockets", "trio-floor", "trio", "asyncio")
#: On-time share that a load must keep to count as held.
KNEE_ON_TIME = 95.0


#: Fresh interpreters per module for the import times (alternating): a single import varies
#: by ±15 ms on a busy VM, and the verdict compares medians a few milliseconds apart. With
#: 15 the ratio's median moved 1.28-1.37 between runs on one box (40 CPU-timed pairs there
#: gave 1.22); 31 halves that spread for ~15 s more.
IMPORT_REPEAT = 31


@dataclass
class Options:
    rounds: int
    warmup: float
    measure: float
    max_n: int
    probes: int
    offline_minutes: float
    import_repeat: int
    kinds: Sequence[str]
    configs: Sequence[tuple[int, int]]
    knee_runs: int = 2


@dataclass
class Cell:
    """The rounds of one kind at one configuration."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def median(self, key: str) -> float:
        return float(statistics.median(r[key] for r in self.runs))

    def span(self, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.runs]
        return min(values), max(values)


class LoadServer:
    """The load-server child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load_server", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.proc.kill()
            raise SystemExit("the load server did not start")
        self.port = int(line[1])
        self.url = f"ws://127.0.0.1:{self.port}/millis"

    def stats(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"GET /stats HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def run_client(
    server: LoadServer, kind: str, n: int, period_ms: int, opts: Options
) -> dict[str, Any]:
    """One client process; its JSON result plus the server's CPU share meanwhile."""
    before, t0 = server.stats(), time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "bench.clients",
        kind,
        f"--url={server.url}",
        f"--n={n}",
        f"--period-ms={period_ms}",
        f"--warmup={opts.warmup}",
        f"--measure={opts.measure}",
    ]
    timeout = 30 + n * 0.1 + opts.warmup + opts.measure
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{kind} N={n}: {tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    after, t1 = server.stats(), time.monotonic()
    result["server_cpu_pct"] = 100 * (after["cpu_s"] - before["cpu_s"]) / (t1 - t0)
    result["server_late_ticks"] = after["late_ticks"] - before["late_ticks"]
    return result


def table_rounds(server: LoadServer, opts: Options) -> dict[tuple[str, int], Cell]:
    cells = {(k, p): Cell() for k in opts.kinds for p, _ in opts.configs}
    for period_ms, n in opts.configs:
        for r in range(opts.rounds):
            order = list(opts.kinds) if r % 2 == 0 else list(reversed(opts.kinds))
            for kind in order:
                cell = cells[kind, period_ms]
                if cell.error:
                    continue
                try:
                    cell.runs.append(run_client(server, kind, n, period_ms, opts))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    cell.error = str(exc)
    return cells


def hold(server: LoadServer, kind: str, n: int, opts: Options) -> tuple[float, float]:
    """The on-time share of ``n`` sessions (the worst of ``opts.knee_runs`` runs), and the
    longest garbage-collector pause seen in those runs (ms).

    A load counts as held only if every run holds it, so one lucky (or unlucky) window
    does not move the knee; a run that fails ends the probe (the load is not held).
    """
    worst, pause = 100.0, 0.0
    for _ in range(opts.knee_runs):
        try:
            result = run_client(server, kind, n, 20, opts)
        except (RuntimeError, subprocess.TimeoutExpired):
            result = {"on_time_pct": 0.0}
        worst = min(worst, float(result["on_time_pct"]))
        pause = max(pause, float(result.get("gc_max_ms", 0.0)))
        if worst < KNEE_ON_TIME:
            break
    return worst, pause


Probe = tuple[int, float, float]  # sessions, worst on-time %, longest GC pause (ms)
Knee = tuple[int, str, list[Probe]]


def knee_search(cpu_us: float, opts: Options) -> Generator[int, float, tuple[int, str]]:
    """The search for one kind's knee: yields the next N to probe, is sent its on-time
    share, and returns the largest N found holding the pacing (with "≥" if the search
    never saw it fail, "<" if it never held). Bounded by ``opts.probes`` probes."""
    grain = 5 if opts.max_n < 100 else 25
    lowest = grain

    def snap(value: float) -> int:
        return int(min(opts.max_n, max(lowest, round(value / grain) * grain)))

    n = snap(0.85e6 / cpu_us) if cpu_us > 0 else snap(opts.max_n / 2)
    good, bad = 0, 0
    tried: list[int] = []
    for _ in range(opts.probes):
        pct = yield n
        tried.append(n)
        if pct >= KNEE_ON_TIME:
            good = n
            nxt = snap(n * 1.25) if not bad else snap((good + bad) / 2)
        else:
            bad = n
            nxt = snap(n * 0.8) if not good else snap((good + bad) / 2)
        if nxt in (good, bad) or (good == opts.max_n) or (bad == lowest):
            break
        n = nxt
    if not good:  # never held: below the smallest load tried
        return min(tried), "<"
    return good, ("≥" if not bad else "")


def knees_interleaved(
    server: LoadServer, start: dict[str, float], opts: Options
) -> dict[str, Knee]:
    """Every kind's knee search, one probe of each kind in turn (alternating the order
    round after round, as the table does), so that a machine that slows down or speeds up
    during the minutes of the search moves every kind's knee alike. ``start``: each kind's
    CPU µs per session-second from the table, where its search starts."""
    searches = {kind: knee_search(cpu, opts) for kind, cpu in start.items()}
    pending = {kind: next(search) for kind, search in searches.items()}
    probes: dict[str, list[Probe]] = {kind: [] for kind in searches}
    found: dict[str, Knee] = {}
    turn = 0
    while pending:
        order = list(pending) if turn % 2 == 0 else list(reversed(pending))
        turn += 1
        for kind in order:
            n = pending[kind]
            pct, pause = hold(server, kind, n, opts)
            probes[kind].append((n, pct, pause))
            try:
                pending[kind] = searches[kind].send(pct)
            except StopIteration as done:
                knee_n, mark = done.value
                found[kind] = (knee_n, mark, probes[kind])
                del pending[kind]
    return {kind: found[kind] for kind in start}


def offline(opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    def child(*args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "bench.offline", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    return child(f"--minutes={opts.offline_minutes}"), child(f"--imports={opts.import_repeat}")


# --- the report -----------------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "—"


def print_table(cells: dict[tuple[str, int], Cell], opts: Options) -> None:
    head = f"{'client':<14}"
    for period_ms, n in opts.configs:
        head += f"│ {period_ms} ms frames, N={n:<5}{'':>45}"
    print(head)
    sub = f"{'':<14}" + (
        f"│ {'µs/session-s [range]':<24}{'xws':>7}{'xfloor':>8}{'on time':>9}{'MB/sess':>9}  "
    ) * len(opts.configs)
    print(sub)
    for kind in opts.kinds:
        line = f"{kind:<14}"
        for period_ms, _ in opts.configs:
            cell = cells[kind, period_ms]
            if cell.error or not cell.runs:
                line += f"│ {'n/a: ' + cell.error[:65]:<70}"
                continue
            cpu = cell.median("cpu_us_per_session_s")
            lo, hi = cell.span("cpu_us_per_session_s")
            ws, fl = cells.get(("websockets", period_ms)), cells.get(("floor", period_ms))
            ws_cpu = ws.median("cpu_us_per_session_s") if ws and ws.runs else None
            fl_cpu = fl.median("cpu_us_per_session_s") if fl and fl.runs else None
            figure = f"{cpu:.0f} [{lo:.0f}-{hi:.0f}]"
            line += (
                f"│ {figure:<24}{_ratio(cpu, ws_cpu):>7}{_ratio(cpu, fl_cpu):>8}"
                f"{cell.median('on_time_pct'):>8.1f}%{cell.median('rss_mb_per_session'):>9.3f}  "
            )
        print(line)
    sent = [r["sent_share_pct"] for c in cells.values() for r in c.runs]
    if sent:
        print(
            f"audio sent in the measured windows: min {min(sent):.0f} % of schedule "
            "(below 100 %: that client was starved of CPU, its on-time figure says by how much)"
        )
    objects = [
        f"{kind} {cells[kind, 20].median('gc_objects_per_session'):.0f}"
        for kind in opts.kinds
        if (kind, 20) in cells and cells[kind, 20].runs
    ]
    if objects:
        print(
            "objects the garbage collector tracks, per session, at 20 ms (its full "
            "collections walk them all): " + ", ".join(objects)
        )
    server = [r["server_cpu_pct"] for c in cells.values() for r in c.runs]
    if server:
        print(
            f"load server CPU while a client ran: median {statistics.median(server):.0f} %, "
            f"max {max(server):.0f} % of one core (it must stay well below 100 %)"
        )
    # The floor is asyncio; trio's own scheduling costs more. Split the trio figure into
    # what trio costs (the hand-rolled client on it) and what the transport adds on top.
    parts = []
    for period_ms, _ in opts.configs:
        fl, tf, tr = (cells.get((k, period_ms)) for k in ("floor", "trio-floor", "trio"))
        if fl and tf and tr and fl.runs and tf.runs and tr.runs:
            fl_cpu, tf_cpu, tr_cpu = (c.median("cpu_us_per_session_s") for c in (fl, tf, tr))
            parts.append(
                f"{period_ms} ms: trio-floor {_ratio(tf_cpu, fl_cpu)} the floor, "
                f"trio {_ratio(tr_cpu, tf_cpu)} trio-floor"
            )
    if parts:
        print("trio's own share (not judged): " + "; ".join(parts))


def print_knees(knees: dict[str, Knee], opts: Options) -> None:
    runs = f"; each probe: the worst of {opts.knee_runs} runs" if opts.knee_runs > 1 else ""
    print(
        f"\nsessions per core at 20 ms frames (≥ {KNEE_ON_TIME:.0f} % of frames within 10 ms"
        f"{runs}; the kinds' probes interleaved; gc: a garbage-collector pause over 10 ms):"
    )
    for kind, (n, mark, probes) in knees.items():
        tried = ", ".join(
            f"{pn}: {pct:.1f} %" + (f" (gc {pause:.0f} ms)" if pause > 10 else "")
            for pn, pct, pause in probes
        )
        print(f"  {kind:<14}{mark}{n:<6}  probes {tried}")
    if "trio" in knees and "trio-floor" in knees and knees["trio-floor"][0]:
        ours, floor = knees["trio"], knees["trio-floor"]
        print(
            f"trio's knee against trio-floor's (not judged): trio {ours[1]}{ours[0]} / trio-floor "
            f"{floor[1]}{floor[0]} = {ours[0] / floor[0]:.2f}"
        )


def print_offline(run: dict[str, Any], imports: dict[str, Any]) -> None:
    grew = run["rss_end_kb"] - run["rss_tenth_kb"]
    print(
        f"\nvirtual time, client machine ↔ local agent (no sockets, no event loop): "
        f"{run['virtual_s'] / 60:.1f} min in {run['cpu_s']:.2f} s CPU = "
        f"{run['speed']:.0f}x real time; RSS {run['rss_end_kb'] / 1024:.1f} MB, "
        f"{grew:+d} kB over the last 90 % of the run"
    )
    med, span = imports["median_ms"], imports["range_ms"]
    print(
        f"import (median of {imports.get('runs', '?')} fresh interpreters each [range]): "
        + ", ".join(f"{m} {med[m]:.0f} ms [{span[m][0]:.0f}-{span[m][1]:.0f}]" for m in med)
    )
    counts = imports.get("instructions")
    if counts:
        print(
            f"import in instructions (callgrind, above a bare interpreter's start; not "
            f"judged): wsproto {counts['wsproto'] / 1e6:.0f} M, millis_proto.wire "
            f"{counts['millis_proto.wire'] / 1e6:.0f} M = "
            f"{counts['millis_proto.wire'] / counts['wsproto']:.2f}x"
        )
    extra = imports["transports_trio_loads"]
    print(
        "`import transports.trio` also loads: "
        + (", ".join(extra) if extra else "nothing of the serving side or TLS")
    )


#: A target line's verdict: met, MISSED, undecided (``None``), or shown but not judged.
SHOWN = "shown"

#: The issue's import target was "<= 10 ms above ``import wsproto``" on a box where wsproto
#: took 30 ms. Judged here as the ratio that is (40 / 30), measured in the same run: an
#: absolute time would judge this box's speed, not the package (the issue's own rule).
IMPORT_RATIO = 40 / 30


def _verdict(ok: bool | str | None) -> str:
    if isinstance(ok, str):
        return f"{ok:<6}"
    return f"{'n/a' if ok is None else 'met' if ok else 'MISSED':<6}"


def print_targets(
    cells: dict[tuple[str, int], Cell],
    knees: dict[str, Knee],
    run: dict[str, Any],
    imports: dict[str, Any],
    opts: Options,
) -> None:
    """Each target of the transports issue against this run's figures, met or missed."""

    def cpu(kind: str, period_ms: int) -> float | None:
        cell = cells.get((kind, period_ms))
        return cell.median("cpu_us_per_session_s") if cell and cell.runs else None

    def ratio(kind: str, base: str, period_ms: int) -> float | None:
        value, ref = cpu(kind, period_ms), cpu(base, period_ms)
        return value / ref if value and ref else None

    lines: list[tuple[bool | str | None, str]] = []
    for kind, limit, base in (
        ("asyncio", 1.0, "websockets"),
        ("trio", 1.25, "websockets"),
        ("asyncio", 1.6, "floor"),
        ("trio", 1.6, "floor"),
    ):
        for period_ms, _ in opts.configs:
            r = ratio(kind, base, period_ms)
            shown = f"{r:.2f}x" if r is not None else "—"
            ok = None if r is None else r <= limit
            lines.append((ok, f"{kind} <= {limit:g}x {base} at {period_ms} ms: {shown}"))
    ws = knees.get("websockets")
    for kind in ("trio", "asyncio"):
        n, mark, _ = knees.get(kind, (0, "", []))
        # The figure is for its own box, where websockets held 400: on this box
        # the comparable target is the knee relative to websockets, measured in this run.
        if kind in knees and ws is not None and ws[0] and ws[1] != "<":
            rel = n / ws[0]
            ok = rel >= 1.0 and mark != "<"
            if (mark == "≥" and not ok) or (ws[1] == "≥" and ok):
                ok = None  # a bound only (the search never saw that kind fail): undecided
            shown = f"{mark}{n} / {ws[1]}{ws[0]} = {rel:.2f}"
        else:
            ok, shown = None, "—"
        lines.append((ok, f"{kind} knee / websockets knee >= 1.0 (same run): {shown}"))
    for kind in ("trio", "asyncio"):
        n, mark, _ = knees.get(kind, (0, "", []))
        context = ", ".join(
            f"{k} {knees[k][1]}{knees[k][0]}" for k in ("websockets", "floor") if k in knees
        )
        # Shown, not judged: an absolute count judges the box (the held 400 with
        # websockets); the knee against websockets' above is this target on this box.
        reached = "reached" if n >= 400 and mark != "<" else "not reached"
        lines.append(
            (
                SHOWN if kind in knees else None,
                f"{kind} holds >= 400 sessions per core: {mark}{n}, {reached} ({context}; "
                "the absolute figure of the issue's box, where websockets held 400 — not "
                "this box's)",
            )
        )
    for kind in ("trio", "asyncio"):
        cell = cells.get((kind, 20))
        mb = cell.median("rss_mb_per_session") if cell and cell.runs else None
        shown = f"{mb:.3f}" if mb is not None else "—"
        ok = None if mb is None else mb <= 0.05
        lines.append((ok, f"{kind} RSS <= 0.05 MB per session: {shown}"))
    minutes = run["virtual_s"] / 60
    budget = 3.6 * minutes / 60  # 3.6 s for 60 minutes: >= 1000x real time
    lines.append(
        (run["cpu_s"] <= budget, f"{minutes:g} virtual minutes in <= {budget:.2f} s CPU: "
         f"{run['cpu_s']:.2f} s")
    )  # fmt: skip
    grew = run["rss_end_kb"] - run["rss_tenth_kb"]
    lines.append((grew <= 1024, f"summary-only memory flat (<= 1 MB growth): {grew:+d} kB"))
    med = imports["median_ms"]
    # The bare package is lazy (its names load their modules on first use), so a bare
    # ``import millis_proto`` costs nothing and would meet the target trivially. What a
    # program that connects imports is the wire layer (ClientConnection, the machines, the
    # events), so that is the figure judged.
    extra = med["millis_proto.wire"] - med["wsproto"]
    times: float | None = med["millis_proto.wire"] / med["wsproto"] if med["wsproto"] else None
    lines.append(
        (
            None if times is None else times <= IMPORT_RATIO,
            f"import millis_proto as a program that connects uses it (millis_proto.wire) "
            f"<= {IMPORT_RATIO:.2f}x wsproto (the issue's 30 + 10 ms, same run): "
            + ("—" if times is None else f"{times:.2f}x")
            + f" (the bare, lazy package: {med['millis_proto']:.1f} ms)",
        )
    )
    lines.append(
        (
            SHOWN,
            f"import millis_proto.wire <= wsproto + 10 ms: {extra:+.0f} ms, wsproto itself "
            f"{med['wsproto']:.0f} ms (absolute, the issue's box took 30 ms for wsproto)",
        )
    )
    loads = imports["transports_trio_loads"]
    lines.append((not loads, "import transports.trio loads no serving side: "
                  + (", ".join(loads) or "none")))  # fmt: skip
    print("\ntargets (transports issue), from this run:")
    for verdict, text in lines:
        print(f"  {_verdict(verdict)}  {text}")


@contextlib.contextmanager
def load_server() -> Iterator[LoadServer]:
    server = LoadServer()
    try:
        yield server
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny N, one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--measure", type=float, default=2.0)
    parser.add_argument("--max-n", type=int, default=600)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument(
        "--knee-runs", type=int, default=2, help="runs per knee probe; all must hold"
    )
    parser.add_argument("--offline-minutes", type=float, default=60.0)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    args = parser.parse_args(argv)
    kinds = [
        k for k in args.kinds if k != "asyncio" or importlib.util.find_spec("transports.asyncio")
    ]
    if args.quick:
        opts = Options(1, 0.1, 0.3, 8, 1, 0.2, 1, kinds, QUICK_CONFIGS, knee_runs=1)
    else:
        opts = Options(
            args.rounds,
            args.warmup,
            args.measure,
            args.max_n,
            args.probes,
            args.offline_minutes,
            IMPORT_REPEAT,
            kinds,
            CONFIGS,
            knee_runs=args.knee_runs,
        )
    # Every child loads our modules from current bytecode, as from an installed wheel.
    # Where PYTHONDONTWRITEBYTECODE is set (it is on the benchmark machine) a source file
    # changed since its .pyc was written is compiled again in every child, and that
    # compile's garbage stays in the heap: it inflated the memory baseline (by ~1.3 MB per
    # process here), and so shrank the RSS-per-session figure.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "millis_proto", "transports", "bench"],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    load = os.getloadavg()
    print(
        f"millis-proto bench: {os.cpu_count()} CPUs, load average {load[0]:.2f} "
        f"{load[1]:.2f} {load[2]:.2f}; medians of {opts.rounds} alternating rounds of "
        f"{opts.measure:g} s (after {opts.warmup:g} s warm-up)\n"
    )
    with load_server() as server:
        cells = table_rounds(server, opts)
        print_table(cells, opts)
        start = {
            kind: cells[kind, 20].median("cpu_us_per_session_s")
            for kind in KNEE_KINDS
            if (kind, 20) in cells and cells[kind, 20].runs
        }
        knees = knees_interleaved(server, start, opts)
        print_knees(knees, opts)
    run, imports = offline(opts)
    print_offline(run, imports)
    print_targets(cells, knees, run, imports, opts)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cells": {f"{k}@{p}ms": vars(c) for (k, p), c in cells.items()},
                    "knees": knees,
                    "offline": run,
                    "imports": imports,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
