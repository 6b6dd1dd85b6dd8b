"""What outlives one connection: session records for ``session_continuation``, and ids.

A client continues a conversation by opening a new socket whose ``initiate`` carries
``session_continuation.session_id`` (docs/protocol.md §5). The local agent answers with a fresh
``session_id`` and resumes the turn count and transcript recorded under the old one. The
caller creates one :class:`SessionStore` (and one id factory) per agent server and shares
them among its connections; nothing here is thread-safe, one owner drives them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = [
    "MAX_SESSIONS",
    "MAX_TRANSCRIPT_LINES",
    "SessionIdCounter",
    "SessionRecord",
    "SessionStore",
    "TranscriptLine",
]

#: Sessions remembered by default; the least recently stored are forgotten first.
MAX_SESSIONS = 1000
#: Transcript lines kept per session; older lines are dropped first.
MAX_TRANSCRIPT_LINES = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptLine:
    """One line of the conversation: who said it, and the text sent for it."""

    role: Literal["user", "agent"]
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A session's progress: user turns answered so far and the transcript."""

    turns: int = 0
    transcript: tuple[TranscriptLine, ...] = ()

    def with_line(self, line: TranscriptLine, *, turns: int | None = None) -> SessionRecord:
        """A copy with ``line`` appended (bounded) and, if given, a new turn count."""
        lines = (*self.transcript, line)[-MAX_TRANSCRIPT_LINES:]
        return SessionRecord(turns=self.turns if turns is None else turns, transcript=lines)


class SessionStore:
    """Session id → :class:`SessionRecord`, bounded to ``max_sessions`` (oldest dropped)."""

    __slots__ = ("_records", "max_sessions")

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        if max_sessions <= 0:
            raise ConfigError("max_sessions must be positive.")
        self.max_sessions = max_sessions
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._records

    def get(self, session_id: str) -> SessionRecord | None:
        """The record of ``session_id``, or ``None`` if unknown (or forgotten)."""
        return self._records.get(session_id)

    def put(self, session_id: str, record: SessionRecord) -> None:
        """Store ``record`` as the newest; forget the oldest beyond the bound."""
        self._records[session_id] = record
        self._records.move_to_end(session_id)
        while len(self._records) > self.max_sessions:
            self._records.popitem(last=False)


class SessionIdCounter:
    """Deterministic session ids ``<prefix>1``, ``<prefix>2`` … — the core has no entropy.

    Share one counter among all connections of a server so ids are unique within it.
    """

    __slots__ = ("_count", "prefix")

    def __init__(self, prefix: str = "local-session-") -> None:
        self.prefix = prefix
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        return f"{self.prefix}{self._count}"
