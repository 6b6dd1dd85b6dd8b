"""Load-test a Millis agent with Locust: every Locust user is a real paced voice call.

Against the built-in local agent (start it first with ``millis-proto serve``)::

    locust -f examples/locustfile.py --headless -u 20 -r 5 -t 60s \\
        --host ws://127.0.0.1:8080/millis

Against a real endpoint (the key and agent come from the environment)::

    MILLIS_PUBLIC_KEY=... MILLIS_AGENT_ID=... locust -f examples/locustfile.py \\
        --host wss://api-west.millis.ai:8080/millis

Add ``--processes 2`` (or a ``--master`` and ``--worker`` processes, on one machine or
many) to use more cores. Locust reports, with request type ``millis``: ``connect`` (TCP +
TLS + handshake + onready), ``turn`` (end of our speech -> first agent audio), ``ping``
(Millis ping RTT) and ``call`` (the whole call; failed when it ended abnormally).
"""

from __future__ import annotations

import os

from locust import constant

from transports.locust import MillisUser


class Caller(MillisUser):
    """Says the bundled question (or ``CALLER_WAV``), hears the answer, hangs up."""

    wait_time = constant(0.5)
    audio_path = os.environ.get("CALLER_WAV") or MillisUser.audio_path
    idle_timeout = 1.0
