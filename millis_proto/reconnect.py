"""The reconnect policy: which ends of a session are retried, when, and with what request.

Pure like the rest of the core: no clock, no entropy of its own. Time comes in as ``now``
(monotonic seconds) and the jitter of the backoff as ``entropy``, a float in ``[0, 1)``
the caller draws (``random.random()`` in the transports, a fixed value in tests).

Theory of operation
-------------------
A :class:`Reconnector` follows one call across its connections. The adapter tells it what
happened; it answers with the event to report and, for a new attempt, the request to send:

* ``ready(session_id, now)`` — a connection got its ``onready``. The first time it only
  remembers the session id; after a drop it ends the gap with :class:`Reconnected`.
* ``ended(end, now, entropy)`` — a connection ended (or a reconnect attempt failed).
  :func:`classify_close` / :func:`classify_failure` turn what the adapter saw into a
  :class:`SessionEnd`. A retryable end gives :class:`Reconnecting` (sleep ``delay``, then
  call ``attempt``); anything else during a live session gives ``None`` (the call is over,
  normally or not), and during a gap :class:`ReconnectFailed`.
* ``attempt(now)`` — the adapter is about to connect; returns the :class:`StartRequest`:
  the original request with ``session_id`` (sent as ``session_continuation``) set to the
  newest session id seen, or the original without it when there is none to continue (or
  the server refused continuation and the policy falls back to a fresh session).

Retried: the connection was lost (1006, e.g. a reset or a silent half-open peer), the
server closed with 1011/1012/1013, and on a retry a failed TCP/TLS connect, DNS, timeout or
HTTP 5xx, or no ``onready`` in time. Never retried: a normal close (1000/1001/1005), an
``onsessionended``, a close by the application, 1008 (validation error), any other close
code, a protocol error, an HTTP 4xx at the handshake. A server that closes a continued
attempt before its ``onready`` (with any code but 1011-1013) refused the continuation.

Backoff: attempt *n* waits ``min(max_delay, initial_delay * backoff ** (n - 1))``, reduced
by up to ``jitter`` of itself (``delay * (1 - jitter * entropy)``) so that many clients
dropped together do not return together. A fresh-session fallback after a refusal goes
at once. The call gives up after ``max_attempts`` attempts, or when the next attempt would
start ``max_downtime`` seconds or more after the drop.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

from .config import StartRequest
from .errors import ConfigError, FailureKind, LocalProtocolError
from .events import CloseInitiator, ConnectionClosed, Reconnected, ReconnectFailed, Reconnecting

__all__ = [
    "ContinuationFallback",
    "EndKind",
    "ReconnectPhase",
    "ReconnectPolicy",
    "Reconnector",
    "SessionEnd",
    "classify_close",
    "classify_failure",
]

#: Close codes of a server in trouble (internal error, restart, try again later).
SERVER_ERROR_CODES = frozenset({1011, 1012, 1013})


class ContinuationFallback(str, enum.Enum):
    """What to do when the server refuses ``session_continuation``."""

    FRESH = "fresh"  # start a new session (the agent has lost the context)
    STOP = "stop"  # give up: ReconnectFailed


class EndKind(str, enum.Enum):
    """Why a connection (or an attempt to open one) ended, as far as reconnecting goes."""

    LOST = "lost"
    SERVER_ERROR = "server_error"
    CONNECT_FAILED = "connect_failed"
    NO_READY = "no_ready"
    NORMAL = "normal"
    SESSION_ENDED = "session_ended"
    LOCAL = "local"
    POLICY = "policy"
    REJECTED = "rejected"
    CLOSED = "closed"
    CONTINUATION_REFUSED = "continuation_refused"

    @property
    def retryable(self) -> bool:
        """True for the ends a reconnect may repair."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {EndKind.LOST, EndKind.SERVER_ERROR, EndKind.CONNECT_FAILED, EndKind.NO_READY}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnd:
    """One classified end: its kind, a short lower-case description, the close code."""

    kind: EndKind
    detail: str
    code: int | None = None


def classify_close(
    closed: ConnectionClosed, *, session_ended: bool = False, continuing: bool = False
) -> SessionEnd:
    """Classify a connection's :class:`ConnectionClosed`.

    ``session_ended``: an ``onsessionended`` arrived on it. ``continuing``: it was a
    reconnect attempt that asked for ``session_continuation`` and has not had its
    ``onready`` yet (a server close then means the continuation was refused).
    """
    code = closed.code
    said = f": {closed.reason}" if closed.reason else ""
    if session_ended:
        return SessionEnd(kind=EndKind.SESSION_ENDED, detail="the server ended the session")
    if closed.initiator is CloseInitiator.LOCAL:
        return SessionEnd(kind=EndKind.LOCAL, detail="closed by the application", code=code)
    if closed.initiator is CloseInitiator.LOST:
        return SessionEnd(kind=EndKind.LOST, detail=closed.reason or "connection lost", code=code)
    if closed.initiator is CloseInitiator.PROTOCOL_ERROR:
        return SessionEnd(kind=EndKind.CLOSED, detail=f"protocol error{said}", code=code)
    if code in SERVER_ERROR_CODES:
        detail = f"the server closed with {code}{said}"
        return SessionEnd(kind=EndKind.SERVER_ERROR, detail=detail, code=code)
    if continuing:
        detail = f"the server refused to continue the session (close {code}{said})"
        return SessionEnd(kind=EndKind.CONTINUATION_REFUSED, detail=detail, code=code)
    if closed.normal:
        return SessionEnd(kind=EndKind.NORMAL, detail=f"normal close {code}", code=code)
    kind = EndKind.POLICY if code == 1008 else EndKind.CLOSED
    return SessionEnd(kind=kind, detail=f"the server closed with {code}{said}", code=code)


def classify_failure(
    kind: FailureKind, detail: str, *, status_code: int | None = None
) -> SessionEnd:
    """Classify a failed attempt to open a connection (``ConnectionFailed``'s fields)."""
    if kind is FailureKind.HANDSHAKE_REJECTED:
        if status_code is not None and status_code >= 500:
            return SessionEnd(kind=EndKind.CONNECT_FAILED, detail=detail)
        return SessionEnd(kind=EndKind.REJECTED, detail=detail)
    if kind in (FailureKind.INVALID_URL, FailureKind.HANDSHAKE_INVALID):
        return SessionEnd(kind=EndKind.CLOSED, detail=detail)
    return SessionEnd(kind=EndKind.CONNECT_FAILED, detail=detail)


def _positive(value: float, name: str, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number.")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name} must be {'non-negative' if zero else 'positive'}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectPolicy:
    """How a dropped session is reconnected; see the module docstring. Off unless given.

    * ``max_attempts`` — connection attempts per drop (a fresh fallback is one more).
    * ``initial_delay`` / ``backoff`` / ``max_delay`` — seconds before attempt 1, the
      factor per further attempt, and the largest wait.
    * ``jitter`` — fraction in ``[0, 1]`` by which a delay may be shortened at random.
    * ``max_downtime`` — seconds from the drop after which no attempt is started.
    * ``ready_timeout`` — seconds a new connection has to deliver ``onready``.
    * ``on_continuation_refused`` — :class:`ContinuationFallback`.

    Raises :class:`ConfigError` naming the field when a value is invalid.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    backoff: float = 2.0
    max_delay: float = 8.0
    jitter: float = 0.5
    max_downtime: float = 60.0
    ready_timeout: float = 10.0
    on_continuation_refused: ContinuationFallback = ContinuationFallback.FRESH

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigError("max_attempts must be a positive integer.")
        _positive(self.initial_delay, "initial_delay", zero=True)
        _positive(self.max_delay, "max_delay", zero=True)
        _positive(self.max_downtime, "max_downtime")
        _positive(self.ready_timeout, "ready_timeout")
        _positive(self.backoff, "backoff")
        if self.backoff < 1:
            raise ConfigError("backoff must be at least 1.")
        _positive(self.jitter, "jitter", zero=True)
        if self.jitter > 1:
            raise ConfigError("jitter must be between 0 and 1.")
        if math.isinf(self.initial_delay) or math.isinf(self.max_delay):
            raise ConfigError("initial_delay and max_delay must be finite.")
        if not isinstance(self.on_continuation_refused, ContinuationFallback):
            raise ConfigError("on_continuation_refused must be a ContinuationFallback value.")

    def delay(self, attempt: int, entropy: float) -> float:
        """Seconds to wait before ``attempt`` (1-based), jittered by ``entropy`` in [0, 1)."""
        if not 0.0 <= entropy < 1.0:
            raise ConfigError("entropy must be a float in [0, 1).")
        if attempt < 1:
            raise ConfigError("attempt numbers start at 1.")
        # min() before the power would overflow: the exponent is bounded by max_attempts.
        base = min(self.max_delay, self.initial_delay * self.backoff ** min(attempt - 1, 64))
        return base * (1.0 - self.jitter * entropy)


class ReconnectPhase(str, enum.Enum):
    """Where the call is: a live connection, waiting to retry, connecting, or over."""

    LIVE = "live"
    WAITING = "waiting"
    CONNECTING = "connecting"
    ENDED = "ended"


class _Input(str, enum.Enum):
    READY = "ready"
    RETRY = "retry"
    FINAL = "final"
    ATTEMPT = "attempt"


#: The one transition table: (phase, input) → next phase. Anything else is a misuse.
_TRANSITIONS: dict[tuple[ReconnectPhase, _Input], ReconnectPhase] = {
    (ReconnectPhase.LIVE, _Input.READY): ReconnectPhase.LIVE,
    (ReconnectPhase.LIVE, _Input.RETRY): ReconnectPhase.WAITING,
    (ReconnectPhase.LIVE, _Input.FINAL): ReconnectPhase.ENDED,
    (ReconnectPhase.WAITING, _Input.ATTEMPT): ReconnectPhase.CONNECTING,
    (ReconnectPhase.CONNECTING, _Input.READY): ReconnectPhase.LIVE,
    (ReconnectPhase.CONNECTING, _Input.RETRY): ReconnectPhase.WAITING,
    (ReconnectPhase.CONNECTING, _Input.FINAL): ReconnectPhase.ENDED,
}


class Reconnector:
    """The reconnect bookkeeping of one call; see the module docstring.

    Starts ``LIVE``: the adapter has opened the first connection with ``request`` itself
    (a first connect that fails is not retried — there is no session to save yet).
    """

    __slots__ = (
        "_attempt",
        "_continuing",
        "_down_since",
        "_fresh",
        "_phase",
        "_previous",
        "policy",
        "request",
    )

    def __init__(self, policy: ReconnectPolicy, request: StartRequest) -> None:
        self.policy = policy
        #: The application's original request; every attempt is derived from it.
        self.request = request
        self._phase = ReconnectPhase.LIVE
        self._previous = request.session_id  # what a reconnect would continue
        self._attempt = 0
        self._down_since = 0.0
        self._continuing = False
        self._fresh: str | None = None  # why the next attempt starts afresh

    @property
    def phase(self) -> ReconnectPhase:
        """The current :class:`ReconnectPhase`."""
        return self._phase

    @property
    def session_id(self) -> str | None:
        """The newest session id seen (what a reconnect continues)."""
        return self._previous

    @property
    def continuing(self) -> bool:
        """True while connecting with ``session_continuation`` (refusal is possible)."""
        return self._phase is ReconnectPhase.CONNECTING and self._continuing

    def deadline(self) -> float | None:
        """During a gap: when ``max_downtime`` runs out (bound every wait by it)."""
        if self._phase in (ReconnectPhase.WAITING, ReconnectPhase.CONNECTING):
            return self._down_since + self.policy.max_downtime
        return None

    def _move(self, to: _Input) -> None:
        after = _TRANSITIONS.get((self._phase, to))
        if after is None:
            raise LocalProtocolError(f"reconnect: cannot {to.value} while {self._phase.value}.")
        self._phase = after

    def ready(
        self, session_id: str | None, now: float, *, dropped_user_samples: int = 0
    ) -> Reconnected | None:
        """A connection got ``onready``; returns :class:`Reconnected` when it ends a gap."""
        reconnecting = self._phase is ReconnectPhase.CONNECTING
        self._move(_Input.READY)
        if not reconnecting:
            if session_id is not None:
                self._previous = session_id
            return None
        event = Reconnected(
            session_id=session_id,
            continued=self._continuing,
            downtime=max(0.0, now - self._down_since),
            attempts=self._attempt,
            previous_session_id=self._previous,
            fresh_reason=None if self._continuing else self._fresh,
            dropped_user_samples=dropped_user_samples,
        )
        if session_id is not None:
            self._previous = session_id
        self._attempt = 0
        self._fresh = None
        return event

    def ended(
        self,
        end: SessionEnd,
        now: float,
        entropy: float,
        *,
        dropped_playback_samples: int = 0,
    ) -> Reconnecting | ReconnectFailed | None:
        """A connection ended or an attempt failed; see the module docstring."""
        if self._phase is ReconnectPhase.LIVE:
            if not end.kind.retryable:
                self._move(_Input.FINAL)
                return None
            self._down_since = now
            self._fresh = None
        elif self._phase is ReconnectPhase.CONNECTING:
            if end.kind is EndKind.CONTINUATION_REFUSED:
                if self.policy.on_continuation_refused is ContinuationFallback.STOP:
                    return self._give_up(end, now, "the server refused to continue the session")
                self._fresh = "the server refused to continue the session"
                return self._retry(end, now, delay=0.0, dropped=0)
            if not end.kind.retryable:
                return self._give_up(end, now, f"a reconnect attempt failed: {end.detail}")
        else:
            raise LocalProtocolError(f"reconnect: no connection is {self._phase.value}.")
        delay = self.policy.delay(self._attempt + 1, entropy)
        return self._retry(end, now, delay=delay, dropped=dropped_playback_samples)

    def _retry(
        self, end: SessionEnd, now: float, *, delay: float, dropped: int
    ) -> Reconnecting | ReconnectFailed:
        if self._attempt >= self.policy.max_attempts:
            return self._give_up(end, now, f"{self._attempt} reconnect attempts failed")
        if now + delay - self._down_since >= self.policy.max_downtime:
            limit = f"{self.policy.max_downtime:g} s"
            return self._give_up(end, now, f"the connection stayed down for {limit}")
        self._move(_Input.RETRY)
        self._attempt += 1
        return Reconnecting(
            attempt=self._attempt,
            delay=delay,
            cause=end.detail,
            kind=end.kind.value,
            code=end.code,
            dropped_playback_samples=dropped,
        )

    def _give_up(self, end: SessionEnd, now: float, reason: str) -> ReconnectFailed:
        self._move(_Input.FINAL)
        return ReconnectFailed(
            reason=reason,
            attempts=self._attempt,
            downtime=max(0.0, now - self._down_since),
            cause=end.detail,
            kind=end.kind.value,
        )

    def attempt(self, now: float) -> StartRequest:
        """Start the next attempt; returns the request its ``initiate`` must carry."""
        self._move(_Input.ATTEMPT)
        if self._fresh is None and self._previous is None:
            self._fresh = "the dropped session had no session id"
        self._continuing = self._fresh is None
        session_id = self._previous if self._continuing else None
        return dataclasses.replace(self.request, session_id=session_id)
