"""The JSON envelope of text messages: ``{"method": str, "data"?: any, "payload"?: any}``.

Decoding never raises: a text frame that is not JSON, not an object, or has no string
``method`` yields a sentence saying what was wrong (PROTOCOL.md §4: clients must survive a
non-JSON text frame). Encoding omits absent keys rather than sending ``null`` (§3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .agent_config import json_type_name

__all__ = ["ABSENT", "Envelope", "decode_envelope", "encode_envelope"]


class _Absent:
    """Marker for a key that is not in the message (distinct from JSON ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

# The encoder used for every outgoing message: compact, and ASCII-only is not needed.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded text message. ``data``/``payload`` are ``None`` when absent."""

    method: str
    data: Any = None
    payload: Any = None


def decode_envelope(text: str) -> Envelope | str:
    """Return the envelope of ``text``, or a sentence saying why it is not one."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return f"text message is not valid JSON ({exc})"
    except RecursionError:
        return "text message is JSON nested too deeply to decode"
    if not isinstance(obj, dict):
        return f"text message is a JSON {json_type_name(obj)}, not an object"
    method = obj.get("method", ABSENT)
    if method is ABSENT:
        return "text message has no 'method' key"
    if not isinstance(method, str):
        return f"text message's 'method' is a {json_type_name(method)}, not a string"
    return Envelope(method, obj.get("data"), obj.get("payload"))


def encode_envelope(method: str, data: Any = ABSENT, payload: Any = ABSENT) -> str:
    """Encode a message, leaving out ``data``/``payload`` when they are :data:`ABSENT`.

    Raises :class:`TypeError`/:class:`ValueError` if they are not JSON-serializable.
    """
    obj: dict[str, Any] = {"method": method}
    if data is not ABSENT:
        obj["data"] = data
    if payload is not ABSENT:
        obj["payload"] = payload
    return _encoder.encode(obj)
