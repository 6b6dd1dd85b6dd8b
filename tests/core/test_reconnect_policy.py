"""The pure reconnect policy: classification, backoff, limits, the continued request."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from millis_proto import (
    CloseInitiator,
    ConfigError,
    ConnectionClosed,
    FailureKind,
    LocalProtocolError,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    StartRequest,
    event_to_dict,
)
from millis_proto.reconnect import (
    ContinuationFallback,
    EndKind,
    Reconnector,
    ReconnectPhase,
    ReconnectPolicy,
    SessionEnd,
    classify_close,
    classify_failure,
)

REQUEST = StartRequest(
    public_key="pk-test", agent_id="agent-1", metadata={"user": "x"}, extra={"custom": 1}
)
LOST = SessionEnd(kind=EndKind.LOST, detail="connection lost: reset")
entropies = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def closed(code: int, initiator: CloseInitiator = CloseInitiator.REMOTE) -> ConnectionClosed:
    return ConnectionClosed(code=code, reason="why", initiator=initiator)


@pytest.mark.parametrize(
    ("event", "flags", "kind"),
    [
        (closed(1006, CloseInitiator.LOST), {}, EndKind.LOST),
        (closed(1011), {}, EndKind.SERVER_ERROR),
        (closed(1012), {}, EndKind.SERVER_ERROR),
        (closed(1013), {"continuing": True}, EndKind.SERVER_ERROR),
        (closed(1000), {}, EndKind.NORMAL),
        (closed(1001), {}, EndKind.NORMAL),
        (closed(1005), {}, EndKind.NORMAL),
        (closed(1008), {}, EndKind.POLICY),
        (closed(4000), {}, EndKind.CLOSED),
        (closed(1002, CloseInitiator.PROTOCOL_ERROR), {}, EndKind.CLOSED),
        (closed(1000, CloseInitiator.LOCAL), {}, EndKind.LOCAL),
        (closed(1000, CloseInitiator.LOCAL), {"session_ended": True}, EndKind.SESSION_ENDED),
        (closed(1000), {"session_ended": True}, EndKind.SESSION_ENDED),
        (closed(1008), {"continuing": True}, EndKind.CONTINUATION_REFUSED),
        (closed(1000), {"continuing": True}, EndKind.CONTINUATION_REFUSED),
        (closed(1006, CloseInitiator.LOST), {"continuing": True}, EndKind.LOST),
    ],
)
def test_classify_close(event: ConnectionClosed, flags: dict[str, bool], kind: EndKind) -> None:
    end = classify_close(event, **flags)
    assert end.kind is kind
    assert end.kind.retryable == (
        kind in (EndKind.LOST, EndKind.SERVER_ERROR, EndKind.CONNECT_FAILED, EndKind.NO_READY)
    )


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        (FailureKind.REFUSED, None, EndKind.CONNECT_FAILED),
        (FailureKind.TLS, None, EndKind.CONNECT_FAILED),
        (FailureKind.TIMEOUT, None, EndKind.CONNECT_FAILED),
        (FailureKind.DNS, None, EndKind.CONNECT_FAILED),
        (FailureKind.NETWORK, None, EndKind.CONNECT_FAILED),
        (FailureKind.HANDSHAKE_REJECTED, 503, EndKind.CONNECT_FAILED),
        (FailureKind.HANDSHAKE_REJECTED, 401, EndKind.REJECTED),
        (FailureKind.HANDSHAKE_REJECTED, 404, EndKind.REJECTED),
        (FailureKind.HANDSHAKE_INVALID, None, EndKind.CLOSED),
    ],
)
def test_classify_failure(kind: FailureKind, status: int | None, expected: EndKind) -> None:
    assert classify_failure(kind, "x", status_code=status).kind is expected


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"initial_delay": -1},
        {"initial_delay": math.inf},
        {"max_delay": math.nan},
        {"backoff": 0.5},
        {"jitter": 1.5},
        {"max_downtime": 0},
        {"ready_timeout": -2},
        {"on_continuation_refused": "fresh"},
    ],
)
def test_policy_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ReconnectPolicy(**bad)  # type: ignore[arg-type]


policies = st.builds(
    ReconnectPolicy,
    initial_delay=st.floats(0, 10),
    backoff=st.floats(1, 10),
    max_delay=st.floats(0, 60),
    jitter=st.floats(0, 1),
)


@given(policy=policies, attempt=st.integers(1, 200), entropy=entropies)
def test_delay_is_bounded_and_jittered_down_only(
    policy: ReconnectPolicy, attempt: int, entropy: float
) -> None:
    cap, jitter = policy.max_delay, policy.jitter
    base = policy.delay(attempt, 0.0)
    delay = policy.delay(attempt, entropy)
    assert base <= cap
    assert base * (1 - jitter) - 1e-9 <= delay <= base
    assert policy.delay(attempt + 1, 0.0) >= base  # the base never shrinks


@pytest.mark.parametrize("entropy", [-0.1, 1.0, math.nan])
def test_entropy_outside_unit_interval_is_refused(entropy: float) -> None:
    with pytest.raises(ConfigError):
        ReconnectPolicy().delay(1, entropy)


def test_continued_initiate_is_the_original_plus_session_continuation() -> None:
    r = Reconnector(ReconnectPolicy(), REQUEST)
    assert r.ready("sess-1", 0.0) is None
    assert isinstance(r.ended(LOST, 1.0, 0.0), Reconnecting)
    again = r.attempt(1.5)
    want = {**REQUEST.to_initiate_data(), "session_continuation": {"session_id": "sess-1"}}
    assert again.to_initiate_data() == want
    done = r.ready("sess-2", 2.25, dropped_user_samples=7)
    assert done == Reconnected(
        session_id="sess-2",
        continued=True,
        downtime=1.25,
        attempts=1,
        previous_session_id="sess-1",
        dropped_user_samples=7,
    )
    # The next drop continues the newest session.
    r.ended(LOST, 5.0, 0.0)
    assert r.attempt(6.0).session_id == "sess-2"


def test_no_session_id_means_a_fresh_start_reported_as_such() -> None:
    r = Reconnector(ReconnectPolicy(), REQUEST)
    r.ready(None, 0.0)
    r.ended(LOST, 1.0, 0.0)
    assert r.attempt(1.5) == REQUEST
    done = r.ready("s-new", 2.0)
    assert done is not None and not done.continued
    assert done.fresh_reason == "the dropped session had no session id"


@pytest.mark.parametrize("fallback", list(ContinuationFallback))
def test_refused_continuation_falls_back_or_stops(fallback: ContinuationFallback) -> None:
    r = Reconnector(ReconnectPolicy(on_continuation_refused=fallback), REQUEST)
    r.ready("s1", 0.0)
    r.ended(LOST, 1.0, 0.0)
    r.attempt(1.5)
    assert r.continuing
    refused = classify_close(closed(1008), continuing=r.continuing)
    out = r.ended(refused, 1.6, 0.0)
    if fallback is ContinuationFallback.STOP:
        assert isinstance(out, ReconnectFailed)
        assert "refused" in out.reason and r.phase is ReconnectPhase.ENDED
        return
    assert isinstance(out, Reconnecting) and out.delay == 0.0 and out.attempt == 2
    assert r.attempt(1.6) == REQUEST  # no session_continuation this time
    done = r.ready("s2", 1.7)
    assert done is not None and not done.continued
    assert done.fresh_reason == "the server refused to continue the session"


@pytest.mark.parametrize(
    "kind",
    [EndKind.NORMAL, EndKind.SESSION_ENDED, EndKind.LOCAL, EndKind.POLICY, EndKind.CLOSED],
)
def test_final_ends_of_a_live_session_are_not_retried(kind: EndKind) -> None:
    r = Reconnector(ReconnectPolicy(), REQUEST)
    r.ready("s1", 0.0)
    assert r.ended(SessionEnd(kind=kind, detail="x"), 1.0, 0.0) is None
    assert r.phase is ReconnectPhase.ENDED
    with pytest.raises(LocalProtocolError):
        r.attempt(2.0)


def test_http_4xx_on_a_retry_gives_up_at_once() -> None:
    r = Reconnector(ReconnectPolicy(max_attempts=5), REQUEST)
    r.ready("s1", 0.0)
    r.ended(LOST, 1.0, 0.0)
    r.attempt(1.5)
    out = r.ended(classify_failure(FailureKind.HANDSHAKE_REJECTED, "401", status_code=401), 2, 0)
    assert isinstance(out, ReconnectFailed) and out.attempts == 1


def test_events_have_json_names() -> None:
    r = Reconnector(ReconnectPolicy(max_attempts=1), REQUEST)
    r.ready("s1", 0.0)
    first = r.ended(LOST, 1.0, 0.0)
    assert first is not None
    assert event_to_dict(first)["event"] == "reconnecting"
    r.attempt(1.5)
    failed = r.ended(LOST, 2.0, 0.0)
    assert isinstance(failed, ReconnectFailed)
    assert event_to_dict(failed) == {
        "event": "reconnect_failed",
        "reason": "1 reconnect attempts failed",
        "attempts": 1,
        "downtime": 1.0,
        "cause": LOST.detail,
        "kind": "lost",
    }


retryable_ends = st.sampled_from(
    [
        LOST,
        SessionEnd(kind=EndKind.SERVER_ERROR, detail="1011", code=1011),
        SessionEnd(kind=EndKind.CONNECT_FAILED, detail="refused"),
        SessionEnd(kind=EndKind.NO_READY, detail="no onready"),
    ]
)
any_ends = st.one_of(
    retryable_ends,
    st.builds(SessionEnd, kind=st.sampled_from(list(EndKind)), detail=st.just("x")),
)


class ReconnectMachine(RuleBasedStateMachine):
    """Random stories of drops, attempts and readies; the limits always hold."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = ReconnectPolicy(
            max_attempts=3, initial_delay=0.5, max_delay=4.0, max_downtime=10.0
        )
        self.r = Reconnector(self.policy, REQUEST)
        self.now = 0.0
        self.down_since: float | None = None
        self.attempts_this_gap = 0
        self.ids = 0
        self.last_id: str | None = None

    def _tick(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.r.phase is ReconnectPhase.LIVE)
    @rule(end=any_ends, dt=st.floats(0, 5), entropy=entropies)
    def live_connection_ends(self, end: SessionEnd, dt: float, entropy: float) -> None:
        self._tick(dt)
        out = self.r.ended(end, self.now, entropy)
        if not end.kind.retryable:
            assert out is None and self.r.phase is ReconnectPhase.ENDED
            return
        assert isinstance(out, Reconnecting) and out.attempt == 1
        self.down_since = self.now
        self.attempts_this_gap = 1
        self._check_start(out)

    def _check_start(self, out: Reconnecting) -> None:
        assert self.down_since is not None
        assert self.now + out.delay - self.down_since < self.policy.max_downtime
        assert 0.0 <= out.delay <= self.policy.max_delay

    @precondition(lambda self: self.r.phase is ReconnectPhase.WAITING)
    @rule(dt=st.floats(0, 5))
    def attempt(self, dt: float) -> None:
        self._tick(dt)
        request = self.r.attempt(self.now)
        # Only ever the original request, continued or not.
        assert dataclasses.replace(request, session_id=REQUEST.session_id) == REQUEST
        assert request.session_id in (None, self.last_id)

    @precondition(lambda self: self.r.phase is ReconnectPhase.CONNECTING)
    @rule(end=any_ends, dt=st.floats(0, 5), entropy=entropies)
    def attempt_fails(self, end: SessionEnd, dt: float, entropy: float) -> None:
        self._tick(dt)
        out = self.r.ended(end, self.now, entropy)
        if isinstance(out, Reconnecting):
            self.attempts_this_gap += 1
            assert out.attempt == self.attempts_this_gap <= self.policy.max_attempts
            self._check_start(out)
        else:
            assert isinstance(out, ReconnectFailed)
            assert self.r.phase is ReconnectPhase.ENDED

    @precondition(lambda self: self.r.phase in (ReconnectPhase.LIVE, ReconnectPhase.CONNECTING))
    @rule(dt=st.floats(0, 5), with_id=st.booleans())
    def ready(self, dt: float, with_id: bool) -> None:
        self._tick(dt)
        was_connecting = self.r.phase is ReconnectPhase.CONNECTING
        self.ids += 1
        new_id = f"s{self.ids}" if with_id else None
        out = self.r.ready(new_id, self.now)
        if was_connecting:
            assert isinstance(out, Reconnected)
            assert self.down_since is not None
            assert out.downtime == pytest.approx(self.now - self.down_since)
            assert out.attempts == self.attempts_this_gap
            assert out.continued == (out.fresh_reason is None)
        else:
            assert out is None
        if new_id is not None:
            self.last_id = new_id
        assert self.r.phase is ReconnectPhase.LIVE

    @precondition(lambda self: self.r.phase is ReconnectPhase.ENDED)
    @rule()
    def ended_call_accepts_nothing(self) -> None:
        for misuse in (
            lambda: self.r.attempt(self.now),
            lambda: self.r.ready("x", self.now),
            lambda: self.r.ended(LOST, self.now, 0.0),
        ):
            with pytest.raises(LocalProtocolError):
                misuse()
        self.r = Reconnector(self.policy, REQUEST)  # the next call
        self.last_id = None

    @invariant()
    def deadline_only_during_a_gap(self) -> None:
        gap = self.r.phase in (ReconnectPhase.WAITING, ReconnectPhase.CONNECTING)
        assert (self.r.deadline() is not None) == gap


ReconnectMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30)
TestReconnectMachine = ReconnectMachine.TestCase
