"""Flex trading between our DSO and shapeshifter-uftp's AGR service, live on loopback: our
FlexRequest, their FlexOffer for it, our FlexOrder of it, their revocation after the order.

Our DSO runs its ready-made flex handlers (adapter.flex): what their AGR sends is checked
against the conversation our store keeps, exactly as for an AGR of ours. Their service only
records what it receives; the test answers through their client, as their operator's code
would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapter.flex.desk import order_for, send_recorded
from adapter.flex.handlers import dso_flex_router
from adapter.flex.rules import ALREADY_ORDERED, Market
from adapter.flex.state import Direction, Standing
from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter
from adapter.store import flex_book_for
from adapter.testing import Network, composed
from adapter.uftp.messages import FlexOffer, FlexOrder, FlexRequest, Result, Role
from tests.flex.messages import CP, flex_offer, flex_request
from tests.interop.conftest import TheirAggregators, TheirSide

ss = pytest.importorskip("shapeshifter_uftp.uftp")

DSO, AGR = "dso.example-grid.nl", "agr.example.com"


async def test_request_offer_order_with_their_aggregator(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators
) -> None:
    their_agr = shapeshifter_agr.agr(AGR)
    dso = network.create(DSO, Role.DSO)
    book = flex_book_for(dso.store)
    market = Market(timedelta(minutes=15), "Europe/Amsterdam", {CP: True})
    dso.router.include(dso_flex_router(book, market, outbox=dso.store))
    await network.start(dso)
    shapeshifter_agr.introduce(dso, their_agr)
    client = their_agr.dso_client(DSO)
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    peak = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=15)

    # Our FlexRequest; their operator accepts it.
    request = composed(flex_request(period=day, expiration_date_time=peak))
    asking = asyncio.create_task(send_recorded(dso, book, request, to=AGR, timeout=10))
    received = await their_agr.next()
    assert isinstance(received, ss.FlexRequest)
    assert from_shapeshifter(received).isps == request.isps  # type: ignore[attr-defined]
    await asyncio.to_thread(
        client.send_flex_request_response,
        ss.FlexRequestResponse(
            conversation_id=received.conversation_id,
            flex_request_message_id=received.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        ),
    )
    sent, response = await asking
    assert isinstance(sent, FlexRequest) and response.result is Result.ACCEPTED

    # Their FlexOffer for it: checked by our DSO against the request, and accepted.
    offer = to_shapeshifter(
        composed(flex_offer(request_id=sent.message_id, period=day, expiration_date_time=peak))
    )
    await asyncio.to_thread(client.send_flex_offer, offer)
    answer = await their_agr.next()
    assert isinstance(answer, ss.FlexOfferResponse)
    assert (answer.result, answer.flex_offer_message_id) == (
        ss.AcceptedRejected.ACCEPTED,
        offer.message_id,
    )
    # One for a request we never sent is not.
    stray = to_shapeshifter(
        composed(
            flex_offer(
                request_id="00000000-0000-4000-8000-00000000dead",
                period=day,
                expiration_date_time=peak,
            )
        )
    )
    await asyncio.to_thread(client.send_flex_offer, stray)
    refused = await their_agr.next()
    assert refused.result == ss.AcceptedRejected.REJECTED
    assert refused.rejection_reason == "Unknown FlexRequestMessageID reference"

    # Our FlexOrder of one option: their service reads the offer's ISPs, unchanged.
    entry = await book.get(Direction.RECEIVED, offer.message_id)
    ours = from_shapeshifter(offer)
    assert entry is not None and isinstance(ours, FlexOffer)
    order = order_for(
        dataclasses.replace(ours, message_id=offer.message_id),
        option_reference="full",
        activation_factor=Decimal(1),
        order_reference="order-1",
    )
    ordering = asyncio.create_task(
        send_recorded(
            dso,
            book,
            order,
            to=AGR,
            timeout=10,
            settle=(entry, (Standing.ACCEPTED,), Standing.ORDERED),
        )
    )
    their_order = await their_agr.next()
    assert isinstance(their_order, ss.FlexOrder)
    taken = from_shapeshifter(their_order)
    assert isinstance(taken, FlexOrder)
    assert taken.isps == order.isps and taken.flex_offer_message_id == offer.message_id
    await asyncio.to_thread(
        client.send_flex_order_response,
        ss.FlexOrderResponse(
            conversation_id=their_order.conversation_id,
            flex_order_message_id=their_order.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        ),
    )
    _, ordered = await ordering
    assert ordered.result is Result.ACCEPTED

    # Their revocation of the ordered offer (flex-offer-revocation.md: not allowed).
    revocation = ss.FlexOfferRevocation(flex_offer_message_id=offer.message_id)
    await asyncio.to_thread(client.send_flex_offer_revocation, revocation)
    verdict = await their_agr.next()
    assert isinstance(verdict, ss.FlexOfferRevocationResponse)
    assert (verdict.result, verdict.rejection_reason) == (
        ss.AcceptedRejected.REJECTED,
        ALREADY_ORDERED,
    )
    stored = await book.get(Direction.RECEIVED, offer.message_id)
    assert stored is not None and stored.standing is Standing.ORDERED
