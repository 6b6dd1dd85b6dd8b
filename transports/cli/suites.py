"""``millis-proto test SUITE``: run a voice-agent test suite, judge it, write reports.

Exit status: 0 when every case passed, 1 when any failed, 2 for a bad suite or flags.
Without ``--endpoint`` the cases run against the built-in local agent (the suite's
scenario) in virtual time; with it, against that endpoint in real time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from millis_proto import ConfigError

from ..local_agent import LOCAL_REQUEST
from ..suite.format import Case
from ..suite.runner import CaseResult, SuiteResult, load_suite, run_suite
from .options import add_allow_insecure_flag, add_bounds_flags, bounds_from, build_target
from .output import OutputError, ensure_directory

__all__ = ["add_test_parser", "test_command"]


def add_test_parser(p: argparse.ArgumentParser) -> None:
    """The ``test`` sub-command's flags, added to its parser ``p``."""
    p.add_argument("suite", metavar="SUITE", help="the suite file")
    p.add_argument("--endpoint", help="ws:// or wss:// URL (default: the local agent)")
    p.add_argument("--public-key", help="agent public key (or env MILLIS_PUBLIC_KEY)")
    p.add_argument("--agent-id", help="agent id (cases may override it)")
    p.add_argument("--cafile", metavar="PEM", help="extra CA certificates to trust")
    add_allow_insecure_flag(p)
    p.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each case N times (pass rate)"
    )
    p.add_argument(
        "--concurrency", type=int, default=1, metavar="K", help="cases run at the same time"
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    p.add_argument("--out-dir", metavar="DIR", help="per case: recording, JSONL, verdicts")
    p.add_argument("--plain", action="store_true", help="one line per case, even on a TTY")
    add_bounds_flags(p)


class Progress:
    """Live progress on a TTY (one rewritten line), one line per case otherwise."""

    def __init__(self, total: int, stream: TextIO, *, live: bool) -> None:
        self._total = total
        self._out = stream
        self._live = live
        self._done = self._passed = self._running = 0

    def start(self, case: Case, run: int) -> None:
        self._running += 1
        self._status()

    def result(self, result: CaseResult) -> None:
        self._running -= 1
        self._done += 1
        self._passed += result.passed
        if self._live:
            self._out.write("\r\x1b[2K")
        verdict = "PASS" if result.passed else "FAIL"
        label = result.case.name + (f" [run {result.run}]" if result.run > 1 else "")
        self._out.write(f"{verdict} {label} ({result.observation.duration_ms / 1000:.1f} s)\n")
        for failure in result.failures:
            self._out.write(f"    {failure.message}\n")
        self._status()
        self._out.flush()

    def _status(self) -> None:
        if self._live:
            self._out.write(
                f"\r\x1b[2K{self._done}/{self._total} done, {self._passed} passing, "
                f"{self._running} running"
            )
            self._out.flush()

    def close(self) -> None:
        if self._live:
            self._out.write("\r\x1b[2K")
            self._out.flush()


def test_command(args: argparse.Namespace) -> int:
    """Run ``test``; returns the exit status (ConfigError → 2 via ``main``)."""
    loaded = load_suite(args.suite)
    request = LOCAL_REQUEST
    endpoint = args.endpoint
    if endpoint is not None:
        request = build_target(
            endpoint=endpoint,
            public_key=args.public_key,
            agent_id=args.agent_id,
            agent_config=None,
            metadata=None,
            include_metadata_in_prompt=False,
            session_id=None,
            allow_insecure=args.allow_insecure,
        ).request
    elif args.public_key or args.agent_id or args.cafile or args.allow_insecure:
        raise ConfigError(
            "--public-key, --agent-id, --cafile and --allow-insecure need --endpoint."
        )
    bounds = bounds_from(args)
    if args.repeat < 1:
        raise ConfigError("--repeat must be at least 1.")
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1.")
    for flag, path in (("--junit", args.junit), ("--report", args.report)):
        if path:
            _writable(path, flag)
    if args.out_dir:
        ensure_directory(args.out_dir, "--out-dir")
    total = len(loaded.suite.cases) * args.repeat
    progress = Progress(total, sys.stdout, live=sys.stdout.isatty() and not args.plain)
    with tempfile.TemporaryDirectory(prefix="millis-suite-") as scratch:
        out_dir = Path(args.out_dir) if args.out_dir else None
        if out_dir is None and args.report:
            out_dir = Path(scratch)  # the report embeds the recordings
        try:
            result = run_suite(
                loaded,
                endpoint=endpoint,
                request=request,
                cafile=args.cafile,
                allow_insecure=args.allow_insecure,
                connect_options=bounds.connect_options(),
                repeat=args.repeat,
                concurrency=args.concurrency,
                out_dir=out_dir,
                on_start=progress.start,
                on_result=progress.result,
            )
        finally:
            progress.close()
        _summary(result, args.repeat)
        if args.junit:
            from ..suite.junit import junit_xml

            _write(args.junit, "--junit", junit_xml(result))
        if args.report:
            from ..suite.report import render_report

            _write(args.report, "--report", render_report(result))
    return 0 if result.passed else 1


def _writable(path: str, flag: str) -> None:
    """Fail before the run, not after it, when ``path`` cannot be written."""
    _write(path, flag, "")


def _write(path: str, flag: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(
            f"cannot write {flag} {path!r} ({exc.strerror or exc}); "
            "pass a file in a directory you can write to."
        ) from None


def _summary(result: SuiteResult, repeat: int) -> None:
    runs = result.results
    passed = sum(r.passed for r in runs)
    if repeat > 1:
        for case in result.suite.cases:
            case_runs = result.runs(case)
            ok = sum(r.passed for r in case_runs)
            sys.stdout.write(
                f"{case.name}: {ok}/{len(case_runs)} passed ({100 * result.pass_rate(case):.0f}%)\n"
            )
    sys.stdout.write(
        f"{result.suite.name}: {passed} of {len(runs)} passed, {len(runs) - passed} failed.\n"
    )
