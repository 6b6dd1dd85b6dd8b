"""The read buffer that asyncio connections of one thread share: sessions and served clients.

With a plain ``asyncio.Protocol`` asyncio allocates a fresh 256 KiB ``bytes`` for every read:
a large allocation (its own memory mapping) and a page fault per read, on every connection.
An ``asyncio.BufferedProtocol`` reads into a buffer it hands out instead. A read is given to
the core and consumed before the callback returns (the core copies what it keeps), so one
buffer serves every connection of a thread's event loop.
"""

from __future__ import annotations

import threading

__all__ = ["RECEIVE_BYTES", "shared_read_view"]

#: Most bytes asked of the transport per read.
RECEIVE_BYTES = 65536


class _ReadBuffer(threading.local):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(RECEIVE_BYTES))


_READ_BUFFER = _ReadBuffer()


def shared_read_view() -> memoryview:
    """This thread's read buffer; valid only until the callback that was given it returns."""
    return _READ_BUFFER.view
