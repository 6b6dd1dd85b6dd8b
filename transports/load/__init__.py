"""Load testing: many simulated callers, each a real paced duplex Millis session.

* :mod:`.caller` — one caller's calls over ``transports.trio.connect``.
* :mod:`.runner` — many callers in one trio loop (:func:`run_load`) or spread over worker
  processes (:func:`run_workers`), merged exactly.
* :mod:`.stats` and :mod:`.sketch` — the metrics and their mergeable percentile sketch.
* :mod:`.report` — live progress, the summary table, JSON and CSV.

``millis-proto load`` is the command-line front end; ``transports.locust`` is the Locust
user for runs across machines.
"""

from __future__ import annotations

from .caller import CallPlan, speech_end
from .runner import LoadPlan, run_load, run_workers
from .sketch import Sketch
from .stats import METRICS, LoadStats

__all__ = [
    "METRICS",
    "CallPlan",
    "LoadPlan",
    "LoadStats",
    "Sketch",
    "run_load",
    "run_workers",
    "speech_end",
]
