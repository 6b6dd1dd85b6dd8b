"""``--allow-insecure`` is the same flag with the same behaviour on talk, load and test.

Plain ``ws://`` to a host that is not loopback would carry the public key in cleartext:
each command refuses it with the same sentence and exit 2 before any I/O — the commands
run under an audit hook (``offline_cli.py``) that writes down every lookup and connect
off loopback and blocks the connects, so "before any I/O" is observed, and no packet can
leave even with the flag. With ``--allow-insecure`` the command does try to connect.
The address is TEST-NET-1 (RFC 5737), never routed in any case.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import DEMO_WAV, run_command

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SUITE = ROOT / "examples" / "suite.toml"
URL = "ws://192.0.2.1:9/millis"
SECRET = "pk-SECRET-insecure-41d"


def command_args(command: str, tmp_path: Path) -> list[str]:
    """The command's arguments against ``URL`` (short bounds: nothing is waited for)."""
    target = ["--endpoint", URL, "--public-key", SECRET, "--agent-id", "a"]
    if command == "talk":
        return ["talk", *target, "--plain", "--input", str(DEMO_WAV),
                "--output", str(tmp_path / "o.wav"), "--max-duration", "10"]  # fmt: skip
    if command == "load":
        return ["load", *target, "--plain", "--sessions", "1", "--connect-timeout", "5"]
    return ["test", str(SUITE), *target, "--plain"]


def offline(tmp_path: Path, args: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the CLI under the audit hook; the process and what it tried to reach."""
    record = tmp_path / "network.txt"
    record.write_text("")
    proc = run_command(
        [sys.executable, str(HERE / "offline_cli.py"), str(record), *args], cwd=tmp_path
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    return proc, record.read_text()


COMMANDS = ["talk", "load", "test"]


def test_cleartext_off_loopback_is_refused_alike_by_every_command(tmp_path: Path) -> None:
    said = {}
    for command in COMMANDS:
        proc, network = offline(tmp_path, command_args(command, tmp_path))
        assert proc.returncode == 2, (command, proc.stderr)
        assert network == "", (command, network)  # refused before any lookup or connect
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (command, proc.stderr)
        said[command] = lines[0]
    assert said["load"] == said["talk"] and said["test"] == said["talk"]
    assert said["talk"] == (
        "millis-proto: refusing plain ws:// to 192.0.2.1: the public key would cross the "
        "network unencrypted; use wss://, or allow it explicitly (--allow-insecure, or "
        "allow_insecure=True)."
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_allow_insecure_lets_the_command_connect(tmp_path: Path, command: str) -> None:
    proc, network = offline(tmp_path, [*command_args(command, tmp_path), "--allow-insecure"])
    # It tried (the hook blocked the connect), so the call fails as an unreachable server.
    assert "socket.connect 192.0.2.1" in network.splitlines(), proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "refusing plain ws://" not in proc.stdout + proc.stderr
    if command == "talk":
        assert proc.stderr.startswith("millis-proto: Could not connect to 192.0.2.1:9")
    elif command == "load":
        assert "calls failed (ConnectionFailed:NETWORK x1)" in proc.stderr
    else:
        assert "FAIL" in proc.stdout and "0 of" in proc.stdout


def test_wss_needs_no_flag(tmp_path: Path) -> None:
    # wss:// passes the check; the hook then blocks the connect (exit 1, not 2).
    args = command_args("load", tmp_path)
    args[args.index(URL)] = URL.replace("ws://", "wss://")
    proc, network = offline(tmp_path, args)
    assert proc.returncode == 1 and "socket.connect 192.0.2.1" in network, proc.stderr


def test_allow_insecure_on_test_needs_an_endpoint(tmp_path: Path) -> None:
    proc, _ = offline(tmp_path, ["test", str(SUITE), "--allow-insecure"])
    assert proc.returncode == 2
    assert "--allow-insecure need --endpoint" in proc.stderr
