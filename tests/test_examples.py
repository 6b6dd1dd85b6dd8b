"""The examples/ programs run for real against a local ``millis-proto serve``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).parents[1]
EXE = str(Path(sys.executable).with_name("millis-proto"))


def test_websockets_custom_transport_talks_to_the_local_agent(
    local_url: str, tmp_path: Path
) -> None:
    speech, rate = sf.read(ROOT / "transports/cli/data/demo.wav", dtype="int16")
    wav = tmp_path / "q.wav"
    sf.write(wav, speech[: 2 * rate], rate, subtype="PCM_16")  # 2 s of speech
    out = tmp_path / "reply.raw"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/websockets_transport.py"),
            local_url,
            str(wav),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ready(session_id='local-session-" in proc.stdout
    assert "Transcript(" in proc.stdout
    played = np.frombuffer(out.read_bytes(), dtype="<i2")
    assert np.abs(played).max() > 1000  # the echo agent's answer was played
    # the echo is our own speech: its loudest stretch matches the input's
    assert np.abs(played).max() == pytest.approx(np.abs(speech[: 2 * rate]).max(), rel=0.01)
