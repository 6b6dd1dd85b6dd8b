"""The key of a call reaches neither stderr nor the log, even when a URL or a server
quotes it: real ``talk`` processes against a real rejecting server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

from cli_helpers import DEMO_WAV, run_command
from raw_peers import rejecting_server

KEY = 'pk_live/SECRET+"cli" é'
FORMS = {KEY, urllib.parse.quote(KEY, safe=""), urllib.parse.quote_plus(KEY), json.dumps(KEY)[1:-1]}
QUERY = "?public_key=" + urllib.parse.quote(KEY, safe="")

# ``talk`` in this process, with a library logger quoting the URL (and so the key) on
# every connect: what the CLI's log handler prints must be redacted.
DRIVER = textwrap.dedent(
    """
    import logging, sys
    import transports.trio
    from transports.cli import main

    original = transports.trio.connect

    def connect(url, request, **options):
        logging.getLogger("transports.trio").warning("connecting to %s", url)
        return original(url, request, **options)

    transports.trio.connect = connect
    sys.exit(main(sys.argv[1:]))
    """
)


def talk(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_command(
        [sys.executable, "-c", DRIVER, "talk", "--endpoint", url, "--public-key", KEY,
         "--agent-id", "a", "--plain", "--input", str(DEMO_WAV),
         "--output", str(tmp_path / "o.wav"), "--events", str(tmp_path / "e.jsonl")],
    )  # fmt: skip


def test_a_failing_talk_with_the_key_in_the_url_shows_it_nowhere(tmp_path: Path) -> None:
    echo = urllib.parse.quote(KEY, safe="")
    with rejecting_server(f"no such key: {echo}".encode()) as url:
        proc = talk(url + QUERY, tmp_path)
    assert proc.returncode == 1, proc.stderr
    log_line, error_line = proc.stderr.strip().splitlines()
    assert log_line.startswith("transports.trio: connecting to ws://127.0.0.1:")
    assert log_line.endswith("/millis?public_key=<public key>")
    assert error_line.startswith("millis-proto: ") and "Traceback" not in proc.stderr
    assert "HTTP 401" in error_line and "<public key>" in error_line
    shown = proc.stdout + proc.stderr + (tmp_path / "e.jsonl").read_text(encoding="utf-8")
    for form in FORMS:
        assert form not in shown, shown
