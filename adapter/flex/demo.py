"""A flex day on loopback (`uftp-adapter demo --flex`): a CRO, a DSO and an AGR in this process,
each with its ready-made handlers and a SQLite store in a temporary folder, through the
phases of the spec printed step by step:

1. contract phase (contract-phase.md): the DSO publishes its portfolio (the sample
   portfolio.csv), the AGR registers two of its connections and asks where they are;
2. plan/validate (flex-request.md to flex-order.md): the DSO requests flexibility for
   tomorrow's evening peak, the AGR offers two options, the DSO orders one;
3. settlement (flex-settlement.md): the DSO settles the month, the AGR confirms the order.

Every message is signed, sent over HTTP and checked as between real operators; the demo's
keys and stores are thrown away at the end.
"""

from __future__ import annotations

import calendar
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TextIO

from adapter.config import CroSettings
from adapter.cro.handlers import cro_router
from adapter.dso.portfolio import load_portfolio
from adapter.flex.desk import order_for, send_recorded
from adapter.flex.handlers import agr_flex_router, dso_flex_router
from adapter.flex.rules import Market, day_bounds
from adapter.flex.state import Direction, Standing
from adapter.participant import Participant
from adapter.store import flex_book_for, register_for
from adapter.store.flex import FlexBook
from adapter.testing import Network
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    AvailableRequested,
    ContractSettlement,
    ContractSettlementISP,
    ContractSettlementPeriod,
    DSOPortfolioUpdate,
    FlexOffer,
    FlexOfferOption,
    FlexOfferOptionISP,
    FlexOrder,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexRequest,
    FlexRequestISP,
    FlexSettlement,
    PayloadResponse,
    Result,
    Role,
)

__all__ = ["flex_day"]

DSO, AGR, CRO = "dso.uftp-demo.test", "agr.uftp-demo.test", "cro.uftp-demo.test"
ZONE = "Europe/Amsterdam"


def _said(response: PayloadResponse) -> str:
    text = f"{response.xml_name} {response.result}"
    if response.result is Result.REJECTED:
        text += f": {response.rejection_reason}"
    return text


async def flex_day(out: TextIO = sys.stdout, *, folder: Path | None = None) -> int:
    """Run the day; 0 when every step was accepted, 1 when one was not."""
    with tempfile.TemporaryDirectory(prefix="uftp-flex-demo-") as temporary:
        return await _day(Path(folder or temporary), out)


async def _day(folder: Path, out: TextIO) -> int:
    portfolio = load_portfolio(
        Path(str(resources.files("adapter.samples").joinpath("portfolio.csv"))), time_zone=ZONE
    )
    points = {p.entity_address: p.mutex_offers_supported for p in portfolio.congestion_points}
    market = Market(timedelta(minutes=15), ZONE, points)
    network = Network(folder)
    cro = network.create(CRO, Role.CRO, store_name="cro")
    dso = network.create(DSO, Role.DSO, store_name="dso")
    agr = network.create(AGR, Role.AGR, store_name="agr")
    cro.router.include(cro_router(register_for(cro.store), CroSettings()))
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)
    dso.router.include(dso_flex_router(dso_book, market, outbox=dso.store))
    agr.router.include(agr_flex_router(agr_book, market, outbox=agr.store))
    try:
        await network.start(cro, dso, agr)
        for a, b in ((cro, dso), (cro, agr), (dso, agr)):
            network.introduce(a, b)
        for participant in (cro, dso, agr):
            print(f"{participant.role} {participant.domain} at {participant.url()}", file=out)
        return await _steps(dso, agr, portfolio, dso_book, market, out)
    finally:
        await network.close()


async def _steps(
    dso: Participant,
    agr: Participant,
    portfolio: DSOPortfolioUpdate,
    dso_book: FlexBook,
    market: Market,
    out: TextIO,
) -> int:
    def step(text: str) -> None:
        print(text, file=out)

    def answer(response: PayloadResponse, sender: str) -> bool:
        step(f"  {sender}: {_said(response)}")
        return response.result is Result.ACCEPTED

    tomorrow = (datetime.now(market.zone) + timedelta(days=1)).date()
    north = portfolio.congestion_points[0]

    step("\n1. Contract phase: who is where (contract-phase.md)")
    connections = sum(len(point.connections) for point in portfolio.congestion_points)
    step(
        f"DSO -> CRO: DSOPortfolioUpdate, {len(portfolio.congestion_points)} congestion points, "
        f"{connections} connections"
    )
    if not answer(await dso.request(portfolio, to=CRO, timeout=30), "CRO"):
        return 1
    mine = tuple(
        AGRPortfolioUpdateConnection(connection.entity_address, connection.start_period)
        for connection in north.connections[:2]
    )
    step(f"AGR -> CRO: AGRPortfolioUpdate, {len(mine)} connections it represents")
    update = AGRPortfolioUpdate(time_zone=ZONE, connections=mine)
    if not answer(await agr.request(update, to=CRO, timeout=30), "CRO"):
        return 1
    step(f"AGR -> CRO: AGRPortfolioQuery for {tomorrow}")
    view = await agr.request(AGRPortfolioQuery(time_zone=ZONE, period=tomorrow), to=CRO)
    if not answer(view, "CRO"):
        return 1
    for dso_view in view.dso_views:
        for found in dso_view.dso_portfolios:
            for point in found.congestion_points:
                step(
                    f"  the AGR's connections behind {point.entity_address} of "
                    f"{found.dso_domain}: {len(point.connections)}"
                )

    step(f"\n2. Flexibility for {tomorrow} (flex-request.md, flex-offer.md, flex-order.md)")
    start, _ = day_bounds(tomorrow, market.zone)
    request = FlexRequest(
        isp_duration=market.isp_duration,
        time_zone=ZONE,
        period=tomorrow,
        congestion_point=north.entity_address,
        revision=1,
        expiration_date_time=start + timedelta(hours=16),  # about 16:00 local on the day
        isps=(
            FlexRequestISP(1, -500_000, 1_000_000, 68, AvailableRequested.AVAILABLE),
            FlexRequestISP(69, -250_000, 0, 8, AvailableRequested.REQUESTED),
            FlexRequestISP(77, -500_000, 1_000_000, 20, AvailableRequested.AVAILABLE),
        ),
    )
    step(
        f"DSO -> AGR: FlexRequest at {north.entity_address}: ISPs 69-76 (18:00-20:00) "
        "down by up to 250 kW"
    )
    sent, response = await send_recorded(dso, dso_book, request, to=AGR, timeout=30)
    if not answer(response, "AGR"):
        return 1
    offer = FlexOffer(
        isp_duration=request.isp_duration,
        time_zone=ZONE,
        period=tomorrow,
        congestion_point=request.congestion_point,
        expiration_date_time=request.expiration_date_time,
        flex_request_message_id=sent.message_id,
        currency="EUR",
        offer_options=(
            FlexOfferOption(
                option_reference="full",
                price=Decimal("1250.00"),
                isps=(FlexOfferOptionISP(69, -250_000, 8),),
            ),
            FlexOfferOption(
                option_reference="half",
                price=Decimal("600.00"),
                isps=(FlexOfferOptionISP(69, -125_000, 8),),
            ),
        ),
    )
    step("AGR -> DSO: FlexOffer, option full (250 kW, 1250.00 EUR), option half (125 kW, 600.00)")
    offered, response = await send_recorded(
        agr, flex_book_for(agr.store), offer, to=DSO, timeout=30
    )
    if not answer(response, "DSO"):
        return 1
    received = await dso_book.get(Direction.RECEIVED, offered.message_id)
    assert received is not None and isinstance(offered, FlexOffer)
    order = order_for(
        offered,
        option_reference="half",
        activation_factor=Decimal("1.00"),
        order_reference="DEMO-1",
    )
    step("DSO -> AGR: FlexOrder DEMO-1, option half")
    ordered, response = await send_recorded(
        dso,
        dso_book,
        order,
        to=AGR,
        timeout=30,
        settle=(received, (Standing.ACCEPTED,), Standing.ORDERED),
    )
    if not answer(response, "AGR"):
        return 1
    step("  the DSO's offers now:")
    for entry in await dso_book.entries(Direction.RECEIVED, FlexOffer.xml_name):
        step(
            f"    {entry.message_id} from {entry.peer_domain}: "
            f"{entry.shown_standing(datetime.now(UTC))}"
        )

    step(f"\n3. Settlement of {tomorrow:%B %Y} (flex-settlement.md)")
    assert isinstance(ordered, FlexOrder)
    settlement = _settlement(ordered, tomorrow)
    step(
        f"DSO -> AGR: FlexSettlement {settlement.period_start}..{settlement.period_end}, "
        "order DEMO-1 delivered"
    )
    settled = await dso.request(settlement, to=AGR, timeout=30)
    if not answer(settled, "AGR"):
        return 1
    for status in settled.flex_order_settlement_statuses:
        step(f"  order {status.order_reference}: {status.disposition}")
    return 0


def _settlement(order: FlexOrder, day: date) -> FlexSettlement:
    """The month's settlement of `order`, delivered as ordered. The schema wants a
    ContractSettlement too (flex-settlement.md says 0..n); there is no bilateral contract
    here, so it reserves nothing."""
    last = calendar.monthrange(day.year, day.month)[1]
    return FlexSettlement(
        period_start=day.replace(day=1),
        period_end=day.replace(day=last),
        currency=order.currency,
        flex_order_settlements=(
            FlexOrderSettlement(
                order_reference=order.order_reference,
                period=order.period,
                congestion_point=order.congestion_point,
                price=order.price,
                net_settlement=order.price,
                isps=tuple(
                    FlexOrderSettlementISP(
                        isp.start, 0, isp.power, isp.power, isp.power, isp.duration
                    )
                    for isp in order.isps
                ),
            ),
        ),
        contract_settlements=(
            ContractSettlement(
                periods=(
                    ContractSettlementPeriod(
                        period=order.period, isps=(ContractSettlementISP(1, 0, 1),)
                    ),
                )
            ),
        ),
    )
