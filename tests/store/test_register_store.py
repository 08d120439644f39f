"""The Common Reference register port against both implementations: SqliteRegister on a real
SQLite file and PostgresRegister on the real PostgreSQL, one fresh schema per test.

The PostgreSQL half uses UFTP_TEST_POSTGRES_DSN (default postgresql://127.0.0.1:5432/test)
and is skipped without a server, unless the variable or CI is set (then it fails:
tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from adapter.store import register_for
from adapter.store.register import (
    AgrAllocation,
    AgrUpdateState,
    Applied,
    DsoConnection,
    DsoUpdateState,
    Membership,
    PointDefinition,
    PortfolioRegister,
    StoredRows,
    UpdateKind,
    UpdateMeta,
    iso_rows,
    rows_digest,
    versioned_diff,
)
from adapter.store.register_sqlite import SCHEMA_VERSION, SqliteRegister
from adapter.store.sqlite import SqliteStore
from adapter.uftp.errors import Rejection
from adapter.uftp.messages import DSOPortfolioUpdateConnection as C
from adapter.uftp.messages import RedispatchBy
from tests.postgres import PG_DSN, connect, fresh_schema, import_asyncpg

DSO, DSO2 = "dso.example.com", "dso2.example.com"
AGR, AGR2 = "agr.example.com", "agr2.example.com"
CP1, CP2, CP3 = (f"ea1.2024-01.nl.example:cp{n}" for n in (1, 2, 3))
E1, E2, E3, E4 = (f"ean.{n:018d}" for n in (1, 2, 3, 4))
JAN, MAR, JUN, DEC = date(2024, 1, 1), date(2024, 3, 1), date(2024, 6, 1), date(2024, 12, 31)
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def register(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PortfolioRegister]:
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "cro.sqlite3")
        await store.open()
        try:
            yield register_for(store)
        finally:
            await store.close()
        return
    async with fresh_schema("test_register") as schema:
        from adapter.store.postgres import PostgresStore

        pg = PostgresStore(PG_DSN, schema=schema.name)
        await pg.open()
        try:
            yield register_for(pg)
        finally:
            await pg.close()


def meta(message_id: str, *, sender: str = DSO, at: int = 0) -> UpdateMeta:
    """An update stamped `at` minutes after T0 (TimeStamp and application time alike)."""
    when = T0 + timedelta(minutes=at)
    return UpdateMeta(sender, message_id, when, when)


def cp(
    address: str,
    *connections: C,
    end: date | None = None,
    mutex: bool = True,
    intraday: RedispatchBy | None = None,
) -> PointDefinition:
    return PointDefinition(
        entity_address=address,
        start_period=JAN,
        end_period=end,
        mutex_offers_supported=mutex,
        day_ahead_redispatch_by=RedispatchBy.DSO,
        intraday_redispatch_by=intraday,
        connections=connections,
    )


class Recorder:
    """A `check` that remembers the state it was shown and accepts."""

    def __init__(self) -> None:
        self.states: list[object] = []

    def __call__(self, state: object) -> None:
        self.states.append(state)


def accept(state: object) -> None:
    return None


async def names(register: PortfolioRegister, point: str, period: date, **kw: object) -> list:
    return [c.entity_address for c in await register.dso_connections(point, period, **kw)]  # type: ignore[arg-type]


# --- DSO updates ---------------------------------------------------------------------------


async def test_tables_are_created_on_first_use(register: PortfolioRegister) -> None:
    assert await register.congestion_points() == []
    assert await register.owner(CP1) is None
    assert await register.updates() == []


async def test_update_is_stored_and_read_back(register: PortfolioRegister) -> None:
    points = [
        cp(CP1, C(E1, JAN), C(E2, MAR), intraday=RedispatchBy.AGR),
        cp(CP2, C(E3, JAN, JUN), end=JUN, mutex=False),
    ]
    assert await register.apply_dso_update(meta("m1"), points, accept) is Applied.APPLIED

    assert await register.owner(CP1) == DSO
    assert await names(register, CP1, JAN) == [E1]  # E2 joins in March
    assert await names(register, CP1, JUN) == [E1, E2]
    assert await names(register, CP2, DEC) == []  # the point ended in June
    [s1, s2] = await register.congestion_points()
    assert (s1.entity_address, s1.dso_domain, s1.connections, s1.message_id) == (CP1, DSO, 2, "m1")
    assert s1.intraday_redispatch_by is RedispatchBy.AGR and s1.mutex_offers_supported
    assert (s2.start_period, s2.end_period, s2.mutex_offers_supported) == (JAN, JUN, False)
    assert s1.recorded_at == T0
    [update] = await register.updates()
    assert (update.kind, update.sender_domain, update.message_id) == (UpdateKind.DSO, DSO, "m1")
    assert update.time_stamp == T0


async def test_same_message_twice_is_applied_once(register: PortfolioRegister) -> None:
    await register.apply_dso_update(meta("m1"), [cp(CP1, C(E1, JAN))], accept)
    check = Recorder()
    again = await register.apply_dso_update(meta("m1"), [cp(CP1, C(E2, JAN))], check)
    assert again is Applied.ALREADY_APPLIED
    assert check.states == []  # not even judged again
    assert await names(register, CP1, JUN) == [E1]
    assert len(await register.updates()) == 1


async def test_rejected_update_leaves_no_trace(register: PortfolioRegister) -> None:
    await register.apply_dso_update(meta("m1"), [cp(CP1, C(E1, JAN))], accept)

    def refuse(state: object) -> None:
        raise Rejection("no")

    with pytest.raises(Rejection):
        await register.apply_dso_update(
            meta("m2", at=1), [cp(CP1, C(E2, JAN)), cp(CP2, C(E3, JAN))], refuse
        )
    assert await names(register, CP1, JUN) == [E1]
    assert await register.owner(CP2) is None
    assert [u.message_id for u in await register.updates()] == ["m1"]
    # ...and the same MessageID may be applied later, once it passes.
    assert await register.apply_dso_update(meta("m2", at=1), [cp(CP2, C(E3, JAN))], accept) is (
        Applied.APPLIED
    )


async def test_check_sees_owners_last_time_stamp_and_memberships_elsewhere(
    register: PortfolioRegister,
) -> None:
    await register.apply_dso_update(meta("m1"), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept)
    await register.apply_dso_update(
        meta("x1", sender=DSO2, at=5), [cp(CP3, C(E4, JUN, DEC), end=DEC)], accept
    )
    check = Recorder()
    await register.apply_dso_update(
        meta("m2", at=10),
        [cp(CP1, C(E1, JAN)), cp(CP2, C(E2, MAR), C(E4, MAR), C(E3, MAR)), cp(CP3, C(E3, JAN))],
        check,
    )
    [state] = check.states
    assert isinstance(state, DsoUpdateState)
    assert dict(state.owners) == {CP1: DSO, CP3: DSO2}
    assert state.last_time_stamp == T0
    # E1 and E2 are in CP1, which this update replaces: not "elsewhere". E4 is in CP3,
    # which the message names but cannot replace (it is DSO2's): elsewhere.
    assert list(state.memberships) == [Membership(E4, CP3, JUN, DEC)]


async def test_memberships_exclude_the_points_the_message_replaces(
    register: PortfolioRegister,
) -> None:
    await register.apply_dso_update(
        meta("m1"), [cp(CP1, C(E1, JAN), C(E2, JAN)), cp(CP2, C(E3, JAN))], accept
    )
    check = Recorder()
    await register.apply_dso_update(meta("m2", at=1), [cp(CP2, C(E3, JAN), C(E2, JUN))], check)
    [state] = check.states
    assert isinstance(state, DsoUpdateState)
    assert list(state.memberships) == [Membership(E2, CP1, JAN, None)]


async def test_update_replaces_named_points_and_keeps_the_others(
    register: PortfolioRegister,
) -> None:
    await register.apply_dso_update(
        meta("m1"), [cp(CP1, C(E1, JAN), C(E2, JAN)), cp(CP2, C(E3, JAN))], accept
    )
    await register.apply_dso_update(
        meta("m2", at=1), [cp(CP1, C(E2, JAN), C(E4, JUN), mutex=False)], accept
    )
    assert await names(register, CP1, DEC) == [E2, E4]
    assert await names(register, CP2, DEC) == [E3]
    summaries = {s.entity_address: s for s in await register.congestion_points()}
    assert summaries[CP1].message_id == "m2" and not summaries[CP1].mutex_offers_supported
    assert summaries[CP2].message_id == "m1"


async def test_unchanged_point_keeps_its_version_and_definition_change_copies_rows(
    register: PortfolioRegister,
) -> None:
    await register.apply_dso_update(meta("m1"), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept)
    await register.apply_dso_update(meta("m2", at=1), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept)
    [summary] = await register.congestion_points()
    assert summary.message_id == "m1"  # resent unchanged: no new version
    await register.apply_dso_update(
        meta("m3", at=2), [cp(CP1, C(E1, JAN), C(E2, JAN), end=DEC)], accept
    )
    [summary] = await register.congestion_points()
    assert (summary.message_id, summary.end_period, summary.connections) == ("m3", DEC, 2)
    assert await names(register, CP1, JUN) == [E1, E2]
    assert [u.message_id for u in await register.updates()] == ["m1", "m2", "m3"]


async def test_history_as_of_an_instant(register: PortfolioRegister) -> None:
    await register.apply_dso_update(meta("m1"), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept)
    await register.apply_dso_update(meta("m2", at=60), [cp(CP1, C(E2, JAN), C(E3, JAN))], accept)
    between = T0 + timedelta(minutes=30)
    assert await names(register, CP1, JUN, as_of=between) == [E1, E2]
    assert await names(register, CP1, JUN) == [E2, E3]
    assert await names(register, CP1, JUN, as_of=T0 + timedelta(hours=2)) == [E2, E3]
    assert await names(register, CP1, JUN, as_of=T0 - timedelta(seconds=1)) == []
    [before] = await register.congestion_points(as_of=between)
    assert before.message_id == "m1"
    assert await register.congestion_points(as_of=T0 - timedelta(days=1)) == []
    assert [s.message_id for s in await register.congestion_points(dso_domain=DSO)] == ["m2"]
    assert await register.congestion_points(dso_domain=DSO2) == []


async def test_application_times_never_go_back(register: PortfolioRegister) -> None:
    await register.apply_dso_update(meta("m1", at=10), [cp(CP1, C(E1, JAN))], accept)
    late = UpdateMeta(DSO, "m2", T0 + timedelta(minutes=20), T0)  # clock went back
    await register.apply_dso_update(late, [cp(CP2, C(E2, JAN))], accept)
    first, second = await register.updates()
    assert second.recorded_at == first.recorded_at == T0 + timedelta(minutes=10)
    assert second.time_stamp == T0 + timedelta(minutes=20)


async def test_updates_are_serialised(register: PortfolioRegister) -> None:
    """Two DSOs claim the same connection at once: the second sees the first's claim."""
    seen: list[Sequence[Membership]] = []

    def refuse_conflicts(state: DsoUpdateState) -> None:
        seen.append(state.memberships)
        if state.memberships:
            raise Rejection("Connection conflict")

    results = await asyncio.gather(
        register.apply_dso_update(meta("a"), [cp(CP1, C(E1, JAN))], refuse_conflicts),
        register.apply_dso_update(meta("b", sender=DSO2), [cp(CP2, C(E1, JAN))], refuse_conflicts),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Applied", "Rejection"]
    assert [len(m) for m in seen] == [0, 1]


CP_A, CP_B = "ea1.2028-01.nl.example:cp-a", "ea1.2028-01.nl.example:cp-b"
MOVING = "ean.871685901000112"
JAN28, MAR28, JUN30_28, JUL28, AUG28 = (
    date(2028, 1, 1),
    date(2028, 3, 1),
    date(2028, 6, 30),
    date(2028, 7, 1),
    date(2028, 8, 1),
)


def moving_points() -> list[PointDefinition]:
    """A connection in cp-a for the first half of 2028 and in cp-b after; E1 leaves cp-b
    for July and returns in August (listed twice in one point)."""
    cp_a = dataclasses.replace(
        cp(CP_A, C(MOVING, JAN28, JUN30_28), end=JUN30_28), start_period=JAN28
    )
    cp_b = dataclasses.replace(
        cp(CP_B, C(MOVING, JUL28), C(E1, JAN28, JUN30_28), C(E1, AUG28)), start_period=JAN28
    )
    return [cp_a, cp_b]


async def test_a_connection_moving_in_one_update_is_stored_with_each_period(
    register: PortfolioRegister,
) -> None:
    check = Recorder()
    assert await register.apply_dso_update(meta("m1"), moving_points(), check) is Applied.APPLIED
    [state] = check.states
    assert isinstance(state, DsoUpdateState) and list(state.memberships) == []
    assert await names(register, CP_A, MAR28) == [MOVING]
    assert await names(register, CP_B, MAR28) == [E1]
    assert await names(register, CP_A, AUG28) == []
    assert await names(register, CP_B, JUL28) == [MOVING]
    assert await names(register, CP_B, AUG28) == [E1, MOVING]
    summaries = {s.entity_address: s.connections for s in await register.congestion_points()}
    assert summaries == {CP_A: 1, CP_B: 3}
    await register.apply_agr_update(meta("a1", sender=AGR), [(MOVING, JAN28, None)], accept)
    [in_march] = await register.agr_connections(AGR, MAR28)
    [in_august] = await register.agr_connections(AGR, AUG28)
    assert (in_march.congestion_point, in_august.congestion_point) == (CP_A, CP_B)
    # Resent unchanged: recognised, nothing rewritten.
    await register.apply_dso_update(meta("m2", at=1), moving_points(), accept)
    assert {s.message_id for s in await register.congestion_points()} == {"m1"}


async def test_the_same_move_in_two_updates_sees_the_first_membership(
    register: PortfolioRegister,
) -> None:
    cp_a, cp_b = moving_points()
    await register.apply_dso_update(meta("m1"), [cp_a], accept)
    check = Recorder()
    await register.apply_dso_update(meta("m2", at=1), [cp_b], check)
    [state] = check.states
    assert isinstance(state, DsoUpdateState)
    assert list(state.memberships) == [Membership(MOVING, CP_A, JAN28, JUN30_28)]
    assert await names(register, CP_B, JUL28) == [MOVING]


# --- AGR updates ---------------------------------------------------------------------------


async def test_agr_registration_and_the_dso_view(register: PortfolioRegister) -> None:
    await register.apply_dso_update(
        meta("d1"),
        [cp(CP1, C(E1, JAN), C(E2, JAN), intraday=RedispatchBy.AGR), cp(CP2, C(E3, JUN))],
        accept,
    )
    check = Recorder()
    applied = await register.apply_agr_update(
        meta("a1", sender=AGR), [(E1, JAN, None), (E3, JAN, JUN), (E4, JAN, None)], check
    )
    assert applied is Applied.APPLIED
    [state] = check.states
    assert state == AgrUpdateState(last_time_stamp=None, registrations=[])

    assert await register.dso_connections(CP1, JUN) == [
        DsoConnection(E1, AGR),
        DsoConnection(E2, None),
    ]
    assert await register.agr_connections(AGR, JUN) == [
        AgrAllocation(E1, CP1, DSO, True, RedispatchBy.DSO, RedispatchBy.AGR),
        AgrAllocation(E3, CP2, DSO, True, RedispatchBy.DSO, None),
        AgrAllocation(E4),
    ]
    # E3 joins CP2 in June only; in March it is registered but in no congestion point.
    assert await register.agr_connections(AGR, MAR) == [
        AgrAllocation(E1, CP1, DSO, True, RedispatchBy.DSO, RedispatchBy.AGR),
        AgrAllocation(E3),
        AgrAllocation(E4),
    ]
    assert await register.agr_connections(AGR, DEC) == [
        AgrAllocation(E1, CP1, DSO, True, RedispatchBy.DSO, RedispatchBy.AGR),
        AgrAllocation(E4),
    ]
    assert await register.agr_connections(AGR2, JUN) == []


async def test_agr_update_replaces_only_the_connections_it_names(
    register: PortfolioRegister,
) -> None:
    await register.apply_agr_update(
        meta("a1", sender=AGR), [(E1, JAN, None), (E2, JAN, None)], accept
    )
    await register.apply_agr_update(
        meta("a2", sender=AGR, at=1), [(E1, JAN, MAR), (E1, JUN, None)], accept
    )
    assert [a.entity_address for a in await register.agr_connections(AGR, date(2024, 4, 1))] == [E2]
    assert [a.entity_address for a in await register.agr_connections(AGR, DEC)] == [E1, E2]
    # As of before the second update, E1 was registered throughout.
    before = T0 + timedelta(seconds=30)
    assert [
        a.entity_address
        for a in await register.agr_connections(AGR, date(2024, 4, 1), as_of=before)
    ] == [
        E1,
        E2,
    ]


async def test_agr_check_sees_other_agrs_registrations(register: PortfolioRegister) -> None:
    await register.apply_agr_update(
        meta("a1", sender=AGR), [(E1, JAN, JUN), (E2, JAN, None)], accept
    )
    check = Recorder()
    await register.apply_agr_update(
        meta("b1", sender=AGR2, at=5), [(E1, JUN, None), (E3, JAN, None)], check
    )
    [state] = check.states
    assert isinstance(state, AgrUpdateState)
    assert state.last_time_stamp is None
    assert list(state.registrations) == [Membership(E1, AGR, JAN, JUN)]
    check = Recorder()
    await register.apply_agr_update(meta("a2", sender=AGR, at=9), [(E3, DEC, None)], check)
    [state] = check.states
    assert isinstance(state, AgrUpdateState)
    assert state.last_time_stamp == T0
    assert list(state.registrations) == [Membership(E3, AGR2, JAN, None)]


async def test_agr_same_message_twice_is_applied_once(register: PortfolioRegister) -> None:
    await register.apply_agr_update(meta("a1", sender=AGR), [(E1, JAN, None)], accept)
    again = await register.apply_agr_update(meta("a1", sender=AGR), [(E2, JAN, None)], accept)
    assert again is Applied.ALREADY_APPLIED
    assert [a.entity_address for a in await register.agr_connections(AGR, JUN)] == [E1]


# --- pure helpers and wiring ---------------------------------------------------------------


def test_versioned_diff_keeps_identical_rows() -> None:
    inserts, gone = versioned_diff({("a", 1): 10, ("b", 1): 11}, [("a", 1), ("c", 2)])
    assert inserts == [("c", 2)] and gone == [11]


def test_rows_digest_tells_connection_lists_apart() -> None:
    rows = iso_rows([C(E1, JAN), C(E2, JAN, DEC)])
    assert rows == [(E1, "2024-01-01", None), (E2, "2024-01-01", "2024-12-31")]
    assert rows_digest(rows) == rows_digest(iso_rows([C(E1, JAN), C(E2, JAN, DEC)]))
    assert rows_digest(rows) != rows_digest(iso_rows([C(E1, JAN), C(E2, JAN)]))
    assert rows_digest(rows) != rows_digest(list(reversed(rows)))


def test_register_for_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(register_for(SqliteStore(tmp_path / "x.sqlite3")), SqliteRegister)
    with pytest.raises(TypeError):
        register_for(object())


async def test_sqlite_register_of_schema_version_1_is_migrated(tmp_path: Path) -> None:
    """A register written before the address look-up became a table of its own (version 1:
    an index on cro_connection) opens with its connections found by address again."""
    path = tmp_path / "cro.sqlite3"
    store = SqliteStore(path)
    await store.open()
    register = register_for(store)
    await register.apply_dso_update(meta("d1"), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept)
    await register.apply_agr_update(meta("a1", sender=AGR), [(E1, JAN, None)], accept)

    def downgrade(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TABLE cro_connection_by_address")
        conn.execute("CREATE INDEX cro_connection_address ON cro_connection (entity_address)")
        conn.execute("UPDATE schema_version SET version = 1 WHERE component = 'cro_register'")

    await store.run(downgrade)
    await store.close()

    store = SqliteStore(path)
    await store.open()
    try:
        register = register_for(store)
        assert await register.agr_connections(AGR, JUN) == [
            AgrAllocation(E1, CP1, DSO, True, RedispatchBy.DSO, None)
        ]
        check = Recorder()
        await register.apply_dso_update(meta("x1", sender=DSO2, at=5), [cp(CP3, C(E2, MAR))], check)
        [state] = check.states
        assert isinstance(state, DsoUpdateState)
        assert list(state.memberships) == [Membership(E2, CP1, JAN, None)]

        def layout(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            (version,) = conn.execute(
                "SELECT version FROM schema_version WHERE component = 'cro_register'"
            ).fetchone()
            indexes = conn.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = 'cro_connection'"
            ).fetchall()
            return version, [name for (name,) in indexes]

        assert await store.read(layout) == (SCHEMA_VERSION, [])
    finally:
        await store.close()


@pytest.mark.parametrize(
    "connections",
    [
        [C(E1, JAN), C(E2, JAN), C(E3, JAN)],
        [C(E1, JAN, DEC), C(E2, JAN, DEC)],
        [C(E1, JAN), C(E2, MAR), C(E3, JAN, DEC)],
        [C(E1, JAN)],
        [],
    ],
    ids=["shared-open", "shared-ended", "mixed", "one", "none"],
)
def test_stored_rows_digest_is_the_rows_digest(connections: list[C]) -> None:
    """The shortcut for points whose connections share a period must not change the digest
    by which a resent, unchanged point is recognised."""
    stored = StoredRows.of(connections)
    rows = iso_rows(connections)
    assert stored.digest == rows_digest(rows)
    assert stored.names == [row[0] for row in rows]
    if stored.period is None:
        assert stored.rows == rows
    else:
        assert {(start, end) for _, start, end in rows} == {stored.period}


async def test_points_with_mixed_periods_are_stored_row_by_row(
    register: PortfolioRegister,
) -> None:
    await register.apply_dso_update(
        meta("m1"), [cp(CP1, C(E1, JAN), C(E2, MAR), C(E3, JAN, DEC))], accept
    )
    assert await names(register, CP1, JAN) == [E1, E3]
    assert await names(register, CP1, JUN) == [E1, E2, E3]
    assert await names(register, CP1, date(2025, 1, 1)) == [E1, E2]


#: cro_connection's key as register versions 1 and 2 of PostgreSQL wrote it, beside an index
#: on entity_address.
OLD_CONNECTION_KEYS = {
    1: "(point_version, entity_address)",
    2: "(point_version, entity_address, start_period)",
}


@pytest.mark.parametrize("old_version", sorted(OLD_CONNECTION_KEYS))
async def test_postgres_register_of_an_older_schema_version_is_migrated(old_version: int) -> None:
    """A register written when a point version held each connection once (version 1: key
    (point_version, entity_address)), or with a key led by the point version beside an
    address index (version 2), opens keyed by address, version and period, with an index on
    point_version in place of the address index; its connections are found as before, and it
    takes a connection that leaves a point and returns to it."""
    import_asyncpg()
    from adapter.store.postgres import PostgresStore
    from adapter.store.register_postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION

    admin = await connect()
    schema = f"test_register_{uuid.uuid4().hex[:12]}"
    try:
        store = PostgresStore(PG_DSN, schema=schema)
        await store.open()
        try:
            await register_for(store).apply_dso_update(
                meta("d1"), [cp(CP1, C(E1, JAN), C(E2, JAN))], accept
            )
        finally:
            await store.close()
        await admin.execute(
            f"ALTER TABLE {schema}.cro_connection DROP CONSTRAINT cro_connection_pkey, "
            f"ADD PRIMARY KEY {OLD_CONNECTION_KEYS[old_version]}; "
            f"DROP INDEX {schema}.cro_connection_version; "
            f"CREATE INDEX cro_connection_address ON {schema}.cro_connection (entity_address); "
            f"UPDATE {schema}.schema_version SET version = {old_version} "
            "WHERE component = 'cro_register'"
        )
        store = PostgresStore(PG_DSN, schema=schema)
        await store.open()
        try:
            register = register_for(store)
            assert await names(register, CP1, JUN) == [E1, E2]
            _, cp_b = moving_points()
            await register.apply_dso_update(meta("d2", at=1), [cp_b], accept)
            assert await names(register, CP_B, AUG28) == [E1, MOVING]
            assert await names(register, CP1, JUN) == [E1, E2]
        finally:
            await store.close()
        version = await admin.fetchval(
            f"SELECT version FROM {schema}.schema_version WHERE component = 'cro_register'"
        )
        key = await admin.fetchval(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint AS c "
            "JOIN pg_namespace AS n ON n.oid = c.connamespace "
            "WHERE n.nspname = $1 AND c.conname = 'cro_connection_pkey'",
            schema,
        )
        indexes = await admin.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 "
            "AND tablename = 'cro_connection' ORDER BY indexname",
            schema,
        )
        assert (version, key, [row[0] for row in indexes]) == (
            PG_SCHEMA_VERSION,
            "PRIMARY KEY (entity_address, point_version, start_period)",
            ["cro_connection_pkey", "cro_connection_version"],
        )
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


# --- PostgreSQL at scale: plans that cannot degrade ------------------------------------------

#: Connections of other DSOs (and registrations of other aggregators) loaded for the plan test:
#: enough that a scan of the table costs more than the update's own work.
LARGE_REGISTER = int(os.environ.get("UFTP_TEST_LARGE_REGISTER", "200000"))


def plan_nodes(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    nodes = [plan]
    for child in plan.get("Plans", ()):
        nodes.extend(plan_nodes(child))
    return nodes


def scans_of(plan: dict, table: str) -> list[tuple[str, str | None]]:
    """(node type, index) of each scan of `table` in the plan; a bitmap heap scan's index is
    that of the bitmap index scan under it."""
    scans = []
    for node in plan_nodes(plan):
        if node.get("Relation Name") != table:
            continue
        index = node.get("Index Name")
        if node["Node Type"] == "Bitmap Heap Scan":
            [index] = {n["Index Name"] for n in plan_nodes(node) if "Index Name" in n}
        scans.append((node["Node Type"], index))
    return scans


async def test_postgres_conflict_checks_probe_the_address_index_without_statistics() -> None:
    """An update costs what it touches, not what the register holds, whatever the planner's
    statistics: with a large register freshly loaded (no ANALYZE, autovacuum off), the
    conflict checks look each connection up in the address index; no plan scans the whole
    connections table (or joins every point with every probe). The update that follows
    finds its conflicts, and being a bulk load itself, leaves the tables analyzed."""
    import_asyncpg()
    from adapter.store.postgres import PostgresStore
    from adapter.store.register_postgres import (
        AGR_CONFLICT_QUERY,
        DSO_CONFLICT_QUERY,
        names_parameter,
    )

    admin = await connect()
    schema = f"test_register_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(PG_DSN, schema=schema)
    await store.open()
    try:
        register = register_for(store)
        assert await register.congestion_points() == []  # the tables, empty
        tables = ("cro_update", "cro_congestion_point", "cro_connection", "cro_agr_connection")
        for table in tables:
            await admin.execute(f"ALTER TABLE {schema}.{table} SET (autovacuum_enabled = false)")
        # Another DSO's points of 1,000 connections, and another aggregator's registrations.
        others = [f"ean.{n:018d}" for n in range(10**6, 10**6 + LARGE_REGISTER)]
        seq = await admin.fetchval(
            f"INSERT INTO {schema}.cro_update (kind, sender_domain, message_id, time_stamp, "
            "recorded_at) VALUES ('dso', $1, 'load', $2, $2) RETURNING seq",
            DSO2,
            T0,
        )
        versions = [
            row[0]
            for row in await admin.fetch(
                f"INSERT INTO {schema}.cro_congestion_point (entity_address, dso_domain, "
                "start_period, mutex_offers_supported, day_ahead_redispatch_by, connections, "
                "digest, valid_from) SELECT 'ea1.2024-01.nl.other:p' || g, $1, $2, true, "
                "'DSO', 1000, ''::bytea, $3 FROM generate_series(1, $4) AS g RETURNING id",
                DSO2,
                JAN,
                seq,
                -(-LARGE_REGISTER // 1000),
            )
        ]
        await admin.copy_records_to_table(
            "cro_connection",
            records=[(versions[i // 1000], name, JAN, None) for i, name in enumerate(others)],
            schema_name=schema,
        )
        await admin.copy_records_to_table(
            "cro_agr_connection",
            columns=("agr_domain", "entity_address", "start_period", "valid_from"),
            records=[(AGR2, name, JAN, seq) for name in others],
            schema_name=schema,
        )
        no_statistics = await admin.fetchval(
            "SELECT count(*) FROM pg_stats WHERE schemaname = $1", schema
        )
        assert no_statistics == 0

        # An update of 20 points x 1,000 connections, of which 50 are the other DSO's.
        mine = [f"ean.{n:018d}" for n in range(1, 20_001)]
        mine[::400] = others[:: LARGE_REGISTER // 50][:50]
        probe = sorted(mine)
        points = [f"ea1.2024-01.nl.example:p{n}" for n in range(20)]
        plans = {}
        async with admin.transaction():
            await admin.execute(f"SET LOCAL search_path = {schema}")
            for name, query, args in (
                ("dso", DSO_CONFLICT_QUERY, (DSO, points, names_parameter(probe))),
                ("agr", AGR_CONFLICT_QUERY, (AGR, names_parameter(probe))),
            ):
                [(explained,)] = await admin.fetch(f"EXPLAIN (FORMAT JSON) {query}", *args)
                plans[name] = json.loads(explained)[0]["Plan"]
        for name, table, index in (
            ("dso", "cro_connection", "cro_connection_pkey"),
            ("agr", "cro_agr_connection", "cro_agr_connection_address"),
        ):
            scans = scans_of(plans[name], table)
            assert scans, plans[name]
            assert all(found == index for _, found in scans), scans
            assert ("Seq Scan", None) not in scans

        check = Recorder()
        definitions = [
            cp(address, *(C(name, JAN) for name in mine[n * 1000 : (n + 1) * 1000]))
            for n, address in enumerate(points)
        ]
        await register.apply_dso_update(meta("m1"), definitions, check)
        [state] = check.states
        assert isinstance(state, DsoUpdateState)
        assert len(state.memberships) == 50
        assert {m.holder for m in state.memberships} <= {
            f"ea1.2024-01.nl.other:p{n}" for n in range(1, len(versions) + 1)
        }
        check = Recorder()
        await register.apply_agr_update(
            meta("a1", sender=AGR), [(n, JAN, None) for n in mine], check
        )
        [agr_state] = check.states
        assert isinstance(agr_state, AgrUpdateState)
        assert {(r.entity_address, r.holder) for r in agr_state.registrations} == {
            (name, AGR2) for name in set(mine).intersection(others)
        }
        # 20,000 rows into tables never counted: bulk loads, analyzed after them.
        await register.analyzed()  # type: ignore[attr-defined]
        analyzed = await admin.fetch(
            "SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = $1", schema
        )
        assert {"cro_connection", "cro_agr_connection"} <= {row[0] for row in analyzed}
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


async def test_sqlite_conflict_check_looks_each_connection_up_by_address(tmp_path: Path) -> None:
    """SQLite's plan for the conflict check: the message's connections outermost, each
    looked up in cro_connection_by_address, its row and point by primary key; never a scan
    of the register's tables. So without statistics (the register runs no ANALYZE) and with
    statistics true to a large register."""
    from adapter.store.register_sqlite import DSO_CONFLICT_QUERY as SQLITE_CONFLICT_QUERY

    store = SqliteStore(tmp_path / "cro.sqlite3")
    await store.open()
    try:
        register = register_for(store)
        others = [f"ean.{n:018d}" for n in range(10**6, 10**6 + 20_000)]
        await register.apply_dso_update(
            meta("load", sender=DSO2),
            [
                cp(f"ea1.2024-01.nl.other:p{n}", *(C(name, JAN) for name in others[n::20]))
                for n in range(20)
            ],
            accept,
        )
        probe = json.dumps(sorted([f"ean.{n:018d}" for n in range(1, 1001)] + others[:10]))
        points = json.dumps([CP1, CP2])

        def plan(conn: sqlite3.Connection) -> list[str]:
            return [
                row[3]
                for row in conn.execute(
                    f"EXPLAIN QUERY PLAN {SQLITE_CONFLICT_QUERY}", (probe, DSO, points)
                )
            ]

        def analyze(conn: sqlite3.Connection) -> None:
            conn.execute("ANALYZE")

        for statistics in ("none", "analyzed"):
            if statistics == "analyzed":
                await store.run(analyze)
            steps = [step for step in await store.read(plan) if "json_each" not in step]
            assert steps[0].startswith("SCAN j"), (statistics, steps)
            assert "SEARCH x USING PRIMARY KEY (entity_address=?)" in steps, (statistics, steps)
            assert "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)" in steps, (statistics, steps)
            assert "SEARCH p USING INTEGER PRIMARY KEY (rowid=?)" in steps, (statistics, steps)
            assert not [step for step in steps if step.startswith("SCAN ") and " j " not in step]
    finally:
        await store.close()


def test_postgres_names_parameter_refuses_names_that_would_not_come_back_whole() -> None:
    """The connections of a conflict check travel as one text, split by the server at
    U+0001 (no XML character): a name holding it, or an empty one, would come back as
    other names, so it is refused rather than probed wrongly."""
    import_asyncpg()
    from adapter.store.register_postgres import names_parameter

    assert names_parameter([E1, E2]) == f"{E1}\x01{E2}"
    assert names_parameter([]) == ""
    for wrong in ([E1, "ean.1\x012"], [E1, ""], [""]):
        with pytest.raises(ValueError, match="U\\+0001"):
            names_parameter(wrong)


async def test_postgres_bulk_load_is_analyzed_after_the_update_and_quietly_not_once_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bulk load is analyzed in a task of its own once it has committed (`analyzed` waits
    for it); a store closed before that task runs (the participant stopping) leaves the
    counting to autovacuum without a warning: nothing failed."""
    import_asyncpg()
    from adapter.store.postgres import PostgresStore
    from adapter.store.register_postgres import ANALYZE_ROWS, PostgresRegister

    admin = await connect()
    schema = f"test_register_{uuid.uuid4().hex[:12]}"
    points = [
        cp(f"{CP1}-{p}", *(C(f"ean.{p:06d}{n:012d}", JAN) for n in range(1000)))
        for p in range(-(-ANALYZE_ROWS // 1000))
    ]
    counted = (
        "SELECT count(DISTINCT tablename) FROM pg_stats WHERE schemaname = $1 "
        "AND tablename IN ('cro_connection', 'cro_congestion_point')"
    )
    try:
        for close_at_once in (False, True, True, True):
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            store = PostgresStore(PG_DSN, schema=schema)
            await store.open()
            register = register_for(store)
            assert isinstance(register, PostgresRegister)
            caplog.clear()
            try:
                await register.apply_dso_update(meta("m1"), points, accept)
                if close_at_once:
                    await store.close()
                await register.analyzed()
            finally:
                await store.close()
            gc.collect()  # a task's exception nobody retrieved is logged when it is collected
            if not close_at_once:
                assert await admin.fetchval(counted, schema) == 2
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
