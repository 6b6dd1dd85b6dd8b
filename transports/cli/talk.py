"""``millis-proto talk`` and ``demo``: one conversation, files valid on every way out."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, ExitStack
from pathlib import Path

import trio
import trio.testing

from audio_backends import AudioLevel, AudioSink, CallRecorder, MemorySource, WavSink
from audio_backends.protocols import AudioSource, LiveAudioSource
from millis_proto import ConfigError, Event, MillisError

from .._client import ClientSession
from ..conversation import run_conversation
from ..local_agent import agent_handler, load_setup
from ..memory import connect_in_memory
from .eventlog import EventLog
from .options import Target, build_target
from .view import make_view

DATA = Path(__file__).parent / "data"
#: Log a level line per source at most this often (blocks come every 20 ms).
LEVEL_LOG_INTERVAL = 0.1


def talk_command(args: argparse.Namespace) -> int:
    """Run ``talk``; returns the exit status (errors propagate to ``main`` as MillisError)."""
    target = build_target(
        endpoint=args.endpoint,
        public_key=args.public_key,
        agent_id=args.agent_id,
        agent_config=args.agent_config,
        metadata=args.metadata,
        include_metadata_in_prompt=args.include_metadata_in_prompt,
        session_id=args.session_id,
    )
    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive.")
    if args.fast and not (target.local and args.input and args.output):
        raise ConfigError("--fast needs the local agent, --input and --output.")
    return _run(
        args,
        target,
        input_path=args.input,
        output_path=args.output,
        events_path=args.events,
        record_path=args.record,
        scenario=args.scenario,
    )


def demo_command(args: argparse.Namespace) -> int:
    """Talk to the local agent with the bundled spoken WAV; write reply.wav and events.jsonl."""
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = build_target(
        endpoint=None,
        public_key=None,
        agent_id=None,
        agent_config=None,
        metadata=None,
        include_metadata_in_prompt=False,
        session_id=None,
    )
    if not target.local:
        target = Target(endpoint="local", request=target.request)
    args.chunk_ms, args.max_duration, args.idle_timeout = 20.0, 60.0, 2.0
    args.cafile = None
    status = _run(
        args,
        target,
        input_path=str(DATA / "demo.wav"),
        output_path=str(out / "reply.wav"),
        events_path=str(out / "events.jsonl"),
        record_path=None,
        scenario=str(DATA / "demo_scenario.json"),
    )
    sys.stdout.write(
        f"wrote {out / 'reply.wav'} (what the agent said, as played)\n"
        f"wrote {out / 'events.jsonl'} (every event, one JSON object per line)\n"
    )
    return status


def _run(
    args: argparse.Namespace,
    target: Target,
    *,
    input_path: str | None,
    output_path: str | None,
    events_path: str | None,
    record_path: str | None,
    scenario: str | None,
) -> int:
    clock = trio.testing.MockClock(autojump_threshold=0) if args.fast else None
    talk = functools.partial(
        _talk,
        args,
        target,
        input_path=input_path,
        output_path=output_path,
        events_path=events_path,
        record_path=record_path,
        scenario=scenario,
    )
    return trio.run(talk, clock=clock)


def _open_source(
    stack: ExitStack, path: str | None, device: str | None
) -> AudioSource | LiveAudioSource:
    if path is not None:
        from audio_backends import MissingExtraError

        try:
            from audio_backends import FileSource

            return stack.enter_context(FileSource(path))
        except MissingExtraError:
            # Without the audio extra, a file already in the protocol's format (like the
            # bundled demo WAV) is still readable with the standard library.
            pcm = _protocol_wav(path)
            if pcm is None:
                raise
            return stack.enter_context(MemorySource(pcm))
    from audio_backends import Microphone

    return stack.enter_context(Microphone(device=_device(device)))


def _protocol_wav(path: str) -> bytes | None:
    """The PCM of a 16 kHz mono 16-bit WAV via the ``wave`` module, else None."""
    import wave

    try:
        with wave.open(path, "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
                return None
            return w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError):
        return None


def _open_sink(stack: ExitStack, path: str | None, device: str | None) -> AudioSink:
    if path is not None:
        return stack.enter_context(WavSink(path))
    from audio_backends import Speaker

    return stack.enter_context(Speaker(device=_device(device)))


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _connect(
    target: Target, args: argparse.Namespace, scenario: str | None
) -> AbstractAsyncContextManager[ClientSession]:
    if target.local:
        return connect_in_memory(agent_handler(load_setup(scenario)), target.request)
    from .. import trio as trio_transport

    return trio_transport.connect(target.endpoint, target.request, cafile=args.cafile)


async def _talk(
    args: argparse.Namespace,
    target: Target,
    *,
    input_path: str | None,
    output_path: str | None,
    events_path: str | None,
    record_path: str | None,
    scenario: str | None,
) -> int:
    with ExitStack() as stack:
        source = _open_source(stack, input_path, getattr(args, "input_device", None))
        sink = _open_sink(stack, output_path, getattr(args, "output_device", None))
        recorder = stack.enter_context(CallRecorder(record_path)) if record_path else None
        secret = target.request.public_key
        log = stack.enter_context(EventLog(events_path, secret=secret))
        view = make_view(plain=args.plain, secret=secret)
        stack.callback(view.close)
        origin = trio.current_time()
        last_level = {"user": -1.0, "agent": -1.0}
        total = getattr(source, "duration_s", None)

        def on_event(_t: float, event: Event) -> None:
            # One clock for every line (levels, errors, "finished" use it too), so the
            # file's "t" never goes backwards.
            t = trio.current_time() - origin
            log.write(t, event)
            view.event(t, event)

        def on_level(level: AudioLevel) -> None:
            t = trio.current_time() - origin
            view.level(level.source, level.rms_dbfs)
            if level.source == "user" and total:
                view.progress(min(1.0, t / total))
            if t - last_level[level.source] >= LEVEL_LOG_INTERVAL:
                last_level[level.source] = t
                log.write_dict(
                    t,
                    {
                        "event": "level",
                        "source": level.source,
                        "rms_dbfs": round(level.rms_dbfs, 1),
                        "peak_dbfs": round(level.peak_dbfs, 1),
                    },
                )

        try:
            async with _session(target, args, scenario) as session:
                origin = trio.current_time()  # "t" counts from the connection's opening
                outcome = await run_conversation(
                    session,
                    source,
                    sink,
                    on_event=on_event,
                    on_level=on_level,
                    chunk_ms=args.chunk_ms,
                    idle_timeout=args.idle_timeout,
                    max_duration=args.max_duration,
                    user_taps=[recorder.user] if recorder else (),
                    agent_taps=[recorder.agent] if recorder else (),
                )
        except MillisError as exc:
            log.write_dict(trio.current_time() - origin, {"event": "error", "message": str(exc)})
            raise
        log.write_dict(
            trio.current_time() - origin,
            {
                "event": "finished",
                "reason": outcome.reason,
                "sent_samples": outcome.sent_samples,
                "played_samples": outcome.played_samples,
                "agent_audio_bytes": log.agent_audio_bytes,
            },
        )
    return 0


@contextlib.asynccontextmanager
async def _session(
    target: Target, args: argparse.Namespace, scenario: str | None
) -> AsyncIterator[ClientSession]:
    async with _connect(target, args, scenario) as session:
        yield session
