"""Millis endpoints and WebSocket URL parsing.

Any ``ws://`` or ``wss://`` URL is accepted (docs/protocol.md §1). ``ws://`` is plain text, so the
transports only use it when the caller asked for it explicitly by passing such a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._frozen import frozen_dataclass
from .errors import ConfigError

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = ["EU_WEST", "US_WEST", "Endpoint", "parse_endpoint"]

#: The documented default endpoint (US-West).
US_WEST = "wss://api-west.millis.ai:8080/millis"
#: EU-West as third-party apps use it (no port; unverified, docs/protocol.md §1).
EU_WEST = "wss://api-eu-west.millis.ai/millis"


@frozen_dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed WebSocket URL."""

    url: str
    secure: bool
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        """The HTTP ``Host`` value: the port is left out when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """Parse a ``ws://`` / ``wss://`` URL; raise :class:`ConfigError` saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("endpoint URL is empty.")
    # Imported here, not with the module: urllib.parse (and the ipaddress module it loads)
    # is ~2 ms of import time, paid by the first URL parsed rather than by every import.
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"endpoint URL {url!r} is invalid ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ConfigError(
            f"endpoint URL {url!r} must start with wss:// (or ws:// for a local server)."
        )
    if not parts.hostname:
        raise ConfigError(f"endpoint URL {url!r} has no host.")
    secure = scheme == "wss"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Endpoint(
        url=url.strip(),
        secure=secure,
        host=parts.hostname,
        port=port if port is not None else (443 if secure else 80),
        target=target,
    )
