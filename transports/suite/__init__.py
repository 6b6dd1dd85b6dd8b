"""Voice-agent test suites: scripted callers, verdicts, turn latency, reports.

* :mod:`.format` — the suite file (TOML or JSON), parsed and validated (pure).
* :mod:`.wer` — word error rate (pure).
* :mod:`.measure` — the call log, per-turn measurements and their events (pure).
* :mod:`.verdicts` — expectations judged against measurements (pure).
* :mod:`.caller` — the scripted caller on a live session (paced on the session's clock).
* :mod:`.runner` — run a case on any session factory, or a whole suite.

``millis-proto test SUITE`` is the command line; ``transports.pytest_plugin`` runs suites
as pytest items.
"""

from __future__ import annotations

from .caller import ScriptedCaller, play_case
from .format import Case, CaseExpect, Suite, TurnExpect, TurnSpec, parse_suite
from .measure import CallerSpeech, InterruptionStop, TranscriptScore, TurnLatency
from .runner import (
    CaseResult,
    LoadedSuite,
    OpenSession,
    SuiteResult,
    case_audio,
    case_request,
    load_suite,
    local_opener,
    run_case,
    run_suite,
)
from .verdicts import Verdict, evaluate
from .wer import phrase_error_rate, word_error_rate

__all__ = [
    "CallerSpeech",
    "Case",
    "CaseExpect",
    "CaseResult",
    "InterruptionStop",
    "LoadedSuite",
    "OpenSession",
    "ScriptedCaller",
    "Suite",
    "SuiteResult",
    "TranscriptScore",
    "TurnExpect",
    "TurnLatency",
    "TurnSpec",
    "Verdict",
    "case_audio",
    "case_request",
    "evaluate",
    "load_suite",
    "local_opener",
    "parse_suite",
    "phrase_error_rate",
    "play_case",
    "run_case",
    "run_suite",
    "word_error_rate",
]
