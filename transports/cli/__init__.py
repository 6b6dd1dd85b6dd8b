"""The ``millis-proto`` command: talk, serve, demo, devices.

Exit status: 0 when the session ended normally (the server ended it, or the input finished
and the agent went idle); 1 with one sentence on stderr for a lost connection, a refused
certificate, a rejected handshake, an unreadable WAV; 2 for invalid flags or config; 130
after Ctrl-C (the session is closed cleanly first). Files being written are valid in
every case. The public key never appears in any output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from millis_proto import MillisError

from .._errors import BaseExceptionGroup

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="millis-proto",
        description="Talk to Millis AI voice agents (or to the built-in local agent).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    talk = sub.add_parser("talk", help="hold a conversation")
    talk.add_argument(
        "--endpoint",
        help="ws:// or wss:// URL (default: US-West with a key, "
        "the built-in local agent without one)",
    )
    talk.add_argument("--public-key", help="agent public key (or env MILLIS_PUBLIC_KEY)")
    talk.add_argument("--agent-id")
    talk.add_argument("--agent-config", metavar="FILE.json", help="agent_config JSON object")
    talk.add_argument("--metadata", metavar="JSON", help="metadata JSON object")
    talk.add_argument("--include-metadata-in-prompt", action="store_true")
    talk.add_argument("--session-id", help="continue a previous session")
    talk.add_argument("--input", metavar="WAV", help="audio file to speak (default: microphone)")
    talk.add_argument(
        "--output", metavar="WAV", help="write what the speaker would play (default: speaker)"
    )
    talk.add_argument("--events", metavar="FILE.jsonl", help="write every event as JSON lines")
    talk.add_argument("--record", metavar="FILE.wav", help="stereo call recording")
    talk.add_argument("--chunk-ms", type=float, default=20.0, help="uplink frame size (ms)")
    talk.add_argument("--max-duration", type=float, metavar="SECONDS")
    talk.add_argument(
        "--idle-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="after the input ends, stop once the agent was idle this long",
    )
    talk.add_argument("--cafile", metavar="PEM", help="extra CA certificates to trust")
    talk.add_argument("--scenario", metavar="FILE", help="scenario for the local agent")
    talk.add_argument(
        "--fast",
        action="store_true",
        help="virtual time (local agent with --input and --output only)",
    )
    talk.add_argument("--plain", action="store_true", help="plain lines, no live view")
    talk.add_argument("--input-device", help="microphone index or name")
    talk.add_argument("--output-device", help="speaker index or name")

    demo = sub.add_parser("demo", help="talk to the built-in local agent with a bundled WAV")
    demo.add_argument("--fast", action="store_true", help="virtual time: no waiting")
    demo.add_argument("--out-dir", default=".", help="where reply.wav and events.jsonl go")
    demo.add_argument("--plain", action="store_true")

    serve = sub.add_parser("serve", help="run the built-in local agent as a server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--scenario", metavar="FILE", help="JSON or TOML scenario")

    sub.add_parser("devices", help="list audio devices")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "talk":
            from .talk import talk_command

            return talk_command(args)
        if args.command == "demo":
            from .talk import demo_command

            return demo_command(args)
        if args.command == "serve":
            from .serve import serve_command

            return serve_command(args)
        from .devices import devices_command

        return devices_command()
    except (KeyboardInterrupt, MillisError, BaseExceptionGroup) as exc:
        return _report(exc)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; task groups wrap what they raise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report(exc: BaseException) -> int:
    """One sentence on stderr and the exit status; anything unexpected is re-raised."""
    from millis_proto import ConfigError

    leaves = _leaves(exc)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        sys.stderr.write("millis-proto: interrupted.\n")
        return 130
    errors = [leaf for leaf in leaves if isinstance(leaf, MillisError)]
    if not errors:
        raise exc
    sys.stderr.write(f"millis-proto: {errors[0]}\n")
    return 2 if isinstance(errors[0], ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
