"""Misbehaving peers on plain loopback sockets, shared by the CLI and transport tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def read_head(conn: socket.socket) -> bytes | None:
    """Read an HTTP request head (through its blank line); ``None`` if the peer hung up."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        head += chunk
    return head


@contextmanager
def rejecting_server(body: bytes, status: str = "401 Unauthorized") -> Iterator[str]:
    """A plain-socket HTTP server answering one upgrade with ``status`` and ``body``;
    yields its ``ws://`` URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def answer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            if read_head(conn) is None:
                return
            head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            conn.sendall(head.encode() + body)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/millis"
    finally:
        listener.close()
        thread.join(10)
