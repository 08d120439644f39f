"""A DSO and an AGR trading flexibility on loopback with their ready-made flex handlers:
signed messages over HTTP, the checks of adapter.flex.rules on the state each keeps in its
store - which outlives a restart.

flex-request.md to flex-order.md: the DSO requests, the AGR offers against the request, the
DSO orders one offer, the AGR may revoke an offer not yet ordered.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapter.flex.desk import order_for, send_recorded
from adapter.flex.handlers import agr_flex_router, dso_flex_router, model_of
from adapter.flex.rules import ALREADY_ORDERED
from adapter.flex.state import Direction, Standing
from adapter.participant import Participant
from adapter.store import flex_book_for
from adapter.store.flex import FlexBook
from adapter.uftp.messages import (
    FlexOffer,
    FlexRequest,
    FlexSettlementResponse,
    PayloadMessage,
    Result,
    Role,
)
from tests.conftest import Network, eventually
from tests.flex.messages import (
    AGR,
    DSO,
    MARKET,
    NOW,
    flex_offer,
    flex_request,
    revocation,
    settlement,
)


def bare(message: PayloadMessage) -> Any:
    """A message as an application composes it: the participant fills the metadata."""
    return dataclasses.replace(
        message,
        version="",
        sender_domain="",
        recipient_domain="",
        time_stamp=None,
        message_id="",
        conversation_id="",
    )


async def start(network: Network, version: str = "3.1.0") -> tuple[Participant, Participant]:
    dso = network.create(DSO, Role.DSO, versions=(version,), store_name="dso")
    agr = network.create(AGR, Role.AGR, versions=(version,), store_name="agr")
    dso.router.include(
        dso_flex_router(flex_book_for(dso.store), MARKET, outbox=dso.store, clock=lambda: NOW)
    )
    agr.router.include(
        agr_flex_router(flex_book_for(agr.store), MARKET, outbox=agr.store, clock=lambda: NOW)
    )
    await network.start(dso, agr)
    network.introduce(dso, agr)
    return dso, agr


async def standing(book: FlexBook, direction: Direction, message_id: str) -> Standing | None:
    entry = await book.get(direction, message_id)
    return None if entry is None else entry.standing


async def comes_to(book: FlexBook, direction: Direction, message_id: str, to: Standing) -> None:
    async def there() -> bool:
        return await standing(book, direction, message_id) is to

    await eventually(there)


async def request_and_offer(dso: Participant, agr: Participant) -> tuple[FlexRequest, FlexOffer]:
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)
    request, response = await send_recorded(dso, dso_book, bare(flex_request()), to=AGR, timeout=10)
    assert isinstance(request, FlexRequest)
    assert response.result is Result.ACCEPTED, response.rejection_reason
    received = await agr_book.get(Direction.RECEIVED, request.message_id, peer_domain=DSO)
    assert received is not None and received.standing is Standing.ACCEPTED
    assert model_of(received, FlexRequest) == request  # kept whole, for the operator

    offer, response = await send_recorded(
        agr, agr_book, bare(flex_offer(request_id=request.message_id)), to=DSO, timeout=10
    )
    assert isinstance(offer, FlexOffer)
    assert response.result is Result.ACCEPTED, response.rejection_reason
    await comes_to(agr_book, Direction.SENT, offer.message_id, Standing.ACCEPTED)
    return request, offer


@pytest.mark.parametrize("version", ["3.1.0", "4.0.0"])
async def test_request_offer_order(network: Network, version: str) -> None:
    dso, agr = await start(network, version)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)
    request, offer = await request_and_offer(dso, agr)
    assert await standing(dso_book, Direction.SENT, request.message_id) is Standing.ACCEPTED

    received = await dso_book.get(Direction.RECEIVED, offer.message_id, peer_domain=AGR)
    assert received is not None
    order = order_for(
        offer, option_reference="partial", activation_factor=Decimal("0.75"), order_reference="o-1"
    )
    sent, response = await send_recorded(
        dso,
        dso_book,
        order,
        to=AGR,
        timeout=10,
        settle=(received, (Standing.ACCEPTED,), Standing.ORDERED),
    )
    assert response.result is Result.ACCEPTED, response.rejection_reason
    assert await standing(agr_book, Direction.SENT, offer.message_id) is Standing.ORDERED
    assert await standing(dso_book, Direction.RECEIVED, offer.message_id) is Standing.ORDERED
    await comes_to(dso_book, Direction.SENT, sent.message_id, Standing.ACCEPTED)

    # flex-offer-revocation.md: not once the offer is ordered.
    _, refused = await send_recorded(agr, agr_book, bare(revocation(offer)), to=DSO, timeout=10)
    assert (refused.result, refused.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)
    # A second order of the same offer.
    again = dataclasses.replace(order, order_reference="o-2")
    twice = await dso.request(again, to=AGR, timeout=10)
    assert (twice.result, twice.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)

    # flex-settlement-response.md: the order it accepted is Accepted, one it never took
    # (the second, refused) Disputed; an item outside the settlement period is invalid data.
    month = settlement(again)
    items = (settlement(order).flex_order_settlements[0], month.flex_order_settlements[0])
    settled = await dso.request(
        bare(dataclasses.replace(month, flex_order_settlements=items)), to=AGR, timeout=10
    )
    assert isinstance(settled, FlexSettlementResponse) and settled.accepted
    assert [(s.order_reference, s.disposition) for s in settled.flex_order_settlement_statuses] == [
        ("o-1", "Accepted"),
        ("o-2", "Disputed"),
    ]
    november = dataclasses.replace(
        settlement(order), period_start=date(2026, 11, 1), period_end=date(2026, 11, 30)
    )
    refused = await dso.request(bare(november), to=AGR, timeout=10)
    assert (refused.result, refused.rejection_reason) == (Result.REJECTED, "Period out of bounds")


async def test_an_offer_for_a_request_never_sent_and_an_order_of_a_revoked_offer(
    network: Network,
) -> None:
    dso, agr = await start(network)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)

    stray = bare(flex_offer(request_id="00000000-0000-4000-8000-00000000dead"))
    _, response = await send_recorded(agr, agr_book, stray, to=DSO, timeout=10)
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Unknown FlexRequestMessageID reference"

    _, offer = await request_and_offer(dso, agr)
    _, revoked = await send_recorded(agr, agr_book, bare(revocation(offer)), to=DSO, timeout=10)
    assert revoked.result is Result.ACCEPTED, revoked.rejection_reason
    assert await standing(dso_book, Direction.RECEIVED, offer.message_id) is Standing.REVOKED
    await comes_to(agr_book, Direction.SENT, offer.message_id, Standing.REVOKED)

    received = await dso_book.get(Direction.RECEIVED, offer.message_id)
    assert received is not None
    order = order_for(
        offer, option_reference="full", activation_factor=Decimal(1), order_reference="o-1"
    )
    # The DSO's desk will not order a revoked offer...
    with pytest.raises(LookupError, match="revoked"):
        await send_recorded(
            dso, dso_book, order, to=AGR, settle=(received, (Standing.ACCEPTED,), Standing.ORDERED)
        )
    # ...and the AGR refuses one that is sent all the same (message-validation.md).
    response = await dso.request(order, to=AGR, timeout=10)
    assert response.rejection_reason == "Reference message revoked"


async def test_the_conversation_outlives_a_restart(network: Network) -> None:
    """An offer sent before both participants restarted is ordered after, and ordered once."""
    dso, agr = await start(network)
    _, offer = await request_and_offer(dso, agr)
    await dso.stop()
    await agr.stop()

    dso, agr = await start(network)  # new processes, the same stores
    order = order_for(
        offer, option_reference="full", activation_factor=Decimal(1), order_reference="o-9"
    )
    first = await dso.request(order, to=AGR, timeout=10)
    assert first.result is Result.ACCEPTED, first.rejection_reason
    await agr.stop()
    agr = network.create(AGR, Role.AGR, store_name="agr")
    agr.router.include(
        agr_flex_router(flex_book_for(agr.store), MARKET, outbox=agr.store, clock=lambda: NOW)
    )
    await network.start(agr)
    network.introduce(dso, agr)
    second = await dso.request(
        dataclasses.replace(order, order_reference="o-10"), to=AGR, timeout=10
    )
    assert second.rejection_reason == ALREADY_ORDERED


async def test_messages_sent_without_the_desk_are_checked_all_the_same(network: Network) -> None:
    """A request, an offer and an order sent by `Participant.request` (user code, or a bus
    command) are not recorded as they leave: the receiver of what refers to them finds them
    in the sender's outbox, as they were signed."""
    dso, agr = await start(network)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)

    answered = await dso.request(bare(flex_request()), to=AGR, timeout=10)
    assert answered.result is Result.ACCEPTED, answered.rejection_reason
    request_id = answered.reference_message_id
    await comes_to(dso_book, Direction.SENT, request_id, Standing.ACCEPTED)

    offered = await agr.request(bare(flex_offer(request_id=request_id)), to=DSO, timeout=10)
    assert offered.result is Result.ACCEPTED, offered.rejection_reason
    offer_id = offered.reference_message_id
    await comes_to(agr_book, Direction.SENT, offer_id, Standing.ACCEPTED)

    offer = model_of(await dso_book.get(Direction.RECEIVED, offer_id), FlexOffer)
    assert offer is not None
    order = order_for(
        offer, option_reference="full", activation_factor=Decimal(1), order_reference="o-1"
    )
    ordered = await dso.request(order, to=AGR, timeout=10)
    assert ordered.result is Result.ACCEPTED, ordered.rejection_reason
    assert await standing(agr_book, Direction.SENT, offer_id) is Standing.ORDERED
    await comes_to(dso_book, Direction.RECEIVED, offer_id, Standing.ORDERED)
    revoked = await agr.request(bare(revocation(offer)), to=DSO, timeout=10)
    assert (revoked.result, revoked.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)
