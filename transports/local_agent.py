"""The built-in local agent on real I/O: a serving handler, a speaking voice, a harness.

The agent itself is pure (:mod:`millis_proto.agent`); this module gives it what needs the
outside world:

* :func:`agent_handler` — a :data:`~transports.server.Handler` running one
  :class:`~millis_proto.agent.AgentSession` per connection, waking for the agent's timer
  (``get_timer``, the aioquic way) as well as for the client's events.
* :func:`espeak_voice` / :func:`load_setup` — scenario replies spoken with ``espeak-ng``
  when it is installed (tones otherwise) and scenario WAV clips, all rendered *before*
  serving so that synthesis never stalls a live session.
* :func:`converse` — the in-process harness users' offline tests use: a client session
  against the agent over the in-memory transport, fed from a source, played into a sink,
  optionally in virtual time (trio's ``MockClock``), returning the events and the audio.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from millis_proto import ClientConfig, ConnectionClosed, Event, StartRequest
from millis_proto.agent import AgentSession, AgentSetup, Scenario, load_scenario, tone_voice

from .server import Handler, ServerSession

__all__ = [
    "OfflineConversation",
    "agent_handler",
    "converse",
    "espeak_voice",
    "load_setup",
    "speech_fallback",
]

log = logging.getLogger(__name__)

#: The request the harness and the CLI send to the local agent when the user gave none.
LOCAL_REQUEST = StartRequest(public_key="local-test-key", agent_id="local-agent")


def agent_handler(
    setup: AgentSetup | None = None,
    *,
    on_event: Callable[[ServerSession, AgentSession, Event], None] | None = None,
) -> Handler:
    """A serving handler that answers every connection with the local agent.

    Pass one ``setup`` for the whole server: it holds the session store (continuation)
    and the session-id counter that all connections share. ``on_event`` sees every event
    of every session (for logging), with the agent session that handled it, so a log can
    use ``agent.session_id`` (the id the client was given; set once ``initiate`` was
    accepted).
    """
    shared = setup if setup is not None else AgentSetup()

    async def handler(session: ServerSession) -> None:
        agent = AgentSession(shared, server=session.server)
        events = session.events()
        while True:
            deadline = agent.get_timer()
            delay = math.inf if deadline is None else deadline - anyio.current_time()
            event: Event | None = None
            with anyio.move_on_after(max(delay, 0.0)):
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    return
            now = anyio.current_time()
            if event is None:
                agent.on_tick(now)
            else:
                agent.feed(event, now)
                if on_event is not None:
                    on_event(session, agent, event)
                if isinstance(event, ConnectionClosed):
                    return
            await session.flush()

    return handler


def speech_fallback() -> str | None:
    """Why the local agent would speak its replies in tones here, or None if it can speak.

    A sentence that also says how to get speech: espeak-ng renders the replies, and the
    audio extra (soxr) resamples them to 16 kHz.
    """
    if shutil.which("espeak-ng") is None:
        return (
            "the local agent speaks in tones because espeak-ng is not installed; "
            "install it (apt install espeak-ng, brew install espeak-ng) for speech"
        )
    from audio_backends import MissingExtraError

    try:
        from audio_backends.files import FileSource  # noqa: F401  # needs soxr and soundfile
    except MissingExtraError as exc:
        return (
            f"the local agent speaks in tones because the audio extra is missing ({exc.name}); "
            "pip install 'millis-proto[audio]' for speech"
        )
    return None


def espeak_voice(
    texts: list[str], *, fallback: Callable[[str], bytes] = tone_voice
) -> Callable[[str], bytes]:
    """A voice that speaks ``texts`` with espeak-ng, rendered now; others fall back to tones.

    Without ``espeak-ng`` on the PATH (or without the audio extra) every text uses
    ``fallback``; the reason is logged once.
    """
    rendered: dict[str, bytes] = {}
    exe = shutil.which("espeak-ng")
    if exe is None:
        if texts:
            log.info("espeak-ng is not installed; the local agent speaks in tones")
    else:
        for text in dict.fromkeys(t for t in texts if t.strip()):
            pcm = _speak(exe, text)
            if pcm is not None:
                rendered[text] = pcm

    def voice(text: str) -> bytes:
        return rendered.get(text) or fallback(text)

    return voice


def _speak(exe: str, text: str) -> bytes | None:
    from audio_backends import MissingExtraError

    try:
        from audio_backends.files import FileSource
    except MissingExtraError:
        log.info("espeak-ng speech needs the audio extra to resample; using tones")
        return None

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        proc = subprocess.run(
            [exe, "-w", str(out), "--", text], capture_output=True, timeout=30, check=False
        )
        if proc.returncode != 0 or not out.exists():
            log.warning("espeak-ng failed (%s); using a tone", proc.stderr.decode()[:200])
            return None
        with FileSource(out) as source:
            return _read_all(source)


def _read_all(source: object) -> bytes:
    chunks = []
    read = source.read  # type: ignore[attr-defined]
    while chunk := read(16000):
        chunks.append(chunk)
    return b"".join(chunks)


def load_setup(scenario_path: str | Path | None = None, *, speak: bool = True) -> AgentSetup:
    """Build the agent's setup from a scenario file (JSON or TOML; None = the echo agent).

    Scenario WAV clips are read (relative paths are resolved next to the scenario file) and
    reply texts are rendered with espeak-ng when ``speak`` and it is installed. Raises
    :class:`~millis_proto.ConfigError` or :class:`~audio_backends.errors.AudioFileError`
    naming the file and the problem.
    """
    if scenario_path is None:
        return AgentSetup()
    path = Path(scenario_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        from millis_proto import ConfigError

        raise ConfigError(f"scenario {path}: cannot read it ({exc.strerror}).") from None
    fmt: Literal["json", "toml"] = "toml" if path.suffix.lower() == ".toml" else "json"
    scenario: Scenario = load_scenario(text, fmt)
    clips: dict[str, bytes] = {}
    for clip in scenario.audio_paths():
        from audio_backends.files import FileSource

        clip_path = Path(clip) if Path(clip).is_absolute() else path.parent / clip
        with FileSource(clip_path) as source:
            clips[clip] = _read_all(source)
    voice = espeak_voice(_reply_texts(scenario)) if speak else tone_voice
    return AgentSetup(scenario=scenario, clips=clips, voice=voice)


def _reply_texts(scenario: Scenario) -> list[str]:
    turns = [scenario.greeting, *scenario.turns]
    return [t.reply for t in turns if t is not None and t.reply]


@dataclass
class OfflineConversation:
    """What :func:`converse` returns: every client event and the audio as played.

    (For live calls from an application, see :class:`transports.Conversation`.)
    """

    events: list[Event] = field(default_factory=list)
    played: bytes = b""
    session_id: str | None = None


def converse(
    user_audio: bytes | str | Path,
    *,
    scenario: str | Path | None = None,
    request: StartRequest = LOCAL_REQUEST,
    config: ClientConfig | None = None,
    virtual: bool = True,
    idle_timeout: float = 2.0,
    max_duration: float = 120.0,
) -> OfflineConversation:
    """Hold one conversation with the local agent in this process and return what happened.

    ``user_audio`` is 16 kHz mono s16le PCM, or the path of any audio file. With
    ``virtual`` (the default) the run uses trio's ``MockClock``: faster than real time and
    byte-identical every run. Raises what the session raises (``MillisError`` family).
    """
    import trio
    import trio.testing

    from audio_backends import MemorySink, MemorySource

    from .conversation import run_conversation
    from .memory import connect_in_memory

    conversation = OfflineConversation()

    async def main() -> None:
        setup = load_setup(scenario)
        source: Any
        if isinstance(user_audio, bytes):
            source = MemorySource(user_audio)
        else:
            from audio_backends import FileSource

            source = FileSource(user_audio)
        sink = MemorySink()
        with source, sink:
            async with connect_in_memory(agent_handler(setup), request, config=config) as s:
                await run_conversation(
                    s,
                    source,
                    sink,
                    on_event=lambda t, e: conversation.events.append(e),
                    idle_timeout=idle_timeout,
                    max_duration=max_duration,
                )
                conversation.session_id = s.session_id
        conversation.played = sink.pcm

    clock = trio.testing.MockClock(autojump_threshold=0) if virtual else None
    trio.run(main, clock=clock)
    return conversation
