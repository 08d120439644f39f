"""The embedded store: one SQLite file, with group commit; statements on the event loop's
thread, each COMMIT on a thread of its own.

Why the statements on the event loop: SQLite allows one writer at a time anyway, and its
statements for one message take tens of microseconds. A dedicated writer thread running them
(this module's first design) made every operation cross the GIL twice; under load the event
loop and the writer then queued for the GIL behind CPython's 5 ms switch interval, and that
hand-off, not SQLite, capped the round trips a participant made a second (bench/README.md).
Running the statements where the caller already holds the GIL costs nothing to hand over.

Why the COMMIT elsewhere: the COMMIT waits for an fsync (milliseconds on a loaded disk), and
on the event loop nothing else would run meanwhile: the loop was blocked on COMMIT in about
half of a profiler's samples. So a batch's statements run here, and its COMMIT on the store's
commit thread (one hand-off per batch, not per operation; SQLite releases the GIL while it
waits); the loop parses, verifies and answers meanwhile. The next batch starts once that
COMMIT returned, and carries everything submitted while it ran: the group-commit window is
the fsync itself, with no timer to add latency when the store is idle. While several callers
write at once, a batch also waits `GROUP_WAIT` (2 ms) from its first operation for those close
behind it, or until as many wait as the batch before carried: at 10 concurrent round trips
that made 0.2-0.3 COMMITs per round trip and side where there were 0.5, each COMMIT a few
hundred microseconds of CPU (bench/README.md). Operations known to be large (a 100,000-row
portfolio) ask for `offload=True` and their whole batch runs on a worker thread instead, while
new operations wait for the next batch.

Why group commit: with `synchronous=FULL` every COMMIT waits for an fsync; one transaction
per operation would cap the store at a few thousand writes per second and put one fsync on
every message. Instead, the operations submitted during one turn of the event loop are all
run by one transaction (`BEGIN IMMEDIATE` ... `COMMIT`) at the end of that turn (or, while a
COMMIT runs, once it returned; while several callers write at once, when `GROUP_WAIT` has
passed or the company of the batch before is there, as above), so they share one fsync. Each
operation runs inside its own SAVEPOINT: one that raises is rolled back alone and its caller
gets the exception, while the others in the batch still commit. No caller's future is
resolved before the COMMIT carrying its work has returned: an awaited write is a durable
write.

What the PRAGMAs guarantee (set on every open):

* ``journal_mode=WAL``: a commit appends to the write-ahead log instead of rewriting pages in
  place, so a crash at any instant leaves the database either before or after each
  transaction, never in between; readers never block the writer.
* ``synchronous=FULL``: in WAL mode the log is fsynced at every COMMIT (not only at
  checkpoints, as with NORMAL). Once COMMIT returns, the transaction survives a process crash
  *and* an operating-system crash or power loss, provided the disk honours fsync (a disk cache
  that lies about flushes voids this for any database). So a message acknowledged with HTTP 200
  after `save_inbound` returned is never lost.
* ``fullfsync=ON``: on macOS, where a plain fsync does not flush the drive's cache, use
  F_FULLFSYNC; ignored elsewhere.
* ``foreign_keys=ON``: a delivery attempt cannot reference an unknown outbound message.
* ``wal_autocheckpoint=0``: the write-ahead log is copied back into the database file by a
  thread of the store's own (`_Checkpointer`), not by whichever COMMIT happens to cross
  SQLite's threshold: that COMMIT would otherwise wait for the copy and an fsync of the
  database file (long, after a 100,000-connection portfolio), on the event loop.
  Durability is unchanged: a transaction is durable once its WAL frames are fsynced.
* ``busy_timeout``: should another process hold the write lock (it is not meant to share the
  file, but an operator's sqlite3 shell might), wait for it instead of failing at once.

A failure of the environment rather than of a statement (the disk full, read-only or failing,
the file damaged or locked beyond the busy timeout) reaches the caller as `StorageError`,
whichever operation met it: its callers treat it as our fault, to be tried again, never as an
answer about the data.

Timestamps are stored as integer microseconds since the Unix epoch (UTC), which round-trips
an aware `datetime` exactly; naive datetimes are refused because their instant is unknown.

One process per file: a participant's store is opened with an exclusive `flock` on a lock
file beside the database (``NAME.lock``, holding the pid of its process), so a second `serve`
or `Participant.start` on the same file refuses to start and names the process that holds it.
The kernel releases the lock when the file is closed, at `close` or when the process dies
however it dies, so a stale lock file never keeps a new process out. Holding the lock is also
what lets the store void every claim it finds when it opens (see `adapter.store.base`): whoever
took them is gone. Tools that only read beside a running participant (`cro show`) open the
store with ``exclusive=False``: no lock, no claims voided, nothing released. A second process
on one SQLite file could only deliver what the first delivers: several processes share a
PostgreSQL store instead.

Later modules add their own tables and operations through `SqliteStore.run` (writes, in the
group-commit machinery) and `SqliteStore.read`, keeping their version in `schema_version`
under their own component name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

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
from adapter.store.coordination import Coordinator, LocalCoordinator

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock file (one process per file is then on trust)
    fcntl = None  # type: ignore[assignment]

__all__ = ["BUS_SCHEMA_VERSION", "SCHEMA_VERSION", "SqliteStore", "insert_events", "lock_path"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Version of the tables this module owns (component "store" in `schema_version`).
#: 2: envelopes in tables of their own (inbound_envelope, outbound_envelope).
#: 3: outbound status 'cancelled' (a message its sender withdrew).
#: 4: claims (claimed_by, lease_until) on inbound and outbound messages.
#: 5: fewer pages written per message: messages and envelopes keyed by an integer id of
#: arrival, delivery attempts by (message_id, attempt) without AUTOINCREMENT, and a partial
#: index of the pending outbound messages only.
SCHEMA_VERSION: Final = 5
#: Version of the bus outbox tables (component "bus" in `schema_version`): bus_events, the
#: events the relay publishes, and bus_commands, the bus commands carried out. The store owns
#: them because its own transactions write them, beside the state they report.
BUS_SCHEMA_VERSION: Final = 1
#: The oldest SQLite library the store runs on: `record_attempt` reads the row it updated
#: with RETURNING (SQLite 3.35). An older one (Debian 11 ships 3.34) is refused at open,
#: not met by a failing statement on every delivery.
SQLITE_REQUIRED: Final = (3, 35, 0)
#: How long to wait for another process's write lock before failing, in milliseconds.
BUSY_TIMEOUT_MS: Final = 5000
#: At most this many operations share one transaction, bounding the latency of a batch.
MAX_BATCH: Final = 1000
#: How long bookkeeping that nobody waits on may wait for a batch to join, in seconds: a
#: delivery's outcome once the peer said 200 (`record_attempt`, delivered), a response marked
#: handled (`finish_inbound` without a response to send). Either, lost in a crash, is redone
#: after the restart (the message sent again, which its receiver knows as Already Submitted;
#: the response handled again, as after a crash before its mark), so neither needs an fsync
#: of its own: joining the next message's transaction saves a COMMIT per round trip on each
#: side. Its caller still learns of it only once it is committed.
DEFERRED_WINDOW: Final = 0.05
#: While writes come from several callers at once (the batch before carried more than one
#: operation somebody waits for), a batch waits this long after its first such operation
#: arrived before it runs, so that the operations of the requests under way meanwhile share
#: its COMMIT: each COMMIT costs an fsync, the WAL frames of the pages every batch writes (the
#: tables' last pages, the database header) and two thread wake-ups, a few hundred
#: microseconds of CPU, whatever it carries. It waits no longer once as many operations wait
#: as the batch before carried: the company to be expected is there. A caller alone (the batch
#: before had one, or ended more than `IDLE_AFTER` before it came) never waits: its COMMIT
#: starts at the end of the turn that submitted it.
GROUP_WAIT: Final = 0.002
#: A store without a batch for this long is idle: the company the last batch carried is no
#: longer to be expected, and the first write to come is not held. Well above the gaps
#: between batches under load (a few milliseconds at concurrency 10: at `GROUP_WAIT` itself,
#: a third of the batches went unheld, 0.36 COMMITs per round trip and side instead of
#: 0.21-0.31), well below a pause a person or a timer makes.
IDLE_AFTER: Final = 0.05
#: Commits between two checkpoints, besides one after every offloaded (large) batch: at a
#: few pages a commit, a WAL of a few MiB, as with SQLite's own default of 1000 pages.
CHECKPOINT_EVERY_COMMITS: Final = 256
#: A requested checkpoint waits for this long a pause in commits, or at most `CHECKPOINT_WAIT`:
#: copying a large WAL fills the disk queue, and a COMMIT's fsync would wait behind it.
CHECKPOINT_QUIET: Final = 0.05
CHECKPOINT_WAIT: Final = 1.0

#: SQLite's primary result codes that say the environment failed, not the statement: the disk
#: is full or failing, the file is locked by another process beyond the busy timeout, damaged,
#: or not a database. Each is a `StorageError`: our fault, and worth trying again once an
#: operator has seen to it. (SQL mistakes, taken keys and the like keep their own `sqlite3`
#: types: they are answers, not outages.) Read-only files count through their extended codes
#: only: plain SQLITE_READONLY is also a write attempted in `read`, which is a bug.
_ENVIRONMENT_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# The envelopes live apart from the rows whose status changes: SQLite rewrites a whole record
# on UPDATE, overflow pages included, so marking a 10 MB message handled used to write 20 MB
# to the WAL (and 16 KB for a routine one). A message and its envelope share an integer id,
# given in order of arrival: a new row goes to the end of its table, where the other rows of
# the same commit go, and the envelope table needs no index of its own. Keyed by the
# message's (random) MessageID instead, every envelope wrote a leaf page of its own in that
# index: one page more per message and commit. The id is not AUTOINCREMENT (that writes
# `sqlite_sequence` in every commit): an id is reused only once its message and envelope,
# which retention deletes together, are gone.
_INBOUND_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    sender_domain TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    message_type TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    version TEXT NOT NULL,
    content_hash BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'handled')),
    rejection TEXT,
    claimed_by TEXT,
    lease_until INTEGER,
    UNIQUE (sender_domain, message_id)
)"""
_INBOUND_ENVELOPE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY REFERENCES inbound (id),
    envelope BLOB NOT NULL
)"""
_OUTBOUND_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    recipient_domain TEXT NOT NULL,
    recipient_role TEXT NOT NULL,
    message_type TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    reference_message_id TEXT,
    endpoint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'delivered', 'failed', 'expired', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error TEXT,
    claimed_by TEXT,
    lease_until INTEGER
)"""
_OUTBOUND_ENVELOPE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY REFERENCES outbound (id),
    envelope BLOB NOT NULL
)"""
#: A message's delivery attempts, numbered from 1 per message: keyed by (message_id, attempt),
#: one B-tree, where a rowid table with AUTOINCREMENT wrote three (the rows, an index to find
#: them by message, and `sqlite_sequence`) in every commit that logged an attempt.
_ATTEMPTS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS {name} (
    message_id TEXT NOT NULL REFERENCES outbound (message_id),
    attempt INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    http_status INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (message_id, attempt)
) WITHOUT ROWID"""
_ATTEMPTS_COLUMNS: Final = "message_id, attempt, attempted_at, http_status, outcome, detail"
# Both partial: only the messages still to be worked on are in them, so they stay a page or
# two however large the store grows, and a message leaves them when its work ends (SQLite
# sees from the bound status that a query may use them: EXPLAIN QUERY PLAN shows it does).
_INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS inbound_unfinished "
    "ON inbound (received_at) WHERE status = 'received'",
    "CREATE INDEX IF NOT EXISTS outbound_pending "
    "ON outbound (coalesce(next_attempt_at, created_at)) WHERE status = 'pending'",
)
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS schema_version (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
    _INBOUND_TABLE.format(name="inbound"),
    _INBOUND_ENVELOPE_TABLE.format(name="inbound_envelope"),
    _OUTBOUND_TABLE.format(name="outbound"),
    _OUTBOUND_ENVELOPE_TABLE.format(name="outbound_envelope"),
    _ATTEMPTS_TABLE.format(name="delivery_attempts"),
    *_INDEXES,
)

_BUS_SCHEMA: Final = (
    # seq is the publication order; event_key makes one event per fact (ON CONFLICT DO
    # NOTHING); published_at stays NULL until the broker confirmed the event.
    """CREATE TABLE IF NOT EXISTS bus_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        event_key TEXT UNIQUE,
        route TEXT NOT NULL,
        attributes TEXT NOT NULL,
        data BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        published_at INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS bus_events_unpublished ON bus_events (seq) "
    "WHERE published_at IS NULL",
    """CREATE TABLE IF NOT EXISTS bus_commands (
        command_id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        received_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS bus_commands_message ON bus_commands (message_id)",
    "CREATE INDEX IF NOT EXISTS bus_commands_conversation ON bus_commands (conversation_id)",
)

_INBOUND_COLUMNS: Final = (
    "sender_domain, message_id, sender_role, message_type, conversation_id, version, "
    "content_hash, received_at, status, rejection"
)
_OUTBOUND_COLUMNS: Final = (
    "message_id, recipient_domain, recipient_role, message_type, conversation_id, "
    "reference_message_id, endpoint, created_at, deadline, status, attempts, "
    "next_attempt_at, last_error"
)
#: A message's row with its envelope (columns as above).
_INBOUND_SELECT: Final = (
    "SELECT i.sender_domain, i.message_id, i.sender_role, i.message_type, i.conversation_id, "
    "i.version, i.content_hash, i.received_at, i.status, i.rejection, e.envelope "
    "FROM inbound AS i JOIN inbound_envelope AS e ON e.id = i.id"
)
_OUTBOUND_SELECT: Final = (
    "SELECT o.message_id, o.recipient_domain, o.recipient_role, o.message_type, "
    "o.conversation_id, o.reference_message_id, o.endpoint, o.created_at, o.deadline, "
    "o.status, o.attempts, o.next_attempt_at, o.last_error, e.envelope, "
    "(SELECT c.command_id FROM bus_commands AS c WHERE c.message_id = o.message_id) "
    "AS command_id "
    "FROM outbound AS o JOIN outbound_envelope AS e ON e.id = o.id"
)


def lock_path(database: Path) -> Path:
    """The lock file of a store: beside it, ``NAME.lock``."""
    return database.with_name(database.name + ".lock")


def _holder(fd: int) -> str:
    """The pid in a lock file another process holds, as its text ("unknown" if it has not
    written it yet: it locks first, then writes)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def _lease_clock_us() -> int:
    """The clock of claims: wall-clock microseconds (one process; see `adapter.store.base`)."""
    return time.time_ns() // 1000


def _new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _to_us(value: datetime) -> int:
    """Microseconds since the epoch; exact, unlike a float timestamp."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store needs aware datetimes")
    return (value - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _opt_to_us(value: datetime | None) -> int | None:
    return None if value is None else _to_us(value)


def _opt_from_us(value: int | None) -> datetime | None:
    return None if value is None else _from_us(value)


def _attempt_error(attempt: DeliveryAttempt, status: OutboundStatus) -> str | None:
    """What `OutboundRecord.last_error` says after an attempt: nothing once delivered."""
    if status is OutboundStatus.DELIVERED:
        return None
    return f"{attempt.outcome}: {attempt.detail}" if attempt.detail else attempt.outcome


def _as_storage_error(exc: BaseException) -> BaseException:
    """`exc` as a `StorageError` when SQLite failed for a reason of the environment."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return exc
    primary = code & 0xFF
    if primary in _ENVIRONMENT_CODES or (
        primary == sqlite3.SQLITE_READONLY and code != sqlite3.SQLITE_READONLY
    ):
        error = StorageError(f"SQLite store: {exc} ({getattr(exc, 'sqlite_errorname', code)})")
        error.__cause__ = exc
        return error
    return exc


def _rolled_back(conn: sqlite3.Connection, size: int, exc: Exception) -> Exception:
    """End the failed transaction of a batch of `size` operations; `exc` is what they met."""
    log.error("SQLite batch of %d operations failed: %s", size, exc)
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback after a failed batch failed too")
    return exc


def _inbound(row: sqlite3.Row) -> InboundRecord:
    return InboundRecord(
        sender_domain=row["sender_domain"],
        message_id=row["message_id"],
        sender_role=row["sender_role"],
        message_type=row["message_type"],
        conversation_id=row["conversation_id"],
        version=row["version"],
        content_hash=bytes(row["content_hash"]),
        envelope=bytes(row["envelope"]),
        received_at=_from_us(row["received_at"]),
        status=InboundStatus(row["status"]),
        rejection=row["rejection"],
    )


def _outbound(row: sqlite3.Row) -> OutboundRecord:
    return OutboundRecord(
        message_id=row["message_id"],
        recipient_domain=row["recipient_domain"],
        recipient_role=row["recipient_role"],
        message_type=row["message_type"],
        conversation_id=row["conversation_id"],
        reference_message_id=row["reference_message_id"],
        endpoint=row["endpoint"],
        envelope=bytes(row["envelope"]),
        created_at=_from_us(row["created_at"]),
        deadline=_from_us(row["deadline"]),
        status=OutboundStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=_opt_from_us(row["next_attempt_at"]),
        last_error=row["last_error"],
        command_id=row["command_id"],
    )


def _insert_outbound(
    conn: sqlite3.Connection, record: OutboundRecord, owner: str, lease_until: int
) -> None:
    """Insert `record`, held by `owner` while it is pending."""
    held = record.status is OutboundStatus.PENDING
    cursor = conn.execute(
        f"INSERT INTO outbound ({_OUTBOUND_COLUMNS}, claimed_by, lease_until) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.message_id,
            record.recipient_domain,
            record.recipient_role,
            record.message_type,
            record.conversation_id,
            record.reference_message_id,
            record.endpoint,
            _to_us(record.created_at),
            _to_us(record.deadline),
            record.status.value,
            record.attempts,
            _opt_to_us(record.next_attempt_at),
            record.last_error,
            owner if held else None,
            lease_until if held else None,
        ),
    )
    conn.execute(
        "INSERT INTO outbound_envelope (id, envelope) VALUES (?, ?)",
        (cursor.lastrowid, record.envelope),
    )


class _Connection(sqlite3.Connection):
    """The store's connection. It remembers the bus events its open transaction inserted, so
    that the store hands them to its listeners (the relay) once committed: the relay of a
    SQLite store, which is this process's alone, need not read back what it was handed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The events inserted since BEGIN, with their seq (SAVEPOINTs rolled back drop theirs).
        self.staged_events: list[StoredEvent] = []


def _staged_events(conn: sqlite3.Connection) -> list[StoredEvent] | None:
    return conn.staged_events if isinstance(conn, _Connection) else None


def insert_events(conn: sqlite3.Connection, events: Sequence[EventRecord]) -> None:
    """Add `events` to the bus outbox inside the caller's transaction; an event whose id or
    key is taken is the same fact reported again, and is skipped (and not handed to the
    relay: it would publish a second event, under a new id, for one fact)."""
    staged = _staged_events(conn)
    for event in events:
        if event.command_of is not None:
            event = _with_command(conn, event)
        cursor = conn.execute(
            "INSERT INTO bus_events (event_id, event_key, route, attributes, data, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                event.event_id,
                event.key,
                event.route,
                _ATTRIBUTES.encode(event.attributes),
                event.data,
                _to_us(event.created_at),
            ),
        )
        if staged is not None and cursor.rowcount == 1 and cursor.lastrowid is not None:
            # Handed to the relay as it was stored (no `command_of`), with the journal's
            # event (naming the command `_with_command` found).
            staged.append(StoredEvent(cursor.lastrowid, event))


#: The attributes of a stored event, one encoder for all (`json.dumps` with options makes one
#: per call); any JSON form reads back alike.
_ATTRIBUTES: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _with_command(conn: sqlite3.Connection, event: EventRecord) -> EventRecord:
    """`event` as it is stored: naming the bus command of its `command_of` if there is one
    (looked up here, in the transaction that stores the event), and without `command_of`."""
    wanted = event.command_of
    assert wanted is not None
    if wanted.message_id:
        row = conn.execute(
            "SELECT command_id FROM bus_commands WHERE message_id = ?", (wanted.message_id,)
        ).fetchone()
    else:
        # The latest of the conversation, as ORDER BY received_at DESC LIMIT 1 finds it,
        # without its sort (the index is on conversation_id alone): with max(), SQLite takes
        # the bare column from the row of the maximum. No such command: a row of NULLs.
        row = conn.execute(
            "SELECT command_id, max(received_at) FROM bus_commands WHERE conversation_id = ?",
            (wanted.conversation_id,),
        ).fetchone()
    attributes, cloud_event = event.attributes, event.cloud_event
    if row is not None and row[0] is not None:
        command_id: str = row[0]
        if cloud_event is None:
            attributes = {**attributes, "commandid": command_id}
        else:
            # The journal's event naming the command, and its attributes: the relay publishes
            # it as it is, rather than make it again from the attributes.
            cloud_event = cloud_event.extended("commandid", command_id)
            attributes = cloud_event.attributes()
    # Made, not `dataclasses.replace`d: replace walks the fields of the class for each copy,
    # and this is the way of every response to a command (tests/store/test_bus_outbox.py
    # compares what is stored and handed with what was given, every field).
    return EventRecord(
        event.event_id,
        event.route,
        attributes,
        event.data,
        event.created_at,
        event.key,
        cloud_event=cloud_event,
    )


def _insert_command(conn: sqlite3.Connection, record: OutboundRecord) -> None:
    """Record the bus command `record` was made for, if any; `DuplicateCommand` when it
    was carried out before."""
    if record.command_id is None:
        return
    cursor = conn.execute(
        "INSERT INTO bus_commands (command_id, message_id, conversation_id, received_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
        (record.command_id, record.message_id, record.conversation_id, _to_us(datetime.now(UTC))),
    )
    if cursor.rowcount != 1:
        raise DuplicateCommand(record.command_id)


class _Lock:
    """The relay lock of a SQLite store: one process uses the file, so it is always held."""

    held = True

    async def release(self) -> None:
        return None


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store written by an earlier version of this module up to date, inside the
    transaction that opens it, foreign keys off (SQLite's procedure for changing a table)."""
    # 4: the claims, as new columns, so that the rebuilds below can copy them.
    for table in ("inbound", "outbound"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "claimed_by" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN claimed_by TEXT")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN lease_until INTEGER")
    # 5: messages and envelopes keyed by an id of arrival (2: envelopes in tables of their
    # own, which version 1 kept in the message's row; 3: outbound's new status in its CHECK
    # constraint, which only a rebuild can change), delivery attempts numbered per message.
    # The indexes of version 4 go with the tables they indexed.
    claims = ", claimed_by, lease_until"
    _rebuild_with_ids(
        conn,
        ("inbound", _INBOUND_TABLE, _INBOUND_COLUMNS + claims, "received_at"),
        ("inbound_envelope", _INBOUND_ENVELOPE_TABLE, "inbound" if version < 2 else None),
        ("sender_domain", "message_id"),
    )
    _rebuild_with_ids(
        conn,
        ("outbound", _OUTBOUND_TABLE, _OUTBOUND_COLUMNS + claims, "created_at"),
        ("outbound_envelope", _OUTBOUND_ENVELOPE_TABLE, "outbound" if version < 2 else None),
        ("message_id",),
    )
    _rebuild(
        conn,
        "delivery_attempts",
        _ATTEMPTS_TABLE,
        _ATTEMPTS_COLUMNS,
        "message_id, row_number() OVER (PARTITION BY message_id ORDER BY attempted_at, id), "
        "attempted_at, http_status, outcome, detail",
    )
    for statement in _INDEXES:
        conn.execute(statement)
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise RuntimeError("the store's messages or attempts lost their rows in migration")
    conn.execute(
        "UPDATE schema_version SET version = ? WHERE component = 'store'", (SCHEMA_VERSION,)
    )


def _rebuild_with_ids(
    conn: sqlite3.Connection,
    messages: tuple[str, str, str, str],
    envelopes: tuple[str, str, str | None],
    keys: tuple[str, ...],
) -> None:
    """Re-create a message table (`messages`: name, template, columns, the column of its
    order of arrival) with ids, and its envelope table (`envelopes`: name, template, and the
    table the envelopes are in if not that one: version 1's message table) keyed by them."""
    table, template, columns, arrival = messages
    envelope_table, envelope_template, source = envelopes
    conn.execute(template.format(name=f"{table}_new"))
    conn.execute(
        f"INSERT INTO {table}_new ({columns}) "  # noqa: S608 - constants
        f"SELECT {columns} FROM {table} ORDER BY {arrival}, {', '.join(keys)}"
    )
    conn.execute(envelope_template.format(name=f"{envelope_table}_new"))
    on = " AND ".join(f"o.{key} = n.{key}" for key in keys)
    conn.execute(
        f"INSERT INTO {envelope_table}_new (id, envelope) "  # noqa: S608 - constants
        f"SELECT n.id, o.envelope FROM {table}_new AS n JOIN {source or envelope_table} AS o "
        f"ON {on}"
    )
    for name in (envelope_table, table):
        conn.execute(f"DROP TABLE {name}")
    for name in (table, envelope_table):
        conn.execute(f"ALTER TABLE {name}_new RENAME TO {name}")


def _void_claims(conn: sqlite3.Connection, owner: str | None) -> None:
    """End the claims of `owner` (None: of everybody). Only messages still to be worked on
    hold claims: every operation that ends the work ends its claim."""
    who = "claimed_by IS NOT NULL" if owner is None else "claimed_by = :owner"
    parameters = {
        "owner": owner,
        "pending": OutboundStatus.PENDING.value,
        "received": InboundStatus.RECEIVED.value,
    }
    conn.execute(
        "UPDATE outbound SET claimed_by = NULL, lease_until = NULL "  # noqa: S608 - constant
        f"WHERE status = :pending AND {who}",
        parameters,
    )
    conn.execute(
        "UPDATE inbound SET claimed_by = NULL, lease_until = NULL "  # noqa: S608 - constant
        f"WHERE status = :received AND {who}",
        parameters,
    )


def _rebuild(
    conn: sqlite3.Connection, table: str, template: str, columns: str, source: str = ""
) -> None:
    """Re-create `table` from `template` with its rows (`columns`, read as `source` when
    given); its indexes go with it."""
    conn.execute(template.format(name=f"{table}_new"))
    conn.execute(
        f"INSERT INTO {table}_new ({columns}) SELECT {source or columns} FROM {table}"  # noqa: S608
    )
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


@dataclass(slots=True)
class _Op:
    """One queued unit of work and where to deliver its result."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    write: bool
    offload: bool = False
    #: Run inside its own SAVEPOINT. Extension operations may raise by design (a rejected
    #: update); the store's own statements only fail on a bug or a taken key.
    isolate: bool = True
    #: Bookkeeping that need not be durable at once (see `DEFERRED_WINDOW`): it joins the
    #: next batch another operation starts, or one of its own after the window.
    deferred: bool = False


class _CommitThread:
    """The store's commit thread: runs the COMMITs handed to it, one at a time (a batch waits
    for the one before it), and hands each outcome back to the event loop with a single
    `call_soon_threadsafe`: one wake-up each way per batch, and no future in between (an
    executor's, chained to an asyncio one, cost two loop callbacks and a dozen objects more
    per commit). SQLite releases the GIL while the COMMIT writes and waits for its fsync.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[_Commit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-commit", daemon=True)
        self._thread.start()

    def commit(
        self, conn: sqlite3.Connection, size: int, done: Callable[[Exception | None], None]
    ) -> None:
        """COMMIT `conn`'s open transaction (of `size` operations) there; then call `done`
        on the event loop with the error if it failed (rolled back), else None."""
        self._queue.put((conn, size, done))

    def close(self) -> None:
        """Stop once the COMMIT handed over last is done (the store waits for it first)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            conn, size, done = work
            failure: Exception | None
            try:
                failure = SqliteStore._commit(conn, size)  # SQLite's errors it returns
            except BaseException as exc:
                # Anything else (memory, a bug) must still reach the loop, or the batch's
                # callers and `close` would wait for ever: nothing committed for sure.
                failure = StorageError(f"SQLite COMMIT: {exc!r}")
            try:
                self._loop.call_soon_threadsafe(done, failure)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                log.warning("SQLite COMMIT ended after its event loop closed")


#: A COMMIT handed to the commit thread: the connection, the batch's size, whom to tell.
_Commit = tuple[sqlite3.Connection, int, Callable[[Exception | None], None]]


class _Settlements(list[tuple[asyncio.Future[Any], bool, Any]]):
    """Results to hand back once the batch that produced them is over; a failure of the
    environment (disk full, ...) as a `StorageError`, whichever operation met it."""

    #: Hands the events the batch committed to the store's listeners, before any caller of
    #: the batch hears of it (so before a read that sees them returns).
    announce: Callable[[], None] | None = None

    def add(self, op: _Op, ok: bool, value: Any) -> None:
        self.append((op.future, ok, value if ok else _as_storage_error(value)))

    def deliver(self) -> None:
        if self.announce is not None:
            self.announce()
        for future, ok, value in self:
            if future.done():  # cancelled by its caller; the work itself stands
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class _Checkpointer:
    """Copies the WAL back into the database file on a thread of its own, when asked.

    Requests coalesce: asked ten times while one checkpoint runs, it runs once more. It uses
    a connection of its own and a PASSIVE checkpoint, which never waits for the writer, so
    the event loop's commits go on meanwhile; SQLite releases the GIL for the copy and the
    fsync. A request is served in the next pause of `CHECKPOINT_QUIET` between commits (the
    store sets `last_commit`), or after `CHECKPOINT_WAIT` under sustained load: the fsync of
    the database file would otherwise delay the fsync of the commits that follow at once,
    such as the response to the large message just stored.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        #: `time.monotonic()` of the store's last commit.
        self.last_commit = 0.0
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        """Stop after the checkpoint under way, if any (closing the last connection
        checkpoints what is left)."""
        self._stopping = True
        self._wanted.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)  # made and used here only
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA fullfsync = ON")
            while True:
                self._wanted.wait()
                self._wanted.clear()
                self._await_pause()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # The WAL keeps the data; the next request tries again.
                    log.warning("SQLite checkpoint of %s failed: %s", self._path, exc)
        finally:
            conn.close()

    def _await_pause(self) -> None:
        latest = time.monotonic() + CHECKPOINT_WAIT
        while not self._stopping:
            now = time.monotonic()
            quiet = now - self.last_commit
            if quiet >= CHECKPOINT_QUIET or now >= latest:
                return
            time.sleep(min(CHECKPOINT_QUIET - quiet, latest - now))


class SqliteStore:
    """The `Store` port on a SQLite file; see the module docstring for the guarantees.

    A caller cancelled while its operation is queued or running does not undo the operation:
    it may still commit.

    `exclusive` (the default) takes the file for this process (its lock file), as a
    participant must; False is for tools that only read beside a running one.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        exclusive: bool = True,
        lease: timedelta = DEFAULT_LEASE,
        commit_off_loop: bool = True,
    ) -> None:
        self.path = Path(path)
        #: COMMIT on the store's commit thread (see the module docstring); False runs it on
        #: the event loop, as before: kept to measure the difference (bench_roundtrip.py).
        self.commit_off_loop = commit_off_loop
        self._committer: _CommitThread | None = None
        self.exclusive = exclusive
        self.lease = lease
        self._owner = ""
        #: The lock file's descriptor while this store holds it.
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Op] = []
        self._flush_scheduled = False
        #: How many operations that somebody waits for the last batch carried (more than
        #: one: the store is busy, see `GROUP_WAIT`), how many wait now, since when the first
        #: of them waited, and the timer that holds their batch.
        self._company = 0
        #: When the last batch was over (loop time): company it promised comes within
        #: `IDLE_AFTER` of then, or while a batch runs; after a pause it promises none.
        self._batch_over = float("-inf")
        self._waiting = 0
        self._waited_since: float | None = None
        self._held: asyncio.TimerHandle | None = None
        #: The timer that commits deferred operations nothing else carried along.
        self._deferred_timer: asyncio.TimerHandle | None = None
        #: Set while a batch runs on a worker thread; the next batch waits for it.
        self._offloaded: asyncio.Future[None] | None = None
        self._closing = False
        self._commits = 0
        self._checkpointer: _Checkpointer | None = None
        self._commits_at_checkpoint = 0
        self._event_listeners: list[EventListener] = []
        #: Told how long each committed transaction took, BEGIN to COMMIT (metrics); called
        #: on the event loop, but for an offloaded batch's, on the worker thread that ran it.
        self.on_commit: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def commits(self) -> int:
        """Write transactions committed by this object: fewer than writes when batches form."""
        return self._commits

    @property
    def owner(self) -> str:
        return self._owner

    def coordinator(self) -> Coordinator:
        """In memory: the lock file admits one process per store."""
        return LocalCoordinator()

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file and create or check the schema."""
        if self._conn is not None:
            raise RuntimeError(f"{self!r} is already open")
        if sqlite3.sqlite_version_info < SQLITE_REQUIRED:
            raise StoreOpenError(
                f"{self.path}: the SQLite store needs the SQLite library "
                f"{'.'.join(map(str, SQLITE_REQUIRED))} or newer; Python's sqlite3 module "
                f"uses {sqlite3.sqlite_version}"
            )
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._owner = _new_owner()
        try:
            if self.exclusive:
                self._lock_fd = self._take_lock()
            self._conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._drop_lock()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            where = getattr(exc, "filename", None) or self.path
            raise StoreOpenError(f"{where}: cannot open the SQLite store: {reason}") from exc
        except BaseException:
            self._drop_lock()
            raise
        self._checkpointer = _Checkpointer(self.path)
        if self.commit_off_loop:
            self._committer = _CommitThread(self._loop)
        log.info("opened SQLite store %s (WAL, synchronous=FULL)", self.path)

    async def close(self) -> None:
        """Release this store's claims and run everything already queued, then close the
        connection and give up the lock file."""
        if self._conn is None or self._closing:
            return
        if self.exclusive:
            try:
                await self.release_claims()
            except Exception as exc:  # a full disk, say: the next open voids them anyway
                log.warning("SQLite store %s: could not release its claims: %s", self.path, exc)
        self._closing = True
        if self._deferred_timer is not None:
            self._deferred_timer.cancel()
            self._deferred_timer = None
        while self._pending or self._offloaded is not None:
            if self._offloaded is not None:
                await asyncio.shield(self._offloaded)
            else:
                self._flush()
        await asyncio.sleep(0)  # let the callers just answered run before we return
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)
            self._checkpointer = None
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        self._conn.close()
        self._conn = None
        self._drop_lock()
        log.info("closed SQLite store %s", self.path)

    def _take_lock(self) -> int | None:
        """Lock the store's lock file for this process and write our pid in it; the open
        descriptor holds the lock. StoreOpenError naming the holder if another process has
        it."""
        if fcntl is None:
            return None
        path = lock_path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreOpenError(
                f"{self.path}: the store is in use by process {holder} (it holds {path}); "
                "a SQLite store admits one process: stop that one first, or share a "
                "PostgreSQL store between several"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _drop_lock(self) -> None:
        """Give up the lock file (closing it is what releases the lock); the file stays,
        as removing it could split one lock in two: another process may have it open."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    # -- extension points ---------------------------------------------------------------------

    def listen_events(self, callback: EventListener) -> None:
        """Call `callback` with the events of each commit that added some, in commit order
        (which is seq order: one process, one writer), on the event loop. Every event this
        store commits goes through here, those that `run` operations insert included."""
        self._event_listeners.append(callback)

    def events_written(self) -> None:
        """Nothing to do: the store tells its listeners of every event it commits (see
        `listen_events`). Here for the code that writes events on either store (the flex
        book), which the PostgreSQL store must be told of."""

    def _announce(self, events: list[StoredEvent]) -> None:
        """Tell every listener; one that raises (a bug of its own) stops neither the others
        nor the batch, whose callers are answered next: their writes are durable."""
        for callback in self._event_listeners:
            try:
                callback(events)
            except Exception:
                log.exception("a listener of the store's events failed")

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, offload: bool = False) -> T:
        """Run `fn` in the next group-commit transaction and return its result once committed.

        `fn` runs inside its own SAVEPOINT: if it raises, only its own changes are rolled
        back and the exception is re-raised here. Should one of the store's own operations
        in the same batch fail (a bug, or a taken key), the batch runs again, `fn` with it:
        keep side effects outside `conn` out of `fn`. It must not BEGIN, COMMIT or ROLLBACK
        itself. It runs on the event loop's thread and blocks it meanwhile, so work of more
        than a few milliseconds asks for `offload=True`: its batch then runs on a worker
        thread.
        """
        return await self._submit(fn, write=True, offload=offload)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, deferred: bool = False) -> T:
        """One of the store's own writes: no SAVEPOINT of its own (see `_attempt_writes`);
        `deferred`: bookkeeping that may wait up to `DEFERRED_WINDOW` for a batch to join."""
        return await self._submit(fn, write=True, isolate=False, deferred=deferred)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run read-only `fn` in its own snapshot, after the writes submitted before it.

        The connection is switched to `query_only` meanwhile, so a stray write fails instead
        of escaping group commit.
        """
        return await self._submit(fn, write=False)

    async def _submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        offload: bool = False,
        isolate: bool = True,
        deferred: bool = False,
    ) -> T:
        if self._conn is None or self._closing:
            raise RuntimeError(f"{self!r} is not open")
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append(_Op(fn, future, write, offload, isolate, deferred))
        if not deferred:
            self._waiting += 1
            if self._waited_since is None:
                self._waited_since = now = self._loop.time()
                if self._offloaded is None and now - self._batch_over > IDLE_AFTER:
                    self._company = 0  # the store was idle: the first alone waits for none
            elif self._held is not None and self._waiting >= self._company:
                # As many as the last batch carried: the company expected is here.
                self._held.cancel()
                self._held = None
                self._loop.call_soon(self._flush)
        self._schedule_next()
        return await future

    def _flush(self) -> None:
        """Run the pending operations as one batch, here or on a worker thread."""
        self._flush_scheduled = False
        if self._held is not None:  # a held batch: its timer is due, or `close` runs it sooner
            self._held.cancel()
            self._held = None
        if not self._pending or self._offloaded is not None or self._conn is None:
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._company = sum(not op.deferred for op in batch)
        self._waiting -= self._company
        self._waited_since = None
        if self._waiting:  # more than MAX_BATCH waited
            assert self._loop is not None
            self._waited_since = self._loop.time()
        if self._deferred_timer is not None and not self._pending:
            # Whatever was deferred goes now; the next deferral gets a window of its own.
            self._deferred_timer.cancel()
            self._deferred_timer = None
        if any(op.offload for op in batch):
            self._offload(batch)
        elif self._committer is not None and any(op.write for op in batch):
            self._commit_elsewhere(self._conn, batch)
        else:
            self._run_batch(self._conn, batch).deliver()
        if self._offloaded is None:  # it ran here, all of it (or failed before its COMMIT)
            self._over()
        self._schedule_next()

    def _commit_elsewhere(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Run the batch's writes here, and their COMMIT on the commit thread: the event
        loop goes on while the fsync runs. What is submitted meanwhile waits for it and
        forms the next batch, so the longer a COMMIT takes, the more the next one carries.
        Nobody is answered before the COMMIT carrying their work returned; the reads of the
        batch run after it."""
        assert self._loop is not None and self._committer is not None
        writes = [op for op in batch if op.write]
        started = time.perf_counter()
        staged = self._stage_writes(conn, writes)
        if isinstance(staged, Exception):
            settlements = _Settlements()
            for op in writes:
                settlements.add(op, False, staged)
            self._run_reads(conn, batch, settlements)
            settlements.deliver()
            return
        done = self._offloaded = self._loop.create_future()

        def committed(failure: Exception | None) -> None:
            self._offloaded = None
            try:
                settlements = _Settlements()
                self._settle_writes(conn, writes, staged, failure, started, settlements)
                self._run_reads(conn, batch, settlements)
                settlements.deliver()
            finally:  # or `close` would wait for this batch, and the next never start
                done.set_result(None)
                self._over()
                self._schedule_next()

        self._committer.commit(conn, len(writes), committed)

    def _offload(self, batch: list[_Op]) -> None:
        assert self._loop is not None and self._conn is not None
        conn = self._conn
        done = self._offloaded = self._loop.create_future()

        async def run() -> None:
            try:
                settlements = await asyncio.to_thread(self._run_batch, conn, batch)
                settlements.deliver()
                self._request_checkpoint()
            finally:
                self._offloaded = None
                done.set_result(None)
                self._over()
                self._schedule_next()

        self._loop.create_task(run())

    def _over(self) -> None:
        """A batch is over: the time its company, if any, is counted from."""
        assert self._loop is not None
        self._batch_over = self._loop.time()

    def _request_checkpoint(self) -> None:
        self._commits_at_checkpoint = self._commits
        if self._checkpointer is not None:
            self._checkpointer.request()

    def _schedule_next(self) -> None:
        """Flush at the end of this turn of the loop (what else is submitted meanwhile
        joins), or while the store is busy `GROUP_WAIT` after the first operation waiting
        arrived (or once as many wait as the last batch carried, if sooner), unless a batch
        runs (its end calls this again) or only deferred operations wait (then after
        `DEFERRED_WINDOW`, unless another operation comes first)."""
        if not self._pending or self._flush_scheduled or self._offloaded is not None:
            return
        assert self._loop is not None
        if self._closing or self._waited_since is not None:
            self._flush_scheduled = True
            due = 0.0
            if self._waited_since is not None and not self._closing:
                due = self._waited_since + GROUP_WAIT
            # Fewer wait than the last batch carried (so never after a lone caller's): hold.
            if self._waiting < self._company and due > self._loop.time():
                self._held = self._loop.call_at(due, self._flush)
            else:
                self._loop.call_soon(self._flush)
        elif self._deferred_timer is None:
            self._deferred_timer = self._loop.call_later(DEFERRED_WINDOW, self._deferred_due)

    def _deferred_due(self) -> None:
        self._deferred_timer = None
        if self._pending and not self._flush_scheduled and self._offloaded is None:
            self._flush_scheduled = True
            self._flush()

    # -- the Store port -----------------------------------------------------------------------

    async def save_inbound(
        self, record: InboundRecord, *, events: Sequence[EventRecord] = ()
    ) -> SaveOutcome:
        """Insert the message; on a known (sender, MessageID) compare hashes, store nothing."""
        received_at = _to_us(record.received_at)
        held = record.status is InboundStatus.RECEIVED
        owner, lease_until = (self._owner, self._lease_until()) if held else (None, None)

        def op(conn: sqlite3.Connection) -> SaveOutcome:
            cursor = conn.execute(
                f"INSERT INTO inbound ({_INBOUND_COLUMNS}, claimed_by, lease_until) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sender_domain, message_id) DO NOTHING",
                (
                    record.sender_domain,
                    record.message_id,
                    record.sender_role,
                    record.message_type,
                    record.conversation_id,
                    record.version,
                    record.content_hash,
                    received_at,
                    record.status.value,
                    record.rejection,
                    owner,
                    lease_until,
                ),
            )
            if cursor.rowcount == 1:
                conn.execute(
                    "INSERT INTO inbound_envelope (id, envelope) VALUES (?, ?)",
                    (cursor.lastrowid, record.envelope),
                )
                if events:
                    insert_events(conn, events)
                return SaveOutcome.NEW
            (known_hash,) = conn.execute(
                "SELECT content_hash FROM inbound WHERE sender_domain = ? AND message_id = ?",
                (record.sender_domain, record.message_id),
            ).fetchone()
            if bytes(known_hash) == record.content_hash:
                return SaveOutcome.ALREADY_SUBMITTED
            return SaveOutcome.DUPLICATE_IDENTIFIER

        return await self._write(op)

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

        owner, lease_until = self._owner, self._lease_until()

        def op(conn: sqlite3.Connection) -> None:
            # The command first: a command carried out before is a duplicate, whatever the
            # state of the request it answered.
            if response is not None:
                _insert_command(conn, response)
            cursor = conn.execute(
                "UPDATE inbound SET status = ?, claimed_by = NULL, lease_until = NULL "
                "WHERE sender_domain = ? AND message_id = ? AND (? OR status = ?)",
                (
                    InboundStatus.HANDLED.value,
                    sender_domain,
                    message_id,
                    not require_open,
                    InboundStatus.RECEIVED.value,
                ),
            )
            if cursor.rowcount != 1:
                error = NotOpen if require_open else LookupError
                raise error(f"no open inbound message {message_id!r} from {sender_domain!r}")
            if response is not None:
                _insert_outbound(conn, response, owner, lease_until)
            if events:
                insert_events(conn, events)

        # Without a response to send it is bookkeeping (see `DEFERRED_WINDOW`); with one,
        # the response is sent once this returns, so it must be durable first.
        await self._write(op, deferred=response is None)

    async def unfinished_inbound(self) -> list[InboundRecord]:
        def op(conn: sqlite3.Connection) -> list[InboundRecord]:
            rows = conn.execute(
                f"{_INBOUND_SELECT} WHERE i.status = ? "
                "ORDER BY i.received_at, i.sender_domain, i.message_id",
                (InboundStatus.RECEIVED.value,),
            )
            return [_inbound(row) for row in rows]

        return await self.read(op)

    async def get_inbound(self, sender_domain: str, message_id: str) -> InboundRecord | None:
        def op(conn: sqlite3.Connection) -> InboundRecord | None:
            row = conn.execute(
                f"{_INBOUND_SELECT} WHERE i.sender_domain = ? AND i.message_id = ?",
                (sender_domain, message_id),
            ).fetchone()
            return None if row is None else _inbound(row)

        return await self.read(op)

    async def add_outbound(
        self,
        record: OutboundRecord,
        *,
        events: Sequence[EventRecord] = (),
    ) -> None:
        """Insert the message; a taken MessageID raises `sqlite3.IntegrityError`, a known
        `command_id` `DuplicateCommand`."""
        owner, lease_until = self._owner, self._lease_until()

        def op(conn: sqlite3.Connection) -> None:
            _insert_outbound(conn, record, owner, lease_until)
            _insert_command(conn, record)
            if events:
                insert_events(conn, events)

        await self._write(op)

    async def record_attempt(
        self,
        attempt: DeliveryAttempt,
        status: OutboundStatus,
        next_attempt_at: datetime | None,
        *,
        events: Sequence[EventRecord] = (),
    ) -> bool:
        """Log the attempt, count it, and move the status, unless that status is final.

        A message that is delivered, failed or expired stays so: a late report from a
        concurrent sender of the same message may add its attempt but not undo the outcome.
        Its claim ends with its delivery. True if it is still pending and ours.
        LookupError for an unknown message.
        """
        attempted_at = _to_us(attempt.attempted_at)
        next_at = _opt_to_us(next_attempt_at)
        error = _attempt_error(attempt, status)
        owner = self._owner

        def op(conn: sqlite3.Connection) -> bool:
            # The status before: only bus events need it (an outcome is reported once).
            before = (
                conn.execute(
                    "SELECT status FROM outbound WHERE message_id = ?", (attempt.message_id,)
                ).fetchone()
                if events
                else None
            )
            # (The right-hand sides all read the row as it was before this UPDATE; RETURNING
            # reads it as the UPDATE left it: whether it is still pending and ours.)
            returned = conn.execute(
                "UPDATE outbound SET attempts = attempts + 1, "
                "status = CASE WHEN status = :pending THEN :status ELSE status END, "
                "next_attempt_at = "
                "CASE WHEN status = :pending THEN :next_at ELSE next_attempt_at END, "
                "last_error = CASE WHEN status = :pending THEN :error ELSE last_error END, "
                "claimed_by = CASE WHEN status = :pending AND :status = :pending "
                "THEN claimed_by END, "
                "lease_until = CASE WHEN status = :pending AND :status = :pending "
                "THEN lease_until END "
                "WHERE message_id = :message_id "
                "RETURNING status = :pending AND claimed_by IS :owner",
                {
                    "pending": OutboundStatus.PENDING.value,
                    "status": status.value,
                    "next_at": next_at,
                    "error": error,
                    "message_id": attempt.message_id,
                    "owner": owner,
                },
            ).fetchall()  # to its end: a statement left running would hold up the COMMIT
            if not returned:
                raise LookupError(f"no outbound message {attempt.message_id!r}")
            conn.execute(
                f"INSERT INTO delivery_attempts ({_ATTEMPTS_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (?1, (SELECT coalesce(max(attempt), 0) + 1 FROM delivery_attempts "
                "WHERE message_id = ?1), ?2, ?3, ?4, ?5)",
                (
                    attempt.message_id,
                    attempted_at,
                    attempt.http_status,
                    attempt.outcome,
                    attempt.detail,
                ),
            )
            ended = (
                before is not None
                and before[0] == OutboundStatus.PENDING.value
                and status is not OutboundStatus.PENDING
            )
            if ended and events:
                insert_events(conn, events)
            return bool(returned[0][0])

        # Delivered: nobody waits for the mark (see `DEFERRED_WINDOW`).
        return await self._write(op, deferred=status is OutboundStatus.DELIVERED)

    async def cancel_outbound(self, message_id: str) -> bool:
        """Pending -> cancelled; False for a message whose delivery ended, LookupError for an
        unknown one."""

        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE outbound SET status = ?, next_attempt_at = NULL, claimed_by = NULL, "
                "lease_until = NULL WHERE message_id = ? AND status = ?",
                (OutboundStatus.CANCELLED.value, message_id, OutboundStatus.PENDING.value),
            )
            if cursor.rowcount == 1:
                return True
            known = conn.execute("SELECT 1 FROM outbound WHERE message_id = ?", (message_id,))
            if known.fetchone() is None:
                raise LookupError(f"no outbound message {message_id!r}")
            return False

        return await self._write(op)

    async def pending_outbound(self) -> list[OutboundRecord]:
        """Pending messages by due time; no next attempt yet means due since creation."""

        def op(conn: sqlite3.Connection) -> list[OutboundRecord]:
            rows = conn.execute(
                f"{_OUTBOUND_SELECT} WHERE o.status = ? "
                "ORDER BY coalesce(o.next_attempt_at, o.created_at), o.created_at, o.message_id",
                (OutboundStatus.PENDING.value,),
            )
            return [_outbound(row) for row in rows]

        return await self.read(op)

    async def claim_outbound(self, due_by: datetime, limit: int) -> list[OutboundRecord]:
        """Claim pending messages due by `due_by` that nobody holds or whose lease ran out."""
        due = _to_us(due_by)
        owner, lease_until = self._owner, self._lease_until()

        def op(conn: sqlite3.Connection) -> list[OutboundRecord]:
            rows = conn.execute(
                f"{_OUTBOUND_SELECT} WHERE o.status = ? "
                "AND coalesce(o.next_attempt_at, o.created_at) <= ? "
                "AND (o.claimed_by IS NULL OR o.lease_until < ?) "
                "ORDER BY coalesce(o.next_attempt_at, o.created_at), o.created_at, o.message_id "
                "LIMIT ?",
                (OutboundStatus.PENDING.value, due, _lease_clock_us(), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbound SET claimed_by = ?, lease_until = ? WHERE message_id = ?",
                [(owner, lease_until, row["message_id"]) for row in rows],
            )
            return [_outbound(row) for row in rows]

        return await self._write(op)

    async def claim_unfinished_inbound(self, limit: int) -> list[InboundRecord]:
        """Claim messages received, not handled, that nobody holds or whose lease ran out."""
        owner, lease_until = self._owner, self._lease_until()

        def op(conn: sqlite3.Connection) -> list[InboundRecord]:
            rows = conn.execute(
                f"{_INBOUND_SELECT} WHERE i.status = ? "
                "AND (i.claimed_by IS NULL OR i.lease_until < ?) "
                "ORDER BY i.received_at, i.sender_domain, i.message_id LIMIT ?",
                (InboundStatus.RECEIVED.value, _lease_clock_us(), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE inbound SET claimed_by = ?, lease_until = ? "
                "WHERE sender_domain = ? AND message_id = ?",
                [(owner, lease_until, row["sender_domain"], row["message_id"]) for row in rows],
            )
            return [_inbound(row) for row in rows]

        return await self._write(op)

    async def renew_claims(self) -> None:
        owner, lease_until = self._owner, self._lease_until()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbound SET lease_until = ? WHERE status = ? AND claimed_by = ?",
                (lease_until, OutboundStatus.PENDING.value, owner),
            )
            conn.execute(
                "UPDATE inbound SET lease_until = ? WHERE status = ? AND claimed_by = ?",
                (lease_until, InboundStatus.RECEIVED.value, owner),
            )

        await self._write(op)

    async def release_claims(self) -> None:
        owner = self._owner

        def op(conn: sqlite3.Connection) -> None:
            _void_claims(conn, owner)

        await self._write(op)

    def _lease_until(self) -> int:
        return _lease_clock_us() + self.lease // _MICROSECOND

    async def get_outbound(self, message_id: str) -> OutboundRecord | None:
        def op(conn: sqlite3.Connection) -> OutboundRecord | None:
            row = conn.execute(
                f"{_OUTBOUND_SELECT} WHERE o.message_id = ?",
                (message_id,),
            ).fetchone()
            return None if row is None else _outbound(row)

        return await self.read(op)

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        def op(conn: sqlite3.Connection) -> list[DeliveryAttempt]:
            rows = conn.execute(
                "SELECT message_id, attempted_at, http_status, outcome, detail "
                "FROM delivery_attempts WHERE message_id = ? ORDER BY attempted_at, attempt",
                (message_id,),
            )
            return [
                DeliveryAttempt(
                    message_id=row["message_id"],
                    attempted_at=_from_us(row["attempted_at"]),
                    http_status=row["http_status"],
                    outcome=row["outcome"],
                    detail=row["detail"],
                )
                for row in rows
            ]

        return await self.read(op)

    # -- the bus outbox -------------------------------------------------------------------

    async def add_events(self, events: Sequence[EventRecord]) -> None:
        await self._write(lambda conn: insert_events(conn, events))

    async def unpublished_events(
        self, limit: int, *, skip: Collection[int] = ()
    ) -> list[StoredEvent]:
        skipped = ", ".join("?" * len(skip))  # placeholders only: at most a relay's batch

        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, event_id, event_key, route, attributes, data, created_at "  # noqa: S608
                f"FROM bus_events WHERE published_at IS NULL AND seq NOT IN ({skipped}) "
                "ORDER BY seq LIMIT ?",
                (*skip, limit),
            )
            return [
                StoredEvent(
                    row["seq"],
                    EventRecord(
                        event_id=row["event_id"],
                        route=row["route"],
                        attributes=json.loads(row["attributes"]),
                        data=bytes(row["data"]),
                        created_at=_from_us(row["created_at"]),
                        key=row["event_key"],
                    ),
                )
                for row in rows
            ]

        return await self.read(op)

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        stamp = _to_us(at)
        # Bookkeeping (see `DEFERRED_WINDOW`): a mark lost in a crash publishes its events
        # again, which their ids let consumers drop; the relay skips them meanwhile. So the
        # marks join the next message's transaction rather than taking a COMMIT of their own.
        await self._write(
            lambda conn: conn.executemany(
                "UPDATE bus_events SET published_at = ? WHERE seq = ?",
                [(stamp, seq) for seq in seqs],
            ),
            deferred=True,
        )

    async def command_message(self, command_id: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT message_id FROM bus_commands WHERE command_id = ?", (command_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.read(op)

    async def try_relay_lock(self) -> _Lock:
        """Always granted: a SQLite store belongs to one process."""
        return _Lock()

    # -- running batches ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; the module's implicit
        # transactions would defeat group commit.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise StoreOpenError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            # 64 MiB of page cache instead of 2: a 100,000-connection portfolio update
            # inserts into an index whose pages would otherwise be read back and forth.
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Not executescript: it would COMMIT first, outside our transaction.
                for statement in (*_SCHEMA, *_BUS_SCHEMA):
                    conn.execute(statement)
                self._check_version(conn)
                self._check_bus_version(conn)
                if self.exclusive:
                    # The lock is ours: whoever took these claims is gone.
                    _void_claims(conn, None)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Only now: a migration rebuilds tables that others reference, which SQLite's
            # procedure for it does with the checks off (they cannot change in a transaction).
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = 'store'"
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES ('store', ?)",
                (SCHEMA_VERSION,),
            )
        elif row["version"] < SCHEMA_VERSION:
            _migrate(conn, row["version"])
        elif row["version"] > SCHEMA_VERSION:
            raise newer_schema(str(self.path), "store", row["version"], SCHEMA_VERSION)

    @staticmethod
    def _check_bus_version(conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT version FROM schema_version WHERE component = 'bus'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES ('bus', ?)",
                (BUS_SCHEMA_VERSION,),
            )
        elif row["version"] > BUS_SCHEMA_VERSION:
            raise RuntimeError(
                f"the database's bus schema is version {row['version']}, newer than this "
                f"program's {BUS_SCHEMA_VERSION}: upgrade the program"
            )

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> _Settlements:
        """Writes in one transaction, one SAVEPOINT each; then reads. The results are handed
        back by the caller, on the event loop, once the batch is over."""
        settlements = _Settlements()
        writes = [op for op in batch if op.write]
        if writes:
            self._run_writes(conn, writes, settlements)
        self._run_reads(conn, batch, settlements)
        return settlements

    def _run_reads(
        self, conn: sqlite3.Connection, batch: list[_Op], settlements: _Settlements
    ) -> None:
        for op in batch:
            if not op.write:
                self._run_read(conn, op, settlements)

    def _run_writes(
        self, conn: sqlite3.Connection, writes: list[_Op], settlements: _Settlements
    ) -> None:
        """Run `writes` in one transaction, COMMIT included, on the calling thread."""
        started = time.perf_counter()
        staged = self._stage_writes(conn, writes)
        if isinstance(staged, Exception):
            for op in writes:
                settlements.add(op, False, staged)
            return
        failure = self._commit(conn, len(writes))
        self._settle_writes(conn, writes, staged, failure, started, settlements)

    def _stage_writes(
        self, conn: sqlite3.Connection, writes: list[_Op]
    ) -> list[tuple[_Op, bool, Any]] | Exception:
        """BEGIN and run `writes`, leaving the transaction open for its COMMIT: their
        outcomes, or the error that ended the transaction (nothing of it will commit)."""
        # The store's own operations run without savepoints (two statements fewer each);
        # should one of them raise, the transaction is rolled back and the batch run again
        # with a SAVEPOINT around every operation, so that only the failing one is lost.
        outcomes = self._attempt_writes(conn, writes, isolate=False)
        if outcomes is None:
            outcomes = self._attempt_writes(conn, writes, isolate=True)
        assert outcomes is not None
        return outcomes

    @staticmethod
    def _commit(conn: sqlite3.Connection, size: int) -> Exception | None:
        """COMMIT the open transaction (the fsync); the error if it failed, rolled back."""
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            return _rolled_back(conn, size, exc)
        return None

    def _settle_writes(
        self,
        conn: sqlite3.Connection,
        writes: list[_Op],
        outcomes: list[tuple[_Op, bool, Any]],
        failure: Exception | None,
        started: float,
        settlements: _Settlements,
    ) -> None:
        """Hand out the outcomes of a committed batch, or its COMMIT's error to every one."""
        if failure is not None:
            for op in writes:
                settlements.add(op, False, failure)
            return
        if self.on_commit is not None:
            try:
                self.on_commit(time.perf_counter() - started)
            except Exception:  # metrics only: the batch committed all the same
                log.exception("the store's commit hook failed")
        self._commits += 1
        if self._checkpointer is not None:
            self._checkpointer.last_commit = time.monotonic()
        if self._commits - self._commits_at_checkpoint >= CHECKPOINT_EVERY_COMMITS:
            self._request_checkpoint()
        log.debug("committed a batch of %d operations", len(writes))
        staged = _staged_events(conn)
        if staged:
            events = staged.copy()
            staged.clear()
            if self._event_listeners:
                settlements.announce = lambda: self._announce(events)
        for op, ok, value in outcomes:
            settlements.add(op, ok, value)

    @staticmethod
    def _attempt_writes(
        conn: sqlite3.Connection, writes: list[_Op], *, isolate: bool
    ) -> list[tuple[_Op, bool, Any]] | Exception | None:
        """Run `writes` in a transaction left open for its COMMIT: their outcomes; None when
        an operation raised and `isolate` is off (rolled back); the error when the
        transaction itself failed (rolled back)."""
        outcomes: list[tuple[_Op, bool, Any]] = []
        staged = _staged_events(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if staged is not None:
                staged.clear()  # what an earlier transaction left did not commit
            for op in writes:
                savepoint = isolate or op.isolate
                if savepoint:
                    conn.execute("SAVEPOINT op")
                kept = len(staged) if staged is not None else 0
                try:
                    value = op.fn(conn)
                except Exception as exc:
                    if not conn.in_transaction:
                        # The error ended the whole transaction (SQLite does so on a full
                        # disk, for one): nothing of the batch will commit, and this error,
                        # not a failed ROLLBACK's, is what every operation in it met.
                        raise
                    if not savepoint:
                        conn.execute("ROLLBACK")
                        return None
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if staged is not None:
                        del staged[kept:]
                    outcomes.append((op, False, exc))
                else:
                    if savepoint:
                        conn.execute("RELEASE op")
                    outcomes.append((op, True, value))
        except Exception as exc:
            return _rolled_back(conn, len(writes), exc)
        return outcomes

    @staticmethod
    def _run_read(conn: sqlite3.Connection, op: _Op, settlements: _Settlements) -> None:
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("BEGIN")
            value = op.fn(conn)
        except Exception as exc:
            settlements.add(op, False, exc)
        else:
            settlements.add(op, True, value)
        finally:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("PRAGMA query_only = OFF")
            except sqlite3.Error:
                log.exception("SQLite could not end a read transaction")
