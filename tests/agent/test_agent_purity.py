"""The agent is part of the pure core: it runs with I/O, clocks and entropy unavailable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so no module is already imported. Blocked modules cannot be
# imported at all; the clock functions raise if anything calls them.
PROGRAM = r"""
import sys
for name in ("socket", "ssl", "asyncio", "trio", "anyio", "threading", "selectors",
             "random", "subprocess", "sounddevice", "soundfile", "numpy", "secrets"):
    sys.modules[name] = None
import time
def _no_clock(*args):
    raise AssertionError("the pure core read the clock")
for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "sleep"):
    setattr(time, name, _no_clock)

import json
from millis_proto.agent import AgentSession, AgentSetup, load_scenario
from millis_proto.agent import tone_voice

scenario = load_scenario('greeting = "Hello there"\nend_after_turns = 1\n', format="toml")
session = AgentSession(AgentSetup(scenario=scenario))
server = session.server
server.receive_message(json.dumps(
    {"method": "initiate", "data": {"public_key": "k", "agent": {"agent_id": "a"}}}), 0.0)
now = 0.0
pcm = bytes(32000) + bytes(range(256)) * 125 + bytes(96000)  # silence, 1 s loud, silence
for i in range(0, len(pcm), 640):
    now += 0.02
    server.receive_message(pcm[i:i + 640], now)
    for event in server.events():
        session.feed(event, now)
    server.messages_to_send()
    if session.get_timer() is not None:
        session.on_tick(now)
assert len(tone_voice("a b c")) > 0
assert session.agent.end_reason == "end_after_turns", session.agent.phase
print("ok", session.agent.record.turns)
del sys.modules["threading"]  # interpreter shutdown looks it up
"""


def test_agent_runs_without_io_clock_or_entropy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 1"
    assert result.stderr == ""


def test_agent_sources_import_nothing_impure() -> None:
    banned = (
        "socket",
        "ssl",
        "asyncio",
        "trio",
        "anyio",
        "threading",
        "selectors",
        "random",
        "time",
        "subprocess",
        "sounddevice",
        "soundfile",
        "numpy",
        "os",
        "logging",
    )
    for path in sorted((ROOT / "millis_proto" / "agent").glob("*.py")):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                top = words[1].split(".")[0]
                assert top not in banned, f"{path.name}: {line.strip()}"
