"""The bus outbox of both stores: events written in the same transaction as the state they
report, one event per fact, publication order, commands carried out once, the relay lock."""

# ruff: noqa: F811 - the fixtures of the store contract are imported by name

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from adapter.bus.journal import EventJournal
from adapter.store import OutboundStatus, SaveOutcome, Store
from adapter.store.base import (
    CommandOf,
    DuplicateCommand,
    EventRecord,
    NotOpen,
    StoredEvent,
    StoreOpenError,
)
from adapter.store.sqlite import SqliteStore, insert_events
from adapter.uftp.messages import Role, TestMessageResponse
from tests.store.test_store_contract import (  # noqa: F401 - fixtures
    T0,
    Backend,
    attempt,
    backend,
    inbound,
    outbound,
    store,
)


def event(event_id: str, *, route: str = "in.FlexRequest", key: str | None = None) -> EventRecord:
    return EventRecord(
        event_id=event_id,
        route=route,
        attributes={"id": event_id, "type": "uftp.FlexRequest", "correlationid": "conv-\u20ac"},
        data=b"<FlexRequest/>",
        created_at=T0,
        key=key,
    )


async def ids(store: Store) -> list[str]:
    return [stored.event.event_id for stored in await store.unpublished_events(100)]


async def test_a_new_inbound_message_stores_its_events_a_known_one_does_not(
    store: Store,
) -> None:
    assert await store.save_inbound(inbound(), events=[event("e1")]) is SaveOutcome.NEW
    again = await store.save_inbound(inbound(), events=[event("e2")])
    assert again is SaveOutcome.ALREADY_SUBMITTED
    other = inbound(content=b"<other/>")
    assert await store.save_inbound(other, events=[event("e3")]) is SaveOutcome.DUPLICATE_IDENTIFIER
    (stored,) = await store.unpublished_events(10)
    assert stored.event == event("e1")  # attributes, data and time round-trip


async def test_events_come_out_in_order_until_marked_published(store: Store) -> None:
    await store.add_events([event(f"e{n}") for n in range(5)])
    first = await store.unpublished_events(3)
    assert [s.event.event_id for s in first] == ["e0", "e1", "e2"]
    assert [s.seq for s in first] == sorted(s.seq for s in first)
    await store.mark_published([s.seq for s in first], T0)
    assert await ids(store) == ["e3", "e4"]


async def test_the_relay_can_leave_out_what_it_published_and_has_not_marked(
    store: Store,
) -> None:
    await store.add_events([event(f"e{n}") for n in range(5)])
    seqs = [s.seq for s in await store.unpublished_events(5)]
    later = await store.unpublished_events(2, skip=[seqs[0], seqs[2]])
    assert [s.event.event_id for s in later] == ["e1", "e3"]
    assert [s.seq for s in await store.unpublished_events(5, skip=seqs)] == []


async def test_one_event_per_key_and_per_id(store: Store) -> None:
    await store.add_events([event("e1", key="outcome:m1"), event("e2", key="outcome:m1")])
    await store.add_events([event("e1")])
    assert await ids(store) == ["e1"]


async def test_the_outcome_event_is_stored_only_when_the_message_leaves_pending(
    store: Store,
) -> None:
    await store.add_outbound(outbound())
    retry_at = T0 + timedelta(seconds=1)
    await store.record_attempt(attempt(), OutboundStatus.PENDING, retry_at, events=[event("p")])
    assert await ids(store) == []
    await store.record_attempt(
        attempt(http_status=200), OutboundStatus.DELIVERED, None, events=[event("d")]
    )
    # A late report of a concurrent attempt adds its attempt, not a second outcome.
    await store.record_attempt(attempt(), OutboundStatus.FAILED, None, events=[event("f")])
    assert await ids(store) == ["d"]


async def test_a_command_is_carried_out_once(store: Store) -> None:
    await store.add_outbound(outbound("out-1", command_id="cmd-1"), events=[event("e1")])
    with pytest.raises(DuplicateCommand):
        await store.add_outbound(outbound("out-2", command_id="cmd-1"), events=[event("e2")])
    assert await store.get_outbound("out-2") is None  # nothing of the duplicate stayed
    assert await ids(store) == ["e1"]
    assert await store.command_message("cmd-1") == "out-1"
    record = await store.get_outbound("out-1")
    assert record is not None and record.command_id == "cmd-1"
    assert await store.command_message("cmd-2") is None


async def test_an_answer_from_the_bus_needs_an_open_request_and_a_new_command(
    store: Store,
) -> None:
    await store.save_inbound(inbound("req-1"))
    await store.save_inbound(inbound("req-2"))
    await store.finish_inbound(
        inbound().sender_domain, "req-1", outbound("out-1", command_id="cmd-1"), require_open=True
    )
    with pytest.raises(NotOpen):  # answered already
        await store.finish_inbound(
            inbound().sender_domain, "req-1", outbound("out-2"), require_open=True
        )
    with pytest.raises(DuplicateCommand):
        await store.finish_inbound(
            inbound().sender_domain, "req-2", outbound("out-3", command_id="cmd-1")
        )
    with pytest.raises(DuplicateCommand):  # a duplicate first, even of an answered request
        await store.finish_inbound(
            inbound().sender_domain,
            "req-1",
            outbound("out-4", command_id="cmd-1"),
            require_open=True,
        )
    assert [r.message_id for r in await store.unfinished_inbound()] == ["req-2"]
    with pytest.raises(NotOpen):
        await store.finish_inbound("nobody.test", "req-2", None, require_open=True)


async def test_listeners_hear_of_committed_events_only(store: Store) -> None:
    heard: list[Sequence[StoredEvent] | None] = []
    store.listen_events(heard.append)
    await store.save_inbound(inbound())
    assert heard == []
    await store.save_inbound(inbound("m2"), events=[event("e1")])
    await store.add_outbound(outbound(), events=[event("e2")])
    assert len(heard) == 2
    if isinstance(store, SqliteStore):
        # One process's store hands the events themselves, as the outbox has them.
        handed = [stored for events in heard for stored in events or ()]
        assert handed == await store.unpublished_events(10)
    else:
        assert heard == [None, None]  # other processes write too: the relay reads the store


async def test_a_sqlite_store_hands_only_the_events_it_committed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "handed.sqlite3")
    await store.open()
    try:
        heard: list[StoredEvent] = []
        store.listen_events(lambda events: heard.extend(events or ()))
        await store.add_events([event("e1", key="fact")])
        await store.add_events([event("e2", key="fact")])  # the same fact: not stored

        def rejected(conn: sqlite3.Connection) -> None:
            insert_events(conn, [event("e3")])
            raise ValueError("rejected after its events")

        # One batch: the operation that raises loses its events, the other keeps its own.
        outcomes = await asyncio.gather(
            store.run(rejected), store.add_events([event("e4")]), return_exceptions=True
        )
        assert isinstance(outcomes[0], ValueError) and outcomes[1] is None
        assert [stored.event.event_id for stored in heard] == ["e1", "e4"]
        assert heard == await store.unpublished_events(10)
    finally:
        await store.close()


async def test_one_relay_lock_per_store(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    await first.open()
    try:
        lock = await first.try_relay_lock()
        assert lock is not None and lock.held
        if backend.name == "sqlite":
            # One process per SQLite file: a second store on it does not open, so the relay of
            # the first is the only one.
            with pytest.raises(StoreOpenError):
                await second.open()
            await lock.release()
            return
        await second.open()
        assert await second.try_relay_lock() is None
        await lock.release()
        assert not lock.held
        other = await second.try_relay_lock()
        assert other is not None
        await other.release()
    finally:
        await first.close()
        with contextlib.suppress(Exception):  # not opened (SQLite)
            await second.close()


async def test_the_response_record_is_the_one_the_command_names(store: Store) -> None:
    record = replace(outbound("out-9"), reference_message_id="req-9", command_id="cmd-9")
    await store.add_outbound(record)
    assert await store.command_message("cmd-9") == "out-9"


async def test_a_message_made_for_a_command_names_it_when_read_back(store: Store) -> None:
    await store.add_outbound(outbound("out-1", command_id="cmd-1"))
    await store.add_outbound(outbound("out-2"))
    pending = await store.pending_outbound()
    assert [(r.message_id, r.command_id) for r in pending] == [("out-1", "cmd-1"), ("out-2", None)]
    record = await store.get_outbound("out-1")
    assert record is not None and record.command_id == "cmd-1"


async def test_an_event_names_the_command_of_its_message_as_it_is_stored(store: Store) -> None:
    await store.add_outbound(outbound("out-1", command_id="cmd-1", conversation_id="conv-a"))
    await store.add_outbound(outbound("out-2", conversation_id="conv-b"))
    await store.add_events(
        [
            replace(event("e1"), command_of=CommandOf(message_id="out-1")),
            replace(event("e2"), command_of=CommandOf(message_id="out-2")),  # no command
            replace(event("e3"), command_of=CommandOf(conversation_id="conv-a")),
            replace(event("e4"), command_of=CommandOf(conversation_id="conv-b")),
            event("e5"),
        ]
    )
    stored = {s.event.event_id: s.event for s in await store.unpublished_events(10)}
    assert {i: e.attributes.get("commandid") for i, e in stored.items()} == {
        "e1": "cmd-1",
        "e2": None,
        "e3": "cmd-1",
        "e4": None,
        "e5": None,
    }
    assert stored["e1"] == replace(
        event("e1"), attributes={**event("e1").attributes, "commandid": "cmd-1"}
    )


async def test_an_event_of_a_conversation_names_its_latest_command(store: Store) -> None:
    """A response that names no request (a 3.x TestMessageResponse) goes back to the command
    that sent a message in its conversation last."""
    await store.add_outbound(outbound("out-1", command_id="cmd-1", conversation_id="conv-a"))
    await store.add_outbound(outbound("out-2", command_id="cmd-2", conversation_id="conv-a"))
    await store.add_outbound(outbound("out-3", command_id="cmd-3", conversation_id="conv-b"))
    await store.add_outbound(outbound("out-4", conversation_id="conv-c"))  # no command
    await store.add_events(
        [
            replace(event("e1"), command_of=CommandOf(conversation_id="conv-a")),
            replace(event("e2"), command_of=CommandOf(conversation_id="conv-c")),
        ]
    )
    first, second = await store.unpublished_events(10)
    assert first.event.attributes == {**event("e1").attributes, "commandid": "cmd-2"}
    assert second.event == event("e2")  # as it came, without a command


async def test_a_sqlite_store_hands_the_journals_event_naming_the_command_it_found(
    tmp_path: Path,
) -> None:
    """The event of a response to a command's message, as the journal built it, goes to the
    relay naming the command the store found, in its stored attributes and in the event the
    relay publishes as it is (not made again from the attributes)."""
    store = SqliteStore(tmp_path / "named.sqlite3")
    await store.open()
    try:
        heard: list[StoredEvent] = []
        store.listen_events(lambda events: heard.extend(events or ()))
        await store.add_outbound(outbound("out-1", command_id="cmd-1", conversation_id="conv-a"))
        journal = EventJournal(domain="dso.example.com", role=Role.DSO, clock=lambda: T0)
        response = TestMessageResponse(
            version="3.1.0",
            sender_domain="cro.example.com",
            recipient_domain="dso.example.com",
            time_stamp=T0,
            message_id="resp-1",
            conversation_id="conv-a",
        )
        record = journal.inbound(
            response,
            b"<TestMessageResponse/>",
            sender_role=Role.CRO,
            command_of=CommandOf(conversation_id="conv-a"),
        )
        await store.add_events([record])
        (handed,) = heard
        event = handed.event.cloud_event
        assert event is not None and event.id == record.event_id
        assert event.extensions["commandid"] == "cmd-1"
        assert dict(event.attributes()) == dict(handed.event.attributes)
        assert handed.event.attributes["commandid"] == "cmd-1"
        assert handed.event.command_of is None
    finally:
        await store.close()


@pytest.mark.parametrize("commit_off_loop", [True, False])
async def test_a_failing_listener_or_commit_hook_leaves_no_caller_waiting(
    tmp_path: Path, commit_off_loop: bool
) -> None:
    """A listener of the store's events or its metrics hook raising (a bug of theirs) after
    a COMMIT: the callers of the batch still hear that their writes are durable (or no HTTP
    200 would go out), the other listeners still hear of the events, and the store still
    closes (it waits for the last batch)."""
    store = SqliteStore(tmp_path / "hooks.sqlite3", commit_off_loop=commit_off_loop)
    await store.open()
    heard: list[StoredEvent] = []

    def failing(events: Sequence[StoredEvent] | None) -> None:
        raise RuntimeError("a listener's bug")

    def failing_hook(seconds: float) -> None:
        raise RuntimeError("a metrics hook's bug")

    store.listen_events(failing)
    store.listen_events(lambda events: heard.extend(events or ()))
    try:
        async with asyncio.timeout(5):
            await store.add_events([event("e1")])
            assert [stored.event.event_id for stored in heard] == ["e1"]
            store.on_commit = failing_hook
            outcomes = await asyncio.gather(
                store.save_inbound(inbound(), events=[event("e2")]),
                store.add_events([event("e3")]),
            )
            assert outcomes == [SaveOutcome.NEW, None]
            assert [stored.event.event_id for stored in heard] == ["e1", "e2", "e3"]
    finally:
        await asyncio.wait_for(store.close(), 5)


async def test_a_mark_of_a_sqlite_store_rides_on_the_next_commit(tmp_path: Path) -> None:
    """Marks are bookkeeping: a lost one only publishes its events again. So a mark waits a
    moment for a message's transaction to join rather than taking a COMMIT of its own, and is
    committed by itself when none comes."""
    store = SqliteStore(tmp_path / "marks.sqlite3")
    await store.open()
    try:
        await store.add_events([event("e0"), event("e1")])
        first, second = await store.unpublished_events(10)
        commits: list[float] = []
        store.on_commit = commits.append
        mark = asyncio.ensure_future(store.mark_published([first.seq], T0))
        await asyncio.sleep(0.01)  # submitted; nothing committed yet
        assert commits == []
        await store.save_inbound(inbound())  # a message's transaction: the mark joins it
        await mark
        assert len(commits) == 1
        assert await ids(store) == ["e1"]
        await asyncio.wait_for(store.mark_published([second.seq], T0), 2)  # alone
        assert len(commits) == 2
        assert await ids(store) == []
    finally:
        await store.close()
