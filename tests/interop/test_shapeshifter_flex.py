"""Flex trading with shapeshifter-uftp's services, live on loopback, both ways round:

- our DSO and their AGR: our FlexRequest, their FlexOffer for it, our FlexOrder of it, their
  revocation after the order;
- their DSO and our AGR: their FlexRequest, our FlexOffer, their FlexOrder (twice), their
  FlexSettlement.

Our side runs its ready-made flex handlers (adapter.flex): what theirs sends is checked
against the conversation our store keeps, exactly as for a participant of ours. Their
services only record what they receive; the tests answer through their clients, as their
operator's code would.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from adapter.flex.desk import order_for, send_recorded
from adapter.flex.handlers import model_of
from adapter.flex.rules import ALREADY_ORDERED
from adapter.flex.state import Direction, Standing
from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter
from adapter.testing import Network, composed
from adapter.uftp.messages import (
    AvailableRequested,
    FlexOffer,
    FlexOrder,
    FlexRequest,
    FlexRequestISP,
    Result,
)
from tests.flex.messages import flex_offer, flex_order, flex_request, settlement
from tests.interop.conftest import TheirAggregators, TheirSide
from tests.interop.flex import (
    AGR,
    DSO,
    THEIR_VERSIONS,
    our_agr_and_their_dso,
    our_dso_and_their_agr,
)

ss = pytest.importorskip("shapeshifter_uftp.uftp")


@pytest.mark.parametrize("version", THEIR_VERSIONS)
async def test_request_offer_order_with_their_aggregator(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators, version: str
) -> None:
    dso, book, their_agr, client = await our_dso_and_their_agr(network, shapeshifter_agr, version)
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    peak = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=15)

    # Our FlexRequest; their operator accepts it.
    request = composed(flex_request(period=day, expiration_date_time=peak))
    asking = asyncio.create_task(send_recorded(dso, book, request, to=AGR, timeout=10))
    received = await their_agr.next()
    assert isinstance(received, ss.FlexRequest) and received.version == version
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


@pytest.mark.parametrize("version", THEIR_VERSIONS)
async def test_their_dso_requests_orders_and_settles_with_our_aggregator(
    network: Network, shapeshifter: TheirSide, version: str
) -> None:
    agr, book, their_dso, client = await our_agr_and_their_dso(network, shapeshifter, version)
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    peak = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=15)

    # Their FlexRequest: checked by our AGR and kept for its operator.
    request = to_shapeshifter(composed(flex_request(period=day, expiration_date_time=peak)))
    await asyncio.to_thread(client.send_flex_request, request)
    answer = await their_dso.next()
    assert isinstance(answer, ss.FlexRequestResponse) and answer.version == version
    assert answer.result == ss.AcceptedRejected.ACCEPTED, answer.rejection_reason
    kept = await book.get(Direction.RECEIVED, request.message_id, peer_domain=DSO)
    assert kept is not None and kept.standing is Standing.ACCEPTED
    # One for a day with fewer ISPs than it names (message-validation.md).
    spring = to_shapeshifter(
        composed(
            flex_request(
                period=date(2027, 3, 28),
                expiration_date_time=datetime(2027, 3, 27, tzinfo=UTC),
                isps=(FlexRequestISP(89, -1, 0, 8, AvailableRequested.REQUESTED),),
            )
        )
    )
    await asyncio.to_thread(client.send_flex_request, spring)
    refused = await their_dso.next()
    assert refused.result == ss.AcceptedRejected.REJECTED
    assert refused.rejection_reason == "ISPs out of bounds"

    # Our FlexOffer for it; their operator accepts it.
    ours = model_of(kept, FlexRequest)
    assert ours is not None
    offer = dataclasses.replace(
        composed(flex_offer(request_id=ours.message_id, period=day, expiration_date_time=peak)),
        congestion_point=ours.congestion_point,
    )
    offering = asyncio.create_task(send_recorded(agr, book, offer, to=DSO, timeout=10))
    their_offer = await their_dso.next()
    assert isinstance(their_offer, ss.FlexOffer)
    await asyncio.to_thread(
        client.send_flex_offer_response,
        ss.FlexOfferResponse(
            conversation_id=their_offer.conversation_id,
            flex_offer_message_id=their_offer.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        ),
    )
    sent, response = await offering
    assert isinstance(sent, FlexOffer) and response.result is Result.ACCEPTED

    # Their FlexOrder of it, accepted once; a second order of the same offer is not.
    order = to_shapeshifter(composed(flex_order(sent, period=day)))
    await asyncio.to_thread(client.send_flex_order, order)
    taken = await their_dso.next()
    assert isinstance(taken, ss.FlexOrderResponse)
    assert taken.result == ss.AcceptedRejected.ACCEPTED, taken.rejection_reason
    again = to_shapeshifter(composed(flex_order(sent, period=day, order_reference="order-2")))
    await asyncio.to_thread(client.send_flex_order, again)
    twice = await their_dso.next()
    assert (twice.result, twice.rejection_reason) == (ss.AcceptedRejected.REJECTED, ALREADY_ORDERED)

    # Their FlexSettlement: our AGR confirms the order it took, disputes the other.
    ordered = from_shapeshifter(order)
    refused_order = from_shapeshifter(again)
    assert isinstance(ordered, FlexOrder) and isinstance(refused_order, FlexOrder)
    month = settlement(ordered)
    items = month.flex_order_settlements + settlement(refused_order).flex_order_settlements
    bill = to_shapeshifter(
        composed(
            dataclasses.replace(
                month,
                period_start=day.replace(day=1),
                period_end=day.replace(day=calendar.monthrange(day.year, day.month)[1]),
                flex_order_settlements=items,
            )
        )
    )
    await asyncio.to_thread(client.send_flex_settlement, bill)
    verdict = await their_dso.next()
    assert isinstance(verdict, ss.FlexSettlementResponse)
    assert verdict.result == ss.AcceptedRejected.ACCEPTED
    statuses = from_shapeshifter(verdict).flex_order_settlement_statuses  # type: ignore[attr-defined]
    assert [(status.order_reference, status.disposition) for status in statuses] == [
        ("order-1", "Accepted"),
        ("order-2", "Disputed"),
    ]
