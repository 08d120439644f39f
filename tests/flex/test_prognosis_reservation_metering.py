"""FlexReservationUpdate, D-Prognosis and Metering between two participants of ours running
the ready-made flex handlers: each checked by its receiver, kept in its store, and answered;
the sender's entry moved by the answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.flex.desk import order_for, send_recorded
from adapter.flex.handlers import model_of
from adapter.flex.rules import INCOMPLETE_PROGNOSIS
from adapter.flex.state import Direction, Standing
from adapter.store import flex_book_for
from adapter.uftp.errors import Reason
from adapter.uftp.messages import (
    DPrognosis,
    DPrognosisISP,
    DPrognosisResponse,
    FlexOrderStatus,
    FlexReservationUpdate,
    Metering,
    Result,
)
from tests.conftest import Network
from tests.flex.messages import AGR, DAY, DSO, d_prognosis, metering, reservation_update
from tests.flex.test_flex_trading import bare, comes_to, request_and_offer, start


@pytest.mark.parametrize("version", ["3.0.0", "3.1.0", "4.0.0"])
async def test_reservation_update_prognosis_and_metering(network: Network, version: str) -> None:
    dso, agr = await start(network, version)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)

    update, answer = await send_recorded(
        dso, dso_book, bare(reservation_update()), to=AGR, timeout=10
    )
    assert answer.result is Result.ACCEPTED, answer.rejection_reason
    kept = await agr_book.get(Direction.RECEIVED, update.message_id, peer_domain=DSO)
    assert kept is not None and kept.standing is Standing.ACCEPTED
    assert model_of(kept, FlexReservationUpdate) == update
    await comes_to(dso_book, Direction.SENT, update.message_id, Standing.ACCEPTED)

    prognosis, answer = await send_recorded(agr, agr_book, bare(d_prognosis()), to=DSO, timeout=10)
    assert isinstance(answer, DPrognosisResponse) and answer.result is Result.ACCEPTED
    assert answer.flex_order_statuses == ()  # nothing ordered yet
    kept = await dso_book.get(Direction.RECEIVED, prognosis.message_id, peer_domain=AGR)
    assert kept is not None and kept.standing is Standing.ACCEPTED and kept.revision == 1
    await comes_to(agr_book, Direction.SENT, prognosis.message_id, Standing.ACCEPTED)

    # The same revision again is not; nor one that leaves ISPs out.
    same = await agr.request(bare(d_prognosis()), to=DSO, timeout=10)
    assert (same.result, same.rejection_reason) == (
        Result.REJECTED,
        Reason.SUBORDINATE_SEQUENCE_NUMBER,
    )
    short = await agr.request(
        bare(d_prognosis(revision=2, isps=(DPrognosisISP(1, 0, 95),))), to=DSO, timeout=10
    )
    assert (short.result, short.rejection_reason) == (Result.REJECTED, INCOMPLETE_PROGNOSIS)

    reading, answer = await send_recorded(agr, agr_book, bare(metering()), to=DSO, timeout=10)
    assert answer.result is Result.ACCEPTED, answer.rejection_reason
    kept = await dso_book.get(Direction.RECEIVED, reading.message_id, peer_domain=AGR)
    assert kept is not None and model_of(kept, Metering) == reading
    future = await agr.request(bare(metering(period=DAY)), to=DSO, timeout=10)
    assert (future.result, future.rejection_reason) == (Result.REJECTED, "Period out of bounds")


async def test_a_prognosis_answers_for_the_orders_of_its_day(network: Network) -> None:
    """d-prognosis-response.md: a FlexOrderStatus for each order of the Period, validated
    when the prognosis reflects it against the one the DSO held when it ordered."""
    dso, agr = await start(network)
    dso_book, agr_book = flex_book_for(dso.store), flex_book_for(agr.store)
    first, answer = await send_recorded(agr, agr_book, bare(d_prognosis()), to=DSO, timeout=10)
    assert answer.result is Result.ACCEPTED
    _, offer = await request_and_offer(dso, agr)
    order = order_for(
        offer, option_reference="partial", activation_factor=Decimal("0.75"), order_reference="o-1"
    )
    sent, ordered = await send_recorded(dso, dso_book, order, to=AGR, timeout=10)
    assert ordered.result is Result.ACCEPTED
    await comes_to(dso_book, Direction.SENT, sent.message_id, Standing.ACCEPTED)

    moved = d_prognosis(
        revision=2,
        isps=(
            DPrognosisISP(1, 300_000, 68),
            DPrognosisISP(69, 225_000, 4),
            DPrognosisISP(73, 262_500, 4),
            DPrognosisISP(77, 300_000, 20),
        ),
    )
    _, answer = await send_recorded(agr, agr_book, bare(moved), to=DSO, timeout=10)
    assert isinstance(answer, DPrognosisResponse) and answer.result is Result.ACCEPTED
    assert answer.flex_order_statuses == (FlexOrderStatus(sent.message_id, True),)
    unmoved = await agr.request(bare(d_prognosis(revision=3)), to=DSO, timeout=10)
    assert isinstance(unmoved, DPrognosisResponse)
    assert unmoved.flex_order_statuses == (FlexOrderStatus(sent.message_id, False),)
    assert isinstance(
        model_of(await dso_book.get(Direction.RECEIVED, first.message_id), DPrognosis), DPrognosis
    )
