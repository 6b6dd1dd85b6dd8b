"""The front door for applications: :class:`Conversation`.

One voice call with an agent, start to end: connect, wait for ``onready``, stream the
source at its pace, play the agent into the sink, hand events to your callbacks, end by
itself (see :func:`~transports.conversation.run_conversation` for the ending rules: the
server ends it, or the input is over and the agent was idle ``idle_timeout`` seconds, or
``max_duration`` passed), and report a :class:`ConversationResult`::

    from millis_proto import StartRequest
    from transports import Conversation

    conversation = Conversation(
        "ws://127.0.0.1:8080/millis",
        StartRequest(public_key=KEY, agent_id=AGENT),
        source="question.wav",           # any audio file, or an AudioSource / Microphone
        sink="reply.wav",                # a WAV path, or an AudioSink / Speaker
        on_transcript=lambda text: print("you:", text),
        on_response=lambda text: print("agent:", text),
    )
    result = conversation.wait_for_end()      # blocking; or: await conversation.run()
    print(result.reason, result.turn_latencies_ms)

``wait_for_end()`` runs the call on an event loop in a background thread (trio by
default); ``await conversation.run()`` runs it on yours (trio or asyncio). Callbacks run
on the event loop's thread and must not block.

Or iterate instead of (or besides) the callbacks, on your event loop, the way a session
is iterated::

    async with conversation:                  # the call starts
        async for event in conversation:      # every event, until the call is over
            if isinstance(event, Transcript) and event.is_final:
                print("you:", event.text)
    print(conversation.result.reason)

The events are those ``on_event`` gets, through a bounded queue (``max_unread_events``;
as for a session, when the application falls behind the oldest go and an
``EventsDropped`` says how many). Leaving the block hangs up if the call is still on
(``result.reason == "ended"``), as leaving a ``connect`` block closes the session; an
error of the call is raised by the iteration after the last event, or on leaving the
block if nobody iterated to the end. Errors are the ``MillisError`` family:
:class:`~millis_proto.ConnectionFailed` when the call cannot start, ``ConnectionLost`` /
``ConnectionClosedByServer`` when it ends abnormally, ``AudioFileError`` for the files.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from audio_backends.levels import AudioLevel
from audio_backends.protocols import AudioSink, AudioSource, LiveAudioSource
from millis_proto import (
    AnswerLatency,
    ConnectionClosed,
    Endpoint,
    Event,
    LocalProtocolError,
    ResponseText,
    StartRequest,
    Transcript,
)

from ._client import DEFAULT_READY_TIMEOUT, ConnectOptions
from ._queue import DEFAULT_MAX_QUEUED_EVENTS, EventQueue, check_count
from ._session import EventIterator
from .conversation import run_conversation
from .turn_latency import TurnLatencyMeter

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Conversation", "ConversationResult", "Line"]

#: Audio given as a path is opened with these (a file source needs the audio extra).
AudioPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One final line of the transcript: who said it (``"user"`` or ``"agent"``) and what."""

    speaker: str
    text: str


@dataclass(kw_only=True)
class ConversationResult:
    """What a finished :class:`Conversation` reports.

    ``reason`` is how it ended: ``"server_closed"`` (the server or the agent ended it),
    ``"idle"`` (the input was over and the agent idle), ``"max_duration"``, or ``"ended"``
    (:meth:`Conversation.end`). ``transcript`` holds the final lines of both sides in
    order; ``turn_latencies_ms`` the latency of each turn as heard, from the end of the
    user's speech to the first agent audio played (measured from the audio, see
    :mod:`transports.turn_latency`); ``latencies_ms`` the answer latency the server
    reported (``start_answering`` to its first audio frame); ``sent_samples`` /
    ``played_samples`` the user audio sent and the agent audio played.
    """

    reason: str
    session_id: str | None
    transcript: list[Line] = field(default_factory=list)
    turn_latencies_ms: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    sent_samples: int = 0
    played_samples: int = 0
    closed: ConnectionClosed | None = None


class Conversation:
    """One conversation with an agent; see the module docstring.

    ``source`` and ``sink`` are audio backends, or paths (an audio file to speak, a WAV
    file to write what the speaker would play), opened and closed by the conversation.
    ``on_event`` gets every event, ``on_transcript`` / ``on_response`` each final line of
    the user / the agent, ``on_level`` the audio levels. ``ready_timeout`` bounds the wait
    for ``onready``; ``max_unread_events`` the events waiting for ``async for`` (see the
    module docstring); ``options`` are those of ``connect``
    (:class:`~transports.ConnectOptions`). Nothing happens until :meth:`run`,
    :meth:`start`, :meth:`wait_for_end` or ``async with``; a conversation runs once.
    """

    def __init__(
        self,
        url: str | Endpoint,
        request: StartRequest,
        *,
        source: AudioSource | LiveAudioSource | AudioPath,
        sink: AudioSink | AudioPath,
        on_event: Callable[[Event], None] | None = None,
        on_transcript: Callable[[str], None] | None = None,
        on_response: Callable[[str], None] | None = None,
        on_level: Callable[[AudioLevel], None] | None = None,
        idle_timeout: float = 3.0,
        max_duration: float | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        chunk_ms: float = 20.0,
        backend: str = "trio",
        max_unread_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        **options: Unpack[ConnectOptions],
    ) -> None:
        self._url = url
        self._request = request
        self._source = source
        self._sink = sink
        self._on_event = on_event
        self._on_transcript = on_transcript
        self._on_response = on_response
        self._on_level = on_level
        self._idle_timeout = idle_timeout
        self._max_duration = max_duration
        self._ready_timeout = ready_timeout
        self._chunk_ms = chunk_ms
        self._backend = backend
        self._options = options
        check_count(max_unread_events, "max_unread_events")
        self._max_unread_events = max_unread_events
        self._scope: anyio.CancelScope | None = None
        self._ended_by_app = False
        self._future: Future[ConversationResult] | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._queue: EventQueue | None = None  # for ``async for``, once entered
        self._group: anyio.abc.TaskGroup | None = None
        self._error: Exception | None = None
        self._error_raised = False
        #: The result once the conversation has ended (``async with``), else ``None``.
        self.result: ConversationResult | None = None

    # --- async ------------------------------------------------------------------------------

    async def run(self) -> ConversationResult:
        """Hold the conversation on the running event loop (trio or asyncio) to its end."""
        from .anyio import connect

        result = ConversationResult(reason="server_closed", session_id=None)

        turns = TurnLatencyMeter(block_s=self._chunk_ms / 1000)

        def dispatch(loop_t: float, event: Event) -> None:
            turns.event(loop_t, event)
            # A final line with no text (a server may send one) adds nothing to say.
            if isinstance(event, (Transcript, ResponseText)) and event.is_final and event.text:
                speaker = "user" if isinstance(event, Transcript) else "agent"
                result.transcript.append(Line(speaker=speaker, text=event.text))
                callback = self._on_transcript if speaker == "user" else self._on_response
                if callback is not None:
                    callback(event.text)
            elif isinstance(event, AnswerLatency):
                result.latencies_ms.append(event.ms)
            if self._on_event is not None:
                self._on_event(event)
            if self._queue is not None:
                self._queue.put(event)

        def on_level(level: AudioLevel) -> None:
            measured = turns.feed(level)
            if measured is not None and measured.played_ms is not None:
                result.turn_latencies_ms.append(measured.played_ms)
            if self._on_level is not None:
                self._on_level(level)

        with ExitStack() as stack:
            source = _open_source(stack, self._source)
            sink = _open_sink(stack, self._sink)
            async with connect(self._url, self._request, **self._options) as session:
                with anyio.CancelScope() as self._scope:
                    if self._ended_by_app:
                        self._scope.cancel()
                    await session.wait_ready(self._ready_timeout)
                    result.session_id = session.session_id
                    outcome = await run_conversation(
                        session,
                        source,
                        sink,
                        on_event=dispatch,
                        on_level=on_level,
                        chunk_ms=self._chunk_ms,
                        idle_timeout=self._idle_timeout,
                        max_duration=self._max_duration,
                    )
                    result.reason = outcome.reason
                    result.sent_samples = outcome.sent_samples
                    result.played_samples = outcome.played_samples
                if self._scope.cancelled_caught:
                    result.reason = "ended"
            result.closed = session.closed
        return result

    async def __aenter__(self) -> Conversation:
        """Start the conversation in a task on the running event loop; iterate it for its
        events (see the module docstring)."""
        if self._queue is not None or self._future is not None:
            raise LocalProtocolError("a conversation runs once.")
        self._queue = EventQueue(self._max_unread_events)
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._run_for_iteration)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Hang up if the call is still on, wait for its end (the close handshake is
        bounded by ``disconnect_timeout``), and raise its error if it was not raised yet."""
        assert self._group is not None
        if self.result is None and self._error is None:
            self._ended_by_app = True
            self._cancel()
        # The task never raises (its error is kept for the iterator), so the group has
        # nothing to add to an exception of the block: that one propagates as it is.
        await self._group.__aexit__(None, None, None)
        if exc is None and self._error is not None and not self._error_raised:
            self._error_raised = True
            raise self._error

    def __aiter__(self) -> AsyncIterator[Event]:
        return EventIterator(self)

    async def next_event(self) -> Event | None:
        """The next event of a conversation started with ``async with``; ``None`` after
        the last one, or the conversation's error if it failed (on every later call too)."""
        if self._queue is None:
            raise LocalProtocolError("enter the conversation (async with) to read its events.")
        event = await self._queue.get()
        if event is None and self._error is not None:
            self._error_raised = True
            raise self._error
        return event

    async def _run_for_iteration(self) -> None:
        assert self._queue is not None
        try:
            self.result = await self.run()
        except Exception as exc:  # the MillisError family, or a callback's: for the reader
            self._error = exc
        finally:
            self._queue.end()

    # --- blocking -----------------------------------------------------------------------

    def start(self) -> Conversation:
        """Start the conversation on an event loop in a background thread; returns at once."""
        if self._queue is not None:
            raise LocalProtocolError("a conversation runs once.")
        if self._future is None:
            self._portal_cm = start_blocking_portal(self._backend)
            self._portal = self._portal_cm.__enter__()
            self._future = self._portal.start_task_soon(self.run)
        return self

    def wait_for_end(self, timeout: float | None = None) -> ConversationResult:
        """Start if needed, then wait until the conversation ends and return its result.

        Raises the conversation's error (``MillisError`` family), or :class:`TimeoutError`
        if ``timeout`` seconds passed first (the conversation goes on; call again, or
        :meth:`end` it).
        """
        self.start()
        assert self._future is not None
        try:
            self._future.exception(timeout)  # waits; the result or error is taken below
        except FuturesTimeout:
            raise TimeoutError(f"the conversation did not end within {timeout} s") from None
        self._stop_portal()
        return self._future.result()

    def end(self) -> None:
        """Hang up: stop sending and playing and close the session (its result says
        ``"ended"``). Call it from another thread than the conversation's (a callback
        cancels its own conversation by raising or by using :meth:`run` in a cancel
        scope); the close itself is bounded by ``disconnect_timeout``."""
        self._ended_by_app = True
        if self._portal is not None and self._future is not None and not self._future.done():
            self._portal.call(self._cancel)

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _stop_portal(self) -> None:
        cm, self._portal_cm = self._portal_cm, None
        if cm is not None:
            cm.__exit__(None, None, None)
        self._portal = None


def _open_source(
    stack: ExitStack, source: AudioSource | LiveAudioSource | AudioPath
) -> AudioSource | LiveAudioSource:
    if isinstance(source, (str, os.PathLike)):
        from audio_backends import FileSource

        return stack.enter_context(FileSource(source))
    return source


def _open_sink(stack: ExitStack, sink: AudioSink | AudioPath) -> AudioSink:
    if isinstance(sink, (str, os.PathLike)):
        from audio_backends import WavSink

        return stack.enter_context(WavSink(sink))
    return sink
