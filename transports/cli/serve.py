"""``millis-proto serve``: the built-in local agent on host:port until Ctrl-C.

One line per session event on stdout, labelled with the session id the client was given
(``local-session-3``), so a client's log and the server's can be read side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import time

from millis_proto import Event, MillisError, event_to_dict
from millis_proto.agent import AgentSession

from .._errors import BaseExceptionGroup
from ..agent_server import serve_agent
from ..local_agent import load_setup, speech_fallback
from ..server import ServerAddress
from .options import scenario_path
from .output import Lines


def serve_command(args: argparse.Namespace) -> int:
    """Serve until interrupted, one line per session event on stdout."""
    setup = load_setup(scenario_path(args.scenario))
    out = Lines()
    started: dict[int, float] = {}  # per connection number: when its session began

    def on_event(number: int, agent: AgentSession, event: Event) -> None:
        origin = started.setdefault(number, time.monotonic())
        # Before the agent has given the session its id (a refused initiate) the line
        # says which connection it is.
        label = agent.agent.session_id or f"connection {number}"
        _log(out, label, time.monotonic() - origin, event)
        if type(event).__name__ == "ConnectionClosed":
            started.pop(number, None)

    def on_drop(number: int) -> None:
        t = time.monotonic() - started.get(number, time.monotonic())
        out.write(f"[connection {number} {t:7.2f}] dropping the TCP connection (--drop-after)")

    def listening(address: ServerAddress) -> None:
        what = "the local echo agent" if args.scenario is None else "the local agent"
        out.write(f"serving {what} on {address.url}")
        if args.scenario is None:
            out.write("(no --scenario: it answers each turn with the caller's own audio)")
        else:
            fallback = speech_fallback()
            if fallback:
                out.write(f"note: {fallback}")

    serving = serve_agent(
        setup,
        args.host,
        args.port,
        handshake_timeout=args.handshake_timeout,
        initiate_timeout=args.initiate_timeout,
        max_sessions=args.max_sessions,
        on_event=None if args.quiet else on_event,
        drop_after=args.drop_after,
        drop_sessions=args.drop_sessions,
        on_drop=on_drop,
        started=listening,
    )
    try:
        asyncio.run(serving)
    except KeyboardInterrupt:
        out.write("stopped.")
    except (OSError, BaseExceptionGroup) as exc:
        os_error = _os_error(exc)
        if os_error is None:
            raise
        raise MillisError(_listen_failure(args.host, args.port, os_error)) from None
    return 0


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError inside (nested) exception groups, if that is all there is."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


def _listen_failure(host: str, port: int, exc: OSError) -> str:
    """Why ``serve`` cannot listen, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; pass --port (another number, or 0 for any free port)."
    if exc.errno == errno.EACCES:
        return f"port {port} needs more privileges; pass --port 1024 or higher."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; pass --host (e.g. 127.0.0.1)."
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port."


def _log(out: Lines, label: str, t: float, event: Event) -> None:
    record = event_to_dict(event)
    if record["event"] == "client_audio":
        return  # 50 a second; not worth a line each
    fields = " ".join(f"{k}={v!r}" for k, v in record.items() if k != "event")
    out.write(f"[{label} {t:7.2f}] {record['event']} {fields}".rstrip())
