"""The percentile sketch and the load stats: merging is exact, quantiles are within 1 %.

The property that matters for ``--workers``: the summary of several workers' sketches,
merged, is the summary of all the samples pooled — not an average of percentiles.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.load.sketch import MIN_VALUE, RELATIVE_ACCURACY, Sketch
from transports.load.stats import PERCENTILES, LoadStats

values = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
groups = st.lists(st.lists(values, max_size=60), min_size=1, max_size=6)


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def sketch_of(samples: list[float]) -> Sketch:
    sketch = Sketch()
    for value in samples:
        sketch.add(value)
    return sketch


def through_json(sketch: Sketch) -> Sketch:
    """What a worker process sends and the parent rebuilds."""
    return Sketch.from_dict(json.loads(json.dumps(sketch.to_dict())))


@settings(max_examples=300, deadline=None)
@given(groups)
def test_merged_sketches_equal_the_sketch_of_the_pooled_samples(parts: list[list[float]]) -> None:
    merged = Sketch()
    for part in parts:
        merged.merge(through_json(sketch_of(part)))
    pooled = [v for part in parts for v in part]
    whole = sketch_of(pooled)
    assert merged.count == whole.count == len(pooled)
    if not pooled:
        assert math.isnan(merged.quantile(0.5))
        return
    for q in (*PERCENTILES, 0.001, 0.5, 1.0):
        got = merged.quantile(q)
        assert got == whole.quantile(q)
        exact = nearest_rank(pooled, q)
        # Within the sketch's relative accuracy of the exact percentile of the pool
        # (values under MIN_VALUE are reported as 0).
        assert abs(got - exact) <= RELATIVE_ACCURACY * exact + MIN_VALUE + 1e-9
    assert merged.maximum == max(pooled) and merged.minimum == min(pooled)
    assert merged.mean == pytest.approx(sum(pooled) / len(pooled), rel=1e-9, abs=1e-9)


def test_averaging_percentiles_would_be_wrong_and_merging_is_not() -> None:
    # Two workers: one fast (all 10 ms), one slow (all 1000 ms), 90 vs 10 samples.
    fast, slow = [10.0] * 90, [1000.0] * 10
    merged = sketch_of(fast)
    merged.merge(sketch_of(slow))
    assert merged.quantile(0.95) == pytest.approx(1000, rel=RELATIVE_ACCURACY)
    assert merged.quantile(0.50) == pytest.approx(10, rel=RELATIVE_ACCURACY)
    averaged = (sketch_of(fast).quantile(0.95) + sketch_of(slow).quantile(0.95)) / 2
    assert averaged == pytest.approx(505, rel=0.02)  # what a naive merge would report


@settings(max_examples=100, deadline=None)
@given(groups)
def test_load_stats_merge_like_the_pooled_stats(parts: list[list[float]]) -> None:
    workers = []
    pooled = LoadStats()
    for i, part in enumerate(parts):
        stats = LoadStats()
        for value in part:
            for target in (stats, pooled):
                target.sample("turn_ms", value)
                target.calls_started += 1
        stats.error(f"kind{i % 2}")
        pooled.error(f"kind{i % 2}")
        stats.closed(1000 + i % 3)
        pooled.closed(1000 + i % 3)
        workers.append(LoadStats.from_dict(json.loads(json.dumps(stats.to_dict()))))
    merged = LoadStats()
    for stats in workers:
        merged.merge(stats)
    assert merged.summary("turn_ms") == pooled.summary("turn_ms")
    assert merged.calls_started == pooled.calls_started
    assert merged.errors == pooled.errors and merged.close_codes == pooled.close_codes


def test_memory_is_bounded_by_the_value_range_not_the_sample_count() -> None:
    sketch = Sketch()
    for i in range(200_000):
        sketch.add((i % 5000) * 0.37)
    assert len(sketch.to_dict()["buckets"]) < 1300
    sketch.add(1e12)  # clamped, still one bucket more at most
    assert len(sketch.to_dict()["buckets"]) < 1301


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_a_bad_sample_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Sketch().add(bad)


def test_error_kinds_are_bounded() -> None:
    stats = LoadStats()
    for i in range(1000):
        stats.error(f"kind-{i}")
    assert len(stats.errors) <= 65 and sum(stats.errors.values()) == 1000
