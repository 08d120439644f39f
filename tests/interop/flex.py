"""What the flex interop tests (test_shapeshifter_flex*.py) set up: one participant of ours
with its ready-made flex handlers, live on loopback beside one of shapeshifter-uftp's
services, each in the other's address book, and their service's client for ours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from adapter.flex.handlers import agr_flex_router, dso_flex_router
from adapter.flex.rules import Market
from adapter.participant import Participant
from adapter.store import flex_book_for
from adapter.store.flex import FlexBook
from adapter.testing import Network
from adapter.uftp.messages import Role
from tests.flex.messages import CP
from tests.interop.conftest import TheirAggregators, TheirAgr, TheirDso, TheirSide

DSO, AGR = "dso.example-grid.nl", "agr.example.com"
#: The Versions their library speaks (and all three of ours have every flex message type).
THEIR_VERSIONS = ("3.0.0", "3.1.0")


S = TypeVar("S", TheirAgr, TheirDso)


class Trading(NamedTuple, Generic[S]):
    """Our participant, its flex book, their service and that service's client for ours."""

    ours: Participant
    book: FlexBook
    theirs: S
    client: Any  # theirs is untyped


async def our_dso_and_their_agr(
    network: Network, aggregators: TheirAggregators, version: str
) -> Trading[TheirAgr]:
    """Our DSO, speaking `version`, with congestion point CP, and their AGR."""
    their_agr = aggregators.agr(AGR)
    dso = network.create(DSO, Role.DSO, versions=(version,))
    book = flex_book_for(dso.store)
    market = Market(timedelta(minutes=15), "Europe/Amsterdam", {CP: True})
    dso.router.include(dso_flex_router(book, market, outbox=dso.store))
    await network.start(dso)
    aggregators.introduce(dso, their_agr)
    return Trading(dso, book, their_agr, their_agr.dso_client(DSO, version=version))


async def our_agr_and_their_dso(
    network: Network, side: TheirSide, version: str
) -> Trading[TheirDso]:
    """Our AGR, speaking `version`, and their DSO."""
    their_dso = side.dso(DSO)
    agr = network.create(AGR, Role.AGR, versions=(version,))
    book = flex_book_for(agr.store)
    market = Market(timedelta(minutes=15), "Europe/Amsterdam")
    agr.router.include(agr_flex_router(book, market, outbox=agr.store))
    await network.start(agr)
    side.introduce(agr, their_dso)
    return Trading(agr, book, their_dso, their_dso.agr_client(AGR, version=version))
