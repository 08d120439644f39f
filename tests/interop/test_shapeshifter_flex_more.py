"""The rest of the flex message set with shapeshifter-uftp's services, live on loopback, both
ways round and in each Version their library speaks (3.0.0 and 3.1.0):

- our DSO and their AGR: our FlexReservationUpdate, which their AGR answers; their
  D-Prognosis and Metering, which our DSO checks, keeps and answers;
- their DSO and our AGR: their FlexReservationUpdate, which our AGR checks, keeps and
  answers; our D-Prognosis and Metering, which their DSO answers.

(FlexRequest, FlexOffer, FlexOrder, FlexOfferRevocation and FlexSettlement: in
test_shapeshifter_flex.py.) Their services only record what they receive; the tests answer
through their clients, as their operator's code would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from adapter.flex.desk import send_recorded
from adapter.flex.handlers import model_of
from adapter.flex.state import Direction, Standing
from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter
from adapter.testing import Network, composed
from adapter.uftp.errors import Reason
from adapter.uftp.messages import (
    DPrognosis,
    FlexReservationUpdate,
    FlexReservationUpdateISP,
    Metering,
    Result,
)
from tests.flex.messages import d_prognosis, metering, reservation_update
from tests.interop.conftest import TheirAggregators, TheirSide
from tests.interop.flex import (
    AGR,
    DSO,
    THEIR_VERSIONS,
    our_agr_and_their_dso,
    our_dso_and_their_agr,
)

ss = pytest.importorskip("shapeshifter_uftp.uftp")
ACCEPTED, REJECTED = "Accepted", "Rejected"


def days() -> tuple[datetime, datetime]:
    """A coming day (for a reservation or a prognosis) and a past one (for metering)."""
    today = datetime.now(UTC)
    return today + timedelta(days=2), today - timedelta(days=2)


@pytest.mark.parametrize("version", THEIR_VERSIONS)
async def test_our_dso_with_their_aggregator(
    network: Network, shapeshifter: TheirSide, shapeshifter_agr: TheirAggregators, version: str
) -> None:
    dso, book, their_agr, client = await our_dso_and_their_agr(network, shapeshifter_agr, version)
    coming, past = days()

    # Our FlexReservationUpdate; their operator accepts it.
    update = composed(reservation_update(period=coming.date()))
    sending = asyncio.create_task(send_recorded(dso, book, update, to=AGR, timeout=10))
    received = await their_agr.next()
    assert isinstance(received, ss.FlexReservationUpdate) and received.version == version
    theirs = from_shapeshifter(received)
    assert isinstance(theirs, FlexReservationUpdate)
    assert (theirs.isps, theirs.contract_id, theirs.reference) == (
        update.isps,
        update.contract_id,
        update.reference,
    )
    await asyncio.to_thread(
        client.send_flex_reservation_update_response,
        ss.FlexReservationUpdateResponse(
            conversation_id=received.conversation_id,
            flex_reservation_update_message_id=received.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        ),
    )
    sent, response = await sending
    assert response.result is Result.ACCEPTED
    entry = await book.get(Direction.SENT, sent.message_id)
    assert entry is not None and entry.standing is Standing.ACCEPTED

    # Their D-Prognosis: checked, kept and accepted; the same revision again is not.
    prognosis = to_shapeshifter(composed(d_prognosis(period=coming.date())))
    await asyncio.to_thread(client.send_d_prognosis, prognosis)
    answer = await their_agr.next()
    assert isinstance(answer, ss.DPrognosisResponse) and answer.version == version
    assert (answer.result, answer.d_prognosis_message_id) == (ACCEPTED, prognosis.message_id)
    kept = await book.get(Direction.RECEIVED, prognosis.message_id, peer_domain=AGR)
    assert kept is not None and kept.standing is Standing.ACCEPTED
    assert model_of(kept, DPrognosis) == from_shapeshifter(prognosis)
    again = to_shapeshifter(composed(d_prognosis(period=coming.date())))
    await asyncio.to_thread(client.send_d_prognosis, again)
    refused = await their_agr.next()
    assert (refused.result, refused.rejection_reason) == (
        REJECTED,
        Reason.SUBORDINATE_SEQUENCE_NUMBER,
    )

    # Their Metering of a past day: kept and accepted; of a coming day, not.
    reading = to_shapeshifter(composed(metering(period=past.date())))
    await asyncio.to_thread(client.send_metering, reading)
    answer = await their_agr.next()
    assert isinstance(answer, ss.MeteringResponse)
    assert (answer.result, answer.metering_message_id) == (ACCEPTED, reading.message_id)
    kept = await book.get(Direction.RECEIVED, reading.message_id, peer_domain=AGR)
    assert kept is not None and model_of(kept, Metering) == from_shapeshifter(reading)
    early = to_shapeshifter(composed(metering(period=coming.date())))
    await asyncio.to_thread(client.send_metering, early)
    refused = await their_agr.next()
    assert (refused.result, refused.rejection_reason) == (REJECTED, Reason.PERIOD_OUT_OF_BOUNDS)


@pytest.mark.parametrize("version", THEIR_VERSIONS)
async def test_their_dso_with_our_aggregator(
    network: Network, shapeshifter: TheirSide, version: str
) -> None:
    agr, book, their_dso, client = await our_agr_and_their_dso(network, shapeshifter, version)
    coming, past = days()

    # Their FlexReservationUpdate: checked, kept, accepted; one beyond the day's ISPs not.
    update = to_shapeshifter(composed(reservation_update(period=coming.date())))
    await asyncio.to_thread(client.send_flex_reservation_update, update)
    answer = await their_dso.next()
    assert isinstance(answer, ss.FlexReservationUpdateResponse) and answer.version == version
    assert (answer.result, answer.flex_reservation_update_message_id) == (
        ACCEPTED,
        update.message_id,
    )
    kept = await book.get(Direction.RECEIVED, update.message_id, peer_domain=DSO)
    assert kept is not None and kept.standing is Standing.ACCEPTED
    assert model_of(kept, FlexReservationUpdate) == from_shapeshifter(update)
    beyond = to_shapeshifter(
        composed(
            reservation_update(period=coming.date(), isps=(FlexReservationUpdateISP(95, -1000, 4),))
        )
    )
    await asyncio.to_thread(client.send_flex_reservation_update, beyond)
    refused = await their_dso.next()
    assert (refused.result, refused.rejection_reason) == (REJECTED, Reason.ISPS_OUT_OF_BOUNDS)

    # Our D-Prognosis; their operator accepts it.
    prognosis = composed(d_prognosis(period=coming.date()))
    sending = asyncio.create_task(send_recorded(agr, book, prognosis, to=DSO, timeout=10))
    received = await their_dso.next()
    assert isinstance(received, ss.DPrognosis) and received.version == version
    assert from_shapeshifter(received).isps == prognosis.isps  # type: ignore[attr-defined]
    await asyncio.to_thread(
        client.send_d_prognosis_response,
        ss.DPrognosisResponse(
            conversation_id=received.conversation_id,
            d_prognosis_message_id=received.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        ),
    )
    sent, response = await sending
    assert response.result is Result.ACCEPTED
    entry = await book.get(Direction.SENT, sent.message_id)
    assert entry is not None and entry.standing is Standing.ACCEPTED

    # Our Metering; their operator rejects it, and our entry says why.
    reading = composed(metering(period=past.date()))
    sending = asyncio.create_task(send_recorded(agr, book, reading, to=DSO, timeout=10))
    received = await their_dso.next()
    assert isinstance(received, ss.Metering) and received.version == version
    ours = from_shapeshifter(received)
    assert isinstance(ours, Metering) and ours.profiles == reading.profiles
    await asyncio.to_thread(
        client.send_metering_response,
        ss.MeteringResponse(
            conversation_id=received.conversation_id,
            metering_message_id=received.message_id,
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason="Metering not required for this program",
        ),
    )
    sent, response = await sending
    assert response.result is Result.REJECTED
    entry = await book.get(Direction.SENT, sent.message_id)
    assert entry is not None and entry.standing is Standing.REJECTED
    assert entry.reason == "Metering not required for this program"
