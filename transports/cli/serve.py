"""``millis-proto serve``: the built-in local agent on host:port until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from millis_proto import Event, event_to_dict

from ..local_agent import agent_handler, load_setup
from ..server import ServerAddress, ServerSession, serve


def serve_command(args: argparse.Namespace) -> int:
    """Serve until interrupted, one line per session event on stdout."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    setup = load_setup(args.scenario)
    numbers: dict[int, tuple[int, float]] = {}

    def on_event(session: ServerSession, event: Event) -> None:
        number, origin = numbers.setdefault(id(session), (len(numbers) + 1, trio.current_time()))
        _log(number, trio.current_time() - origin, event)
        if type(event).__name__ == "ConnectionClosed":
            numbers.pop(id(session), None)

    handler = agent_handler(setup, on_event=on_event)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            address: ServerAddress = await nursery.start(serve, handler, args.host, args.port)
            sys.stdout.write(f"serving the local agent on {address.url}\n")
            sys.stdout.flush()

    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.stdout.write("stopped.\n")
    except OSError as exc:
        sys.stderr.write(
            f"millis-proto: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}).\n"
        )
        return 1
    return 0


def _log(number: int, t: float, event: Event) -> None:
    record = event_to_dict(event)
    if record["event"] == "client_audio":
        return  # 50 a second; not worth a line each
    fields = " ".join(f"{k}={v!r}" for k, v in record.items() if k != "event")
    sys.stdout.write(f"[session {number} {t:7.2f}] {record['event']} {fields}\n")
    sys.stdout.flush()
