"""Type checks for ``agent_config`` (docs/protocol.md §6): a typed mapping that lets unknown
keys pass.

Only fields whose type is known are checked; unknown keys — and known keys whose shape is
undocumented (``flow.voicemail``, ``knowledge_base`` …) — pass through untouched, because the
server schema grows faster than any client. A failure is a :class:`ConfigError` naming the
field by its path, e.g. ``agent_config.tools[0].params[1].type``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from .errors import ConfigError

__all__ = ["AgentConfig", "check_agent_config", "json_type_name"]


class VoiceConfig(TypedDict, total=False):
    """``agent_config.voice``."""

    provider: str
    voice_id: str
    model: str
    settings: dict[str, Any]


class AgentConfig(TypedDict, total=False):
    """The documented part of ``agent_config``; any other key is allowed and sent verbatim."""

    prompt: str
    voice: VoiceConfig
    tools: list[dict[str, Any]]
    language: str
    custom_llm_websocket: str
    llm: str | dict[str, Any]
    first_message: str
    vad_threshold: float
    privacy_settings: dict[str, Any]
    session_timeout: dict[str, Any]
    custom_vocabulary: dict[str, Any]
    flow: dict[str, Any]
    session_data_webhook: str
    extra_prompt_webhook: str
    timezone: str


# A spec is a type name, a nested object schema (dict), a one-element list (list of spec),
# or a tuple of alternatives.
Spec = Any

_PARAM: dict[str, Spec] = {
    "name": "string",
    "type": "string",
    "description": "string",
    "required": "boolean",
}
_TOOL: dict[str, Spec] = {
    "name": "string",
    "description": "string",
    "webhook": "string",
    "header": "object",
    "params": [_PARAM],
    "method": "string",
    "timeout": "number",
    "run_after_call": "boolean",
    "response_mode": "string",
    "execute_after_message": "boolean",
}
SCHEMA: dict[str, Spec] = {
    "prompt": "string",
    "voice": {"provider": "string", "voice_id": "string", "model": "string", "settings": "object"},
    "tools": [_TOOL],
    "language": "string",
    "custom_llm_websocket": "string",
    "llm": ("string", {"model": "string"}),
    "first_message": "string",
    "vad_threshold": "number",
    "privacy_settings": {"opt_out_data_collection": "boolean"},
    "session_timeout": {"max_duration": "number", "max_idle": "number", "message": "string"},
    "custom_vocabulary": {"keywords": ["string"]},
    "flow": {
        "user_start_first": "boolean",
        "interruption": {"allowed": "boolean", "keep_interruption_message": "boolean"},
        "response_delay": "number",
    },
    "session_data_webhook": "string",
    "extra_prompt_webhook": "string",
    "timezone": "string",
}


def json_type_name(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return "array"
    return type(value).__name__


def _matches(value: object, spec: Spec) -> bool:
    if isinstance(spec, tuple):
        return any(_matches(value, s) for s in spec)
    if isinstance(spec, dict):
        return isinstance(value, Mapping)
    if isinstance(spec, list):
        return json_type_name(value) == "array"
    return bool(json_type_name(value) == spec)


def _describe(spec: Spec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_describe(s) for s in spec)
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return "an array"
    name = str(spec)
    return ("an " if name[0] in "aeiou" else "a ") + name


def _check(value: object, spec: Spec, path: str) -> None:
    if not _matches(value, spec):
        raise ConfigError(f"{path} must be {_describe(spec)}, not {json_type_name(value)}.")
    if isinstance(spec, tuple):
        spec = next(s for s in spec if _matches(value, s))
    if isinstance(spec, dict):
        assert isinstance(value, Mapping)
        for key, sub in spec.items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}")
    elif isinstance(spec, list):
        assert isinstance(value, Sequence)
        for i, item in enumerate(value):
            _check(item, spec[0], f"{path}[{i}]")


def check_agent_config(config: object, path: str = "agent_config") -> None:
    """Raise :class:`ConfigError` if a known field of ``config`` has the wrong JSON type."""
    _check(config, SCHEMA, path)
