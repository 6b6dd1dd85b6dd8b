"""The ``millis-proto`` command: talk, serve, demo, load, devices, test.

Exit status: 0 when the session ended normally (the server ended it, or the input finished
and the agent went idle); 1 with one sentence on stderr for a lost connection, a refused
certificate, a rejected handshake, an unreadable audio file, a full disk; 2 for invalid
flags or config; 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP (the session is
closed cleanly first); ``test`` exits 1 when a case failed. Files being written are valid
in every case. The public key never appears in any output.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from millis_proto import MillisError, __version__

from .._errors import BaseExceptionGroup, redact
from ..redaction import RedactingFilter
from .options import add_allow_insecure_flag, add_bounds_flags
from .output import stdout_closed

__all__ = ["main"]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default in its help, except for flags whose default is "unset"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _port(text: str) -> int:
    """An argparse type: a TCP port number, 0 meaning "any free port"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is not a port: use 1-65535 (or 0 for any free port)"
        )
    return value


def _add_view_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plain",
        action="store_true",
        help="print one line per event instead of the live terminal view",
    )


def _add_target_flags(p: argparse.ArgumentParser) -> None:
    """Where to connect and which agent to ask for (talk and load)."""
    p.add_argument(
        "--endpoint",
        help="ws:// or wss:// URL (default: US-West with a key, "
        "the built-in local agent without one)",
    )
    p.add_argument("--public-key", help="agent public key (or env MILLIS_PUBLIC_KEY)")
    p.add_argument(
        "--agent-id",
        help="the agent to talk to (needed for a remote endpoint unless --agent-config)",
    )
    p.add_argument(
        "--agent-config", metavar="FILE.json", help="agent_config JSON object (overrides)"
    )
    p.add_argument("--metadata", metavar="JSON", help="metadata JSON object for the agent")
    p.add_argument(
        "--include-metadata-in-prompt",
        action="store_true",
        help="ask the agent to put --metadata into its prompt",
    )


def _add_tls_and_scenario_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cafile", metavar="PEM", help="extra CA certificates to trust")
    add_allow_insecure_flag(p)
    p.add_argument(
        "--scenario",
        metavar="FILE",
        help="scenario for the local agent, or 'example' / 'demo' for a bundled one "
        "(default: it echoes)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="millis-proto",
        description="Talk to Millis AI voice agents (or to the built-in local agent).",
        epilog="Run 'millis-proto COMMAND --help' for the flags of a command.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"millis-proto {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    talk = command("talk", "hold a conversation (microphone and speaker, or WAV files)")
    _add_target_flags(talk)
    talk.add_argument("--session-id", help="continue a previous session (its id)")
    talk.add_argument(
        "--input", metavar="WAV", help="audio file to speak (default: the microphone)"
    )
    talk.add_argument(
        "--output",
        metavar="WAV",
        help="write what the speaker would play to this WAV ('-': stdout; default: the speaker)",
    )
    talk.add_argument(
        "--events", metavar="FILE.jsonl", help="write every event as JSON lines ('-': stdout)"
    )
    talk.add_argument(
        "--record", metavar="FILE.wav", help="stereo call recording (you left, agent right)"
    )
    talk.add_argument("--chunk-ms", type=float, default=20.0, help="uplink frame size in ms")
    talk.add_argument(
        "--max-duration",
        type=float,
        metavar="SECONDS",
        help="end the call after this long (default: no limit)",
    )
    talk.add_argument(
        "--idle-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="after the input ends, stop once the agent was idle this long",
    )
    talk.add_argument(
        "--reconnect",
        type=int,
        default=0,
        metavar="N",
        help="after a dropped connection, reconnect up to N times, continuing the session "
        "(0: a drop ends the call)",
    )
    _add_tls_and_scenario_flags(talk)
    add_bounds_flags(talk)
    talk.add_argument(
        "--fast",
        action="store_true",
        help="virtual time (local agent with --input and --output only)",
    )
    _add_view_flag(talk)
    talk.add_argument("--input-device", help="microphone index or name (see 'devices')")
    talk.add_argument("--output-device", help="speaker index or name (see 'devices')")

    demo = command("demo", "talk to the built-in local agent with a bundled WAV")
    demo.add_argument("--fast", action="store_true", help="virtual time: no waiting")
    demo.add_argument("--out-dir", default=".", help="where reply.wav and events.jsonl go")
    _add_view_flag(demo)

    serve = command("serve", "run the built-in local agent as a WebSocket server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=_port, default=8080, help="port to listen on (0: any free port)"
    )
    serve.add_argument(
        "--scenario",
        metavar="FILE",
        help="JSON or TOML scenario, or 'example' / 'demo' for a bundled one "
        "(default: the agent echoes)",
    )
    serve.add_argument(
        "--drop-after",
        type=float,
        metavar="SECONDS",
        help="fault injection: drop each session's TCP connection (no close frame) this "
        "long after it opened",
    )
    serve.add_argument(
        "--drop-sessions",
        type=int,
        default=1,
        metavar="N",
        help="with --drop-after: drop only the first N sessions (default 1; 0 = all)",
    )
    serve.add_argument("--quiet", action="store_true", help="no line per session event")
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="drop a connection whose WebSocket handshake takes longer",
    )
    serve.add_argument(
        "--initiate-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close (1008) a session that sends no initiate within this time",
    )
    serve.add_argument(
        "--max-sessions",
        type=int,
        default=1000,
        metavar="N",
        help="serve at most N sessions at once; more are refused with HTTP 503",
    )

    from .load import add_load_parser

    load = command("load", "load-test an agent with many simultaneous paced callers")
    _add_target_flags(load)
    _add_tls_and_scenario_flags(load)
    _add_view_flag(load)
    add_load_parser(load)
    add_bounds_flags(load, connect=False)  # load has its own --connect-timeout (+ onready)

    command("devices", "list the audio devices (microphones and speakers)")

    from .suites import add_test_parser

    add_test_parser(command("test", "run a voice-agent test suite (TOML or JSON)"))
    return p


def _log_to_stderr(secret: str | None) -> None:
    """The library's warnings go to stderr, with the key of the call redacted.

    Nothing changes when the process configured logging already (a program calling
    ``main``): its own handlers are its business (see :mod:`transports.redaction`).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secret))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    secret = getattr(args, "public_key", None) or os.environ.get("MILLIS_PUBLIC_KEY")
    _log_to_stderr(secret)
    try:
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "talk":
            from .talk import talk_command

            return talk_command(args)
        if args.command == "demo":
            from .talk import demo_command

            return demo_command(args)
        if args.command == "test":
            from .suites import test_command

            return test_command(args)
        if args.command == "load":
            from .load import load_command

            return load_command(args)
        if args.command == "serve":
            from .serve import serve_command

            return serve_command(args)
        from .devices import devices_command

        return devices_command()
    except BrokenPipeError:
        # Whoever read our output stopped (``| head``): nothing left to say to them.
        stdout_closed()
        return 0
    except (KeyboardInterrupt, MillisError, BaseExceptionGroup) as exc:
        return _report(exc, secret)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; task groups wrap what they raise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report(exc: BaseException, secret: str | None = None) -> int:
    """One sentence on stderr and the exit status; anything unexpected is re-raised."""
    from millis_proto import ConfigError

    leaves = _leaves(exc)
    if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
        stdout_closed()
        return 0
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        sys.stderr.write("millis-proto: interrupted.\n")
        return 130
    errors = [leaf for leaf in leaves if isinstance(leaf, MillisError)]
    if not errors:
        raise exc
    sys.stderr.write(f"millis-proto: {redact(str(errors[0]), secret)}\n")
    return 2 if isinstance(errors[0], ConfigError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
