"""Each change of a participant's flex book is a bus event (``flex.<change>``), written in the
change's own transaction as the CRO's register changes are: a FlexRequest sent and accepted,
an offer received, ordered, a revocation refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from adapter.bus.memory import MemoryBus
from adapter.flex.desk import book_of, order_for, send_recorded
from adapter.flex.handlers import agr_flex_router, dso_flex_router
from adapter.flex.state import Direction, Standing
from adapter.store import flex_book_for
from adapter.uftp.messages import Result, Role
from tests.bus.test_bridge_events import bridge
from tests.conftest import Network, eventually
from tests.flex.messages import AGR, DSO, MARKET, NOW, flex_offer, flex_request, revocation
from tests.flex.test_flex_trading import bare, comes_to


async def test_the_dso_books_changes_are_events(network: Network) -> None:
    bus = MemoryBus()
    queue = bus.bind("#")
    dso = network.create(DSO, Role.DSO, bus=bridge(bus))
    agr = network.create(AGR, Role.AGR)
    book = book_of(dso)
    dso.router.include(dso_flex_router(book, MARKET, outbox=dso.store, clock=lambda: NOW))
    agr_book = flex_book_for(agr.store)
    agr.router.include(agr_flex_router(agr_book, MARKET, outbox=agr.store, clock=lambda: NOW))
    await network.start(dso, agr)
    network.introduce(dso, agr)

    request, answer = await send_recorded(dso, book, bare(flex_request()), to=AGR, timeout=10)
    assert answer.result is Result.ACCEPTED
    await comes_to(book, Direction.SENT, request.message_id, Standing.ACCEPTED)
    offer, answer = await send_recorded(
        agr, agr_book, bare(flex_offer(request_id=request.message_id)), to=DSO, timeout=10
    )
    assert answer.result is Result.ACCEPTED
    received = await book.get(Direction.RECEIVED, offer.message_id)
    assert received is not None
    order = order_for(
        offer, option_reference="full", activation_factor=Decimal(1), order_reference="o-1"
    )
    sent, answer = await send_recorded(
        dso,
        book,
        order,
        to=AGR,
        timeout=10,
        settle=(received, (Standing.ACCEPTED,), Standing.ORDERED),
    )
    assert answer.result is Result.ACCEPTED
    await comes_to(book, Direction.SENT, sent.message_id, Standing.ACCEPTED)
    refused = await agr.request(bare(revocation(offer)), to=DSO, timeout=10)
    assert refused.result is Result.REJECTED

    def flex() -> list[Any]:
        return [(route, event) for route, event in queue.events if route.startswith("flex.")]

    def seen() -> list[tuple[str, str, str]]:
        return [
            (route, event.extensions["uftpmessagetype"], json.loads(event.data)["standing"])
            for route, event in flex()
        ]

    expected = [
        ("flex.sent", "FlexRequest", "open"),
        ("flex.accepted", "FlexRequest", "accepted"),
        ("flex.received", "FlexOffer", "accepted"),
        ("flex.sent", "FlexOrder", "open"),
        ("flex.ordered", "FlexOffer", "ordered"),
        ("flex.accepted", "FlexOrder", "accepted"),
        ("flex.received", "FlexOfferRevocation", "rejected"),
    ]
    await eventually(lambda: len(flex()) >= len(expected))
    assert sorted(seen()) == sorted(expected)  # published in commit order, not necessarily ours
    ordered = next(event for route, event in flex() if route == "flex.ordered")
    data = json.loads(ordered.data)
    assert data["messageId"] == offer.message_id and data["settledBy"] == sent.message_id
    assert data["direction"] == "received" and data["peer"] == AGR
    assert ordered.type == "uftp.flex.ordered"
    assert ordered.extensions["causationid"] == sent.message_id
