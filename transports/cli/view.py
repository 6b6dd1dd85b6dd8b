"""What the person sees: a live panel on a terminal (rich), plain lines otherwise.

Both views take the same calls: :meth:`View.event` for every session event,
:meth:`View.level` for audio levels, :meth:`View.progress` for the ``--input`` file.
Transcript and response lines are shown as they firm up: a partial replaces the previous
partial of the same speaker, a final line stays.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from millis_proto import (
    AgentStateChanged,
    AnswerLatency,
    BadMessage,
    ConnectionClosed,
    Event,
    FunctionCall,
    Ready,
    ResponseText,
    SessionEnded,
    Transcript,
    UnknownMessage,
)

__all__ = ["PlainView", "RichView", "View", "make_view"]


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
        return f"latency: {event.ms:.0f} ms"
    if isinstance(event, BadMessage):
        return f"warning: {event.reason}"
    if isinstance(event, UnknownMessage):
        return f"message {event.method}: {event.data!r}"
    if isinstance(event, SessionEnded):
        return "the agent ended the session"
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

    def close(self) -> None:
        """Stop drawing."""


class PlainView(View):
    """One line per meaningful event, for pipes, logs and CI."""

    def __init__(self, out: IO[str] | None = None, *, secret: str | None = None) -> None:
        self._out = out if out is not None else sys.stdout
        self._secret = secret or None

    def event(self, t: float, event: Event) -> None:
        line = _line_for(event)
        if line is not None:
            if self._secret is not None:
                line = line.replace(self._secret, "***")
            self._out.write(f"[{t:7.2f}] {line}\n")
            self._out.flush()


class RichView(View):
    """A live panel: conversation lines, agent state, level meters, input progress."""

    def __init__(self, *, secret: str | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._secret = secret or None
        self._lines: list[str] = []
        self._partial: dict[str, str] = {}
        self._state = "idle"
        self._levels = {"user": -90.0, "agent": -90.0}
        self._progress: float | None = None
        self._latency: float | None = None
        self._live = Live(
            self._render(), console=self._console, refresh_per_second=12, transient=False
        )
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        convo = Text()
        for line in self._lines[-12:]:
            shown = line if self._secret is None else line.replace(self._secret, "***")
            convo.append(shown + "\n")
        for who, text in self._partial.items():
            convo.append(f"{who}: {text}…\n", style="dim")
        status = Table.grid(padding=(0, 2))
        status.add_row(
            Text(f"agent: {self._state}", style="bold"),
            Text(f"latency: {self._latency:.0f} ms" if self._latency is not None else ""),
        )
        for source in ("user", "agent"):
            db = max(-60.0, self._levels[source])
            status.add_row(f"{source:>5} level", ProgressBar(total=60, completed=db + 60, width=30))
        if self._progress is not None:
            status.add_row("input", ProgressBar(total=1.0, completed=self._progress, width=30))
        return Panel(Group(convo, status), title="millis-proto")

    def _refresh(self) -> None:
        self._live.update(self._render())

    def event(self, t: float, event: Event) -> None:
        if isinstance(event, Transcript):
            self._speech("you", event.text, event.is_final)
        elif isinstance(event, ResponseText):
            self._speech("agent", event.text, event.is_final)
        elif isinstance(event, AgentStateChanged):
            self._state = event.state.value
        elif isinstance(event, AnswerLatency):
            self._latency = event.ms
        else:
            line = _line_for(event)
            if line is not None:
                self._lines.append(line)
        self._refresh()

    def _speech(self, who: str, text: str, final: bool) -> None:
        if final:
            self._partial.pop(who, None)
            self._lines.append(f"{who}: {text}")
        else:
            self._partial[who] = text

    def level(self, source: str, rms_dbfs: float) -> None:
        self._levels[source] = rms_dbfs
        self._refresh()

    def progress(self, fraction: float) -> None:
        self._progress = fraction
        self._refresh()

    def close(self) -> None:
        self._live.stop()


def make_view(plain: bool = False, *, secret: str | None = None) -> View:
    """A live view on a terminal (when rich is installed), plain lines otherwise.

    ``secret`` (the public key) is replaced by ``***`` wherever a server message shows it.
    """
    if not plain and sys.stdout.isatty():
        try:
            return RichView(secret=secret)
        except ImportError:
            pass
    return PlainView(secret=secret)
