"""Delivery attempts recorded together on PostgreSQL (`_AttemptBatch`), on a real server:
two processes grouping the same messages in different orders, and a grouping cut short.

Each `PostgresStore` here stands for one process: a pool of its own on one shared schema.
"""

# ruff: noqa: F811 - the backend fixture of the store contract is imported by name

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.postgres import import_asyncpg

asyncpg = import_asyncpg()

from adapter.store.base import OutboundStatus, StorageError  # noqa: E402
from adapter.store.postgres import PostgresStore  # noqa: E402
from tests.conftest import eventually  # noqa: E402
from tests.postgres import PG_DSN  # noqa: E402
from tests.store.test_store_contract import (  # noqa: E402, F401 - backend: a fixture
    T0,
    Backend,
    attempt,
    backend,
    outbound,
)

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[list[PostgresStore]]:
    """Two processes' stores on the backend's fresh schema."""
    opened: list[PostgresStore] = []
    for _ in range(2):
        made = backend.make()
        assert isinstance(made, PostgresStore)
        opened.append(made)
    try:
        for store in opened:
            await store.open()
        yield opened
    finally:
        for store in opened:
            await store.close()


def queued(message_id: str) -> tuple[object, ...]:
    """The parameters `record_attempt` queues for a temporary failure of `message_id`."""
    report = attempt(message_id)
    return (
        OutboundStatus.PENDING.value,
        T0 + timedelta(seconds=5),
        "temporary: HTTP 503",
        message_id,
        report.attempted_at,
        report.http_status,
        report.outcome,
        report.detail,
    )


async def test_two_processes_grouping_the_same_messages_in_opposite_orders_do_not_deadlock(
    stores: list[PostgresStore],
) -> None:
    """Process A records attempts of "a" and "z" together, process B of "z" and "a" (as each
    got them; possible after a claim lapsed, or for attempts of a message another process
    took over). Two other transactions hold "a" and "z" meanwhile and end one after the
    other, so that A has "a" while B is waiting for "z": rows locked in each grouping's own
    order leave A holding "a" and waiting for "z", B the reverse, and the server breaks the
    deadlock by failing one. Locked in one order everywhere, one waits for the other."""
    first, second = stores
    for message_id in ("a", "z"):
        await first.add_outbound(outbound(message_id))
    holders = [await asyncpg.connect(PG_DSN) for _ in range(3)]
    monitor = holders.pop()
    try:
        for holder in [*holders, monitor]:
            await holder.execute(f"SET search_path = {first.schema}")
        # A table of some size, as in use: the server then finds the rows by their index, in
        # the order it is given them (a table of two it reads whole, in its own order).
        await holders[0].execute(
            "INSERT INTO outbound (message_id, recipient_domain, recipient_role, message_type, "
            "conversation_id, endpoint, envelope, created_at, deadline, status) "
            "SELECT 'other-' || n, recipient_domain, recipient_role, message_type, "
            "conversation_id, endpoint, envelope, created_at, deadline, status "
            "FROM outbound, generate_series(1, 1000) AS n WHERE message_id = 'a'"
        )
        await holders[0].execute("ANALYZE outbound")
        await first.release_claims()
        holding = []
        for holder, message_id in zip(holders, ("a", "z"), strict=True):
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute(
                "SELECT 1 FROM outbound WHERE message_id = $1 FOR UPDATE", message_id
            )
            holding.append(transaction)
        held_by = [await holder.fetchval("SELECT pg_current_xact_id()::text") for holder in holders]
        recording = [
            asyncio.create_task(first._attempts._run([queued("a"), queued("z")])),  # type: ignore[list-item]
            asyncio.create_task(second._attempts._run([queued("z"), queued("a")])),  # type: ignore[list-item]
        ]

        async def waiting(on: list[str], *, rows: bool = True) -> int:
            """Lock requests not granted: for the transactions `on`, or for a row of ours."""
            count: int = await monitor.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted "
                "AND (transactionid::text = ANY($1::text[]) "
                "OR $2 AND locktype = 'tuple' AND relation = 'outbound'::regclass)",
                on,
                rows,
            )
            return count

        async def both_wait() -> bool:
            return await waiting(held_by) >= 2

        async def a_taken() -> bool:
            return await waiting(held_by[:1], rows=False) == 0

        await eventually(both_wait)
        await holding[0].commit()  # "a" is free: the one waiting for it takes it
        await eventually(a_taken)
        await asyncio.sleep(0.2)  # and goes on to "z"
        await holding[1].commit()
        results = await asyncio.wait_for(asyncio.gather(*recording, return_exceptions=True), 10)
    finally:
        for holder in [*holders, monitor]:
            await holder.close()

    assert results == [{"a": False, "z": False}, {"a": False, "z": False}]  # (nobody's claims)
    for message_id in ("a", "z"):
        record = await first.get_outbound(message_id)
        assert record is not None and record.attempts == 2


async def test_callers_of_a_grouping_cut_short_are_told_not_cancelled(
    stores: list[PostgresStore],
) -> None:
    """The task that records the grouped attempts is cancelled (as the loop's teardown
    cancels every task) while a statement waits: its callers, not cancelled themselves, must
    learn that their attempts may not be recorded (`StorageError`, which a delivery treats
    as a fault of ours and retries), not receive a `CancelledError` of another task's, which
    would end them silently; so must those still queued behind the statement."""
    store = stores[0]
    for n in range(6):
        await store.add_outbound(outbound(f"m{n}"))
    holder = await asyncpg.connect(PG_DSN)
    try:
        await holder.execute(f"SET search_path = {store.schema}")
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM outbound FOR UPDATE")  # the statement waits

        def report(n: int) -> asyncio.Task[bool]:
            return asyncio.create_task(
                store.record_attempt(attempt(f"m{n}"), OutboundStatus.PENDING, T0)
            )

        sent = [report(n) for n in range(3)]

        async def statement_waits() -> bool:
            count: int = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND transactionid::text = "
                "pg_current_xact_id()::text"
            )
            return count == 1

        await eventually(statement_waits)
        queued_behind = [report(n) for n in range(3, 6)]
        await asyncio.sleep(0.05)
        flushing = store._attempts._flushing
        assert flushing is not None
        flushing.cancel()
        results = await asyncio.wait_for(
            asyncio.gather(*sent, *queued_behind, return_exceptions=True), 5
        )
        await holding.rollback()
    finally:
        await holder.close()

    assert [type(result) for result in results] == [StorageError] * 6, results
    counted = []
    for n in range(6):
        record = await store.get_outbound(f"m{n}")
        assert record is not None
        counted.append(record.attempts)
    # The statement cut short may still have run once the rows were free (a backend waiting
    # for a lock does not notice its client left), hence "may not be recorded"; those
    # queued behind it were never sent.
    assert counted[:3] in ([0] * 3, [1] * 3) and counted[3:] == [0] * 3, counted
    assert await store.record_attempt(attempt("m0"), OutboundStatus.PENDING, T0) is True
