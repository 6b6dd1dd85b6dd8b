"""A Locust ``User`` whose every user is a real paced Millis call: ``MillisUser``.

Locust runs its users as gevent greenlets and monkey-patches the standard library, so
this module uses nothing but plain blocking sockets (``socket``, ``ssl``), which gevent
makes cooperative, and drives the Sans-I/O :class:`~millis_proto.ClientConnection`
directly: no asyncio, no trio, no threads. One greenlet per call does everything, in one
loop:

* wait on the socket until the next deadline — the next 20 ms audio frame, the core's
  timer (``get_timer``: close reply, liveness), the connect or call bound — and feed what
  arrived to the core (``receive_data``);
* when a frame is due, send it (the input WAV on its real-time pace, then silence) and
  pull the same amount of playback, like a phone;
* fire due timers (``handle_timer``), read the core's events, write ``data_to_send()``.

Each connect (TCP + TLS + handshake + ``onready``), turn (end of our speech -> first agent
audio), ping and whole call is reported through Locust's ``request`` event
(``request_type="millis"``), so Locust's web UI, CSV, charts and master/worker
distribution work unchanged. A failed connect or call is reported with its exception.

Install with the ``locust`` extra (``pip install 'millis-proto[locust]'``); see
``examples/locustfile.py``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any, ClassVar

from locust import User, task
from locust.exception import StopUser

from millis_proto import (
    SAMPLE_RATE,
    AgentState,
    AgentStateChanged,
    ClientConfig,
    ClientConnection,
    ConnectionFailed,
    FailureKind,
    MillisError,
    Pong,
    Ready,
    StartRequest,
)
from millis_proto.pcm import ms_to_samples

from ._client import client_ssl_context
from .cli.options import build_target
from .load.speech import read_speech, speech_end

__all__ = ["REQUEST_TYPE", "MillisUser"]

#: The ``request_type`` of every request this user reports.
REQUEST_TYPE = "millis"
#: Most bytes read from the socket at once.
RECEIVE_BYTES = 65536
_DEMO_WAV = Path(__file__).parent / "cli" / "data" / "demo.wav"


class MillisUser(User):
    """A caller: each task run is one real call to ``host`` (a ``ws://``/``wss://`` URL).

    Set the class attributes in a subclass (or leave the defaults): ``audio_path`` — what
    the caller says (default: a bundled spoken question); ``chunk_ms`` — uplink frame;
    ``idle_timeout`` — hang up once the agent has answered our speech and been idle this
    long; ``answer_timeout`` — or when no answer came this long after our speech (the
    ``turn`` then fails); ``max_call_seconds``, ``connect_timeout``; ``ping_interval`` —
    a Millis ping this often. The start request comes from :meth:`start_request` (by default: the
    ``MILLIS_PUBLIC_KEY`` / ``MILLIS_AGENT_ID`` environment variables, or the local agent's
    on a loopback host).
    """

    abstract = True
    host = "ws://127.0.0.1:8080/millis"
    audio_path: ClassVar[str | os.PathLike[str]] = _DEMO_WAV
    chunk_ms: ClassVar[float] = 20.0
    idle_timeout: ClassVar[float] = 1.0
    answer_timeout: ClassVar[float] = 10.0
    max_call_seconds: ClassVar[float] = 60.0
    connect_timeout: ClassVar[float] = 10.0
    ping_interval: ClassVar[float] = 1.0
    cafile: ClassVar[str | None] = None

    _audio_cache: ClassVar[dict[str, tuple[bytes, int]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.request = self.start_request()
        except MillisError as exc:
            raise StopUser(str(exc)) from None
        key = os.fspath(self.audio_path)
        if key not in self._audio_cache:
            pcm = read_speech(key)
            self._audio_cache[key] = (pcm, speech_end(pcm))
        self.audio, self.speech_end_samples = self._audio_cache[key]

    def start_request(self) -> StartRequest:
        """The ``initiate`` each call sends; override for per-user agents or metadata."""
        target = build_target(
            endpoint=self.host,
            public_key=None,
            agent_id=os.environ.get("MILLIS_AGENT_ID"),
            agent_config=None,
            metadata=None,
            include_metadata_in_prompt=False,
            session_id=None,
        )
        return target.request

    @task
    def call(self) -> None:
        """Place one call and report it."""
        _Call(self).run()

    def report(
        self,
        name: str,
        start: float,
        exception: BaseException | None = None,
        *,
        ms: float | None = None,
    ) -> None:
        """Fire Locust's ``request`` event for ``name`` (connect, turn, ping, call)."""
        elapsed = (time.monotonic() - start) * 1000 if ms is None else ms
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=elapsed,
            response_length=0,
            exception=exception,
            context={},
        )


class _Call:
    """One call's socket loop; see the module docstring."""

    def __init__(self, user: MillisUser) -> None:
        self.user = user
        self.frame = ms_to_samples(user.chunk_ms)
        self.start = time.monotonic()
        self.conn = ClientConnection(
            user.request,
            user.host or MillisUser.host,
            ClientConfig(emit_audio_events=False),
            wall_clock_offset=time.time() - time.monotonic(),
        )

    def _open(self) -> socket.socket:
        endpoint = self.conn.endpoint
        context = client_ssl_context(endpoint, self.user.cafile)
        try:
            sock = socket.create_connection(
                (endpoint.host, endpoint.port), timeout=self.user.connect_timeout
            )
        except socket.gaierror as exc:
            raise ConnectionFailed(f"DNS lookup failed: {exc}", kind=FailureKind.DNS) from exc
        except ConnectionRefusedError as exc:
            raise ConnectionFailed(f"refused: {exc}", kind=FailureKind.REFUSED) from exc
        except TimeoutError as exc:
            raise ConnectionFailed("TCP connect timed out", kind=FailureKind.TIMEOUT) from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect: {exc}", kind=FailureKind.NETWORK) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is None:
            return sock
        try:
            return context.wrap_socket(sock, server_hostname=endpoint.host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise ConnectionFailed(f"TLS failed: {exc}", kind=FailureKind.TLS) from exc

    def run(self) -> None:
        user = self.user
        try:
            sock = self._open()
        except ConnectionFailed as exc:
            user.report("connect", self.start, exc)
            user.report("call", self.start, exc)
            return
        try:
            error = self._loop(sock)
        finally:
            sock.close()
        user.report("call", self.start, error)

    def _loop(self, sock: socket.socket) -> MillisError | None:
        """Run the call until the connection is closed; returns its error, if any."""
        user, conn, n = self.user, self.conn, self.frame
        audio, input_samples = user.audio, len(user.audio) // 2
        silence = bytes(2 * n)
        ready_at = math.nan
        connect_by = self.start + user.connect_timeout
        hang_up_by = self.start + user.max_call_seconds
        next_frame = math.inf
        next_ping = math.inf
        position = 0
        speech_end_at = math.inf
        input_sent_at = math.inf
        turn_pending = self.user.speech_end_samples > 0
        state, idle_since = AgentState.IDLE, -math.inf
        failure: MillisError | None = None
        while conn.closed is None:
            now = time.monotonic()
            for event in conn.events():
                if isinstance(event, Ready) and math.isnan(ready_at):
                    ready_at = now
                    user.report("connect", self.start)
                    next_frame = now + n / SAMPLE_RATE
                    next_ping = now + user.ping_interval
                elif isinstance(event, AgentStateChanged):
                    state, idle_since = event.state, now
                    if state is AgentState.ANSWER and turn_pending and now >= speech_end_at:
                        turn_pending = False
                        user.report("turn", speech_end_at)
                elif isinstance(event, Pong) and event.rtt_ms is not None:
                    user.report("ping", now, ms=event.rtt_ms)
            if math.isnan(ready_at) and now >= connect_by and not conn.close_sent:
                failure = ConnectionFailed(
                    f"no onready within {user.connect_timeout:g} s", kind=FailureKind.TIMEOUT
                )
                user.report("connect", self.start, failure)
                conn.close(1000, now=now)
            if now >= next_frame and conn.is_open:
                chunk = audio[2 * position : 2 * (position + n)]
                conn.send_audio(chunk.ljust(2 * n, b"\0") if chunk else silence, now)
                played = conn.pull_playback(n, now)
                position += n
                next_frame += n / SAMPLE_RATE
                if position >= user.speech_end_samples and speech_end_at == math.inf:
                    speech_end_at = now
                if position >= input_samples and input_sent_at == math.inf:
                    input_sent_at = now
                if now >= next_ping:
                    conn.send_ping(now)
                    next_ping = now + user.ping_interval
                quiet = state is AgentState.IDLE and not played.real_samples
                # Done once the agent answered our speech (or had its chance) and went quiet.
                answered = not turn_pending or now - speech_end_at >= user.answer_timeout
                if quiet and answered and now - max(idle_since, input_sent_at) >= user.idle_timeout:
                    conn.close(1000, now=now)
            if now >= hang_up_by and conn.is_open:
                conn.close(1000, now=now)
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
            if data := conn.data_to_send():
                try:
                    sock.sendall(data)
                except OSError as exc:
                    conn.abort(f"connection lost: {exc}", time.monotonic())
                    continue
            wake = min(next_frame, hang_up_by, timer if timer is not None else math.inf)
            if math.isnan(ready_at):
                wake = min(wake, connect_by)
            self._receive(sock, wake)
        if data := conn.data_to_send():  # the reply to the server's close frame
            with contextlib.suppress(OSError):  # it is closed either way
                sock.sendall(data)
        error = failure or conn.closed.error()
        if math.isnan(ready_at) and failure is None:
            # Closed before onready (a rejected handshake, a refused initiate, a drop).
            user.report("connect", self.start, error or MillisError("closed before onready"))
        if turn_pending and speech_end_at != math.inf and error is None:
            # We spoke, hung up after the idle timeout, and no answer ever came.
            user.report("turn", speech_end_at, MillisError("the agent did not answer"))
        return error

    def _receive(self, sock: socket.socket, wake: float) -> None:
        conn = self.conn
        wait = wake - time.monotonic()
        if wait <= 0:
            return
        sock.settimeout(wait)
        try:
            data = sock.recv(RECEIVE_BYTES)
        except TimeoutError:
            return
        except OSError as exc:
            conn.abort(f"connection lost: {exc}", time.monotonic())
            return
        # A RemoteProtocolError leaves the connection closed with the reason: the loop ends.
        with contextlib.suppress(MillisError):
            conn.receive_data(data or None, time.monotonic())
