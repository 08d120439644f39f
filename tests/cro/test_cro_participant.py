"""The CRO end to end: a real CRO participant with the register handlers, real DSO and AGR
participants, signed messages over loopback HTTP, the register in the CRO's SQLite file.

Each rule of the register once through the whole pipeline, plus the properties only the
pipeline shows: a rejected update changes nothing, a message handled again after a crash is
applied once, and the history answers "as of" an instant before and after an update.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from adapter.cli import main
from adapter.config import CroMode, CroSettings, PeriodViolation
from adapter.cro import cro_router
from adapter.participant import Participant
from adapter.store import register_for
from adapter.store.base import OutboundStatus
from adapter.store.register import PortfolioRegister
from adapter.store.sqlite import SqliteStore
from adapter.testing import Network, eventually
from adapter.uftp import envelope
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    PayloadRequest,
    PayloadResponse,
    RedispatchBy,
    Result,
    Role,
)

CRO = "cro.example.com"
DSO, DSO2 = "dso.example.com", "dso2.example.com"
AGR, AGR2 = "agr.example.com", "agr2.example.com"
CP1, CP2, CP3 = (f"ea1.2024-01.nl.example:cp{n}" for n in (1, 2, 3))
E1, E2, E3, E4 = (f"ean.{n:018d}" for n in (1, 2, 3, 4))
TZ = "Europe/Amsterdam"
JAN, MAR, JUN, DEC = date(2024, 1, 1), date(2024, 3, 1), date(2024, 6, 1), date(2024, 12, 31)

C = DSOPortfolioUpdateConnection
A = AGRPortfolioUpdateConnection
R = TypeVar("R", bound=PayloadResponse)


@dataclasses.dataclass
class Clock:
    """A participant clock that a test can turn back."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclasses.dataclass
class Market:
    cro: Participant
    register: PortfolioRegister
    dso: Participant
    dso2: Participant
    agr: Participant
    agr2: Participant
    dso_clock: Clock
    agr_clock: Clock


async def market(
    network: Network,
    settings: CroSettings | None = None,
    *,
    known_dsos: tuple[str, ...] = (),
    known_agrs: tuple[str, ...] = (),
) -> Market:
    cro = network.create(CRO, Role.CRO)
    register = register_for(cro.store)
    cro.router.include(
        cro_router(
            register, settings or CroSettings(), known_dsos=known_dsos, known_agrs=known_agrs
        )
    )
    dso_clock, agr_clock = Clock(), Clock()
    dso = network.create(DSO, Role.DSO, clock=dso_clock)
    dso2 = network.create(DSO2, Role.DSO)
    agr = network.create(AGR, Role.AGR, clock=agr_clock)
    agr2 = network.create(AGR2, Role.AGR)
    await network.start(cro, dso, dso2, agr, agr2)
    for peer in (dso, dso2, agr, agr2):
        network.introduce(cro, peer)
    return Market(cro, register, dso, dso2, agr, agr2, dso_clock, agr_clock)


def point(
    address: str,
    *connections: DSOPortfolioUpdateConnection,
    start: date = JAN,
    end: date | None = None,
    mutex: bool = True,
    intraday: RedispatchBy | None = None,
) -> DSOPortfolioUpdateCongestionPoint:
    return DSOPortfolioUpdateCongestionPoint(
        entity_address=address,
        start_period=start,
        end_period=end,
        mutex_offers_supported=mutex,
        day_ahead_redispatch_by=RedispatchBy.DSO,
        intraday_redispatch_by=intraday,
        connections=connections,
    )


def dpu(*points: DSOPortfolioUpdateCongestionPoint, time_zone: str = TZ) -> DSOPortfolioUpdate:
    return DSOPortfolioUpdate(time_zone=time_zone, congestion_points=points)


def apu(*connections: AGRPortfolioUpdateConnection, time_zone: str = TZ) -> AGRPortfolioUpdate:
    return AGRPortfolioUpdate(time_zone=time_zone, connections=connections)


async def ask(sender: Participant, message: PayloadRequest[R]) -> R:
    return await sender.request(message, to=CRO, role=Role.CRO, timeout=15)


async def accepted(sender: Participant, message: PayloadRequest[R]) -> R:
    response = await ask(sender, message)
    assert response.result is Result.ACCEPTED, response.rejection_reason
    return response


async def rejected(sender: Participant, message: PayloadRequest[PayloadResponse]) -> str:
    response = await ask(sender, message)
    assert response.result is Result.REJECTED
    assert response.rejection_reason
    return response.rejection_reason


async def query(sender: Participant, point: str, period: date) -> DSOPortfolioQueryResponse:
    response = await ask(
        sender, DSOPortfolioQuery(time_zone=TZ, period=period, entity_address=point)
    )
    assert isinstance(response, DSOPortfolioQueryResponse)
    return response


async def connections_of(sender: Participant, point: str, period: date) -> list[tuple]:
    response = await query(sender, point, period)
    assert response.result is Result.ACCEPTED, response.rejection_reason
    assert response.congestion_point is not None
    return [(c.entity_address, c.agr_domain) for c in response.congestion_point.connections]


# --- DSOPortfolioUpdate and DSOPortfolioQuery -------------------------------------------------


async def test_published_portfolio_is_answered_to_its_dso(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, MAR)), point(CP2, C(E3, JAN))))
    await accepted(m.agr, apu(A(E2, JAN)))

    assert await connections_of(m.dso, CP1, JUN) == [(E1, None), (E2, AGR)]
    assert await connections_of(m.dso, CP1, JAN) == [(E1, None)]  # E2 joins in March
    response = await query(m.dso, CP1, JUN)
    assert response.period == JUN and response.time_zone == TZ


async def test_query_for_another_dsos_or_unknown_point_is_invalid(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN))))
    for sender, address in ((m.dso2, CP1), (m.dso, CP3)):
        response = await query(sender, address, JUN)
        assert response.result is Result.REJECTED
        assert response.rejection_reason == "Invalid CongestionPoint"
        assert response.congestion_point is None


async def test_query_without_connections_on_the_period(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JUN))))
    response = await query(m.dso, CP1, MAR)
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "No connections available"


async def test_update_replaces_named_points_only(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN)), point(CP2, C(E3, JAN))))
    await accepted(m.dso, dpu(point(CP1, C(E2, JAN), C(E4, JAN))))
    assert await connections_of(m.dso, CP1, JUN) == [(E2, None), (E4, None)]
    assert await connections_of(m.dso, CP2, JUN) == [(E3, None)]


async def test_ending_a_point_ends_its_connections(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN))))
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN, MAR), C(E2, JAN, MAR), end=MAR)))
    assert await connections_of(m.dso, CP1, MAR) == [(E1, None), (E2, None)]
    response = await query(m.dso, CP1, JUN)
    assert response.rejection_reason == "No connections available"
    # The connection is free to join another point after the end.
    await accepted(m.dso, dpu(point(CP2, C(E1, JUN), start=JUN)))


async def test_period_rules_reject_by_default(network: Network) -> None:
    m = await market(network)
    reason = await rejected(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JUN), end=DEC)))
    assert reason == (
        f"Connection without EndPeriod in a CongestionPoint with one: {E1} at {CP1}, {E2} at {CP1}"
    )
    reason = await rejected(m.dso, dpu(point(CP1, C(E1, date(2023, 12, 1)), C(E2, JUN, MAR))))
    assert reason == (
        f"EndPeriod before StartPeriod: {E2} at {CP1}; "
        f"Connection period outside its CongestionPoint's period: {E1} at {CP1}"
    )


async def test_period_rules_clip_when_configured(network: Network, caplog: Any) -> None:
    m = await market(network, CroSettings(period_violation=PeriodViolation.CLIP))
    caplog.set_level("INFO", logger="adapter.cro.handlers")
    await accepted(
        m.dso, dpu(point(CP1, C(E1, date(2023, 12, 1), date(2025, 3, 1)), C(E2, JUN), end=DEC))
    )
    assert await connections_of(m.dso, CP1, JAN) == [(E1, None)]
    assert await connections_of(m.dso, CP1, DEC) == [(E1, None), (E2, None)]
    response = await query(m.dso, CP1, date(2025, 1, 1))
    assert response.rejection_reason == "No connections available"
    assert any("were clipped" in r.getMessage() for r in caplog.records)
    # Connection ids are personal data: only at debug.
    assert not any(E1 in r.getMessage() for r in caplog.records if r.levelname == "INFO")


async def test_duplicates_in_one_message_are_rejected(network: Network) -> None:
    m = await market(network)
    reason = await rejected(m.dso, dpu(point(CP1, C(E1, JAN)), point(CP1, C(E2, JAN))))
    assert reason == f"Duplicate CongestionPoint: {CP1}"
    reason = await rejected(m.dso, dpu(point(CP1, C(E1, JAN)), point(CP2, C(E1, JAN))))
    assert reason == f"Duplicate Connection: {E1}"


async def test_a_connection_moves_between_points_in_one_message(network: Network) -> None:
    """One message, or two, alike: each membership has its own Period, and only
    overlapping memberships conflict."""
    cp_a, cp_b = "ea1.2028-01.nl.example:cp-a", "ea1.2028-01.nl.example:cp-b"
    moving = "ean.871685901000112"
    jan, jun30, jul = date(2028, 1, 1), date(2028, 6, 30), date(2028, 7, 1)
    first = point(cp_a, C(moving, jan, jun30), start=jan, end=jun30)
    then = point(cp_b, C(moving, jul), start=jul)
    m = await market(network)
    await accepted(m.dso, dpu(first, then))
    assert await connections_of(m.dso, cp_a, jun30) == [(moving, None)]
    assert await connections_of(m.dso, cp_b, jul) == [(moving, None)]
    # The same move of another connection, as two messages.
    await accepted(m.dso2, dpu(point(CP1, C(E1, jan, jun30), start=jan, end=jun30)))
    await accepted(m.dso2, dpu(point(CP2, C(E1, jul), start=jul)))
    assert await connections_of(m.dso2, CP2, jul) == [(E1, None)]
    # Memberships that share a day still conflict, in one message as across two.
    overlapping = point(cp_b, C(moving, jun30), start=jun30)
    reason = await rejected(m.dso, dpu(first, overlapping))
    assert reason == f"Duplicate Connection: {moving}"
    reason = await rejected(m.dso2, dpu(point(CP3, C(E1, jun30), start=jun30)))
    assert reason == f"Connection conflict: {E1} at {CP3}"


async def test_point_of_another_dso_is_invalid(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN))))
    reason = await rejected(m.dso2, dpu(point(CP1, C(E2, JAN)), point(CP2, C(E3, JAN))))
    assert reason == f"Invalid CongestionPoint: {CP1}"
    assert await connections_of(m.dso, CP1, JUN) == [(E1, None)]


async def test_connection_in_another_point_conflicts(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN))))
    reason = await rejected(m.dso2, dpu(point(CP2, C(E2, JUN), C(E3, JUN), start=JUN)))
    assert reason == f"Connection conflict: {E2} at {CP2}"  # DSO2 does not learn of CP1
    reason = await rejected(m.dso, dpu(point(CP3, C(E1, JAN))))
    assert reason == f"Connection conflict: {E1} at {CP3}"
    # Moving it in one message is fine: CP1 is replaced by the same update.
    await accepted(m.dso, dpu(point(CP1, C(E2, JAN)), point(CP3, C(E1, JAN))))


async def test_older_update_than_the_last_is_subordinate(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN))))
    m.dso_clock.offset = timedelta(hours=-1)  # the DSO sends a stale revision
    reason = await rejected(m.dso, dpu(point(CP1, C(E2, JAN))))
    assert reason == "Subordinate sequence number"
    assert await connections_of(m.dso, CP1, JUN) == [(E1, None)]


async def test_closed_mode_refuses_unregistered_participants(network: Network) -> None:
    m = await market(
        network, CroSettings(mode=CroMode.CLOSED), known_dsos=(DSO,), known_agrs=(AGR,)
    )
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN))))
    assert await rejected(m.dso2, dpu(point(CP2, C(E2, JAN)))) == "Unauthorized"
    await accepted(m.agr, apu(A(E1, JAN)))
    assert await rejected(m.agr2, apu(A(E3, JAN))) == "Unauthorized"
    response = await ask(m.dso2, DSOPortfolioQuery(time_zone=TZ, period=JUN, entity_address=CP1))
    assert response.rejection_reason == "Unauthorized; Invalid CongestionPoint"


async def test_other_time_zone_is_rejected(network: Network) -> None:
    m = await market(network)
    reason = await rejected(m.dso, dpu(point(CP1, C(E1, JAN)), time_zone="Europe/London"))
    assert reason == "TimeZone rejected"
    reason = await rejected(m.agr, apu(A(E1, JAN), time_zone="Europe/London"))
    assert reason == "TimeZone rejected"


async def test_all_reasons_of_one_message_are_reported_together(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso2, dpu(point(CP2, C(E2, JAN))))
    reason = await rejected(
        m.dso,
        dpu(point(CP1, C(E1, JAN), C(E2, JAN)), point(CP2, C(E3, JAN)), time_zone="Europe/Paris"),
    )
    assert reason == (
        f"TimeZone rejected; Invalid CongestionPoint: {CP2}; Connection conflict: {E2} at {CP1}"
    )


async def test_rejected_update_changes_nothing(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN)), point(CP2, C(E2, JAN))))
    updates = await m.register.updates()
    # CP1 would be fine; CP2 breaks a period rule: nothing of the message is applied.
    await rejected(m.dso, dpu(point(CP1, C(E3, JAN)), point(CP2, C(E4, JUN, JUN))))
    assert await connections_of(m.dso, CP1, JUN) == [(E1, None)]
    assert await connections_of(m.dso, CP2, JUN) == [(E2, None)]
    assert await m.register.updates() == updates


async def test_update_handled_again_after_a_crash_is_applied_once(network: Network) -> None:
    m = await market(network)
    sent = await m.dso.send(dpu(point(CP1, C(E1, JAN))), to=CRO, role=Role.CRO)
    await eventually(lambda: _handled(m.cro, sent.message_id))
    [update] = await m.register.updates()
    port = m.cro.port
    await m.cro.stop()
    # A crash after the register committed but before the response was queued: the
    # message is still "received" when the CRO comes back, so its handler runs again.
    reset = SqliteStore(_store_path(m.cro))
    await reset.open()
    await reset.run(
        lambda conn: conn.execute(
            "UPDATE inbound SET status = 'received' WHERE message_id = ?", (sent.message_id,)
        )
    )
    await reset.close()

    revived = network.create(CRO, Role.CRO, port=port)
    revived_register = register_for(revived.store)
    revived.router.include(cro_router(revived_register, CroSettings()))
    await revived.start()
    network.introduce(revived, m.dso)
    await eventually(lambda: _handled(revived, sent.message_id))
    assert await revived_register.updates() == [update]
    assert await connections_of(m.dso, CP1, JUN) == [(E1, None)]
    # Both runs answered Accepted (the second found the MessageID applied).
    store = revived.store
    assert isinstance(store, SqliteStore)
    envelopes = await store.read(
        lambda conn: [
            bytes(row[0])
            for row in conn.execute(
                "SELECT e.envelope FROM outbound AS o JOIN outbound_envelope AS e "
                "ON e.id = o.id WHERE o.reference_message_id = ?",
                (sent.message_id,),
            )
        ]
    )
    assert len(envelopes) == 2
    for sealed in envelopes:
        inner = envelope.parse_envelope(sealed).sealed[envelope.SIGNATURE_BYTES :]
        assert b'Result="Accepted"' in inner


def _store_path(participant: Participant) -> Path:
    assert isinstance(participant.store, SqliteStore)
    return participant.store.path


async def _handled(participant: Participant, message_id: str) -> bool:
    record = await participant.store.get_inbound(DSO, message_id)
    return record is not None and record.status == "handled"


async def test_history_as_of_before_and_after_an_update(network: Network, tmp_path: Path) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN))))
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await accepted(m.dso, dpu(point(CP1, C(E2, JAN), C(E3, JAN), end=None, mutex=False)))

    async def names(as_of: datetime | None) -> list[str]:
        rows = await m.register.dso_connections(CP1, JUN, as_of=as_of)
        return [row.entity_address for row in rows]

    assert await names(between) == [E1, E2]
    assert await names(None) == [E2, E3]
    assert await names(between - timedelta(hours=1)) == []
    [before] = await m.register.congestion_points(as_of=between)
    [after] = await m.register.congestion_points()
    assert before.mutex_offers_supported and not after.mutex_offers_supported

    # The operator's view of the same history.
    config = _cro_config(tmp_path, _store_path(m.cro))
    shown = await _cli(
        "cro",
        "show",
        "--config",
        str(config),
        "--format",
        "json",
        "--history",
        "--date",
        between.isoformat(),
    )
    data = json.loads(shown)
    [summary] = data["congestion_points"]
    assert summary["connections"] == 2 and summary["mutex_offers_supported"] is True
    assert len(data["updates"]) == 1
    now = json.loads(await _cli("cro", "show", "--config", str(config), "--format", "json"))
    assert now["congestion_points"][0]["mutex_offers_supported"] is False


# --- AGRPortfolioUpdate and AGRPortfolioQuery -------------------------------------------------


async def test_agr_query_returns_the_dso_view_of_its_own_connections(network: Network) -> None:
    m = await market(network)
    await accepted(
        m.dso,
        dpu(point(CP1, C(E1, JAN), C(E2, JAN), intraday=RedispatchBy.AGR), point(CP2, C(E3, JAN))),
    )
    await accepted(m.dso2, dpu(point(CP3, C(E4, JAN), mutex=False)))
    await accepted(m.agr, apu(A(E1, JAN), A(E4, JAN), A("ean.000000000000000099", JAN)))
    await accepted(m.agr2, apu(A(E2, JAN)))

    response = await ask(m.agr, AGRPortfolioQuery(time_zone=TZ, period=JUN))
    assert isinstance(response, AGRPortfolioQueryResponse)
    assert response.result is Result.ACCEPTED and response.period == JUN
    [view] = response.dso_views
    assert [p.dso_domain for p in view.dso_portfolios] == [DSO, DSO2]
    [cp1] = view.dso_portfolios[0].congestion_points
    assert (cp1.entity_address, cp1.mutex_offers_supported, cp1.intraday_redispatch_by) == (
        CP1,
        True,
        RedispatchBy.AGR,
    )
    # Only its own connections: not E2 (AGR2's) nor E3 (nobody's), though they share points.
    assert [c.entity_address for c in cp1.connections] == [E1]
    [cp3] = view.dso_portfolios[1].congestion_points
    assert [c.entity_address for c in cp3.connections] == [E4] and not cp3.mutex_offers_supported
    assert [c.entity_address for c in view.connections] == ["ean.000000000000000099"]


async def test_agr_update_replaces_the_named_connections(network: Network) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN))))
    await accepted(m.agr, apu(A(E1, JAN), A(E2, JAN)))
    await accepted(m.agr, apu(A(E1, JAN, MAR)))  # E1 ends in March; E2 untouched
    assert await connections_of(m.dso, CP1, MAR) == [(E1, AGR), (E2, AGR)]
    assert await connections_of(m.dso, CP1, JUN) == [(E1, None), (E2, AGR)]


async def test_agr_conflicting_registration_is_rejected(network: Network) -> None:
    m = await market(network)
    await accepted(m.agr, apu(A(E1, JAN, MAR), A(E2, JAN)))
    assert await rejected(m.agr2, apu(A(E1, MAR), A(E3, JAN))) == f"Connection conflict: {E1}"
    await accepted(m.agr2, apu(A(E1, date(2024, 3, 2)), A(E3, JAN)))


async def test_agr_duplicate_and_subordinate_updates_are_rejected(network: Network) -> None:
    m = await market(network)
    reason = await rejected(m.agr, apu(A(E1, JAN), A(E1, MAR, JUN)))
    assert reason == f"Duplicate Connection: {E1}"
    await accepted(m.agr, apu(A(E1, JAN, MAR), A(E1, JUN)))  # disjoint periods: fine
    m.agr_clock.offset = timedelta(hours=-1)
    assert await rejected(m.agr, apu(A(E2, JAN))) == "Subordinate sequence number"


async def test_agr_query_that_cannot_be_answered_is_still_answered(network: Network) -> None:
    """No schema-valid AGRPortfolioQueryResponse exists for a rejection: the CRO sends it
    unvalidated and does not get stuck on it; our (strict) AGR answers HTTP 400."""
    m = await market(network)
    await accepted(m.agr, apu(A(E1, JAN)))  # registered, but in no congestion point
    sent = await m.agr.send(AGRPortfolioQuery(time_zone=TZ, period=JUN), to=CRO, role=Role.CRO)
    response = await _wait_outbound(m.cro, sent.message_id, OutboundStatus.FAILED)
    attempts = await m.cro.store.attempts(response[0])
    assert attempts[-1].http_status == 400
    inner = envelope.parse_envelope(response[1]).sealed[envelope.SIGNATURE_BYTES :]
    assert b'Result="Rejected"' in inner
    assert b"No congestion point holds your connections on this Period" in inner
    # The CRO serves on.
    await accepted(m.agr, apu(A(E2, JAN)))


async def _wait_outbound(
    cro: Participant, reference: str, status: OutboundStatus
) -> tuple[str, bytes]:
    store = cro.store
    assert isinstance(store, SqliteStore)

    def find(conn: sqlite3.Connection) -> tuple[str, bytes, str] | None:
        row = conn.execute(
            "SELECT o.message_id, e.envelope, o.status FROM outbound AS o "
            "JOIN outbound_envelope AS e ON e.id = o.id "
            "WHERE o.reference_message_id = ?",
            (reference,),
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    found: list[tuple[str, bytes, str]] = []

    async def done() -> bool:
        row = await store.read(find)
        if row is not None and row[2] == status.value:
            found.append(row)
            return True
        return False

    await eventually(done)
    return found[0][0], found[0][1]


# --- the operator's view ---------------------------------------------------------------------


def _cro_config(folder: Path, store: Path) -> Path:
    path = folder / "cro.toml"
    path.write_text(
        "[participant]\n"
        f'domain = "{CRO}"\nrole = "CRO"\nsigning_key = "cro.key"\n'
        f'listen = "127.0.0.1:0"\nstore = "sqlite:{store}"\nversions = ["3.1.0"]\n',
        "utf-8",
    )
    return path


async def _cli(*argv: str) -> str:
    """Run the command line in a thread (it runs its own event loop) and return stdout."""
    import contextlib
    import io

    def run() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(list(argv))
        assert status == 0, out.getvalue()
        return out.getvalue()

    return await asyncio.to_thread(run)


async def test_cro_show_prints_the_register_without_connection_ids(
    network: Network, tmp_path: Path
) -> None:
    m = await market(network)
    await accepted(m.dso, dpu(point(CP1, C(E1, JAN), C(E2, JAN)), point(CP2, C(E3, JAN))))
    await accepted(m.dso2, dpu(point(CP3, C(E4, JAN, DEC), end=DEC)))
    config = _cro_config(tmp_path, _store_path(m.cro))

    text = await _cli("cro", "show", "--config", str(config))
    assert "3 congestion points of 2 DSOs, 4 connections" in text
    assert f"DSO {DSO}: 2 congestion points, 3 connections" in text
    assert CP3 in text and "2024-01-01..2024-12-31" in text
    assert not any(e in text for e in (E1, E2, E3, E4))

    only = json.loads(
        await _cli("cro", "show", "--config", str(config), "--dso", DSO2, "--format", "json")
    )
    assert [p["entity_address"] for p in only["congestion_points"]] == [CP3]
    assert only["congestion_points"][0]["dso_domain"] == DSO2

    before = json.loads(
        await _cli(
            "cro", "show", "--config", str(config), "--date", "2000-01-01", "--format", "json"
        )
    )
    assert before["congestion_points"] == []


def test_cro_show_refuses_a_missing_store(tmp_path: Path, capsys: Any) -> None:
    config = _cro_config(tmp_path, tmp_path / "missing.sqlite3")
    assert main(["cro", "show", "--config", str(config)]) == 2
    assert "no store at" in capsys.readouterr().err
