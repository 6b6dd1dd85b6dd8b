"""The official @millisai/web-sdk, in headless Chromium, against our ``millis-proto serve``.

A real client nobody here wrote: the npm package runs in Debian's Chromium (driven by
playwright-core) with a spoken WAV as its microphone (Chromium's fake-media flags). The
harness lives in ``web_sdk/`` (see its NOTES.md); ``setup.sh`` installs Chromium (as root)
and the pinned npm packages. CI runs as root, so CI runs this test; elsewhere it is
skipped with the reason only when Chromium truly cannot be installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "web_sdk"
EXE = str(Path(sys.executable).with_name("millis-proto"))


@pytest.fixture(scope="module")
def harness() -> Path:
    if shutil.which("node") is None:
        pytest.skip("LOUD SKIP: node is not installed, the official SDK cannot run")
    proc = subprocess.run(
        ["bash", str(HERE / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        if "needs root" in proc.stderr:
            pytest.skip(f"LOUD SKIP: Chromium cannot be installed here: {proc.stderr[-300:]}")
        pytest.fail(f"setup.sh failed:\n{proc.stderr[-2000:]}")
    return HERE


def test_official_web_sdk_talks_to_our_local_agent(harness: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "sdk.json"
    scenario.write_text(
        json.dumps(
            {
                "turns": [
                    {
                        "transcript": "What is the weather in Paris?",
                        "function_calls": [{"name": "get_weather", "params": {"city": "Paris"}}],
                        "reply": "It is sunny in Paris.",
                    }
                ],
                # the SDK pings every 1000 frames of 8 ms: keep the session open past that
                "idle_timeout_s": 7,
            }
        )
    )
    server = subprocess.Popen(
        [EXE, "serve", "--port", "0", "--scenario", str(scenario)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        match = re.search(r"(ws://\S+)", server.stdout.readline())
        assert match
        out = tmp_path / "sdk.json.out"
        proc = subprocess.run(
            [
                "node",
                str(harness / "run.mjs"),
                "--url",
                match.group(1),
                "--wav",
                str(harness / "fixtures" / "hello_weather_16k.wav"),
                "--seconds",
                "40",
                "--out",
                str(out),
                "--public-key",
                "pk-SDK-SECRET",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=harness,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=10)
    result = json.loads(out.read_text())
    s = result["summary"]
    assert result["end_reason"] == "closed", (result["end_reason"], s)
    # connects and reaches its onready with our session id
    assert s["session_id"] and s["session_id"].startswith("local-session-")
    assert s["sdk_onready_t_ms"] is not None
    assert s["initiate"]["data"]["agent"] == {"agent_id": "test-agent"}
    # our agent heard the SDK's microphone and answered
    assert s["audio_bytes_sent"] > 32000
    assert [t["text"] for t in s["transcripts"]] == ["What is the weather in Paris?"]
    assert s["response_texts"][-1]["text"] == "It is sunny in Paris."
    assert s["response_texts"][-1]["payload"] == {"is_final": True}
    assert s["functions"][0]["payload"] == {"name": "get_weather", "params": {"city": "Paris"}}
    assert s["audio_frames_received"] > 0 and s["audio_bytes_received"] % 2 == 0
    states = s["agent_states"]
    assert "prepare_answer" in states and "answer" in states
    assert states.index("prepare_answer") < states.index("answer")
    assert s["latencies_ms"] and all(ms >= 0 for ms in s["latencies_ms"])
    # its keepalive pings are answered
    assert s["pings_sent"] >= 1 and s["pongs_received"] >= 1
    assert s["session_ended"]
    assert "pk-SDK-SECRET" not in log  # our server log redacts the key
