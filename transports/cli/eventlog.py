"""The ``--events`` file: one JSON object per line, flushed as it happens.

Each line has ``"t"`` (seconds since the connection opened, from the event loop's clock)
and ``"event"``: the Millis method name for server messages (``onready``, ``ontranscript``,
``onfunction``, unknown methods under their own name …) with their data and payload, or a
client-side name (``latency``, ``rtt``, ``agent_state``, ``level``, ``error``, ``closed`` …).
Lines that are server messages also carry ``"source": "server"`` and client-side lines never
do, so a server that sends ``{"method": "error"}`` cannot pass for one of our own errors.
Agent audio frames are not logged one by one (50-125 a second); their bytes are counted in
the ``finished`` line. The path ``-`` means standard output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from millis_proto import AgentAudio, Event, event_to_dict

from .output import STDOUT, OutputError, stdout_closed

__all__ = ["EventLog"]


class EventLog:
    """Appends events to a JSONL file (or does nothing when ``path`` is None)."""

    def __init__(self, path: str | Path | None, *, secret: str | None = None) -> None:
        self._secret = secret or None  # never written, even if a server echoes it
        self._file: IO[str] | None = None
        self._owned = path is not None and str(path) != STDOUT
        if path is not None and not self._owned:
            self._file = sys.stdout
        elif path is not None:
            try:
                self._file = Path(path).open("w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise OutputError(
                    f"cannot write the events file {str(path)!r} ({exc.strerror or exc}); "
                    "pass --events a path in a directory that exists."
                ) from None
        self.agent_audio_bytes = 0
        self.lines = 0

    def write_dict(self, t: float, record: dict[str, Any]) -> None:
        """Write one record with its time; flushed at once so a crash loses nothing."""
        if self._file is None:
            return
        line = {"t": round(t, 4), **record}
        text = json.dumps(line, ensure_ascii=False, default=_fallback)
        if self._secret is not None:
            text = text.replace(self._secret, "***")
        try:
            self._file.write(text + "\n")
            self._file.flush()
        except BrokenPipeError:
            if self._owned:
                raise
            stdout_closed()  # the reader of stdout has gone (``| head``): stop quietly
            self._file = None
            return
        self.lines += 1

    def write(self, t: float, event: Event) -> None:
        """Write ``event``; agent audio is only counted."""
        if isinstance(event, AgentAudio):
            self.agent_audio_bytes += len(event.data)
            return
        self.write_dict(t, event_to_dict(event))

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._file is not None and self._owned:
            self._file.close()
        self._file = None

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
