"""The PostgreSQL store's connection pool, on a real server: what it lends again, and what not.

A connection whose borrower stopped mid-query or left a transaction open must never reach the
next borrower (it would see a reply meant for another, or run inside a stranger's
transaction); one the server ended must be replaced; no more than `max_size` are open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.postgres import import_asyncpg

asyncpg = import_asyncpg()

from adapter.store.postgres_pool import ConnectionPool  # noqa: E402
from tests.postgres import PG_DSN, require  # noqa: E402
from tests.store.test_postgres_coordination import eventually  # noqa: E402


class Opened:
    """Counts the connections the pool makes."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> Any:
        self.count += 1
        return await asyncpg.connect(PG_DSN, timeout=5)


@pytest.fixture
async def opened() -> Opened:
    await require()
    return Opened()


@pytest.fixture
async def pool(opened: Opened) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(opened, 2)
    yield pool
    await pool.close()


async def test_a_connection_is_lent_again_and_no_more_than_max_size_are_open(
    pool: ConnectionPool, opened: Opened
) -> None:
    first = await pool.fetchval("SELECT pg_backend_pid()")
    assert await pool.fetchval("SELECT pg_backend_pid()") == first  # the idle one, again
    assert opened.count == 1

    async def hold() -> int:
        async with pool.acquire() as conn:
            await asyncio.sleep(0.05)
            return int(await conn.fetchval("SELECT pg_backend_pid()"))

    pids = await asyncio.gather(*(hold() for _ in range(6)))
    assert len(set(pids)) == 2 and opened.count == 2 and pool.size == 2


async def test_a_borrower_cancelled_mid_query_leaves_its_connection_closed(
    pool: ConnectionPool,
) -> None:
    async def slow() -> None:
        async with pool.acquire() as conn:
            slow.pid = conn.get_server_pid()  # type: ignore[attr-defined]
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.size == 0
    # The next borrower gets a new connection that answers its own query at once.
    assert await asyncio.wait_for(pool.fetchval("SELECT 42"), 2) == 42
    assert await pool.fetchval("SELECT pg_backend_pid()") != slow.pid  # type: ignore[attr-defined]


async def test_a_transaction_left_open_is_not_lent_again(pool: ConnectionPool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMPORARY TABLE left_open (x int)")
    assert pool.size == 0
    assert await pool.fetchval("SELECT to_regclass('pg_temp.left_open')") is None


async def test_an_error_of_the_server_or_the_borrower_keeps_the_connection(
    pool: ConnectionPool, opened: Opened
) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await pool.execute("SELECT * FROM no_such_table_here")
    with pytest.raises(LookupError):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1")
            raise LookupError("the borrower's own")
    assert await pool.fetchval("SELECT 1") == 1
    assert opened.count == 1 and pool.size == 1


async def test_a_connection_the_server_ended_is_replaced(
    pool: ConnectionPool, opened: Opened
) -> None:
    pid = await pool.fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # asyncpg reads the server's goodbye: the idle one is closed
    assert await pool.fetchval("SELECT pg_backend_pid()") != pid  # not lent: replaced
    assert pool.size == 1


async def test_close_waits_for_lent_connections_and_refuses_borrowers(
    pool: ConnectionPool,
) -> None:
    release = asyncio.Event()

    async def hold() -> None:
        async with pool.acquire():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(pool.fetchval("SELECT 1"))  # no third connection
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    with pytest.raises(asyncpg.InterfaceError):
        await waiting
    release.set()
    await asyncio.gather(*holders)
    await closing
    assert pool.size == 0
    with pytest.raises(asyncpg.InterfaceError):
        await pool.fetchval("SELECT 1")


async def test_a_connection_idle_too_long_is_replaced(opened: Opened) -> None:
    """A firewall may have dropped it silently meanwhile: never lent after `max_idle`."""
    pool = ConnectionPool(opened, 2, max_idle=1.0)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        assert await pool.fetchval("SELECT pg_backend_pid()") == pid  # not idle long yet
        await asyncio.sleep(1.2)
        assert await pool.fetchval("SELECT pg_backend_pid()") != pid
        assert opened.count == 2 and pool.size == 1
    finally:
        await pool.close()


async def test_a_waiter_cancelled_as_the_connection_comes_back_ends_cancelled(
    opened: Opened,
) -> None:
    """A borrower waiting for the one connection is cancelled, and in the same turn of the
    loop the connection is given back: the hand-over passes the cancelled borrower by, which
    must still end with its cancellation (not an error of the pool's), and the connection
    goes to the next one."""
    pool = ConnectionPool(opened, 1)
    try:
        held = await pool.take()
        cancelled = asyncio.create_task(pool.take())
        following = asyncio.create_task(pool.take())
        await asyncio.sleep(0.05)  # both wait now
        cancelled.cancel()
        pool.give_back(held)  # before the cancelled task runs again
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await asyncio.wait_for(following, 5) is held
        pool.give_back(held)
    finally:
        await asyncio.wait_for(pool.close(), 5)  # (a borrow left lent would hold it)


async def test_close_waits_for_a_connection_still_being_made_and_closes_it(
    opened: Opened,
) -> None:
    """`close` while a borrower's connection is still being opened: it waits for that
    borrow to end, and the connection is closed then, not left idle in a closed pool."""
    may_open = asyncio.Event()

    async def slow_connect() -> Any:
        await may_open.wait()
        return await opened()

    pool = ConnectionPool(slow_connect, 2)
    borrowed: list[Any] = []

    async def borrow() -> None:
        async with pool.acquire() as conn:
            borrowed.append(conn)

    borrower = asyncio.create_task(borrow())
    await asyncio.sleep(0.05)  # the connection is being made
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for the borrow under way
    may_open.set()
    await asyncio.wait_for(borrower, 5)
    await asyncio.wait_for(closing, 5)
    assert len(borrowed) == 1 and borrowed[0].is_closed()
    assert pool.size == 0


async def test_a_waiter_handed_a_slot_as_the_pool_closes_opens_no_connection(
    opened: Opened,
) -> None:
    """The one connection is closed on its return, its slot handed to the borrower waiting;
    in the same turn of the loop, before that borrower runs, the pool closes. The borrower
    must be refused as any other after `close`, not open a connection while the pool closes
    (and `close` wait for it). (The close, asked for first, runs first.)"""
    pool = ConnectionPool(opened, 1)
    held = await pool.take()
    assert opened.count == 1
    waiting = asyncio.create_task(pool.take())
    await asyncio.sleep(0.05)  # it waits now
    closing = asyncio.create_task(pool.close())  # runs before the waiter runs again
    pool.give_back(held, reusable=False)  # its slot goes to the waiter
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(closing, 5)
    assert opened.count == 1 and pool.size == 0


async def test_a_waiter_keeps_its_place_when_a_slot_frees_as_a_new_borrower_arrives(
    opened: Opened,
) -> None:
    """The one connection is closed on its return (its borrower stopped mid-query, say),
    which frees its slot for the first waiter; a borrower arriving in the same turn of the
    loop, before that waiter runs, must queue behind it, not take the slot first."""
    pool = ConnectionPool(opened, 1)
    order: list[str] = []

    async def borrow(name: str) -> None:
        async with pool.acquire():
            order.append(name)

    try:
        held = await pool.take()
        waiting = asyncio.create_task(borrow("waiting"))
        await asyncio.sleep(0.05)  # it waits now
        pool.give_back(held, reusable=False)
        async with asyncio.timeout(5):  # in this task: asks before `waiting` runs again
            await borrow("arriving")
        await asyncio.wait_for(waiting, 5)
        assert order == ["waiting", "arriving"]
        assert pool.size == 1
    finally:
        await asyncio.wait_for(pool.close(), 5)


async def test_connections_idle_too_long_are_closed_though_nobody_borrows(
    opened: Opened,
) -> None:
    """Idle connections are closed once idle for `max_idle`, borrowed or not: after a burst,
    a quiet pool does not keep its server connections (and their server processes) open,
    nor lend them later after a firewall dropped them."""
    pool = ConnectionPool(opened, 3, max_idle=0.3)
    try:

        async def hold() -> int:
            async with pool.acquire() as conn:
                await asyncio.sleep(0.05)
                return int(conn.get_server_pid())

        pids = set(await asyncio.gather(*(hold() for _ in range(3))))
        assert len(pids) == 3 and pool.size == 3

        async def none_left() -> bool:
            """The pool closed all three, and the server ended their processes (a moment
            after the close, on a loaded machine)."""
            if pool.size:
                return False
            probe = await asyncpg.connect(PG_DSN, timeout=5)
            try:
                alive = await probe.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                    list(pids),
                )
            finally:
                await probe.close()
            return bool(alive == 0)

        await eventually(none_left)
    finally:
        await pool.close()
