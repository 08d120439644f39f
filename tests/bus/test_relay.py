"""The relay on a real store and the in-memory bus: what it publishes, in which order, and
how it writes that it did."""

# ruff: noqa: F811 - the fixture of the store contract is imported by name

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter.bus.events import CloudEvent
from adapter.bus.journal import EventJournal
from adapter.bus.memory import MemoryBus
from adapter.bus.relay import Relay
from adapter.store.base import EventRecord, StoredEvent
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role
from tests.conftest import eventually
from tests.store.test_store_contract import Backend, backend  # noqa: F401 - a fixture

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
    """A SQLite store that counts the relay's mark writes and reads of the outbox, can
    refuse the marks, and can commit more events while a read of the outbox is under way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.marks: list[list[int]] = []
        self.refuse_marks = 0
        self.reads = 0
        #: Committed (and so handed to the relay) at the start of the next read.
        self.during_next_read: list[EventRecord] = []

    async def unpublished_events(
        self, limit: int, *, skip: Collection[int] = ()
    ) -> list[StoredEvent]:
        self.reads += 1
        committed, self.during_next_read = self.during_next_read, []
        if committed:
            await self.add_events(committed)
        return await super().unpublished_events(limit, skip=skip)

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


async def run_relay(store: CountingStore, bus: MemoryBus, **options: Any) -> Relay:
    await bus.connect()
    relay = Relay(store, bus, **{"poll_seconds": 0.05, "backoff_max": 0.2, **options})
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


def published_ids(bus: MemoryBus) -> list[str]:
    return [event.id for _, event in bus.published]


async def test_the_events_of_commits_are_published_without_reading_them_back(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, poll_seconds=60)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.state == "idle")
        reads = store.reads  # the read at start: what an earlier process left
        for n in range(5):
            await store.add_events([event(n)])
            await eventually(lambda n=n: len(bus.published) == n + 1)
        assert published_ids(bus) == [f"ev-{n}" for n in range(5)]
        assert store.reads == reads  # handed by the store, not read back
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def journal_record(n: int) -> EventRecord:
    journal = EventJournal(domain="cro.example.com", role=Role.CRO, clock=lambda: T0)
    return journal.error("command", f"reason {n}", command_id=f"cmd-{n}")


async def test_the_journals_events_go_out_as_built_and_what_is_read_back_is_checked_again(
    store: CountingStore,
) -> None:
    # Handed by the store, the event the journal built and checked is published as it is;
    # read back from the outbox (here: left by an earlier process), it is made again from
    # its stored attributes, and checked again.
    left = journal_record(1)
    await store.add_events([left])
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, poll_seconds=60)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: len(bus.published) == 1)
        handed = journal_record(2)
        await store.add_events([handed])
        await eventually(lambda: len(bus.published) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    (_, first), (_, second) = bus.published
    assert second is handed.cloud_event
    assert first is not left.cloud_event
    assert first == CloudEvent.from_attributes(left.attributes, left.data) == left.cloud_event


async def test_a_lone_commit_goes_at_once_and_commits_in_quick_succession_linger(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, poll_seconds=60, linger_seconds=1.0)
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    try:
        await eventually(lambda: relay.state == "idle")
        started = loop.time()
        await store.add_events([event(1)])  # after a quiet spell: nothing to wait for
        await eventually(lambda: len(bus.published) == 1)
        assert loop.time() - started < 0.5
        for n in (2, 3, 4):  # three commits in quick succession: load, a round for them all
            await eventually(lambda: relay.state == "idle")
            await store.add_events([event(n)])
        await asyncio.sleep(0.3)
        assert len(bus.published) == 2  # the third lingers, and the fourth joins it
        await eventually(lambda: len(bus.published) == 4, timeout=5)
        assert published_ids(bus) == ["ev-1", "ev-2", "ev-3", "ev-4"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_committed_before_the_relay_started_go_first(
    store: CountingStore,
) -> None:
    # As after a crash between commit and publish: the outbox holds events nobody handed
    # to this relay. Read back two at a time, they go before the newer ones the store hands
    # meanwhile, which are of the same conversation.
    await store.add_events([event(n) for n in range(5)])
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, batch=2)
    store.during_next_read = [event(n) for n in range(5, 8)]
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: len(bus.published) >= 8)
        assert published_ids(bus) == [f"ev-{n}" for n in range(8)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await store.unpublished_events(100) == []


async def test_events_handed_during_an_outage_are_published_when_the_broker_is_back(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, poll_seconds=60)  # no reads of quiet
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.state == "idle")
        bus.available = False
        await store.add_events([event(1), event(2, "conv-2")])
        await eventually(lambda: relay.state.startswith("waiting for the broker"))
        await store.add_events([event(3), event(4, "conv-2")])
        await asyncio.sleep(0.3)  # rounds fail meanwhile
        assert bus.published == []
        bus.available = True
        await eventually(lambda: len(bus.published) == 4, timeout=5)
        ids = published_ids(bus)
        assert sorted(ids) == ["ev-1", "ev-2", "ev-3", "ev-4"]  # once each
        assert ids.index("ev-1") < ids.index("ev-3") and ids.index("ev-2") < ids.index("ev-4")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await store.unpublished_events(100) == []


async def test_a_long_outage_lets_go_of_the_events_and_reads_them_back_in_order(
    store: CountingStore,
) -> None:
    bus = MemoryBus()
    bus.bind("#")
    relay = await run_relay(store, bus, batch=3, max_held=4, poll_seconds=60)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.state == "idle")
        bus.available = False
        for n in range(12):  # more than the relay holds: it keeps at most 4
            await store.add_events([event(n, f"conv-{n % 2}")])
        await eventually(lambda: relay.state.startswith("waiting for the broker"))
        bus.available = True
        await eventually(lambda: len(bus.published) >= 12, timeout=5)
        ids = published_ids(bus)
        assert sorted(ids) == sorted(f"ev-{n}" for n in range(12))
        for parity in (0, 1):
            mine = [i for i in ids if int(i.removeprefix("ev-")) % 2 == parity]
            assert mine == [f"ev-{n}" for n in range(parity, 12, 2)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await store.unpublished_events(100) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # one process per SQLite file
async def test_on_postgresql_another_processs_earlier_event_goes_first(backend: Backend) -> None:
    # Two processes on one PostgreSQL schema: the other one's event of the conversation,
    # committed first, goes before ours, though only ours woke the relay.
    ours, theirs = backend.make(), backend.make()
    await ours.open()
    await theirs.open()
    bus = MemoryBus()
    bus.bind("#")
    await bus.connect()
    relay = Relay(ours, bus, poll_seconds=60, backoff_max=0.2)
    ours.listen_events(relay.wake)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.state == "idle")
        await theirs.add_events([event(1)])
        await ours.add_events([event(2)])
        await eventually(lambda: len(bus.published) >= 2)
        assert published_ids(bus) == ["ev-1", "ev-2"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await theirs.close()
        await ours.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_on_postgresql_a_commit_during_the_outbox_read_goes_out_without_waiting_for_the_poll(
    backend: Backend,
) -> None:
    # PostgreSQL's commits wake the relay with no events ("read the store"). One that lands
    # after the read's query, while the relay is still reading, must not wait for the next
    # poll, a minute away here.
    store = backend.make()
    await store.open()
    bus = MemoryBus()
    bus.bind("#")
    await bus.connect()
    relay = Relay(store, bus, poll_seconds=60, linger_seconds=0.01, backoff_max=0.2)
    store.listen_events(relay.wake)
    late = [event(1)]
    read = store.unpublished_events

    async def read_then_commit(limit: int, *, skip: Collection[int] = ()) -> list[StoredEvent]:
        found = await read(limit, skip=skip)
        if late:
            await store.add_events([late.pop()])  # committed after the query: not in `found`
        return found

    store.unpublished_events = read_then_commit  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: published_ids(bus) == ["ev-1"], timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
