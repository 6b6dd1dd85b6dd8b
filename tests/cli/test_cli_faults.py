"""Faults around a real ``millis-proto talk`` process: bad audio files mid-call, full disks,
signals, a server echoing the key, cleartext to a remote host, a flooding server.

Every test runs the real command in a subprocess against a real peer (``serve`` or the
independent scripted ``websockets`` server) or the built-in agent, with real files: an
MP3 and a FLAC cut in half, ``/dev/full``, a tiny tmpfs filled up, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from cli_helpers import DEMO_WAV, EXE, one_error_line, read_events, run
from raw_peers import rejecting_server
from scripted_server import ScriptedConnection, ScriptedServer
from serve_helpers import serve_process
from test_cli_scripted import talk

SECRET = "pk-SECRET-echoed-7c1"
RATE = 16000


def wav_is_whole(path: Path, channels: int = 1) -> int:
    """Assert ``path`` is a PCM_16 WAV whose header counts exactly the data; its frames."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:16] == b"WAVEfmt "
    assert int.from_bytes(raw[4:8], "little") == len(raw) - 8
    data = int.from_bytes(raw[40:44], "little")
    assert data == len(raw) - 44 and data % (2 * channels) == 0
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (RATE, channels)
    return info.frames


def jsonl_is_whole(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a partial last line"
    return read_events(path)


def talk_to(url: str, tmp_path: Path, audio: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "talk",
        "--endpoint",
        url,
        "--plain",
        "--input",
        str(audio),
        "--output",
        str(tmp_path / "o.wav"),
        "--events",
        str(tmp_path / "e.jsonl"),
        "--idle-timeout",
        "1",
        "--max-duration",
        "30",
        *extra,
    )


# --- 2. audio files that fail (or only seem to) in the middle of a call -------------------


def _mp3_without_length_header(tmp_path: Path) -> Path:
    """The demo speech as MP3 minus its Xing/Info first frame: libsndfile must guess the
    length from the file size (and guesses far too long)."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    audio, rate = sf.read(str(DEMO_WAV), dtype="float32")
    full = tmp_path / "full.mp3"
    sf.write(str(full), audio, rate, format="MP3")
    raw = full.read_bytes()
    assert raw[:2] == b"\xff\xf3" and (b"Xing" in raw[:400] or b"Info" in raw[:400])
    second = next(i for i in range(4, len(raw)) if raw[i] == 0xFF and raw[i + 1] & 0xE0 == 0xE0)
    path = tmp_path / "speech.mp3"
    path.write_bytes(raw[second:])
    assert sf.info(str(path)).frames > 2 * len(sf.read(str(path))[0])  # the guess is long
    return path


def test_mp3_with_an_estimated_length_is_sent_whole(tmp_path: Path) -> None:
    mp3 = _mp3_without_length_header(tmp_path)
    decoded = len(sf.read(str(mp3), dtype="int16")[0])
    with serve_process() as (url, _server):
        proc = talk_to(url, tmp_path, mp3)
    assert proc.returncode == 0, proc.stderr
    events = jsonl_is_whole(tmp_path / "e.jsonl")
    finished = events[-1]
    assert finished["event"] == "finished" and finished["reason"] == "idle"
    assert finished["sent_samples"] == decoded  # not cut short as "truncated"
    assert any(e["event"] == "ontranscript" for e in events)  # the agent heard it
    wav_is_whole(tmp_path / "o.wav")


def test_flac_cut_in_half_ends_the_call_with_one_sentence(tmp_path: Path) -> None:
    audio, rate = sf.read(str(DEMO_WAV), dtype="int16")
    good = tmp_path / "good.flac"
    sf.write(str(good), audio, rate, format="FLAC")
    half = tmp_path / "half.flac"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with serve_process() as (url, server):
        proc = talk_to(url, tmp_path, half, "--record", str(tmp_path / "r.wav"))
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert str(half) in line and ("damaged" in line or "truncated" in line)
    events = jsonl_is_whole(tmp_path / "e.jsonl")
    assert [e["event"] for e in events[-2:]] == ["closed", "error"]
    assert events[-2]["code"] == 1000  # closed with the handshake
    assert 0 < events[-1]["t"] < 4.0  # mid-call, not after an idle timeout
    assert wav_is_whole(tmp_path / "o.wav") > 0
    assert wav_is_whole(tmp_path / "r.wav", channels=2) > RATE
    assert "code=1000" in log  # the server saw a normal close


# --- 3. full disks --------------------------------------------------------------------------


def fast_talk(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The built-in agent in virtual time: a whole call in a fraction of a second."""
    return run("talk", "--fast", "--plain", "--input", str(DEMO_WAV), *extra, cwd=tmp_path)


def test_events_to_dev_full_is_one_sentence_and_the_wav_stays_valid(tmp_path: Path) -> None:
    proc = fast_talk(tmp_path, "--output", str(tmp_path / "o.wav"), "--events", "/dev/full")
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert "'/dev/full'" in line and "No space left on device" in line
    wav_is_whole(tmp_path / "o.wav")


@contextmanager
def full_tmpfs(tmp_path: Path, free_bytes: int) -> Iterator[Path]:
    """A 64 KiB tmpfs with about ``free_bytes`` left (the rest taken by a filler file)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        stat = os.statvfs(mount)
        filler = stat.f_bavail * stat.f_frsize - free_bytes
        if filler > 0:
            (mount / "filler").write_bytes(bytes(filler))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("flag", ["--output", "--record"])
def test_full_filesystem_under_a_wav_is_one_sentence_and_a_valid_wav(
    tmp_path: Path, flag: str
) -> None:
    with full_tmpfs(tmp_path, free_bytes=48 * 1024) as small:
        target = small / "out.wav"
        other = ["--output", str(tmp_path / "o.wav")] if flag == "--record" else []
        proc = fast_talk(tmp_path, flag, str(target), *other, "--events", str(tmp_path / "e.jsonl"))
        assert proc.returncode == 1, proc.stderr
        line = one_error_line(proc)
        assert str(target) in line and "No space left on device" in line
        frames = wav_is_whole(target, channels=2 if flag == "--record" else 1)
        assert frames > RATE // 2  # what fitted is kept
        events = jsonl_is_whole(tmp_path / "e.jsonl")
        assert events[-1]["event"] == "error" and str(target) in events[-1]["message"]
        assert any(e["event"] == "closed" for e in events)


def test_full_filesystem_under_the_events_keeps_whole_lines(tmp_path: Path) -> None:
    with full_tmpfs(tmp_path, free_bytes=4096) as small:
        target = small / "e.jsonl"
        proc = fast_talk(tmp_path, "--output", str(tmp_path / "o.wav"), "--events", str(target))
        assert proc.returncode == 1, proc.stderr
        line = one_error_line(proc)
        assert str(target) in line and "No space left on device" in line
        assert len(jsonl_is_whole(target)) > 5  # whole lines up to the one that failed
        wav_is_whole(tmp_path / "o.wav")


# --- 4. SIGTERM and SIGHUP end the call like Ctrl-C ----------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_closes_with_the_handshake_and_finalizes_files(
    tmp_path: Path, signum: int, status: int
) -> None:
    with serve_process() as (url, server):
        proc = subprocess.Popen(
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
        events_file = tmp_path / "e.jsonl"
        while time.monotonic() < deadline:
            if events_file.exists() and "onready" in events_file.read_text():
                break
            time.sleep(0.05)
        time.sleep(1.0)  # mid-conversation
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert proc.returncode == status, err
    assert err.strip() == f"millis-proto: stopped by {signal.Signals(signum).name}."
    events = jsonl_is_whole(events_file)
    names = [e["event"] for e in events]
    assert "closed" in names and events[names.index("closed")]["code"] == 1000
    assert names[-1] == "finished" and events[-1]["reason"] == "stopped"
    assert wav_is_whole(tmp_path / "o.wav") > RATE // 2
    assert wav_is_whole(tmp_path / "r.wav", channels=2) > RATE // 2
    assert "code=1000" in log


# --- 6. a server that echoes the key --------------------------------------------------------


@pytest.mark.parametrize(
    "echo",
    [SECRET, json.dumps({"error": "bad key", "key": SECRET}), f"key=%22{SECRET}%22"],
)
def test_a_401_that_echoes_the_key_does_not_get_it_printed(tmp_path: Path, echo: str) -> None:
    body = f"invalid public key {echo} for this agent".encode()
    with rejecting_server(body) as url:
        proc = talk_to(url, tmp_path, DEMO_WAV, "--public-key", SECRET, "--agent-id", "a")
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc)
    assert "HTTP 401" in line and "invalid public key" in line
    everything = proc.stderr + proc.stdout + (tmp_path / "e.jsonl").read_text()
    assert SECRET not in everything
    assert "<public key>" in line


async def _echo_key_everywhere(conn: ScriptedConnection) -> None:
    await conn.ready(session_id=SECRET)
    await conn.send("ontranscript", data={"script": f"my key is {SECRET}", "is_final": False})
    await conn.send("ontranscript", data={"script": f"my key is {SECRET}", "is_final": True})
    await conn.send("something_new", data={"echo": SECRET})
    await conn.ws.close(1008, f"key {SECRET} refused")


def test_a_server_echoing_the_key_in_messages_and_close_reason(tmp_path: Path) -> None:
    with ScriptedServer(_echo_key_everywhere) as server:
        proc = talk(tmp_path, server.url, "--public-key", SECRET)
    assert proc.returncode == 1, proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    assert SECRET not in (tmp_path / "ev.jsonl").read_text()
    assert "<public key>" in proc.stdout and "<public key>" in proc.stderr


# --- 7. plain ws:// to a remote host ---------------------------------------------------------


def test_cleartext_to_a_remote_host_is_refused_before_connecting(tmp_path: Path) -> None:
    started = time.monotonic()
    # TEST-NET-1 (RFC 5737): never routed; refused before any I/O, so no packet goes out.
    proc = talk_to(
        "ws://192.0.2.1:9/millis", tmp_path, DEMO_WAV, "--public-key", SECRET, "--agent-id", "a"
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "ws://" in line and "192.0.2.1" in line and "--allow-insecure" in line
    assert elapsed < 5  # a connection attempt would wait for the 10 s connect timeout
    assert SECRET not in proc.stderr


@pytest.mark.parametrize("host", ["localhost", "[::1]"])
def test_cleartext_to_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    bind = "::1" if host == "[::1]" else "127.0.0.1"
    try:
        socket.create_server((bind, 0), family=socket.AF_INET6 if ":" in bind else socket.AF_INET)
    except OSError:
        pytest.skip(f"cannot bind {bind}")
    with serve_process("--host", bind) as (url, _server):
        port = url.rsplit(":", 1)[1].split("/")[0]
        proc = talk_to(f"ws://{host}:{port}/millis", tmp_path, DEMO_WAV)
    assert proc.returncode == 0, proc.stderr


# --- 9. a server flooding the client ---------------------------------------------------------

FLOOD_SECONDS = 3.0
FLOOD_SPEED = 100  # times real time


async def _flood(conn: ScriptedConnection) -> None:
    """100x real-time agent audio and a storm of unknown messages, for 3 s."""
    await conn.ready()
    await conn.send("start_answering")
    block = bytes(2 * RATE // 50 * FLOOD_SPEED)  # 20 ms of time, 2 s of audio
    sent = 0
    while conn.now() < FLOOD_SECONDS:
        await conn.ws.send(block)
        for i in range(20):
            await conn.send("flood_message", data={"i": sent * 20 + i})
        sent += 1
        await conn.at(sent * 0.02)
    await conn.send("onsessionended")
    await conn.ws.close(1000)


def test_a_flooding_server_cannot_flood_the_events_file(tmp_path: Path) -> None:
    with ScriptedServer(_flood) as server:
        proc = talk(tmp_path, server.url, max_duration="20")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "ev.jsonl"
    events = jsonl_is_whole(path)
    overflow = [e for e in events if e["event"] == "playback_overflow"]
    assert 1 <= len(overflow) <= FLOOD_SECONDS + 3  # aggregated: at most one a second
    totals = [e["total_dropped_samples"] for e in overflow]
    assert totals == sorted(totals) and totals[-1] > FLOOD_SPEED * RATE  # a running count
    per_second: dict[int, int] = {}
    for e in events:
        per_second[int(e["t"])] = per_second.get(int(e["t"]), 0) + 1
    assert max(per_second.values()) <= 200 + 10
    suppressed = sum(e["lines"] for e in events if e["event"] == "suppressed")
    flood = sum(1 for e in events if e["event"] == "flood_message")
    assert suppressed > 0 and flood + suppressed >= 0.9 * FLOOD_SECONDS * 50 * 20
    assert path.stat().st_size < 200 * 1024
    assert events[-1]["event"] == "finished"
