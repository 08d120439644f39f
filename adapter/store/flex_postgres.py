"""The flex conversations (`adapter.store.flex`) on the PostgreSQL store.

The table of `flex_sqlite` in the store's schema, with PostgreSQL types (``date``,
``timestamptz``, ``bytea``). Every call is one transaction through `PostgresStore.run`;
`settle` is one conditional UPDATE, so of two processes ordering and revoking one offer the
row lock lets one win and the other see it moved. The table is created on first use under a
transaction-scoped advisory lock (two processes starting together create it once); its
version is component "flex" in `schema_version`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import date
from typing import Any, Final, TypeVar

from adapter.flex.state import Direction, Entry, Standing
from adapter.store.flex import (
    COLUMNS,
    COMPONENT,
    SCHEMA_VERSION,
    StoredBook,
    reasons_column,
    reasons_of_column,
)
from adapter.store.postgres import PostgresStore, create_component, insert_events

__all__ = ["PostgresFlexBook"]

T = TypeVar("T")

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS flex_entry (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        direction text NOT NULL CHECK (direction IN ('sent', 'received')),
        peer_domain text NOT NULL,
        message_type text NOT NULL,
        message_id text NOT NULL,
        conversation_id text NOT NULL,
        period date,
        congestion_point text,
        expires_at timestamptz,
        reference text,
        revision bigint,
        standing text NOT NULL,
        settled_by text,
        reason text,
        recorded_at timestamptz NOT NULL,
        inner_xml bytea NOT NULL,
        UNIQUE (direction, peer_domain, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS flex_entry_message ON flex_entry (message_id)",
    """CREATE INDEX IF NOT EXISTS flex_entry_revision
        ON flex_entry (peer_domain, congestion_point, period) WHERE revision IS NOT NULL""",
)


def _entry(row: Any) -> Entry:
    return Entry(
        direction=Direction(row["direction"]),
        peer_domain=row["peer_domain"],
        message_type=row["message_type"],
        message_id=row["message_id"],
        conversation_id=row["conversation_id"],
        period=row["period"],
        congestion_point=row["congestion_point"],
        expires_at=row["expires_at"],
        reference=row["reference"],
        revision=row["revision"],
        standing=Standing(row["standing"]),
        settled_by=row["settled_by"],
        reasons=reasons_of_column(row["reason"]),
        recorded_at=row["recorded_at"],
        inner_xml=bytes(row["inner_xml"]),
    )


class PostgresFlexBook(StoredBook[PostgresStore]):
    """`FlexBook` on a `PostgresStore` (opened by its owner)."""

    async def _with_events(self, conn: Any, entry: Entry, change: str) -> bool:
        """The events of a change go with it, in its transaction; whether there were any."""
        events = self._events_of(entry, change)
        if events:
            await insert_events(conn, events)
        return bool(events)

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        if not self._ready:
            await self._store.run(self._create)
            self._ready = True
        return await self._store.run(fn)

    async def _create(self, conn: Any) -> None:
        await create_component(
            conn,
            lock_key=f"uftp-adapter:flex:{self._store.schema}",
            component=COMPONENT,
            version=SCHEMA_VERSION,
            statements=_SCHEMA,
            location=self._store.location,
            label="flex",
        )

    async def record(self, entry: Entry) -> Entry:
        async def op(conn: Any) -> tuple[Entry, bool]:
            status: str = await conn.execute(
                f"INSERT INTO flex_entry ({COLUMNS}) VALUES "  # noqa: S608 - constants
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
                "ON CONFLICT (direction, peer_domain, message_id) DO NOTHING",
                entry.direction.value,
                entry.peer_domain,
                entry.message_type,
                entry.message_id,
                entry.conversation_id,
                entry.period,
                entry.congestion_point,
                entry.expires_at,
                entry.reference,
                entry.revision,
                entry.standing.value,
                entry.settled_by,
                reasons_column(entry.reasons),
                entry.recorded_at,
                entry.inner_xml,
            )
            stored = await _get(conn, entry.direction, entry.message_id, entry.peer_domain)
            assert stored is not None
            return stored, status == "INSERT 0 1" and await self._with_events(
                conn, stored, entry.direction
            )

        return await self._changed(self._run(op))

    async def get(
        self, direction: Direction, message_id: str, *, peer_domain: str | None = None
    ) -> Entry | None:
        return await self._run(lambda conn: _get(conn, direction, message_id, peer_domain))

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
        async def op(conn: Any) -> tuple[bool, bool]:
            status: str = await conn.execute(
                "UPDATE flex_entry SET standing = $1, settled_by = $2, reason = $3 "
                "WHERE direction = $4 AND peer_domain = $5 AND message_id = $6 "
                "AND standing = ANY($7::text[])",
                to.value,
                by,
                reasons_column(reasons),
                direction.value,
                peer_domain,
                message_id,
                [standing.value for standing in from_],
            )
            if status != "UPDATE 1":
                return False, False
            if self._events is None:
                return True, False
            moved = await _get(conn, direction, message_id, peer_domain)
            assert moved is not None
            return True, await self._with_events(conn, moved, to.value)

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
        async def op(conn: Any) -> int | None:
            value = await conn.fetchval(
                "SELECT max(revision) FROM flex_entry WHERE direction = $1 "
                "AND peer_domain = $2 AND congestion_point = $3 AND period = $4 "
                "AND revision IS NOT NULL AND message_id <> $5 "
                "AND (NOT $6 OR standing = 'accepted') AND message_type = $7",
                direction.value,
                peer_domain,
                congestion_point,
                period,
                excluding,
                accepted_only,
                message_type,
            )
            return None if value is None else int(value)

        return await self._run(op)

    async def entries(
        self, direction: Direction | None = None, message_type: str | None = None
    ) -> list[Entry]:
        async def op(conn: Any) -> list[Entry]:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM flex_entry "  # noqa: S608 - constants
                "WHERE ($1::text IS NULL OR direction = $1) "
                "AND ($2::text IS NULL OR message_type = $2) ORDER BY id",
                None if direction is None else direction.value,
                message_type,
            )
            return [_entry(row) for row in rows]

        return await self._run(op)


async def _get(
    conn: Any, direction: Direction, message_id: str, peer_domain: str | None
) -> Entry | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM flex_entry WHERE direction = $1 "  # noqa: S608 - constants
        "AND message_id = $2 AND ($3::text IS NULL OR peer_domain = $3) ORDER BY id LIMIT 1",
        direction.value,
        message_id,
        peer_domain,
    )
    return None if row is None else _entry(row)
