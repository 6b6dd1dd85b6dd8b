"""Turning command-line flags into a validated :class:`StartRequest` and endpoint choice."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from millis_proto import US_WEST, ClientConfig, ConfigError, StartRequest, parse_endpoint

from .._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    ConnectOptions,
    check_cleartext,
    is_loopback,
)

__all__ = [
    "LOCAL_AGENT",
    "Bounds",
    "Target",
    "add_allow_insecure_flag",
    "add_bounds_flags",
    "bounds_from",
    "build_target",
    "load_json_object",
    "scenario_path",
]

#: Pseudo-endpoint meaning "the built-in local agent, in this process".
LOCAL_AGENT = "local"
#: Key sent to a local/loopback server when the user gave none (our agent accepts any key).
LOOPBACK_KEY = "local-test-key"


@dataclass(frozen=True)
class Target:
    """Where to talk and what to ask for."""

    endpoint: str  # a ws(s) URL, or LOCAL_AGENT
    request: StartRequest

    @property
    def local(self) -> bool:
        return self.endpoint == LOCAL_AGENT


def load_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object; :class:`ConfigError` naming ``what`` otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object.")
    return value


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--agent-config {path}: cannot read it ({exc.strerror}).") from None
    return load_json_object(text, f"--agent-config {path}")


def _is_loopback(url: str) -> bool:
    return is_loopback(parse_endpoint(url).host)


def add_allow_insecure_flag(p: argparse.ArgumentParser) -> None:
    """``--allow-insecure``, the same for every command that connects (talk, load, test)."""
    p.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow plain ws:// to a host that is not loopback (sends the key unencrypted)",
    )


#: The largest bound a flag accepts, in seconds (a day): a typo of a few zeros is an error.
MAX_BOUND_SECONDS = 86400.0
_DEFAULTS = ClientConfig()


@dataclass(frozen=True)
class Bounds:
    """How long a session may wait for the network, as the bounds flags set it.

    ``liveness_timeout`` ``None``: the liveness check is off (``--liveness-timeout 0``).
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    liveness_timeout: float | None = _DEFAULTS.liveness_timeout
    pong_timeout: float = _DEFAULTS.pong_timeout
    write_timeout: float = DEFAULT_WRITE_TIMEOUT

    def config(self, base: ClientConfig | None = None) -> ClientConfig:
        """``base`` (default: the default :class:`ClientConfig`) with these liveness bounds."""
        return dataclasses.replace(
            base or _DEFAULTS,
            liveness_timeout=self.liveness_timeout,
            pong_timeout=self.pong_timeout,
        )

    def connect_options(self, base: ClientConfig | None = None) -> ConnectOptions:
        """The ``connect(...)`` keyword options that apply these bounds."""
        return {
            "config": self.config(base),
            "connect_timeout": self.connect_timeout,
            "write_timeout": self.write_timeout,
        }


def add_bounds_flags(p: argparse.ArgumentParser, *, connect: bool = True) -> None:
    """``--liveness-timeout``, ``--pong-timeout``, ``--write-timeout`` and (unless the
    command has its own) ``--connect-timeout``: the same for talk, test and load."""
    group = p.add_argument_group("connection bounds (seconds; every wait is bounded)")
    if connect:
        group.add_argument(
            "--connect-timeout",
            type=float,
            default=DEFAULT_CONNECT_TIMEOUT,
            metavar="SECONDS",
            help="bound of TCP connect + TLS + WebSocket handshake",
        )
    group.add_argument(
        "--liveness-timeout",
        type=float,
        default=_DEFAULTS.liveness_timeout,
        metavar="SECONDS",
        help="with no byte from the server this long, send it a Millis ping (0: never)",
    )
    group.add_argument(
        "--pong-timeout",
        type=float,
        default=_DEFAULTS.pong_timeout,
        metavar="SECONDS",
        help="after that ping, no byte this long ends the call: the connection is lost",
    )
    group.add_argument(
        "--write-timeout",
        type=float,
        default=DEFAULT_WRITE_TIMEOUT,
        metavar="SECONDS",
        help="a write to the server making no progress this long: the connection is lost",
    )


def _seconds(value: float, flag: str, *, zero: bool = False) -> float:
    if not math.isfinite(value) or not (value >= 0 if zero else value > 0):
        allowed = "0 or more" if zero else "more than 0"
        raise ConfigError(f"{flag} must be {allowed} seconds.")
    if value > MAX_BOUND_SECONDS:
        raise ConfigError(f"{flag} must be at most {MAX_BOUND_SECONDS:g} seconds.")
    return value


def bounds_from(args: argparse.Namespace) -> Bounds:
    """The validated :class:`Bounds` of ``args`` (:class:`ConfigError`, exit 2, if not)."""
    liveness = _seconds(args.liveness_timeout, "--liveness-timeout", zero=True)
    connect = getattr(args, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    return Bounds(
        connect_timeout=_seconds(connect, "--connect-timeout"),
        liveness_timeout=liveness or None,
        pong_timeout=_seconds(args.pong_timeout, "--pong-timeout"),
        write_timeout=_seconds(args.write_timeout, "--write-timeout"),
    )


def build_target(
    *,
    endpoint: str | None,
    public_key: str | None,
    agent_id: str | None,
    agent_config: str | None,
    metadata: str | None,
    include_metadata_in_prompt: bool,
    session_id: str | None,
    allow_insecure: bool = False,
) -> Target:
    """Decide the endpoint and build the start request exactly as the flags say.

    No key and no endpoint → the built-in local agent. A key → US-West unless ``endpoint``.
    An explicit endpoint without a key is allowed only on loopback (a local ``serve``).
    Plain ``ws://`` to a host that is not loopback is refused (:class:`ConfigError`, exit
    2) unless ``allow_insecure`` (``--allow-insecure``): checked here, before any I/O, so
    every command refuses it the same way and at once.
    """
    key = public_key if public_key is not None else os.environ.get("MILLIS_PUBLIC_KEY")
    if endpoint is None:
        endpoint = US_WEST if key else LOCAL_AGENT
    if endpoint != LOCAL_AGENT:
        # A clear error for a malformed URL, then no key in cleartext without the opt-in.
        check_cleartext(parse_endpoint(endpoint), allow_insecure=allow_insecure)
        if not key:
            if not _is_loopback(endpoint):
                raise ConfigError(
                    "a public key is required for a remote endpoint: pass --public-key or "
                    "set MILLIS_PUBLIC_KEY."
                )
            key = LOOPBACK_KEY
    if key is None:
        key = LOOPBACK_KEY
    config = _read_config_file(agent_config) if agent_config else None
    if agent_id is None and config is None:
        if endpoint != LOCAL_AGENT and not _is_loopback(endpoint):
            raise ConfigError("agent is missing: pass --agent-id, --agent-config, or both.")
        agent_id = "local-agent"
    meta = load_json_object(metadata, "--metadata") if metadata is not None else None
    request = StartRequest(
        public_key=key,
        agent_id=agent_id,
        agent_config=config,
        metadata=meta,
        include_metadata_in_prompt=True if include_metadata_in_prompt else None,
        session_id=session_id,
    )
    return Target(endpoint=endpoint, request=request)


def scenario_path(value: str | None) -> str | None:
    """``--scenario``: a file, or ``example`` / ``demo`` for the bundled ones.

    A file of that name in the current directory wins over the bundled scenario.
    """
    from .. import examples

    bundled = {"example": examples.example_scenario, "demo": examples.demo_scenario}
    if value in bundled and not Path(value).exists():
        return str(bundled[value]())
    return value
