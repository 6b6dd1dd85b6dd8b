"""The real ``millis-proto`` command in subprocesses: demo, talk, serve, errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import DEMO_WAV, EXE, read_events, run


def test_demo_fast_writes_reply_and_events(tmp_path: Path) -> None:
    proc = run("demo", "--fast", "--plain", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "reply.wav" in proc.stdout and "events.jsonl" in proc.stdout
    audio, rate = sf.read(tmp_path / "reply.wav", dtype="int16")
    assert rate == 16000 and audio.ndim == 1
    loud = np.nonzero(np.abs(audio) > 100)[0]
    assert len(loud) > 16000  # more than a second of agent speech
    events = read_events(tmp_path / "events.jsonl")
    names = [e["event"] for e in events]
    for needed in (
        "onready",
        "start_answering",
        "ontranscript",
        "onfunction",
        "onresponsetext",
        "latency",
        "agent_state",
        "level",
        "onsessionended",
        "closed",
        "finished",
    ):
        assert needed in names, needed
    call = next(e for e in events if e["event"] == "onfunction")
    assert call["function"] == "get_weather" and call["params"] == {"city": "Paris"}
    # the answer starts after the user finished speaking (time-aligned output)
    first = loud[0] / 16000
    assert first > sf.info(str(DEMO_WAV)).duration - 0.5
    assert events == sorted(events, key=lambda e: e["t"])  # type: ignore[arg-type,return-value]


def test_talk_fast_is_byte_identical_every_run(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}.wav"
        rec = tmp_path / f"rec{i}.wav"
        proc = run(
            "talk",
            "--fast",
            "--plain",
            "--input",
            str(DEMO_WAV),
            "--output",
            str(out),
            "--record",
            str(rec),
            "--events",
            str(tmp_path / f"ev{i}.jsonl"),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append((out.read_bytes(), rec.read_bytes()))
    assert outs[0] == outs[1]
    stereo, rate = sf.read(tmp_path / "rec0.wav", dtype="int16")
    assert stereo.shape[1] == 2 and rate == 16000
    user, _ = sf.read(DEMO_WAV, dtype="int16")
    assert np.array_equal(stereo[: len(user), 0], user)  # the left channel is what we sent
    echo, _ = sf.read(tmp_path / "out0.wav", dtype="int16")
    n = min(len(echo), len(stereo))
    assert np.array_equal(stereo[:n, 1], echo[:n])  # the right channel is what was played


def test_talk_against_serve_over_loopback(tmp_path: Path) -> None:
    short = tmp_path / "hello.wav"
    speech, _ = sf.read(DEMO_WAV, dtype="int16")
    sf.write(short, speech[: 16000 * 2], 16000, subtype="PCM_16")
    server = subprocess.Popen(
        [EXE, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        url = re.search(r"(ws://\S+)", first)
        assert url, first
        proc = run(
            "talk",
            "--endpoint",
            url.group(1),
            "--plain",
            "--input",
            str(short),
            "--output",
            str(tmp_path / "out.wav"),
            "--events",
            str(tmp_path / "ev.jsonl"),
            "--idle-timeout",
            "1",
            "--max-duration",
            "20",
            "--public-key",
            "pk-SECRET-42",
            "--agent-id",
            "a",
        )
        assert proc.returncode == 0, proc.stderr
        events = read_events(tmp_path / "ev.jsonl")
        names = [e["event"] for e in events]
        assert "onready" in names and "ontranscript" in names
        finished = next(e for e in events if e["event"] == "finished")
        assert finished["reason"] == "idle"
        echo, _ = sf.read(tmp_path / "out.wav", dtype="int16")
        assert np.abs(echo).max() > 1000  # the echo agent played our speech back
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=10)
    assert "] initiate " in out and "onready" not in out  # the server logs what it got
    assert re.search(r"^\[local-session-\d+ +[0-9.]+\] initiate ", out, re.M), out
    assert "pk-SECRET-42" not in out  # the server's log redacts the key
    assert "***" in out


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (["talk", "--input", "/nonexistent.wav", "--output", "o.wav"], 1, "/nonexistent.wav"),
        (["talk", "--input", "BAD", "--output", "o.wav"], 1, "BAD"),
        (["talk", "--metadata", "[1]", "--input", "x.wav"], 2, "--metadata"),
        (["talk", "--agent-config", "cfg.json", "--input", "x.wav"], 2, "agent_config.prompt"),
        (
            [
                "talk",
                "--endpoint",
                "ws://127.0.0.1:1/millis",
                "--public-key",
                "pk-SECRET-42",
                "--agent-id",
                "a",
                "--input",
                "DEMO",
                "--output",
                "o.wav",
            ],
            1,
            "refused",
        ),
        (
            [
                "talk",
                "--endpoint",
                "wss://example.invalid/millis",
                "--public-key",
                "pk-SECRET-42",
                "--agent-id",
                "a",
                "--input",
                "DEMO",
                "--output",
                "o.wav",
            ],
            1,
            "",
        ),
        (["talk", "--endpoint", "http://x", "--input", "DEMO"], 2, "wss://"),
        (
            ["talk", "--endpoint", "wss://api.example.com/millis", "--input", "DEMO"],
            2,
            "public key",
        ),
    ],
)
def test_errors_are_one_sentence_without_traceback(
    tmp_path: Path, args: list[str], status: int, fragment: str
) -> None:
    (tmp_path / "BAD").write_bytes(b"this is not audio at all" * 10)
    (tmp_path / "cfg.json").write_text('{"prompt": 5}')
    args = [str(DEMO_WAV) if a == "DEMO" else a for a in args]
    proc = run(*args, timeout=60, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("millis-proto: "), proc.stderr
    assert fragment in lines[0]
    assert "pk-SECRET-42" not in proc.stderr + proc.stdout


def test_events_file_is_complete_after_a_refused_connection(tmp_path: Path) -> None:
    proc = run(
        "talk",
        "--endpoint",
        "ws://127.0.0.1:1/millis",
        "--agent-id",
        "a",
        "--input",
        str(DEMO_WAV),
        "--output",
        str(tmp_path / "o.wav"),
        "--events",
        str(tmp_path / "e.jsonl"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    events = read_events(tmp_path / "e.jsonl")
    assert events[-1]["event"] == "error"
    info = sf.info(str(tmp_path / "o.wav"))  # a valid (empty) WAV even so
    assert info.samplerate == 16000


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_help_lists_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("talk", "serve", "demo", "devices"):
        assert cmd in proc.stdout


def test_ctrl_c_closes_cleanly_and_leaves_valid_files(tmp_path: Path) -> None:
    import signal
    import time

    from serve_helpers import serve_process

    with serve_process() as (url, server):
        talk = subprocess.Popen(
            [
                EXE,
                "talk",
                "--endpoint",
                url,
                "--plain",
                "--input",
                str(DEMO_WAV),
                "--output",
                str(tmp_path / "o.wav"),
                "--events",
                str(tmp_path / "e.jsonl"),
                "--record",
                str(tmp_path / "r.wav"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the session is live
            if (tmp_path / "e.jsonl").exists() and "onready" in (tmp_path / "e.jsonl").read_text():
                break
            time.sleep(0.05)
        time.sleep(1.0)  # mid-conversation
        talk.send_signal(signal.SIGINT)
        _, err = talk.communicate(timeout=20)
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert talk.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip() == "millis-proto: interrupted."
    events = read_events(tmp_path / "e.jsonl")
    assert events[0]["event"] == "connected"
    wav = sf.info(str(tmp_path / "o.wav"))
    assert wav.samplerate == 16000 and wav.frames > 16000 * 0.5  # written up to the moment
    rec = sf.info(str(tmp_path / "r.wav"))
    assert rec.channels == 2 and rec.frames > 16000 * 0.5
    assert "closed" in log and "code=1000" in log  # the server saw a normal close handshake


def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    """Attached to a TTY, the rich panel is drawn: conversation lines, state, meters."""
    import pty

    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "CI": "true", "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(
        [EXE, "demo", "--fast", "--out-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=child_fd,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main_fd)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
    assert "millis-proto" in screen  # the panel's title
    assert "agent: It is sunny in Paris" in screen
    assert "agent:" in screen
    assert "[   " not in screen  # no plain-view lines
    # Readable without colour: levels as numbers and filled bars, labels in one column,
    # an elapsed clock in the title, and the turn latency measured from the audio.
    assert re.search(r"you {10,}(-\d+| -∞) dB [█░]{24}", screen), screen[-3000:]
    assert re.search(r"agent {8,}(-\d+| -∞) dB [█░]{24}", screen)
    assert re.search(r"millis-proto · 00:0\d\.\d", screen)
    assert re.search(r"turn latency +[1-9]\d+ ms", screen)


def test_demo_works_without_any_extra(tmp_path: Path) -> None:
    """``pip install millis-proto`` (no extras) gives a working CLI: demo with tones."""
    child = (
        "import sys\n"
        "for name in ('numpy', 'soundfile', 'soxr', 'sounddevice', 'rich'):\n"
        "    sys.modules[name] = None  # as if not installed\n"
        "from transports.cli import main\n"
        f"sys.exit(main(['demo', '--fast', '--out-dir', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    import wave

    with wave.open(str(tmp_path / "reply.wav")) as w:
        assert w.getframerate() == 16000 and w.getnframes() > 16000
    names = [e["event"] for e in read_events(tmp_path / "events.jsonl")]
    assert "onfunction" in names and "onsessionended" in names
