"""Our Common Reference Operator, as shapeshifter-uftp 2.4's DSOs and aggregators use it.

Their DSO and AGR clients send DSOPortfolioUpdate, DSOPortfolioQuery, AGRPortfolioUpdate and
AGRPortfolioQuery to our real CRO participant: the register's handlers (`cro_router`) on the
real register in the CRO's SQLite file in tmp_path, on loopback, both sides signing and
verifying. Their DSO and AGR services (see conftest.py) receive our responses and parse them
into their dataclasses; the tests assert on what their `process_*_response` methods got, and
read our register back through `register_for` on the CRO's store.

What their side shows about ours (and about theirs):

- Their parser reads what the register answers: references (their
  `*_message_id` fields), RejectionReason texts, AGR-Domain on a DSO's connections, and the
  AGR's DSO view with each point's flags. MutexOffersSupported arrives as a bool; the
  RedispatchBy attributes arrive as plain text ("AGR"), which still equals their StrEnum.
- An AGRPortfolioQuery that no congestion point answers has no schema-valid response (the
  XSD wants a DSO-View; see `adapter.cro.register.agr_query_response`). We send the Rejected
  response unvalidated; their parser refuses it like our codec does (their constructor's
  `validate_list`: at least one DSO-View, raised as their SchemaException), their service
  answers HTTP 400 and our outbox gives the response up at once. Their AGR's code never
  learns that its query was answered at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date

import pytest

pytest.importorskip("shapeshifter_uftp")

from shapeshifter_uftp import uftp as ss
from xsdata.models.datatype import XmlDate

from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.participant import Participant
from adapter.store import register_for
from adapter.store.base import OutboundRecord, OutboundStatus
from adapter.store.register import DsoConnection
from adapter.store.sqlite import SqliteStore
from adapter.testing import Network, eventually
from adapter.uftp.messages import RedispatchBy, Role
from tests.interop.conftest import TheirAggregators, TheirAgr, TheirDso, TheirSide

CRO = "cro.example.com"
DSO, DSO2 = "dso.example.com", "dso2.example.com"
AGR = "agr.example.com"
CP1, CP2, CP3 = (f"ea1.2024-01.nl.example:cp{n}" for n in (1, 2, 3))
E1, E2, E3, E4, E5 = (f"ean.{n:018d}" for n in (1, 2, 3, 4, 5))
E9 = "ean.000000000000000099"
JAN, MAR, JUN = date(2024, 1, 1), date(2024, 3, 1), date(2024, 6, 1)

TZ = "Europe/Amsterdam"
ACCEPTED, REJECTED = ss.AcceptedRejected.ACCEPTED, ss.AcceptedRejected.REJECTED


async def our_cro(network: Network) -> Participant:
    """Our CRO: the register's handlers on the register in its own SQLite store."""
    cro = network.create(CRO, Role.CRO)
    cro.router.include(cro_router(register_for(cro.store), CroSettings()))
    await network.start(cro)
    return cro


# --- their messages --------------------------------------------------------------------------


def day(value: date) -> XmlDate:
    return XmlDate(value.year, value.month, value.day)


def connection(
    address: str, start: date = JAN, end: date | None = None
) -> ss.DsoPortfolioUpdateConnection:
    return ss.DsoPortfolioUpdateConnection(
        entity_address=address,
        start_period=day(start),
        end_period=None if end is None else day(end),
    )


def point(
    address: str,
    *connections: ss.DsoPortfolioUpdateConnection,
    mutex: bool = True,
    intraday: str | None = None,
) -> ss.DsoPortfolioUpdateCongestionPoint:
    return ss.DsoPortfolioUpdateCongestionPoint(
        entity_address=address,
        start_period=day(JAN),
        mutex_offers_supported=mutex,
        day_ahead_redispatch_by=ss.RedispatchBy.DSO,
        intraday_redispatch_by=None if intraday is None else ss.RedispatchBy(intraday),
        connections=list(connections),
    )


def dso_update(*points: ss.DsoPortfolioUpdateCongestionPoint) -> ss.DsoPortfolioUpdate:
    return ss.DsoPortfolioUpdate(congestion_points=list(points))


def agr_update(*addresses: str) -> ss.AgrPortfolioUpdate:
    return ss.AgrPortfolioUpdate(
        connections=[
            ss.AgrPortfolioUpdateConnection(entity_address=address, start_period=day(JAN))
            for address in addresses
        ]
    )


# --- their DSO and AGR, talking to our CRO --------------------------------------------------


async def send_dso_update(
    shapeshifter: TheirSide, their_dso: TheirDso, cro: Participant, update: ss.DsoPortfolioUpdate
) -> ss.DsoPortfolioUpdateResponse:
    """Their DSO client sends `update` (raises unless HTTP 200); their service's answer."""
    client = shapeshifter.client_to(their_dso, cro)
    await asyncio.to_thread(client.send_dso_portfolio_update, update)
    response = await their_dso.next()
    assert isinstance(response, ss.DsoPortfolioUpdateResponse)
    return response


async def send_agr_update(
    aggregators: TheirAggregators,
    their_agr: TheirAgr,
    cro: Participant,
    update: ss.AgrPortfolioUpdate,
) -> ss.AgrPortfolioUpdateResponse:
    client = aggregators.client_to(their_agr, cro)
    await asyncio.to_thread(client.send_agr_portfolio_update, update)
    response = await their_agr.next()
    assert isinstance(response, ss.AgrPortfolioUpdateResponse)
    return response


def accepted(response: ss.PayloadMessageResponse) -> None:
    assert response.result == ACCEPTED, response.rejection_reason
    assert response.rejection_reason is None


# --- DSOPortfolioUpdate ----------------------------------------------------------------------


async def test_their_dso_update_is_registered_and_accepted(
    network: Network, shapeshifter: TheirSide
) -> None:
    cro = await our_cro(network)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    update = dso_update(
        point(CP1, connection(E1), connection(E2), connection(E3, MAR)),
        point(CP2, connection(E4), connection(E5), mutex=False, intraday="AGR"),
    )

    response = await send_dso_update(shapeshifter, their_dso, cro, update)

    # Their service parsed our answer, correlated to the message their client sent.
    accepted(response)
    assert response.dso_portfolio_update_message_id == update.message_id
    assert response.conversation_id == update.conversation_id
    assert response.message_id != update.message_id
    assert (response.sender_domain, response.recipient_domain) == (CRO, DSO)
    # The register holds both points as their DSO defined them.
    register = register_for(cro.store)
    points = await register.congestion_points()
    assert [
        (
            p.entity_address,
            p.dso_domain,
            p.start_period,
            p.end_period,
            p.mutex_offers_supported,
            p.day_ahead_redispatch_by,
            p.intraday_redispatch_by,
            p.connections,
            p.message_id,
        )
        for p in points
    ] == [
        (CP1, DSO, JAN, None, True, RedispatchBy.DSO, None, 3, update.message_id),
        (CP2, DSO, JAN, None, False, RedispatchBy.DSO, RedispatchBy.AGR, 2, update.message_id),
    ]
    assert await register.dso_connections(CP1, JAN) == [(E1, None), (E2, None)]  # E3 from March
    assert await register.dso_connections(CP1, JUN) == [(E1, None), (E2, None), (E3, None)]
    assert await register.dso_connections(CP2, JUN) == [(E4, None), (E5, None)]
    [applied] = await register.updates()
    assert (applied.sender_domain, applied.message_id) == (DSO, update.message_id)


async def test_their_dso_update_breaking_a_period_rule_is_rejected_with_its_reason(
    network: Network, shapeshifter: TheirSide
) -> None:
    cro = await our_cro(network)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    # E2 starts a month before its congestion point does; CP2 alone would be fine.
    update = dso_update(
        point(CP1, connection(E1), connection(E2, date(2023, 12, 1))),
        point(CP2, connection(E3)),
    )

    response = await send_dso_update(shapeshifter, their_dso, cro, update)

    assert response.result == REJECTED
    assert response.rejection_reason == (
        f"Connection period outside its CongestionPoint's period: {E2} at {CP1}"
    )
    assert response.dso_portfolio_update_message_id == update.message_id
    # Nothing of the message is registered.
    register = register_for(cro.store)
    assert await register.congestion_points() == []
    assert await register.updates() == []


# --- DSOPortfolioQuery -----------------------------------------------------------------------


async def test_their_dso_query_gets_the_connections_with_their_aggregator(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators
) -> None:
    cro = await our_cro(network)
    their_dso = shapeshifter.dso(DSO)
    their_agr = shapeshifter_agr.agr(AGR)
    shapeshifter.introduce(cro, their_dso)
    shapeshifter_agr.introduce(cro, their_agr)
    update = dso_update(point(CP1, connection(E1), connection(E2), connection(E3)))
    accepted(await send_dso_update(shapeshifter, their_dso, cro, update))
    accepted(await send_agr_update(shapeshifter_agr, their_agr, cro, agr_update(E2)))
    query = ss.DsoPortfolioQuery(period=day(JUN), entity_address=CP1)

    client = shapeshifter.client_to(their_dso, cro)
    await asyncio.to_thread(client.send_dso_portfolio_query, query)

    response = await their_dso.next()
    assert isinstance(response, ss.DsoPortfolioQueryResponse)
    accepted(response)
    assert response.dso_portfolio_query_message_id == query.message_id
    assert response.conversation_id == query.conversation_id
    assert (response.time_zone, response.period) == (TZ, day(JUN))
    assert response.congestion_point is not None
    assert response.congestion_point.entity_address == CP1
    assert [(c.entity_address, c.agr_domain) for c in response.congestion_point.connections] == [
        (E1, None),
        (E2, AGR),
        (E3, None),
    ]


async def test_their_dso_query_for_a_point_not_theirs_is_rejected(
    network: Network, shapeshifter: TheirSide
) -> None:
    """A point of another DSO and an unknown point get the same answer, which their parser
    reads: Rejected, its reason, no CongestionPoint."""
    cro = await our_cro(network)
    their_dso = shapeshifter.dso(DSO)
    other_dso = shapeshifter.dso(DSO2)
    shapeshifter.introduce(cro, their_dso)
    shapeshifter.introduce(cro, other_dso)
    accepted(
        await send_dso_update(shapeshifter, other_dso, cro, dso_update(point(CP2, connection(E2))))
    )
    client = shapeshifter.client_to(their_dso, cro)

    for address in (CP2, CP3):
        query = ss.DsoPortfolioQuery(period=day(JUN), entity_address=address)
        await asyncio.to_thread(client.send_dso_portfolio_query, query)
        response = await their_dso.next()
        assert isinstance(response, ss.DsoPortfolioQueryResponse)
        assert response.result == REJECTED
        assert response.rejection_reason == "Invalid CongestionPoint"
        assert response.congestion_point is None
        assert response.dso_portfolio_query_message_id == query.message_id


# --- AGRPortfolioUpdate ----------------------------------------------------------------------


async def test_their_agr_update_is_registered_and_accepted(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators
) -> None:
    cro = await our_cro(network)
    their_dso = shapeshifter.dso(DSO)
    their_agr = shapeshifter_agr.agr(AGR)
    shapeshifter.introduce(cro, their_dso)
    shapeshifter_agr.introduce(cro, their_agr)
    update = dso_update(point(CP1, connection(E1), connection(E2)), point(CP2, connection(E3)))
    accepted(await send_dso_update(shapeshifter, their_dso, cro, update))
    registration = agr_update(E1, E3)

    response = await send_agr_update(shapeshifter_agr, their_agr, cro, registration)

    accepted(response)
    assert response.agr_portfolio_update_message_id == registration.message_id
    assert response.conversation_id == registration.conversation_id
    assert (response.sender_domain, response.recipient_domain) == (CRO, AGR)
    # The DSO's points now name the aggregator on its connections.
    register = register_for(cro.store)
    assert await register.dso_connections(CP1, JUN) == [
        DsoConnection(E1, AGR),
        DsoConnection(E2, None),
    ]
    assert await register.dso_connections(CP2, JUN) == [DsoConnection(E3, AGR)]
    allocations = await register.agr_connections(AGR, JUN)
    assert [(a.entity_address, a.congestion_point, a.dso_domain) for a in allocations] == [
        (E1, CP1, DSO),
        (E3, CP2, DSO),
    ]


# --- AGRPortfolioQuery -----------------------------------------------------------------------


async def test_their_agr_query_gets_the_dso_view_of_its_connections(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators
) -> None:
    cro = await our_cro(network)
    their_dso, other_dso = shapeshifter.dso(DSO), shapeshifter.dso(DSO2)
    their_agr = shapeshifter_agr.agr(AGR)
    shapeshifter.introduce(cro, their_dso)
    shapeshifter.introduce(cro, other_dso)
    shapeshifter_agr.introduce(cro, their_agr)
    accepted(
        await send_dso_update(
            shapeshifter,
            their_dso,
            cro,
            dso_update(
                point(CP1, connection(E1), connection(E2), intraday="AGR"),
                point(CP2, connection(E3), mutex=False),
            ),
        )
    )
    accepted(
        await send_dso_update(shapeshifter, other_dso, cro, dso_update(point(CP3, connection(E4))))
    )
    # E2 is in CP1 but not the aggregator's; E9 is in no congestion point.
    accepted(await send_agr_update(shapeshifter_agr, their_agr, cro, agr_update(E1, E3, E4, E9)))
    query = ss.AgrPortfolioQuery(period=day(JUN))

    client = shapeshifter_agr.client_to(their_agr, cro)
    await asyncio.to_thread(client.send_agr_portfolio_query, query)

    response = await their_agr.next()
    assert isinstance(response, ss.AgrPortfolioQueryResponse)
    accepted(response)
    assert response.agr_portfolio_query_message_id == query.message_id
    assert response.conversation_id == query.conversation_id
    assert (response.time_zone, response.period) == (TZ, day(JUN))
    [view] = response.dso_views
    # Grouped by DSO, then congestion point, each point with the flags its DSO published.
    assert [
        (
            portfolio.dso_domain,
            [
                (
                    cp.entity_address,
                    cp.mutex_offers_supported,
                    cp.day_ahead_redispatch_by,
                    cp.intraday_redispatch_by,
                    [c.entity_address for c in cp.connections],
                )
                for cp in portfolio.congestion_points
            ],
        )
        for portfolio in view.dso_portfolios
    ] == [
        (DSO, [(CP1, True, "DSO", "AGR", [E1]), (CP2, False, "DSO", None, [E3])]),
        (DSO2, [(CP3, True, "DSO", None, [E4])]),
    ]
    assert [c.entity_address for c in view.connections] == [E9]
    # What their parser gives: a real bool, and text that equals their enum.
    flags = view.dso_portfolios[0].congestion_points[0]
    assert flags.mutex_offers_supported is True
    assert flags.intraday_redispatch_by == ss.RedispatchBy.AGR


async def test_their_agr_refuses_our_rejection_of_its_query_with_400(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators
) -> None:
    """No schema-valid rejection of an AGRPortfolioQuery exists. Ours (Rejected, no
    DSO-View) is sent all the same; their parser refuses it as our strict AGR does, HTTP 400,
    so their code never hears back and our CRO gives the response up at once."""
    cro = await our_cro(network)
    their_agr = shapeshifter_agr.agr(AGR)
    shapeshifter_agr.introduce(cro, their_agr)
    accepted(await send_agr_update(shapeshifter_agr, their_agr, cro, agr_update(E9)))
    query = ss.AgrPortfolioQuery(period=day(JUN))

    client = shapeshifter_agr.client_to(their_agr, cro)
    await asyncio.to_thread(client.send_agr_portfolio_query, query)

    answer = await outbound_answer(cro, query.message_id, OutboundStatus.FAILED)
    [attempt] = await cro.store.attempts(answer.message_id)
    assert attempt.http_status == 400
    assert answer.message_type == "AGRPortfolioQueryResponse"
    assert their_agr.empty()
    # Their AGR and our CRO carry on: the next update is answered as usual.
    accepted(await send_agr_update(shapeshifter_agr, their_agr, cro, agr_update(E1)))


async def outbound_answer(
    cro: Participant, reference: str, status: OutboundStatus
) -> OutboundRecord:
    """Our CRO's response to message `reference`, once its delivery reached `status`."""
    store = cro.store
    assert isinstance(store, SqliteStore)

    def answer_id(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(
            "SELECT message_id FROM outbound WHERE reference_message_id = ?", (reference,)
        ).fetchone()
        return None if row is None else str(row[0])

    found: list[OutboundRecord] = []

    async def reached() -> bool:
        message_id = await store.read(answer_id)
        record = None if message_id is None else await store.get_outbound(message_id)
        if record is not None and record.status is status:
            found.append(record)
        return bool(found)

    await eventually(reached)
    return found[0]
