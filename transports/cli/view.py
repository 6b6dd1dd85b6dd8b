"""What the person sees: a live panel on a terminal (rich), plain lines otherwise.

Both views take the same calls: :meth:`View.event` for every session event,
:meth:`View.level` for audio levels, :meth:`View.progress` for the ``--input`` file,
:meth:`View.turn_latency` for each measured turn and :meth:`View.note` for the command's
own remarks (fallbacks, "waiting for the server…"). Transcript and response lines are
shown as they firm up: a partial replaces the previous partial of the same speaker, a
final line stays. The live panel reads without colour: each level is a number and a bar
of filled blocks, labels sit in one column, and an elapsed clock runs in the title.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from millis_proto import (
    SAMPLE_RATE,
    AgentStateChanged,
    AnswerLatency,
    BadMessage,
    Clear,
    ConnectionClosed,
    Event,
    FunctionCall,
    Ready,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ResponseText,
    SessionEnded,
    Transcript,
    UnknownMessage,
)

from .._errors import redact
from .output import Lines

__all__ = ["PlainView", "RichView", "View", "level_bar", "make_view"]

#: The quietest level the meters show; anything below reads as an empty bar.
METER_FLOOR_DBFS = -60.0
#: Width of the level bars, in characters.
METER_WIDTH = 24
#: Conversation lines the live panel shows.
SHOWN_LINES = 12


def _ms(samples: int) -> str:
    return f"{samples * 1000 / SAMPLE_RATE:.0f} ms"


def level_bar(rms_dbfs: float, width: int = METER_WIDTH) -> str:
    """``"-23 dB ██████████░░░░"``: the level as a number and a bar that needs no colour."""
    fraction = min(1.0, max(0.0, (rms_dbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS))
    filled = round(fraction * width)
    shown = max(rms_dbfs, METER_FLOOR_DBFS)
    number = f"{shown:4.0f} dB" if rms_dbfs > METER_FLOOR_DBFS else " -∞ dB"
    return f"{number} {'█' * filled}{'░' * (width - filled)}"


def _line_for(event: Event) -> str | None:
    """The plain-text line for an event, or None when it is not worth a line."""
    if isinstance(event, Ready):
        return f"connected, session {event.session_id or '(no id)'}"
    if isinstance(event, Transcript) and event.is_final:
        return f"you:   {event.text}"
    if isinstance(event, ResponseText) and event.is_final:
        return f"agent: {event.text}"
    if isinstance(event, FunctionCall):
        return f"function call: {event.function}({event.params})"
    if isinstance(event, AgentStateChanged):
        return f"agent state: {event.state.value}"
    if isinstance(event, AnswerLatency):
        return f"latency reported by the server: {event.ms:.0f} ms"
    if isinstance(event, Clear):
        return (
            f"[you interrupted: {_ms(event.played_samples)} of the answer heard, "
            f"{_ms(event.dropped_samples)} dropped]"
        )
    if isinstance(event, BadMessage):
        return f"warning: {event.reason}"
    if isinstance(event, UnknownMessage):
        return f"message {event.method}: {event.data!r}"
    if isinstance(event, SessionEnded):
        return "the agent ended the session"
    if isinstance(event, Reconnecting):
        return f"reconnecting… attempt {event.attempt} in {event.delay:.1f} s ({event.cause})"
    if isinstance(event, Reconnected):
        how = "continued" if event.continued else f"fresh session: {event.fresh_reason}"
        return (
            f"reconnected, session {event.session_id or '(no id)'} ({how}) "
            f"after {event.downtime:.1f} s"
        )
    if isinstance(event, ReconnectFailed):
        return f"reconnecting failed: {event.reason}"
    if isinstance(event, ConnectionClosed):
        return f"closed ({event.code}{': ' + event.reason if event.reason else ''})"
    return None


class View:
    """Base view: ignores everything."""

    def event(self, t: float, event: Event) -> None:
        """Show a session event."""

    def level(self, source: str, rms_dbfs: float) -> None:
        """Show an audio level (``source`` is "user" or "agent")."""

    def progress(self, fraction: float) -> None:
        """Show how much of the input file has been sent (0..1)."""

    def turn_latency(self, t: float, seconds: float) -> None:
        """Show a measured turn latency (end of the user's speech to the agent's audio)."""

    def note(self, t: float, text: str) -> None:
        """Show a remark of the command itself."""

    def close(self) -> None:
        """Stop drawing."""


def _turn_line(seconds: float) -> str:
    return f"turn latency: {seconds * 1000:.0f} ms (end of your speech to the agent's audio)"


class PlainView(View):
    """One line per meaningful event, for pipes, logs and CI."""

    def __init__(self, out: Lines | None = None, *, secret: str | None = None) -> None:
        self._out = out if out is not None else Lines()
        self._secret = secret or None

    def _write(self, t: float, line: str) -> None:
        line = redact(line, self._secret)
        self._out.write(f"[{t:7.2f}] {line}")

    def event(self, t: float, event: Event) -> None:
        line = _line_for(event)
        if line is not None:
            self._write(t, line)

    def turn_latency(self, t: float, seconds: float) -> None:
        self._write(t, _turn_line(seconds))

    def note(self, t: float, text: str) -> None:
        self._write(t, text)


class RichView(View):
    """A live panel: conversation lines, agent state, level meters, input progress.

    ``clock`` gives the seconds since the call started, for the elapsed time in the title.
    """

    def __init__(
        self, *, secret: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._secret = secret or None
        started = time.monotonic()
        self._clock = clock if clock is not None else (lambda: time.monotonic() - started)
        # Only the last lines are drawn; older ones are not kept.
        self._lines: deque[str] = deque(maxlen=SHOWN_LINES)
        self._partial: dict[str, str] = {}
        self._state = "idle"
        self._levels = {"user": -100.0, "agent": -100.0}
        self._progress: float | None = None
        self._turn: float | None = None
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=12, transient=False
        )
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        convo = Text()
        for line in self._lines:
            convo.append(line + "\n")
        for who, text in self._partial.items():
            convo.append(f"{who + ':':<7}{text}…\n", style="dim")
        status = Table.grid(padding=(0, 2))
        status.add_column(min_width=13, no_wrap=True)  # one column for every label
        status.add_column(no_wrap=True)
        status.add_row(Text("agent state", style="bold"), Text(self._state, style="bold"))
        turn = f"{self._turn * 1000:.0f} ms" if self._turn is not None else "-"
        status.add_row("turn latency", turn)
        status.add_row("you", level_bar(self._levels["user"]))
        status.add_row("agent", level_bar(self._levels["agent"]))
        if self._progress is not None:
            filled = round(self._progress * METER_WIDTH)
            bar = "█" * filled + "░" * (METER_WIDTH - filled)
            status.add_row("input sent", f"{self._progress * 100:4.0f} %  {bar}")
        minutes, seconds = divmod(max(0.0, self._clock()), 60)
        title = f"millis-proto · {int(minutes):02d}:{seconds:04.1f}"
        return Panel(Group(convo, status), title=title)

    def _refresh(self) -> None:
        self._live.update(self._render())

    def event(self, t: float, event: Event) -> None:
        if isinstance(event, Transcript):
            self._speech("you", event.text or "", event.is_final is True)
        elif isinstance(event, ResponseText):
            self._speech("agent", event.text or "", event.is_final is True)
        elif isinstance(event, AgentStateChanged):
            self._state = event.state.value
        elif isinstance(event, AnswerLatency):
            pass  # the server's own figure; the panel shows the turn latency heard
        else:
            if isinstance(event, Reconnecting):
                self._state = "reconnecting…"
            elif isinstance(event, (Reconnected, ReconnectFailed)):
                self._state = "idle"
            line = _line_for(event)
            if line is not None:
                self._lines.append(redact(line, self._secret))
        self._refresh()

    def _speech(self, who: str, text: str, final: bool) -> None:
        text = redact(text, self._secret)  # partials are shown too
        if final:
            self._partial.pop(who, None)
            self._lines.append(f"{who + ':':<7}{text}")
        else:
            self._partial[who] = text

    def level(self, source: str, rms_dbfs: float) -> None:
        self._levels[source] = rms_dbfs
        self._refresh()

    def progress(self, fraction: float) -> None:
        self._progress = fraction
        self._refresh()

    def turn_latency(self, t: float, seconds: float) -> None:
        self._turn = seconds
        self._refresh()

    def note(self, t: float, text: str) -> None:
        self._lines.append(redact(text, self._secret))
        self._refresh()

    def close(self) -> None:
        self._live.stop()


def make_view(
    plain: bool = False,
    *,
    secret: str | None = None,
    out: Lines | None = None,
    clock: Callable[[], float] | None = None,
) -> View:
    """A live view on a terminal (when rich is installed), plain lines otherwise.

    ``out`` is where plain lines go (stdout by default); a live view is drawn only when
    that is a terminal's stdout. ``secret`` (the public key) is redacted
    wherever a server message shows it.
    """
    out = out if out is not None else Lines()
    if not plain and out.stream is sys.stdout and sys.stdout.isatty():
        try:
            return RichView(secret=secret, clock=clock)
        except ImportError:
            pass
    return PlainView(out, secret=secret)
