"""The client side shared by the trio and anyio transports: the session object and connect.

A transport only supplies ``open_stream(endpoint, ssl_context)``, which opens TCP (and
TLS) and returns an anyio byte stream; everything else — the connect timeout, the error
mapping, the WebSocket handshake, the reader and the close — is here, once.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypedDict

import anyio
import anyio.abc

from millis_proto import (
    ABSENT,
    ClientConfig,
    ClientConnection,
    ConfigError,
    Connected,
    ConnectionClosed,
    ConnectionClosedByServer,
    ConnectionFailed,
    ConnectionRejected,
    Endpoint,
    Event,
    FailureKind,
    MillisError,
    PlaybackChunk,
    Ready,
    RemoteProtocolError,
    StartRequest,
    parse_endpoint,
)
from millis_proto._frozen import frozen_dataclass
from millis_proto.pcm import Buffer

from ._errors import STREAM_ERRORS, connect_failure, redact, redacting, sentence
from ._queue import DEFAULT_MAX_QUEUED_EVENTS, check_count
from ._session import WireSession, check_timeout, close_forcefully, running

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = [
    "DEFAULT_MAX_SEND_BACKLOG",
    "DEFAULT_WRITE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "AnyioSession",
    "DEFAULT_READY_TIMEOUT",
    "ClientSession",
    "ConnectSettings",
    "ConnectOptions",
    "OpenStream",
    "client_ssl_context",
    "connect_settings",
    "open_failure",
    "timeout_failure",
    "check_cleartext",
    "is_loopback",
    "open_client",
    "session_config",
]

#: Default bound of a write that makes no progress, in seconds.
DEFAULT_WRITE_TIMEOUT = 10.0
#: Default bytes waiting for the writer above which user audio is dropped (~2 s of audio).
DEFAULT_MAX_SEND_BACKLOG = 64 * 1024
#: Default bound of TCP connect + TLS handshake + WebSocket handshake, in seconds.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Default bound of :meth:`ClientSession.wait_ready`, in seconds.
DEFAULT_READY_TIMEOUT = 10.0
#: How much of a handshake rejection body is quoted in the error message.
_REJECT_QUOTE_CHARS = 200

#: Opens TCP (and TLS when a context is given) to the endpoint.
OpenStream = Callable[[Endpoint, "ssl.SSLContext | None"], Awaitable[anyio.abc.ByteStream]]


class ConnectOptions(TypedDict, total=False):
    """Keyword options of ``connect`` (every one optional).

    * ``config`` — :class:`~millis_proto.ClientConfig` of the client machine.
    * ``cafile`` — a PEM file of extra CA certificates to trust (``wss://`` only). The
      system's CAs are trusted too; ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured.
    * ``ssl_context`` — a ready ``ssl.SSLContext`` instead (``wss://`` only).
    * ``connect_timeout`` — seconds for TCP + TLS + WebSocket handshake (default 10).
    * ``disconnect_timeout`` — seconds for the close handshake; overrides
      ``config.disconnect_timeout`` (default 5).
    * ``max_message_bytes`` — largest incoming message; larger closes with 1009; overrides
      ``config.max_message_bytes`` (1 MiB).
    * ``max_queued_events`` — bound of the event queue (default 4096; see
      :mod:`transports._queue` for what happens when it is full).
    * ``wall_clock_offset`` — epoch seconds minus the event loop's clock, for the
      wall-clock stamps of Millis pings; measured at connect when not given. A run in
      virtual time that must repeat byte for byte passes a fixed value.
    * ``write_timeout`` — seconds a write may make no progress before the connection
      counts as lost (``ConnectionLost``; default 10).
    * ``max_send_backlog`` — bytes waiting to be written above which user audio is
      dropped, counted and reported (``AudioDropped``) instead of queued (default 64 KiB;
      the native sessions: trio, asyncio and ``transports.anyio.connect``; a session on
      anyio's streams, ``connect_stream`` and ``connect_generic``, waits for each write).
    * ``allow_insecure`` — allow plain ``ws://`` to a host that is not loopback (the
      public key then crosses the network in cleartext); refused by default.
    """

    config: ClientConfig | None
    cafile: str | os.PathLike[str] | None
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    disconnect_timeout: float | None
    max_message_bytes: int | None
    max_queued_events: int
    wall_clock_offset: float | None
    write_timeout: float
    max_send_backlog: int
    allow_insecure: bool


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ``::1`` (no lookup)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    import ipaddress  # here: ~0.3 ms of import time only ws:// URLs need

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_cleartext(endpoint: Endpoint, *, allow_insecure: bool) -> None:
    """Refuse ``ws://`` to a host that is not loopback unless ``allow_insecure``.

    The start request carries the public key, so over plain ``ws://`` anyone on the path
    can read it. Raises :class:`~millis_proto.ConfigError` before any I/O.
    """
    if endpoint.secure or allow_insecure or is_loopback(endpoint.host):
        return
    raise ConfigError(
        f"refusing plain ws:// to {endpoint.host}: the public key would cross the network "
        "unencrypted; use wss://, or allow it explicitly (--allow-insecure, or "
        "allow_insecure=True)."
    )


class ClientSession(ABC):
    """A live Millis session: what every transport's ``connect`` gives.

    Send with :meth:`send_audio`, :meth:`send_message`, :meth:`send_ping`; read typed
    events with ``async for event in session`` (or :meth:`next_event`); feed a speaker
    with :meth:`pull_playback`; :meth:`aclose` ends it with the close handshake. The
    transports implement it natively (:class:`transports.trio.TrioSession`,
    :class:`transports.asyncio.AsyncioSession`, which ``transports.anyio.connect`` opens
    on the running backend) or over anyio streams (:class:`AnyioSession`, for
    ``transports.anyio.connect_stream`` and ``connect_generic``).
    """

    #: The core's connection (agent state, playback buffer, counters); read-only use.
    connection: ClientConnection
    #: The same object as :attr:`connection` (the name older code used).
    client: ClientConnection
    _ready: bool  # onready arrived
    _ready_or_closed: Any  # an event set on onready or at the end (the loop's own kind)
    _connected: bool  # the WebSocket handshake completed
    _rejection: ConnectionRejected | None  # the server refused the handshake

    def _note(self, event: Event) -> None:
        """Keep what the session itself needs from an event of the core's, as it passes."""
        if isinstance(event, Connected):
            self._connected = True
        elif isinstance(event, ConnectionRejected):
            self._rejection = event
        elif isinstance(event, Ready):
            self._ready = True
            self._ready_or_closed.set()

    @abstractmethod
    def _terminal_error(self) -> MillisError | None:
        """The error a finished session raises from its iterator and send methods."""

    @property
    def session_id(self) -> str | None:
        """The server's session id from ``onready`` (keep it for session continuation)."""
        return self.connection.session_id

    async def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> str | None:
        """Wait until the server's ``onready`` has arrived; return the session id.

        ``connect`` does not wait for it: it returns once the WebSocket is open and
        ``initiate`` is sent. Returns at once if ``onready`` already came (the event stays
        in the stream for the iterator). Raises :class:`ConnectionFailed` with kind
        ``TIMEOUT`` if it does not come within ``timeout`` seconds (the session stays
        open), the session's error if it ends abnormally first, and
        :class:`~millis_proto.ConnectionClosedByServer` if it ends normally first.
        """
        check_timeout(timeout, "timeout")
        with anyio.move_on_after(timeout):
            await self._ready_or_closed.wait()
        if self._ready:
            return self.session_id
        closed = self.connection.closed
        endpoint = self.connection.endpoint
        where = f"{endpoint.host}:{endpoint.port}"
        if closed is None:
            raise ConnectionFailed(
                f"The server at {where} did not say onready within {timeout:g} s.",
                kind=FailureKind.TIMEOUT,
            )
        error = self._terminal_error()
        if error is not None:
            raise error
        raise ConnectionClosedByServer(
            f"The session with {where} ended (code {closed.code}) before the server said onready.",
            code=closed.code,
            reason=closed.reason,
        )

    @property
    @abstractmethod
    def closed(self) -> ConnectionClosed | None:
        """The core's ``ConnectionClosed`` event once the WebSocket is closed."""

    @property
    @abstractmethod
    def dropped_events(self) -> int:
        """Events dropped so far because the application read too slowly."""

    @abstractmethod
    async def send_audio(self, pcm: Buffer) -> None:
        """Send user audio: s16le, 16 kHz, mono, any length."""

    @abstractmethod
    async def flush_audio(self) -> None:
        """Send the short last frame the re-chunker holds (``ClientConfig.chunk_ms``)."""

    def mute(self) -> None:
        """Send zeros instead of the application's audio, at the same cadence."""
        self.connection.mute()

    def unmute(self) -> None:
        """Send the application's audio again."""
        self.connection.unmute()

    @abstractmethod
    async def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method": ..., "data": ...}`` message (``data`` optional)."""

    @abstractmethod
    async def send_ping(self) -> None:
        """Send a Millis ``ping``; its ``pong`` arrives as a ``Pong`` event with ``rtt_ms``."""

    @abstractmethod
    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        """Take exactly ``n_samples`` samples for the speaker (zeros while paused or empty)."""

    @abstractmethod
    async def next_event(self) -> Event | None:
        """Wait for the next event; ``None`` when the session has ended normally."""

    @abstractmethod
    def events(self) -> AsyncIterator[Event]:
        """Iterate over the events (see :meth:`next_event`); the session is iterable too."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @abstractmethod
    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket with the close handshake (bounded); idempotent."""


class AnyioSession(WireSession, ClientSession):
    """A live Millis session over a real (or in-memory) connection.

    Send with :meth:`send_audio`, :meth:`send_message`, :meth:`send_ping`; read typed
    events with ``async for event in session`` (or :meth:`next_event`); feed a speaker
    with :meth:`pull_playback`. Agent audio never waits for the application: it goes to
    the playback buffer of the core connection (:attr:`connection`, also :attr:`client`).

    How it ends: the event stream's last event is ``ConnectionClosed``. After it, iteration
    stops if the close was normal (``ConnectionClosed.normal``: one we started, or
    1000/1001/1005 from the server), and otherwise raises the core's
    ``ConnectionClosed.error()``: :class:`ConnectionLost` (no close handshake, 1006 — also
    when the server stopped answering), :class:`ConnectionClosedByServer` (the server
    closed with another code) or :class:`RemoteProtocolError` (the server broke the
    WebSocket framing). The send methods raise the same error when their write fails
    or the session had already ended abnormally; after a normal end they raise
    :class:`LocalProtocolError`.

    Use it from the event loop's thread only.
    """

    _raises_on_abnormal_end = True

    def __init__(
        self,
        conn: ClientConnection,
        stream: anyio.abc.ByteStream,
        *,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    ) -> None:
        super().__init__(
            conn,
            stream,
            disconnect_timeout=conn.config.disconnect_timeout,
            max_queued_events=max_queued_events,
        )
        #: The core's connection (agent state, playback buffer, counters); read-only use.
        self.connection = conn
        #: The same object as :attr:`connection` (the name older code used).
        self.client = conn

    async def send_audio(self, pcm: Buffer) -> None:
        """Send user audio: s16le, 16 kHz, mono, any length (see ``MessageClient.send_audio``).

        Returns once the bytes are written to the stream. Cancelling it mid-write breaks
        the session (part of a frame may be on the wire).
        """
        self._check_sendable()
        self.connection.send_audio(pcm, self._now())
        await self._push()

    async def flush_audio(self) -> None:
        """Send the short last frame the re-chunker holds (``ClientConfig.chunk_ms``)."""
        self._check_sendable()
        self.connection.flush_audio(self._now())
        await self._push()

    async def send_message(self, method: str, data: Any = ABSENT) -> None:
        """Send a custom ``{"method": ..., "data": ...}`` message (``data`` optional).

        Raises :class:`~millis_proto.ConfigError` for a bad method or unserializable data.
        """
        self._check_sendable()
        self.connection.send_message(method, data)
        await self._push()

    async def send_ping(self) -> None:
        """Send a Millis ``ping``; its ``pong`` arrives as a ``Pong`` event with ``rtt_ms``."""
        self._check_sendable()
        self.connection.send_ping(self._now())
        await self._push()

    def pull_playback(self, n_samples: int) -> PlaybackChunk:
        """Take exactly ``n_samples`` samples for the speaker (zeros while paused or empty).

        The core's ``pull_playback`` with the event loop's clock as ``now``; the events it
        reports (``PlaybackLatency``, ``PlaybackFinished``) join the event stream at once.
        Still works after the session ended, so a goodbye can be played out (the event
        stream has finished by then, so those events are not delivered).
        """
        chunk = self.connection.pull_playback(n_samples, self._now())
        self._pump()
        return chunk

    def _open_failure(self) -> ConnectionFailed:
        """Why the opening handshake ended without an open WebSocket."""
        return open_failure(self.connection, self._rejection)


def open_failure(conn: ClientConnection, rejection: ConnectionRejected | None) -> ConnectionFailed:
    """Why the opening handshake ended without an open WebSocket (``rejection``: the
    server's refusal, if it sent one)."""
    endpoint = conn.endpoint
    where = f"{endpoint.host}:{endpoint.port}"
    if rejection is not None:
        status = rejection.status_code
        body = redact(rejection.body.decode("utf-8", "replace"), conn.request.public_key)
        quote = " ".join(body.split())[:_REJECT_QUOTE_CHARS]
        return ConnectionFailed(
            f"The server at {where} rejected the WebSocket handshake with HTTP {status}"
            + (f" ({quote})." if quote else "."),
            kind=FailureKind.HANDSHAKE_REJECTED,
            status_code=status,
        )
    closed = conn.closed
    reason = closed.reason if closed is not None else "no reason"
    return ConnectionFailed(
        f"The server at {where} ended the connection before the WebSocket handshake "
        f"completed ({reason}).",
        kind=FailureKind.NETWORK,
    )


def timeout_failure(endpoint: Endpoint, *, connected: bool, timeout: float) -> ConnectionFailed:
    """``connect_timeout`` passed: before the TCP/TLS connection (``connected`` False) or
    during the WebSocket handshake."""
    what = "WebSocket handshake" if connected else "TCP/TLS connection"
    return ConnectionFailed(
        f"The {what} to {endpoint.host}:{endpoint.port} did not complete within {timeout:g} s.",
        kind=FailureKind.TIMEOUT,
    )


def client_ssl_context(
    endpoint: Endpoint,
    cafile: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ssl.SSLContext | None:
    """The TLS context for ``endpoint``: ``None`` for ``ws://``.

    ``ssl.create_default_context()`` verifies certificates and host names and reads the
    system CAs (so ``SSL_CERT_FILE`` works); ``cafile`` adds CAs to those.
    """
    if not endpoint.secure:
        if cafile is not None or ssl_context is not None:
            raise ConfigError(
                f"cafile and ssl_context need a wss:// URL, and {endpoint.url!r} is ws://."
            )
        return None
    if ssl_context is not None:
        if cafile is not None:
            raise ConfigError("give cafile or ssl_context, not both.")
        return ssl_context
    context = ssl.create_default_context()
    if cafile is not None:
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"the CA file {os.fspath(cafile)!r} could not be read ({exc})."
            ) from None
    return context


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class ConnectSettings:
    """The checked ``connect`` options, as every transport uses them."""

    config: ClientConfig
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    max_queued_events: int
    write_timeout: float
    max_send_backlog: int
    wall_clock_offset: float | None


def connect_settings(endpoint: Endpoint, options: ConnectOptions) -> ConnectSettings:
    """Check ``connect``'s options (:class:`ConnectOptions`) before any I/O.

    Raises :class:`~millis_proto.ConfigError` naming the bad option.
    """
    unknown = set(options) - set(ConnectOptions.__annotations__)
    if unknown:
        raise ConfigError(f"unknown connect option {sorted(unknown)[0]!r}.")
    check_cleartext(endpoint, allow_insecure=options.get("allow_insecure", False))
    connect_timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    check_timeout(connect_timeout, "connect_timeout")
    write_timeout = options.get("write_timeout", DEFAULT_WRITE_TIMEOUT)
    check_timeout(write_timeout, "write_timeout")
    max_queued_events = options.get("max_queued_events", DEFAULT_MAX_QUEUED_EVENTS)
    check_count(max_queued_events, "max_queued_events")
    max_send_backlog = options.get("max_send_backlog", DEFAULT_MAX_SEND_BACKLOG)
    check_count(max_send_backlog, "max_send_backlog")
    config = session_config(
        options.get("config"),
        disconnect_timeout=options.get("disconnect_timeout"),
        max_message_bytes=options.get("max_message_bytes"),
    )
    return ConnectSettings(
        config=config,
        ssl_context=client_ssl_context(endpoint, options.get("cafile"), options.get("ssl_context")),
        connect_timeout=connect_timeout,
        max_queued_events=max_queued_events,
        write_timeout=write_timeout,
        max_send_backlog=max_send_backlog,
        wall_clock_offset=options.get("wall_clock_offset"),
    )


@asynccontextmanager
async def open_client(
    url: str | Endpoint,
    request: StartRequest,
    open_stream: OpenStream,
    *,
    config: ClientConfig | None = None,
    cafile: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float | None = None,
    max_message_bytes: int | None = None,
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
    wall_clock_offset: float | None = None,
    write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    max_send_backlog: int = DEFAULT_MAX_SEND_BACKLOG,
    allow_insecure: bool = False,
) -> AsyncIterator[ClientSession]:
    """Connect, run the session around the body, close it on the way out.

    Raises :class:`~millis_proto.ConfigError` before any I/O for bad arguments (and for
    plain ``ws://`` to a host that is not loopback, unless ``allow_insecure``) and
    :class:`ConnectionFailed` (with its ``kind``) when the session cannot be opened.
    """
    # A message may quote the URL, a rejection body or a close reason: never the key.
    with redacting(getattr(request, "public_key", None)):
        endpoint = url if isinstance(url, Endpoint) else parse_endpoint(url)
        check_cleartext(endpoint, allow_insecure=allow_insecure)
        check_timeout(connect_timeout, "connect_timeout")
        check_count(max_queued_events, "max_queued_events")
        check_timeout(write_timeout, "write_timeout")
        check_count(max_send_backlog, "max_send_backlog")
        config = session_config(
            config, disconnect_timeout=disconnect_timeout, max_message_bytes=max_message_bytes
        )
        context = client_ssl_context(endpoint, cafile, ssl_context)
        if wall_clock_offset is None:
            wall_clock_offset = time.time() - anyio.current_time()
        conn = ClientConnection(
            request, endpoint, config, wall_clock_offset=wall_clock_offset, mask_entropy=os.urandom
        )
        session = await _open_session(
            conn,
            lambda: open_stream(endpoint, context),
            connect_timeout=connect_timeout,
            max_queued_events=max_queued_events,
        )
        async with running(session):
            yield session


def session_config(
    config: ClientConfig | None,
    *,
    disconnect_timeout: float | None = None,
    max_message_bytes: int | None = None,
) -> ClientConfig:
    """``config`` (or the default) with the ``connect`` options that override it."""
    if config is None:
        config = ClientConfig()
    elif not isinstance(config, ClientConfig):
        raise ConfigError("config must be a ClientConfig.")
    changes: dict[str, Any] = {}
    if disconnect_timeout is not None:
        check_timeout(disconnect_timeout, "disconnect_timeout")
        changes["disconnect_timeout"] = disconnect_timeout
    if max_message_bytes is not None:
        check_count(max_message_bytes, "max_message_bytes")
        changes["max_message_bytes"] = max_message_bytes
    return dataclasses.replace(config, **changes) if changes else config


async def _open_session(
    conn: ClientConnection,
    open_stream: Callable[[], Awaitable[anyio.abc.ByteStream]],
    *,
    connect_timeout: float,
    max_queued_events: int,
) -> AnyioSession:
    """Open the stream and run the WebSocket handshake, all within ``connect_timeout``."""
    endpoint = conn.endpoint
    stream: anyio.abc.ByteStream | None = None
    opened = False
    try:
        with anyio.fail_after(connect_timeout):
            try:
                stream = await open_stream()
            except STREAM_ERRORS as exc:
                raise connect_failure(exc, endpoint) from exc
            session = AnyioSession(conn, stream, max_queued_events=max_queued_events)
            try:
                await session._open()
            except RemoteProtocolError as exc:
                raise ConnectionFailed(
                    sentence(str(exc)), kind=FailureKind.HANDSHAKE_INVALID
                ) from exc
            if not session._connected:
                raise session._open_failure()
            opened = True
            return session
    except TimeoutError:
        raise timeout_failure(
            endpoint, connected=stream is not None, timeout=connect_timeout
        ) from None
    finally:
        if stream is not None and not opened:
            with anyio.CancelScope(shield=True):
                await close_forcefully(stream)
