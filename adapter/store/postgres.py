"""The `Store` port on PostgreSQL, for participants that already run one or share state.

All tables live in one PostgreSQL schema (default ``uftp``), created on open; every pooled
connection has its ``search_path`` set to it, so SQL here and in `PostgresStore.run` callers
uses unqualified names. Durability is PostgreSQL's: with its default ``synchronous_commit=on``
a statement has returned only once its commit is flushed to the WAL on disk. PostgreSQL
groups concurrent commits into one WAL flush on its own, so this module batches for another
reason: round trips to the server, each costing CPU on both sides. The frequent operations are
one statement each where no bus work goes with them, and delivery attempts reported together
share one (`_AttemptBatch`).

Pooled connections (`adapter.store.postgres_pool`) are lent as they are, with no reset query
between borrowers (asyncpg's pool would send ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL`` after every use, a round trip as costly as the operation itself): so
nothing here leaves such state on a pooled connection. Locks are transaction-scoped
(``pg_advisory_xact_lock``), settings local (``set_config(..., true)``), and what must outlive
a transaction (the coordination's locks and LISTEN, the relay's lock) has a connection of its
own. Keep it so, `run` callers included. A transaction left open, or a connection whose
borrower stopped mid-query, is closed rather than lent again.

Several processes may share one schema:

* Opening is serialised by a transaction-scoped advisory lock, so concurrent
  ``CREATE ... IF NOT EXISTS`` cannot race each other.
* `save_inbound` relies on ``INSERT ... ON CONFLICT DO NOTHING``: of two processes receiving
  the same message, exactly one gets NEW (the other waits for its commit, then compares).
* `finish_inbound` and `record_attempt` each run in one transaction; the row lock taken by
  their UPDATE serialises concurrent writers of the same message, the attempts counter is
  incremented in SQL (never read-modify-written in Python), and a final status (delivered,
  failed, expired) is never overwritten by a late report. Attempts reported while another is
  being recorded share one statement, one transaction (`_AttemptBatch`).
* Each message still to be worked on has one owner at a time (see `adapter.store.base`):
  ``claimed_by`` names the store object that holds it and ``lease_until`` when its claim
  lapses unless renewed, in the server's clock (``now()``), which every host shares.
  `claim_outbound` and `claim_unfinished_inbound` pick their rows with
  ``SELECT ... FOR UPDATE SKIP LOCKED``: two processes claiming at once skip each other's
  rows instead of waiting for them or taking them too, and the condition is checked again
  on the row as it is when locked, so a claim just renewed or taken is never taken again.
  `record_attempt` reports whether the message is still ours, so a process whose lease ran
  out while it was stalled does not retry what another now delivers. `cancel_outbound` in
  one process does not stop an attempt another has already started (its outcome is
  recorded but no longer changes the status).
* What the processes coordinate besides rows (the recovery of unhandled messages in one
  process at a time, the per-peer cap across processes, the news of a response) is
  `coordinator()`'s: `adapter.store.postgres_coordination`.

A failure of the environment (the server unreachable or shutting down, its disk full, out of
resources, an I/O error, a serialization failure or deadlock) reaches the caller as
`StorageError`; constraint violations and the like keep their asyncpg types.

Timestamps are ``timestamptz`` (microsecond precision, returned in UTC); naive datetimes are
refused because their instant is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg

from adapter.store.base import (
    DEFAULT_LEASE,
    DeliveryAttempt,
    DuplicateCommand,
    EventListener,
    EventRecord,
    InboundRecord,
    InboundStatus,
    NotOpen,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
    StorageError,
    StoredEvent,
    StoreOpenError,
    newer_schema,
)
from adapter.store.postgres_pool import ConnectionPool
from adapter.store.url import check_schema_name, redact_dsn

if TYPE_CHECKING:
    from adapter.store.coordination import Coordinator

__all__ = ["BUS_SCHEMA_VERSION", "SCHEMA_VERSION", "PostgresStore", "insert_events"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Version of the tables this module owns (component "store" in `schema_version`).
#: 2: outbound status 'cancelled' (a message its sender withdrew).
#: 3: claims (claimed_by, lease_until) on inbound and outbound messages.
SCHEMA_VERSION: Final = 3

#: Version of the bus outbox tables (component "bus" in `schema_version`), as in SQLite.
BUS_SCHEMA_VERSION: Final = 1

#: The outbound statuses (OutboundStatus), as the table's CHECK constraint names them.
_OUTBOUND_STATUS_CHECK: Final = (
    "CHECK (status IN ('pending', 'delivered', 'failed', 'expired', 'cancelled'))"
)

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS schema_version (
        component text PRIMARY KEY,
        version integer NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS inbound (
        sender_domain text NOT NULL,
        message_id text NOT NULL,
        sender_role text NOT NULL,
        message_type text NOT NULL,
        conversation_id text NOT NULL,
        version text NOT NULL,
        content_hash bytea NOT NULL,
        envelope bytea NOT NULL,
        received_at timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('received', 'handled')),
        rejection text,
        claimed_by text,
        lease_until timestamptz,
        PRIMARY KEY (sender_domain, message_id)
    )""",
    """CREATE INDEX IF NOT EXISTS inbound_unfinished
        ON inbound (received_at) WHERE status = 'received'""",
    f"""CREATE TABLE IF NOT EXISTS outbound (
        message_id text PRIMARY KEY,
        recipient_domain text NOT NULL,
        recipient_role text NOT NULL,
        message_type text NOT NULL,
        conversation_id text NOT NULL,
        reference_message_id text,
        endpoint text NOT NULL,
        envelope bytea NOT NULL,
        created_at timestamptz NOT NULL,
        deadline timestamptz NOT NULL,
        status text NOT NULL CONSTRAINT outbound_status_check {_OUTBOUND_STATUS_CHECK},
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        last_error text,
        claimed_by text,
        lease_until timestamptz
    )""",
    "CREATE INDEX IF NOT EXISTS outbound_due ON outbound (status, next_attempt_at)",
    # What `claim_outbound` scans: the pending messages only, by due time.
    """CREATE INDEX IF NOT EXISTS outbound_pending
        ON outbound ((coalesce(next_attempt_at, created_at))) WHERE status = 'pending'""",
    """CREATE TABLE IF NOT EXISTS delivery_attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL REFERENCES outbound (message_id),
        attempted_at timestamptz NOT NULL,
        http_status integer,
        outcome text NOT NULL,
        detail text NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS delivery_attempts_message
        ON delivery_attempts (message_id, attempted_at, id)""",
)

_BUS_TABLES: Final = (
    # seq orders publication; several processes may insert concurrently, so seq order is
    # allocation order, which for the events of one conversation (written one after the
    # other, each after the state it follows) is also commit order.
    """CREATE TABLE IF NOT EXISTS bus_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        event_key text UNIQUE,
        route text NOT NULL,
        attributes text NOT NULL,
        data bytea NOT NULL,
        created_at timestamptz NOT NULL,
        published_at timestamptz
    )""",
    """CREATE INDEX IF NOT EXISTS bus_events_unpublished
        ON bus_events (seq) WHERE published_at IS NULL""",
    """CREATE TABLE IF NOT EXISTS bus_commands (
        command_id text PRIMARY KEY,
        message_id text NOT NULL,
        conversation_id text NOT NULL,
        received_at timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bus_commands_message ON bus_commands (message_id)",
    "CREATE INDEX IF NOT EXISTS bus_commands_conversation ON bus_commands (conversation_id)",
)

_INBOUND_COLUMNS: Final = (
    "sender_domain, message_id, sender_role, message_type, conversation_id, version, "
    "content_hash, envelope, received_at, status, rejection"
)
_OUTBOUND_COLUMNS: Final = (
    "message_id, recipient_domain, recipient_role, message_type, conversation_id, "
    "reference_message_id, endpoint, envelope, created_at, deadline, status, attempts, "
    "next_attempt_at, last_error"
)
#: The same, of the rows an UPDATE ... FROM returns (whose FROM names columns too).
_INBOUND_RETURNING: Final = ", ".join(f"i.{c.strip()}" for c in _INBOUND_COLUMNS.split(","))
_OUTBOUND_RETURNING: Final = ", ".join(f"o.{c.strip()}" for c in _OUTBOUND_COLUMNS.split(","))
#: Claim due pending messages; $1 owner, $2 lease, $3 'pending', $4 due by, $5 limit.
_CLAIM_OUTBOUND: Final = (
    "UPDATE outbound AS o SET claimed_by = $1, lease_until = now() + $2::interval "  # noqa: S608
    "FROM (SELECT message_id FROM outbound "
    "WHERE status = $3 AND coalesce(next_attempt_at, created_at) <= $4 "
    "AND (claimed_by IS NULL OR lease_until < now()) "
    "ORDER BY coalesce(next_attempt_at, created_at), created_at, message_id "
    "LIMIT $5 FOR UPDATE SKIP LOCKED) AS due "
    f"WHERE o.message_id = due.message_id RETURNING {_OUTBOUND_RETURNING}, "
    "(SELECT c.command_id FROM bus_commands AS c WHERE c.message_id = o.message_id) "
    "AS command_id"
)
#: Claim unhandled messages; $1 owner, $2 lease, $3 'received', $4 limit.
_CLAIM_INBOUND: Final = (
    "UPDATE inbound AS i SET claimed_by = $1, lease_until = now() + $2::interval "  # noqa: S608
    "FROM (SELECT sender_domain, message_id FROM inbound WHERE status = $3 "
    "AND (claimed_by IS NULL OR lease_until < now()) "
    "ORDER BY received_at, sender_domain, message_id "
    "LIMIT $4 FOR UPDATE SKIP LOCKED) AS left_over "
    "WHERE i.sender_domain = left_over.sender_domain "
    f"AND i.message_id = left_over.message_id RETURNING {_INBOUND_RETURNING}"
)
#: A message's row with the bus command it was made for, if any (after SELECT).
_OUTBOUND_SELECT: Final = (
    f"{_OUTBOUND_COLUMNS}, (SELECT c.command_id FROM bus_commands AS c "  # noqa: S608 - constant
    "WHERE c.message_id = outbound.message_id) AS command_id FROM outbound"
)


#: SQLSTATE classes that say the environment failed, not the statement: connection exception,
#: insufficient resources (disk full, out of memory, too many connections), operator
#: intervention (shutdown), system error (I/O), internal error (data corrupted).
_ENVIRONMENT_CLASSES: Final = frozenset({"08", "53", "57", "58", "XX"})
#: Single SQLSTATEs that are worth trying again: serialization failure, deadlock detected, and
#: a read-only transaction (connected to a standby, as during a failover).
_TRANSIENT_STATES: Final = frozenset({"40001", "40P01", "25006"})


def _environment_failure(exc: BaseException) -> str | None:
    """What failed, if `exc` says that the environment did (see `_ENVIRONMENT_CLASSES`)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] in _ENVIRONMENT_CLASSES or state in _TRANSIENT_STATES:
            return f"{exc} (SQLSTATE {state})"
    elif isinstance(exc, OSError):  # the server cannot be reached: refused, reset, timed out
        return f"{type(exc).__name__}: {exc}"
    return None


class _StorageFaults:
    """Context manager: re-raise a failure of the environment as `StorageError`.

    The error that ends a block may only be a consequence: a lost connection fails the
    transaction's ROLLBACK with "the underlying connection is closed" while handling the
    server's shutdown notice, so the chain of errors is searched. A synchronous context
    manager on purpose: it wraps the awaits inside its block all the same, without the cost
    of a generator-based async one on every operation.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        cause = exc
        for _ in range(8):  # a chain, not a cycle; a few links are plenty
            if cause is None or isinstance(cause, StorageError):
                return
            failure = _environment_failure(cause)
            if failure is not None:
                raise StorageError(f"PostgreSQL store: {failure}") from cause
            cause = cause.__context__


_FAULTS: Final = _StorageFaults()


def _aware(value: datetime) -> datetime:
    """Refuse naive datetimes: PostgreSQL would silently read them in the session's zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store needs aware datetimes")
    return value


def _opt_aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _attempt_error(attempt: DeliveryAttempt, status: OutboundStatus) -> str | None:
    """What `OutboundRecord.last_error` says after an attempt: nothing once delivered."""
    if status is OutboundStatus.DELIVERED:
        return None
    return f"{attempt.outcome}: {attempt.detail}" if attempt.detail else attempt.outcome


def _inbound(row: Any) -> InboundRecord:
    return InboundRecord(
        sender_domain=row["sender_domain"],
        message_id=row["message_id"],
        sender_role=row["sender_role"],
        message_type=row["message_type"],
        conversation_id=row["conversation_id"],
        version=row["version"],
        content_hash=bytes(row["content_hash"]),
        envelope=bytes(row["envelope"]),
        received_at=row["received_at"],
        status=InboundStatus(row["status"]),
        rejection=row["rejection"],
    )


def _outbound(row: Any) -> OutboundRecord:
    return OutboundRecord(
        message_id=row["message_id"],
        recipient_domain=row["recipient_domain"],
        recipient_role=row["recipient_role"],
        message_type=row["message_type"],
        conversation_id=row["conversation_id"],
        reference_message_id=row["reference_message_id"],
        endpoint=row["endpoint"],
        envelope=bytes(row["envelope"]),
        created_at=row["created_at"],
        deadline=row["deadline"],
        status=OutboundStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        command_id=row["command_id"],
    )


#: The row of `_insert_outbound`, from parameters $N.. (typed: they stand in a SELECT list).
_OUTBOUND_VALUES: Final = (
    "${0}::text, ${1}::text, ${2}::text, ${3}::text, ${4}::text, ${5}::text, ${6}::text, "
    "${7}::bytea, ${8}::timestamptz, ${9}::timestamptz, ${10}::text, ${11}::integer, "
    "${12}::timestamptz, ${13}::text, ${14}::text, now() + ${15}::interval"
)
#: `finish_inbound` in one statement, so one round trip and no BEGIN/COMMIT of its own: the
#: message marked handled and its response queued, both or (the response's MessageID taken,
#: say) neither. INSERT 0 0 when there was no open message to finish.
_FINISH_AND_QUEUE: Final = (
    "WITH done AS (UPDATE inbound SET status = $1, claimed_by = NULL, lease_until = NULL "  # noqa: S608 - constants
    "WHERE sender_domain = $2 AND message_id = $3 AND ($4 OR status = $5) RETURNING 1) "
    f"INSERT INTO outbound ({_OUTBOUND_COLUMNS}, claimed_by, lease_until) "
    f"SELECT {_OUTBOUND_VALUES.format(*range(6, 22))} FROM done"
)
#: `record_attempt` in one statement when no bus events go with it (nothing then needs the
#: status before): the UPDATE takes the row lock and counts the attempt, its delivery
#: attempt is logged beside it. SET reads the row as it was, RETURNING as it is now.
_RECORD_ATTEMPT: Final = (
    "WITH counted AS (UPDATE outbound SET attempts = attempts + 1, "
    "status = CASE WHEN status = $1 THEN $2 ELSE status END, "
    "next_attempt_at = CASE WHEN status = $1 THEN $3 ELSE next_attempt_at END, "
    "last_error = CASE WHEN status = $1 THEN $4 ELSE last_error END, "
    "claimed_by = CASE WHEN status = $1 AND $2 = $1 THEN claimed_by END, "
    "lease_until = CASE WHEN status = $1 AND $2 = $1 THEN lease_until END "
    "WHERE message_id = $5 "
    "RETURNING status = $1 AND claimed_by IS NOT DISTINCT FROM $6 AS held), "
    "logged AS (INSERT INTO delivery_attempts "
    "(message_id, attempted_at, http_status, outcome, detail) "
    "SELECT $5, $7::timestamptz, $8::integer, $9::text, $10::text FROM counted) "
    "SELECT held FROM counted"
)

#: `_RECORD_ATTEMPT` for several messages at once (`_AttemptBatch`): $1-$8 one array per
#: column, in the order the attempts were reported, of distinct messages; $9 'pending', $10
#: the owner. The same statement per message, row by row: the same CASEs, and RETURNING
#: reads each row as it is now.
#:
#: The rows are locked first, in the order of their MessageIDs (`locked`: FOR UPDATE above
#: its sort locks the rows as the sort yields them), and the UPDATE touches only rows locked
#: so: every process then locks any two messages in the same order, whatever order its
#: deliveries ended in, and plan the server picks. Locked in the order of the input (which an
#: index scan follows), two processes recording the same two messages in opposite orders -
#: after a claim lapsed, say - could each hold one and wait for the other until the server
#: failed one of them as deadlocked.
_RECORD_ATTEMPTS: Final = (
    "WITH input AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], "
    "$3::timestamptz[], $4::text[], $5::timestamptz[], $6::integer[], $7::text[], "
    "$8::text[]) WITH ORDINALITY AS i(message_id, new_status, next_at, error, attempted_at, "
    "http_status, outcome, detail, n)), "
    "locked AS MATERIALIZED (SELECT o.message_id FROM outbound AS o "
    "WHERE o.message_id IN (SELECT message_id FROM input) ORDER BY o.message_id FOR UPDATE), "
    "counted AS (UPDATE outbound AS o SET attempts = o.attempts + 1, "
    "status = CASE WHEN o.status = $9 THEN i.new_status ELSE o.status END, "
    "next_attempt_at = CASE WHEN o.status = $9 THEN i.next_at ELSE o.next_attempt_at END, "
    "last_error = CASE WHEN o.status = $9 THEN i.error ELSE o.last_error END, "
    "claimed_by = CASE WHEN o.status = $9 AND i.new_status = $9 THEN o.claimed_by END, "
    "lease_until = CASE WHEN o.status = $9 AND i.new_status = $9 THEN o.lease_until END "
    "FROM locked AS l JOIN input AS i ON i.message_id = l.message_id "
    "WHERE o.message_id = l.message_id "
    "RETURNING o.message_id, o.status = $9 AND o.claimed_by IS NOT DISTINCT FROM $10 AS held), "
    "logged AS (INSERT INTO delivery_attempts "
    "(message_id, attempted_at, http_status, outcome, detail) "
    "SELECT i.message_id, i.attempted_at, i.http_status, i.outcome, i.detail "
    "FROM input AS i JOIN counted AS c ON c.message_id = i.message_id ORDER BY i.n) "
    "SELECT message_id, held FROM counted"
)

#: One attempt waiting for `_AttemptBatch`: the parameters of `_RECORD_ATTEMPT` after
#: $1 'pending' (status, next attempt, error, MessageID), and attempted at, HTTP status,
#: outcome, detail; with the future of its answer (held, or None for an unknown message).
_Queued = tuple[str, datetime | None, str | None, str, datetime, int | None, str, str]


class _AttemptBatch:
    """`record_attempt` without bus events, grouped: one statement for the attempts reported
    while the previous statement runs.

    Under load several deliveries end at once (a statement waits for its commit's WAL flush,
    a millisecond or more, while others' POSTs return), and each was a statement of its
    own, costing our process and the server a round trip and a commit each. Here the first
    attempt goes at once, alone, as before; those reported meanwhile wait for it and then go
    together in one statement (`_RECORD_ATTEMPTS`), one transaction. Each caller still
    returns only once its attempt is committed, and learns whether its message is still
    ours; a failure fails every attempt of its statement, as it would have failed each.
    The same message twice in one statement would be counted once: a second report of it
    waits for the next statement.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._queue: list[tuple[_Queued, asyncio.Future[bool | None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, queued: _Queued) -> bool | None:
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._queue.append((queued, future))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait for the statements under way (the store is closing)."""
        while self._flushing is not None:
            await asyncio.wait({self._flushing})

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch: list[tuple[_Queued, asyncio.Future[bool | None]]] = []
                seen: set[str] = set()
                rest = []
                for item in self._queue:
                    message_id = item[0][3]
                    if message_id in seen:
                        rest.append(item)
                    else:
                        seen.add(message_id)
                        batch.append(item)
                self._queue = rest
                try:
                    held = await self._run([queued for queued, _ in batch])
                except asyncio.CancelledError:
                    # This task was cancelled (the loop ending, say), not its callers: each is
                    # told that its attempt may not be recorded (the statement's connection is
                    # closed, so it was rolled back unless its commit had reached the server).
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                StorageError(
                                    "PostgreSQL store: recording the attempt was cut short; "
                                    "it may not be recorded"
                                )
                            )
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for queued, future in batch:
                    if not future.done():
                        future.set_result(held.get(queued[3]))
        finally:
            self._flushing = None
            for _, future in self._queue:  # cancelled with work left: never silently dropped
                if not future.done():
                    future.set_exception(
                        StorageError("PostgreSQL store: closing; the attempt is not recorded")
                    )
            self._queue = []

    async def _run(self, batch: list[_Queued]) -> dict[str, bool | None]:
        pending = OutboundStatus.PENDING.value
        pool = self._store._open_pool
        with _FAULTS:
            if len(batch) == 1:
                [(status, next_at, error, message_id, *logged)] = batch
                held = await pool.fetchval(
                    _RECORD_ATTEMPT,
                    pending,
                    status,
                    next_at,
                    error,
                    message_id,
                    self._store.owner,
                    *logged,
                )
                return {message_id: held}
            columns = list(zip(*batch, strict=True))
            rows = await pool.fetch(
                _RECORD_ATTEMPTS,
                list(columns[3]),
                list(columns[0]),
                list(columns[1]),
                list(columns[2]),
                list(columns[4]),
                list(columns[5]),
                list(columns[6]),
                list(columns[7]),
                pending,
                self._store.owner,
            )
        return {row["message_id"]: row["held"] for row in rows}


def _outbound_values(record: OutboundRecord, owner: str, lease: timedelta) -> tuple[Any, ...]:
    """The parameters of an outbound row, `record` held by `owner` for `lease` while it is
    pending, in the order of `_OUTBOUND_COLUMNS`, claimed_by, lease_until."""
    held = record.status is OutboundStatus.PENDING
    return (
        record.message_id,
        record.recipient_domain,
        record.recipient_role,
        record.message_type,
        record.conversation_id,
        record.reference_message_id,
        record.endpoint,
        record.envelope,
        _aware(record.created_at),
        _aware(record.deadline),
        record.status.value,
        record.attempts,
        _opt_aware(record.next_attempt_at),
        record.last_error,
        owner if held else None,
        lease if held else None,
    )


async def _insert_outbound(conn: Any, record: OutboundRecord, owner: str, lease: timedelta) -> None:
    """Insert `record`, held by `owner` for `lease` while it is pending."""
    await conn.execute(
        f"INSERT INTO outbound ({_OUTBOUND_COLUMNS}, claimed_by, lease_until) "  # noqa: S608
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
        "$15, now() + $16::interval)",
        *_outbound_values(record, owner, lease),
    )


async def insert_events(conn: Any, events: Sequence[EventRecord]) -> None:
    """Add `events` to the bus outbox inside the caller's transaction; an event whose id or
    key is taken is the same fact reported again, and is skipped."""
    await conn.executemany(
        "INSERT INTO bus_events (event_id, event_key, route, attributes, data, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        [
            (
                event.event_id,
                event.key,
                event.route,
                json.dumps(await _with_command(conn, event), ensure_ascii=False),
                event.data,
                _aware(event.created_at),
            )
            for event in events
        ],
    )


async def _with_command(conn: Any, event: EventRecord) -> dict[str, str]:
    """The attributes of `event`, naming the bus command of its `command_of` if there is
    one (looked up here, in the transaction that stores the event)."""
    attributes = dict(event.attributes)
    wanted = event.command_of
    if wanted is None:
        return attributes
    if wanted.message_id:
        found = await conn.fetchval(
            "SELECT command_id FROM bus_commands WHERE message_id = $1", wanted.message_id
        )
    else:
        found = await conn.fetchval(
            "SELECT command_id FROM bus_commands WHERE conversation_id = $1 "
            "ORDER BY received_at DESC LIMIT 1",
            wanted.conversation_id,
        )
    if found is not None:
        attributes["commandid"] = found
    return attributes


async def _insert_command(conn: Any, record: OutboundRecord) -> None:
    """Record the bus command `record` was made for, if any; `DuplicateCommand` when it
    was carried out before."""
    if record.command_id is None:
        return
    status = await conn.execute(
        "INSERT INTO bus_commands (command_id, message_id, conversation_id, received_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (command_id) DO NOTHING",
        record.command_id,
        record.message_id,
        record.conversation_id,
        datetime.now(UTC),
    )
    if _row_count(status) != 1:
        raise DuplicateCommand(record.command_id)


class _RelayLock:
    """A session-level advisory lock on a connection of its own: held while the connection
    lives, so a relay whose process dies frees it for another process's relay."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @property
    def held(self) -> bool:
        return not self._conn.is_closed()

    async def release(self) -> None:
        if not self._conn.is_closed():
            await self._conn.close()


def _row_count(status: str) -> int:
    """The count at the end of a command tag such as 'UPDATE 1' or 'INSERT 0 1'."""
    return int(status.rsplit(" ", 1)[-1])


async def recorded_version(conn: Any, component: str) -> int | None:
    """The version `schema_version` records for `component`; None when it records none or
    the table does not exist yet.

    Openers read it before any DDL and skip the DDL when the tables are current: even when
    the index exists, `CREATE INDEX IF NOT EXISTS` first takes a SHARE lock on its table, and
    a transaction of several such statements, beside running writers that touch two of those
    tables, deadlocks (a second process opening the store while workers deliver).
    """
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return None
    version: int | None = await conn.fetchval(
        "SELECT version FROM schema_version WHERE component = $1", component
    )
    return version


async def create_component(
    conn: Any,
    *,
    lock_key: str,
    component: str,
    version: int,
    statements: Sequence[str],
    location: str,
    label: str,
    migrate: Callable[[Any, int], Awaitable[None]] | None = None,
) -> None:
    """Create or migrate the tables of `component` (the register, the flex book) in the
    transaction of `conn`, once among processes opening it together (`lock_key`); nothing
    but a version read when they are current (`recorded_version`). A newer recorded version
    raises `newer_schema`, naming the `label` of the component."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock_key)
    recorded = await recorded_version(conn, component)
    if recorded == version:
        return  # current: no DDL, so no table locks
    for statement in statements:
        await conn.execute(statement)
    recorded = await recorded_version(conn, component)
    if recorded is None:
        await conn.execute(
            "INSERT INTO schema_version (component, version) VALUES ($1, $2)", component, version
        )
    elif recorded > version:
        raise newer_schema(location, label, recorded, version)
    elif recorded < version and migrate is not None:
        await migrate(conn, recorded)


async def _compression(dsn: str) -> dict[str, str]:
    """lz4 for the values PostgreSQL compresses, where the server has it (14 and later,
    built with lz4 as the usual distributions' are); nothing to set otherwise.

    Every envelope is stored whole for audit, and an inbound one is stored before its HTTP
    200: a large portfolio update is stored several times faster with lz4 than with the
    default pglz, at the same size on disk (bench/README.md). A session default rather than
    a column setting, so that no existing table needs altering; it is a startup parameter of
    every pooled connection, which no borrower changes.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET default_toast_compression = 'lz4'")
    except asyncpg.PostgresError:  # an older server, or one built without lz4
        return {}
    finally:
        await conn.close()
    return {"default_toast_compression": "lz4"}


#: What to do about the refusals an operator meets first, by SQLSTATE.
_HINTS: Final = {
    "28000": "create that role (CREATE ROLE ... LOGIN) or name another user in the store URL",
    "28P01": "check the password in the store URL",
    "3D000": "create that database (CREATE DATABASE ...) or name another in the store URL",
    "42501": "grant the user CREATE on the database, or create the schema for it",
}


def _failure(exc: BaseException) -> str:
    """Why opening failed, in one line, with what to do where we know it."""
    if isinstance(exc, TimeoutError):
        return "no answer from the server in time"
    text = " ".join(str(exc).split()) or type(exc).__name__
    hint = _HINTS.get(getattr(exc, "sqlstate", None) or "")
    return f"{text}; {hint}" if hint else text


class PostgresStore:
    """The `Store` port on a PostgreSQL schema; see the module docstring for sharing rules."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "uftp",
        max_connections: int = 10,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        check_schema_name(schema)
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self._dsn = dsn
        self.schema = schema
        self.lease = lease
        self._max_connections = max_connections
        self._pool: ConnectionPool | None = None
        self._event_listeners: list[EventListener] = []
        self._owner = ""
        self._attempts = _AttemptBatch(self)

    def __repr__(self) -> str:
        # Never the DSN: it may hold a password, and a repr ends up in logs.
        return f"PostgresStore(schema={self.schema!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The schema and the database (its DSN without a password), for messages."""
        return f"PostgreSQL schema {self.schema} of {redact_dsn(self._dsn)}"

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def dsn(self) -> str:
        """The DSN, for the coordinator's own connection; never for messages (a password)."""
        return self._dsn

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema. Cut to PostgreSQL's 63 characters: two
        long schema names may then share one channel, which costs their listeners a look at
        notifications of the other, never a wrong answer."""
        return f"uftp_adapter.{self.schema}"[:63]

    def coordinator(self) -> Coordinator:
        from adapter.store.postgres_coordination import PostgresCoordinator

        coordinator: Coordinator = PostgresCoordinator(self)
        return coordinator

    async def open(self) -> None:
        """Create the pool, then the schema and its tables under an advisory lock.

        Raises `StoreOpenError` when the server cannot be reached or refuses us (a role or
        database that does not exist, a wrong password, no right to create the schema).
        """
        if self._pool is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        try:
            self._pool = await self._connect()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreOpenError(f"cannot open the {self.location}: {_failure(exc)}") from exc
        log.info("opened PostgreSQL store, schema %s", self.schema)

    async def _connect(self) -> Any:
        settings = {"search_path": self.schema, **await _compression(self._dsn)}
        dsn = self._dsn

        async def connect() -> Any:
            return await asyncpg.connect(dsn, server_settings=settings)

        pool = ConnectionPool(connect, self._max_connections)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"uftp-adapter:{self.schema}"
                )
                if (
                    await recorded_version(conn, "store") == SCHEMA_VERSION
                    and await recorded_version(conn, "bus") == BUS_SCHEMA_VERSION
                ):
                    return pool  # current: no DDL, so no table locks (`recorded_version`)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                for statement in (*_TABLES, *_BUS_TABLES):
                    await conn.execute(statement)
                await self._check_version(conn)
                await self._check_bus_version(conn)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _check_version(self, conn: Any) -> None:
        version = await conn.fetchval(
            "SELECT version FROM schema_version WHERE component = 'store'"
        )
        if version is None:
            await conn.execute(
                "INSERT INTO schema_version (component, version) VALUES ('store', $1)",
                SCHEMA_VERSION,
            )
        elif version > SCHEMA_VERSION:
            raise newer_schema(self.location, "store", version, SCHEMA_VERSION)
        elif version < SCHEMA_VERSION:
            if version < 2:
                # 2: a new outbound status; its CHECK constraint is replaced (PostgreSQL named
                # the first one after the table and column, as it is named now).
                await conn.execute(
                    "ALTER TABLE outbound DROP CONSTRAINT IF EXISTS outbound_status_check, "
                    f"ADD CONSTRAINT outbound_status_check {_OUTBOUND_STATUS_CHECK}"
                )
            # 3: the claims, as new columns (nothing holds a message written before them).
            for table in ("inbound", "outbound"):
                await conn.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS claimed_by text, "
                    "ADD COLUMN IF NOT EXISTS lease_until timestamptz"
                )
            await conn.execute(
                "UPDATE schema_version SET version = $1 WHERE component = 'store'",
                SCHEMA_VERSION,
            )

    @staticmethod
    async def _check_bus_version(conn: Any) -> None:
        version = await conn.fetchval("SELECT version FROM schema_version WHERE component = 'bus'")
        if version is None:
            await conn.execute(
                "INSERT INTO schema_version (component, version) VALUES ('bus', $1)",
                BUS_SCHEMA_VERSION,
            )
        elif version > BUS_SCHEMA_VERSION:
            raise RuntimeError(
                f"the database's bus schema is version {version}, newer than this "
                f"program's {BUS_SCHEMA_VERSION}: upgrade the program"
            )

    async def close(self) -> None:
        """Release this store's claims (so that other processes take its work at once), wait
        for borrowed connections to come back, then close them all."""
        if self._pool is None:
            return
        await self._attempts.drain()
        try:
            await self.release_claims()
        except (StorageError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Unreachable, say: the claims lapse with their lease instead.
            log.warning("PostgreSQL store, schema %s: claims not released: %s", self.schema, exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
            log.info("closed PostgreSQL store, schema %s", self.schema)

    @property
    def _open_pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._pool

    # -- extension point ----------------------------------------------------------------------

    def listen_events(self, callback: EventListener) -> None:
        """Call `callback` after each commit of this process that added bus events, with
        None: other processes on the schema write events too, and only the store knows how
        theirs and ours interleave, so the relay reads them from it."""
        self._event_listeners.append(callback)

    def events_written(self) -> None:
        """Tell the listeners that events were committed (for writers through `run`)."""
        for callback in self._event_listeners:
            callback(None)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction on a pooled connection (search_path = our schema).

        The transaction commits when `fn` returns and rolls back if it raises; a failure of the
        environment is raised as `StorageError`.
        """
        with _FAULTS:
            async with self._open_pool.acquire() as conn, conn.transaction():
                return await fn(conn)

    # -- the Store port -----------------------------------------------------------------------

    async def save_inbound(
        self, record: InboundRecord, *, events: Sequence[EventRecord] = ()
    ) -> SaveOutcome:
        """Insert the message; on a known (sender, MessageID) compare hashes, store nothing."""
        received_at = _aware(record.received_at)
        with _FAULTS:
            known_hash = await self._save_inbound(record, received_at, events)
        if known_hash is None:
            if events:
                self.events_written()
            return SaveOutcome.NEW
        if bytes(known_hash) == record.content_hash:
            return SaveOutcome.ALREADY_SUBMITTED
        return SaveOutcome.DUPLICATE_IDENTIFIER

    async def _save_inbound(
        self, record: InboundRecord, received_at: datetime, events: Sequence[EventRecord]
    ) -> bytes | None:
        """Insert; None if inserted, else the content hash of the message already stored."""
        held = record.status is InboundStatus.RECEIVED
        async with self._open_pool.acquire() as conn:
            # A transaction only when events go with the message: without, one statement is
            # its own transaction and saves two round trips.
            async with conn.transaction() if events else contextlib.nullcontext():
                status = await conn.execute(
                    f"INSERT INTO inbound ({_INBOUND_COLUMNS}, claimed_by, lease_until) "  # noqa: S608
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                    "now() + $13::interval) "
                    "ON CONFLICT (sender_domain, message_id) DO NOTHING",
                    record.sender_domain,
                    record.message_id,
                    record.sender_role,
                    record.message_type,
                    record.conversation_id,
                    record.version,
                    record.content_hash,
                    record.envelope,
                    received_at,
                    record.status.value,
                    record.rejection,
                    self._owner if held else None,
                    self.lease if held else None,
                )
                new = _row_count(status) == 1
                if new and events:
                    await insert_events(conn, events)
            if new:
                return None
            # The conflicting row is committed: ON CONFLICT waited for its transaction.
            known_hash = await conn.fetchval(
                "SELECT content_hash FROM inbound WHERE sender_domain = $1 AND message_id = $2",
                record.sender_domain,
                record.message_id,
            )
        if known_hash is None:  # rows are never deleted, so this is a broken invariant
            raise RuntimeError(f"inbound message {record.message_id!r} conflicted but is gone")
        return bytes(known_hash)

    async def finish_inbound(
        self,
        sender_domain: str,
        message_id: str,
        response: OutboundRecord | None,
        *,
        events: Sequence[EventRecord] = (),
        require_open: bool = False,
    ) -> None:
        """Mark handled and queue the response atomically; LookupError for an unknown message.

        If the response cannot be stored (say, its MessageID is taken), the message stays
        unfinished, so crash recovery handles it again rather than forgetting its answer.
        """

        if not events and (response is None or response.command_id is None):
            await self._finish_alone(sender_domain, message_id, response, require_open)
            return

        async def op(conn: Any) -> None:
            # The command first: a command carried out before is a duplicate, whatever the
            # state of the request it answered.
            if response is not None:
                await _insert_command(conn, response)
            status = await conn.execute(
                "UPDATE inbound SET status = $1, claimed_by = NULL, lease_until = NULL "
                "WHERE sender_domain = $2 AND message_id = $3 AND ($4 OR status = $5)",
                InboundStatus.HANDLED.value,
                sender_domain,
                message_id,
                not require_open,
                InboundStatus.RECEIVED.value,
            )
            if _row_count(status) != 1:
                error = NotOpen if require_open else LookupError
                raise error(f"no open inbound message {message_id!r} from {sender_domain!r}")
            if response is not None:
                await _insert_outbound(conn, response, self._owner, self.lease)
            if events:
                await insert_events(conn, events)

        await self.run(op)
        if events:
            self.events_written()

    async def _finish_alone(
        self,
        sender_domain: str,
        message_id: str,
        response: OutboundRecord | None,
        require_open: bool,
    ) -> None:
        """`finish_inbound` without a command or events: one statement, its own transaction
        (one round trip to the server instead of four or five)."""
        finish = (
            InboundStatus.HANDLED.value,
            sender_domain,
            message_id,
            not require_open,
            InboundStatus.RECEIVED.value,
        )
        with _FAULTS:
            if response is None:
                status = await self._open_pool.execute(
                    "UPDATE inbound SET status = $1, claimed_by = NULL, lease_until = NULL "
                    "WHERE sender_domain = $2 AND message_id = $3 AND ($4 OR status = $5)",
                    *finish,
                )
            else:
                status = await self._open_pool.execute(
                    _FINISH_AND_QUEUE, *finish, *_outbound_values(response, self._owner, self.lease)
                )
        if _row_count(status) != 1:
            error = NotOpen if require_open else LookupError
            raise error(f"no open inbound message {message_id!r} from {sender_domain!r}")

    async def unfinished_inbound(self) -> list[InboundRecord]:
        with _FAULTS:
            rows = await self._open_pool.fetch(
                f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE status = $1 "  # noqa: S608
                "ORDER BY received_at, sender_domain, message_id",
                InboundStatus.RECEIVED.value,
            )
        return [_inbound(row) for row in rows]

    async def get_inbound(self, sender_domain: str, message_id: str) -> InboundRecord | None:
        with _FAULTS:
            row = await self._open_pool.fetchrow(
                f"SELECT {_INBOUND_COLUMNS} FROM inbound "  # noqa: S608 - constant columns
                "WHERE sender_domain = $1 AND message_id = $2",
                sender_domain,
                message_id,
            )
        return None if row is None else _inbound(row)

    async def add_outbound(
        self,
        record: OutboundRecord,
        *,
        events: Sequence[EventRecord] = (),
    ) -> None:
        """Insert the message; a taken MessageID raises `asyncpg.UniqueViolationError`, a
        known `command_id` `DuplicateCommand`."""
        if record.command_id is None and not events:
            with _FAULTS:
                async with self._open_pool.acquire() as conn:
                    await _insert_outbound(conn, record, self._owner, self.lease)
            return

        async def op(conn: Any) -> None:
            await _insert_outbound(conn, record, self._owner, self.lease)
            await _insert_command(conn, record)
            if events:
                await insert_events(conn, events)

        await self.run(op)
        if events:
            self.events_written()

    async def record_attempt(
        self,
        attempt: DeliveryAttempt,
        status: OutboundStatus,
        next_attempt_at: datetime | None,
        *,
        events: Sequence[EventRecord] = (),
    ) -> bool:
        """Log the attempt, count it, and move the status, unless that status is final.

        A message that is delivered, failed or expired stays so: a late report from another
        process delivering the same message may add its attempt but not undo the outcome.
        Its claim ends with its delivery. True if it is still pending and ours.
        LookupError for an unknown message.
        """
        attempted_at = _aware(attempt.attempted_at)
        next_at = _opt_aware(next_attempt_at)
        error = _attempt_error(attempt, status)
        if not events:  # nothing needs the status before: one statement, grouped
            held = await self._attempts.record(
                (
                    status.value,
                    next_at,
                    error,
                    attempt.message_id,
                    attempted_at,
                    attempt.http_status,
                    attempt.outcome,
                    attempt.detail,
                )
            )
            if held is None:
                raise LookupError(f"no outbound message {attempt.message_id!r}")
            return bool(held)

        async def op(conn: Any) -> tuple[bool, bool]:
            before = await conn.fetchval(
                "SELECT status FROM outbound WHERE message_id = $1 FOR UPDATE",
                attempt.message_id,
            )
            # SET reads the row as it was, RETURNING as it is now.
            held = await conn.fetchrow(
                "UPDATE outbound SET attempts = attempts + 1, "
                "status = CASE WHEN status = $1 THEN $2 ELSE status END, "
                "next_attempt_at = CASE WHEN status = $1 THEN $3 ELSE next_attempt_at END, "
                "last_error = CASE WHEN status = $1 THEN $4 ELSE last_error END, "
                "claimed_by = CASE WHEN status = $1 AND $2 = $1 THEN claimed_by END, "
                "lease_until = CASE WHEN status = $1 AND $2 = $1 THEN lease_until END "
                "WHERE message_id = $5 "
                "RETURNING status = $1 AND claimed_by IS NOT DISTINCT FROM $6 AS held",
                OutboundStatus.PENDING.value,
                status.value,
                next_at,
                error,
                attempt.message_id,
                self._owner,
            )
            if held is None:
                raise LookupError(f"no outbound message {attempt.message_id!r}")
            await conn.execute(
                "INSERT INTO delivery_attempts "
                "(message_id, attempted_at, http_status, outcome, detail) "
                "VALUES ($1, $2, $3, $4, $5)",
                attempt.message_id,
                attempted_at,
                attempt.http_status,
                attempt.outcome,
                attempt.detail,
            )
            ended = before == OutboundStatus.PENDING.value and status is not OutboundStatus.PENDING
            if ended and events:
                await insert_events(conn, events)
            return ended, bool(held["held"])

        ended, ours = await self.run(op)
        if ended and events:
            self.events_written()
        return ours

    async def cancel_outbound(self, message_id: str) -> bool:
        """Pending -> cancelled; False for a message whose delivery ended, LookupError for an
        unknown one. The row lock of the UPDATE orders it with a concurrent `record_attempt`."""

        async def op(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE outbound SET status = $1, next_attempt_at = NULL, claimed_by = NULL, "
                "lease_until = NULL WHERE message_id = $2 AND status = $3",
                OutboundStatus.CANCELLED.value,
                message_id,
                OutboundStatus.PENDING.value,
            )
            if _row_count(status) == 1:
                return True
            if await conn.fetchval("SELECT 1 FROM outbound WHERE message_id = $1", message_id):
                return False
            raise LookupError(f"no outbound message {message_id!r}")

        return await self.run(op)

    async def pending_outbound(self) -> list[OutboundRecord]:
        """Pending messages by due time; no next attempt yet means due since creation."""
        with _FAULTS:
            rows = await self._open_pool.fetch(
                f"SELECT {_OUTBOUND_SELECT} WHERE status = $1 "
                "ORDER BY coalesce(next_attempt_at, created_at), created_at, message_id",
                OutboundStatus.PENDING.value,
            )
        return [_outbound(row) for row in rows]

    async def claim_outbound(self, due_by: datetime, limit: int) -> list[OutboundRecord]:
        """Claim pending messages due by `due_by` that nobody holds or whose lease ran out;
        rows another transaction has locked (being claimed, reported on) are skipped."""
        due = _aware(due_by)

        async def op(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                _CLAIM_OUTBOUND,
                self._owner,
                self.lease,
                OutboundStatus.PENDING.value,
                due,
                limit,
            )
            return rows

        records = [_outbound(row) for row in await self.run(op)]
        records.sort(key=lambda r: (r.next_attempt_at or r.created_at, r.created_at, r.message_id))
        return records

    async def claim_unfinished_inbound(self, limit: int) -> list[InboundRecord]:
        """Claim messages received, not handled, that nobody holds or whose lease ran out."""

        async def op(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                _CLAIM_INBOUND,
                self._owner,
                self.lease,
                InboundStatus.RECEIVED.value,
                limit,
            )
            return rows

        records = [_inbound(row) for row in await self.run(op)]
        records.sort(key=lambda r: (r.received_at, r.sender_domain, r.message_id))
        return records

    async def renew_claims(self) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE outbound SET lease_until = now() + $1::interval "
                "WHERE status = $2 AND claimed_by = $3",
                self.lease,
                OutboundStatus.PENDING.value,
                self._owner,
            )
            await conn.execute(
                "UPDATE inbound SET lease_until = now() + $1::interval "
                "WHERE status = $2 AND claimed_by = $3",
                self.lease,
                InboundStatus.RECEIVED.value,
                self._owner,
            )

        await self.run(op)

    async def release_claims(self) -> None:
        """Give up our claims; only messages still to be worked on hold any."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE outbound SET claimed_by = NULL, lease_until = NULL "
                "WHERE status = $1 AND claimed_by = $2",
                OutboundStatus.PENDING.value,
                self._owner,
            )
            await conn.execute(
                "UPDATE inbound SET claimed_by = NULL, lease_until = NULL "
                "WHERE status = $1 AND claimed_by = $2",
                InboundStatus.RECEIVED.value,
                self._owner,
            )

        await self.run(op)

    async def notify(self, payload: str) -> None:
        """NOTIFY the schema's `channel`, on a pooled connection (the coordinator's
        `Notifier`); delivered to every listener once sent, as it runs in no transaction."""
        with _FAULTS:
            await self._open_pool.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def get_outbound(self, message_id: str) -> OutboundRecord | None:
        with _FAULTS:
            row = await self._open_pool.fetchrow(
                f"SELECT {_OUTBOUND_SELECT} WHERE message_id = $1",
                message_id,
            )
        return None if row is None else _outbound(row)

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        with _FAULTS:
            rows = await self._open_pool.fetch(
                "SELECT message_id, attempted_at, http_status, outcome, detail "
                "FROM delivery_attempts WHERE message_id = $1 ORDER BY attempted_at, id",
                message_id,
            )
        return [
            DeliveryAttempt(
                message_id=row["message_id"],
                attempted_at=row["attempted_at"],
                http_status=row["http_status"],
                outcome=row["outcome"],
                detail=row["detail"],
            )
            for row in rows
        ]

    # -- the bus outbox -----------------------------------------------------------------------

    async def add_events(self, events: Sequence[EventRecord]) -> None:
        async with self._open_pool.acquire() as conn:
            await insert_events(conn, events)
        if events:
            self.events_written()

    async def unpublished_events(
        self, limit: int, *, skip: Collection[int] = ()
    ) -> list[StoredEvent]:
        rows = await self._open_pool.fetch(
            "SELECT seq, event_id, event_key, route, attributes, data, created_at "
            "FROM bus_events WHERE published_at IS NULL AND NOT (seq = ANY($2::bigint[])) "
            "ORDER BY seq LIMIT $1",
            limit,
            list(skip),
        )
        return [
            StoredEvent(
                row["seq"],
                EventRecord(
                    event_id=row["event_id"],
                    route=row["route"],
                    attributes=json.loads(row["attributes"]),
                    data=bytes(row["data"]),
                    created_at=row["created_at"],
                    key=row["event_key"],
                ),
            )
            for row in rows
        ]

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        await self._open_pool.execute(
            "UPDATE bus_events SET published_at = $1 WHERE seq = ANY($2::bigint[])",
            _aware(at),
            list(seqs),
        )

    async def command_message(self, command_id: str) -> str | None:
        value = await self._open_pool.fetchval(
            "SELECT message_id FROM bus_commands WHERE command_id = $1", command_id
        )
        return None if value is None else str(value)

    async def try_relay_lock(self) -> _RelayLock | None:
        """A session advisory lock per schema, on a connection of its own (not pooled: a
        pooled connection goes back to the pool, and with it the lock)."""
        conn = await asyncpg.connect(self._dsn)
        try:
            taken = await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"uftp-adapter-relay:{self.schema}"
            )
        except BaseException:
            await conn.close()
            raise
        if not taken:
            await conn.close()
            return None
        return _RelayLock(conn)
