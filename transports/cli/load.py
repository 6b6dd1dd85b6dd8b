"""``millis-proto load``: many paced callers against an endpoint or the local agent.

Without an endpoint (and without a key) a ``millis-proto serve`` process is started on a
free loopback port and loaded. The exit status is 0 when every call ended without an
error, 1 (one sentence on stderr, after the summary and the report files) otherwise, 2
for bad flags and 130 after Ctrl-C (the summary still covers what was measured).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack

from millis_proto import SAMPLE_RATE, ConfigError, MillisError

from ..examples import demo_wav
from ..load.caller import CallPlan
from ..load.report import make_progress, summary_dict, summary_text, write_csv, write_json
from ..load.runner import (
    MAX_CALLS,
    MAX_DURATION,
    MAX_SESSIONS,
    MAX_WORKERS,
    LoadPlan,
    run_load,
    run_workers,
)
from ..load.speech import read_speech, speech_end
from ..load.stats import LoadStats
from ..load.suite_calls import SuiteCall, prepare_suite
from .options import bounds_from, build_target, scenario_path

__all__ = ["LoadFailed", "add_load_parser", "load_command"]

#: Longest input WAV a caller speaks (it is held in memory by every worker).
MAX_INPUT_SECONDS = 600.0
#: How long the local ``serve`` process may take to start listening.
SERVE_START_TIMEOUT = 30.0
#: How long it may take to stop after the run.
SERVE_STOP_TIMEOUT = 5.0


class LoadFailed(MillisError):
    """Some calls of the run failed (the summary says which, by kind)."""


def add_load_parser(load: argparse.ArgumentParser) -> None:
    """Add the flags of ``load`` (besides the shared target, TLS and view flags)."""
    load.add_argument("--sessions", type=int, default=10, help="simultaneous callers")
    load.add_argument(
        "--ramp",
        type=float,
        default=50.0,
        metavar="PER_SECOND",
        help="callers started per second",
    )
    how_long = load.add_mutually_exclusive_group()
    how_long.add_argument(
        "--duration", type=float, metavar="S", help="run this long, callers calling again and again"
    )
    how_long.add_argument(
        "--calls", type=int, metavar="M", help="place M calls in all (default: one per session)"
    )
    speech = load.add_mutually_exclusive_group()
    speech.add_argument(
        "--suite",
        metavar="SUITE",
        help="each call plays the next case of this test suite (TOML or JSON)",
    )
    speech.add_argument(
        "--input", metavar="WAV", help="what each caller says (default: a bundled spoken question)"
    )
    load.add_argument(
        "--workers", type=int, default=1, metavar="P", help="spread the callers over P processes"
    )
    load.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    load.add_argument("--csv", metavar="FILE", help="write the percentiles as CSV")
    load.add_argument("--chunk-ms", type=float, default=20.0, help="uplink frame size (ms)")
    load.add_argument(
        "--idle-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="hang up once the input is done and the agent was idle this long",
    )
    load.add_argument(
        "--answer-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a call fails when its speech got no answer this long after it ended",
    )
    load.add_argument(
        "--max-call",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="hang up any call after this long",
    )
    load.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="bound of TCP + TLS + handshake + onready",
    )
    load.add_argument(
        "--ping-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="each caller sends a Millis ping this often",
    )
    load.add_argument(
        "--agent-pacing",
        action="store_true",
        help="also time the agent's audio against real time (an event per agent frame)",
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _validate(args: argparse.Namespace) -> None:
    _check(1 <= args.sessions <= MAX_SESSIONS, f"--sessions must be 1 to {MAX_SESSIONS}.")
    _check(1 <= args.workers <= MAX_WORKERS, f"--workers must be 1 to {MAX_WORKERS}.")
    _check(args.ramp > 0, "--ramp must be a positive number of callers per second.")
    if args.duration is not None:
        _check(
            0 < args.duration <= MAX_DURATION,
            f"--duration must be more than 0 and at most {MAX_DURATION:g} seconds.",
        )
    if args.calls is not None:
        _check(1 <= args.calls <= MAX_CALLS, f"--calls must be 1 to {MAX_CALLS}.")
    for flag in (
        "chunk_ms",
        "idle_timeout",
        "answer_timeout",
        "max_call",
        "connect_timeout",
        "ping_interval",
    ):
        value = getattr(args, flag)
        _check(value > 0 and value < MAX_DURATION, f"--{flag.replace('_', '-')} must be positive.")


def _read_input(path: str) -> bytes:
    pcm = read_speech(path)
    _check(len(pcm) > 0, f"--input {path}: the file holds no audio.")
    _check(
        len(pcm) / 2 / SAMPLE_RATE <= MAX_INPUT_SECONDS,
        f"--input {path}: longer than {MAX_INPUT_SECONDS:g} s.",
    )
    return pcm


def raise_fd_limit() -> None:
    """Lift the soft limit of open files to the hard one: every session holds a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def local_server(scenario: str | None) -> Iterator[str]:
    """Run ``millis-proto serve`` on a free loopback port; yield its URL; stop it after."""
    command = [sys.executable, "-m", "transports.cli", "serve", "--port", "0", "--quiet"]
    if scenario is not None:
        command += ["--scenario", scenario]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,  # our Ctrl-C must not stop it before the callers hang up
        )
        try:
            url = _first_url(server)
            if url is None:
                errors.seek(0)
                said = " ".join(errors.read().split())[-300:]
                raise LoadFailed(
                    "the local agent server did not start" + (f": {said}" if said else ".")
                )
            yield url
        finally:
            _stop(server)


def _first_url(server: subprocess.Popen[str]) -> str | None:
    assert server.stdout is not None
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                break
            line = server.stdout.readline()
            if not line:
                return None  # it exited
            for word in line.split():
                if word.startswith("ws://"):
                    return word
    return None


def _stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=SERVE_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=SERVE_STOP_TIMEOUT)
    if server.stdout is not None:
        server.stdout.close()


def load_command(args: argparse.Namespace) -> int:
    """Run ``load``; returns the exit status (failures propagate to ``main``)."""
    _validate(args)
    bounds = bounds_from(args)
    target = build_target(
        endpoint=args.endpoint,
        public_key=args.public_key,
        agent_id=args.agent_id,
        agent_config=args.agent_config,
        metadata=args.metadata,
        include_metadata_in_prompt=args.include_metadata_in_prompt,
        session_id=None,
        allow_insecure=args.allow_insecure,
    )
    scenario = scenario_path(args.scenario)
    suite: tuple[SuiteCall, ...] = ()
    if args.suite is not None:
        suite, suite_scenario = prepare_suite(args.suite, target.request)
        if scenario is None and suite_scenario is not None:
            scenario = str(suite_scenario)
        pcm = b""
    else:
        pcm = _read_input(args.input or str(demo_wav()))
    raise_fd_limit()
    with ExitStack() as stack:
        url = stack.enter_context(local_server(scenario)) if target.local else target.endpoint
        call = CallPlan(
            url=url,
            request=target.request,
            audio=pcm,
            speech_end_samples=speech_end(pcm),
            suite=suite,
            chunk_ms=args.chunk_ms,
            idle_timeout=args.idle_timeout,
            answer_timeout=args.answer_timeout,
            max_call_seconds=args.max_call,
            connect_timeout=args.connect_timeout,
            ping_interval=args.ping_interval,
            cafile=args.cafile,
            allow_insecure=args.allow_insecure,
            agent_pacing=args.agent_pacing,
            liveness_timeout=bounds.liveness_timeout,
            pong_timeout=bounds.pong_timeout,
            write_timeout=bounds.write_timeout,
        )
        calls = args.calls if args.calls is not None or args.duration else args.sessions
        plan = LoadPlan(
            call=call, sessions=args.sessions, ramp=args.ramp, duration=args.duration, calls=calls
        )
        stats, elapsed = _run(plan, args.workers, plain=args.plain)
    return _finish(args, stats, elapsed, url=url, target_local=target.local)


def _run(plan: LoadPlan, workers: int, *, plain: bool) -> tuple[LoadStats, float]:
    view = make_progress(plain=plain)
    start = time.monotonic()
    try:
        if workers == 1:
            stats = LoadStats()
            try:
                asyncio.run(run_load(plan, stats, progress=view.update))
            except KeyboardInterrupt:
                stats.interrupted = True
        else:
            stats = run_workers(plan, workers, progress=view.update)
    finally:
        view.close()
    return stats, time.monotonic() - start


def _finish(
    args: argparse.Namespace, stats: LoadStats, elapsed: float, *, url: str, target_local: bool
) -> int:
    sys.stdout.write(summary_text(stats, elapsed))
    sys.stdout.flush()
    summary = summary_dict(
        stats,
        endpoint="local" if target_local else url,
        sessions=args.sessions,
        workers=args.workers,
        ramp_per_second=args.ramp,
        duration_s=args.duration,
        calls_limit=args.calls,
        elapsed_s=round(elapsed, 3),
        cpu_count=os.cpu_count(),
    )
    if args.json:
        write_json(args.json, summary)
    if args.csv:
        write_csv(args.csv, stats)
    if stats.interrupted:
        sys.stderr.write("millis-proto: interrupted.\n")
        return 130
    failures = sum(stats.errors.values())
    if failures:
        kinds = ", ".join(f"{k} x{n}" for k, n in stats.errors.most_common(3))
        raise LoadFailed(f"{stats.calls_failed} of {stats.calls_started} calls failed ({kinds}).")
    return 0
