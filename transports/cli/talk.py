"""``millis-proto talk`` and ``demo``: one conversation, files valid on every way out."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, ExitStack

import anyio
import trio
import trio.testing

from audio_backends import (
    AudioDeviceError,
    AudioLevel,
    AudioSink,
    CallRecorder,
    MemorySource,
    WavSink,
)
from audio_backends.protocols import AudioSource, LiveAudioSource
from millis_proto import (
    SAMPLE_RATE,
    ConfigError,
    Event,
    MillisError,
    Ready,
    ReconnectPolicy,
    SessionEnded,
    StartRequest,
)

from .._client import ClientSession, ConnectOptions
from .._session import background
from ..conversation import Outcome, run_conversation
from ..examples import demo_scenario, demo_wav
from ..local_agent import agent_handler, load_setup, speech_fallback
from ..memory import connect_in_memory
from ..reconnect import Opener, ReconnectingSession, open_reconnecting
from ..turn_latency import TurnLatencyMeter
from .eventlog import EventLog
from .options import Bounds, Target, bounds_from, build_target, scenario_path
from .output import STDOUT, Lines, ensure_directory
from .view import View, make_view

#: Log a level line per source at most this often (blocks come every 20 ms).
LEVEL_LOG_INTERVAL = 0.1
#: Say "waiting for the server…" when it has not said ``onready`` after this long.
WAITING_NOTICE_S = 1.0


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
        allow_insecure=args.allow_insecure,
    )
    if args.chunk_ms <= 0:
        raise ConfigError("--chunk-ms must be positive.")
    if args.reconnect < 0:
        raise ConfigError("--reconnect must not be negative.")
    if args.fast and not (target.local and args.input and args.output):
        raise ConfigError("--fast needs the local agent, --input and --output.")
    args.bounds = bounds_from(args)
    return _run(
        args,
        target,
        input_path=args.input,
        output_path=args.output,
        events_path=args.events,
        record_path=args.record,
        scenario=scenario_path(args.scenario),
    )


def demo_command(args: argparse.Namespace) -> int:
    """Talk to the local agent with the bundled spoken WAV; write reply.wav and events.jsonl."""
    out = ensure_directory(args.out_dir, "--out-dir")
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
    args.cafile, args.allow_insecure, args.bounds = None, False, Bounds()
    return _run(
        args,
        target,
        input_path=str(demo_wav()),
        output_path=str(out / "reply.wav"),
        events_path=str(out / "events.jsonl"),
        record_path=None,
        scenario=str(demo_scenario()),
    )


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

    try:
        return stack.enter_context(Microphone(device=_device(device)))
    except AudioDeviceError as exc:
        raise AudioDeviceError(f"{exc} Pass --input FILE.wav to speak from a file.") from exc


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

    try:
        return stack.enter_context(Speaker(device=_device(device)))
    except AudioDeviceError as exc:
        raise AudioDeviceError(
            f"{exc} Pass --output FILE.wav to write the answer to a file."
        ) from exc


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _connect(
    target: Target, args: argparse.Namespace, scenario: str | None
) -> AbstractAsyncContextManager[ClientSession | ReconnectingSession]:
    opener: Opener
    if target.local:
        handler = agent_handler(load_setup(scenario))  # one setup: continuation works

        def opener(request: StartRequest) -> AbstractAsyncContextManager[ClientSession]:
            return connect_in_memory(handler, request)
    else:
        from .. import trio as trio_transport

        bounds: Bounds = args.bounds
        options: ConnectOptions = {
            **bounds.connect_options(),
            "cafile": args.cafile,
            "allow_insecure": args.allow_insecure,
        }

        def opener(request: StartRequest) -> AbstractAsyncContextManager[ClientSession]:
            return trio_transport.connect(target.endpoint, request, **options)

    attempts = getattr(args, "reconnect", 0)
    if attempts:
        return open_reconnecting(opener, target.request, ReconnectPolicy(max_attempts=attempts))
    return opener(target.request)


class _Stopper:
    """SIGINT, SIGTERM and SIGHUP end the call the same way, like Ctrl-C.

    During the conversation the first signal asks it to stop: the session is closed with
    the handshake, the files are finalized and the JSONL gets its ``closed`` line. Before
    the conversation (while connecting), or at a second signal, it is cancelled at once;
    the files are still finalized by their ``with`` blocks.
    """

    def __init__(self) -> None:
        self.stop = anyio.Event()
        self.scope = trio.CancelScope()
        self.signum: int | None = None
        self.conversing = False

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if self.signum is None:
                self.signum = signum
                self.stop.set()
                if self.conversing:
                    continue
            self.scope.cancel()

    def status(self) -> int:
        """Say why on stderr; the exit status is 128 + the signal's number (130, 143, 129)."""
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        what = "interrupted" if self.signum == signal.SIGINT else f"stopped by {name}"
        sys.stderr.write(f"millis-proto: {what}.\n")
        return 128 + self.signum


#: The signals that end a call like Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _human_output(*paths: str | None) -> Lines:
    """Where the lines for the person go: stdout, or stderr when stdout carries a file."""
    return Lines(sys.stderr if STDOUT in paths else sys.stdout)


def _notes_before(target: Target, scenario: str | None) -> list[str]:
    """What the person should know before the call starts (about the local agent)."""
    if not target.local:
        return []
    if scenario is None:
        return [
            "the local agent is an echo: it answers each turn with your own audio "
            "(pass --scenario FILE for scripted answers)"
        ]
    fallback = speech_fallback()
    return [fallback] if fallback else []


def _end_reason(outcome: Outcome, args: argparse.Namespace, agent_ended: bool) -> str:
    """Why the call ended, in words."""
    if outcome.reason == "idle":
        return (
            f"the input ended and the agent was idle for {args.idle_timeout:g} s (--idle-timeout)"
        )
    if outcome.reason == "max_duration":
        return f"it reached --max-duration {args.max_duration:g} s"
    if outcome.reason == "stopped":
        return "a signal stopped it"
    if agent_ended:
        return "the agent ended the session"
    code = outcome.closed.code if outcome.closed is not None else None
    return f"the server closed the connection (code {code})"


def _wrote(
    sink: AudioSink,
    recorder: CallRecorder | None,
    log: EventLog,
    *,
    output_path: str | None,
    events_path: str | None,
) -> list[str]:
    lines = []
    if output_path is not None and output_path != STDOUT and isinstance(sink, WavSink):
        seconds = sink.written_samples / SAMPLE_RATE
        lines.append(f"wrote {output_path} ({seconds:.1f} s: what the agent said, as played)")
    if recorder is not None and recorder.path != STDOUT:
        lines.append(f"wrote {recorder.path} (stereo call recording: you left, agent right)")
    if events_path is not None and events_path != STDOUT:
        lines.append(f"wrote {events_path} ({log.lines} events, one JSON object per line)")
    return lines


async def _talk(args: argparse.Namespace, target: Target, **paths: str | None) -> int:
    stopper = _Stopper()
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stopper.watch, signals)
            try:
                status = await _converse(args, target, stopper, **paths)
            finally:
                nursery.cancel_scope.cancel()
    return stopper.status() if stopper.signum is not None else status


async def _converse(
    args: argparse.Namespace,
    target: Target,
    stopper: _Stopper,
    *,
    input_path: str | None,
    output_path: str | None,
    events_path: str | None,
    record_path: str | None,
    scenario: str | None,
) -> int:
    human = _human_output(output_path, events_path, record_path)
    with ExitStack() as stack:
        source = _open_source(stack, input_path, getattr(args, "input_device", None))
        sink = _open_sink(stack, output_path, getattr(args, "output_device", None))
        recorder = stack.enter_context(CallRecorder(record_path)) if record_path else None
        secret = target.request.public_key
        log = stack.enter_context(EventLog(events_path, secret=secret))
        origin = trio.current_time()
        view: View = make_view(
            plain=args.plain,
            secret=secret,
            out=human,
            clock=lambda: trio.current_time() - origin,
        )
        stack.callback(view.close)
        last_level = {"user": -1.0, "agent": -1.0}
        total = getattr(source, "duration_s", None)
        turns = TurnLatencyMeter(block_s=args.chunk_ms / 1000)
        ready = trio.CancelScope()
        agent_ended = False
        for note in _notes_before(target, scenario):
            view.note(0.0, note)

        def on_event(loop_t: float, event: Event) -> None:
            nonlocal agent_ended
            turns.event(loop_t, event)  # on the loop's clock, as the audio levels are
            # One clock for every line (levels, errors, "finished" use it too), so the
            # file's "t" never goes backwards.
            t = trio.current_time() - origin
            if isinstance(event, Ready):
                ready.cancel()
            agent_ended = agent_ended or isinstance(event, SessionEnded)
            log.write(t, event)
            view.event(t, event)

        def on_level(level: AudioLevel) -> None:
            t = trio.current_time() - origin
            view.level(level.source, level.rms_dbfs)
            if level.source == "user" and total:
                view.progress(min(1.0, t / total))
            measured = turns.feed(level)
            if measured is not None and measured.played_ms is not None:
                view.turn_latency(t, measured.played_ms / 1000)
                log.write(t, measured)
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

        async def announce_waiting() -> None:
            with ready:
                await trio.sleep(WAITING_NOTICE_S)
                view.note(trio.current_time() - origin, "waiting for the server…")

        outcome: Outcome | None = None
        try:
            with stopper.scope:
                async with background() as tasks:
                    tasks.start_soon(announce_waiting)
                    async with _connect(target, args, scenario) as session:
                        origin = trio.current_time()  # "t" counts from the connection's opening
                        stopper.conversing = True
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
                            stop=stopper.stop,
                        )
                    ready.cancel()
        except MillisError as exc:
            if stopper.signum is None:
                log.write_dict(
                    trio.current_time() - origin, {"event": "error", "message": str(exc)}
                )
                raise
            # An error while a signal stopped us (say, a close the server did not answer):
            # the signal is what ends the call.
        t = trio.current_time() - origin
        if outcome is None:  # cancelled by a signal before or during the conversation
            assert stopper.signum is not None
            log.write_dict(
                t, {"event": "interrupted", "signal": signal.Signals(stopper.signum).name}
            )
            return 128 + stopper.signum
        log.write_dict(
            t,
            {
                "event": "finished",
                "reason": outcome.reason,
                "sent_samples": outcome.sent_samples,
                "played_samples": outcome.played_samples,
                "agent_audio_bytes": log.agent_audio_bytes,
                **_reconnect_counts(session),
            },
        )
        view.note(t, f"call ended: {_end_reason(outcome, args, agent_ended)}")
    # After the files are closed (finalized): what the person can now open.
    for line in _wrote(sink, recorder, log, output_path=output_path, events_path=events_path):
        human.write(line)
    return 0


def _reconnect_counts(session: ClientSession | ReconnectingSession) -> dict[str, int]:
    """For the ``finished`` line of a reconnecting call: what the gaps cost."""
    if not isinstance(session, ReconnectingSession):
        return {}
    return {
        "reconnects": session.reconnects,
        "dropped_playback_samples": session.dropped_playback_samples,
        "dropped_user_samples": session.dropped_user_samples,
    }
