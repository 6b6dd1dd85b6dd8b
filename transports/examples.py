"""The sample files that ship inside the package, for examples and first tries.

They are package data, so they exist wherever millis-proto is installed — a wheel in a
fresh virtual environment too — and the README's examples use them instead of paths in the
source tree::

    from transports.examples import demo_wav, example_scenario

    converse(demo_wav(), scenario=example_scenario())

* :func:`demo_wav` — a person asking "What's the weather like in Paris today?" (about
  4 s of espeak-ng speech, 16 kHz mono 16-bit, the protocol's own format).
* :func:`demo_scenario` — the one-turn scenario ``millis-proto demo`` plays: a
  ``get_weather`` tool call and a spoken answer, then the agent ends the session.
* :func:`example_scenario` — a fuller scenario: a greeting, three turns with a tool call,
  an ``ai_action`` and a custom ``open_web_form`` message, and ending rules (the format is
  described in the scenario documentation, ``millis_proto/agent/SCENARIOS.md``).
* :func:`suite_scenario` — the scenario the example test suite (``examples/suite.toml``)
  runs against offline: three weather turns, the second one an interruption.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["demo_scenario", "demo_wav", "example_scenario", "suite_scenario"]


def _data(name: str) -> Path:
    # A regular (unzipped) installation: the resource is a real file with a real path.
    return Path(str(files("transports.cli") / "data" / name))


def demo_wav() -> Path:
    """The bundled spoken question, a 16 kHz mono 16-bit WAV."""
    return _data("demo.wav")


def demo_scenario() -> Path:
    """The scenario ``millis-proto demo`` uses (JSON)."""
    return _data("demo_scenario.json")


def example_scenario() -> Path:
    """The example scenario (JSON; the same one in TOML is ``scenario.toml`` next to it)."""
    return _data("scenario.json")


def suite_scenario() -> Path:
    """The local agent's scenario for the example test suite (JSON)."""
    return _data("suite_scenario.json")
