"""Requests answered by the operator's systems through the bus: the request goes out as an
event, the response comes back as a command naming it (causationid). Only an open request
of that peer and type can be answered, once, and within the deadline."""

from __future__ import annotations

import asyncio
import json
from datetime import date

from adapter.bus.events import XML_CONTENT_TYPE
from adapter.bus.memory import MemoryBus
from adapter.bus.port import Command, Verdict
from adapter.participant import Participant
from adapter.store.base import InboundStatus
from adapter.uftp import codec
from adapter.uftp.messages import (
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdateResponse,
    Role,
)
from tests.bus.test_bridge_events import CRO, DSO, bridge
from tests.conftest import Network, eventually
from tests.uftp.samples import make_dso_portfolio_query_response, response_metadata

QUERY = DSOPortfolioQuery(
    time_zone="Europe/Amsterdam", period=date(2024, 5, 2), entity_address="ean.871685900012636543"
)


async def setup(
    network: Network, bus: MemoryBus, **options: object
) -> tuple[Participant, Participant]:
    cro = network.create(CRO, Role.CRO, bus=bridge(bus, answered=["DSOPortfolioQuery"], **options))
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: cro.bus is not None and cro.bus.health().consuming)
    return cro, dso


def answer(request_id: str, command_id: str = "answer-1", **changes: object) -> Command:
    """The operator's answer: a complete response (its metadata is replaced when sent)."""
    response = make_dso_portfolio_query_response(**changes)
    return Command(
        {
            "id": command_id,
            "uftprecipient": DSO,
            "causationid": request_id,
            "datacontenttype": XML_CONTENT_TYPE,
        },
        codec.encode(response),
    )


async def test_a_request_answered_on_the_bus_reaches_its_sender(network: Network) -> None:
    bus = MemoryBus()
    requests = bus.bind("in.DSOPortfolioQuery")
    bus.bind("#")
    cro, dso = await setup(network, bus)
    pending = asyncio.ensure_future(dso.request(QUERY, to=CRO, timeout=10))
    await eventually(lambda: len(requests.events) == 1)
    event = requests.events[0][1]
    request_id = event.extensions["uftpmessageid"]
    assert (await cro.store.get_inbound(DSO, request_id)).status is InboundStatus.RECEIVED  # type: ignore[union-attr]

    assert await bus.deliver(answer(request_id)) is Verdict.ACK
    response = await pending
    assert isinstance(response, DSOPortfolioQueryResponse)
    assert response.reference_message_id == request_id
    assert response.conversation_id == event.extensions["correlationid"]
    assert response.congestion_point == make_dso_portfolio_query_response().congestion_point
    assert (await cro.store.get_inbound(DSO, request_id)).status is InboundStatus.HANDLED  # type: ignore[union-attr]

    # The same answer again is a duplicate; another answer finds the request closed.
    assert await bus.deliver(answer(request_id)) is Verdict.ACK
    assert await bus.deliver(answer(request_id, "answer-2")) is Verdict.REJECT


async def test_an_answer_must_fit_an_open_request_of_that_peer(network: Network) -> None:
    bus = MemoryBus()
    requests = bus.bind("in.DSOPortfolioQuery")
    errors = bus.bind("error.*")
    bus.bind("#")
    cro, dso = await setup(network, bus)
    await dso.send(QUERY, to=CRO)
    await eventually(lambda: len(requests.events) == 1)
    request_id = requests.events[0][1].extensions["uftpmessageid"]

    wrong_type = DSOPortfolioUpdateResponse(**response_metadata("3.1.0", CRO, DSO))
    wrong = Command(
        {"id": "w1", "uftprecipient": DSO, "causationid": request_id},
        codec.encode(wrong_type),
    )
    unknown = answer("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "w2")
    no_reference = Command({"id": "w3", "uftprecipient": DSO}, answer(request_id).data)
    for bad in (wrong, unknown, no_reference):
        assert await bus.deliver(bad) is Verdict.REJECT
    await eventually(lambda: len(errors.events) == 3)
    reasons = [json.loads(e.data)["reason"] for _, e in errors.events]
    assert "no DSOPortfolioUpdate" in reasons[0]
    assert "no DSOPortfolioQuery" in reasons[1]
    assert "needs causationid" in reasons[2]
    assert (await cro.store.get_inbound(DSO, request_id)).status is InboundStatus.RECEIVED  # type: ignore[union-attr]


async def test_a_request_not_answered_in_time_is_closed_with_an_error_event(
    network: Network,
) -> None:
    bus = MemoryBus()
    requests = bus.bind("in.DSOPortfolioQuery")
    errors = bus.bind("error.*")
    bus.bind("#")
    cro, dso = await setup(network, bus, answer_within_seconds=0.5)
    await dso.send(QUERY, to=CRO)
    await eventually(lambda: len(requests.events) == 1)
    request_id = requests.events[0][1].extensions["uftpmessageid"]
    await eventually(lambda: len(errors.events) == 1)
    route, error = errors.events[0]
    assert route == "error.deadline" and error.extensions["causationid"] == request_id
    assert (await cro.store.get_inbound(DSO, request_id)).status is InboundStatus.HANDLED  # type: ignore[union-attr]
    assert await bus.deliver(answer(request_id)) is Verdict.REJECT  # too late
    assert await cro.store.pending_outbound() == []
