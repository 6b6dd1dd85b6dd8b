"""The one exception family of millis-proto, split by blame.

Every error raised by this package derives from :class:`MillisError`. Below it:

* :class:`ConfigError` — the application asked for something invalid (bad start request,
  bad option). Raised before anything is sent; nothing changes state.
* :class:`LocalProtocolError` — the application misused a state machine (sending after
  close, starting twice, not draining the outbound queue). The machine is unchanged.
* :class:`RemoteProtocolError` — the peer broke the protocol (an invalid handshake
  response). The machine that raised it is in a sticky error state.
* :class:`ConnectionFailed`, :class:`ConnectionLost`, :class:`ConnectionClosedByServer` —
  raised by the transports; defined here so the whole family lives in one place.

Messages are sentences for a person and never contain the public key.
"""

from __future__ import annotations

import enum
import json

__all__ = [
    "REDACTED",
    "ConfigError",
    "ConnectionClosedByServer",
    "ConnectionFailed",
    "ConnectionLost",
    "FailureKind",
    "LocalProtocolError",
    "MillisError",
    "RemoteProtocolError",
    "TransportError",
    "redact",
    "sentence",
]


class MillisError(Exception):
    """Base class of every exception raised by millis-proto."""


class ConfigError(MillisError, ValueError):
    """A start request or option is invalid; the message names the field."""


class LocalProtocolError(MillisError):
    """The application used a state machine in a way the protocol does not allow."""


class RemoteProtocolError(MillisError):
    """The peer sent something the protocol does not allow."""


class TransportError(MillisError):
    """A connection could not be opened or did not end normally."""


class FailureKind(str, enum.Enum):
    """Why a connection could not be opened."""

    INVALID_URL = "invalid_url"
    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    HANDSHAKE_REJECTED = "handshake_rejected"
    HANDSHAKE_INVALID = "handshake_invalid"
    NETWORK = "network"


class ConnectionFailed(TransportError):
    """The WebSocket connection could not be opened.

    ``kind`` says why; ``status_code`` is set when the server rejected the handshake.
    """

    def __init__(self, message: str, *, kind: FailureKind, status_code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code


class ConnectionLost(TransportError):
    """The connection ended without a close handshake (WebSocket code 1006)."""

    code = 1006


class ConnectionClosedByServer(TransportError):
    """The server closed the session with an abnormal close code."""

    def __init__(self, message: str, *, code: int, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


def sentence(text: str) -> str:
    """``"connection lost: x"`` → ``"Connection lost: x."`` (error messages are sentences)."""
    text = text.strip() or "no reason given"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


#: What stands in for the public key wherever it would have been shown.
REDACTED = "<public key>"


def redact(text: str, secret: str | None) -> str:
    """Replace ``secret`` in text about to be shown, logged or written anywhere.

    The one redaction function: the core's close reasons and handshake errors, the
    transports' errors and log records, the CLI's stderr, event log and live view all go
    through it. Besides the key itself it catches the forms a server echoing it (or a URL
    carrying it) is likely to use: JSON-escaped and percent-encoded.
    """
    if not secret:
        return text
    for form in _forms(secret):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def _forms(secret: str) -> list[str]:
    # Imported here: urllib.parse (and the ipaddress module it loads) is ~2 ms of import
    # time that only a redaction with a key needs.
    import urllib.parse

    forms = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe="")}
    forms.add(urllib.parse.quote_plus(secret))
    return sorted(forms, key=len, reverse=True)  # longest first: no half-replaced form
