"""The Common Reference register on the PostgreSQL store.

The tables and their versioning are those of `register_sqlite` (see its docstring), in the
store's schema, with PostgreSQL types: periods are ``date``, instants ``timestamptz``.

Every call is one transaction through `PostgresStore.run`. Updates first take a
transaction-scoped advisory lock, so that two updates - from two handlers, or from two
processes sharing the schema - are checked and applied one after the other: the conflict
checks read what the other would write. Reads take no lock; each sees one committed snapshot.

Set-based throughout: the message's addresses travel as one array parameter and are joined
with ``unnest``; connection rows are written with COPY.

An update costs what it touches, never what the register holds (O(update), not O(register)),
whatever the planner's statistics. The look-ups by connection (the conflict checks) are
written so that the planner has one plan to choose (`_by_address`): for each address of the
message, in sorted order, one probe of an index led by the address (of cro_connection, its
key). Left free, the planner chose by its statistics, and without them (a freshly loaded
table, autovacuum off) it joined every current point with every probe: with 1,000,000
connections of other DSOs registered, one update ran for minutes. JIT compilation is off in
update transactions: the estimates of such plans run into the billions without statistics,
and compiling costs more than the query. An update that adds at least half as many rows as
its table held when last counted (a bulk load) is followed by ANALYZE, in a task of its own
once the update has committed (the response need not wait for it), so that the other queries
plan on true statistics before autovacuum comes by, or where it is off.

A new portfolio of 100 x 1,000 (bench/bench_cro.py, per statement: see bench/README.md) costs
most in the COPY of its 100,000 rows, and most of that in the two indexes of cro_connection.
Its key leads with the address (schema version 3), so that the key serves the look-ups by
connection, and the other index, on point_version alone, takes each COPY's rows at its right
end (new versions have the largest ids): a quarter off the COPY's server time against a key
led by point_version beside an address index. The rows are made once, with ids drawn before
the checks, and sorted by address once: that order is the conflict check's probe and the
order in which the COPY fills the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any, Final, TypeVar

import asyncpg

from adapter.bulk import gc_paused
from adapter.store.base import EventRecord, StorageError
from adapter.store.postgres import PostgresStore, create_component, insert_events
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
from adapter.uftp.messages import RedispatchBy

__all__ = [
    "AGR_CONFLICT_QUERY",
    "DSO_CONFLICT_QUERY",
    "SCHEMA_VERSION",
    "PostgresRegister",
    "names_parameter",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Version of the tables this module owns (component "cro_register" in `schema_version`).
#: 2: a point version may hold a connection more than once, for disjoint periods (the key of
#: cro_connection gained start_period).
#: 3: cro_connection's key leads with the address, and serves the look-ups by connection; a
#: plain index on point_version replaces the separate address index (see `_migrate`).
SCHEMA_VERSION: Final = 3
_COMPONENT: Final = "cro_register"

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS cro_update (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('dso', 'agr')),
        sender_domain text NOT NULL,
        message_id text NOT NULL,
        time_stamp timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL,
        UNIQUE (sender_domain, message_id)
    )""",
    """CREATE INDEX IF NOT EXISTS cro_update_sender
        ON cro_update (sender_domain, kind, time_stamp)""",
    "CREATE INDEX IF NOT EXISTS cro_update_recorded ON cro_update (recorded_at)",
    """CREATE TABLE IF NOT EXISTS cro_congestion_point (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entity_address text NOT NULL,
        dso_domain text NOT NULL,
        start_period date NOT NULL,
        end_period date,
        mutex_offers_supported boolean NOT NULL,
        day_ahead_redispatch_by text NOT NULL,
        intraday_redispatch_by text,
        connections integer NOT NULL,
        digest bytea NOT NULL,
        valid_from bigint NOT NULL,
        superseded_by bigint
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS cro_congestion_point_current
        ON cro_congestion_point (entity_address) WHERE superseded_by IS NULL""",
    """CREATE INDEX IF NOT EXISTS cro_congestion_point_address
        ON cro_congestion_point (entity_address, valid_from)""",
    """CREATE TABLE IF NOT EXISTS cro_connection (
        point_version bigint NOT NULL,
        entity_address text NOT NULL,
        start_period date NOT NULL,
        end_period date,
        PRIMARY KEY (entity_address, point_version, start_period)
    )""",
    """CREATE INDEX IF NOT EXISTS cro_connection_version
        ON cro_connection (point_version)""",
    """CREATE TABLE IF NOT EXISTS cro_agr_connection (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        agr_domain text NOT NULL,
        entity_address text NOT NULL,
        start_period date NOT NULL,
        end_period date,
        valid_from bigint NOT NULL,
        superseded_by bigint
    )""",
    """CREATE INDEX IF NOT EXISTS cro_agr_connection_agr
        ON cro_agr_connection (agr_domain, superseded_by)""",
    """CREATE INDEX IF NOT EXISTS cro_agr_connection_address
        ON cro_agr_connection (entity_address, superseded_by)""",
)

_CONNECTION_COLUMNS: Final = ("point_version", "entity_address", "start_period", "end_period")
#: The entity address of a `cro_connection` record.
_ADDRESS: Final = itemgetter(1)
_AGR_COLUMNS: Final = ("agr_domain", "entity_address", "start_period", "end_period", "valid_from")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the register needs aware ones")
    return value


def _redispatch(value: str | None) -> RedispatchBy | None:
    return None if value is None else RedispatchBy(value)


def _definition(point: PointDefinition) -> tuple[object, ...]:
    """The point's own fields as stored (and as read back, for comparison)."""
    return (
        point.start_period,
        point.end_period,
        point.mutex_offers_supported,
        point.day_ahead_redispatch_by.value,
        None if point.intraday_redispatch_by is None else point.intraday_redispatch_by.value,
    )


def _elsewhere(sender: str, points: str) -> str:
    """SQL: point version `p` is current and not one the update replaces (the sender's
    points the update names)."""
    return (
        f"p.superseded_by IS NULL "
        f"AND (p.dso_domain <> {sender} OR p.entity_address <> ALL({points}::text[]))"
    )


_PERIOD_COLUMNS: Final = "x.entity_address, x.start_period, x.end_period"


#: Between the names of a `names_parameter`: U+0001 is no XML character (XML 1.0, production
#: Char), so it is in no EntityAddress a message can carry.
_SEPARATOR: Final = "\x01"


def names_parameter(names: Sequence[str]) -> str:
    """`names` as one text parameter, for `_by_address`: 100,000 names bound as a text[]
    cost asyncpg two isinstance checks against abstract classes each (0.15 s of our CPU per
    update); joined they cost a copy, and the server splits them (``string_to_array``).

    Raises ValueError for a name that would not come back whole (empty, or holding the
    separator): not one a message can carry."""
    text = _SEPARATOR.join(names)
    if names and (text.count(_SEPARATOR) != len(names) - 1 or not all(names)):
        raise ValueError("an EntityAddress is empty or holds U+0001")
    return text


def _by_address(names: str, table: str, columns: str, where: str = "TRUE") -> str:
    """SQL: the addresses of text parameter `names` (`names_parameter`: as ``n``) and for
    each the rows of `table` with that EntityAddress (as ``x``, its `columns`, filtered by
    `where`).

    One probe of the table's address index per name, whatever the statistics: LATERAL makes
    ``n`` the outer side and OFFSET 0 keeps the subquery from being flattened into a join
    the planner could reorder (into a scan of the whole table, or a nested loop over
    congestion points). Without statistics the planner may make the probe a bitmap scan;
    it is still an index probe, and a sequential scan per name is never cheaper on paper.
    """
    return (
        f"unnest(string_to_array({names}::text, chr(1))) AS n (entity_address) "  # noqa: S608
        "CROSS JOIN LATERAL ("
        f"SELECT {columns} FROM {table} AS x "
        f"WHERE x.entity_address = n.entity_address AND {where} OFFSET 0) AS x"
    )


#: The current memberships, in points the update does not replace, of the connections it
#: probes: $1 the sender, $2 the addresses of the points it names, $3 the connections (sorted:
#: the index and the rows, written in address order, are then read in order). The point of
#: each row is found by its primary key, in a LATERAL of its own for the same reason.
DSO_CONFLICT_QUERY: Final = (
    "SELECT x.entity_address, p.entity_address, x.start_period, x.end_period FROM "  # noqa: S608
    + _by_address("$3", "cro_connection", "x.point_version, " + _PERIOD_COLUMNS)
    + " CROSS JOIN LATERAL (SELECT p.entity_address FROM cro_congestion_point AS p "
    + f"WHERE p.id = x.point_version AND {_elsewhere('$1', '$2')} OFFSET 0) AS p"
)

#: Current registrations by other aggregators ($1 the sender) of the connections $2.
AGR_CONFLICT_QUERY: Final = "SELECT x.* FROM " + _by_address(  # noqa: S608
    "$2",
    "cro_agr_connection",
    "x.entity_address, x.agr_domain, x.start_period, x.end_period",
    "x.superseded_by IS NULL AND x.agr_domain <> $1",
)
#: The sender's ($1) current registrations of the connections $2: what its update replaces.
_AGR_CURRENT_QUERY: Final = "SELECT x.* FROM " + _by_address(  # noqa: S608
    "$2",
    "cro_agr_connection",
    "x.id, " + _PERIOD_COLUMNS,
    "x.superseded_by IS NULL AND x.agr_domain = $1",
)

#: An update that adds at least this many connection rows, and at least half as many as the
#: table held when it was last counted, is followed by ANALYZE (see the module docstring).
ANALYZE_ROWS: Final = 10_000


def _visible(alias: str, seq: str | None) -> str:
    """SQL: row `alias` is current (seq None) or visible as of update parameter `seq`."""
    if seq is None:
        return f"{alias}.superseded_by IS NULL"
    return (
        f"{alias}.valid_from <= {seq} "
        f"AND ({alias}.superseded_by IS NULL OR {alias}.superseded_by > {seq})"
    )


def _on(alias: str, period: str) -> str:
    """SQL: row `alias` is active on Period parameter `period`."""
    return (
        f"{alias}.start_period <= {period} "
        f"AND ({alias}.end_period IS NULL OR {alias}.end_period >= {period})"
    )


async def _migrate(conn: Any, version: int) -> None:
    """Bring a register written by an earlier version of this module up to date, in the
    transaction that opens it (so an interrupted migration leaves the old version whole)."""
    if version < 3:
        # 2: a connection that leaves a point and returns to it is listed twice in one
        # version, with disjoint periods (dso-portfolio-update.md: each Connection has its own
        # Period). 3: the key leads with the address, so that one index serves the look-ups
        # by connection and the key; the other, on point_version alone, takes each COPY's
        # rows as appends (their versions are new, the largest yet). Two indexes where there
        # were two, but cheaper to write (bench/README.md).
        # cro_connection_version was made by `_SCHEMA` just before.
        await conn.execute(
            "ALTER TABLE cro_connection DROP CONSTRAINT cro_connection_pkey, "
            "ADD PRIMARY KEY (entity_address, point_version, start_period); "
            "DROP INDEX IF EXISTS cro_connection_address"
        )
    await conn.execute(
        "UPDATE schema_version SET version = $1 WHERE component = $2", SCHEMA_VERSION, _COMPONENT
    )


async def _grew_by_half(conn: Any, table: str, rows: int) -> bool:
    """Whether `rows` new rows of `table` (ours) are a bulk load worth an ANALYZE: at least
    `ANALYZE_ROWS`, and half of what the table held when last counted (reltuples; -1 when
    never counted)."""
    if rows < ANALYZE_ROWS:
        return False
    counted: float = await conn.fetchval(
        "SELECT reltuples FROM pg_class WHERE oid = $1::text::regclass", table
    )
    return counted < 0 or rows * 2 >= counted


class PostgresRegister:
    """`PortfolioRegister` on a `PostgresStore` (opened by its owner); see the module
    docstring."""

    def __init__(self, store: PostgresStore, *, events: RegisterEvents | None = None) -> None:
        self._store = store
        self._events = events
        self._ready = False
        self._analyzing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"PostgresRegister({self._store!r})"

    @property
    def _lock_key(self) -> str:
        return f"uftp-adapter:cro-register:{self._store.schema}"

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        if not self._ready:
            await self._store.run(self._create)
            self._ready = True
        return await self._store.run(fn)

    async def _create(self, conn: Any) -> None:
        await create_component(
            conn,
            lock_key=self._lock_key,
            component=_COMPONENT,
            version=SCHEMA_VERSION,
            statements=_SCHEMA,
            location=self._store.location,
            label="Common Reference",
            migrate=_migrate,
        )

    # -- updates --------------------------------------------------------------------------

    async def apply_dso_update(
        self,
        update: UpdateMeta,
        points: Sequence[PointDefinition],
        check: Callable[[DsoUpdateState], None],
    ) -> Applied:
        events = self._change_events(UpdateKind.DSO, update, points=points)
        grew = False

        async def op(conn: Any) -> Applied:
            nonlocal grew
            if await self._begin_update(conn, update):
                return Applied.ALREADY_APPLIED
            sender = update.sender_domain
            addresses = [point.entity_address for point in points]
            current = {
                row[1]: (row[0], row[2], tuple(row[3:8]), bytes(row[8]))
                for row in await conn.fetch(
                    "SELECT id, entity_address, dso_domain, start_period, end_period, "
                    "mutex_offers_supported, day_ahead_redispatch_by, intraday_redispatch_by, "
                    "digest FROM cro_congestion_point "
                    "WHERE superseded_by IS NULL AND entity_address = ANY($1::text[])",
                    addresses,
                )
            }
            # Kept, a new version with the old rows, or a new version with the message's.
            plans: list[tuple[PointDefinition, tuple[object, ...], bytes, int | None]] = []
            for point in points:
                definition = _definition(point)
                digest = StoredRows.of(point.connections).digest
                known = current.get(point.entity_address)
                if known is not None and known[2:] == (definition, digest):
                    continue
                copy_from = known[0] if known is not None and known[3] == digest else None
                plans.append((point, definition, digest, copy_from))
            # The new versions' ids, drawn before the checks, so that the rows to write are
            # made once, in their final form, and sorted once: their addresses are the probe
            # of the conflict check. An update then rejected leaves a gap in the ids, as any
            # rolled-back insert does.
            versions: list[int] = (
                [
                    row[0]
                    for row in await conn.fetch(
                        "SELECT nextval(pg_get_serial_sequence('cro_congestion_point', 'id')) "
                        "FROM generate_series(1, $1)",
                        len(plans),
                    )
                ]
                if plans
                else []
            )
            with gc_paused():  # 100,000 rows of tuples: see gc_paused
                records = [
                    (version, *connection)
                    for (point, _, _, old), version in zip(plans, versions, strict=True)
                    if old is None
                    for connection in point.connections
                ]
                # In address order: the conflict check reads the address index in order,
                # and the COPY adds to it in order rather than at random.
                records.sort(key=_ADDRESS)
            # Points this update does not replace: those it does not name, and other DSOs'
            # points it names (rejected for those, but all reasons are reported).
            memberships: list[Membership] = []
            if records and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM cro_congestion_point AS p "  # noqa: S608
                f"WHERE {_elsewhere('$1', '$2')})",
                sender,
                addresses,
            ):
                memberships = [
                    Membership(*row)
                    for row in await conn.fetch(
                        DSO_CONFLICT_QUERY,
                        sender,
                        addresses,
                        names_parameter(list(map(_ADDRESS, records))),
                    )
                ]
            check(
                DsoUpdateState(
                    owners={address: known[1] for address, known in current.items()},
                    last_time_stamp=await self._last_time_stamp(conn, sender, UpdateKind.DSO),
                    memberships=memberships,
                )
            )
            seq = await self._record(conn, update, UpdateKind.DSO)
            if not plans:
                return Applied.APPLIED
            # Four statements whatever the number of points: supersede, insert, copy twice.
            replaced = [
                current[p.entity_address][0] for p, *_ in plans if p.entity_address in current
            ]
            if replaced:
                await conn.execute(
                    "UPDATE cro_congestion_point SET superseded_by = $1 "
                    "WHERE id = ANY($2::bigint[])",
                    seq,
                    replaced,
                )
            # One array per column; the current-point index makes addresses unique here.
            await conn.execute(
                "INSERT INTO cro_congestion_point (id, entity_address, dso_domain, "
                "start_period, end_period, mutex_offers_supported, "
                "day_ahead_redispatch_by, intraday_redispatch_by, connections, digest, "
                "valid_from) OVERRIDING SYSTEM VALUE "
                "SELECT n.v, n.a, $1, n.s, n.e, n.m, n.d, n.i, n.c, n.h, $2 "
                "FROM unnest($3::bigint[], $4::text[], $5::date[], $6::date[], $7::boolean[], "
                "$8::text[], $9::text[], $10::integer[], $11::bytea[]) "
                "AS n (v, a, s, e, m, d, i, c, h)",
                sender,
                seq,
                versions,
                [point.entity_address for point, *_ in plans],
                *(list(column) for column in zip(*(d for _, d, _, _ in plans), strict=True)),
                [len(point.connections) for point, *_ in plans],
                [digest for _, _, digest, _ in plans],
            )
            copies = [
                (new, old)
                for (_, _, _, old), new in zip(plans, versions, strict=True)
                if old is not None
            ]
            copied = 0
            if copies:
                status = await conn.execute(
                    "INSERT INTO cro_connection (point_version, entity_address, start_period, "
                    "end_period) SELECT v.new, c.entity_address, c.start_period, c.end_period "
                    "FROM unnest($1::bigint[], $2::bigint[]) AS v (new, old) "
                    "JOIN cro_connection AS c ON c.point_version = v.old",
                    [new for new, _ in copies],
                    [old for _, old in copies],
                )
                copied = int(status.split()[-1])
            if records:
                await conn.copy_records_to_table(
                    "cro_connection",
                    records=records,
                    columns=_CONNECTION_COLUMNS,
                    schema_name=self._store.schema,
                )
            grew = await _grew_by_half(conn, "cro_connection", len(records) + copied)
            return Applied.APPLIED

        applied = await self._apply(op, events)
        if grew:
            self._analyze_later("cro_connection", "cro_congestion_point")
        return applied

    async def apply_agr_update(
        self,
        update: UpdateMeta,
        connections: Sequence[ConnectionPeriod],
        check: Callable[[AgrUpdateState], None],
    ) -> Applied:
        events = self._change_events(UpdateKind.AGR, update, connections=connections)
        grew = False

        async def op(conn: Any) -> Applied:
            nonlocal grew
            if await self._begin_update(conn, update):
                return Applied.ALREADY_APPLIED
            sender = update.sender_domain
            current_rows = {
                (row[1], row[2], row[3]): row[0]
                for row in await conn.fetch(
                    _AGR_CURRENT_QUERY,
                    sender,
                    names_parameter(sorted({connection[0] for connection in connections})),
                )
            }
            inserts, gone = versioned_diff(current_rows, (tuple(c) for c in connections))
            registrations = [
                Membership(*row)
                for row in await conn.fetch(
                    AGR_CONFLICT_QUERY, sender, names_parameter(sorted({row[0] for row in inserts}))
                )
            ]
            check(
                AgrUpdateState(
                    last_time_stamp=await self._last_time_stamp(conn, sender, UpdateKind.AGR),
                    registrations=registrations,
                )
            )
            seq = await self._record(conn, update, UpdateKind.AGR)
            await self._supersede(conn, "cro_agr_connection", seq, gone)
            if inserts:
                await conn.copy_records_to_table(
                    "cro_agr_connection",
                    records=[(sender, *row, seq) for row in inserts],
                    columns=_AGR_COLUMNS,
                    schema_name=self._store.schema,
                )
            grew = await _grew_by_half(conn, "cro_agr_connection", len(inserts))
            return Applied.APPLIED

        applied = await self._apply(op, events)
        if grew:
            self._analyze_later("cro_agr_connection")
        return applied

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

    async def _apply(
        self, op: Callable[[Any], Awaitable[Applied]], events: Sequence[EventRecord]
    ) -> Applied:
        """Run an update; its events go with it, in its transaction, when it applies."""

        async def with_events(conn: Any) -> Applied:
            outcome = await op(conn)
            if events and outcome is Applied.APPLIED:
                await insert_events(conn, events)
            return outcome

        outcome = await self._run(with_events)
        if events and outcome is Applied.APPLIED:
            self._store.events_written()
        return outcome

    async def _begin_update(self, conn: Any, update: UpdateMeta) -> bool:
        """Serialise register updates, JIT off for the transaction (see the module
        docstring); True when this one was applied before."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1)), set_config('jit', 'off', true)",
            self._lock_key,
        )
        found = await conn.fetchval(
            "SELECT 1 FROM cro_update WHERE sender_domain = $1 AND message_id = $2",
            update.sender_domain,
            update.message_id,
        )
        return found is not None

    def _analyze_later(self, *tables: str) -> None:
        """ANALYZE `tables` (ours) in a task of its own, after the update committed: the
        update is applied whatever comes of it, and its sender's response need not wait for
        it (0.05-0.1 s for 100,000 rows). `analyzed` waits for it."""
        task = asyncio.get_running_loop().create_task(self._analyze(*tables))
        self._analyzing.add(task)
        task.add_done_callback(self._analyzing.discard)

    async def analyzed(self) -> None:
        """Wait for the ANALYZE runs that bulk loads started (`_analyze_later`)."""
        while self._analyzing:
            await asyncio.wait(set(self._analyzing))

    async def _analyze(self, *tables: str) -> None:
        """ANALYZE `tables`, each in a transaction of its own: a failure is logged, not
        raised (the rows it would count are applied; autovacuum counts them too, where it is
        on). SKIP_LOCKED: when a VACUUM or ANALYZE holds a table, it is counting already,
        and this one does not wait. One table a transaction, so that it never holds the lock
        of one table while it asks for another's: two ANALYZEs of several tables in one
        transaction each can deadlock."""
        for table in tables:

            async def op(conn: Any, table: str = table) -> None:
                await conn.execute(f"ANALYZE (SKIP_LOCKED) {table}")

            try:
                await self._store.run(op)
            except (RuntimeError, asyncpg.InterfaceError):
                # The store was closed, or is closing, meanwhile (the participant stopped):
                # autovacuum, or the next bulk load, will count the table.
                log.debug("ANALYZE of the register's table %s: the store is closed", table)
                return
            except (OSError, asyncpg.PostgresError, StorageError) as exc:
                log.warning("ANALYZE of the register's table %s failed: %s", table, exc)

    @staticmethod
    async def _last_time_stamp(conn: Any, sender: str, kind: UpdateKind) -> datetime | None:
        value: datetime | None = await conn.fetchval(
            "SELECT max(time_stamp) FROM cro_update WHERE sender_domain = $1 AND kind = $2",
            sender,
            kind.value,
        )
        return value

    @staticmethod
    async def _record(conn: Any, update: UpdateMeta, kind: UpdateKind) -> int:
        """Insert the update's row; its recorded_at never before the previous update's."""
        seq: int = await conn.fetchval(
            "INSERT INTO cro_update (kind, sender_domain, message_id, time_stamp, recorded_at) "
            "SELECT $1, $2, $3, $4, greatest($5, (SELECT max(recorded_at) FROM cro_update)) "
            "RETURNING seq",
            kind.value,
            update.sender_domain,
            update.message_id,
            _aware(update.time_stamp),
            _aware(update.recorded_at),
        )
        return seq

    @staticmethod
    async def _supersede(conn: Any, table: str, seq: int, ids: Sequence[int]) -> None:
        if ids:
            await conn.execute(
                f"UPDATE {table} SET superseded_by = $1 "  # noqa: S608 - our table names
                "WHERE id = ANY($2::bigint[])",
                seq,
                list(ids),
            )

    # -- reads ----------------------------------------------------------------------------

    async def _as_of(self, conn: Any, as_of: datetime | None) -> int | None:
        if as_of is None:
            return None
        seq: int = await conn.fetchval(
            "SELECT coalesce(max(seq), 0) FROM cro_update WHERE recorded_at <= $1",
            _aware(as_of),
        )
        return seq

    async def owner(self, congestion_point: str) -> str | None:
        async def op(conn: Any) -> str | None:
            owner: str | None = await conn.fetchval(
                "SELECT dso_domain FROM cro_congestion_point "
                "WHERE entity_address = $1 AND superseded_by IS NULL",
                congestion_point,
            )
            return owner

        return await self._run(op)

    async def dso_connections(
        self, congestion_point: str, period: date, *, as_of: datetime | None = None
    ) -> list[DsoConnection]:
        async def op(conn: Any) -> list[DsoConnection]:
            seq = await self._as_of(conn, as_of)
            s = None if seq is None else "$3"
            args: list[object] = [congestion_point, period] + ([] if seq is None else [seq])
            rows = await conn.fetch(
                "SELECT c.entity_address, "  # noqa: S608 - constant fragments only
                "(SELECT min(a.agr_domain) FROM cro_agr_connection AS a "
                f" WHERE a.entity_address = c.entity_address AND {_visible('a', s)} "
                f" AND {_on('a', '$2')}) "
                "FROM cro_congestion_point AS p "
                "JOIN cro_connection AS c ON c.point_version = p.id "
                f"WHERE p.entity_address = $1 AND {_visible('p', s)} AND {_on('p', '$2')} "
                f"AND {_on('c', '$2')} "
                "ORDER BY c.entity_address",
                *args,
            )
            return [DsoConnection(row[0], row[1]) for row in rows]

        return await self._run(op)

    async def agr_connections(
        self, agr_domain: str, period: date, *, as_of: datetime | None = None
    ) -> list[AgrAllocation]:
        async def op(conn: Any) -> list[AgrAllocation]:
            seq = await self._as_of(conn, as_of)
            s = None if seq is None else "$3"
            extra: list[object] = [] if seq is None else [seq]
            names = [
                row[0]
                for row in await conn.fetch(
                    "SELECT DISTINCT a.entity_address "  # noqa: S608 - constant fragments
                    "FROM cro_agr_connection AS a "
                    f"WHERE a.agr_domain = $1 AND {_visible('a', s)} AND {_on('a', '$2')} "
                    "ORDER BY a.entity_address",
                    agr_domain,
                    period,
                    *extra,
                )
            ]
            if not names:
                return []
            held: dict[str, AgrAllocation] = {}
            for row in await conn.fetch(
                "SELECT c.entity_address, p.entity_address, p.dso_domain, "  # noqa: S608
                "p.mutex_offers_supported, p.day_ahead_redispatch_by, p.intraday_redispatch_by "
                "FROM unnest($1::text[]) AS n (entity_address) "
                "JOIN cro_connection AS c ON c.entity_address = n.entity_address "
                "JOIN cro_congestion_point AS p ON p.id = c.point_version "
                f"WHERE {_visible('p', s)} AND {_on('p', '$2')} AND {_on('c', '$2')} "
                "ORDER BY c.entity_address, p.entity_address",
                names,
                period,
                *extra,
            ):
                held.setdefault(
                    row[0],
                    AgrAllocation(
                        row[0], row[1], row[2], row[3], RedispatchBy(row[4]), _redispatch(row[5])
                    ),
                )
            return [held.get(name) or AgrAllocation(name) for name in names]

        return await self._run(op)

    async def congestion_points(
        self, *, dso_domain: str | None = None, as_of: datetime | None = None
    ) -> list[PointSummary]:
        async def op(conn: Any) -> list[PointSummary]:
            seq = await self._as_of(conn, as_of)
            s = None if seq is None else "$2"
            rows = await conn.fetch(
                "SELECT p.entity_address, p.dso_domain, p.start_period, "  # noqa: S608
                "p.end_period, p.mutex_offers_supported, p.day_ahead_redispatch_by, "
                "p.intraday_redispatch_by, u.message_id, u.recorded_at, p.connections "
                "FROM cro_congestion_point AS p JOIN cro_update AS u ON u.seq = p.valid_from "
                f"WHERE {_visible('p', s)} "
                "AND ($1::text IS NULL OR p.dso_domain = $1::text) "
                "ORDER BY p.dso_domain, p.entity_address",
                dso_domain,
                *([] if seq is None else [seq]),
            )
            return [
                PointSummary(
                    entity_address=row[0],
                    dso_domain=row[1],
                    start_period=row[2],
                    end_period=row[3],
                    mutex_offers_supported=row[4],
                    day_ahead_redispatch_by=RedispatchBy(row[5]),
                    intraday_redispatch_by=_redispatch(row[6]),
                    message_id=row[7],
                    recorded_at=row[8],
                    connections=row[9],
                )
                for row in rows
            ]

        return await self._run(op)

    async def updates(self, *, sender_domain: str | None = None) -> list[UpdateSummary]:
        async def op(conn: Any) -> list[UpdateSummary]:
            rows = await conn.fetch(
                "SELECT seq, kind, sender_domain, message_id, time_stamp, recorded_at "
                "FROM cro_update WHERE ($1::text IS NULL OR sender_domain = $1::text) "
                "ORDER BY seq",
                sender_domain,
            )
            return [
                UpdateSummary(row[0], UpdateKind(row[1]), row[2], row[3], row[4], row[5])
                for row in rows
            ]

        return await self._run(op)
