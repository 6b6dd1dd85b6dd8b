"""The bounded event queue: never blocks the producer, drops the oldest, says so."""

from __future__ import annotations

import anyio
import pytest

from millis_proto import ConfigError, Pause, Transcript, Unpause
from transports import EventsDropped
from transports._queue import EventQueue

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def transcript(i: int) -> Transcript:
    return Transcript(text=f"t{i}", is_final=True)


async def drain(queue: EventQueue) -> list[object]:
    out: list[object] = []
    while (event := await queue.get()) is not None:
        out.append(event)
    return out


async def test_fifo_then_end() -> None:
    queue = EventQueue(4)
    queue.put(Pause())
    queue.put(Unpause())
    queue.end()
    queue.put(Pause())  # after the end: ignored
    assert await drain(queue) == [Pause(), Unpause()]
    assert await queue.get() is None  # and stays ended


async def test_overflow_drops_the_oldest_and_reports_the_gap_first() -> None:
    queue = EventQueue(3)
    for i in range(10):
        queue.put(transcript(i))  # never blocks
    queue.end()
    assert await drain(queue) == [
        EventsDropped(count=7),
        transcript(7),
        transcript(8),
        transcript(9),
    ]
    assert queue.dropped == 7


async def test_a_gap_after_reading_is_reported_where_it_happened() -> None:
    queue = EventQueue(2)
    queue.put(transcript(0))
    assert await queue.get() == transcript(0)
    for i in range(1, 6):
        queue.put(transcript(i))
    queue.end()
    assert await drain(queue) == [EventsDropped(count=3), transcript(4), transcript(5)]


async def test_every_waiting_reader_is_woken() -> None:
    queue = EventQueue(4)
    got: list[object] = []

    async def reader() -> None:
        got.append(await queue.get())

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        group.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        queue.put(Pause())
        await anyio.wait_all_tasks_blocked()
        queue.end()
    assert sorted(map(repr, got)) == sorted([repr(Pause()), "None"])


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_size_must_be_a_positive_integer(size: object) -> None:
    with pytest.raises(ConfigError, match="max_queued_events"):
        EventQueue(size)  # type: ignore[arg-type]
