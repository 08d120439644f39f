"""The Common Reference register on the embedded SQLite store.

Writes go through `SqliteStore.run`: on the store's writer thread, inside its group-commit
transaction and a SAVEPOINT of their own, so an update's checks, its rows and the record of
its MessageID commit together or not at all, and no other write interleaves (SQLite has one
writer). Reads go through `SqliteStore.read`, in a snapshot of their own.

Tables (created on first use, version in `schema_version` under component "cro_register"):

* ``cro_update``: one row per accepted update, in order of application (``seq``), unique per
  (sender, MessageID): the idempotence record and the history.
* ``cro_congestion_point``: versions of a point's definition, ``valid_from`` and
  ``superseded_by`` naming ``cro_update.seq``. A version is current while ``superseded_by``
  is NULL; as of update S it is visible when ``valid_from <= S`` and it was not superseded
  by S. It also holds its connection count and `rows_digest`.
* ``cro_connection``: the connections of one point version (``point_version``), immutable,
  visible when their version is. A version's rows are written together, so their ids are
  consecutive: the version records the first (``first_row``) and the count, and is read back
  as one id range - no index by version to maintain on 100,000 inserts.
* ``cro_connection_by_address``: (EntityAddress, ``cro_connection.id``), the look-up for the
  conflict check and the aggregators' view. A table of its own rather than an index on
  ``cro_connection``: an index takes an update's rows in id order, which is random order of
  address, and 100,000 random B-tree inserts cost more than writing the rows themselves;
  this table is filled after the rows by one INSERT ... SELECT ... ORDER BY EntityAddress,
  which SQLite sorts in C and inserts in key order.
* ``cro_agr_connection``: an aggregator's registration of a connection for a period,
  versioned per row like the points.

Set-based throughout: the message's addresses travel as one JSON array and are joined with
``json_each``, rows are written many to a statement - no query per connection. Periods are
ISO dates (TEXT, which sorts as dates do), instants integer microseconds since the epoch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final, TypeVar

from adapter.bulk import gc_paused
from adapter.store.base import EventRecord, newer_schema
from adapter.store.register import (
    AgrAllocation,
    AgrUpdateState,
    Applied,
    ConnectionPeriod,
    DsoConnection,
    DsoUpdateState,
    Membership,
    PointDefinition,
    PointSummary,
    RegisterEvents,
    StoredRows,
    UpdateKind,
    UpdateMeta,
    UpdateSummary,
    change_summary,
    versioned_diff,
)
from adapter.store.sqlite import SqliteStore, insert_events
from adapter.uftp.messages import RedispatchBy

__all__ = ["DSO_CONFLICT_QUERY", "SCHEMA_VERSION", "SqliteRegister"]

T = TypeVar("T")

#: Version of the tables this module owns (component "cro_register" in `schema_version`).
#: 2: the index cro_connection_address became the table cro_connection_by_address.
SCHEMA_VERSION: Final = 2
_COMPONENT: Final = "cro_register"

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS cro_update (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('dso', 'agr')),
        sender_domain TEXT NOT NULL,
        message_id TEXT NOT NULL,
        time_stamp INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        UNIQUE (sender_domain, message_id)
    )""",
    """CREATE INDEX IF NOT EXISTS cro_update_sender
        ON cro_update (sender_domain, kind, time_stamp)""",
    "CREATE INDEX IF NOT EXISTS cro_update_recorded ON cro_update (recorded_at)",
    """CREATE TABLE IF NOT EXISTS cro_congestion_point (
        id INTEGER PRIMARY KEY,
        entity_address TEXT NOT NULL,
        dso_domain TEXT NOT NULL,
        start_period TEXT NOT NULL,
        end_period TEXT,
        mutex_offers_supported INTEGER NOT NULL,
        day_ahead_redispatch_by TEXT NOT NULL,
        intraday_redispatch_by TEXT,
        connections INTEGER NOT NULL,
        first_row INTEGER NOT NULL,
        digest BLOB NOT NULL,
        valid_from INTEGER NOT NULL,
        superseded_by INTEGER
    )""",
    # One current definition per point: an invariant worth a constraint.
    """CREATE UNIQUE INDEX IF NOT EXISTS cro_congestion_point_current
        ON cro_congestion_point (entity_address) WHERE superseded_by IS NULL""",
    """CREATE INDEX IF NOT EXISTS cro_congestion_point_address
        ON cro_congestion_point (entity_address, valid_from)""",
    # Rows are never deleted, so each insert takes the next id: a version's rows are the ids
    # first_row .. first_row + connections - 1 of its cro_congestion_point row.
    """CREATE TABLE IF NOT EXISTS cro_connection (
        id INTEGER PRIMARY KEY,
        point_version INTEGER NOT NULL,
        entity_address TEXT NOT NULL,
        start_period TEXT NOT NULL,
        end_period TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS cro_connection_by_address (
        entity_address TEXT NOT NULL,
        connection INTEGER NOT NULL,
        PRIMARY KEY (entity_address, connection)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS cro_agr_connection (
        id INTEGER PRIMARY KEY,
        agr_domain TEXT NOT NULL,
        entity_address TEXT NOT NULL,
        start_period TEXT NOT NULL,
        end_period TEXT,
        valid_from INTEGER NOT NULL,
        superseded_by INTEGER
    )""",
    """CREATE INDEX IF NOT EXISTS cro_agr_connection_agr
        ON cro_agr_connection (agr_domain, superseded_by)""",
    """CREATE INDEX IF NOT EXISTS cro_agr_connection_address
        ON cro_agr_connection (entity_address, superseded_by)""",
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# Visibility of a versioned row `x`: current, or as of update :s.
_CURRENT: Final = "{x}.superseded_by IS NULL"
_AS_OF: Final = "{x}.valid_from <= :s AND ({x}.superseded_by IS NULL OR {x}.superseded_by > :s)"
# Active on Period :p.
_ON: Final = "{x}.start_period <= :p AND ({x}.end_period IS NULL OR {x}.end_period >= :p)"

# Points a DSO update does not replace (p): those it does not name, and other DSOs' points it
# names (it will be rejected for those, but all its reasons are reported). Parameters: the
# sender, the JSON array of the addresses of the points it names.
_ELSEWHERE: Final = (
    "p.superseded_by IS NULL AND (p.dso_domain <> ? OR p.entity_address NOT IN "
    "(SELECT value FROM json_each(?)))"
)
#: The memberships in points elsewhere of the connections an update probes (a JSON array,
#: sorted: the look-ups then walk the address table in order), then the `_ELSEWHERE`
#: parameters. One look-up in cro_connection_by_address per connection, then the row and its
#: point by primary key: O(update), not O(register). That is SQLite's plan without
#: statistics (the register never runs ANALYZE) and with statistics true to the tables.
DSO_CONFLICT_QUERY: Final = (
    "SELECT c.entity_address, p.entity_address, c.start_period, "  # noqa: S608
    "c.end_period FROM json_each(?) AS j "
    "JOIN cro_connection_by_address AS x ON x.entity_address = j.value "
    "JOIN cro_connection AS c ON c.id = x.connection "
    f"JOIN cro_congestion_point AS p ON p.id = c.point_version WHERE {_ELSEWHERE}"
)


#: Updates of more rows than this run on a worker thread instead of the event loop.
OFFLOAD_ROWS = 5_000


def _us(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the register needs aware ones")
    return (value - _EPOCH) // _MICROSECOND


def _instant(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _redispatch(value: str | None) -> RedispatchBy | None:
    return None if value is None else RedispatchBy(value)


def _visible(alias: str, as_of: bool) -> str:
    return (_AS_OF if as_of else _CURRENT).format(x=alias)


def _on(alias: str) -> str:
    return _ON.format(x=alias)


class SqliteRegister:
    """`PortfolioRegister` on a `SqliteStore` (opened by its owner, typically the CRO
    participant); see the module docstring for the tables."""

    def __init__(self, store: SqliteStore, *, events: RegisterEvents | None = None) -> None:
        self._store = store
        self._events = events
        self._ready = False

    def __repr__(self) -> str:
        return f"SqliteRegister({self._store!r})"

    async def _ensure(self) -> None:
        """Create the tables on first use (idempotent, so a race costs nothing)."""
        if not self._ready:
            await self._store.run(_create)
            self._ready = True

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self._ensure()
        return await self._store.read(fn)

    # -- updates --------------------------------------------------------------------------

    async def apply_dso_update(
        self,
        update: UpdateMeta,
        points: Sequence[PointDefinition],
        check: Callable[[DsoUpdateState], None],
    ) -> Applied:
        await self._ensure()
        events = self._change_events(UpdateKind.DSO, update, points=points)
        # A large portfolio takes SQLite a good part of a second: off the event loop.
        size = sum(len(point.connections) for point in points)
        return await self._store.run(
            lambda conn: _with_events(conn, _apply_dso(conn, update, points, check), events),
            offload=size > OFFLOAD_ROWS,
        )

    async def apply_agr_update(
        self,
        update: UpdateMeta,
        connections: Sequence[ConnectionPeriod],
        check: Callable[[AgrUpdateState], None],
    ) -> Applied:
        await self._ensure()
        events = self._change_events(UpdateKind.AGR, update, connections=connections)
        return await self._store.run(
            lambda conn: _with_events(conn, _apply_agr(conn, update, connections, check), events),
            offload=len(connections) > OFFLOAD_ROWS,
        )

    def _change_events(
        self,
        kind: UpdateKind,
        update: UpdateMeta,
        *,
        points: Sequence[PointDefinition] = (),
        connections: Sequence[ConnectionPeriod] = (),
    ) -> Sequence[EventRecord]:
        if self._events is None:
            return ()
        summary = change_summary(kind, update, points=points, connections=connections)
        return self._events(kind, update, summary)

    # -- reads ----------------------------------------------------------------------------

    async def owner(self, congestion_point: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT dso_domain FROM cro_congestion_point "
                "WHERE entity_address = ? AND superseded_by IS NULL",
                (congestion_point,),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(op)

    async def dso_connections(
        self, congestion_point: str, period: date, *, as_of: datetime | None = None
    ) -> list[DsoConnection]:
        def op(conn: sqlite3.Connection) -> list[DsoConnection]:
            params = {"cp": congestion_point, "p": period.isoformat(), "s": _seq(conn, as_of)}
            past = as_of is not None
            rows = conn.execute(
                "SELECT c.entity_address, "  # noqa: S608 - constant fragments only
                "(SELECT min(a.agr_domain) FROM cro_agr_connection AS a "
                f" WHERE a.entity_address = c.entity_address AND {_visible('a', past)} "
                f" AND {_on('a')}) "
                "FROM cro_congestion_point AS p "
                "JOIN cro_connection AS c "
                " ON c.id BETWEEN p.first_row AND p.first_row + p.connections - 1 "
                f"WHERE p.entity_address = :cp AND {_visible('p', past)} AND {_on('p')} "
                f"AND {_on('c')} "
                "ORDER BY c.entity_address",
                params,
            )
            return [DsoConnection(name, agr) for name, agr in rows]

        return await self._read(op)

    async def agr_connections(
        self, agr_domain: str, period: date, *, as_of: datetime | None = None
    ) -> list[AgrAllocation]:
        def op(conn: sqlite3.Connection) -> list[AgrAllocation]:
            past = as_of is not None
            params: dict[str, object] = {
                "agr": agr_domain,
                "p": period.isoformat(),
                "s": _seq(conn, as_of),
            }
            names = [
                name
                for (name,) in conn.execute(
                    "SELECT DISTINCT a.entity_address "  # noqa: S608 - constant fragments
                    "FROM cro_agr_connection AS a "
                    f"WHERE a.agr_domain = :agr AND {_visible('a', past)} AND {_on('a')} "
                    "ORDER BY a.entity_address",
                    params,
                )
            ]
            if not names:
                return []
            params["names"] = json.dumps(names)
            held: dict[str, AgrAllocation] = {}
            for name, point, dso, mutex, day_ahead, intraday in conn.execute(
                "SELECT c.entity_address, p.entity_address, p.dso_domain, "  # noqa: S608
                "p.mutex_offers_supported, p.day_ahead_redispatch_by, p.intraday_redispatch_by "
                "FROM json_each(:names) AS j "
                "JOIN cro_connection_by_address AS x ON x.entity_address = j.value "
                "JOIN cro_connection AS c ON c.id = x.connection "
                "JOIN cro_congestion_point AS p ON p.id = c.point_version "
                f"WHERE {_visible('p', past)} AND {_on('p')} AND {_on('c')} "
                "ORDER BY c.entity_address, p.entity_address",
                params,
            ):
                held.setdefault(
                    name,
                    AgrAllocation(
                        name,
                        point,
                        dso,
                        bool(mutex),
                        RedispatchBy(day_ahead),
                        _redispatch(intraday),
                    ),
                )
            return [held.get(name) or AgrAllocation(name) for name in names]

        return await self._read(op)

    async def congestion_points(
        self, *, dso_domain: str | None = None, as_of: datetime | None = None
    ) -> list[PointSummary]:
        def op(conn: sqlite3.Connection) -> list[PointSummary]:
            past = as_of is not None
            params = {"dso": dso_domain, "s": _seq(conn, as_of)}
            rows = conn.execute(
                "SELECT p.entity_address, p.dso_domain, p.start_period, "  # noqa: S608
                "p.end_period, p.mutex_offers_supported, p.day_ahead_redispatch_by, "
                "p.intraday_redispatch_by, u.message_id, u.recorded_at, p.connections "
                "FROM cro_congestion_point AS p JOIN cro_update AS u ON u.seq = p.valid_from "
                f"WHERE {_visible('p', past)} AND (:dso IS NULL OR p.dso_domain = :dso) "
                "ORDER BY p.dso_domain, p.entity_address",
                params,
            )
            return [
                PointSummary(
                    entity_address=row[0],
                    dso_domain=row[1],
                    start_period=date.fromisoformat(row[2]),
                    end_period=_date(row[3]),
                    mutex_offers_supported=bool(row[4]),
                    day_ahead_redispatch_by=RedispatchBy(row[5]),
                    intraday_redispatch_by=_redispatch(row[6]),
                    message_id=row[7],
                    recorded_at=_instant(row[8]),
                    connections=row[9],
                )
                for row in rows
            ]

        return await self._read(op)

    async def updates(self, *, sender_domain: str | None = None) -> list[UpdateSummary]:
        def op(conn: sqlite3.Connection) -> list[UpdateSummary]:
            rows = conn.execute(
                "SELECT seq, kind, sender_domain, message_id, time_stamp, recorded_at "
                "FROM cro_update WHERE (:sender IS NULL OR sender_domain = :sender) "
                "ORDER BY seq",
                {"sender": sender_domain},
            )
            return [
                UpdateSummary(
                    seq, UpdateKind(kind), sender, message_id, _instant(stamp), _instant(at)
                )
                for seq, kind, sender, message_id, stamp, at in rows
            ]

        return await self._read(op)


# --------------------------------------------------------------------------------------------
# On the writer thread
# --------------------------------------------------------------------------------------------


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    row = conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (_COMPONENT,)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO schema_version (component, version) VALUES (?, ?)",
            (_COMPONENT, SCHEMA_VERSION),
        )
    elif row[0] < SCHEMA_VERSION:
        _migrate(conn, row[0])
    elif row[0] > SCHEMA_VERSION:
        _, _, path = conn.execute("PRAGMA database_list").fetchone()  # the main database's
        raise newer_schema(path, "Common Reference", row[0], SCHEMA_VERSION)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a register written by an earlier version of this module up to date, in the
    transaction that opens it (so an interrupted migration leaves the old version whole)."""
    if version < 2:
        _index_by_address(conn, after=0)
        conn.execute("DROP INDEX IF EXISTS cro_connection_address")
    conn.execute(
        "UPDATE schema_version SET version = ? WHERE component = ?", (SCHEMA_VERSION, _COMPONENT)
    )


def _seq(conn: sqlite3.Connection, as_of: datetime | None) -> int | None:
    """The last update applied at or before `as_of` (0: none yet), None for the present."""
    if as_of is None:
        return None
    (seq,) = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM cro_update WHERE recorded_at <= ?", (_us(as_of),)
    ).fetchone()
    return int(seq)


def _already_applied(conn: sqlite3.Connection, update: UpdateMeta) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM cro_update WHERE sender_domain = ? AND message_id = ?",
            (update.sender_domain, update.message_id),
        ).fetchone()
        is not None
    )


def _last_time_stamp(conn: sqlite3.Connection, sender: str, kind: UpdateKind) -> datetime | None:
    (stamp,) = conn.execute(
        "SELECT max(time_stamp) FROM cro_update WHERE sender_domain = ? AND kind = ?",
        (sender, kind.value),
    ).fetchone()
    return None if stamp is None else _instant(stamp)


def _record(conn: sqlite3.Connection, update: UpdateMeta, kind: UpdateKind) -> int:
    """Insert the update's row; its recorded_at never before the previous update's."""
    (last,) = conn.execute("SELECT max(recorded_at) FROM cro_update").fetchone()
    recorded_at = max(_us(update.recorded_at), last or 0)
    cursor = conn.execute(
        "INSERT INTO cro_update (kind, sender_domain, message_id, time_stamp, recorded_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            kind.value,
            update.sender_domain,
            update.message_id,
            _us(update.time_stamp),
            recorded_at,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _supersede(conn: sqlite3.Connection, table: str, seq: int, ids: Sequence[int]) -> None:
    conn.executemany(
        f"UPDATE {table} SET superseded_by = ? WHERE id = ?",  # noqa: S608 - our table names
        ((seq, row_id) for row_id in ids),
    )


def _with_events(
    conn: sqlite3.Connection, outcome: Applied, events: Sequence[EventRecord]
) -> Applied:
    """The register's events go with an applied update, in its transaction (the store hands
    them to the relay once it committed)."""
    if events and outcome is Applied.APPLIED:
        insert_events(conn, events)
    return outcome


def _apply_dso(
    conn: sqlite3.Connection,
    update: UpdateMeta,
    points: Sequence[PointDefinition],
    check: Callable[[DsoUpdateState], None],
) -> Applied:
    with gc_paused():  # 100,000 rows of tuples: see gc_paused
        return _apply_dso_now(conn, update, points, check)


def _apply_dso_now(
    conn: sqlite3.Connection,
    update: UpdateMeta,
    points: Sequence[PointDefinition],
    check: Callable[[DsoUpdateState], None],
) -> Applied:
    if _already_applied(conn, update):
        return Applied.ALREADY_APPLIED
    sender = update.sender_domain
    addresses = json.dumps([point.entity_address for point in points])
    current: dict[str, tuple[int, str, tuple[object, ...], bytes, int, int]] = {
        row[1]: (row[0], row[2], tuple(row[3:8]), bytes(row[8]), row[9], row[10])
        for row in conn.execute(
            "SELECT id, entity_address, dso_domain, start_period, end_period, "
            "mutex_offers_supported, day_ahead_redispatch_by, intraday_redispatch_by, digest, "
            "first_row, connections FROM cro_congestion_point WHERE superseded_by IS NULL "
            "AND entity_address IN (SELECT value FROM json_each(?))",
            (addresses,),
        )
    }
    # What each point of the message becomes: kept, a new version with the old rows (only
    # its definition changed), or a new version with the message's rows.
    plans: list[tuple[str, tuple[object, ...], StoredRows, int | None]] = []
    probe: list[str] = []
    for point in points:
        definition = _definition(point)
        rows = StoredRows.of(point.connections)
        known = current.get(point.entity_address)
        if known is not None and known[2:4] == (definition, rows.digest):
            continue
        if known is not None and known[3] == rows.digest:
            plans.append((point.entity_address, definition, rows, known[0]))
        else:
            plans.append((point.entity_address, definition, rows, None))
            probe.extend(rows.names)
    memberships: list[Membership] = []
    if (
        probe
        and conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM cro_congestion_point AS p WHERE {_ELSEWHERE})",  # noqa: S608
            (sender, addresses),
        ).fetchone()[0]
    ):
        probe.sort()
        memberships = [
            Membership(name, point, date.fromisoformat(start), _date(end))
            for name, point, start, end in conn.execute(
                DSO_CONFLICT_QUERY, (json.dumps(probe), sender, addresses)
            )
        ]
    del probe
    check(
        DsoUpdateState(
            owners={address: known[1] for address, known in current.items()},
            last_time_stamp=_last_time_stamp(conn, sender, UpdateKind.DSO),
            memberships=memberships,
        )
    )

    seq = _record(conn, update, UpdateKind.DSO)
    (last_before,) = conn.execute("SELECT coalesce(max(id), 0) FROM cro_connection").fetchone()
    for address, definition, rows, copy_from in plans:
        known = current.get(address)
        if known is not None:
            conn.execute(
                "UPDATE cro_congestion_point SET superseded_by = ? WHERE id = ?", (seq, known[0])
            )
        (first_row,) = conn.execute(
            "SELECT coalesce(max(id), 0) + 1 FROM cro_connection"
        ).fetchone()
        count = len(rows) if copy_from is None or known is None else known[5]
        cursor = conn.execute(
            "INSERT INTO cro_congestion_point (entity_address, dso_domain, start_period, "
            "end_period, mutex_offers_supported, day_ahead_redispatch_by, "
            "intraday_redispatch_by, connections, first_row, digest, valid_from) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (address, sender, *definition, count, first_row, rows.digest, seq),
        )
        version = int(cursor.lastrowid or 0)
        if copy_from is not None and known is not None:
            conn.execute(
                "INSERT INTO cro_connection (point_version, entity_address, start_period, "
                "end_period) SELECT ?, entity_address, start_period, end_period "
                "FROM cro_connection WHERE id BETWEEN ? AND ? ORDER BY id",
                (version, known[4], known[4] + known[5] - 1),
            )
        else:
            _insert_connections(conn, version, rows)
        (last_row,) = conn.execute("SELECT coalesce(max(id), 0) FROM cro_connection").fetchone()
        if last_row != first_row + count - 1:  # the id range is the only link to the rows
            raise RuntimeError(f"rows of {address} are not contiguous ({first_row}..{last_row})")
    _index_by_address(conn, after=last_before)
    return Applied.APPLIED


def _index_by_address(conn: sqlite3.Connection, *, after: int) -> None:
    """Add the rows with ids above `after` to cro_connection_by_address, in key order."""
    conn.execute(
        "INSERT INTO cro_connection_by_address (entity_address, connection) "
        "SELECT entity_address, id FROM cro_connection WHERE id > ? ORDER BY entity_address, id",
        (after,),
    )


#: Connections per INSERT statement: at most 4 x 250 parameters, far below SQLite's 32,766.
_ROWS_PER_INSERT: Final = 250


def _insert_connections(conn: sqlite3.Connection, version: int, rows: StoredRows) -> None:
    """Insert a point version's rows, `_ROWS_PER_INSERT` to a statement.

    Measured on 100,000 rows, this takes much less time than `executemany` with one row a
    statement (bench/README.md): the per-statement overhead of the sqlite3 module dominates
    SQLite's own work. When every row shares one period, the statement binds the version and the
    period once and only the names per row. A missing EndPeriod travels as '' and becomes NULL
    in SQL (`NULLIF`): the module binds None through its adaptation lookup, which costs as much
    as the insert itself.
    """
    if rows.period is not None:
        start, end = rows.period
        names = rows.names
        for first in range(0, len(names), _ROWS_PER_INSERT):
            chunk = names[first : first + _ROWS_PER_INSERT]
            values = ",".join(("(?)",) * len(chunk))
            conn.execute(
                "INSERT INTO cro_connection (point_version, entity_address, start_period, "  # noqa: S608
                f"end_period) SELECT ?, column1, ?, NULLIF(?, '') FROM (VALUES {values})",
                [version, start, end or "", *chunk],
            )
        return
    assert rows.rows is not None
    for first in range(0, len(rows.rows), _ROWS_PER_INSERT):
        part = rows.rows[first : first + _ROWS_PER_INSERT]
        values = ",".join(("(?,?,?,NULLIF(?,''))",) * len(part))
        parameters: list[object] = []
        extend = parameters.extend
        for name, start_text, end_text in part:
            extend((version, name, start_text, end_text or ""))
        conn.execute(
            "INSERT INTO cro_connection (point_version, entity_address, start_period, "  # noqa: S608
            f"end_period) VALUES {values}",  # placeholders only
            parameters,
        )


def _definition(point: PointDefinition) -> tuple[object, ...]:
    """The point's own fields as stored (and as read back, for comparison)."""
    return (
        point.start_period.isoformat(),
        _iso(point.end_period),
        int(point.mutex_offers_supported),
        point.day_ahead_redispatch_by.value,
        None if point.intraday_redispatch_by is None else point.intraday_redispatch_by.value,
    )


def _apply_agr(
    conn: sqlite3.Connection,
    update: UpdateMeta,
    connections: Sequence[ConnectionPeriod],
    check: Callable[[AgrUpdateState], None],
) -> Applied:
    if _already_applied(conn, update):
        return Applied.ALREADY_APPLIED
    sender = update.sender_domain
    names = json.dumps(sorted({connection[0] for connection in connections}))
    current_rows: dict[tuple[str, str, str | None], int] = {
        (name, start, end): row_id
        for row_id, name, start, end in conn.execute(
            "SELECT id, entity_address, start_period, end_period FROM cro_agr_connection "
            "WHERE superseded_by IS NULL AND agr_domain = ? "
            "AND entity_address IN (SELECT value FROM json_each(?))",
            (sender, names),
        )
    }
    wanted = ((name, start.isoformat(), _iso(end)) for name, start, end in connections)
    inserts, gone = versioned_diff(current_rows, wanted)
    registrations = [
        Membership(name, agr, date.fromisoformat(start), _date(end))
        for name, agr, start, end in conn.execute(
            "SELECT entity_address, agr_domain, start_period, end_period "
            "FROM cro_agr_connection WHERE superseded_by IS NULL AND agr_domain <> ? "
            "AND entity_address IN (SELECT value FROM json_each(?))",
            (sender, json.dumps([row[0] for row in inserts])),
        )
    ]
    check(
        AgrUpdateState(
            last_time_stamp=_last_time_stamp(conn, sender, UpdateKind.AGR),
            registrations=registrations,
        )
    )
    seq = _record(conn, update, UpdateKind.AGR)
    _supersede(conn, "cro_agr_connection", seq, gone)
    conn.executemany(
        "INSERT INTO cro_agr_connection (agr_domain, entity_address, start_period, "
        "end_period, valid_from) VALUES (?, ?, ?, ?, ?)",
        ((sender, *row, seq) for row in inserts),
    )
    return Applied.APPLIED
