"""The benchmark harness (``make bench``): it runs end to end and its floor speaks real RFC 6455.

No timing is asserted anywhere: on a shared machine only the benchmark's own ratios mean
something, and this test only checks that the harness produces its table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wsproto
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from bench.rfc6455 import BINARY, TEXT, FrameReader, encode

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_prints_the_whole_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--kinds", "floor", "trio-floor", "trio"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "20 ms frames, N=4" in out
    assert "8 ms frames, N=3" in out
    for kind in ("floor", "trio-floor", "trio"):
        row = next(line for line in out.splitlines() if line.startswith(kind + " "))
        # Two columns, each: CPU figure [range], x websockets (absent here), x floor, on-time %,
        # MB per session.
        assert (
            len(re.findall(r"\d+ \[\d+-\d+\]\s+(?:[\d.]+x|—)\s+[\d.]+x\s+[\d.]+%\s+-?[\d.]+", row))
            == 2
        )
    assert "load server CPU while a client ran" in out
    assert re.search(r"objects the garbage collector tracks, per session, .*trio -?\d+", out)
    assert re.search(r"trio's own share.*20 ms: trio-floor [\d.]+x the floor, trio [\d.]+x", out)
    assert re.search(r"^  trio\s+[≥<]?\d+\s+probes \d+: [\d.]+ %", out, re.M)
    assert re.search(r"^  trio-floor\s+[≥<]?\d+\s+probes \d+: [\d.]+ %", out, re.M)
    assert re.search(r"trio's knee against trio-floor's \(not judged\): trio [≥<]?\d+ / ", out)
    assert re.search(r"trio knee / websockets knee >= 1.0 \(same run\): —", out)
    assert re.search(r"trio holds >= 400 sessions per core: .*not this box's", out)
    assert re.search(r"virtual time.*x real time", out)
    assert re.search(r"import .*wsproto \d+ ms.*millis_proto \d+ ms", out)
    if shutil.which("valgrind"):
        counts = re.search(
            r"import in instructions .*: wsproto (\d+) M, .* (\d+) M = ([\d.]+)x", out
        )
        assert counts is not None, out
        assert int(counts[1]) > 50  # wsproto's import is real work: ~200 M instructions
        assert float(counts[3]) == pytest.approx(int(counts[2]) / int(counts[1]), abs=0.02)


def _server_pair() -> wsproto.WSConnection:
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    server = wsproto.WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return server


@given(payloads=st.lists(st.binary(max_size=70_000) | st.text(max_size=300), max_size=6))
def test_floor_frames_are_what_wsproto_reads(payloads: list[bytes | str]) -> None:
    """The floor's masked client frames parse in wsproto as the same messages."""
    server = _server_pair()
    for p in payloads:
        frame = encode(TEXT, p.encode(), masked=True) if isinstance(p, str) else None
        server.receive_data(frame or encode(BINARY, p, masked=True))  # type: ignore[arg-type]
        (event,) = server.events()
        assert isinstance(event, TextMessage if isinstance(p, str) else BytesMessage)
        assert event.data == p


@given(
    payloads=st.lists(st.binary(max_size=70_000), max_size=6),
    split=st.integers(min_value=1, max_value=5000),
)
def test_floor_reads_what_wsproto_sends(payloads: list[bytes], split: int) -> None:
    """wsproto's server frames, cut at any size, come out of the floor's reader whole."""
    server = _server_pair()
    wire = b"".join(server.send(BytesMessage(data=p)) for p in payloads)
    reader = FrameReader()
    frames = []
    for i in range(0, len(wire), split):
        frames += reader.feed(wire[i : i + split])
    assert frames == [(BINARY, p) for p in payloads]


def _options(knee_runs: int) -> Any:
    from bench.run import Options

    return Options(1, 0.1, 0.3, 600, 6, 0.2, 1, ["trio"], [(20, 100)], knee_runs=knee_runs)


def test_a_knee_probe_holds_only_if_every_run_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run

    # On time 99 % up to 200 sessions; above, every other run is a lucky 99 % window.
    runs: list[int] = []

    def fake_run(server: Any, kind: str, n: int, period_ms: int, opts: Any) -> dict[str, Any]:
        runs.append(n)
        lucky = len(runs) % 2 == 1
        return {"on_time_pct": 99.0 if n <= 200 or lucky else 60.0}

    monkeypatch.setattr(bench.run, "run_client", fake_run)
    knees = bench.run.knees_interleaved(None, {"trio": 0.85e6 / 200}, _options(knee_runs=2))  # type: ignore[arg-type]
    n, mark, probes = knees["trio"]
    assert (n, mark) == (200, "")
    assert all(pct < 95 for pn, pct, _ in probes if pn > 200)
    assert runs.count(200) == 2  # a held load is run twice


def test_the_knee_searches_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe of each kind in turn, the order reversed every round: a machine that
    slows down during the search cannot favour the kind probed first."""
    import bench.run

    limits = {"websockets": 300, "trio": 250, "asyncio": 425}
    order: list[str] = []

    def fake_run(server: Any, kind: str, n: int, period_ms: int, opts: Any) -> dict[str, Any]:
        if not order or order[-1] != kind:
            order.append(kind)
        return {"on_time_pct": 99.0 if n <= limits[kind] else 50.0, "gc_max_ms": 12.5}

    monkeypatch.setattr(bench.run, "run_client", fake_run)
    start = dict.fromkeys(limits, 850000.0 / 200)
    knees = bench.run.knees_interleaved(None, start, _options(knee_runs=2))  # type: ignore[arg-type]
    assert {kind: knees[kind][:2] for kind in limits} == {
        "websockets": (300, ""),
        "trio": (250, ""),
        "asyncio": (425, ""),
    }
    assert list(knees) == list(limits)
    # (runs of one probe are back to back; asyncio's two probes at the turn are too)
    assert order[:5] == ["websockets", "trio", "asyncio", "trio", "websockets"]
    # Every kind probed more than once, never twice in a row while the others search.
    assert all(len(probes) >= 3 for _, _, probes in knees.values())
    assert len(order) >= 2 * min(len(probes) for _, _, probes in knees.values())
    assert all(pause == 12.5 for _, _, probes in knees.values() for _, _, pause in probes)


def test_the_report_judges_the_knee_against_websockets_in_the_same_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.run import Cell, print_targets

    knees = {
        "websockets": (175, "", []),
        "trio": (200, "", []),
        "asyncio": (150, "", []),
        "floor": (275, "", []),
    }
    run = {"virtual_s": 3600, "cpu_s": 1.0, "rss_end_kb": 10, "rss_tenth_kb": 10}
    imports = {
        "median_ms": {"millis_proto": 20, "millis_proto.wire": 40, "wsproto": 15},
        "transports_trio_loads": [],
    }
    print_targets({("trio", 20): Cell()}, knees, run, imports, _options(2))
    out = capsys.readouterr().out
    assert re.search(
        r"met\s+trio knee / websockets knee >= 1.0 \(same run\): 200 / 175 = 1.14", out
    )
    assert re.search(r"MISSED\s+asyncio knee / websockets knee >= 1.0 .*: 150 / 175 = 0.86", out)
    # Absolute figures are shown, never judged: they measure the box.
    assert re.search(r"shown\s+trio holds >= 400 sessions per core: 200, not reached ", out)
    assert re.search(
        r"MISSED\s+import millis_proto as a program that connects uses it "
        r"\(millis_proto.wire\) <= 1.33x wsproto .*: 2.67x \(the bare, lazy package: 20.0 ms\)",
        out,
    )
    assert re.search(r"shown\s+import millis_proto.wire <= wsproto \+ 10 ms: \+25 ms", out)
    assert not re.search(r"(met|MISSED)\s+\S+ holds >= 400", out)
    assert "import millis_proto <=" not in out  # the lazy bare import is not judged


def test_the_import_target_is_judged_as_a_ratio_in_the_same_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A slow box: wsproto itself takes twice the 30 ms, and the package adds 14 ms,
    # which is 1.25x: met, though 14 ms is over the absolute 10 ms (shown, not judged).
    from bench.run import Cell, print_targets

    run = {"virtual_s": 3600, "cpu_s": 1.0, "rss_end_kb": 10, "rss_tenth_kb": 10}
    imports = {
        "median_ms": {"millis_proto": 0.4, "millis_proto.wire": 70, "wsproto": 56},
        "transports_trio_loads": [],
    }
    print_targets({("trio", 20): Cell()}, {}, run, imports, _options(2))
    out = capsys.readouterr().out
    assert re.search(r"met\s+import millis_proto .* <= 1.33x wsproto .*: 1.25x", out)
    assert re.search(r"shown\s+import millis_proto.wire <= wsproto \+ 10 ms: \+14 ms", out)
    assert re.search(r"n/a\s+trio holds >= 400", out)  # no knee measured: nothing shown


@given(
    n=st.integers(min_value=1, max_value=40),
    period_ms=st.sampled_from([8, 20]),
    ready_ms=st.integers(min_value=0, max_value=500),
    warmup_ms=st.integers(min_value=0, max_value=300),
    measure_ms=st.integers(min_value=50, max_value=500),
)
def test_the_window_counts_every_scheduled_frame_sent_or_not(
    n: int, period_ms: int, ready_ms: int, warmup_ms: int, measure_ms: int
) -> None:
    """The on-time share's denominator is the schedule itself: the frames each session's
    pacer would send in the window, whether it got to send them or not; and pacing goes on
    past the window's end, so no session starts its goodbye inside it."""
    from bench.clients import Plan

    # The grid is offset by a fraction of a microsecond from the window's whole-millisecond
    # edges, as on a real clock: a frame due exactly on an edge is in or out by rounding.
    origin = 100.0000123
    plan = Plan(n, period_ms / 1000, warmup_ms / 1000, measure_ms / 1000, origin=origin)
    plan.start(100.0 + ready_ms / 1000)
    expected = 0
    for index in range(n):
        due = plan.first(index, 100.0)
        while plan.running(due):
            expected += plan.warm_end <= due < plan.meas_end
            due += plan.period
        assert due >= plan.meas_end + 0.5  # still pacing well after the window
    assert plan.scheduled() == expected
    plan.sent(plan.warm_end, plan.warm_end + 0.001)  # one frame sent, on time
    assert plan.sent_in_window == 1 and plan.on_time == 1
