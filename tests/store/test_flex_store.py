"""The flex conversations (adapter.store.flex) on both stores: SqliteFlexBook on a real
SQLite file and PostgresFlexBook on the real PostgreSQL, one fresh schema per test.

The PostgreSQL half uses UFTP_TEST_POSTGRES_DSN and is skipped without a server, unless the
variable is set explicitly or CI is set (then it fails: tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapter.flex.handlers import entry_of
from adapter.flex.state import Direction, Entry, Standing
from adapter.store import flex_book_for
from adapter.store.base import EventRecord, Store, StoreOpenError
from adapter.store.flex import SCHEMA_VERSION, FlexBook
from adapter.store.sqlite import SqliteStore
from adapter.uftp import codec
from tests.flex.messages import AGR, NOW, flex_offer, flex_request
from tests.postgres import PG_DSN, fresh_schema


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "dso.sqlite3")
        await sqlite.open()
        try:
            yield sqlite
        finally:
            await sqlite.close()
        return
    async with fresh_schema("test_flex") as schema:
        from adapter.store.postgres import PostgresStore

        pg = PostgresStore(PG_DSN, schema=schema.name)
        await pg.open()
        try:
            yield pg
        finally:
            await pg.close()


@pytest.fixture
def book(store: Store) -> FlexBook:
    return flex_book_for(store)


def sent_request(standing: Standing = Standing.OPEN, **changes: object) -> Entry:
    message = flex_request(**changes)
    return entry_of(
        message,
        direction=Direction.SENT,
        peer_domain=AGR,
        inner_xml=codec.encode(message),
        recorded_at=NOW,
        standing=standing,
    )


async def test_an_entry_is_recorded_once_and_read_back_whole(book: FlexBook) -> None:
    entry = sent_request()
    stored = await book.record(entry)
    assert stored == entry
    assert codec.decode(stored.inner_xml) == flex_request()
    again = await book.record(dataclasses.replace(entry, standing=Standing.REJECTED))
    assert again == entry  # the first stays
    assert await book.entries() == [entry]
    assert await book.get(Direction.SENT, entry.message_id, peer_domain=AGR) == entry
    assert await book.get(Direction.SENT, entry.message_id, peer_domain="other.example") is None
    assert await book.get(Direction.RECEIVED, entry.message_id) is None


async def test_settle_moves_an_entry_only_from_the_standings_named(book: FlexBook) -> None:
    entry = await book.record(sent_request())
    key = (Direction.SENT, AGR, entry.message_id)
    assert await book.settle(*key, from_=(Standing.OPEN,), to=Standing.ACCEPTED, by="r1")
    assert not await book.settle(*key, from_=(Standing.OPEN,), to=Standing.REJECTED, by="r2")
    moved = await book.get(Direction.SENT, entry.message_id)
    assert moved is not None
    assert (moved.standing, moved.settled_by) == (Standing.ACCEPTED, "r1")
    assert not await book.settle(
        Direction.SENT, AGR, "unknown", from_=(Standing.OPEN,), to=Standing.ACCEPTED, by=None
    )


#: Reasons whose text holds the "; " that joins reasons in a RejectionReason: peer-controlled
#: text (a congestion point, a MessageID) can.
AWKWARD = ("Unknown congestion point ean.1; ISP conflict", "[not a list", "plain")


async def test_reasons_come_back_one_each_as_recorded_and_settled(book: FlexBook) -> None:
    entry = dataclasses.replace(sent_request(), standing=Standing.REJECTED, reasons=AWKWARD)
    assert (await book.record(entry)).reasons == AWKWARD
    assert (await book.get(Direction.SENT, entry.message_id)) == entry
    other = await book.record(sent_request(message_id="00000000-0000-4000-8000-0000000000aa"))
    key = (Direction.SENT, AGR, other.message_id)
    assert await book.settle(
        *key, from_=(Standing.OPEN,), to=Standing.REJECTED, by="r", reasons=AWKWARD
    )
    settled = await book.get(Direction.SENT, other.message_id)
    assert settled is not None and settled.reasons == AWKWARD
    assert settled.reason == "; ".join(AWKWARD)


async def test_reasons_written_joined_by_schema_version_1_are_read_back(store: Store) -> None:
    """Rows of a book before reasons were kept as a JSON array hold them joined with "; "."""
    book = flex_book_for(store)
    entry = await book.record(dataclasses.replace(sent_request(), standing=Standing.REJECTED))
    old, sql = "Unknown congestion point; ISP conflict", "UPDATE flex_entry SET reason = "
    if isinstance(store, SqliteStore):
        await store.run(lambda conn: conn.execute(sql + "?", (old,)))
    else:
        await store.run(lambda conn: conn.execute(sql + "$1", old))  # type: ignore[attr-defined]
    stored = await book.get(Direction.SENT, entry.message_id)
    assert stored is not None
    assert stored.reasons == ("Unknown congestion point", "ISP conflict")


async def test_of_two_settlements_at_once_one_wins(book: FlexBook) -> None:
    """An order and a revocation of one offer: one fate."""
    offer = flex_offer()
    entry = await book.record(
        entry_of(
            offer,
            direction=Direction.RECEIVED,
            peer_domain=AGR,
            inner_xml=codec.encode(offer),
            recorded_at=NOW,
            standing=Standing.ACCEPTED,
        )
    )
    key = (Direction.RECEIVED, AGR, entry.message_id)
    results = await asyncio.gather(
        *(
            book.settle(*key, from_=(Standing.ACCEPTED,), to=to, by=str(n))
            for n, to in enumerate([Standing.ORDERED, Standing.REVOKED] * 5)
        )
    )
    assert sum(results) == 1


async def test_latest_revision_per_point_and_period(book: FlexBook) -> None:
    await book.record(sent_request(revision=3))
    await book.record(sent_request(revision=5, message_id=str(uuid.uuid4())))
    refused = sent_request(revision=7, message_id=str(uuid.uuid4()), standing=Standing.REJECTED)
    await book.record(refused)
    other_day = flex_request().period + timedelta(days=1)
    await book.record(sent_request(revision=9, message_id=str(uuid.uuid4()), period=other_day))
    first = flex_request()
    latest = await book.latest_revision(
        Direction.SENT, AGR, first.congestion_point, first.period, excluding="x"
    )
    assert latest == 7
    accepted = await book.latest_revision(
        Direction.SENT, AGR, first.congestion_point, first.period, excluding="x", accepted_only=True
    )
    assert accepted is None  # none was answered yet: all open but the one refused
    assert (
        await book.latest_revision(
            Direction.RECEIVED, AGR, first.congestion_point, first.period, excluding="x"
        )
        is None
    )


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "agr.sqlite3")
    await store.open()
    await flex_book_for(store).record(sent_request())
    await store.close()
    store = SqliteStore(tmp_path / "agr.sqlite3")
    await store.open()
    try:
        [entry] = await flex_book_for(store).entries(Direction.SENT, "FlexRequest")
        assert entry.message_id == flex_request().message_id
    finally:
        await store.close()


async def test_a_newer_flex_schema_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "dso.sqlite3")
    await store.open()
    await flex_book_for(store).entries()

    def newer(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE schema_version SET version = ? WHERE component = 'flex'", (SCHEMA_VERSION + 1,)
        )

    await store.run(newer)
    try:
        with pytest.raises(StoreOpenError, match="flex tables are schema version 2"):
            await flex_book_for(store).entries()
    finally:
        await store.close()


async def test_with_events_each_change_made_is_an_event_in_its_transaction(store: Store) -> None:
    """What the bus bridge publishes as ``flex.<change>`` (`Journal.flex_change`): a new
    entry, a move; nothing for an entry recorded again or a move not made."""

    def events(entry: Entry, change: str) -> list[EventRecord]:
        return [
            EventRecord(
                event_id=str(uuid.uuid4()),
                route=f"flex.{change}",
                attributes={"standing": entry.standing.value},
                data=entry.message_id.encode(),
                created_at=NOW,
                key=f"{entry.message_id}:{change}",
            )
        ]

    book = flex_book_for(store, events=events)
    entry = await book.record(sent_request())
    await book.record(entry)
    key = (Direction.SENT, AGR, entry.message_id)
    assert await book.settle(*key, from_=(Standing.OPEN,), to=Standing.ACCEPTED, by="r1")
    assert not await book.settle(*key, from_=(Standing.OPEN,), to=Standing.REJECTED, by="r2")
    published = await store.unpublished_events(10)
    assert [(e.event.route, e.event.attributes["standing"]) for e in published] == [
        ("flex.sent", "open"),
        ("flex.accepted", "accepted"),
    ]
