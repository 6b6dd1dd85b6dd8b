"""A new user's everyday mistakes and questions, each through the real ``millis-proto``.

Every case runs the installed command in a subprocess and reads what a person would read:
one sentence on stderr that says what to do (never a traceback), what was written and why
the call ended, when a fallback happened, and the help, version and device table.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import DEMO_WAV, EXE, one_error_line, run
from serve_helpers import serve_process

from millis_proto import events as event_module

ROOT = Path(__file__).parents[2]
SCENARIO = ROOT / "examples" / "scenario.json"


def one_sentence(proc: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The single stderr line of a failed run (and nothing like a traceback)."""
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Error:" not in proc.stderr, proc.stderr
    return one_error_line(proc)


def short_wav(tmp_path: Path, seconds: float = 2.0) -> Path:
    speech, rate = sf.read(DEMO_WAV, dtype="int16")
    path = tmp_path / "hello.wav"
    sf.write(path, speech[: round(seconds * rate)], rate, subtype="PCM_16")
    return path


# --- 5. everyday mistakes: one sentence that says what to do -----------------------------


def test_serve_on_a_busy_port_says_pass_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run("serve", "--port", str(port), timeout=30)
    assert one_sentence(proc) == (
        f"millis-proto: port {port} is in use; pass --port (another number, or 0 for any "
        "free port)."
    )


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_serve_rejects_a_port_that_is_not_one(port: str) -> None:
    proc = run("serve", "--port", port, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"argument --port: {port!r} is not a port" in proc.stderr or (
        f"argument --port: {port} is not a port: use 1-65535" in proc.stderr
    )


def test_events_into_a_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "events.jsonl"
    proc = run(
        "talk", "--fast", "--input", str(DEMO_WAV), "--output", str(tmp_path / "o.wav"),
        "--events", str(target), "--plain",
    )  # fmt: skip
    line = one_sentence(proc)
    assert str(target) in line and "pass --events" in line
    assert "No such file or directory" in line


def test_demo_into_an_impossible_out_dir() -> None:
    proc = run("demo", "--fast", "--plain", "--out-dir", "/proc/nope")
    line = one_sentence(proc)
    assert "--out-dir '/proc/nope'" in line and "pass a directory you can write to" in line


def test_demo_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    proc = subprocess.run(
        f"'{EXE}' demo --fast --plain --out-dir '{tmp_path}' | head -1; "
        'echo "status=${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "true"},
        check=False,
    )
    lines = proc.stdout.splitlines()
    # The first line: connected — or, on a machine without espeak-ng, the note that the
    # local agent speaks in tones, which comes before it.
    assert lines[0].startswith(
        ("[   0.00] connected, session local-session-", "[   0.00] the local agent speaks in tones")
    )
    assert lines[1] == "status=0"
    assert proc.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    # The run went on to the end after its reader left: the files are complete.
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "finished"
    assert sf.info(str(tmp_path / "reply.wav")).duration > 1.0


# --- 6. what was written and why the call ended -------------------------------------------


def test_talk_says_what_it_wrote_and_why_it_ended(tmp_path: Path) -> None:
    out, ev, rec = tmp_path / "out.wav", tmp_path / "ev.jsonl", tmp_path / "rec.wav"
    proc = run(
        "talk", "--fast", "--plain", "--input", str(short_wav(tmp_path)), "--output", str(out),
        "--events", str(ev), "--record", str(rec), "--idle-timeout", "1.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tail = proc.stdout.splitlines()[-4:]
    assert tail[0].endswith(
        "call ended: the input ended and the agent was idle for 1.5 s (--idle-timeout)"
    )
    seconds = sf.info(str(out)).frames / 16000
    assert tail[1] == f"wrote {out} ({seconds:.1f} s: what the agent said, as played)"
    assert tail[2] == f"wrote {rec} (stereo call recording: you left, agent right)"
    n = len(ev.read_text().splitlines())
    assert tail[3] == f"wrote {ev} ({n} events, one JSON object per line)"


def test_talk_says_when_max_duration_or_the_agent_ended_it(tmp_path: Path) -> None:
    wav = short_wav(tmp_path)
    capped = run(
        "talk", "--fast", "--plain", "--input", str(wav), "--output",
        str(tmp_path / "a.wav"), "--max-duration", "1",
    )  # fmt: skip
    assert capped.returncode == 0, capped.stderr
    assert "call ended: it reached --max-duration 1 s" in capped.stdout
    ended = run("demo", "--fast", "--plain", "--out-dir", str(tmp_path))
    assert ended.returncode == 0, ended.stderr
    assert "call ended: the agent ended the session" in ended.stdout


# --- 7. fallbacks are said, with how to get speech ----------------------------------------


def test_demo_says_it_speaks_in_tones_without_espeak(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run("demo", "--fast", "--plain", "--out-dir", str(tmp_path), env={"PATH": str(empty)})
    assert proc.returncode == 0, proc.stderr
    assert (
        "the local agent speaks in tones because espeak-ng is not installed; install it "
        "(apt install espeak-ng, brew install espeak-ng) for speech"
    ) in proc.stdout


def test_demo_says_it_speaks_in_tones_without_the_audio_extra(tmp_path: Path) -> None:
    child = textwrap.dedent(
        f"""
        import sys
        sys.modules["soxr"] = None  # as if the audio extra were not installed
        from transports.cli import main
        sys.exit(main(["demo", "--fast", "--plain", "--out-dir", {str(tmp_path)!r}]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "the local agent speaks in tones because the audio extra is missing (soxr); "
        "pip install 'millis-proto[audio]' for speech"
    ) in proc.stdout


def test_talk_says_when_the_local_agent_is_an_echo(tmp_path: Path) -> None:
    wav = short_wav(tmp_path)
    echo = run("talk", "--fast", "--plain", "--input", str(wav), "--output", str(tmp_path / "e"))
    assert echo.returncode == 0, echo.stderr
    first = echo.stdout.splitlines()[0]
    assert first.endswith(
        "the local agent is an echo: it answers each turn with your own audio "
        "(pass --scenario FILE for scripted answers)"
    )
    scripted = run(
        "talk", "--fast", "--plain", "--input", str(wav), "--output", str(tmp_path / "s.wav"),
        "--scenario", str(SCENARIO),
    )  # fmt: skip
    assert scripted.returncode == 0, scripted.stderr
    assert "is an echo" not in scripted.stdout


# --- 9. small things ---------------------------------------------------------------------


def test_version_and_bare_command() -> None:
    from importlib.metadata import version

    proc = run("--version", timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"millis-proto {version('millis-proto')}"
    bare = run(timeout=30)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: millis-proto")
    for command in ("talk", "demo", "serve", "devices"):
        assert re.search(rf"^\s+{command}\s+\w", bare.stdout, re.M), command


def _commands() -> list[str]:
    from transports.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", _commands())
def test_every_flag_has_help_and_defaults_are_shown(command: str) -> None:
    from transports.cli import _parser

    proc = run(command, "--help", timeout=30)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines; compare with spaces
    sub = next(a for a in _parser()._actions if a.dest == "command").choices[command]  # type: ignore[union-attr]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        assert " ".join(action.help.split()) in text
        if action.default not in (None, False):
            assert f"(default: {action.default})" in text, action.option_strings
    if command == "serve":
        assert "(default: 8080)" in text and "(default: 127.0.0.1)" in text


def test_output_and_events_dash_mean_stdout(tmp_path: Path) -> None:
    wav = short_wav(tmp_path)
    to_file = run(
        "talk", "--fast", "--plain", "--input", str(wav), "--output", str(tmp_path / "f.wav")
    )
    assert to_file.returncode == 0, to_file.stderr
    piped = subprocess.run(
        [EXE, "talk", "--fast", "--plain", "--input", str(wav), "--output", "-"],
        capture_output=True, timeout=120, check=False, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert not (tmp_path / "-").exists()
    header, data = piped.stdout[:44], piped.stdout[44:]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert data == (tmp_path / "f.wav").read_bytes()[44:]  # the same audio, on stdout
    assert b"call ended:" in piped.stderr  # the person's lines moved to stderr

    events = run(
        "talk", "--fast", "--plain", "--input", str(wav), "--output", str(tmp_path / "g.wav"),
        "--events", "-",
    )  # fmt: skip
    assert events.returncode == 0, events.stderr
    records = [json.loads(line) for line in events.stdout.splitlines()]
    assert records[0]["event"] == "connected" and records[-1]["event"] == "finished"
    assert "call ended:" in events.stderr


FAKE_SOUNDDEVICE = '''
"""A stand-in for PortAudio's Python binding: two devices, no audio."""
import types
default = types.SimpleNamespace(device=[{default_in}, {default_out}])
def query_devices():
    return {devices!r}
def query_hostapis():
    return [{{"name": "ALSA"}}]
'''


def fake_portaudio(
    tmp_path: Path, devices: list[dict[str, object]], default: tuple[int, int]
) -> dict[str, str]:
    """PYTHONPATH holding a fake ``sounddevice`` (the machine has no sound card)."""
    lib = tmp_path / "fake_portaudio"
    lib.mkdir()
    (lib / "sounddevice.py").write_text(
        FAKE_SOUNDDEVICE.format(devices=devices, default_in=default[0], default_out=default[1])
    )
    return {"PYTHONPATH": str(lib)}


def device(name: str, ins: int, outs: int, rate: float = 48000.0) -> dict[str, object]:
    return {
        "name": name, "hostapi": 0, "max_input_channels": ins, "max_output_channels": outs,
        "default_samplerate": rate,
    }  # fmt: skip


def test_devices_prints_a_table(tmp_path: Path) -> None:
    env = fake_portaudio(
        tmp_path,
        [device("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 2, 44100.0), device("USB Mic", 1, 0)],
        default=(1, 0),
    )
    proc = run("devices", env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "DeviceInfo(" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "name", "in", "out", "rate", "default"]
    assert lines[1].split()[0] == "0" and "ALC3246 Analog (hw:0,0)" in lines[1]
    assert lines[1].split()[-4:] == ["2", "2", "44100", "output"]
    assert lines[2].split()[-4:] == ["1", "0", "48000", "input"]
    # one column per field: the channel counts end under the end of their headers
    in_end, out_end = lines[0].index(" in ") + 2, lines[0].index(" out ") + 3
    assert [(line[in_end], line[out_end]) for line in lines[1:3]] == [("2", "2"), ("1", "0")]
    assert lines[3].startswith("Pick one with talk --input-device")


def test_no_output_device_suggests_output_file(tmp_path: Path) -> None:
    env = fake_portaudio(tmp_path, [device("USB Mic", 1, 0)], default=(0, -1))
    proc = run("talk", "--plain", "--input", str(short_wav(tmp_path)), env=env, timeout=30)
    line = one_sentence(proc)
    assert "no output device found" in line
    assert line.endswith("Pass --output FILE.wav to write the answer to a file.")


def test_wss_to_a_plain_server_suggests_ws(tmp_path: Path) -> None:
    with serve_process() as (url, _):
        wss = url.replace("ws://", "wss://")
        proc = run(
            "talk", "--endpoint", wss, "--plain", "--input", str(short_wav(tmp_path)),
            "--output", str(tmp_path / "o.wav"), timeout=60,
        )  # fmt: skip
    line = one_sentence(proc)
    assert line.endswith("the server does not seem to speak TLS: try ws:// instead of wss://.")


def test_serve_log_uses_the_session_ids_clients_see(tmp_path: Path) -> None:
    ids = []
    with serve_process() as (url, server):
        for i in range(2):
            ev = tmp_path / f"ev{i}.jsonl"
            proc = run(
                "talk", "--endpoint", url, "--plain", "--input", str(short_wav(tmp_path, 0.5)),
                "--output", str(tmp_path / f"o{i}.wav"), "--events", str(ev),
                "--idle-timeout", "0.5", timeout=60,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            ready = next(json.loads(x) for x in ev.read_text().splitlines() if '"onready"' in x)
            ids.append(ready["session_id"])
    log, _ = server.communicate(timeout=10)
    assert len(set(ids)) == 2
    for session_id in ids:
        assert re.search(rf"^\[{session_id} +[0-9.]+\] initiate ", log, re.M), log
        assert re.search(rf"^\[{session_id} +[0-9.]+\] closed code=1000", log, re.M), log
    assert "[connection 2 " in log  # before its initiate, a session is its connection


#: Events of the server role (what ``serve`` logs); never in a client's JSONL file.
SERVER_SIDE = {"initiate", "initiate_rejected", "client_audio", "ping", "client_message"}
#: What the CLI itself writes next to the session's events.
CLI_EVENTS = {"level", "turn_latency", "error", "finished"}


def test_the_readme_lists_every_jsonl_event(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The events file") :]
    section = section[: section.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    core = {
        cls.name
        for cls in vars(event_module).values()
        if isinstance(cls, type) and issubclass(cls, event_module.Event)
        and cls is not event_module.Event and cls.name not in SERVER_SIDE
    }  # fmt: skip
    core -= {"agent_audio", "unknown"}  # counted, never logged / logged by their own name
    missing = (core | CLI_EVENTS) - listed
    assert not missing, f"add a row for {missing} to the README's 'The events file' table"
    proc = run("demo", "--fast", "--plain", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    seen = {json.loads(x)["event"] for x in (tmp_path / "events.jsonl").read_text().splitlines()}
    assert seen <= listed, seen - listed


def test_turn_latency_is_measured_from_the_audio(tmp_path: Path) -> None:
    """Plain lines and the JSONL carry the end-of-speech to first-agent-audio latency."""
    ev, out = tmp_path / "ev.jsonl", tmp_path / "out.wav"
    proc = run(
        "talk", "--fast", "--plain", "--input", str(DEMO_WAV), "--output", str(out),
        "--events", str(ev), "--scenario", str(SCENARIO),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(x) for x in ev.read_text().splitlines() if '"turn_latency"' in x]
    assert turns, ev.read_text()[:500]
    # Cross-check against the audio itself: the end of the speech in the input and the
    # first loud sample of the answer in the output (both on the input's timeline).
    speech, _ = sf.read(DEMO_WAV, dtype="int16")
    played, _ = sf.read(out, dtype="int16")
    speech_end = np.flatnonzero(np.abs(speech) > 300)[-1] / 16000
    answer = np.flatnonzero(np.abs(played) > 300)
    first_answer = answer[answer / 16000 > speech_end][0] / 16000
    assert turns[0]["turn"] == 1
    assert turns[0]["played_ms"] == pytest.approx((first_answer - speech_end) * 1000, abs=60)
    assert 0 <= turns[0]["received_ms"] <= turns[0]["played_ms"] + 20  # one block of slack
    assert f"turn latency: {turns[0]['played_ms']:.0f} ms" in proc.stdout
