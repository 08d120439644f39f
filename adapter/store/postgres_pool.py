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

#: An idle connection older than this is closed rather than lent, as asyncpg's pool does after
#: 300 s: a firewall or NAT between us and the server may have dropped it silently meanwhile
#: (its next query would then hang until TCP gives up), or the server ended it
#: (``idle_session_timeout``).
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


class ConnectionPool:
    """Up to `max_size` connections made by `connect`, lent one borrower at a time; borrowers
    beyond them wait in order of arrival."""

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
        #: is lent first (its caches are warm).
        self._idle: list[tuple[Any, float]] = []
        #: Borrowers waiting: a connection, or None to make one (a slot became free).
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        #: Connections open or being opened, and of those, lent.
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
        `max_size` exist, else waited for."""
        while True:
            if self._closing:
                raise asyncpg.InterfaceError("the store's connection pool is closed")
            if self._idle:
                now = asyncio.get_running_loop().time()
                while self._idle:
                    conn, since = self._idle.pop()
                    if not conn.is_closed() and now - since <= self._max_idle:
                        self._lent += 1
                        return conn
                    # Closed while idle (the server ended it), or idle too long: forgotten.
                    if not conn.is_closed():
                        conn.terminate()
                    self._size -= 1
            if self._size < self._max:
                # Lent from now on, so that `close` waits for a connection still being made.
                self._size += 1
                self._lent += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._size -= 1
                    self._lent -= 1
                    self._wake_one()
                    self._check_all_back()
                    raise
                return conn
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Handed a connection (or a slot) just as the borrower was cancelled.
                    handed = waiter.result()
                    if handed is not None:
                        self.give_back(handed)
                    else:
                        self._wake_one()
                elif waiter in self._waiters:  # else passed over already, as cancelled
                    self._waiters.remove(waiter)
                raise
            if conn is not None:
                return conn  # counted as lent by `give_back`, which handed it over

    def give_back(self, conn: Any, *, reusable: bool = True) -> None:
        """Return `conn`; closed instead unless `reusable`, open and idle, and the pool open."""
        if not reusable or self._closing or conn.is_closed() or conn.is_in_transaction():
            if not conn.is_closed():
                conn.terminate()
            self._size -= 1
            self._lent -= 1
            self._wake_one()
            self._check_all_back()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # lent on, still counted as lent
                return
        self._lent -= 1
        self._idle.append((conn, asyncio.get_running_loop().time()))
        self._check_all_back()

    def _wake_one(self) -> None:
        """A slot is free: the first waiter makes a connection."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

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
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._size -= 1
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
