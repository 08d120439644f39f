"""The operator's view of a SQLite store (`admin.StoreAdmin`).

On an opened `SqliteStore` its reads and writes go through `SqliteStore.read` and
`SqliteStore.run`, in the store's group commit. `read_only(path)` instead opens the file
read-only beside whatever process owns it: the `outbox list`, `inbox show` and `status`
commands read a store that a running `serve` writes (WAL: readers never block the writer, and
each read here is one snapshot) without writing a byte, creating a table or taking any lock of
the owner's.

Instants are integer microseconds since the epoch, as `sqlite.py` stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from adapter.store.admin import (
    PRUNE_BATCH,
    InboundSummary,
    MessageQuery,
    OutboundSummary,
    PeerActivity,
    Pruned,
    QueueDepths,
    Requeued,
    StoreStatus,
)
from adapter.store.base import (
    DeliveryAttempt,
    InboundStatus,
    OutboundStatus,
    StoreOpenError,
    newer_schema,
)
from adapter.store.sqlite import SCHEMA_VERSION

__all__ = ["SqliteAdmin", "read_only"]

T = TypeVar("T")
Reader = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_PENDING: Final = OutboundStatus.PENDING.value
_ENDED_UNDELIVERED: Final = (
    OutboundStatus.FAILED.value,
    OutboundStatus.EXPIRED.value,
    OutboundStatus.CANCELLED.value,
)


def _us(value: datetime) -> int:
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store needs aware datetimes")
    return (value - _EPOCH) // _US


def _at(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _when(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _where(query: MessageQuery, *, peer: str, created: str) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a listing (only the filters given, so that indexes serve them)."""
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": query.limit}
    if query.peer is not None:
        clauses.append(f"{peer} = :peer")
        params["peer"] = query.peer
    if query.message_type is not None:
        clauses.append("m.message_type = :type")
        params["type"] = query.message_type
    if query.status is not None:
        clauses.append("m.status = :status")
        params["status"] = query.status
    if query.since is not None:
        clauses.append(f"{created} >= :since")
        params["since"] = _us(query.since)
    if query.message_id is not None:
        clauses.append("m.message_id = :message_id")
        params["message_id"] = query.message_id
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteAdmin:
    """`StoreAdmin` on SQLite; `write` is None for a read-only view. `bulk` runs the large
    writes of retention (`SqliteStore.run` with `offload=True`, off the event loop), `write`
    where it is not given."""

    def __init__(
        self, read: Reader[Any], write: Reader[Any] | None, bulk: Reader[Any] | None = None
    ) -> None:
        self._read = read
        self._write = write
        self._bulk = bulk or write

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, bulk: bool = False) -> T:
        write = self._bulk if bulk else self._write
        if write is None:
            raise RuntimeError("this view of the store is read-only")
        result: T = await write(fn)
        return result

    # -- listings -------------------------------------------------------------------------

    async def inbound(self, query: MessageQuery) -> list[InboundSummary]:
        where, params = _where(query, peer="m.sender_domain", created="m.received_at")

        def op(conn: sqlite3.Connection) -> list[InboundSummary]:
            rows = conn.execute(
                "SELECT m.sender_domain, m.message_id, m.sender_role, m.message_type, "  # noqa: S608 - the WHERE clause holds placeholders only
                "m.conversation_id, m.version, m.received_at, m.status, m.rejection, "
                "coalesce(length(e.envelope), 0) "
                "FROM inbound AS m LEFT JOIN inbound_envelope AS e ON e.id = m.id"
                f"{where} ORDER BY m.received_at DESC, m.sender_domain, m.message_id "
                "LIMIT :limit",
                params,
            )
            return [
                InboundSummary(
                    sender_domain=row[0],
                    message_id=row[1],
                    sender_role=row[2],
                    message_type=row[3],
                    conversation_id=row[4],
                    version=row[5],
                    received_at=_when(row[6]),
                    status=InboundStatus(row[7]),
                    rejection=row[8],
                    envelope_bytes=row[9],
                )
                for row in rows
            ]

        result: list[InboundSummary] = await self._read(op)
        return result

    async def outbound(self, query: MessageQuery) -> list[OutboundSummary]:
        where, params = _where(query, peer="m.recipient_domain", created="m.created_at")

        def op(conn: sqlite3.Connection) -> list[OutboundSummary]:
            rows = conn.execute(
                "SELECT m.message_id, m.recipient_domain, m.recipient_role, m.message_type, "  # noqa: S608 - the WHERE clause holds placeholders only
                "m.conversation_id, m.reference_message_id, m.endpoint, m.created_at, "
                "m.deadline, m.status, m.attempts, m.next_attempt_at, m.last_error, "
                "coalesce(length(e.envelope), 0) "
                "FROM outbound AS m LEFT JOIN outbound_envelope AS e ON e.id = m.id"
                f"{where} ORDER BY m.created_at DESC, m.message_id LIMIT :limit",
                params,
            )
            return [
                OutboundSummary(
                    message_id=row[0],
                    recipient_domain=row[1],
                    recipient_role=row[2],
                    message_type=row[3],
                    conversation_id=row[4],
                    reference_message_id=row[5],
                    endpoint=row[6],
                    created_at=_when(row[7]),
                    deadline=_when(row[8]),
                    status=OutboundStatus(row[9]),
                    attempts=row[10],
                    next_attempt_at=_at(row[11]),
                    last_error=row[12],
                    envelope_bytes=row[13],
                )
                for row in rows
            ]

        result: list[OutboundSummary] = await self._read(op)
        return result

    async def inbound_envelope(self, sender_domain: str, message_id: str) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT e.envelope FROM inbound AS m JOIN inbound_envelope AS e ON e.id = m.id "
                "WHERE m.sender_domain = ? AND m.message_id = ?",
                (sender_domain, message_id),
            ).fetchone()
            return None if row is None else bytes(row[0])

        result: bytes | None = await self._read(op)
        return result

    async def outbound_envelope(self, message_id: str) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT e.envelope FROM outbound AS m JOIN outbound_envelope AS e ON e.id = m.id "
                "WHERE m.message_id = ?",
                (message_id,),
            ).fetchone()
            return None if row is None else bytes(row[0])

        result: bytes | None = await self._read(op)
        return result

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        def op(conn: sqlite3.Connection) -> list[DeliveryAttempt]:
            rows = conn.execute(
                "SELECT message_id, attempted_at, http_status, outcome, detail "
                "FROM delivery_attempts WHERE message_id = ? ORDER BY attempted_at, attempt",
                (message_id,),
            )
            return [DeliveryAttempt(row[0], _when(row[1]), row[2], row[3], row[4]) for row in rows]

        result: list[DeliveryAttempt] = await self._read(op)
        return result

    # -- steering -------------------------------------------------------------------------

    async def requeue(self, message_id: str, *, now: datetime, deadline: datetime) -> Requeued:
        at, until = _us(now), _us(deadline)

        def op(conn: sqlite3.Connection) -> Requeued:
            row = conn.execute(
                "SELECT m.status, e.id IS NOT NULL FROM outbound AS m "
                "LEFT JOIN outbound_envelope AS e ON e.id = m.id "
                "WHERE m.message_id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                raise LookupError(f"no outbound message {message_id!r}")
            status, has_envelope = OutboundStatus(row[0]), bool(row[1])
            if status is OutboundStatus.PENDING:
                return Requeued.PENDING
            if status is OutboundStatus.DELIVERED:
                return Requeued.DELIVERED
            if not has_envelope:
                return Requeued.NO_ENVELOPE
            conn.execute(
                "UPDATE outbound SET status = ?, next_attempt_at = ?, deadline = ? "
                "WHERE message_id = ?",
                (_PENDING, at, until, message_id),
            )
            return Requeued.REQUEUED

        return await self._run(op)

    # -- counts -----------------------------------------------------------------------------

    async def depths(self) -> QueueDepths:
        result: QueueDepths = await self._read(_depths)
        return result

    async def status(self, since: datetime) -> StoreStatus:
        start = _us(since)

        def op(conn: sqlite3.Connection) -> StoreStatus:
            inbound = dict.fromkeys(InboundStatus, 0)
            for status, count in conn.execute(
                "SELECT status, count(*) FROM inbound GROUP BY status"
            ):
                inbound[InboundStatus(status)] = count
            outbound = dict.fromkeys(OutboundStatus, 0)
            for status, count in conn.execute(
                "SELECT status, count(*) FROM outbound GROUP BY status"
            ):
                outbound[OutboundStatus(status)] = count
            (failed_attempts,) = conn.execute(
                "SELECT count(*) FROM delivery_attempts "
                "WHERE attempted_at >= ? AND outcome <> 'delivered'",
                (start,),
            ).fetchone()
            (failed_messages,) = conn.execute(
                "SELECT count(*) FROM outbound AS m WHERE m.status IN ('failed', 'expired') "
                "AND EXISTS (SELECT 1 FROM delivery_attempts AS a "
                "WHERE a.message_id = m.message_id AND a.attempted_at >= ?)",
                (start,),
            ).fetchone()
            peers: dict[str, dict[str, Any]] = {}

            def peer(domain: str) -> dict[str, Any]:
                return peers.setdefault(
                    domain,
                    {"received": None, "delivered": None, "pending": 0, "failed": 0},
                )

            for domain, last in conn.execute(
                "SELECT sender_domain, max(received_at) FROM inbound GROUP BY sender_domain"
            ):
                peer(domain)["received"] = _at(last)
            for domain, pending in conn.execute(
                "SELECT recipient_domain, sum(status = 'pending') FROM outbound "
                "GROUP BY recipient_domain"
            ):
                peer(domain)["pending"] = pending
            for domain, last in conn.execute(
                "SELECT m.recipient_domain, max(a.attempted_at) FROM delivery_attempts AS a "
                "JOIN outbound AS m ON m.message_id = a.message_id "
                "WHERE a.outcome = 'delivered' GROUP BY m.recipient_domain"
            ):
                peer(domain)["delivered"] = _at(last)
            for domain, failed in conn.execute(
                "SELECT m.recipient_domain, count(*) FROM delivery_attempts AS a "
                "JOIN outbound AS m ON m.message_id = a.message_id "
                "WHERE a.attempted_at >= ? AND a.outcome <> 'delivered' "
                "GROUP BY m.recipient_domain",
                (start,),
            ):
                peer(domain)["failed"] = failed
            return StoreStatus(
                depths=_depths(conn),
                inbound=inbound,
                outbound=outbound,
                since=since,
                failed_attempts=failed_attempts,
                failed_messages=failed_messages,
                peers=[
                    PeerActivity(
                        domain, seen["received"], seen["delivered"], seen["pending"], seen["failed"]
                    )
                    for domain, seen in sorted(peers.items())
                ],
            )

        result: StoreStatus = await self._read(op)
        return result

    # -- retention ------------------------------------------------------------------------

    async def prune(
        self, *, envelopes_before: datetime, messages_before: datetime, batch: int = PRUNE_BATCH
    ) -> Pruned:
        envelopes, messages = _us(envelopes_before), _us(messages_before)
        handled = InboundStatus.HANDLED.value
        steps: tuple[Callable[[sqlite3.Connection], Pruned], ...] = (
            lambda conn: Pruned(
                inbound_messages=_delete_inbound(conn, messages, handled, batch),
            ),
            lambda conn: Pruned(
                outbound_messages=_delete_outbound(conn, messages, batch),
            ),
            lambda conn: Pruned(
                inbound_envelopes=conn.execute(
                    "DELETE FROM inbound_envelope WHERE id IN ("
                    "SELECT m.id FROM inbound AS m JOIN inbound_envelope AS e ON e.id = m.id "
                    "WHERE m.status = ? AND m.received_at < ? LIMIT ?)",
                    (handled, envelopes, batch),
                ).rowcount
            ),
            lambda conn: Pruned(
                outbound_envelopes=conn.execute(
                    "DELETE FROM outbound_envelope WHERE id IN ("
                    "SELECT m.id FROM outbound AS m JOIN outbound_envelope AS e ON e.id = m.id "
                    "WHERE m.status <> ? AND m.created_at < ? LIMIT ?)",
                    (_PENDING, envelopes, batch),
                ).rowcount
            ),
        )
        total = Pruned()
        for step in steps:
            while True:
                done: Pruned = await self._run(step, bulk=True)
                total += done
                if done.total < batch:
                    break
        return total


def _depths(conn: sqlite3.Connection) -> QueueDepths:
    pending, oldest_out = conn.execute(
        "SELECT count(*), min(created_at) FROM outbound WHERE status = ?", (_PENDING,)
    ).fetchone()
    unfinished, oldest_in = conn.execute(
        "SELECT count(*), min(received_at) FROM inbound WHERE status = ?",
        (InboundStatus.RECEIVED.value,),
    ).fetchone()
    return QueueDepths(pending, unfinished, _at(oldest_out), _at(oldest_in))


def _delete_inbound(conn: sqlite3.Connection, before: int, handled: str, batch: int) -> int:
    ids = conn.execute(
        "SELECT id FROM inbound WHERE status = ? AND received_at < ? LIMIT ?",
        (handled, before, batch),
    ).fetchall()
    # The envelope first: it references its message (a foreign key), and shares its id.
    conn.executemany("DELETE FROM inbound_envelope WHERE id = ?", ids)
    conn.executemany("DELETE FROM inbound WHERE id = ?", ids)
    return len(ids)


def _delete_outbound(conn: sqlite3.Connection, before: int, batch: int) -> int:
    rows = conn.execute(
        "SELECT id, message_id FROM outbound WHERE status <> ? AND created_at < ? LIMIT ?",
        (_PENDING, before, batch),
    ).fetchall()
    ids = [(row[0],) for row in rows]
    # Attempts and envelope first: they reference the message (foreign keys).
    conn.executemany("DELETE FROM delivery_attempts WHERE message_id = ?", [(r[1],) for r in rows])
    conn.executemany("DELETE FROM outbound_envelope WHERE id = ?", ids)
    conn.executemany("DELETE FROM outbound WHERE id = ?", ids)
    return len(rows)


@contextlib.asynccontextmanager
async def read_only(path: Path) -> AsyncIterator[SqliteAdmin]:
    """A read-only view of the SQLite store at `path`, safe beside the process that owns it.

    Raises `StoreOpenError` when there is no store there, or one of another schema version
    (an older one is migrated by the next `serve` of this version; a newer one is not ours
    to read).
    """
    try:
        conn = await asyncio.to_thread(_connect_read_only, path)
    except sqlite3.Error as exc:
        raise StoreOpenError(f"{path}: cannot read the SQLite store: {exc}") from exc
    lock = asyncio.Lock()  # one snapshot at a time on the one connection

    async def read(fn: Callable[[sqlite3.Connection], T]) -> T:
        async with lock:
            return await asyncio.to_thread(_snapshot, conn, fn)

    try:
        version = await read(_store_version)
        if version is None:
            raise StoreOpenError(f"{path}: not a uftp-adapter store (no message tables)")
        if version > SCHEMA_VERSION:
            raise newer_schema(str(path), "store", version, SCHEMA_VERSION)
        if version < SCHEMA_VERSION:
            raise StoreOpenError(
                f"{path}: the store tables are schema version {version}, older than this "
                f"program's {SCHEMA_VERSION}: `serve` migrates them when it starts"
            )
        yield SqliteAdmin(read, None)
    finally:
        await asyncio.to_thread(conn.close)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():  # SQLite would say "unable to open database file"
        raise StoreOpenError(f"{path}: no SQLite store there: has the participant run yet?")
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("ROLLBACK")


def _store_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = 'store'"
        ).fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    return None if row is None else int(row[0])
