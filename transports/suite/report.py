"""The HTML report: one self-contained page (inline CSS, SVG, a little JS, audio as data).

For each case run: a pass/fail header, a timeline picture (caller speech, agent speech as
played, ``pause`` / ``unpause`` / ``clear``, function calls, the session's end), an audio
player with the stereo recording embedded as a base64 WAV (click the timeline to seek),
the turns with what was said, heard and answered and their latencies, and every
expectation with its measured value. Nothing is fetched from anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from .runner import CaseResult, SuiteResult, Timeline

__all__ = ["render_report", "write_report"]

_WIDTH = 960
_LEFT = 70  # room for the lane labels
_LANES = {"caller": 20, "agent": 50, "events": 84}
_HEIGHT = 120
_MARK_COLORS = {
    "pause": "#e69500",
    "unpause": "#3aa655",
    "clear": "#d62728",
    "function": "#8e44ad",
    "session ended": "#222222",
}

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
.summary { font-size: 1.1em; margin-bottom: 1.5em; }
section.case { border: 1px solid #ccc; border-radius: 6px; padding: 0 1em 1em; margin: 1.5em 0; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 4px; color: #fff; }
.badge { font-weight: 600; }
.badge.pass { background: #2e8b57; } .badge.fail { background: #c0392b; }
section.case.fail { border-color: #c0392b; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { border-bottom: 1px solid #eee; padding: .25em .4em; text-align: left; }
td { vertical-align: top; }
tr.bad td { background: #fdecea; }
svg.timeline { display: block; cursor: pointer; background: #fafafa; border: 1px solid #eee; }
svg text { font: 11px system-ui, sans-serif; }
audio { width: 100%; margin: .5em 0; }
.muted { color: #777; }
"""

_JS = """
document.querySelectorAll("section.case").forEach(function (section) {
  var svg = section.querySelector("svg.timeline");
  var audio = section.querySelector("audio");
  if (!svg || !audio) { return; }
  var head = svg.querySelector(".playhead");
  var left = Number(svg.dataset.left), width = Number(svg.dataset.width);
  var duration = Number(svg.dataset.duration);
  svg.addEventListener("click", function (event) {
    var box = svg.getBoundingClientRect();
    var x = (event.clientX - box.left) * (svg.viewBox.baseVal.width / box.width);
    var t = Math.max(0, Math.min(duration, (x - left) / width * duration));
    audio.currentTime = t;
    audio.play().catch(function () {});
  });
  audio.addEventListener("timeupdate", function () {
    var x = left + Math.min(audio.currentTime, duration) / duration * width;
    head.setAttribute("x1", x); head.setAttribute("x2", x);
  });
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def timeline_svg(timeline: Timeline) -> str:
    """The timeline picture of one call as an inline SVG element."""
    duration = max(timeline.duration, 0.001)
    width = _WIDTH - _LEFT - 10
    scale = width / duration

    def x(t: float) -> float:
        return round(_LEFT + max(0.0, min(t, duration)) * scale, 2)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" '
        f'role="img" aria-label="call timeline" data-left="{_LEFT}" data-width="{width}" '
        f'data-duration="{duration}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for lane, y in _LANES.items():
        parts.append(f'<text x="4" y="{y + 14}">{lane}</text>')
    step = _tick_step(duration)
    tick = 0.0
    while tick <= duration + 1e-9:
        parts.append(
            f'<line x1="{x(tick)}" x2="{x(tick)}" y1="10" y2="{_HEIGHT - 14}" stroke="#e5e5e5"/>'
            f'<text x="{x(tick)}" y="{_HEIGHT - 2}" text-anchor="middle" class="muted">'
            f"{tick:g} s</text>"
        )
        tick += step
    for start, end, turn in timeline.caller:
        parts.append(
            f'<rect class="caller" x="{x(start)}" y="{_LANES["caller"]}" '
            f'width="{max(x(end) - x(start), 1)}" height="20" fill="#3b7dd8">'
            f"<title>caller, turn {turn}: {start:.2f}-{end:.2f} s</title></rect>"
            f'<text x="{x(start) + 3}" y="{_LANES["caller"] + 14}" fill="#fff">{turn}</text>'
        )
    for start, end in timeline.agent:
        parts.append(
            f'<rect class="agent" x="{x(start)}" y="{_LANES["agent"]}" '
            f'width="{max(x(end) - x(start), 1)}" height="20" fill="#2e8b57">'
            f"<title>agent audio played: {start:.2f}-{end:.2f} s</title></rect>"
        )
    y = _LANES["events"]
    for t, kind, detail in timeline.marks:
        color = _MARK_COLORS.get(kind, "#555")
        label = f"{kind} {detail}".strip()
        if kind == "function":
            cx = x(t)
            parts.append(
                f'<polygon class="mark function" points="{cx},{y} {cx + 6},{y + 8} {cx},{y + 16} '
                f'{cx - 6},{y + 8}" fill="{color}"><title>{_e(label)} at {t:.2f} s</title>'
                f'</polygon><text x="{cx + 8}" y="{y + 12}" fill="{color}">{_e(detail)}</text>'
            )
        else:
            parts.append(
                f'<line class="mark {kind.replace(" ", "-")}" x1="{x(t)}" x2="{x(t)}" y1="14" '
                f'y2="{y + 18}" stroke="{color}" stroke-width="2" stroke-dasharray="4 2">'
                f"<title>{_e(label)} at {t:.2f} s</title></line>"
            )
    parts.append(
        f'<line class="playhead" x1="{_LEFT}" x2="{_LEFT}" y1="10" y2="{_HEIGHT - 14}" '
        'stroke="#000" stroke-width="1"/>'
    )
    legend = [("caller speech", "#3b7dd8"), ("agent speech", "#2e8b57")]
    legend += _MARK_COLORS.items()
    lx = float(_LEFT)
    for label, color in legend:
        parts.append(
            f'<rect x="{lx}" y="2" width="8" height="8" fill="{color}"/>'
            f'<text x="{lx + 11}" y="10" class="muted">{label}</text>'
        )
        lx += 16 + 6.2 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def _tick_step(duration: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300):
        if duration / step <= 12:
            return float(step)
    return float(math.ceil(duration / 12 / 60) * 60)


def _audio(result: CaseResult) -> str:
    if result.directory is None:
        return '<p class="muted">No recording (run with --out-dir or --report).</p>'
    path = result.directory / "recording.wav"
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="muted">The recording {_e(path)} could not be read.</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return (
        '<audio controls preload="metadata" '
        f'src="data:audio/wav;base64,{encoded}"></audio>'
        '<p class="muted">Stereo: the caller on the left, the agent (as played) on the right. '
        "Click the timeline to listen from there.</p>"
    )


def _turns_table(result: CaseResult) -> str:
    rows = []
    for turn in result.observation.turns:
        calls = "<br>".join(
            f"{_e(name)} <code>{_e(json.dumps(params, ensure_ascii=False))}</code>"
            for name, params in turn.functions
        )
        extra = f"<br><b>{_e(turn.error)}</b>" if turn.error else ""
        barge = " (barge-in)" if turn.barge_in else ""
        rows.append(
            "<tr>"
            f"<td>{turn.turn}{barge}</td><td>{_e(turn.said or '')}</td>"
            f"<td>{_e(turn.heard)}</td><td>{_e(turn.response)}{extra}</td><td>{calls}</td>"
            f"<td>{_ms(turn.received_ms)} / {_ms(turn.played_ms)}</td>"
            f"<td>{_ms(turn.answer_latency_ms)}</td>"
            f"<td>{'—' if turn.wer is None else f'{turn.wer:.2f}'}</td>"
            f"<td>{_ms(turn.interruption_ms) if turn.barge_in else ''}"
            f"{_e(turn.interruption_note)}</td>"
            "</tr>"
        )
    return (
        '<table class="turns"><tr><th>turn</th><th>caller said</th><th>agent heard</th>'
        "<th>agent answered</th><th>functions</th><th>latency received / played</th>"
        "<th>answer latency</th><th>WER</th><th>interruption stop</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _verdicts_table(result: CaseResult) -> str:
    rows = []
    for v in result.verdicts:
        where = "case" if v.turn is None else f"turn {v.turn}"
        rows.append(
            f'<tr class="{"ok" if v.passed else "bad"}"><td>{where}</td>'
            f"<td><code>{_e(v.expectation)}</code></td><td>{_e(v.expected)}</td>"
            f"<td>{_e(v.measured)}</td>"
            f'<td><span class="badge {"pass" if v.passed else "fail"}">'
            f"{'pass' if v.passed else 'fail'}</span></td></tr>"
        )
    return (
        '<table class="verdicts"><tr><th></th><th>expectation</th><th>expected</th>'
        "<th>measured</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _case_section(result: CaseResult, show_run: bool) -> str:
    status = "pass" if result.passed else "fail"
    run = f' <span class="muted">run {result.run}</span>' if show_run else ""
    errors = "".join(f"<p><b>{_e(e)}</b></p>" for e in result.observation.errors)
    return (
        f'<section class="case {status}"><h2><span class="badge {status}">{status.upper()}'
        f'</span> {_e(result.case.name)}{run} <span class="muted">'
        f"{result.observation.duration_ms / 1000:.1f} s</span></h2>{errors}"
        f"{timeline_svg(result.timeline)}{_audio(result)}"
        f"<h3>Turns</h3>{_turns_table(result)}<h3>Expectations</h3>{_verdicts_table(result)}"
        "</section>"
    )


def render_report(result: SuiteResult) -> str:
    """The whole report page."""
    runs = result.results
    passed = sum(r.passed for r in runs)
    rates = "".join(
        f"<li>{_e(case.name)}: {sum(r.passed for r in result.runs(case))}/"
        f"{len(result.runs(case))} passed</li>"
        for case in result.suite.cases
    )
    repeat = any(len(result.runs(case)) > 1 for case in result.suite.cases)
    status = "pass" if result.passed else "fail"
    body = "".join(_case_section(r, repeat) for r in runs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(result.suite.name)}: test report</title><style>{_CSS}</style></head>"
        f"<body><h1>{_e(result.suite.name)}</h1>"
        f'<p class="summary"><span class="badge {status}">{status.upper()}</span> '
        f"{passed} of {len(runs)} case runs passed.</p><ul>{rates}</ul>{body}"
        f"<script>{_JS}</script></body></html>\n"
    )


def write_report(result: SuiteResult, path: str | Path) -> None:
    """Write :func:`render_report` to ``path``."""
    Path(path).write_text(render_report(result), encoding="utf-8")
