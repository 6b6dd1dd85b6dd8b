"""The core is pure: no I/O modules, no clock, no printing, no logging handlers.

A fresh interpreter imports every module of ``millis_proto`` with the forbidden modules
blocked and every clock raising, then runs a whole scripted session through real bytes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import builtins, importlib.abc, logging, pkgutil, sys, time

    FORBIDDEN = {"socket", "ssl", "asyncio", "trio", "anyio", "threading", "selectors",
                 "random", "sounddevice", "soundfile", "subprocess", "numpy"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"millis_proto must not import {name}")
            return None

    # Anything already imported by the interpreter's startup is hidden too.
    for mod in list(sys.modules):
        if mod.split(".")[0] in FORBIDDEN:
            del sys.modules[mod]
    sys.meta_path.insert(0, Block())

    def no_clock(*a, **k):
        raise AssertionError("millis_proto read a clock")
    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns",
                 "perf_counter_ns", "sleep"):
        setattr(time, name, no_clock)
    def no_print(*a, **k):
        raise AssertionError("millis_proto printed")
    builtins.print = no_print

    import millis_proto
    for info in pkgutil.walk_packages(millis_proto.__path__, "millis_proto."):
        importlib = __import__("importlib")
        importlib.import_module(info.name)

    from millis_proto import *  # noqa
    cw = ClientConnection(StartRequest(public_key="k", agent_id="a"), "ws://127.0.0.1:1/millis",
                          ClientConfig(chunk_ms=20, ping_every_packets=5, emit_audio_events=True))
    client = cw
    sw = ServerConnection(now=0.0)
    now = 0.0
    seen = []
    def pump():
        for _ in range(50):
            a = cw.data_to_send(); sw.receive_data(a, now) if a else None
            seen.extend(sw.events())
            b = sw.data_to_send(); cw.receive_data(b, now) if b else None
            seen.extend(cw.events())
            if not a and not b:
                return
    pump()
    sw.send_ready("s")
    pump()
    for i in range(30):
        now += 0.02
        client.send_audio(bytes(641), now)
        pump()
    s = sw
    s.send_start_answering(); s.send_audio(bytes(3201)); s.send_pause(); s.send_unpause()
    s.send_transcript("t", is_final=True); s.send_clear(); s.send_message("x", {"y": 1})
    pump()
    client.pull_playback(320, now)
    s.send_session_ended(); pump()
    names = {type(e).__name__ for e in seen}
    need = {"Connected", "InitiateReceived", "Ready", "SessionReady", "ClientAudio",
            "ClientPing", "Pong", "StartAnswering", "AgentAudio", "Pause", "Unpause",
            "Clear", "Transcript", "UnknownMessage", "SessionEnded", "ConnectionClosed",
            "AgentStateChanged", "AnswerLatency"}
    assert need <= names, need - names
    assert cw.closed is not None and sw.closed is not None
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("millis_proto") and isinstance(logger, logging.Logger):
            assert not logger.handlers, name
    assert not logging.root.handlers
    sys.stdout.write("PURE-OK\\n")
    """
)


def test_core_runs_a_whole_session_with_io_and_clocks_blocked() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "PURE-OK\n"
    assert proc.stderr == ""


def test_core_has_no_module_level_mutable_state_reachable_from_machines() -> None:
    """Two clients never share state: settings and queues are per instance."""
    from millis_proto import MessageClient, StartRequest

    a = MessageClient(StartRequest(public_key="k", agent_id="a"))
    b = MessageClient(StartRequest(public_key="k", agent_id="a"))
    a.start(0)
    a.mute()
    assert a.playback is not b.playback
    assert not b.muted
    assert b.messages_to_send() == []
