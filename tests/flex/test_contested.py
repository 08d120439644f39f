"""An offer contested between a handler's read of it and its move: a FlexOfferRevocation and
a FlexOrder check the offer, then move it in one conditional step (`FlexBook.settle`); when
another message moved it in between, they check again where it stands now, and give up
as "already ordered" after three lost races.

The books are the participants' real ones; `Contested` makes the other message's move, in
the same book, just before the handler's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from decimal import Decimal
from typing import Any

from adapter.flex.desk import order_for
from adapter.flex.handlers import agr_flex_router, dso_flex_router
from adapter.flex.rules import ALREADY_ORDERED
from adapter.flex.state import Direction, Standing
from adapter.participant import Participant
from adapter.store import flex_book_for
from adapter.store.flex import FlexBook
from adapter.testing import Network
from adapter.uftp.messages import FlexOffer, Result, Role
from tests.flex.messages import AGR, DSO, MARKET, NOW, flex_offer, flex_request, revocation
from tests.flex.test_flex_trading import bare, comes_to

OTHER = "00000000-0000-4000-8000-00000000beef"  # the MessageID of the other message


class Contested:
    """The book of a participant's store (made by calling this with the store), where each
    of the next `races` moves to `contested` is preceded by another message's move of the
    same entry (`before`) and, if given, followed by one (`after`)."""

    def __init__(
        self,
        contested: Standing,
        before: tuple[Standing, Standing],
        after: tuple[Standing, Standing] | None = None,
        races: int = 1,
    ) -> None:
        self._contested = contested
        self._before = before
        self._after = after
        self.races = races

    def __call__(self, store: Any) -> FlexBook:
        self._book = flex_book_for(store)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._book, name)

    async def settle(
        self,
        direction: Direction,
        peer_domain: str,
        message_id: str,
        *,
        from_: Collection[Standing],
        to: Standing,
        by: str | None,
        reasons: Sequence[str] = (),
    ) -> bool:
        async def other(move: tuple[Standing, Standing]) -> None:
            moved = await self._book.settle(
                direction, peer_domain, message_id, from_=(move[0],), to=move[1], by=OTHER
            )
            assert moved

        racing = to is self._contested and self.races > 0
        if racing:
            self.races -= 1
            await other(self._before)
        settled = await self._book.settle(
            direction, peer_domain, message_id, from_=from_, to=to, by=by, reasons=reasons
        )
        if racing and self._after is not None:
            await other(self._after)
        return settled


BookOf = Callable[[Any], FlexBook]


async def start_with(
    network: Network, *, dso_book: BookOf = flex_book_for, agr_book: BookOf = flex_book_for
) -> tuple[Participant, Participant]:
    """A DSO and an AGR with their flex handlers, each on the book made of its store."""
    dso = network.create(DSO, Role.DSO, store_name="dso")
    agr = network.create(AGR, Role.AGR, store_name="agr")
    dso.router.include(
        dso_flex_router(dso_book(dso.store), MARKET, outbox=dso.store, clock=lambda: NOW)
    )
    agr.router.include(
        agr_flex_router(agr_book(agr.store), MARKET, outbox=agr.store, clock=lambda: NOW)
    )
    await network.start(dso, agr)
    network.introduce(dso, agr)
    return dso, agr


async def offered(dso: Participant, agr: Participant) -> FlexOffer:
    """A FlexRequest from the DSO and the AGR's FlexOffer for it, both accepted."""
    request = await dso.request(bare(flex_request()), to=AGR, timeout=10)
    assert request.result is Result.ACCEPTED, request.rejection_reason
    offer: FlexOffer = bare(flex_offer(request_id=request.reference_message_id))
    response = await agr.request(offer, to=DSO, timeout=10)
    assert response.result is Result.ACCEPTED, response.rejection_reason
    offer = dataclasses.replace(offer, message_id=response.reference_message_id)
    await comes_to(flex_book_for(agr.store), Direction.SENT, offer.message_id, Standing.ACCEPTED)
    return offer


def order_of(offer: FlexOffer) -> Any:
    order = order_for(
        offer, option_reference="full", activation_factor=Decimal(1), order_reference="o-1"
    )
    return bare(order)


async def test_a_revocation_that_finds_the_offer_ordered_meanwhile_is_refused(
    network: Network,
) -> None:
    contested = Contested(
        Standing.REVOKED,
        before=(Standing.ACCEPTED, Standing.ORDERED),
    )
    dso, agr = await start_with(network, dso_book=contested)
    offer = await offered(dso, agr)
    revoked = await agr.request(bare(revocation(offer)), to=DSO, timeout=10)

    assert (revoked.result, revoked.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)
    entry = await flex_book_for(dso.store).get(Direction.RECEIVED, offer.message_id)
    assert entry is not None and (entry.standing, entry.settled_by) == (Standing.ORDERED, OTHER)
    assert contested.races == 0


async def test_a_revocation_that_loses_every_race_is_refused_after_three(
    network: Network,
) -> None:
    """Ordered and the order refused again, before each of its moves: the offer stays
    accepted, and the revocation is given up as the offer being ordered."""
    contested = Contested(
        Standing.REVOKED,
        before=(Standing.ACCEPTED, Standing.ORDERED),
        after=(Standing.ORDERED, Standing.ACCEPTED),
        races=4,
    )
    dso, agr = await start_with(network, dso_book=contested)
    offer = await offered(dso, agr)
    revoked = await agr.request(bare(revocation(offer)), to=DSO, timeout=10)

    assert (revoked.result, revoked.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)
    entry = await flex_book_for(dso.store).get(Direction.RECEIVED, offer.message_id)
    assert entry is not None and entry.standing is Standing.ACCEPTED
    assert contested.races == 1  # three tries, no fourth


async def test_an_order_that_finds_the_offer_revoked_meanwhile_is_refused_as_revoked(
    network: Network,
) -> None:
    contested = Contested(
        Standing.ORDERED,
        before=(Standing.ACCEPTED, Standing.REVOKED),
    )
    dso, agr = await start_with(network, agr_book=contested)
    offer = await offered(dso, agr)
    ordered = await dso.request(order_of(offer), to=AGR, timeout=10)

    assert (ordered.result, ordered.rejection_reason) == (
        Result.REJECTED,
        "Reference message revoked",
    )
    entry = await flex_book_for(agr.store).get(Direction.SENT, offer.message_id)
    assert entry is not None and (entry.standing, entry.settled_by) == (Standing.REVOKED, OTHER)
    assert contested.races == 0


async def test_an_order_that_loses_every_race_is_refused_after_three(network: Network) -> None:
    contested = Contested(
        Standing.ORDERED,
        before=(Standing.ACCEPTED, Standing.REVOKED),
        after=(Standing.REVOKED, Standing.ACCEPTED),
        races=4,
    )
    dso, agr = await start_with(network, agr_book=contested)
    offer = await offered(dso, agr)
    ordered = await dso.request(order_of(offer), to=AGR, timeout=10)

    assert (ordered.result, ordered.rejection_reason) == (Result.REJECTED, ALREADY_ORDERED)
    entry = await flex_book_for(agr.store).get(Direction.SENT, offer.message_id)
    assert entry is not None and entry.standing is Standing.ACCEPTED
    assert contested.races == 1  # three tries, no fourth
