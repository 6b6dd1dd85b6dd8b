"""A Millis-compatible voice agent as pure objects: no I/O, no clock, no randomness.

* :class:`AgentSession` ties a server (a ``ServerConnection``) to a
  :class:`LocalAgent`; the I/O layer feeds it events and calls ``on_tick`` at
  ``get_timer()``.
* :class:`LocalAgent` listens (energy VAD and turn detection, :mod:`.turns`), answers
  (echo by default, or a :class:`Scenario`), handles barge-in like Millis (``pause`` /
  ``unpause`` / ``clear``) and ends sessions.
* :func:`offline_call` holds a whole call against the agent in virtual time, with no
  sockets and no event loop, and returns a :class:`CallSummary` (memory flat however long).
* :func:`load_scenario` reads scripted conversations (JSON or TOML, see ``SCENARIOS.md``).
* Speech synthesis and WAV files live outside the core: inject a :data:`Voice` and clips
  through :class:`AgentSetup`. The built-in :func:`tone_voice` beeps once per word.
"""

from __future__ import annotations

from .local_agent import (
    MAX_ANSWER_SECONDS,
    SPEECH_TRANSITIONS,
    TRANSITIONS,
    AgentPhase,
    AgentSetup,
    AgentTrigger,
    LocalAgent,
    ServerSender,
    SpeechAction,
)
from .offline import CallSummary, EndReason, offline_call
from .scenario import ECHO_TURN, FunctionCallSpec, MessageSpec, Scenario, Turn, load_scenario
from .session import AgentSession
from .store import SessionIdCounter, SessionRecord, SessionStore, TranscriptLine
from .stream import AnswerStream
from .turns import (
    SpeechConfirmed,
    SpeechDiscarded,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from .vad import FRAME_MS, FRAME_SAMPLES, EnergyVad, VadFrame, level_dbfs
from .voice import Voice, tone_voice

__all__ = [
    "ECHO_TURN",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "MAX_ANSWER_SECONDS",
    "SPEECH_TRANSITIONS",
    "TRANSITIONS",
    "AgentPhase",
    "AgentSession",
    "AgentSetup",
    "AgentTrigger",
    "AnswerStream",
    "CallSummary",
    "EndReason",
    "EnergyVad",
    "FunctionCallSpec",
    "LocalAgent",
    "MessageSpec",
    "Scenario",
    "SessionIdCounter",
    "SessionRecord",
    "ServerSender",
    "SessionStore",
    "SpeechAction",
    "SpeechConfirmed",
    "SpeechDiscarded",
    "SpeechStarted",
    "TranscriptLine",
    "Turn",
    "TurnConfig",
    "TurnDetector",
    "TurnEnded",
    "TurnEvent",
    "VadFrame",
    "Voice",
    "level_dbfs",
    "load_scenario",
    "offline_call",
    "tone_voice",
]
