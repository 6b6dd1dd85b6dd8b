"""What a load run measures, in a form that merges across callers and worker processes.

One :class:`LoadStats` per worker process collects every caller's samples; the parent
merges the workers' (:meth:`LoadStats.merge`) — sketches add bucket counts, counters add —
so the summary's percentiles are those of all the samples pooled, never averages of
per-worker percentiles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .sketch import Sketch

__all__ = ["METRICS", "PERCENTILES", "LoadStats", "MetricSummary"]

#: The sampled metrics, in report order, with what each one times.
METRICS: dict[str, str] = {
    "connect_ms": "TCP + TLS + WebSocket handshake + onready",
    "answer_ms": "start_answering -> first agent audio",
    "turn_ms": "end of our speech -> first agent audio",
    "ping_rtt_ms": "Millis ping -> pong",
    "send_lateness_ms": "our audio frames: capture time -> sent (load generator health)",
    "call_s": "call duration",
    "agent_lateness_ms": "agent audio behind real time (server pacing; with --agent-pacing)",
}
#: The percentiles every report gives.
PERCENTILES = (0.50, 0.90, 0.95, 0.99)
#: Distinct error kinds and close codes kept; the rest are counted under "other".
MAX_KINDS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSummary:
    """Count, percentiles and maximum of one metric (``None`` when it has no sample)."""

    metric: str
    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


def _bounded_add(counter: Counter[str], key: str, n: int = 1) -> None:
    if key not in counter and len(counter) >= MAX_KINDS:
        key = "other"
    counter[key] += n


@dataclass
class LoadStats:
    """Samples and counters of a load run (one worker's, or all of them merged)."""

    sketches: dict[str, Sketch] = field(default_factory=lambda: {m: Sketch() for m in METRICS})
    #: Calls begun, calls that got ``onready``, calls that ended without an error.
    calls_started: int = 0
    calls_connected: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    #: Callers (simulated sessions) that got ``onready`` at least once.
    callers_connected: int = 0
    #: Sessions open right now (a gauge: merging adds the workers' gauges).
    active: int = 0
    #: Our audio frames sent, and those that went out late.
    frames: int = 0
    late_frames: int = 0
    #: CPU seconds the load processes used while the run went on (our own cost).
    cpu_s: float = 0.0
    #: Failures by kind ("ConnectionFailed:REFUSED", "ConnectionLost", ...).
    errors: Counter[str] = field(default_factory=Counter)
    #: How calls were closed, by close code (as a string, for JSON).
    close_codes: Counter[str] = field(default_factory=Counter)
    #: The run was cut short by Ctrl-C.
    interrupted: bool = False

    def sample(self, metric: str, value: float) -> None:
        """Record one sample of ``metric`` (a key of :data:`METRICS`)."""
        self.sketches[metric].add(max(value, 0.0))

    def error(self, kind: str) -> None:
        """Count one failure of ``kind``."""
        _bounded_add(self.errors, kind)

    def closed(self, code: int) -> None:
        """Count one call closed with ``code``."""
        _bounded_add(self.close_codes, str(code))

    def merge(self, other: LoadStats) -> None:
        """Add ``other`` into this one."""
        for metric, sketch in other.sketches.items():
            self.sketches.setdefault(metric, Sketch()).merge(sketch)
        self.calls_started += other.calls_started
        self.calls_connected += other.calls_connected
        self.calls_ok += other.calls_ok
        self.calls_failed += other.calls_failed
        self.callers_connected += other.callers_connected
        self.active += other.active
        self.frames += other.frames
        self.late_frames += other.late_frames
        self.cpu_s += other.cpu_s
        self.interrupted = self.interrupted or other.interrupted
        for kind, n in other.errors.items():
            _bounded_add(self.errors, kind, n)
        for code, n in other.close_codes.items():
            _bounded_add(self.close_codes, code, n)

    @property
    def cpu_us_per_frame(self) -> float | None:
        """CPU the load processes spent per audio frame sent (``None`` before the first)."""
        return 1e6 * self.cpu_s / self.frames if self.frames else None

    @property
    def on_time_ratio(self) -> float | None:
        """Share of our frames sent on time (``None`` before the first frame)."""
        return 1 - self.late_frames / self.frames if self.frames else None

    def summary(self, metric: str) -> MetricSummary:
        """Count, p50/p90/p95/p99 and max of ``metric``."""
        sketch = self.sketches[metric]
        if not sketch.count:
            return MetricSummary(
                metric=metric, count=0, p50=None, p90=None, p95=None, p99=None, max=None
            )
        p50, p90, p95, p99 = (round(sketch.quantile(q), 3) for q in PERCENTILES)
        return MetricSummary(
            metric=metric,
            count=sketch.count,
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            max=round(sketch.maximum, 3),
        )

    # --- between processes -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what workers send to the parent); see :meth:`from_dict`."""
        return {
            "sketches": {m: s.to_dict() for m, s in self.sketches.items()},
            "calls_started": self.calls_started,
            "calls_connected": self.calls_connected,
            "calls_ok": self.calls_ok,
            "calls_failed": self.calls_failed,
            "callers_connected": self.callers_connected,
            "active": self.active,
            "frames": self.frames,
            "late_frames": self.late_frames,
            "cpu_s": self.cpu_s,
            "errors": dict(self.errors),
            "close_codes": dict(self.close_codes),
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadStats:
        """Rebuild from :meth:`to_dict`."""
        stats = cls(
            sketches={m: Sketch.from_dict(s) for m, s in data["sketches"].items()},
            errors=Counter(data["errors"]),
            close_codes=Counter(data["close_codes"]),
            interrupted=bool(data["interrupted"]),
            cpu_s=float(data["cpu_s"]),
        )
        for name in (
            "calls_started",
            "calls_connected",
            "calls_ok",
            "calls_failed",
            "callers_connected",
            "active",
            "frames",
            "late_frames",
        ):
            setattr(stats, name, int(data[name]))
        return stats
