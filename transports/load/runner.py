"""Running many callers: in this process (one asyncio loop) or spread over worker processes.

:func:`run_load` starts ``sessions`` callers at ``ramp`` per second, each placing calls
one after another until the run's deadline (``duration``) or until ``calls`` calls have
been placed in all, and reports a :class:`LoadStats` snapshot every
``PROGRESS_INTERVAL``; one :class:`~.caller.Pacer` paces the frames of all of them.
:func:`run_workers` splits the plan over worker processes (the ``spawn`` start method: a
fresh interpreter each, no event loop inherited), gathers their snapshots through a
bounded queue and merges them — sketches add bucket counts, so the merged percentiles are
those of every sample pooled.

Everything is bounded: the run by ``duration`` (or :data:`MAX_RUN_SECONDS`), each call by
its plan, and a worker that does not report within the run's bound plus
:data:`WORKER_GRACE_SECONDS` is terminated and counted as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .caller import CallPlan, Pacer, place_call
from .stats import LoadStats

__all__ = [
    "MAX_CALLS",
    "MAX_DURATION",
    "MAX_RUN_SECONDS",
    "MAX_SESSIONS",
    "MAX_WORKERS",
    "LoadPlan",
    "run_load",
    "run_workers",
]

#: Bounds of a run's shape.
MAX_SESSIONS = 10_000
MAX_WORKERS = 64
MAX_CALLS = 1_000_000
MAX_DURATION = 24 * 3600.0
#: A run limited by ``calls`` alone still ends after this long.
MAX_RUN_SECONDS = MAX_DURATION
#: How often progress is reported (seconds).
PROGRESS_INTERVAL = 1.0
#: A caller whose call did not connect waits this long before the next one.
RETRY_PAUSE = 1.0
#: What a worker may take beyond the run's own bound before it is terminated.
WORKER_GRACE_SECONDS = 30.0
#: How long the final report of a worker that exited may take to arrive.
DEAD_GRACE_SECONDS = 5.0
#: Snapshots a worker may have in flight to the parent; more are dropped (the final one
#: is always delivered).
QUEUE_SIZE = 256

Progress = Callable[[LoadStats, float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """The shape of a run: who calls, how many at once, how fast they start, for how long."""

    call: CallPlan
    sessions: int
    ramp: float = 50.0
    duration: float | None = None
    calls: int | None = None

    @property
    def bound_seconds(self) -> float:
        """When the run ends at the latest, calls in flight included."""
        run = self.duration if self.duration is not None else MAX_RUN_SECONDS
        call = self.call
        return run + call.connect_timeout + call.max_call_seconds + 2 * call.connect_timeout

    def split(self, workers: int) -> list[LoadPlan]:
        """This plan shared by ``workers`` processes (sessions, ramp and calls divided)."""
        workers = min(workers, self.sessions)
        plans = []
        for i in range(workers):
            sessions = self.sessions // workers + (i < self.sessions % workers)
            calls = None
            if self.calls is not None:
                calls = self.calls // workers + (i < self.calls % workers)
            plans.append(replace(self, sessions=sessions, ramp=self.ramp / workers, calls=calls))
        return [p for p in plans if p.calls is None or p.calls > 0]


class _Budget:
    """The calls left to place in this process (``None``: as many as the time allows)."""

    def __init__(self, calls: int | None) -> None:
        self.left = math.inf if calls is None else calls

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _caller(
    plan: LoadPlan,
    stats: LoadStats,
    budget: _Budget,
    pacer: Pacer,
    *,
    start_at: float,
    hang_up_at: float,
) -> None:
    clock = asyncio.get_running_loop().time
    await asyncio.sleep(start_at - clock())
    connected_once = False
    while clock() < hang_up_at and budget.take():
        if plan.call.suite:
            from .suite_calls import place_suite_call

            connected = await place_suite_call(plan.call, stats, hang_up_at=hang_up_at)
        else:
            connected = await place_call(plan.call, stats, pacer, hang_up_at=hang_up_at)
        if connected and not connected_once:
            connected_once = True
            stats.callers_connected += 1
        if not connected:
            await asyncio.sleep(min(RETRY_PAUSE, max(hang_up_at - clock(), 0)))


async def run_load(
    plan: LoadPlan,
    stats: LoadStats | None = None,
    *,
    progress: Progress | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> LoadStats:
    """Run ``plan`` in this asyncio loop; returns the stats (also passed to ``progress``).

    ``progress(stats, elapsed_seconds)`` is called every ``progress_interval`` and once at
    the end. Cancel-safe: callers hang up (close handshakes bounded) when cancelled.
    """
    stats = LoadStats() if stats is None else stats
    clock = asyncio.get_running_loop().time
    start = clock()
    cpu_start = time.process_time()
    run = plan.duration if plan.duration is not None else MAX_RUN_SECONDS
    hang_up_at = start + run
    budget = _Budget(plan.calls)
    pacer = Pacer()
    helpers = [asyncio.ensure_future(pacer.run())]
    if progress is not None:
        helpers.append(asyncio.ensure_future(_report(stats, progress, start, progress_interval)))
    callers = [
        asyncio.ensure_future(
            _caller(plan, stats, budget, pacer, start_at=start_at, hang_up_at=hang_up_at)
        )
        for start_at in (start + i / plan.ramp for i in range(plan.sessions))
        if start_at < hang_up_at
    ]
    try:
        await asyncio.gather(*callers)
    finally:
        for task in callers:
            task.cancel()  # after an error or a cancellation: the others hang up too
        if callers:
            await asyncio.wait(callers)
        for task in helpers:
            task.cancel()
        await asyncio.wait(helpers)
        stats.cpu_s += time.process_time() - cpu_start
    if progress is not None:
        progress(stats, clock() - start)
    return stats


async def _report(stats: LoadStats, progress: Progress, start: float, interval: float) -> None:
    clock = asyncio.get_running_loop().time
    while True:
        await asyncio.sleep(interval)
        progress(stats, clock() - start)


# --- worker processes ------------------------------------------------------------------


def _worker_main(plan: LoadPlan, index: int, out: Any) -> None:
    """A worker process: run its share, send snapshots, then the final stats."""
    stats = LoadStats()

    def send(snapshot: LoadStats, elapsed: float) -> None:
        with contextlib.suppress(queue.Full):  # the parent is slow: skip this snapshot
            out.put_nowait(("progress", index, snapshot.to_dict(), elapsed))

    try:
        asyncio.run(run_load(plan, stats, progress=send))
    except KeyboardInterrupt:
        stats.interrupted = True  # Ctrl-C reached every process: report what was measured
    out.put(("done", index, stats.to_dict(), 0.0), timeout=WORKER_GRACE_SECONDS)


def run_workers(
    plan: LoadPlan,
    workers: int,
    *,
    progress: Progress | None = None,
) -> LoadStats:
    """Run ``plan`` over ``workers`` processes; returns the merged stats.

    A worker that dies or overruns the run's bound is stopped and counted as a
    ``WorkerFailed`` error (its last snapshot still counts). ``KeyboardInterrupt`` waits
    (bounded) for the workers' final reports; the stats then say ``interrupted``.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue(QUEUE_SIZE)
    plans = plan.split(workers)
    processes = [
        context.Process(target=_worker_main, args=(p, i, channel), daemon=True)
        for i, p in enumerate(plans)
    ]
    latest = {i: LoadStats() for i in range(len(plans))}
    done: set[int] = set()
    failed: set[int] = set()
    dead_since: dict[int, float] = {}
    start = time.monotonic()
    deadline = start + plan.bound_seconds + WORKER_GRACE_SECONDS
    for process in processes:
        process.start()
    interrupted: KeyboardInterrupt | None = None
    try:
        while len(done | failed) < len(processes):
            try:
                kind, index, data, _ = channel.get(timeout=PROGRESS_INTERVAL)
            except queue.Empty:
                pass
            except KeyboardInterrupt as exc:
                # The workers got the same Ctrl-C: collect their finals, bounded.
                interrupted = exc
                deadline = min(deadline, time.monotonic() + WORKER_GRACE_SECONDS)
                continue
            else:
                latest[index] = LoadStats.from_dict(data)
                if kind == "done":
                    done.add(index)
            now = time.monotonic()
            for i, process in enumerate(processes):
                if i in done or process.exitcode is None:
                    continue
                # Its last messages may still be in the pipe: give them a moment.
                if now - dead_since.setdefault(i, now) > DEAD_GRACE_SECONDS:
                    failed.add(i)
            if time.monotonic() > deadline:
                failed |= set(range(len(processes))) - done
            if progress is not None:
                progress(_merged(latest.values()), time.monotonic() - start)
    finally:
        for process in processes:
            process.join(timeout=1.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
        channel.close()
    merged = _merged(latest.values())
    for _ in failed - done:
        merged.error("WorkerFailed")
    merged.active = 0
    merged.interrupted = interrupted is not None
    return merged


def _merged(parts: Any) -> LoadStats:
    total = LoadStats()
    for part in parts:
        total.merge(part)
    return total
