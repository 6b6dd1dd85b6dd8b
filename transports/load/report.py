"""How a load run is shown and written: live progress, the summary table, JSON and CSV.

Live progress is a rich panel on a terminal and a plain line every
:data:`PLAIN_INTERVAL` seconds otherwise. The summary, the JSON and the CSV give, per
metric of :data:`~.stats.METRICS`, the count, p50, p90, p95, p99 and max; the JSON adds
the call counts, errors by kind, close codes, our own pacing health and the machine's
load average, so a saturated load generator is reported as such.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import IO, Any

from millis_proto import MillisError

from .stats import METRICS, LoadStats

__all__ = [
    "SATURATED_BELOW",
    "LiveProgress",
    "PlainProgress",
    "Progress",
    "ReportError",
    "make_progress",
    "summary_dict",
    "summary_text",
    "write_csv",
    "write_json",
]

#: Seconds between two plain progress lines.
PLAIN_INTERVAL = 2.0
#: Below this share of on-time frames the load generator itself was the bottleneck.
SATURATED_BELOW = 0.95
_COLUMNS = ("count", "p50", "p90", "p95", "p99", "max")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _headline(stats: LoadStats, elapsed: float) -> str:
    connect = stats.summary("connect_ms")
    turn = stats.summary("turn_ms")
    ratio = stats.on_time_ratio
    late = "-" if ratio is None else f"{100 * (1 - ratio):.1f}%"
    return (
        f"[{elapsed:6.1f}s] active {stats.active} | calls {stats.calls_ok} ok, "
        f"{stats.calls_failed} failed | errors {sum(stats.errors.values())} | "
        f"connect p50 {_ms(connect.p50)} p95 {_ms(connect.p95)} ms | "
        f"turn p50 {_ms(turn.p50)} p95 {_ms(turn.p95)} ms | late frames {late}"
    )


class Progress:
    """Base progress display: shows nothing."""

    def update(self, stats: LoadStats, elapsed: float) -> None:
        """Show the run's state so far."""

    def close(self) -> None:
        """Stop drawing."""


class PlainProgress(Progress):
    """A line every :data:`PLAIN_INTERVAL` seconds, for pipes, logs and CI."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._next = 0.0

    def update(self, stats: LoadStats, elapsed: float) -> None:
        if elapsed >= self._next:
            self._next = elapsed + PLAIN_INTERVAL
            self._out.write(_headline(stats, elapsed) + "\n")
            self._out.flush()


class LiveProgress(Progress):
    """A live rich panel: sessions, calls, errors and the current percentiles."""

    def __init__(self) -> None:
        from rich.live import Live

        self._live = Live(self._render(LoadStats(), 0.0), refresh_per_second=4)
        self._live.start()

    def _render(self, stats: LoadStats, elapsed: float) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        table = Table(title=f"{elapsed:.0f} s — {stats.active} active sessions", expand=False)
        table.add_column("metric")
        for column in ("count", "p50", "p95", "max"):
            table.add_column(column, justify="right")
        for metric in METRICS:
            s = stats.summary(metric)
            table.add_row(metric, str(s.count), _ms(s.p50), _ms(s.p95), _ms(s.max))
        ratio = stats.on_time_ratio
        errors = ", ".join(f"{k} {n}" for k, n in stats.errors.most_common(4)) or "none"
        footer = (
            f"calls: {stats.calls_ok} ok, {stats.calls_failed} failed, "
            f"{stats.calls_started} started | errors: {errors} | on-time frames: "
            + ("-" if ratio is None else f"{100 * ratio:.1f}%")
        )
        return Panel(table, title="millis-proto load", subtitle=footer)

    def update(self, stats: LoadStats, elapsed: float) -> None:
        self._live.update(self._render(stats, elapsed))

    def close(self) -> None:
        self._live.stop()


def make_progress(*, plain: bool = False) -> Progress:
    """The live panel on a terminal (when rich is installed), plain lines otherwise."""
    if not plain and sys.stdout.isatty():
        try:
            return LiveProgress()
        except ImportError:
            pass
    return PlainProgress()


def summary_dict(stats: LoadStats, **run: Any) -> dict[str, Any]:
    """Everything the JSON report holds; ``run`` describes the run (sessions, workers...)."""
    ratio = stats.on_time_ratio
    per_frame = stats.cpu_us_per_frame
    return {
        **run,
        "interrupted": stats.interrupted,
        "callers_connected": stats.callers_connected,
        "calls": {
            "started": stats.calls_started,
            "connected": stats.calls_connected,
            "ok": stats.calls_ok,
            "failed": stats.calls_failed,
        },
        "metrics": {m: {**stats.summary(m).as_dict(), "what": METRICS[m]} for m in METRICS},
        "pacing": {
            "frames": stats.frames,
            "late_frames": stats.late_frames,
            "on_time_ratio": None if ratio is None else round(ratio, 5),
            "saturated": ratio is not None and ratio < SATURATED_BELOW,
            "cpu_s": round(stats.cpu_s, 3),
            "cpu_us_per_frame": None if per_frame is None else round(per_frame, 1),
        },
        "errors": dict(stats.errors.most_common()),
        "close_codes": dict(sorted(stats.close_codes.items())),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def summary_text(stats: LoadStats, elapsed: float) -> str:
    """The final summary: a table of the metrics, then calls, errors, closes and pacing."""
    rows: list[tuple[str, ...]] = [("metric", *_COLUMNS)]
    for metric in METRICS:
        s = stats.summary(metric).as_dict()
        rows.append((metric, str(s["count"]), *(_ms(s[c]) for c in _COLUMNS[1:])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    ratio = stats.on_time_ratio
    lines.append(
        f"calls: {stats.calls_started} started, {stats.calls_connected} connected, "
        f"{stats.calls_ok} ok, {stats.calls_failed} failed; "
        f"callers connected: {stats.callers_connected}; {elapsed:.1f} s"
    )
    lines.append(
        "errors: " + (", ".join(f"{k} x{n}" for k, n in stats.errors.most_common()) or "none")
    )
    lines.append(
        "close codes: "
        + (", ".join(f"{c} x{n}" for c, n in sorted(stats.close_codes.items())) or "none")
    )
    if ratio is not None:
        lines.append(
            f"our pacing: {stats.frames} frames, {100 * ratio:.2f}% on time"
            + (f", {stats.cpu_us_per_frame:.0f} µs CPU each" if stats.cpu_s else "")
            + (
                " — the load generator was saturated: its latencies are not the agent's"
                if ratio < SATURATED_BELOW
                else ""
            )
        )
    one, five, _ = os.getloadavg()
    lines.append(f"load average: {one:.2f} (1 min), {five:.2f} (5 min)")
    return "\n".join(lines) + "\n"


class ReportError(MillisError):
    """A report file could not be written (the run itself is not affected)."""


def _write_text(path: str, flag: str, text: str) -> None:
    try:
        with Path(path).open("w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise ReportError(f"{flag} {path}: cannot write it ({exc.strerror or exc}).") from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(path: str, summary: dict[str, Any]) -> None:
    """Write the summary as JSON (non-finite numbers as null); :class:`ReportError` on failure."""
    _write_text(path, "--json", json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")


def write_csv(path: str, stats: LoadStats) -> None:
    """One row per metric: metric, count, p50, p90, p95, p99, max; :class:`ReportError`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("metric", *_COLUMNS))
    for metric in METRICS:
        s = stats.summary(metric).as_dict()
        writer.writerow((metric, *("" if s[c] is None else s[c] for c in _COLUMNS)))
    _write_text(path, "--csv", out.getvalue())
