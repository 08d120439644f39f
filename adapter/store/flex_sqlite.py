"""The flex conversations (`adapter.store.flex`) on the embedded SQLite store.

Writes go through `SqliteStore.run` (the store's writer, group commit), reads through
`SqliteStore.read`. One table, ``flex_entry``, unique per (direction, peer, MessageID);
instants are integer microseconds since the epoch, Periods ISO dates. Created on first use;
its version is component "flex" in `schema_version`, migrated forward as the register's
(`register_sqlite`) is, and refused when a newer program wrote it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

from adapter.flex.state import Direction, Entry, Standing
from adapter.store.base import newer_schema
from adapter.store.flex import (
    COLUMNS,
    COMPONENT,
    SCHEMA_VERSION,
    StoredBook,
    reasons_column,
    reasons_of_column,
)
from adapter.store.sqlite import SqliteStore, insert_events

__all__ = ["SqliteFlexBook"]

T = TypeVar("T")

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS flex_entry (
        id INTEGER PRIMARY KEY,
        direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
        peer_domain TEXT NOT NULL,
        message_type TEXT NOT NULL,
        message_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        period TEXT,
        congestion_point TEXT,
        expires_at INTEGER,
        reference TEXT,
        revision INTEGER,
        standing TEXT NOT NULL,
        settled_by TEXT,
        reason TEXT,
        recorded_at INTEGER NOT NULL,
        inner_xml BLOB NOT NULL,
        UNIQUE (direction, peer_domain, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS flex_entry_message ON flex_entry (message_id)",
    """CREATE INDEX IF NOT EXISTS flex_entry_revision
        ON flex_entry (peer_domain, congestion_point, period) WHERE revision IS NOT NULL""",
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _instant(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _row(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.direction.value,
        entry.peer_domain,
        entry.message_type,
        entry.message_id,
        entry.conversation_id,
        None if entry.period is None else entry.period.isoformat(),
        entry.congestion_point,
        _us(entry.expires_at),
        entry.reference,
        entry.revision,
        entry.standing.value,
        entry.settled_by,
        reasons_column(entry.reasons),
        _us(entry.recorded_at),
        entry.inner_xml,
    )


def _entry(row: tuple[Any, ...]) -> Entry:
    recorded_at = _instant(row[13])
    assert recorded_at is not None  # NOT NULL
    return Entry(
        direction=Direction(row[0]),
        peer_domain=row[1],
        message_type=row[2],
        message_id=row[3],
        conversation_id=row[4],
        period=None if row[5] is None else date.fromisoformat(row[5]),
        congestion_point=row[6],
        expires_at=_instant(row[7]),
        reference=row[8],
        revision=row[9],
        standing=Standing(row[10]),
        settled_by=row[11],
        reasons=reasons_of_column(row[12]),
        recorded_at=recorded_at,
        inner_xml=bytes(row[14]),
    )


class SqliteFlexBook(StoredBook[SqliteStore]):
    """`FlexBook` on a `SqliteStore` (opened by its owner)."""

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self._ensure()
        return await self._store.run(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self._ensure()
        return await self._store.read(fn)

    async def _ensure(self) -> None:
        if not self._ready:
            await self._store.run(_create)
            self._ready = True

    def _with_events(self, conn: sqlite3.Connection, entry: Entry, change: str) -> bool:
        """The events of a change go with it, in its transaction; whether there were any."""
        events = self._events_of(entry, change)
        if events:
            insert_events(conn, events)
        return bool(events)

    async def record(self, entry: Entry) -> Entry:
        def op(conn: sqlite3.Connection) -> tuple[Entry, bool]:
            cursor = conn.execute(
                f"INSERT INTO flex_entry ({COLUMNS}) VALUES "  # noqa: S608 - constants
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (direction, peer_domain, message_id) DO NOTHING",
                _row(entry),
            )
            stored = _get(conn, entry.direction, entry.message_id, entry.peer_domain)
            assert stored is not None
            return stored, cursor.rowcount == 1 and self._with_events(conn, stored, entry.direction)

        return await self._changed(self._run(op))

    async def get(
        self, direction: Direction, message_id: str, *, peer_domain: str | None = None
    ) -> Entry | None:
        return await self._read(lambda conn: _get(conn, direction, message_id, peer_domain))

    async def settle(
        self,
        direction: Direction,
        peer_domain: str,
        message_id: str,
        *,
        from_: Collection[Standing],
        to: Standing,
        by: str | None,
        reasons: Sequence[str] = (),
    ) -> bool:
        standings = [standing.value for standing in from_]
        marks = ", ".join("?" * len(standings))

        def op(conn: sqlite3.Connection) -> tuple[bool, bool]:
            cursor = conn.execute(
                "UPDATE flex_entry SET standing = ?, settled_by = ?, reason = ? "  # noqa: S608
                "WHERE direction = ? AND peer_domain = ? AND message_id = ? "
                f"AND standing IN ({marks})",
                (
                    to.value,
                    by,
                    reasons_column(reasons),
                    direction.value,
                    peer_domain,
                    message_id,
                    *standings,
                ),
            )
            if cursor.rowcount != 1:
                return False, False
            if self._events is None:
                return True, False
            moved = _get(conn, direction, message_id, peer_domain)
            assert moved is not None
            return True, self._with_events(conn, moved, to.value)

        return await self._changed(self._run(op))

    async def latest_revision(
        self,
        direction: Direction,
        peer_domain: str,
        congestion_point: str,
        period: date,
        *,
        excluding: str,
        accepted_only: bool = False,
        message_type: str = "FlexRequest",
    ) -> int | None:
        def op(conn: sqlite3.Connection) -> int | None:
            (value,) = conn.execute(
                "SELECT max(revision) FROM flex_entry WHERE direction = ? AND peer_domain = ? "
                "AND congestion_point = ? AND period = ? AND revision IS NOT NULL "
                "AND message_id <> ? AND (? = 0 OR standing = 'accepted') "
                "AND message_type = ?",
                (
                    direction.value,
                    peer_domain,
                    congestion_point,
                    period.isoformat(),
                    excluding,
                    int(accepted_only),
                    message_type,
                ),
            ).fetchone()
            return None if value is None else int(value)

        return await self._read(op)

    async def entries(
        self, direction: Direction | None = None, message_type: str | None = None
    ) -> list[Entry]:
        def op(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM flex_entry "  # noqa: S608 - constants
                "WHERE (:d IS NULL OR direction = :d) AND (:t IS NULL OR message_type = :t) "
                "ORDER BY id",
                {"d": None if direction is None else direction.value, "t": message_type},
            )
            return [_entry(row) for row in rows]

        return await self._read(op)


def _get(
    conn: sqlite3.Connection, direction: Direction, message_id: str, peer_domain: str | None
) -> Entry | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM flex_entry WHERE direction = ? AND message_id = ? "  # noqa: S608
        "AND (? IS NULL OR peer_domain = ?) ORDER BY id LIMIT 1",
        (direction.value, message_id, peer_domain, peer_domain),
    ).fetchone()
    return None if row is None else _entry(row)


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    row = conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (COMPONENT,)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO schema_version (component, version) VALUES (?, ?)",
            (COMPONENT, SCHEMA_VERSION),
        )
    elif row[0] > SCHEMA_VERSION:
        _, _, path = conn.execute("PRAGMA database_list").fetchone()
        raise newer_schema(path, "flex", row[0], SCHEMA_VERSION)
