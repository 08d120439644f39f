"""Coordination of the processes sharing one PostgreSQL store, on one connection of each.

Session advisory locks and LISTEN belong to a connection: when it ends - its process stopped,
was killed, lost its host or its network - the server releases its locks and drops its
subscription by itself, at once. So each process keeps one connection of its own for them
(`_Session`) beside the store's pool, whose connections serve whoever borrows them next and
can therefore hold nothing for anyone.

* `AdvisorySingleton`: ``pg_try_advisory_lock`` on a key of the schema and the task. It never
  waits: a process that does not get it goes on with its other work and asks again later, so
  the task moves to another process soon after its holder dies.
* `AdvisoryPeerSlots`: the per-peer cap on deliveries in flight, across processes: `limit`
  advisory locks per peer server, one held by each POST under way. Counting the claims per
  peer in the claim query instead would not do: a claim also covers a message waiting for its
  next attempt, so claims would have to be taken just before each POST (one transaction more
  per delivery) and serialised per peer across processes (a count is no lock), and a dead
  process's share of the cap would stay taken until its leases ran out. A lock costs a round
  trip on this connection to take, and dies with its process. A slot given back stays parked
  with its process for `SLOT_LINGER`, so that under load the next POST to the same peer takes
  it without a round trip; the slots whose linger ended go back to the server together, one
  round trip for all of them.
* `PostgresNotifier`: LISTEN on the schema's channel here; NOTIFY through the store's pool.

When the session connection is lost, what it held is gone with it: singletons report that
they are no longer held, POSTs under way keep going without a slot (others may take it
meanwhile, so the cap may be exceeded by them until they end), and the subscribers miss what
is sent until the connection is back - they are told of the gap then. It is made again with
backoff, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol

import asyncpg

from adapter.limits import PerKeyLimit
from adapter.store.base import StorageError, StoreOpenError
from adapter.store.coordination import Notifier, PeerSlots, Singleton


class PostgresStore(Protocol):
    """What the coordination needs of its `adapter.store.postgres.PostgresStore`: a Protocol,
    as that module builds the coordinator and may not be imported back."""

    @property
    def schema(self) -> str: ...

    @property
    def location(self) -> str: ...

    @property
    def dsn(self) -> str: ...

    @property
    def channel(self) -> str: ...

    async def notify(self, payload: str) -> None: ...


__all__ = ["AdvisoryPeerSlots", "AdvisorySingleton", "PostgresCoordinator", "PostgresNotifier"]

log = logging.getLogger(__name__)

#: Backoff of a lost session connection's reconnection, in seconds.
RECONNECT_FIRST: Final = 0.1
RECONNECT_MAX: Final = 5.0
#: Waiting for a peer slot that other processes hold: first and longest pause, in seconds.
SLOT_WAIT_FIRST: Final = 0.005
SLOT_WAIT_MAX: Final = 0.2
#: How long a peer slot given back stays this process's, parked, in seconds: a POST to the same
#: peer meanwhile takes it without asking the server (taking a slot costs a round trip on the
#: session connection; giving back, one for all the slots due together). A parked slot still
#: counts against the cap, which is only stricter meanwhile for the other processes: for
#: between one and two times this long, as the park is swept once per `SLOT_LINGER`.
SLOT_LINGER: Final = 0.05

#: What a connection that failed raises (the environment's, not a statement's).
_CONNECTION_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


class _Session:
    """This process's own connection: its advisory locks and its LISTEN."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn: Any = None
        #: asyncpg runs one query at a time on a connection.
        self._lock = asyncio.Lock()
        #: Counts connections made: a lock taken on an earlier one is gone.
        self.generation = 0
        self._subscribers: list[tuple[Callable[[str], None], Callable[[], None]]] = []
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._closing = False
        try:
            await self._connect()
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise StoreOpenError(
                f"cannot open the {self._store.location} (the connection for locks and "
                f"notifications): {exc}"
            ) from exc

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await conn.close(timeout=5)

    def subscribe(self, on_payload: Callable[[str], None], on_gap: Callable[[], None]) -> None:
        self._subscribers.append((on_payload, on_gap))

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def fetchval(self, sql: str, *args: Any) -> tuple[Any, int]:
        """One value of `sql` on this connection, and the generation of the connection that
        answered; `StorageError` when there is none or it fails."""
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                raise StorageError(
                    f"PostgreSQL store, schema {self._store.schema}: the connection for locks "
                    "and notifications is lost; it is being made again"
                )
            try:
                value = await conn.fetchval(sql, *args)
            except (*_CONNECTION_ERRORS, asyncpg.InternalClientError) as exc:
                # InternalClientError: the server ended the connection while asyncpg still
                # tore down the previous exchange ("another operation is in progress"), before
                # the termination listener ran: lost all the same.
                raise StorageError(f"PostgreSQL store: {type(exc).__name__}: {exc}") from exc
            return value, self.generation

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._store.dsn, timeout=10)
        try:
            await conn.add_listener(self._store.channel, self._deliver)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self.generation += 1

    def _deliver(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        for on_payload, _ in self._subscribers:
            try:
                on_payload(payload)
            except Exception:
                log.exception("a subscriber of %s failed", channel)

    def _terminated(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self._closing:
            return
        log.warning(
            "PostgreSQL store, schema %s: lost the connection for locks and notifications; "
            "making it again",
            self._store.schema,
        )
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST
        while not self._closing:
            try:
                async with self._lock:
                    await self._connect()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning(
                    "PostgreSQL store: no connection yet (%s); next try in %.1f s", exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            log.info(
                "PostgreSQL store, schema %s: connection for locks is back", self._store.schema
            )
            for _, on_gap in self._subscribers:
                try:
                    on_gap()
                except Exception:
                    log.exception("a subscriber failed on a gap in notifications")
            return


class AdvisorySingleton:
    """A task of one process per store at a time: the holder of a session advisory lock."""

    def __init__(self, session: _Session, schema: str, name: str) -> None:
        self.name = name
        self._session = session
        self._key = (f"uftp-adapter:{schema}:singleton", name)
        #: The session generation on which the lock was taken, while we hold it.
        self._generation: int | None = None

    @property
    def held(self) -> bool:
        return self._generation == self._session.generation and self._session.connected

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits. `StorageError` without a connection."""
        if self.held:
            return True
        got, generation = await self._session.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", *self._key
        )
        self._generation = generation if got else None
        if got:
            log.info("this process now runs the store's %s", self.name)
        return bool(got)


class AdvisoryPeerSlots:
    """`limit` slots per peer server for the processes of one store together: a POST holds a
    slot of this process (`PerKeyLimit`, so that local waiters queue without asking the
    server) and then one of the advisory locks of its server. Two servers whose keys hash
    alike share their slots, which only ever makes the cap stricter."""

    def __init__(self, session: _Session, schema: str, limit: int | None) -> None:
        self._session = session
        self._schema = schema
        self._limit = limit
        self._local = PerKeyLimit(limit)
        #: Slots this process holds (in use, parked or being given back), per key: never
        #: asked for again meanwhile (the server would grant a session its own lock twice).
        self._taken: dict[str, set[int]] = {}
        #: Slots given back but still locked, per key: (lock key, slot, generation, until).
        self._parked: dict[str, list[tuple[str, int, int, float]]] = {}
        self._sweep_at: asyncio.TimerHandle | None = None
        self._unlocking: set[asyncio.Task[None]] = set()
        self._asking = asyncio.Lock()

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        if self._limit is None:
            return contextlib.nullcontext()
        return self._hold(key, self._limit)

    @contextlib.asynccontextmanager
    async def _hold(self, key: str, limit: int) -> AsyncIterator[None]:
        async with self._local.hold(key):
            lock_key = f"uftp-adapter:{self._schema}:peer:{key}"
            parked = self._unpark(key)
            slot, generation = parked or await self._take(key, lock_key, limit)
            try:
                yield
            finally:
                self._park(key, lock_key, slot, generation)

    def _unpark(self, key: str) -> tuple[int, int] | None:
        """A parked slot of `key` whose lock is still ours, taken out of the park."""
        parked = self._parked.get(key)
        while parked:
            _, slot, generation, _ = parked.pop()
            if generation == self._session.generation and self._session.connected:
                return slot, generation
            self._forget(key, slot)  # its connection ended, and the lock with it
        self._parked.pop(key, None)
        return None

    def _park(self, key: str, lock_key: str, slot: int, generation: int) -> None:
        """Keep the slot locked for `SLOT_LINGER`, then give it back unless taken again."""
        if generation != self._session.generation or not self._session.connected:
            self._forget(key, slot)
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + SLOT_LINGER
        self._parked.setdefault(key, []).append((lock_key, slot, generation, until))
        if self._sweep_at is None:
            self._sweep_at = loop.call_at(until, self._sweep)

    def _sweep(self) -> None:
        """Give back the slots parked for `SLOT_LINGER`, all in one statement; come back
        while any stay parked. Sweeping at most once per `SLOT_LINGER`, not when each slot's
        linger ends, is what lets one statement give back several: under load a slot of
        every other delivery went back on its own round trip."""
        self._sweep_at = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due: list[tuple[str, str, int, int]] = []
        for key in list(self._parked):
            kept = []
            for lock_key, slot, generation, until in self._parked[key]:
                if until > now:
                    kept.append((lock_key, slot, generation, until))
                else:
                    due.append((key, lock_key, slot, generation))
            if kept:
                self._parked[key] = kept
            else:
                del self._parked[key]
        if due:
            self._give_back_later(due)
        if self._parked:
            self._sweep_at = loop.call_at(now + SLOT_LINGER, self._sweep)

    async def _take(self, key: str, lock_key: str, limit: int) -> tuple[int, int]:
        """A slot of `key` that no process holds, asked for in one statement that tries the
        slots this process does not hold one after another (where they were a round trip
        each: up to `limit` of them when other processes hold most)."""
        delay = SLOT_WAIT_FIRST
        while True:
            # One take at a time, so that none asks for a slot another is asking for: they
            # would wait for each other on the session connection all the same.
            async with self._asking:
                taken = self._taken.get(key, set())
                first = random.randrange(limit)  # spreads the processes' first tries
                candidates = [
                    slot
                    for slot in ((first + n) % limit for n in range(limit))
                    if slot not in taken
                ]
                if candidates:
                    asking = asyncio.ensure_future(
                        self._session.fetchval(_take_sql(len(candidates)), lock_key, *candidates)
                    )
                    try:
                        got, generation = await asyncio.shield(asking)
                    except asyncio.CancelledError:
                        # The statement (sent, or waiting its turn on the connection) runs on
                        # and may take a slot for nobody: it goes back once the answer comes
                        # (the statement never waits for a lock), or it would stay locked
                        # while this connection lives. Until then every slot it may take
                        # counts as taken: a take asking meanwhile runs behind it on the
                        # connection and would be granted that same slot again (a session's
                        # advisory locks are re-entrant), which giving the first back would
                        # then count as free while the second holds it.
                        self._taken.setdefault(key, set()).update(candidates)
                        asking.add_done_callback(
                            functools.partial(self._untake, key, lock_key, candidates)
                        )
                        raise
                    if got is not None:
                        self._taken.setdefault(key, set()).add(got)
                        return got, generation
            await asyncio.sleep(delay)  # every slot is some other process's: ask again soon
            delay = min(delay * 2, SLOT_WAIT_MAX)

    def _untake(
        self,
        key: str,
        lock_key: str,
        candidates: list[int],
        asking: asyncio.Future[tuple[Any, int]],
    ) -> None:
        """The answer of a take whose borrower was cancelled: the slots it did not get free
        again, and the one it got, if any, back (counted taken until it is unlocked)."""
        got: Any = None
        if not asking.cancelled() and asking.exception() is None:
            got, generation = asking.result()
        # else no slot (a lost connection took whatever it held along)
        for slot in candidates:
            if slot != got:
                self._forget(key, slot)
        if got is not None:
            self._give_back_later([(key, lock_key, got, generation)])

    def _give_back_later(self, slots: list[tuple[str, str, int, int]]) -> None:
        task = asyncio.get_running_loop().create_task(self._give_back(slots))
        self._unlocking.add(task)
        task.add_done_callback(self._unlocking.discard)

    async def _give_back(self, slots: list[tuple[str, str, int, int]]) -> None:
        """Unlock `slots` (key, lock key, slot, generation) in one round trip: those of an
        earlier connection went with it."""
        mine = [
            (lock_key, slot) for _, lock_key, slot, gen in slots if gen == self._session.generation
        ]
        try:
            if mine and self._session.connected:
                # An aggregate evaluates its argument for every row: no slot is left locked.
                await self._session.fetchval(
                    "SELECT array_agg(pg_advisory_unlock(hashtext(k), s))"
                    " FROM unnest($1::text[], $2::int[]) AS u(k, s)",
                    [lock_key for lock_key, _ in mine],
                    [slot for _, slot in mine],
                )
        except StorageError as exc:  # the connection is gone, and the locks with it
            log.debug("peer slots not given back: %s", exc)
        finally:
            for key, _, slot, _ in slots:
                self._forget(key, slot)

    def _forget(self, key: str, slot: int) -> None:
        taken = self._taken.get(key)
        if taken is not None:
            taken.discard(slot)
            if not taken:
                del self._taken[key]


@functools.cache
def _take_sql(count: int) -> str:
    """The statement that takes the first free of `count` slots ($2...) of lock key $1 and
    names it (NULL: none). CASE evaluates its conditions in order and stops at the first
    true one (PostgreSQL's documentation, "Conditional Expressions"), so exactly one lock is
    taken, or none; a set with LIMIT 1 would have no such promise."""
    branches = " ".join(
        f"WHEN pg_try_advisory_lock(hashtext($1), ${n}) THEN ${n}" for n in range(2, count + 2)
    )
    return f"SELECT CASE {branches} END"


class PostgresNotifier:
    """NOTIFY through the store's pool; LISTEN on this process's session connection."""

    def __init__(self, store: PostgresStore, session: _Session) -> None:
        self._store = store
        self._session = session

    async def notify(self, payload: str) -> None:
        await self._store.notify(payload)

    def subscribe(self, on_payload: Callable[[str], None], on_gap: Callable[[], None]) -> None:
        self._session.subscribe(on_payload, on_gap)


class PostgresCoordinator:
    """The `Coordinator` of the processes sharing one PostgreSQL schema."""

    def __init__(self, store: PostgresStore) -> None:
        self._schema = store.schema
        self._session = _Session(store)
        self.notifier: Notifier | None = PostgresNotifier(store, self._session)

    def singleton(self, name: str) -> Singleton:
        return AdvisorySingleton(self._session, self._schema, name)

    def peer_slots(self, limit: int | None) -> PeerSlots:
        return AdvisoryPeerSlots(self._session, self._schema, limit)

    async def start(self) -> None:
        await self._session.start()

    async def close(self) -> None:
        """Close the session connection: the server releases every lock it held."""
        await self._session.close()
