"""The ``--events`` file: one JSON object per line, written as it happens.

Each line has ``"t"`` (seconds since the connection opened, from the event loop's clock)
and ``"event"``: the Millis method name for server messages (``onready``, ``ontranscript``,
``onfunction``, unknown methods under their own name …) with their data and payload, or a
client-side name (``latency``, ``rtt``, ``agent_state``, ``level``, ``error``, ``closed`` …).
Lines that are server messages also carry ``"source": "server"`` and client-side lines never
do, so a server that sends ``{"method": "error"}`` cannot pass for one of our own errors.
Agent audio frames are not logged one by one (50-125 a second); their bytes are counted in
the ``finished`` line. The path ``-`` means standard output.

Bounds: what a server can make us write is limited per second of ``t``. Playback overflows
are aggregated into at most one ``playback_overflow`` line per second carrying the running
total; beyond :data:`MAX_LINES_PER_SECOND` lines or :data:`MAX_BYTES_PER_SECOND` bytes in a
second, lines are counted instead of written, and one ``suppressed`` line says how many
were left out. The lines that say how the session went (``connected``, ``closed``,
``error``, ``finished``, ``interrupted``) are always written.

Failures: every line reaches the operating system before :meth:`EventLog.write_dict`
returns (unbuffered), so the file is whole lines up to the last one written. If the disk
is full, the part of the line that fit is cut off again, :class:`~.output.OutputError` is
raised once and later lines are dropped (the error has been reported; the file stays
valid). On standard output a reader that has gone (``| head``) just stops the lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from millis_proto import (
    AgentAudio,
    Connected,
    ConnectionClosed,
    Event,
    PlaybackOverflow,
    event_to_dict,
)

from .._errors import redact
from .output import STDOUT, OutputError, stdout_closed

__all__ = ["MAX_BYTES_PER_SECOND", "MAX_LINES_PER_SECOND", "EventLog"]

#: Most lines written per second of ``t`` (the rest are counted in a ``suppressed`` line).
MAX_LINES_PER_SECOND = 200
#: Most bytes written per second of ``t``.
MAX_BYTES_PER_SECOND = 256 * 1024
#: Seconds between two ``playback_overflow`` lines at most.
OVERFLOW_REPORT_INTERVAL = 1.0
#: Our own records never suppressed: they say how the session went. (Events are matched
#: by type, not name: a server's unknown method is logged under its own name.)
_ALWAYS_WRITTEN = frozenset({"error", "finished", "interrupted"})
_ALWAYS_WRITTEN_EVENTS = (Connected, ConnectionClosed)


class EventLog:
    """Appends events to a JSONL file (or does nothing when ``path`` is None).

    ``secret`` (the public key) is never written, even if a server echoes it. Raises
    :class:`~.output.OutputError` when the file cannot be created or a line cannot be
    written.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        secret: str | None = None,
        max_lines_per_second: int = MAX_LINES_PER_SECOND,
        max_bytes_per_second: int = MAX_BYTES_PER_SECOND,
    ) -> None:
        self._secret = secret or None
        self._path = None if path is None else os.fspath(path)
        self._file: io.FileIO | None = None
        self._failed = False
        self._max_lines = max_lines_per_second
        self._max_bytes = max_bytes_per_second
        self._window = -1  # the whole second of ``t`` being counted
        self._window_lines = 0
        self._window_bytes = 0
        self._suppressed = 0  # lines left out since the last ``suppressed`` line
        self._suppressed_total = 0
        self._overflow_total = 0  # samples dropped by playback overflows so far
        self._overflow_pending = 0  # overflow events not yet reported
        self._overflow_last = -OVERFLOW_REPORT_INTERVAL
        self._capacity = 0
        self._last_t = 0.0
        self._owned = self._path is not None and self._path != STDOUT
        if self._path is not None and not self._owned:
            sys.stdout.flush()  # what was printed before goes first
            self._file = io.FileIO(sys.stdout.fileno(), "w", closefd=False)
        elif self._path is not None:
            try:
                self._file = io.FileIO(self._path, "w")
            except OSError as exc:
                raise OutputError(
                    f"cannot write the events file {self._path!r} ({exc.strerror or exc}); "
                    "pass --events a path in a directory that exists."
                ) from None
        self.agent_audio_bytes = 0
        self.lines = 0

    @property
    def suppressed_lines(self) -> int:
        """Lines left out by the per-second bounds so far."""
        return self._suppressed_total

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(
            f"the events file {self._path!r} cannot be written: {exc.strerror or exc}."
        )

    def write_dict(self, t: float, record: dict[str, Any]) -> None:
        """Write one record of our own with its time, within the per-second bounds."""
        self._write(t, record, always=record.get("event") in _ALWAYS_WRITTEN)

    def _write(self, t: float, record: dict[str, Any], *, always: bool) -> None:
        if self._file is None:
            return
        self._last_t = t
        line = self._encode(t, record)
        if always:
            self._flush_suppressed(t)
            self._emit(line)
            return
        second = int(t // 1) if t >= 0 else 0
        if second != self._window:
            self._flush_suppressed(t)
            self._window, self._window_lines, self._window_bytes = second, 0, 0
        if (
            self._window_lines >= self._max_lines
            or self._window_bytes + len(line) > self._max_bytes
        ):
            self._suppressed += 1
            self._suppressed_total += 1
            return
        self._window_lines += 1
        self._window_bytes += len(line)
        self._emit(line)

    def write(self, t: float, event: Event) -> None:
        """Write ``event``; agent audio is only counted, overflows are aggregated."""
        if isinstance(event, AgentAudio):
            self.agent_audio_bytes += len(event.data)
            return
        if isinstance(event, PlaybackOverflow):
            self._overflow_total += event.dropped_samples
            self._overflow_pending += 1
            self._capacity = event.capacity_samples
            if t - self._overflow_last >= OVERFLOW_REPORT_INTERVAL:
                self._write_overflow(t)
            return
        if isinstance(event, ConnectionClosed):
            self._write_overflow(t)  # the last overflows before the end
        self._write(t, event_to_dict(event), always=isinstance(event, _ALWAYS_WRITTEN_EVENTS))

    def _write_overflow(self, t: float) -> None:
        if not self._overflow_pending:
            return
        self._overflow_last = t
        count, self._overflow_pending = self._overflow_pending, 0
        self._write(
            t,
            {
                "event": "playback_overflow",
                "overflows": count,  # since the previous line
                "total_dropped_samples": self._overflow_total,
                "capacity_samples": self._capacity,
            },
            always=False,
        )

    def _flush_suppressed(self, t: float) -> None:
        if self._suppressed:
            count, self._suppressed = self._suppressed, 0
            self._emit(self._encode(t, {"event": "suppressed", "lines": count}))

    def _encode(self, t: float, record: dict[str, Any]) -> bytes:
        line = {"t": round(t, 4), **record}
        text = json.dumps(line, ensure_ascii=False, default=_fallback)
        return (redact(text, self._secret) + "\n").encode("utf-8")

    def _emit(self, data: bytes) -> None:
        f = self._file
        if f is None:
            return
        start = f.tell() if self._owned else 0
        view = memoryview(data)
        try:
            while view:
                n = f.write(view)
                if not n:
                    raise OSError(0, "the file accepted no more data")
                view = view[n:]
        except BrokenPipeError:
            if self._owned:
                raise self._error(BrokenPipeError()) from None
            stdout_closed()  # the reader of stdout has gone (``| head``): stop quietly
            self._discard()
            return
        except OSError as exc:
            # Cut the partial line off again, so the file stays whole lines; then report
            # once and write nothing more.
            if self._owned:
                with contextlib.suppress(OSError):
                    f.truncate(start)
            self._discard()
            self._failed = True
            raise self._error(exc) from None
        self.lines += 1

    @property
    def failed(self) -> bool:
        """True once a write failed (the error was raised; later lines are dropped)."""
        return self._failed

    def close(self) -> None:
        """Write the pending summaries and close; idempotent, never raises."""
        if self._file is not None:
            with contextlib.suppress(OutputError):
                self._write_overflow(self._last_t)
                self._flush_suppressed(self._last_t)
        self._discard()

    def _discard(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fallback(value: object) -> Any:
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    return repr(value)
