"""The relay on a real store and the in-memory bus: what it publishes, in which order, and
how it writes that it did."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.bus.memory import MemoryBus
from adapter.bus.relay import Relay
from adapter.store.base import EventRecord
from adapter.store.sqlite import SqliteStore
from tests.conftest import eventually

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def event(n: int, conversation: str = "conv-1") -> EventRecord:
    attributes = {
        "specversion": "1.0",
        "id": f"ev-{n}",
        "source": "urn:uftp:CRO:cro.example.com",
        "type": "uftp.TestMessage",
        "time": "2024-05-01T08:00:00.000000Z",
        "datacontenttype": "text/xml; charset=utf-8",
        "correlationid": conversation,
    }
    return EventRecord(f"ev-{n}", "in.TestMessage", attributes, b"<TestMessage/>", T0)


class CountingStore(SqliteStore):
    """A SQLite store that counts the relay's mark writes, and can refuse them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.marks: list[list[int]] = []
        self.refuse_marks = 0

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        if self.refuse_marks:
            self.refuse_marks -= 1
            raise OSError("disk full")
        self.marks.append(list(seqs))
        await super().mark_published(seqs, at)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    counting = CountingStore(tmp_path / "relay.sqlite3")
    await counting.open()
    try:
        yield counting
    finally:
        await counting.close()


async def run_relay(store: CountingStore, bus: MemoryBus, **options: float) -> Relay:
    await bus.connect()
    relay = Relay(store, bus, poll_seconds=0.05, backoff_max=0.2, **options)
    store.listen_events(relay.wake)
    return relay


async def test_rounds_of_events_are_marked_in_few_writes_and_published_once(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, mark_seconds=0.3)
    task = asyncio.create_task(relay.run())
    try:
        for n in range(10):  # ten commits, each its own round
            await store.add_events([event(n, f"conv-{n}")])
            await eventually(lambda n=n: len(bus.published) == n + 1)
        await eventually(lambda: store.marks != [])
        assert len(store.marks) <= 2  # not one write per round
        assert sorted(seq for marks in store.marks for seq in marks) == list(range(1, 11))
        assert [e.id for _, e in bus.published] == [f"ev-{n}" for n in range(10)]
        assert await store.unpublished_events(100) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_mark_that_fails_is_written_later_and_nothing_is_sent_twice(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    store.refuse_marks = 2
    relay = await run_relay(store, bus, mark_seconds=0.01)
    task = asyncio.create_task(relay.run())
    try:
        await store.add_events([event(1), event(2)])
        await eventually(lambda: len(bus.published) == 2)
        await store.add_events([event(3)])  # rounds go on while the marks fail

        async def all_marked() -> bool:
            return await store.unpublished_events(100) == []

        await eventually(all_marked, timeout=5)
        assert [e.id for _, e in bus.published] == ["ev-1", "ev-2", "ev-3"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_stopping_writes_the_marks_of_what_was_confirmed(store: CountingStore) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, mark_seconds=60)
    task = asyncio.create_task(relay.run())
    await store.add_events([event(1), event(2)])
    await eventually(lambda: len(bus.published) == 2)
    assert store.marks == []  # not yet: the next batch of marks is a minute away
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await store.unpublished_events(100) == []  # a restart sends nothing again
