"""Locust, headless, two worker processes, against a real ``serve`` on loopback.

Locust monkey-patches the standard library with gevent when imported, so it never runs in
the pytest process: the ``locust`` command runs in its own process tree (``--processes 2``
forks two workers under a master) and the test reads the CSV stats it writes.
"""

from __future__ import annotations

import csv
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Not importorskip: importing locust here would monkey-patch this very process.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="the locust extra is not installed"
)

ROOT = Path(__file__).resolve().parents[2]
LOCUST = str(Path(sys.executable).with_name("locust"))


def locust(prefix: Path, host: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            LOCUST, "-f", str(ROOT / "examples" / "locustfile.py"), "--headless",
            "--stop-timeout", "0", "--host", host, "--csv", str(prefix), "--only-summary",
            *flags,
        ],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def stats(prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    with prefix.with_name(prefix.name + "_stats.csv").open(encoding="utf-8") as f:
        return {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}


def test_locust_with_two_worker_processes_reports_calls_turns_and_connects(
    tmp_path: Path, local_url: str
) -> None:
    prefix = tmp_path / "run"
    proc = locust(prefix, local_url, "--processes", "2", "-u", "4", "-r", "4", "-t", "15s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = stats(prefix)
    for name in ("connect", "turn", "call", "ping"):
        row = rows[("millis", name)]
        assert int(row["Request Count"]) > 0, name
        assert int(row["Failure Count"]) == 0, name
        # A loopback ping may round to 0 ms (its data is wall-clock milliseconds).
        assert float(row["Median Response Time"]) > (0 if name != "ping" else -1), name
    # The echo agent answers after ~0.6 s of our silence; a turn is that and the transport.
    assert 300 < float(rows[("millis", "turn")]["Median Response Time"]) < 5000
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    # Two workers really ran (the master hands the users to both).
    assert "2 workers" in proc.stderr or "2 ready workers" in proc.stderr, proc.stderr[-2000:]


def test_locust_reports_failed_connects_and_calls(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there
    prefix = tmp_path / "run"
    proc = locust(prefix, f"ws://127.0.0.1:{port}/millis", "-u", "1", "-r", "1", "-t", "10s")
    rows = stats(prefix)
    for name in ("connect", "call"):
        row = rows[("millis", name)]
        assert int(row["Failure Count"]) == int(row["Request Count"]) > 0, proc.stderr[-2000:]
    assert proc.returncode == 1  # Locust's exit status when requests failed
    failures = prefix.with_name("run_failures.csv").read_text(encoding="utf-8")
    assert "refused" in failures
