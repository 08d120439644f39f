"""The PostgreSQL store's connections: a plain free list of asyncpg connections.

asyncpg's own pool costs about as much CPU per statement as the statement itself does on our
side (measured: 85-93 us against 40-42 us per ``SELECT 1`` with 16 callers over 10
connections): every borrow wraps the connection in a proxy and makes a future, every return
runs a task of its own (``asyncio.shield``) and the pool's reset coroutine. The store sends
about six single statements per round trip of a message and its response, so that was the
largest share of its CPU after the statements themselves. What the store needs of a pool is
little: borrow a connection, give it back, at most `max_size` of them, none reused whose state
is unknown. That is this module.

A connection is given back for reuse only when it is open, idle (no transaction left open)
and the borrower did not stop in the middle of a query: a cancellation, a timeout or a
connection or driver error (`_UNKNOWN_STATE`) may leave a query running or a reply unread on
it, so it is closed (``terminate``, which never waits) and a new one made when needed. An
error the server reported leaves the connection idle and usable, as does an error of the
borrower's own between statements. Nothing else outlives a borrow: the store keeps no session
state on pooled connections (`adapter.store.postgres`, "Pooled connections").
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

import asyncpg

__all__ = ["MAX_IDLE_SECONDS", "ConnectionPool"]

#: An idle connection is closed once idle this long, whether or not anyone borrows meanwhile:
#: a firewall or NAT between us and the server may have dropped it silently (its next query
#: would then hang until TCP gives up), or the server ended it (``idle_session_timeout``); and
#: after a burst, a quiet process need not keep a server process per connection it no longer
#: uses. Long enough that steady traffic, however light, reuses its connections.
MAX_IDLE_SECONDS: Final = 300.0

#: What may leave a borrowed connection in an unknown state (a query still running, a reply
#: unread, a protocol error): such a connection is closed, never reused.
_UNKNOWN_STATE: Final = (
    asyncio.CancelledError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    OSError,
)


def reusable_after(exc: BaseException | None) -> bool:
    """Whether a connection whose borrower ended with `exc` may be reused (its state is
    checked as well on return)."""
    return exc is None or not isinstance(exc, _UNKNOWN_STATE)


#: Handed to a waiter instead of a connection: a slot freed for it (counted as its already),
#: in which it makes a connection of its own.
_SLOT: Final = object()


class ConnectionPool:
    """Up to `max_size` connections made by `connect`, lent one borrower at a time; borrowers
    beyond them wait in order of arrival, and keep their place: what comes back (a connection,
    or the slot of one closed) goes to the first waiter, and a borrower arriving while any
    wait queues behind them."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        max_size: int,
        *,
        max_idle: float = MAX_IDLE_SECONDS,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._connect = connect
        self._max = max_size
        self._max_idle = max_idle
        #: Idle connections and when each became idle (the loop's clock); the last given back
        #: is lent first (its caches are warm), so the first is the one idle longest.
        self._idle: list[tuple[Any, float]] = []
        #: When the connections idle too long are closed next (`_retire`).
        self._retiring: asyncio.TimerHandle | None = None
        #: Idle connections being closed politely.
        self._closings: set[asyncio.Task[None]] = set()
        #: Borrowers waiting: a connection, or `_SLOT` to make one in.
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        #: Connections open or being opened (slots taken), and of those, lent (a slot handed
        #: to a waiter counts as lent).
        self._size = 0
        self._lent = 0
        self._closing = False
        self._all_back: asyncio.Future[None] | None = None

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._size

    def acquire(self) -> _Borrow:
        """``async with pool.acquire() as conn``: a connection for the block."""
        return _Borrow(self)

    async def take(self) -> Any:
        """A connection, lent until `give_back`; made if none is idle and fewer than
        `max_size` exist, else waited for, after those waiting already."""
        if self._closing:
            raise asyncpg.InterfaceError("the store's connection pool is closed")
        if not self._waiters:  # else all is lent, and what comes back is theirs first
            now = asyncio.get_running_loop().time()
            while self._idle:
                conn, since = self._idle.pop()
                if not conn.is_closed() and now - since < self._max_idle:
                    self._lent += 1
                    return conn
                # Closed while idle (the server ended it), or idle too long (the timer of
                # `_retire` is late): forgotten.
                self._size -= 1
                self._close_idle(conn)
            if self._size < self._max:
                # Lent from now on, so that `close` waits for a connection still being made.
                self._size += 1
                self._lent += 1
                return await self._make()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection (or a slot) just as the borrower was cancelled: passed on.
                handed = waiter.result()
                if handed is _SLOT:
                    self._free_slot()
                else:
                    self.give_back(handed)
            elif waiter in self._waiters:  # else passed over already, as cancelled
                self._waiters.remove(waiter)
            raise
        if handed is _SLOT:
            if self._closing:  # handed just before `close`: refused as any borrower after it
                self._free_slot()
                raise asyncpg.InterfaceError("the store's connection pool is closed")
            return await self._make()
        return handed  # counted as lent by `give_back`, which handed it over

    async def _make(self) -> Any:
        """A new connection in a slot taken (and counted as lent) for it."""
        try:
            return await self._connect()
        except BaseException:
            self._free_slot()
            raise

    def give_back(self, conn: Any, *, reusable: bool = True) -> None:
        """Return `conn`; closed instead unless `reusable`, open and idle, and the pool open."""
        if not reusable or self._closing or conn.is_closed() or conn.is_in_transaction():
            if not conn.is_closed():
                conn.terminate()
            self._free_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # lent on, still counted as lent
                return
        self._lent -= 1
        self._idle.append((conn, asyncio.get_running_loop().time()))
        if self._retiring is None:
            self._retire_later()
        self._check_all_back()

    def _free_slot(self) -> None:
        """A lent slot is free (its connection closed, or never made): the first waiter's, in
        which it makes a connection, counted as lent already; else no longer counted."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(_SLOT)
                return
        self._size -= 1
        self._lent -= 1
        self._check_all_back()

    def _retire_later(self) -> None:
        """`_retire` once the connection idle longest has been idle `max_idle`."""
        _, since = self._idle[0]
        loop = asyncio.get_running_loop()
        self._retiring = loop.call_at(since + self._max_idle, self._retire)

    def _retire(self) -> None:
        """Close the connections idle `max_idle` or longer; come back for the next one."""
        self._retiring = None
        now = asyncio.get_running_loop().time()
        expired = 0
        while expired < len(self._idle) and now - self._idle[expired][1] >= self._max_idle:
            expired += 1
        retired, self._idle = self._idle[:expired], self._idle[expired:]
        for conn, _ in retired:
            self._size -= 1
            self._close_idle(conn)
        if self._idle:
            self._retire_later()

    def _close_idle(self, conn: Any) -> None:
        """Close an idle connection in the background, politely (the server sees it end,
        not a broken connection); `close` waits for it."""
        if conn.is_closed():
            return
        task = asyncio.get_running_loop().create_task(_close(conn))
        self._closings.add(task)
        task.add_done_callback(self._closings.discard)

    def _check_all_back(self) -> None:
        if self._lent == 0 and self._all_back is not None and not self._all_back.done():
            self._all_back.set_result(None)

    async def _use(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        """`sql` run by the asyncpg method `method` on a connection borrowed for it."""
        conn = await self.take()
        try:
            result = await getattr(conn, method)(sql, *args)
        except BaseException as exc:
            self.give_back(conn, reusable=reusable_after(exc))
            raise
        self.give_back(conn)
        return result

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self._use("execute", sql, args)
        return status

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._use("fetch", sql, args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._use("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._use("fetchval", sql, args)

    async def close(self) -> None:
        """Refuse new borrowers, wait for the lent connections to come back (they are closed
        as they do), then close the idle ones."""
        self._closing = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(
                    asyncpg.InterfaceError("the store's connection pool is closed")
                )
        self._waiters.clear()
        if self._lent:
            self._all_back = asyncio.get_running_loop().create_future()
            await self._all_back
        if self._retiring is not None:
            self._retiring.cancel()
            self._retiring = None
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        await asyncio.gather(*(_close(conn) for conn, _ in idle), *self._closings)


async def _close(conn: Any) -> None:
    """Close `conn` politely, or abruptly when that fails or takes over 5 s."""
    try:
        await conn.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


class _Borrow:
    """The context manager of `ConnectionPool.acquire`: a class rather than a generator, which
    would cost a generator and its frames on every borrow."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        self._conn = await self._pool.take()
        return self._conn

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        self._pool.give_back(conn, reusable=reusable_after(exc))
