"""The load caller's pacer: one timer for every call, steps in due order, none skipped.

Driven on a real asyncio loop with real time (a few hundred milliseconds), with stand-in
calls that record when each step ran; the calls of a real run are covered end to end by
``tests/cli/test_cli_load.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from transports.load.caller import Pacer


class Steps:
    """A stand-in call: ``count`` steps every ``period`` seconds, recording each."""

    def __init__(self, name: str, log: list[tuple[str, float, float]], count: int, period: float):
        self.name, self.log, self.left, self.period = name, log, count, period

    async def step(self, due: float) -> float | None:
        self.log.append((self.name, due, asyncio.get_running_loop().time()))
        self.left -= 1
        return due + self.period if self.left else None


def run(main: Any) -> Any:
    return asyncio.run(main())


def test_steps_run_in_due_order_and_never_early() -> None:
    log: list[tuple[str, float, float]] = []

    async def main() -> None:
        pacer = Pacer()
        task = asyncio.ensure_future(pacer.run())
        now = asyncio.get_running_loop().time()
        # Three calls at different phases of a 20 ms period, 5 steps each.
        for i, name in enumerate("abc"):
            pacer.add(Steps(name, log, 5, 0.02), now + 0.02 + i * 0.007)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        task.cancel()

    run(main)
    assert sorted(name for name, _, _ in log) == sorted("abc" * 5)
    dues = [due for _, due, _ in log]
    assert dues == sorted(dues)  # the heap hands them out in due order
    assert all(ran >= due for _, due, ran in log)  # and never before they are due
    for name in "abc":
        mine = [due for n, due, _ in log if n == name]
        assert [round(b - a, 6) for a, b in itertools.pairwise(mine)] == [0.02] * 4


def test_a_call_added_earlier_than_the_timer_wakes_the_pacer() -> None:
    log: list[tuple[str, float, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer()
        task = asyncio.ensure_future(pacer.run())
        now = loop.time()
        pacer.add(Steps("late", log, 1, 1.0), now + 0.5)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # the pacer now sleeps until the late one
        pacer.add(Steps("soon", log, 1, 1.0), loop.time() + 0.02)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()

    run(main)
    assert [(name, round(ran - due, 3) < 0.05) for name, due, ran in log] == [("soon", True)]
