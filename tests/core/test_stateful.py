"""Hypothesis state machine: random interleavings of server messages and client actions.

An independent model tracks every agent sample by a sequence number (the sample's value), so
the invariants are exact: no sample lost or duplicated (also across pauses), nothing from
before a ``clear`` played after it, the agent-state table respected, nothing sent after close,
every buffer within its bound.
"""

from __future__ import annotations

import array
from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from millis_proto import (
    AgentState,
    ClientConfig,
    CloseRequest,
    LocalProtocolError,
    MessageClient,
    PreReadyAudio,
    StartRequest,
)

CAPACITY_SECONDS = 0.1  # 1600 samples, small enough for overflow to happen
PREREADY_SECONDS = 0.02
GRACE_MS = 5  # 80 samples of silence before "playback finished"


def stream_bytes(start_byte: int, n: int) -> bytes:
    """Bytes ``start_byte .. start_byte+n`` of the s16le stream whose sample i has value i."""
    first = start_byte // 2
    last = (start_byte + n + 1) // 2 + 1
    samples = array.array("H", (i & 0xFFFF for i in range(first, last))).tobytes()
    off = start_byte - first * 2
    return samples[off : off + n]


class ClientMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = MessageClient(
            StartRequest(public_key="k", agent_id="a"),
            ClientConfig(
                max_playback_seconds=CAPACITY_SECONDS,
                ping_every_packets=7,
                pre_ready_buffer_seconds=PREREADY_SECONDS,
                pre_ready_audio=PreReadyAudio.BUFFER,
                drain_grace_ms=GRACE_MS,
            ),
        )
        self.client.start(0.0)
        self.now = 0.0
        self.pos = 0  # next byte of the agent stream
        self.queue: deque[int] = deque()  # model: samples waiting, oldest first
        self.paused = False
        self.state = AgentState.IDLE
        self.cleared_upto = -1  # highest sample number that a clear discarded
        self.closed = False
        self.starved = 0
        self.sent_after_close: list[object] = []
        self.ready = False
        self.user_bytes_in = 0
        self.user_bytes_out = 0
        self.capacity = int(CAPACITY_SECONDS * 16000)

    # --- server -> client -----------------------------------------------------------------

    @rule(n=st.integers(min_value=1, max_value=801))
    def agent_audio(self, n: int) -> None:
        data = stream_bytes(self.pos, n)
        self.starved = 0
        start = self.pos
        self.pos += n
        self.client.receive_message(data, self.now)
        # whole samples completed by this frame, in the model
        first = start // 2  # sample i completes with byte 2i+1
        end = self.pos // 2
        for i in range(first, end):
            if len(self.queue) < self.capacity:
                self.queue.append(i)
        if self.state in (AgentState.IDLE, AgentState.PREPARE_ANSWER):
            self.state = AgentState.ANSWER

    @rule()
    def pause(self) -> None:
        self.client.receive_message('{"method":"pause"}', self.now)
        self.paused = True
        self.state = AgentState.PAUSE

    @rule()
    def unpause(self) -> None:
        self.client.receive_message('{"method":"unpause"}', self.now)
        self.paused = False
        if self.state is AgentState.PAUSE:
            self.state = AgentState.ANSWER

    @rule()
    def clear(self) -> None:
        self.client.receive_message('{"method":"clear"}', self.now)
        if self.queue:
            self.cleared_upto = max(self.cleared_upto, self.queue[-1])
        self.cleared_upto = max(self.cleared_upto, self.pos // 2 - 1)
        self.queue.clear()
        self.paused = False
        self.state = AgentState.IDLE
        self.pos += self.pos & 1  # a new answer starts on a whole sample

    @rule()
    def start_answering(self) -> None:
        self.client.receive_message('{"method":"start_answering"}', self.now)
        self.state = AgentState.PREPARE_ANSWER

    @rule()
    def onready(self) -> None:
        self.client.receive_message('{"method":"onready","payload":{"session_id":"s"}}', self.now)
        self.ready = True
        self.state = AgentState.IDLE

    @rule(
        text=st.sampled_from(
            ['{"method":"mystery","data":[1]}', "{{{", "[]", '{"method":"ontranscript","data":"x"}']
        )
    )
    def other_text(self, text: str) -> None:
        self.client.receive_message(text, self.now)

    # --- client actions -------------------------------------------------------------------

    @rule(n=st.integers(min_value=0, max_value=700), dt=st.floats(0, 0.05))
    def pull(self, n: int, dt: float) -> None:
        self.now += dt
        chunk = self.client.pull_playback(n, self.now)
        assert len(chunk.pcm) == 2 * n
        got = array.array("H", chunk.pcm)
        if self.paused:
            assert chunk.real_samples == 0
        expected = (
            [self.queue.popleft() for _ in range(min(n, len(self.queue)))]
            if not self.paused
            else []
        )
        assert chunk.real_samples == len(expected)
        assert list(got[: chunk.real_samples]) == [i & 0xFFFF for i in expected]
        assert not any(got[chunk.real_samples :])  # the rest is silence
        assert all(i > self.cleared_upto for i in expected)
        if self.state is AgentState.ANSWER and not self.queue:
            self.starved += n - len(expected)
            if n and self.starved >= GRACE_MS * 16:
                self.state = AgentState.IDLE

    @precondition(lambda self: not self.closed)
    @rule(n=st.integers(min_value=0, max_value=999), muted=st.booleans())
    def send_audio(self, n: int, muted: bool) -> None:
        if muted:
            self.client.mute()
        else:
            self.client.unmute()
        self.client.send_audio(bytes([7]) * n, self.now)
        self.user_bytes_in += n

    @precondition(lambda self: self.closed)
    @rule()
    def send_after_close_raises(self) -> None:
        try:
            self.client.send_audio(b"\0\0", self.now)
        except LocalProtocolError:
            pass
        else:
            raise AssertionError("audio accepted after close")

    @rule()
    def close(self) -> None:
        self.client.close(1000, "")
        self.closed = True

    @rule()
    def drain_outgoing(self) -> None:
        out = self.client.messages_to_send()
        if CloseRequest(1000, "") in out:
            assert out[-1] == CloseRequest(1000, "")  # nothing after the close
            self.closed_drained = True
        elif getattr(self, "closed_drained", False):
            assert out == [], "something was sent after the close"
        for m in out:
            if isinstance(m, bytes):
                self.user_bytes_out += len(m)
                assert self.ready, "audio went out before onready under the BUFFER policy"
        self.client.events()

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def state_matches_model(self) -> None:
        assert self.client.agent_state is self.state

    @invariant()
    def buffers_within_bounds(self) -> None:
        assert self.client.playback.queued_samples == len(self.queue)
        assert self.client.playback.queued_samples <= self.capacity
        assert self.client._held_bytes <= PREREADY_SECONDS * 32000

    @invariant()
    def user_audio_conserved(self) -> None:
        c = self.client
        held = c._held_bytes
        out_pending = sum(len(m) for m in c._out if isinstance(m, bytes))
        accounted = (
            self.user_bytes_out
            + out_pending
            + held
            + c._aligner.pending
            + 2 * c.pre_ready_dropped_samples
        )
        assert accounted == self.user_bytes_in


TestClientMachine = ClientMachine.TestCase
TestClientMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
