"""Flex trading through the bus bridge: the DSO's operator sends a FlexRequest as a bus
command; it is recorded from the DSO's outbox when the AGR's answer comes, the AGR's offer
for it is checked against it as for one the desk sent, and the answer and the offer reach
the bus as events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapter.bus.events import XML_CONTENT_TYPE
from adapter.bus.memory import MemoryBus
from adapter.bus.port import Command, Verdict
from adapter.flex.desk import send_recorded
from adapter.flex.handlers import agr_flex_router, dso_flex_router
from adapter.flex.rules import Market
from adapter.flex.state import Direction, Standing
from adapter.store import flex_book_for
from adapter.testing import composed
from adapter.uftp import codec
from adapter.uftp.messages import Result, Role
from tests.bus.test_bridge_commands import by_route
from tests.bus.test_bridge_events import bridge
from tests.conftest import Network, eventually
from tests.flex.messages import AGR, CP, DSO, flex_offer, flex_request

MARKET = Market(timedelta(minutes=15), "Europe/Amsterdam", {CP: True})


async def test_a_request_sent_as_a_bus_command_is_what_the_offer_is_checked_against(
    network: Network,
) -> None:
    bus = MemoryBus()
    events = bus.bind("#")
    dso = network.create(DSO, Role.DSO, bus=bridge(bus))
    agr = network.create(AGR, Role.AGR)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)
    dso.router.include(dso_flex_router(dso_book, MARKET, outbox=dso.store))
    agr.router.include(agr_flex_router(agr_book, MARKET, outbox=agr.store))
    await network.start(dso, agr)
    network.introduce(dso, agr)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming)
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    peak = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=15)

    request = flex_request(period=day, expiration_date_time=peak)
    sent = Command(
        {"id": "cmd-flex-1", "uftprecipient": AGR, "datacontenttype": XML_CONTENT_TYPE},
        codec.encode(request),
    )
    assert await bus.deliver(sent) is Verdict.ACK
    await eventually(lambda: len(by_route(events, "in.FlexRequestResponse")) == 1)
    [received] = await agr_book.entries(Direction.RECEIVED, "FlexRequest")
    assert received.standing is Standing.ACCEPTED
    # Not recorded as it left (the bridge sent it); recorded from the outbox when the
    # AGR's answer came.
    adopted = await dso_book.get(Direction.SENT, received.message_id)
    assert adopted is not None and adopted.standing is Standing.ACCEPTED

    offer = composed(
        flex_offer(request_id=received.message_id, period=day, expiration_date_time=peak)
    )
    _, response = await send_recorded(agr, agr_book, offer, to=DSO, timeout=10)

    assert response.result is Result.ACCEPTED, response.rejection_reason
    [kept] = await dso_book.entries(Direction.RECEIVED, "FlexOffer")
    assert (kept.reference, kept.standing) == (received.message_id, Standing.ACCEPTED)
    await eventually(lambda: len(by_route(events, "in.FlexOffer")) == 1)
