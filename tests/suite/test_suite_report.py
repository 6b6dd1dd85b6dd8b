"""The HTML report in headless Chromium: it loads without console errors, and the
screenshot shows the timeline (caller and agent speech in their colours)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from transports.suite import load_suite, run_suite
from transports.suite.report import render_report, timeline_svg

ROOT = Path(__file__).resolve().parents[2]
CALLER_BLUE = (0x3B, 0x7D, 0xD8)
AGENT_GREEN = (0x2E, 0x8B, 0x57)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("LOUD SKIP: Chromium is not installed (make test installs it as root)")
    return exe


def _headless(exe: str, page: Path, png: Path) -> str:
    """Load ``page``, screenshot it, return Chromium's log (console messages included)."""
    proc = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,900",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert png.exists(), proc.stderr[-2000:]
    return proc.stderr


def _console(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB(A) PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        previous = line
        rows.append(bytes(b for j in range(0, stride, channels) for b in line[j : j + 3]))
    return width, height, rows


def _count(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(1 for row in rows for x in range(0, len(row), 3) if row[x : x + 3] == needle)


def test_report_loads_without_console_errors_and_shows_the_timeline(tmp_path: Path) -> None:
    exe = _chromium()
    result = run_suite(load_suite(ROOT / "examples" / "suite.toml"), out_dir=tmp_path / "out")
    page = tmp_path / "report.html"
    page.write_text(render_report(result))
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']https?:""", html)  # self-contained
    log = _headless(exe, page, tmp_path / "shot.png")
    assert _console(log) == [], _console(log)
    _, _, rows = _png_pixels(tmp_path / "shot.png")
    # The first case's timeline is near the top: caller (blue) and agent (green) speech.
    assert _count(rows[:500], CALLER_BLUE) > 2000
    assert _count(rows[:500], AGENT_GREEN) > 2000


def test_the_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    exe = _chromium()
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefined();</script></body></html>")
    log = _headless(exe, page, tmp_path / "shot.png")
    assert any("notDefined" in line for line in _console(log))


def test_timeline_svg_draws_every_span_and_mark() -> None:
    from transports.suite.runner import Timeline

    svg = timeline_svg(
        Timeline(
            caller=((0.5, 1.5, 1), (3.0, 4.0, 2)),
            agent=((2.0, 3.05),),
            marks=((2.0, "function", "get_weather"), (3.02, "pause", ""), (3.3, "clear", "")),
            duration=5.0,
        )
    )
    assert svg.count('class="caller"') == 2
    assert svg.count('class="agent"') == 1
    assert 'class="mark pause"' in svg and 'class="mark clear"' in svg
    assert "get_weather" in svg
