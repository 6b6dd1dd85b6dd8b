"""A mergeable percentile sketch: log-spaced buckets with a bounded relative error.

Theory of operation
-------------------
Percentiles of a load test come from many callers in many processes, and percentiles do
not average: the p95 of two workers is not the mean of their p95s. So every worker keeps,
per metric, a :class:`Sketch` — a histogram whose bucket ``i`` holds the values in
``(g^(i-1), g^i]`` with ``g = (1 + a) / (1 - a)`` (the DDSketch construction). Merging
two sketches adds their bucket counts, which is *exactly* the sketch of the pooled
samples; a quantile is read off the cumulative counts and reported as the bucket's
midpoint ``2 g^i / (g + 1)``, within a relative error ``a`` of the true nearest-rank
percentile of the pooled samples.

Memory is bounded by the value range, not by the number of samples: values are clamped to
``[MIN_VALUE, MAX_VALUE]`` (smaller ones, zeros included, share one bucket reported as 0),
so a sketch never holds more than ~1,200 buckets however long the run.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_VALUE", "MIN_VALUE", "RELATIVE_ACCURACY", "Sketch"]

#: Largest relative error of a reported quantile (1 %).
RELATIVE_ACCURACY = 0.01
#: Values below this (in the metric's unit) count as zero.
MIN_VALUE = 1e-3
#: Values above this are clamped to it (for milliseconds: almost three hours).
MAX_VALUE = 1e7

_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


_ceil, _log = math.ceil, math.log


class Sketch:
    """Counts, extremes and log buckets of one metric's samples; see the module docstring."""

    __slots__ = ("_buckets", "count", "maximum", "minimum", "total", "zeros")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        #: Samples in the zero bucket (below :data:`MIN_VALUE`).
        self.zeros = 0
        #: Number of samples.
        self.count = 0
        #: Sum of the samples (for the mean).
        self.total = 0.0
        #: Smallest and largest sample (exact); ``nan`` while empty.
        self.minimum = math.nan
        self.maximum = math.nan

    def add(self, value: float) -> None:
        """Record one sample; a NaN or negative value is a bug of the caller (ValueError)."""
        # Called for every audio frame of every session: kept to plain comparisons.
        if not value >= 0:
            raise ValueError(f"a sketch sample must be a non-negative number, not {value!r}")
        value = min(value, MAX_VALUE)
        self.count += 1
        self.total += value
        if self.count == 1:
            self.minimum = self.maximum = value
        elif value > self.maximum:
            self.maximum = value
        elif value < self.minimum:
            self.minimum = value
        if value < MIN_VALUE:
            self.zeros += 1
        else:
            index = _ceil(_log(value) / _LOG_GAMMA)
            buckets = self._buckets
            buckets[index] = buckets.get(index, 0) + 1

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s samples to this sketch (exact: bucket counts add)."""
        if not other.count:
            return
        for index, n in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + n
        self.zeros += other.zeros
        self.total += other.total
        if self.count:
            self.minimum = min(self.minimum, other.minimum)
            self.maximum = max(self.maximum, other.maximum)
        else:
            self.minimum, self.maximum = other.minimum, other.maximum
        self.count += other.count

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile (0 < q ≤ 1), within :data:`RELATIVE_ACCURACY`.

        ``nan`` for an empty sketch. ``quantile(1.0)`` is the exact maximum.
        """
        if not 0 < q <= 1:
            raise ValueError(f"a quantile must be in (0, 1], not {q!r}")
        if not self.count:
            return math.nan
        if q == 1:
            return self.maximum
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                middle = 2 * _GAMMA**index / (_GAMMA + 1)
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum  # unreachable: the counts add up to count

    @property
    def mean(self) -> float:
        """Arithmetic mean of the samples (``nan`` while empty)."""
        return self.total / self.count if self.count else math.nan

    # --- passing sketches between processes -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form that :meth:`from_dict` turns back into an equal sketch."""
        return {
            "count": self.count,
            "total": self.total,
            "min": None if not self.count else self.minimum,
            "max": None if not self.count else self.maximum,
            "zeros": self.zeros,
            "buckets": [[index, n] for index, n in sorted(self._buckets.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sketch:
        """Rebuild a sketch from :meth:`to_dict`'s output."""
        sketch = cls()
        sketch.count = int(data["count"])
        sketch.total = float(data["total"])
        sketch.zeros = int(data["zeros"])
        if sketch.count:
            sketch.minimum = float(data["min"])
            sketch.maximum = float(data["max"])
        sketch._buckets = {int(index): int(n) for index, n in data["buckets"]}
        return sketch

    def __repr__(self) -> str:
        return f"<Sketch count={self.count} p50={self.quantile(0.5) if self.count else None}>"
