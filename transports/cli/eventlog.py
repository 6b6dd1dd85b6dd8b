"""The ``--events`` file: one JSON object per line, flushed as it happens.

Each line has ``"t"`` (seconds since the connection opened, from the event loop's clock)
and ``"event"``: the Millis method name for server messages (``onready``, ``ontranscript``,
``onfunction``, unknown methods under their own name …) with their data and payload, or a
client-side name (``latency``, ``rtt``, ``agent_state``, ``level``, ``error``, ``closed`` …).
Agent audio frames are not logged one by one (50-125 a second); their bytes are counted in
the ``closed`` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from millis_proto import AgentAudio, Event, event_to_dict

__all__ = ["EventLog"]


class EventLog:
    """Appends events to a JSONL file (or does nothing when ``path`` is None)."""

    def __init__(self, path: str | Path | None, *, secret: str | None = None) -> None:
        self._secret = secret or None  # never written, even if a server echoes it
        self._file: IO[str] | None = None
        if path is not None:
            self._file = Path(path).open("w", encoding="utf-8")  # noqa: SIM115
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
        self._file.write(text + "\n")
        self._file.flush()
        self.lines += 1

    def write(self, t: float, event: Event) -> None:
        """Write ``event``; agent audio is only counted."""
        if isinstance(event, AgentAudio):
            self.agent_audio_bytes += len(event.data)
            return
        self.write_dict(t, event_to_dict(event))

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._file is not None:
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
