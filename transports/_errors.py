"""Turning I/O failures into the millis_proto error family, worded for a person.

The transports catch the exceptions of trio, anyio, ``ssl`` and the OS at the stream
boundary only, and hand the session API one of :class:`ConnectionFailed` (opening),
:class:`ConnectionLost` or :class:`ConnectionClosedByServer` (ending). The raw exception is
kept as ``__cause__`` for debugging, never raised. Every error a ``connect`` raises passes
through :func:`redacting` with the request's public key (a message may quote a URL, a
rejection body or a close reason), and :class:`RedactingFilter` does the same for log
records.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TypeVar

import anyio

from millis_proto import ConnectionFailed, Endpoint, FailureKind, MillisError
from millis_proto.errors import REDACTED, redact, sentence

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - anyio depends on the backport below 3.11
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "STREAM_ERRORS",
    "REDACTED",
    "BaseExceptionGroup",
    "connect_failure",
    "describe",
    "redact",
    "redact_error",
    "redacted",
    "redacting",
    "sentence",
]

T = TypeVar("T")

#: What a byte stream raises when the connection under it fails. ``ssl.SSLError`` and
#: ``socket.gaierror`` are ``OSError``s; the trio adapter re-raises trio's as anyio's.
STREAM_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
#: OpenSSL's reasons for a handshake answered with something that is not TLS (plain HTTP).
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes and the members of exception groups, breadth first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)


def _is_ragged_eof(exc: BaseException) -> bool:
    # OpenSSL 3 reports a missing close_notify as a plain SSLError with this reason.
    return isinstance(exc, ssl.SSLEOFError) or (
        isinstance(exc, ssl.SSLError) and "UNEXPECTED_EOF_WHILE_READING" in str(exc)
    )


def describe(exc: BaseException) -> str:
    """Say in a few lower-case words why an open connection failed (for a close reason)."""
    causes = list(_causes(exc))
    for cause in causes:
        if _is_ragged_eof(cause):
            return "the TLS peer closed the connection without close_notify"
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or cause})"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset by the peer"
        if isinstance(cause, BrokenPipeError):
            return "the peer stopped receiving (broken pipe)"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    if any(isinstance(cause, anyio.ClosedResourceError) for cause in causes):
        return "the connection was closed locally"
    return str(exc) or type(exc).__name__


def connect_failure(exc: BaseException, endpoint: Endpoint) -> ConnectionFailed:
    """Classify why the TCP connection or the TLS handshake to ``endpoint`` failed."""
    causes = list(_causes(exc))
    where = f"{endpoint.host}:{endpoint.port}"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return ConnectionFailed(
                f"Could not find the server {endpoint.host!r}: the host name did not resolve "
                f"({cause.strerror or cause}).",
                kind=FailureKind.DNS,
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConnectionFailed(
                f"The TLS certificate of {endpoint.host} was not accepted: "
                f"{cause.verify_message or cause.reason}.",
                kind=FailureKind.TLS,
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            hint = ""
            if cause.reason in _NOT_TLS_REASONS:
                # What OpenSSL says when the first bytes back are not a TLS record: the
                # usual cause is a wss:// URL pointing at a plain ws:// server.
                hint = "; the server does not seem to speak TLS: try ws:// instead of wss://"
            return ConnectionFailed(
                f"The TLS handshake with {where} failed ({cause.reason or cause}){hint}.",
                kind=FailureKind.TLS,
            )
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return ConnectionFailed(
                f"The connection to {where} was refused; is the server running and "
                "listening on that port?",
                kind=FailureKind.REFUSED,
            )
    for cause in causes:
        if isinstance(cause, TimeoutError):
            return ConnectionFailed(
                f"The connection to {where} timed out.", kind=FailureKind.TIMEOUT
            )
    return ConnectionFailed(
        f"Could not connect to {where} ({describe(exc)}).", kind=FailureKind.NETWORK
    )


def redact_error(exc: BaseException, secret: str | None) -> BaseException:
    """Redact ``secret`` from ``exc`` in place (so its type is kept) and return it.

    Its message, its ``reason``/``problem``, and the same of every millis-proto error
    among its causes and inside exception groups, since a traceback shows those too.
    """
    if not secret:
        return exc
    for error in _causes(exc):
        if error is exc or isinstance(error, MillisError):
            error.args = tuple(redact(a, secret) if isinstance(a, str) else a for a in error.args)
            for name in ("reason", "problem"):
                value = getattr(error, name, None)
                if isinstance(value, str):
                    setattr(error, name, redact(value, secret))
    return exc


@contextmanager
def redacting(secret: str | None) -> Iterator[None]:
    """Redact ``secret`` from every millis-proto error (or group of them) raised inside.

    Errors can quote a URL (whose query may carry the key), a server's rejection body or
    close reason, or a handshake header; wrapping a whole ``connect`` in this makes that
    one rule rather than a duty of each message.
    """
    try:
        yield
    except (MillisError, BaseExceptionGroup) as exc:
        redact_error(exc, secret)
        raise


@asynccontextmanager
async def redacted(opened: AbstractAsyncContextManager[T], secret: str | None) -> AsyncIterator[T]:
    """``opened`` (a transport's ``connect(...)``), with :func:`redacting` around it all:
    opening, the body and the close."""
    with redacting(secret):
        async with opened as value:
            yield value
