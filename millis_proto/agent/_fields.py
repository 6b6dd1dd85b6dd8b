"""Field checks shared by the agent's frozen dataclasses.

Every check raises :class:`ConfigError` with the message ``"<field>: <problem>"``, so a
parent object can prefix its own path (``turns[1].`` + ``function_calls[0].name: ...``)
and the final message names the field exactly where it sits in a scenario file.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

from ..agent_config import json_type_name
from ..errors import ConfigError

if sys.version_info >= (3, 11):  # tomllib joined the standard library in 3.11
    import tomllib

T = TypeVar("T")
P = ParamSpec("P")


def field_error(name: str, problem: str) -> ConfigError:
    """The error for field ``name``: ``"name: problem"`` (``": problem"`` for the object
    itself, which the parent's prefix then names)."""
    return ConfigError(f"{name}: {problem}")


def prefixed(prefix: str, build: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``build``; re-raise its :class:`ConfigError` with ``prefix`` in front of the path."""
    try:
        return build(*args, **kwargs)
    except ConfigError as exc:
        message = str(exc)
        separator = "" if message.startswith(":") else "."
        raise ConfigError(f"{prefix}{separator}{message}") from None


def check_number(
    name: str, value: object, *, minimum: float = 0.0, allow_equal: bool = False
) -> None:
    """``value`` is a finite int/float above ``minimum`` (or equal to it when allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise field_error(name, f"must be a finite number, not {json_type_name(value)}.")
    if value < minimum or (value == minimum and not allow_equal):
        bound = "at least" if allow_equal else "more than"
        raise field_error(name, f"must be {bound} {minimum:g}, not {value!r}.")


def check_str(name: str, value: object, *, allow_empty: bool = False) -> None:
    """``value`` is a string (non-blank unless ``allow_empty``)."""
    if value is None:
        raise field_error(name, "is missing.")
    if not isinstance(value, str):
        raise field_error(name, f"must be a string, not {json_type_name(value)}.")
    if not allow_empty and not value.strip():
        raise field_error(name, "must not be empty.")


def check_optional_str(name: str, value: object, *, allow_empty: bool = False) -> None:
    """``value`` is ``None`` or a string (non-blank unless ``allow_empty``)."""
    if value is not None:
        check_str(name, value, allow_empty=allow_empty)


def check_json(name: str, value: object) -> None:
    """``value`` can be sent as JSON (TOML dates, for one, cannot)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise field_error(name, f"is not JSON-serializable ({exc}).") from None


def check_keys(name: str, obj: Mapping[str, Any], known: frozenset[str]) -> None:
    """Reject keys not in ``known``: a typo in a test script must not pass silently."""
    for key in obj:
        if key not in known:
            where = f"{name}.{key}" if name else str(key)
            raise field_error(where, f"unknown key (known keys: {', '.join(sorted(known))}).")


def require_mapping(name: str, value: object) -> Mapping[str, Any]:
    """``value`` is a JSON object."""
    if not isinstance(value, Mapping):
        raise field_error(name, f"must be an object, not {json_type_name(value)}.")
    return value


def require_list(name: str, value: object) -> list[Any]:
    """``value`` is a JSON array."""
    if not isinstance(value, (list, tuple)):
        raise field_error(name, f"must be a list, not {json_type_name(value)}.")
    return list(value)


def check_tuple(name: str, value: object, kind: type) -> None:
    """``value`` is a tuple of ``kind`` instances (lists are converted by ``from_dict``)."""
    if not isinstance(value, tuple):
        raise field_error(name, "must be a tuple.")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise field_error(f"{name}[{i}]", f"must be a {kind.__name__}.")


def parse_document(text: str, format: Literal["json", "toml"], what: str) -> object:
    """Decode a JSON or TOML document; :class:`ConfigError` with the parser's reason, e.g.
    ``"scenario is not valid TOML (...)."`` (``what`` names the document), or for TOML
    on Python 3.10 (no ``tomllib``)."""
    if format == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{what} is not valid JSON ({exc}).") from None
    if format != "toml":
        raise ConfigError(f"{what} format must be 'json' or 'toml', not {format!r}.")
    if sys.version_info >= (3, 11):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{what} is not valid TOML ({exc}).") from None
    raise ConfigError(  # pragma: no cover  (only on Python 3.10)
        f"TOML needs Python 3.11 or later (tomllib); write the {what} in JSON."
    )
