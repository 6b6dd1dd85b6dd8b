"""Run ``millis-proto`` with every connection off loopback blocked and written down.

``python offline_cli.py RECORD ARGS...`` runs the CLI in this process under an audit hook:
each ``socket.getaddrinfo`` and ``socket.connect`` for an address that is not loopback is
appended to the file RECORD (one line each), and the connect is refused with
``ENETUNREACH`` before the system call. So a test sees whether a command tried to reach
the network at all, and no packet can leave even if it does.
"""

from __future__ import annotations

import errno
import ipaddress
import sys
from typing import Any


def _is_loopback(host: object) -> bool:
    if not isinstance(host, (str, bytes)):
        return True  # a numeric port-only lookup, a Unix socket: not the network
    text = host.decode() if isinstance(host, bytes) else host
    if text.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def _install(record: str) -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else None
        else:
            return
        if _is_loopback(host):
            return
        with open(record, "a", encoding="utf-8") as f:
            f.write(f"{event} {host}\n")
        if event == "socket.connect":
            raise OSError(errno.ENETUNREACH, "blocked by the test: not loopback")

    sys.addaudithook(hook)


if __name__ == "__main__":
    _install(sys.argv[1])
    from transports.cli import main

    sys.exit(main(sys.argv[2:]))
