"""The JSON envelope of text messages: ``{"method": str, "data"?: any, "payload"?: any}``.

Decoding never raises: a text frame that is not JSON, not an object, or has no string
``method`` yields a sentence saying what was wrong (docs/protocol.md §4: clients must survive a
non-JSON text frame). Encoding omits absent keys rather than sending ``null`` (§3) and
refuses NaN and Infinity, which have no JSON spelling: Python's default would put a bare
``NaN`` on the wire, which no JSON parser on the other side accepts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._frozen import frozen_dataclass
from .agent_config import json_type_name

if TYPE_CHECKING:  # what it is, for mypy and for griffe (the API reference)
    from dataclasses import dataclass as frozen_dataclass

__all__ = ["ABSENT", "Envelope", "decode_envelope", "encode_envelope", "json_problem"]


class _Absent:
    """Marker for a key that is not in the message (distinct from JSON ``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

# The encoder used for every outgoing message: compact, ASCII-only is not needed, and
# NaN/Infinity raise instead of producing invalid JSON.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@frozen_dataclass(frozen=True, slots=True)
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

    Raises :class:`TypeError`/:class:`ValueError` if they are not JSON-serializable (NaN
    and Infinity included); :func:`json_problem` names the offending field.
    """
    obj: dict[str, Any] = {"method": method}
    if data is not ABSENT:
        obj["data"] = data
    if payload is not ABSENT:
        obj["payload"] = payload
    return _encoder.encode(obj)


def json_problem(value: Any, path: str) -> str:
    """Say why ``value`` (found at ``path``) cannot be sent as JSON, naming the field.

    Only called after encoding failed, so the walk costs nothing on the normal path.
    """
    found = _first_unencodable(value, path, depth=0)
    if found is None:
        return f"{path} is not JSON-serializable"
    where, what = found
    return f"{where} is {what}, which JSON cannot represent"


_MAX_DEPTH = 200


def _first_unencodable(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if depth > _MAX_DEPTH:
        return path, "nested too deeply"
    if isinstance(value, float):
        return (path, repr(value)) if not math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path}[{key!r}]", f"keyed by a {type(key).__name__}"
            found = _first_unencodable(item, f"{path}.{key}", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_unencodable(item, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
        return None
    return path, f"a {type(value).__name__}"
