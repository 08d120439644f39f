"""One contract for every `Store`: run against SqliteStore and a real PostgreSQL, no mocks.

The PostgreSQL half uses UFTP_TEST_POSTGRES_DSN (default postgresql://127.0.0.1:5432/test),
one fresh schema per test, dropped afterwards. Without a server it is skipped, unless the
variable is set explicitly or CI is set: then an unreachable server is a failure, so CI cannot
pass by silently skipping it (tests/postgres.py).

The claims (one owner per message still to be worked on, with a lease) are part of the
contract; several owners at once only exist on PostgreSQL (a SQLite file admits one process,
`test_sqlite_lock.py`), so those tests are PostgreSQL's.

A few tests at the end cover what only one implementation has: SQLite's group commit and
PRAGMAs, the `run`/`read` extension points, and `open_store`'s URL parsing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import adapter.store.sqlite as sqlite_module
from adapter.store import (
    DeliveryAttempt,
    InboundRecord,
    InboundStatus,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
    SqliteStore,
    StorageError,
    Store,
    StoreOpenError,
    open_store,
)
from adapter.store.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from tests.postgres import PG_DSN, fresh_schema, import_asyncpg
from tests.resilience.disk import small_disk

# Microseconds on purpose: the round trip must be exact.
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
SENDER = "cro.uftp-demo.test"
RECIPIENT = "dso.uftp-demo.test"


@dataclass(frozen=True)
class Backend:
    """How to build stores on one set of data, and what that backend raises on a taken key."""

    name: str
    #: A store on the backend's data; keywords as the store classes take them (lease=...).
    make: Callable[..., Store]
    integrity_error: tuple[type[Exception], ...]


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        # A directory that does not exist yet: the store creates it.
        path = tmp_path / "var" / "store.sqlite3"
        yield Backend("sqlite", lambda **kw: SqliteStore(path, **kw), (sqlite3.IntegrityError,))
        return
    async with fresh_schema("test_store") as schema:
        import asyncpg

        from adapter.store.postgres import PostgresStore

        yield Backend(
            "postgres",
            lambda **kw: PostgresStore(PG_DSN, schema=schema.name, **kw),
            (asyncpg.UniqueViolationError,),
        )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def inbound(
    message_id: str = "msg-1",
    *,
    sender: str = SENDER,
    content: bytes = b"<FlexRequest/>",
    received_at: datetime = T0,
    **changes: Any,
) -> InboundRecord:
    record = InboundRecord(
        sender_domain=sender,
        message_id=message_id,
        sender_role="CRO",
        message_type="FlexRequest",
        conversation_id="conv-1",
        version="3.1.0",
        content_hash=hashlib.sha256(content).digest(),
        envelope=b"<SignedMessage Body='" + content + b"'/>",
        received_at=received_at,
    )
    return replace(record, **changes)


def outbound(
    message_id: str = "out-1",
    *,
    created_at: datetime = T0,
    next_attempt_at: datetime | None = None,
    **changes: Any,
) -> OutboundRecord:
    record = OutboundRecord(
        message_id=message_id,
        recipient_domain=RECIPIENT,
        recipient_role="DSO",
        message_type="FlexRequestResponse",
        conversation_id="conv-1",
        reference_message_id="msg-1",
        endpoint="https://dso.uftp-demo.test/shapeshifter/api/v3/message",
        envelope=b"<SignedMessage/>",
        created_at=created_at,
        deadline=created_at + timedelta(hours=1),
        next_attempt_at=next_attempt_at,
    )
    return replace(record, **changes)


def attempt(
    message_id: str = "out-1",
    at: datetime = T0,
    http_status: int | None = 503,
    outcome: str = "temporary",
    detail: str = "HTTP 503",
) -> DeliveryAttempt:
    return DeliveryAttempt(message_id, at, http_status, outcome, detail)


# -- inbound ----------------------------------------------------------------------------------


async def test_save_inbound_new_then_already_submitted_then_duplicate_identifier(
    store: Store,
) -> None:
    original = inbound()
    assert await store.save_inbound(original) is SaveOutcome.NEW
    assert await store.save_inbound(original) is SaveOutcome.ALREADY_SUBMITTED
    other = inbound(content=b"<FlexOffer/>", message_type="FlexOffer")
    assert await store.save_inbound(other) is SaveOutcome.DUPLICATE_IDENTIFIER
    # The conflicting copies stored nothing.
    assert await store.get_inbound(SENDER, "msg-1") == original
    assert await store.unfinished_inbound() == [original]


async def test_same_message_id_from_another_sender_is_a_new_message(store: Store) -> None:
    assert await store.save_inbound(inbound()) is SaveOutcome.NEW
    assert await store.save_inbound(inbound(sender="other.test")) is SaveOutcome.NEW


async def test_get_inbound_round_trips_every_field(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = inbound(
        received_at=datetime(2024, 3, 31, 2, 30, 0, 999999, tzinfo=plus_two),
        status=InboundStatus.HANDLED,
        rejection="Unknown recipient; Invalid Version",
    )
    await store.save_inbound(record)
    loaded = await store.get_inbound(SENDER, "msg-1")
    assert loaded == record
    assert loaded is not None and loaded.received_at.utcoffset() == timedelta(0)
    assert await store.get_inbound(SENDER, "unknown") is None
    assert await store.get_inbound("unknown.test", "msg-1") is None


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.save_inbound(inbound(received_at=datetime(2024, 1, 1)))
    with pytest.raises(ValueError, match="naive"):
        await store.add_outbound(outbound(created_at=datetime(2024, 1, 1)))
    assert await store.get_inbound(SENDER, "msg-1") is None


async def test_unfinished_inbound_before_and_after_finish(store: Store) -> None:
    late = inbound("late", received_at=T0 + timedelta(seconds=2))
    early = inbound("early", received_at=T0)
    middle = inbound("middle", received_at=T0 + timedelta(seconds=1))
    for record in (late, early, middle):
        await store.save_inbound(record)
    assert await store.unfinished_inbound() == [early, middle, late]

    await store.finish_inbound(SENDER, "middle", None)

    assert await store.unfinished_inbound() == [early, late]
    handled = await store.get_inbound(SENDER, "middle")
    assert handled == replace(middle, status=InboundStatus.HANDLED)
    assert await store.pending_outbound() == []


async def test_finish_inbound_queues_the_response(store: Store) -> None:
    await store.save_inbound(inbound())
    response = outbound("resp-1")
    await store.finish_inbound(SENDER, "msg-1", response)
    assert await store.unfinished_inbound() == []
    assert await store.get_outbound("resp-1") == response
    assert await store.pending_outbound() == [response]


async def test_a_failing_finish_leaves_the_message_unfinished(
    store: Store, backend: Backend
) -> None:
    await store.save_inbound(inbound())
    taken = outbound("resp-1")
    await store.add_outbound(taken)
    with pytest.raises(backend.integrity_error):
        await store.finish_inbound(SENDER, "msg-1", outbound("resp-1", envelope=b"<other/>"))
    assert await store.unfinished_inbound() == [inbound()]
    assert await store.get_outbound("resp-1") == taken


async def test_finishing_an_unknown_message_raises_lookup_error(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.finish_inbound(SENDER, "unknown", outbound("resp-1"))
    assert await store.get_outbound("resp-1") is None


# -- outbound ---------------------------------------------------------------------------------


async def test_add_outbound_round_trips_and_refuses_a_taken_message_id(
    store: Store, backend: Backend
) -> None:
    record = outbound(
        reference_message_id=None,
        attempts=2,
        next_attempt_at=T0 + timedelta(seconds=30, microseconds=7),
        last_error="timeout: no response",
    )
    await store.add_outbound(record)
    assert await store.get_outbound("out-1") == record
    assert await store.get_outbound("unknown") is None
    with pytest.raises(backend.integrity_error):
        await store.add_outbound(outbound())
    assert await store.get_outbound("out-1") == record


async def test_pending_outbound_is_ordered_by_due_time(store: Store) -> None:
    s = timedelta(seconds=1)
    retrying = outbound("a-retrying", created_at=T0, next_attempt_at=T0 + 5 * s)
    fresh = outbound("b-fresh", created_at=T0 + 3 * s)  # no attempt yet: due since creation
    soon = outbound("c-soon", created_at=T0 + s, next_attempt_at=T0 + 2 * s)
    done = outbound("d-done", created_at=T0, status=OutboundStatus.DELIVERED)
    failed = outbound("e-failed", created_at=T0, status=OutboundStatus.FAILED)
    for record in (retrying, fresh, soon, done, failed):
        await store.add_outbound(record)
    assert await store.pending_outbound() == [soon, fresh, retrying]


async def test_record_attempt_moves_status_and_counts(store: Store) -> None:
    await store.add_outbound(outbound())
    retry_at = T0 + timedelta(seconds=2)
    first = attempt(at=T0)
    await store.record_attempt(first, OutboundStatus.PENDING, retry_at)

    after_first = await store.get_outbound("out-1")
    assert after_first is not None
    assert after_first.status is OutboundStatus.PENDING
    assert after_first.attempts == 1
    assert after_first.next_attempt_at == retry_at
    assert after_first.last_error == "temporary: HTTP 503"
    assert await store.pending_outbound() == [after_first]

    second = attempt(at=retry_at, http_status=200, outcome="delivered", detail="")
    await store.record_attempt(second, OutboundStatus.DELIVERED, None)

    delivered = await store.get_outbound("out-1")
    assert delivered is not None
    assert delivered.status is OutboundStatus.DELIVERED
    assert delivered.attempts == 2
    assert delivered.next_attempt_at is None
    assert delivered.last_error is None
    assert await store.pending_outbound() == []
    assert await store.attempts("out-1") == [first, second]
    assert await store.attempts("unknown") == []


async def test_attempts_are_listed_oldest_first(store: Store) -> None:
    await store.add_outbound(outbound())
    times = [T0 + timedelta(seconds=n) for n in (3, 1, 2)]
    for at in times:
        await store.record_attempt(attempt(at=at, http_status=None), OutboundStatus.PENDING, at)
    assert [a.attempted_at for a in await store.attempts("out-1")] == sorted(times)
    assert all(a.http_status is None for a in await store.attempts("out-1"))


async def test_a_final_status_is_not_undone_by_a_late_attempt(store: Store) -> None:
    await store.add_outbound(outbound())
    ok = attempt(at=T0, http_status=200, outcome="delivered", detail="")
    await store.record_attempt(ok, OutboundStatus.DELIVERED, None)
    late = attempt(at=T0 + timedelta(seconds=1))
    await store.record_attempt(late, OutboundStatus.PENDING, T0 + timedelta(seconds=9))

    record = await store.get_outbound("out-1")
    assert record is not None
    assert (record.status, record.attempts, record.next_attempt_at, record.last_error) == (
        OutboundStatus.DELIVERED,
        2,
        None,
        None,
    )
    assert await store.attempts("out-1") == [ok, late]


async def test_an_attempt_for_an_unknown_message_raises_lookup_error(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.record_attempt(attempt("unknown"), OutboundStatus.FAILED, None)
    assert await store.attempts("unknown") == []


async def test_cancel_outbound_withdraws_a_pending_message_for_good(
    store: Store, backend: Backend
) -> None:
    await store.add_outbound(outbound(next_attempt_at=T0 + timedelta(seconds=5)))
    await store.record_attempt(attempt(at=T0), OutboundStatus.PENDING, T0 + timedelta(seconds=5))

    assert await store.cancel_outbound("out-1") is True

    cancelled = await store.get_outbound("out-1")
    assert cancelled is not None
    assert (cancelled.status, cancelled.next_attempt_at, cancelled.attempts) == (
        OutboundStatus.CANCELLED,
        None,
        1,
    )
    assert cancelled.last_error == "temporary: HTTP 503"  # what kept it from being delivered
    assert await store.pending_outbound() == []
    assert await store.cancel_outbound("out-1") is False  # once is enough
    # A late report of an attempt that was under way does not bring it back.
    await store.record_attempt(attempt(at=T0 + timedelta(seconds=1)), OutboundStatus.PENDING, T0)
    assert (await store.get_outbound("out-1")) == replace(cancelled, attempts=2)
    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.pending_outbound() == []
        assert await reopened.get_outbound("out-1") == replace(cancelled, attempts=2)
    finally:
        await reopened.close()
        await store.open()  # for the fixture's close


async def test_cancel_outbound_leaves_an_ended_delivery_alone(store: Store) -> None:
    await store.add_outbound(outbound())
    ok = attempt(at=T0, http_status=200, outcome="delivered", detail="")
    await store.record_attempt(ok, OutboundStatus.DELIVERED, None)

    assert await store.cancel_outbound("out-1") is False

    record = await store.get_outbound("out-1")
    assert record is not None and record.status is OutboundStatus.DELIVERED
    with pytest.raises(LookupError):
        await store.cancel_outbound("unknown")


# -- claims: one owner at a time -------------------------------------------------------------

#: A due date later than every record of these tests.
LATER = T0 + timedelta(days=1)


@pytest.fixture
async def short_lease(backend: Backend) -> AsyncIterator[Store]:
    """A store whose claims lapse after 1 s unless renewed."""
    opened = backend.make(lease=timedelta(seconds=1))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_message_added_is_held_by_its_store_until_released(store: Store) -> None:
    await store.add_outbound(outbound())
    await store.save_inbound(inbound())

    assert await store.claim_outbound(LATER, 10) == []  # ours already: nothing to take
    assert await store.claim_unfinished_inbound(10) == []
    assert store.owner  # host, process and token

    await store.release_claims()

    assert await store.claim_outbound(LATER, 10) == [outbound()]
    assert await store.claim_unfinished_inbound(10) == [inbound()]
    assert await store.claim_outbound(LATER, 10) == []  # claimed again: held
    assert await store.claim_unfinished_inbound(10) == []
    # The listings see every message still to be worked on, whoever holds it.
    assert await store.pending_outbound() == [outbound()]
    assert await store.unfinished_inbound() == [inbound()]


async def test_a_claim_not_renewed_lapses_with_its_lease(short_lease: Store) -> None:
    store = short_lease
    await store.add_outbound(outbound())
    await store.save_inbound(inbound())
    await asyncio.sleep(0.6)
    await store.renew_claims()
    # 1.1 s after adding, past the first lease: renewed, it still holds (for 0.5 s more: a
    # margin that a loaded machine's late timers and slow statements stay within).
    await asyncio.sleep(0.5)

    assert await store.claim_outbound(LATER, 10) == []
    assert await store.claim_unfinished_inbound(10) == []

    await asyncio.sleep(0.9)  # no renewal: the lease ran out

    assert await store.claim_outbound(LATER, 10) == [outbound()]
    assert await store.claim_unfinished_inbound(10) == [inbound()]


async def test_claim_outbound_takes_what_is_due_earliest_first_up_to_its_limit(
    store: Store,
) -> None:
    later = outbound("out-3", next_attempt_at=T0 + timedelta(seconds=20))
    first = outbound("out-1", next_attempt_at=T0)
    second = outbound("out-2", next_attempt_at=T0 + timedelta(seconds=10))
    never_tried = outbound("out-0", created_at=T0 - timedelta(seconds=5))  # due at creation
    for record in (later, first, second, never_tried):
        await store.add_outbound(record)
    await store.release_claims()

    assert await store.claim_outbound(T0 + timedelta(seconds=15), 2) == [never_tried, first]
    assert await store.claim_outbound(T0 + timedelta(seconds=15), 10) == [second]
    assert await store.claim_outbound(T0 + timedelta(seconds=15), 10) == []  # not due yet
    assert await store.claim_outbound(LATER, 10) == [later]


async def test_only_messages_still_to_be_worked_on_are_claimed(store: Store) -> None:
    for name in ("delivered", "failed", "cancelled", "retried"):
        await store.add_outbound(outbound(name))
    await store.record_attempt(
        attempt("delivered", http_status=200, outcome="delivered", detail=""),
        OutboundStatus.DELIVERED,
        None,
    )
    await store.record_attempt(attempt("failed", http_status=400), OutboundStatus.FAILED, None)
    await store.cancel_outbound("cancelled")
    await store.record_attempt(attempt("retried"), OutboundStatus.PENDING, T0)
    await store.save_inbound(inbound("handled"))
    await store.finish_inbound(SENDER, "handled", None)
    await store.save_inbound(inbound("stored-handled", status=InboundStatus.HANDLED))
    await store.release_claims()

    assert [r.message_id for r in await store.claim_outbound(LATER, 10)] == ["retried"]
    assert await store.claim_unfinished_inbound(10) == []


async def test_record_attempt_says_whether_the_next_attempt_is_ours(store: Store) -> None:
    await store.add_outbound(outbound("kept"))
    await store.add_outbound(outbound("ended"))

    assert await store.record_attempt(attempt("kept"), OutboundStatus.PENDING, T0) is True
    # A temporary failure keeps the message ours: nobody else takes it meanwhile.
    assert await store.claim_outbound(LATER, 10) == []
    ended = attempt("ended", http_status=400, outcome="permanent")
    assert await store.record_attempt(ended, OutboundStatus.FAILED, None) is False

    await store.release_claims()  # as at a stop: nobody holds "kept" now
    assert await store.record_attempt(attempt("kept"), OutboundStatus.PENDING, T0) is False


async def test_attempts_reported_at_once_are_each_counted_logged_and_answered(
    store: Store,
) -> None:
    """As under load, when many deliveries end together (PostgreSQL groups them into one
    statement): each attempt counts once and is logged, the same message twice counts twice,
    each report learns about its own message, and an unknown one fails alone."""
    for n in range(12):
        await store.add_outbound(outbound(f"out-{n}"))
    await store.release_claims()
    await store.add_outbound(outbound("held"))  # held by this store; the others by nobody
    retry_at = T0 + timedelta(seconds=5)
    reports = [
        (attempt(f"out-{n}", at=T0 + timedelta(milliseconds=n)), OutboundStatus.PENDING, retry_at)
        for n in range(6)
    ] + [
        (
            attempt(f"out-{n}", at=T0, http_status=200, outcome="delivered", detail=""),
            OutboundStatus.DELIVERED,
            None,
        )
        for n in range(6, 12)
    ]
    twice = [
        (attempt("held", at=T0), OutboundStatus.PENDING, retry_at),
        (attempt("held", at=T0 + timedelta(seconds=1)), OutboundStatus.PENDING, retry_at),
    ]
    results = await asyncio.gather(
        *(store.record_attempt(*report) for report in [*reports, *twice]),
        store.record_attempt(attempt("unknown"), OutboundStatus.FAILED, None),
        return_exceptions=True,
    )

    assert results[:-1] == [False] * 12 + [True, True]  # nobody's, or ended; "held" is ours
    assert isinstance(results[-1], LookupError)
    for report, status, next_at in reports:
        record = await store.get_outbound(report.message_id)
        assert record is not None
        assert (record.status, record.attempts, record.next_attempt_at) == (status, 1, next_at)
        assert await store.attempts(report.message_id) == [report]
    held = await store.get_outbound("held")
    assert held is not None and held.attempts == 2 and held.status is OutboundStatus.PENDING
    assert await store.attempts("held") == [report for report, _, _ in twice]
    assert await store.attempts("unknown") == []


async def test_the_response_of_finish_inbound_is_held_by_the_store(store: Store) -> None:
    await store.save_inbound(inbound())
    await store.finish_inbound(SENDER, "msg-1", outbound("resp-1"))

    assert await store.claim_outbound(LATER, 10) == []
    await store.release_claims()
    assert [r.message_id for r in await store.claim_outbound(LATER, 10)] == ["resp-1"]


async def test_closing_releases_the_claims(store: Store, backend: Backend) -> None:
    await store.add_outbound(outbound())
    await store.save_inbound(inbound())
    await store.close()

    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.claim_outbound(LATER, 10) == [outbound()]
        assert await reopened.claim_unfinished_inbound(10) == [inbound()]
    finally:
        await reopened.close()
        await store.open()  # for the fixture's close


# -- durability and concurrency ---------------------------------------------------------------


async def test_everything_survives_close_and_reopen(store: Store, backend: Backend) -> None:
    await store.save_inbound(inbound("handled"))
    await store.save_inbound(inbound("unhandled"))
    response = outbound("resp-1")
    await store.finish_inbound(SENDER, "handled", response)
    tried = attempt("resp-1")
    await store.record_attempt(tried, OutboundStatus.PENDING, T0 + timedelta(seconds=1))
    await store.close()

    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.unfinished_inbound() == [inbound("unhandled")]
        assert await reopened.get_inbound(SENDER, "handled") == inbound(
            "handled", status=InboundStatus.HANDLED
        )
        assert await reopened.save_inbound(inbound("handled")) is SaveOutcome.ALREADY_SUBMITTED
        assert await reopened.pending_outbound() == [
            replace(
                response,
                attempts=1,
                next_attempt_at=T0 + timedelta(seconds=1),
                last_error="temporary: HTTP 503",
            )
        ]
        assert await reopened.attempts("resp-1") == [tried]
    finally:
        await reopened.close()


async def test_two_hundred_concurrent_saves_all_land(store: Store) -> None:
    commits_before = store.commits if isinstance(store, SqliteStore) else 0
    records = [
        inbound(f"msg-{n:03}", received_at=T0 + timedelta(microseconds=n)) for n in range(200)
    ]

    outcomes = await asyncio.gather(*(store.save_inbound(r) for r in records))

    assert outcomes == [SaveOutcome.NEW] * 200
    assert await store.unfinished_inbound() == records
    if isinstance(store, SqliteStore):
        # Group commit: many saves shared each fsync.
        assert store.commits - commits_before < 200


async def test_a_failing_operation_among_concurrent_ones_loses_no_other(
    store: Store, backend: Backend
) -> None:
    taken = outbound("taken", created_at=T0 - timedelta(seconds=1))
    await store.add_outbound(taken)
    records = [outbound(f"out-{n:02}", created_at=T0 + timedelta(seconds=n)) for n in range(40)]
    calls = [store.add_outbound(r) for r in records[:20]]
    calls.append(store.add_outbound(taken))
    calls.extend(store.add_outbound(r) for r in records[20:])

    results = await asyncio.gather(*calls, return_exceptions=True)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], backend.integrity_error)
    assert await store.pending_outbound() == [taken, *records]


# -- SQLite only ------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "nested" / "dir" / "store.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_sqlite_creates_its_directory_and_sets_its_pragmas(
    sqlite_store: SqliteStore,
) -> None:
    assert sqlite_store.path.is_file()

    def pragmas(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return tuple(
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        )

    assert await sqlite_store.read(pragmas) == ("wal", 2, 1, 5000)  # 2 is FULL

    def version(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT version FROM schema_version WHERE component = 'store'")
        return int(row.fetchone()[0])

    assert await sqlite_store.read(version) == SQLITE_SCHEMA_VERSION


async def test_sqlite_runs_queued_operations_in_one_transaction_with_savepoints(
    sqlite_store: SqliteStore,
) -> None:
    started, release = threading.Event(), threading.Event()

    def blocker(conn: sqlite3.Connection) -> str:
        started.set()
        release.wait(10)
        return "blocker"

    def tamper_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE inbound SET rejection = 'tampered'")
        raise RuntimeError("boom")

    await sqlite_store.add_outbound(outbound("taken"))
    # Offloaded to a worker thread, as large work is: the loop goes on meanwhile.
    first = asyncio.create_task(sqlite_store.run(blocker, offload=True))
    assert await asyncio.to_thread(started.wait, 10)
    commits_before = sqlite_store.commits

    # Queued while that batch runs: they must all go into the next transaction.
    queued = [
        asyncio.create_task(sqlite_store.save_inbound(inbound("a"))),
        asyncio.create_task(sqlite_store.save_inbound(inbound("b"))),
        asyncio.create_task(sqlite_store.run(tamper_then_fail)),
        asyncio.create_task(sqlite_store.add_outbound(outbound("taken"))),
        asyncio.create_task(sqlite_store.save_inbound(inbound("c"))),
    ]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*queued, return_exceptions=True)

    assert await first == "blocker"
    assert sqlite_store.commits - commits_before == 2  # the blocker's and one for the rest
    assert results[:2] == [SaveOutcome.NEW, SaveOutcome.NEW]
    assert isinstance(results[2], RuntimeError)
    assert isinstance(results[3], sqlite3.IntegrityError)
    assert results[4] is SaveOutcome.NEW
    assert await sqlite_store.unfinished_inbound() == [inbound(n) for n in ("a", "b", "c")]


async def test_sqlite_commits_off_the_event_loop_and_batches_what_arrives_meanwhile(
    sqlite_store: SqliteStore,
) -> None:
    """The COMMIT (the fsync) runs on the store's commit thread, never on the loop's; what is
    submitted while it runs waits for it and forms the next batch."""
    commits_on: list[int] = []
    assert sqlite_store._conn is not None  # the store's own connection, traced
    sqlite_store._conn.set_trace_callback(
        lambda sql: commits_on.append(threading.get_ident()) if sql == "COMMIT" else None
    )
    first = asyncio.create_task(sqlite_store.save_inbound(inbound("a")))
    await asyncio.sleep(0)  # its batch starts: statements here, the COMMIT handed over
    commits_before = sqlite_store.commits
    later = [asyncio.create_task(sqlite_store.save_inbound(inbound(n))) for n in ("b", "c")]
    assert await asyncio.gather(first, *later) == [SaveOutcome.NEW] * 3

    assert commits_on and threading.get_ident() not in commits_on
    assert sqlite_store.commits - commits_before == 2  # a's, then b's and c's together


#: GROUP_WAIT (and IDLE_AFTER) in the tests of it: long beside the few milliseconds they sleep,
#: so that a loaded machine cannot make an operation miss the batch it is meant to join.
_GROUP_WAIT = 0.5


async def test_sqlite_a_busy_store_holds_a_batch_for_the_operations_close_behind(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a batch carried several callers' writes, the next waits GROUP_WAIT from its
    first operation for others to join its COMMIT; once one carried a lone caller's, the
    next runs at the end of the turn again, joined by nothing that comes later."""
    monkeypatch.setattr(sqlite_module, "GROUP_WAIT", _GROUP_WAIT)
    monkeypatch.setattr(sqlite_module, "IDLE_AFTER", _GROUP_WAIT)

    def save(name: str) -> asyncio.Task[SaveOutcome]:
        return asyncio.create_task(sqlite_store.save_inbound(inbound(name)))

    assert await asyncio.gather(save("a"), save("b")) == [SaveOutcome.NEW] * 2  # one batch
    commits_before = sqlite_store.commits
    first = save("c")
    await asyncio.sleep(0.02)
    assert not first.done()  # held for company
    assert await asyncio.gather(first, save("d")) == [SaveOutcome.NEW] * 2
    assert sqlite_store.commits - commits_before == 1  # c and d shared the COMMIT

    started = asyncio.get_running_loop().time()
    assert await save("e") == SaveOutcome.NEW  # held, as the batch before had two
    assert asyncio.get_running_loop().time() - started >= _GROUP_WAIT * 0.9
    commits_before = sqlite_store.commits
    alone = save("f")  # the batch before had one: the store is not busy any more
    await asyncio.sleep(0.02)
    late = save("g")
    assert await asyncio.gather(alone, late) == [SaveOutcome.NEW] * 2
    assert sqlite_store.commits - commits_before == 2  # f went without waiting for g


async def test_sqlite_a_held_batch_goes_once_the_company_of_the_last_one_is_there(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch held for company goes as soon as as many operations wait as the batch before
    carried, not at the end of GROUP_WAIT: what comes later forms the next batch."""
    monkeypatch.setattr(sqlite_module, "GROUP_WAIT", _GROUP_WAIT)
    monkeypatch.setattr(sqlite_module, "IDLE_AFTER", _GROUP_WAIT)

    def save(name: str) -> asyncio.Task[SaveOutcome]:
        return asyncio.create_task(sqlite_store.save_inbound(inbound(name)))

    assert await asyncio.gather(save("a"), save("b"), save("c")) == [SaveOutcome.NEW] * 3
    commits_before = sqlite_store.commits
    held = [save("d")]
    await asyncio.sleep(0.02)
    held += [save("e"), save("f")]  # three, as many as the batch before: it goes
    await asyncio.sleep(0.02)
    later = save("g")  # well inside d's GROUP_WAIT
    assert await asyncio.gather(*held) == [SaveOutcome.NEW] * 3
    assert await later is SaveOutcome.NEW
    # Two COMMITs say that d's batch went before its GROUP_WAIT ended (or g would have
    # joined it), whatever its fsync took on a loaded machine.
    assert sqlite_store.commits - commits_before == 2  # d, e and f; then g


async def test_sqlite_a_lone_write_after_a_pause_is_not_held(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last batch carried three callers' writes, but long ago: the store is idle, and a
    write alone goes at the end of its turn, without waiting GROUP_WAIT for company that the
    last batch no longer promises."""
    monkeypatch.setattr(sqlite_module, "GROUP_WAIT", _GROUP_WAIT)
    monkeypatch.setattr(sqlite_module, "IDLE_AFTER", _GROUP_WAIT)

    def save(name: str) -> asyncio.Task[SaveOutcome]:
        return asyncio.create_task(sqlite_store.save_inbound(inbound(name)))

    assert await asyncio.gather(save("a"), save("b"), save("c")) == [SaveOutcome.NEW] * 3
    await asyncio.sleep(_GROUP_WAIT * 2)  # idle
    commits_before = sqlite_store.commits
    alone = save("d")
    await asyncio.sleep(0.02)
    late = save("e")  # well inside d's GROUP_WAIT, were it held
    assert await asyncio.gather(alone, late) == [SaveOutcome.NEW] * 2
    assert sqlite_store.commits - commits_before == 2  # d went without waiting for e


async def test_sqlite_a_delivered_mark_rides_with_the_next_batch(
    sqlite_store: SqliteStore,
) -> None:
    """Nobody waits for a delivered mark: it joins the next operation's transaction, or
    commits alone once DEFERRED_WINDOW has passed."""
    from adapter.store.sqlite import DEFERRED_WINDOW

    await sqlite_store.add_outbound(outbound("out-1"))
    await sqlite_store.add_outbound(outbound("out-2"))
    delivered = attempt(http_status=200, outcome="delivered", detail="")

    commits_before = sqlite_store.commits
    mark = asyncio.create_task(
        sqlite_store.record_attempt(delivered, OutboundStatus.DELIVERED, None)
    )
    await asyncio.sleep(DEFERRED_WINDOW / 5)
    assert not mark.done() and sqlite_store.commits == commits_before  # waiting for company
    assert await sqlite_store.save_inbound(inbound("a")) is SaveOutcome.NEW
    assert await mark is False
    assert sqlite_store.commits - commits_before == 1  # one transaction carried both

    alone = replace(delivered, message_id="out-2")
    started = asyncio.get_running_loop().time()
    assert await sqlite_store.record_attempt(alone, OutboundStatus.DELIVERED, None) is False
    assert asyncio.get_running_loop().time() - started >= DEFERRED_WINDOW * 0.9
    for message_id in ("out-1", "out-2"):
        stored = await sqlite_store.get_outbound(message_id)
        assert stored is not None and stored.status is OutboundStatus.DELIVERED


async def test_sqlite_close_drains_queued_work(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    saves = [asyncio.create_task(store.save_inbound(inbound(f"m{n}"))) for n in range(50)]
    await asyncio.sleep(0)  # every save is queued, none necessarily done
    await store.close()
    assert [s.result() for s in saves] == [SaveOutcome.NEW] * 50
    with pytest.raises(RuntimeError, match="not open"):
        await store.save_inbound(inbound("late"))

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert len(await reopened.unfinished_inbound()) == 50
    finally:
        await reopened.close()


_CRASHING_WRITER = """
import asyncio, os, signal, sys
from datetime import UTC, datetime
from adapter.store import InboundRecord, SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.open()
    for n in range(20):
        await store.save_inbound(InboundRecord(
            "cro.test", f"m{n}", "CRO", "FlexRequest", "c", "3.1.0", b"h", b"e",
            datetime.now(UTC)))
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush: acknowledged must be enough

asyncio.run(main())
"""


async def test_sqlite_acknowledged_saves_survive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CRASHING_WRITER, str(path))
    assert await child.wait() == -signal.SIGKILL
    store = SqliteStore(path)
    await store.open()
    try:
        assert {r.message_id for r in await store.unfinished_inbound()} == {
            f"m{n}" for n in range(20)
        }
        # Its claims (30 s leases) went with it: the file is ours, so they are void.
        assert {r.message_id for r in await store.claim_unfinished_inbound(100)} == {
            f"m{n}" for n in range(20)
        }
    finally:
        await store.close()


async def test_sqlite_run_and_read_let_other_modules_add_tables(
    sqlite_store: SqliteStore,
) -> None:
    def create(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS portfolio (ean TEXT PRIMARY KEY)")
        return conn.execute("INSERT INTO portfolio VALUES ('871685900000000001')").rowcount

    assert await sqlite_store.run(create) == 1

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM portfolio").fetchone()[0])

    assert await sqlite_store.read(count) == 1

    def sneaky_write(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM portfolio")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await sqlite_store.read(sneaky_write)
    assert await sqlite_store.read(count) == 1
    # The connection is writable again afterwards.
    await sqlite_store.save_inbound(inbound())


#: The store's tables as schema version 1 wrote them: envelopes inside inbound and outbound.
_VERSION_1 = (
    "CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES ('store', 1)",
    """CREATE TABLE inbound (sender_domain TEXT NOT NULL, message_id TEXT NOT NULL,
        sender_role TEXT NOT NULL, message_type TEXT NOT NULL, conversation_id TEXT NOT NULL,
        version TEXT NOT NULL, content_hash BLOB NOT NULL, envelope BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('received', 'handled')), rejection TEXT,
        PRIMARY KEY (sender_domain, message_id))""",
    "CREATE INDEX inbound_unfinished ON inbound (received_at) WHERE status = 'received'",
    """CREATE TABLE outbound (message_id TEXT PRIMARY KEY, recipient_domain TEXT NOT NULL,
        recipient_role TEXT NOT NULL, message_type TEXT NOT NULL,
        conversation_id TEXT NOT NULL, reference_message_id TEXT, endpoint TEXT NOT NULL,
        envelope BLOB NOT NULL, created_at INTEGER NOT NULL, deadline INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, last_error TEXT)""",
    "CREATE INDEX outbound_due ON outbound (status, next_attempt_at)",
    """CREATE TABLE delivery_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL REFERENCES outbound (message_id),
        attempted_at INTEGER NOT NULL, http_status INTEGER, outcome TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX delivery_attempts_message ON delivery_attempts (message_id, attempted_at, id)",
)


async def test_sqlite_store_of_schema_version_1_is_migrated(tmp_path: Path) -> None:
    """Every message, envelope and attempt of a version-1 store is there after the upgrade,
    and the rebuilt tables keep their constraints."""
    path = tmp_path / "store.sqlite3"
    us = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    old_in, new_in = inbound("old"), inbound("handled", status=InboundStatus.HANDLED)
    response = outbound("resp-1")
    with sqlite3.connect(path) as conn:
        for statement in _VERSION_1:
            conn.execute(statement)
        for record in (old_in, new_in):
            conn.execute(
                "INSERT INTO inbound VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.sender_domain,
                    record.message_id,
                    record.sender_role,
                    record.message_type,
                    record.conversation_id,
                    record.version,
                    record.content_hash,
                    record.envelope,
                    us,
                    record.status.value,
                ),
            )
        conn.execute(
            "INSERT INTO outbound VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 1, NULL, ?)",
            (
                response.message_id,
                response.recipient_domain,
                response.recipient_role,
                response.message_type,
                response.conversation_id,
                response.reference_message_id,
                response.endpoint,
                response.envelope,
                us,
                us + 3600 * 10**6,
                "temporary: HTTP 503",
            ),
        )
        conn.execute(
            "INSERT INTO delivery_attempts (message_id, attempted_at, http_status, outcome, "
            "detail) VALUES ('resp-1', ?, 503, 'temporary', 'HTTP 503')",
            (us,),
        )
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.unfinished_inbound() == [old_in]
        assert await store.get_inbound(SENDER, "handled") == new_in
        assert await store.pending_outbound() == [
            replace(response, attempts=1, last_error="temporary: HTTP 503")
        ]
        assert await store.attempts("resp-1") == [attempt("resp-1")]
        await store.finish_inbound(SENDER, "old", outbound("resp-2"))
        assert await store.unfinished_inbound() == []

        def layout(conn: sqlite3.Connection) -> tuple[int, list[str], list[str], int]:
            (version,) = conn.execute(
                "SELECT version FROM schema_version WHERE component = 'store'"
            ).fetchone()
            columns = [row[1] for row in conn.execute("PRAGMA table_info(inbound)")]
            indexes = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' "
                    "AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
                )
            ]
            (enforced,) = conn.execute("PRAGMA foreign_keys").fetchone()
            return version, columns, indexes, enforced

        version, columns, indexes, enforced = await store.read(layout)
        assert version == SQLITE_SCHEMA_VERSION
        assert "envelope" not in columns
        assert indexes == [
            "bus_commands_conversation",  # the bus outbox's tables, beside the store's
            "bus_commands_message",
            "bus_events_unpublished",
            "inbound_unfinished",
            "outbound_pending",
        ]
        assert enforced == 1
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await store.run(
                lambda conn: conn.execute(
                    "INSERT INTO delivery_attempts "
                    "(message_id, attempt, attempted_at, outcome, detail) "
                    "VALUES ('nobody', 1, 0, 'temporary', '')"
                )
            )
    finally:
        await store.close()


#: The outbound table as schema version 2 wrote it: no status 'cancelled'.
_VERSION_2_OUTBOUND = """CREATE TABLE outbound_v2 (message_id TEXT PRIMARY KEY,
    recipient_domain TEXT NOT NULL, recipient_role TEXT NOT NULL, message_type TEXT NOT NULL,
    conversation_id TEXT NOT NULL, reference_message_id TEXT, endpoint TEXT NOT NULL,
    created_at INTEGER NOT NULL, deadline INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, last_error TEXT)"""


async def test_sqlite_store_of_schema_version_2_is_migrated_to_know_cancelled(
    tmp_path: Path,
) -> None:
    """Version 3 adds the outbound status 'cancelled' to the CHECK constraint of a table that
    holds pending messages and is referenced by their attempts."""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    pending = outbound("resp-1", next_attempt_at=T0)
    await store.add_outbound(pending)
    await store.record_attempt(attempt("resp-1", at=T0), OutboundStatus.PENDING, T0)
    await store.close()
    with sqlite3.connect(path) as conn:  # back to version 2's table, as that version wrote it
        conn.execute("PRAGMA foreign_keys = OFF")
        _envelopes_as_version_4_wrote_them(conn)
        conn.execute(_VERSION_2_OUTBOUND)
        conn.execute(
            "INSERT INTO outbound_v2 SELECT message_id, recipient_domain, recipient_role, "
            "message_type, conversation_id, reference_message_id, endpoint, created_at, "
            "deadline, status, attempts, next_attempt_at, last_error FROM outbound"
        )
        conn.execute("DROP TABLE outbound")
        conn.execute("ALTER TABLE outbound_v2 RENAME TO outbound")
        conn.execute("CREATE INDEX outbound_due ON outbound (status, next_attempt_at)")
        _attempts_as_version_4_wrote_them(conn)
        conn.execute("UPDATE schema_version SET version = 2 WHERE component = 'store'")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE outbound SET status = 'cancelled'")

    store = SqliteStore(path)
    await store.open()
    try:
        migrated = replace(pending, attempts=1, last_error="temporary: HTTP 503")
        assert await store.pending_outbound() == [migrated]
        assert await store.attempts("resp-1") == [attempt("resp-1", at=T0)]
        assert await store.cancel_outbound("resp-1") is True

        def version(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version FROM schema_version WHERE component = 'store'")
            return int(row.fetchone()[0])

        assert await store.read(version) == SQLITE_SCHEMA_VERSION
        indexes = await store.read(
            lambda conn: conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbound' "
                "AND name NOT LIKE 'sqlite_autoindex%'"
            ).fetchall()
        )
        assert [row[0] for row in indexes] == ["outbound_pending"]
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await store.run(
                lambda conn: conn.execute(
                    "INSERT INTO delivery_attempts "
                    "(message_id, attempt, attempted_at, outcome, detail) "
                    "VALUES ('nobody', 1, 0, 'temporary', '')"
                )
            )
    finally:
        await store.close()


async def test_sqlite_store_of_schema_version_3_is_migrated_to_hold_claims(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.add_outbound(outbound())
    await store.save_inbound(inbound())
    await store.close()
    with sqlite3.connect(path) as conn:  # version 3's tables had no claims
        _envelopes_as_version_4_wrote_them(conn)
        for table in ("inbound", "outbound"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN claimed_by")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN lease_until")
        _attempts_as_version_4_wrote_them(conn)
        conn.execute("UPDATE schema_version SET version = 3 WHERE component = 'store'")
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.claim_outbound(LATER, 10) == [outbound()]
        assert await store.claim_unfinished_inbound(10) == [inbound()]
        assert await store.claim_outbound(LATER, 10) == []

        def version(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version FROM schema_version WHERE component = 'store'")
            return int(row.fetchone()[0])

        assert await store.read(version) == SQLITE_SCHEMA_VERSION
    finally:
        await store.close()


#: delivery_attempts as schema versions 1 to 4 wrote it: a rowid with AUTOINCREMENT, and an
#: index to find a message's attempts.
_VERSION_4_ATTEMPTS = (
    """CREATE TABLE delivery_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL REFERENCES outbound (message_id),
        attempted_at INTEGER NOT NULL, http_status INTEGER, outcome TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX delivery_attempts_message ON delivery_attempts (message_id, attempted_at, id)",
)


def _envelopes_as_version_4_wrote_them(conn: sqlite3.Connection) -> None:
    """Put the envelope tables back as versions 2 to 4 had them: keyed by the message's keys
    rather than by its id."""
    for table, keys in (
        ("inbound", ("sender_domain", "message_id")),
        ("outbound", ("message_id",)),
    ):
        conn.execute(f"ALTER TABLE {table}_envelope RENAME TO envelope_now")
        conn.execute(
            f"CREATE TABLE {table}_envelope ({', '.join(f'{key} TEXT NOT NULL' for key in keys)}, "
            f"envelope BLOB NOT NULL, PRIMARY KEY ({', '.join(keys)}))"
        )
        conn.execute(
            f"INSERT INTO {table}_envelope SELECT {', '.join(f'm.{key}' for key in keys)}, "
            f"e.envelope FROM {table} AS m JOIN envelope_now AS e ON e.id = m.id"
        )
        conn.execute("DROP TABLE envelope_now")


def _attempts_as_version_4_wrote_them(conn: sqlite3.Connection) -> None:
    """Put delivery_attempts back as versions 1 to 4 had it, rows kept in their order."""
    conn.execute("ALTER TABLE delivery_attempts RENAME TO attempts_now")
    for statement in _VERSION_4_ATTEMPTS:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO delivery_attempts (message_id, attempted_at, http_status, outcome, detail) "
        "SELECT message_id, attempted_at, http_status, outcome, detail FROM attempts_now "
        "ORDER BY message_id, attempt"
    )
    conn.execute("DROP TABLE attempts_now")


#: The store's tables as schema version 4 wrote them (the bus outbox's are the same).
_VERSION_4 = (
    "CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES ('store', 4)",
    """CREATE TABLE inbound (sender_domain TEXT NOT NULL, message_id TEXT NOT NULL,
        sender_role TEXT NOT NULL, message_type TEXT NOT NULL, conversation_id TEXT NOT NULL,
        version TEXT NOT NULL, content_hash BLOB NOT NULL, received_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('received', 'handled')), rejection TEXT,
        claimed_by TEXT, lease_until INTEGER, PRIMARY KEY (sender_domain, message_id))""",
    """CREATE TABLE inbound_envelope (sender_domain TEXT NOT NULL, message_id TEXT NOT NULL,
        envelope BLOB NOT NULL, PRIMARY KEY (sender_domain, message_id))""",
    """CREATE TABLE outbound (message_id TEXT PRIMARY KEY, recipient_domain TEXT NOT NULL,
        recipient_role TEXT NOT NULL, message_type TEXT NOT NULL,
        conversation_id TEXT NOT NULL, reference_message_id TEXT, endpoint TEXT NOT NULL,
        created_at INTEGER NOT NULL, deadline INTEGER NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'delivered', 'failed', 'expired', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, last_error TEXT,
        claimed_by TEXT, lease_until INTEGER)""",
    """CREATE TABLE outbound_envelope (message_id TEXT PRIMARY KEY, envelope BLOB NOT NULL)""",
    *_VERSION_4_ATTEMPTS,
    "CREATE INDEX inbound_unfinished ON inbound (received_at) WHERE status = 'received'",
    "CREATE INDEX outbound_due ON outbound (status, next_attempt_at)",
)


async def test_sqlite_store_of_schema_version_4_is_migrated_to_fewer_b_trees(
    tmp_path: Path,
) -> None:
    """Version 5 numbers a message's attempts in a table keyed by them (no AUTOINCREMENT,
    no index of its own) and indexes only the pending messages: the rows, their order and
    the claims of a version-4 store survive, and new attempts follow the old ones."""
    path = tmp_path / "store.sqlite3"
    us = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    unfinished = inbound("unfinished")
    pending, done = outbound("resp-1", next_attempt_at=T0), outbound("resp-2")
    with sqlite3.connect(path) as conn:
        for statement in _VERSION_4:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO inbound VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'received', NULL, 'gone', 1)",
            (
                unfinished.sender_domain,
                unfinished.message_id,
                unfinished.sender_role,
                unfinished.message_type,
                unfinished.conversation_id,
                unfinished.version,
                unfinished.content_hash,
                us,
            ),
        )
        conn.execute(
            "INSERT INTO inbound_envelope VALUES (?, ?, ?)",
            (unfinished.sender_domain, unfinished.message_id, unfinished.envelope),
        )
        for record, status, tries, last_error in (
            (pending, "pending", 2, "temporary: HTTP 503"),
            (done, "delivered", 1, None),
        ):
            conn.execute(
                "INSERT INTO outbound VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    record.message_id,
                    record.recipient_domain,
                    record.recipient_role,
                    record.message_type,
                    record.conversation_id,
                    record.reference_message_id,
                    record.endpoint,
                    us,
                    us + 3600 * 10**6,
                    status,
                    tries,
                    us if status == "pending" else None,
                    last_error,
                ),
            )
            conn.execute(
                "INSERT INTO outbound_envelope VALUES (?, ?)", (record.message_id, record.envelope)
            )
        # Interleaved ids, as two messages' attempts get them; the second attempt of resp-1
        # at the same instant as its first (the id orders them).
        for message_id, status_code, outcome in (
            ("resp-1", 503, "temporary"),
            ("resp-2", 200, "delivered"),
            ("resp-1", 502, "temporary"),
        ):
            conn.execute(
                "INSERT INTO delivery_attempts (message_id, attempted_at, http_status, "
                "outcome, detail) VALUES (?, ?, ?, ?, ?)",
                (message_id, us, status_code, outcome, f"HTTP {status_code}"),
            )
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.unfinished_inbound() == [unfinished]
        assert await store.claim_unfinished_inbound(10) == [unfinished]  # its claim voided
        migrated = replace(pending, attempts=2, last_error="temporary: HTTP 503")
        assert await store.pending_outbound() == [migrated]
        assert await store.claim_outbound(LATER, 10) == [migrated]
        first, second = (
            DeliveryAttempt("resp-1", T0, code, "temporary", f"HTTP {code}") for code in (503, 502)
        )
        assert await store.attempts("resp-1") == [first, second]
        assert await store.attempts("resp-2") == [
            DeliveryAttempt("resp-2", T0, 200, "delivered", "HTTP 200")
        ]
        third = attempt("resp-1", at=T0, http_status=200, outcome="delivered", detail="")
        assert not await store.record_attempt(third, OutboundStatus.DELIVERED, None)
        assert await store.attempts("resp-1") == [first, second, third]
        assert await store.pending_outbound() == []

        def layout(conn: sqlite3.Connection) -> tuple[int, list[str], list[tuple[str, int]]]:
            (version,) = conn.execute(
                "SELECT version FROM schema_version WHERE component = 'store'"
            ).fetchone()
            indexes = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name IN ('inbound', 'outbound', 'delivery_attempts') "
                    "AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
                )
            ]
            numbers = conn.execute(
                "SELECT message_id, attempt FROM delivery_attempts ORDER BY message_id, attempt"
            ).fetchall()
            for table in ("inbound_envelope", "outbound_envelope"):  # keyed by the id alone
                indexes += [row[1] for row in conn.execute(f"PRAGMA index_list({table})")]
                indexes += [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            return version, indexes, [tuple(row) for row in numbers]

        version, indexes, numbers = await store.read(layout)
        assert version == SQLITE_SCHEMA_VERSION == 5
        envelope_columns = ["id", "envelope"]
        assert indexes == ["inbound_unfinished", "outbound_pending", *envelope_columns * 2]
        assert numbers == [("resp-1", 1), ("resp-1", 2), ("resp-1", 3), ("resp-2", 1)]
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await store.run(
                lambda conn: conn.execute(
                    "INSERT INTO delivery_attempts "
                    "(message_id, attempt, attempted_at, outcome, detail) "
                    "VALUES ('nobody', 1, 0, 'temporary', '')"
                )
            )
    finally:
        await store.close()


async def test_sqlite_copies_a_large_write_into_the_database_file_in_the_background(
    sqlite_store: SqliteStore,
) -> None:
    """The WAL is checkpointed by the store's own thread after a large (offloaded) batch,
    not left for whichever later commit crosses a threshold: the database file grows
    without another write."""
    blob = os.urandom(2 * 2**20)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS big (data BLOB)")
        conn.execute("INSERT INTO big VALUES (?)", (blob,))

    before = sqlite_store.path.stat().st_size
    await sqlite_store.run(write, offload=True)
    for _ in range(100):
        if sqlite_store.path.stat().st_size >= before + len(blob):
            break
        await asyncio.sleep(0.05)
    assert sqlite_store.path.stat().st_size >= before + len(blob)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.run(
        lambda conn: conn.execute(
            "UPDATE schema_version SET version = 99 WHERE component = 'store'"
        )
    )
    await store.close()
    with pytest.raises(RuntimeError, match="newer"):
        await store.open()


async def test_sqlite_refuses_a_library_older_than_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite 3.34 (Debian 11's) lacks RETURNING, which `record_attempt` uses: the store says
    so at open, taking nothing, rather than failing every delivery's record later. (The
    library here is newer: its version is what is set back.)"""
    path = tmp_path / "store.sqlite3"
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(
        StoreOpenError, match=r"needs the SQLite library 3\.35\.0 or newer; .* uses 3\.34\.1$"
    ):
        await SqliteStore(path).open()
    assert not path.exists()


async def test_sqlite_a_full_disk_is_a_storage_error_and_loses_nothing(tmp_path: Path) -> None:
    """ "database or disk is full" is our fault, raised as `StorageError` (the driver's error
    its cause); the message stays unfinished, and once space returns the same call works."""
    with small_disk(tmp_path / "disk") as disk:
        store = SqliteStore(disk.path / "store.sqlite3")
        await store.open()
        try:
            await store.save_inbound(inbound())
            disk.fill()

            with pytest.raises(StorageError, match="database or disk is full") as failed:
                await store.finish_inbound(SENDER, "msg-1", outbound("resp-1"))
            assert isinstance(failed.value.__cause__, sqlite3.OperationalError)
            assert await store.unfinished_inbound() == [inbound()]
            assert await store.get_outbound("resp-1") is None
            # A copy sent again is recognised without writing anything.
            assert await store.save_inbound(inbound()) is SaveOutcome.ALREADY_SUBMITTED

            disk.free()
            await store.finish_inbound(SENDER, "msg-1", outbound("resp-1"))
            assert await store.unfinished_inbound() == []
            assert await store.pending_outbound() == [outbound("resp-1")]
        finally:
            await store.close()


async def test_sqlite_a_disk_that_fills_mid_statement_is_a_storage_error(tmp_path: Path) -> None:
    """A large write fills the disk before its COMMIT (its pages spill from the cache), and
    SQLite ends the whole transaction: the operation, and any batched with it, get the
    full disk as `StorageError`, not a failure to roll back to a savepoint that is gone."""
    with small_disk(tmp_path / "disk", size="2m") as disk:
        store = SqliteStore(disk.path / "store.sqlite3")
        await store.open()
        try:
            await store.run(lambda conn: conn.execute("CREATE TABLE big (b BLOB)"))
            await store.run(lambda conn: conn.execute("PRAGMA cache_size = 16"))  # spill early

            def write_4_mib(conn: sqlite3.Connection) -> None:
                for _ in range(64):
                    conn.execute("INSERT INTO big VALUES (?)", (bytes(64 * 1024),))

            big = asyncio.ensure_future(store.run(write_4_mib))
            small = asyncio.ensure_future(store.save_inbound(inbound()))
            results = await asyncio.gather(big, small, return_exceptions=True)

            assert all(isinstance(r, StorageError) for r in results), results
            assert (
                await store.read(
                    lambda conn: conn.execute("SELECT count(*) FROM big").fetchone()[0]
                )
                == 0
            )
            assert await store.save_inbound(inbound()) is SaveOutcome.NEW  # room for that
        finally:
            await store.close()


# -- PostgreSQL only --------------------------------------------------------------------------


@pytest.fixture
async def owners(backend: Backend) -> AsyncIterator[list[Store]]:
    """Three store objects on one schema, as three processes have: three owners."""
    stores = [backend.make(lease=timedelta(seconds=0.5)) for _ in range(3)]
    for opened in stores:
        await opened.open()
    try:
        yield stores
    finally:
        for opened in stores:
            await opened.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_owners_never_take_each_others_claims(owners: list[Store]) -> None:
    a, b, _ = owners
    await a.add_outbound(outbound())
    await a.save_inbound(inbound())
    assert len({store.owner for store in owners}) == 3

    assert await b.claim_outbound(LATER, 10) == []
    assert await b.claim_unfinished_inbound(10) == []
    await b.release_claims()  # releases b's claims only
    assert await b.claim_outbound(LATER, 10) == []

    await a.release_claims()
    assert await b.claim_outbound(LATER, 10) == [outbound()]
    assert await b.claim_unfinished_inbound(10) == [inbound()]
    assert await a.claim_outbound(LATER, 10) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_concurrent_claims_are_disjoint_and_take_everything(
    owners: list[Store],
) -> None:
    """Three owners claim a backlog at once, in batches: SKIP LOCKED gives each its own rows,
    none is taken twice and none is left over."""
    records = [
        outbound(f"out-{n:03}", created_at=T0 + timedelta(microseconds=n)) for n in range(300)
    ]
    for record in records:
        await owners[0].add_outbound(record)
    await owners[0].release_claims()
    for n in range(40):
        await owners[0].save_inbound(inbound(f"in-{n:02}", received_at=T0 + timedelta(seconds=n)))
    await owners[0].release_claims()

    async def drain(store: Store) -> tuple[list[str], list[str]]:
        out: list[str] = []
        into: list[str] = []
        while True:
            batch = await store.claim_outbound(LATER, 7)
            inbound_batch = await store.claim_unfinished_inbound(3)
            out += [r.message_id for r in batch]
            into += [r.message_id for r in inbound_batch]
            if not batch and not inbound_batch:
                return out, into

    results = await asyncio.gather(*(drain(store) for store in owners))

    claimed_out = [m for out, _ in results for m in out]
    claimed_in = [m for _, into in results for m in into]
    assert sorted(claimed_out) == [r.message_id for r in records]  # each exactly once
    assert sorted(claimed_in) == [f"in-{n:02}" for n in range(40)]
    assert all(out for out, _ in results)  # every owner got a share


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_a_lapsed_claim_goes_to_another_owner_and_stays_there(
    owners: list[Store],
) -> None:
    """An owner that stops renewing (its process died, or stalled) loses its messages to
    another; its late report of an attempt does not take the message back."""
    stalled, other, _ = owners
    await stalled.add_outbound(outbound())
    await asyncio.sleep(0.2)
    await other.renew_claims()  # renews only what `other` holds
    assert await other.claim_outbound(LATER, 10) == []
    await asyncio.sleep(0.5)

    assert await other.claim_outbound(LATER, 10) == [outbound()]
    assert await stalled.record_attempt(attempt(), OutboundStatus.PENDING, T0) is False
    assert await other.record_attempt(attempt(), OutboundStatus.PENDING, T0) is True
    await stalled.renew_claims()
    await asyncio.sleep(0.3)
    await other.renew_claims()
    await asyncio.sleep(0.3)
    assert await stalled.claim_outbound(LATER, 10) == []  # still `other`'s


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_store_of_schema_version_2_is_migrated_to_hold_claims(
    backend: Backend,
) -> None:
    store = backend.make()
    await store.open()
    await store.add_outbound(outbound())
    await store.save_inbound(inbound())

    async def back_to_version_2(conn: Any) -> None:
        for table in ("inbound", "outbound"):
            await conn.execute(
                f"ALTER TABLE {table} DROP COLUMN claimed_by, DROP COLUMN lease_until"
            )
        await conn.execute("UPDATE schema_version SET version = 2 WHERE component = 'store'")

    await store.run(back_to_version_2)  # type: ignore[attr-defined]
    await store.close()  # (cannot release: there are no claims in version 2)

    store = backend.make()
    await store.open()
    try:
        assert await store.claim_outbound(LATER, 10) == [outbound()]
        assert await store.claim_unfinished_inbound(10) == [inbound()]
        version = await store.run(  # type: ignore[attr-defined]
            lambda conn: conn.fetchval(
                "SELECT version FROM schema_version WHERE component = 'store'"
            )
        )
        assert version == 3
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_a_lost_connection_is_a_storage_error(store: Store) -> None:
    """The server ends our session (a restart, a failover, an administrator): our fault, raised
    as `StorageError`; the store serves the next call on a new connection."""
    import asyncpg

    loop = asyncio.get_running_loop()
    server_pid: asyncio.Future[int] = loop.create_future()

    async def wait_long(conn: Any) -> None:
        server_pid.set_result(conn.get_server_pid())
        await conn.execute("SELECT pg_sleep(30)")

    waiting = asyncio.ensure_future(store.run(wait_long))
    admin = await asyncpg.connect(PG_DSN)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", await server_pid)
    finally:
        await admin.close()

    with pytest.raises(StorageError, match="PostgreSQL store") as failed:
        await asyncio.wait_for(waiting, timeout=10)
    assert isinstance(failed.value.__cause__, asyncpg.PostgresError)
    assert await store.save_inbound(inbound()) is SaveOutcome.NEW


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_run_is_one_transaction(store: Store) -> None:
    from adapter.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)

    async def create(conn: Any) -> None:
        await conn.execute("CREATE TABLE portfolio (ean text PRIMARY KEY)")
        await conn.execute("INSERT INTO portfolio VALUES ('871685900000000001')")

    await store.run(create)

    async def insert_then_fail(conn: Any) -> None:
        await conn.execute("INSERT INTO portfolio VALUES ('871685900000000002')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.run(insert_then_fail)

    async def count(conn: Any) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM portfolio"))

    assert await store.run(count) == 1
    assert await store.run(lambda conn: conn.fetchval("SELECT current_schema()")) == store.schema


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_a_connection_given_back_costs_no_reset_round_trip(store: Store) -> None:
    """The frequent operations are one statement and one round trip each: a connection given
    back to the pool is not reset with a query of its own (asyncpg's default sends one,
    which doubled the round trips), while what asyncpg always does still holds: a
    transaction left open is rolled back."""
    from adapter.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    sent: list[str] = []

    async def watch(conn: Any) -> int:
        conn.add_query_logger(lambda record: sent.append(record.query))
        return int(conn.get_server_pid())

    async def same_connection(conn: Any) -> int:
        return int(conn.get_server_pid())

    watched = await store.run(watch)
    await store.save_inbound(inbound())
    await store.finish_inbound(SENDER, "msg-1", outbound())
    assert await store.run(same_connection) == watched  # the pool of one idle connection
    assert not any("RESET ALL" in query or "UNLISTEN" in query for query in sent)
    statements = [query.split()[0].rstrip(";") for query in sent]
    # watch's COMMIT, save_inbound's INSERT, finish_inbound's one statement (the response
    # queued in it), and nothing in between
    assert statements[:3] == ["COMMIT", "INSERT", "WITH"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_store_of_schema_version_1_is_migrated_to_know_cancelled(
    backend: Backend,
) -> None:
    store = backend.make()
    await store.open()
    await store.add_outbound(outbound())

    async def back_to_version_1(conn: Any) -> None:
        await conn.execute(
            "ALTER TABLE outbound DROP CONSTRAINT outbound_status_check, "
            "ADD CONSTRAINT outbound_status_check "
            "CHECK (status IN ('pending', 'delivered', 'failed', 'expired'))"
        )
        await conn.execute("UPDATE schema_version SET version = 1 WHERE component = 'store'")

    await store.run(back_to_version_1)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="outbound_status_check"):
        await store.cancel_outbound("out-1")
    await store.close()

    store = backend.make()
    await store.open()
    try:
        assert await store.cancel_outbound("out-1") is True
        version = await store.run(  # type: ignore[attr-defined]
            lambda conn: conn.fetchval(
                "SELECT version FROM schema_version WHERE component = 'store'"
            )
        )
        assert version == 3
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_stores_envelopes_lz4_compressed_on_every_pooled_connection(
    store: Store,
) -> None:
    from adapter.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    if int(await store.run(lambda conn: conn.fetchval("SHOW server_version_num"))) < 140000:
        pytest.skip("lz4 compression needs PostgreSQL 14")
    # Large enough to be compressed; saved concurrently, so several pooled connections are
    # used, and each of them again after the pool has reset it.
    big = b"<Connection EntityAddress='ean.871685900000000001'/>" * 20_000
    for round_ in range(2):
        await asyncio.gather(
            *(
                store.save_inbound(inbound(f"big-{round_}-{n}", content=big + str(n).encode()))
                for n in range(6)
            )
        )
    methods = await store.run(
        lambda conn: conn.fetch("SELECT DISTINCT pg_column_compression(envelope) FROM inbound")
    )
    assert [row[0] for row in methods] == ["lz4"]


# -- open_store -------------------------------------------------------------------------------


def test_open_store_sqlite_paths(tmp_path: Path) -> None:
    relative = open_store("sqlite:var/dso.sqlite3", base_dir=tmp_path)
    assert isinstance(relative, SqliteStore)
    assert relative.path == tmp_path / "var" / "dso.sqlite3"

    absolute = open_store(f"sqlite:{tmp_path}/abs.sqlite3", base_dir=Path("/elsewhere"))
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == tmp_path / "abs.sqlite3"

    no_base = open_store("sqlite:x.sqlite3")
    assert isinstance(no_base, SqliteStore)
    assert no_base.path == Path.cwd() / "x.sqlite3"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:", "no PATH"),
        ("sqlite::memory:", "in-memory"),
        ("sqlite://var/x.db", "not 'sqlite://"),
        ("mysql://user:secret@host/db", "scheme 'mysql'"),
        ("var/x.db", "no recognised scheme"),
        ("postgresql://h/db?schema=a&schema=b", "more than once"),
        ("postgresql://h/db?schema=", "empty"),
        ("postgresql://h/db?schema=Bad-Name", "schema name"),
    ],
)
def test_open_store_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "dsn", "schema"),
    [
        (
            "postgresql://u:pw@db.example:5432/uftp",
            "postgresql://u:pw@db.example:5432/uftp",
            "uftp",
        ),
        ("postgres://db.example/uftp?schema=dso", "postgres://db.example/uftp", "dso"),
        (
            "postgresql:///uftp?host=/run/postgresql&schema=dso_1&sslmode=disable",
            "postgresql:///uftp?host=%2Frun%2Fpostgresql&sslmode=disable",
            "dso_1",
        ),
    ],
)
def test_open_store_postgres_urls(url: str, dsn: str, schema: str) -> None:
    import_asyncpg()
    from adapter.store.postgres import PostgresStore

    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store.schema == schema
    assert store._dsn == dsn
    assert "pw" not in repr(store)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_opening_a_current_store_takes_no_table_lock(
    backend: Backend, store: Store
) -> None:
    """A process that opens the store beside running writers does not wait for their
    transactions: with the tables current it runs no DDL (a `CREATE INDEX IF NOT EXISTS` locks
    its table even when the index exists, and several of them deadlocked with workers)."""
    from adapter.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    await store.save_inbound(inbound())
    entered, release = asyncio.Event(), asyncio.Event()

    async def writer(conn: Any) -> None:  # a worker's transaction, open on both tables
        await conn.execute("UPDATE inbound SET status = status")
        await conn.execute("UPDATE outbound SET status = status")
        entered.set()
        await release.wait()

    writing = asyncio.create_task(store.run(writer))
    await entered.wait()
    second = backend.make()
    try:
        await asyncio.wait_for(second.open(), timeout=5)
    finally:
        release.set()
        await writing
        await second.close()
