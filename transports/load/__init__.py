"""Load testing: many simulated callers, each a real paced duplex Millis session.

* :mod:`.speech` — what a caller says and where its speech ends.
* :mod:`.caller` — one caller's calls over ``transports.asyncio.connect``, paced by one
  timer for the whole process.
* :mod:`.runner` — many callers in one asyncio loop (``run_load``) or spread over worker
  processes (``run_workers``), merged exactly.
* :mod:`.stats` and :mod:`.sketch` — the metrics and their mergeable percentile sketch.
* :mod:`.report` — live progress, the summary table, JSON and CSV.

``millis-proto load`` is the command-line front end; ``transports.locust`` is the Locust
user for runs across machines. Import from the submodules: this package imports nothing
by itself, so the gevent side takes :mod:`.speech` without pulling in asyncio sessions.
"""
