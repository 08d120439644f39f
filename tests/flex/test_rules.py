"""The checks of message-validation.md and the flex pages that a receiver makes beyond the
schema, as the pure core (adapter.flex.rules) makes them: message + state + time -> reasons."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from adapter.flex.handlers import entry_of
from adapter.flex.rules import (
    ACTIVATION_BELOW_MINIMUM,
    ALREADY_ORDERED,
    CURRENCY_MISMATCH,
    ISPS_MISMATCH,
    MIN_ABOVE_MAX_POWER,
    MULTIPLE_OPTIONS,
    NOT_ACCEPTED,
    NOTHING_REQUESTED,
    POWER_OUT_OF_BOUNDS,
    UNKNOWN_OPTION,
    Market,
    check_flex_offer,
    check_flex_order,
    check_flex_request,
    check_revocation,
    isp_reasons,
    isps_per_day,
)
from adapter.flex.state import Direction, Entry, Standing
from adapter.uftp import codec
from adapter.uftp.messages import (
    AvailableRequested,
    FlexOfferOptionISP,
    FlexOrderISP,
    FlexRequestISP,
    PayloadMessage,
)
from tests.flex.messages import (
    AGR,
    DSO,
    MARKET,
    NOW,
    OTHER_CP,
    flex_offer,
    flex_order,
    flex_request,
    revocation,
)


def entry(
    message: PayloadMessage, direction: Direction, standing: Standing, **changes: object
) -> Entry:
    peer = message.recipient_domain if direction is Direction.SENT else message.sender_domain
    made = entry_of(
        message,
        direction=direction,
        peer_domain=peer,
        inner_xml=codec.encode(message),
        recorded_at=NOW,
        standing=standing,
    )
    return dataclasses.replace(made, **changes)


# --- ISPs of a Period -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "count"),
    [
        (date(2026, 3, 29), 92),  # clocks go forward: 23 hours
        (date(2026, 6, 1), 96),
        (date(2026, 10, 25), 100),  # clocks go back: 25 hours
    ],
)
def test_a_day_has_as_many_isps_as_its_hours_in_the_markets_time_zone(
    day: date, count: int
) -> None:
    """message-validation.md, "ISPs out of bounds": 96 - 4 = 92 or 96 + 4 = 100 with DST."""
    assert isps_per_day(day, MARKET) == count
    assert isp_reasons([(1, count)], day, MARKET) == []
    assert isp_reasons([(count, 2)], day, MARKET) == ["ISPs out of bounds"]


def test_a_day_without_dst_has_96_isps_always() -> None:
    assert isps_per_day(date(2026, 3, 29), Market(time_zone="Asia/Tokyo")) == 96
    assert isps_per_day(date(2026, 3, 29), Market(timedelta(hours=1))) == 23


def test_isps_defined_twice_conflict_and_none_at_all_are_out_of_bounds() -> None:
    """message-validation.md's own example: Start=1 Duration=4, then Start=2."""
    assert isp_reasons([(1, 4), (2, 1)], date(2026, 6, 1), MARKET) == ["ISP conflict"]
    assert isp_reasons([], date(2026, 6, 1), MARKET) == ["ISPs out of bounds"]
    assert isp_reasons([(0, 1)], date(2026, 6, 1), MARKET) == ["ISPs out of bounds"]


def test_a_request_with_92_isps_on_the_spring_day_passes_and_with_96_does_not() -> None:
    spring = date(2027, 3, 28)
    isps = (FlexRequestISP(1, -1, 1, 92, AvailableRequested.REQUESTED),)
    assert (
        check_flex_request(
            flex_request(period=spring, isps=isps, expiration_date_time=NOW + timedelta(days=1)),
            now=NOW,
            market=MARKET,
            latest_revision=None,
        )
        == []
    )
    too_many = (FlexRequestISP(1, -1, 1, 96, AvailableRequested.REQUESTED),)
    assert "ISPs out of bounds" in check_flex_request(
        flex_request(period=spring, isps=too_many, expiration_date_time=NOW + timedelta(days=1)),
        now=NOW,
        market=MARKET,
        latest_revision=None,
    )


# --- FlexRequest ------------------------------------------------------------------------------


def request_reasons(latest: int | None = None, now: datetime = NOW, **changes: object) -> list[str]:
    return check_flex_request(
        flex_request(**changes), now=now, market=MARKET, latest_revision=latest
    )


def test_a_well_formed_request_passes() -> None:
    assert request_reasons() == []


def test_the_markets_isp_duration_and_time_zone_offsets() -> None:
    """ISP duration rejected; TimeZone rejected for another UTC offset - not another name."""
    assert request_reasons(isp_duration=timedelta(minutes=5)) == ["ISP duration rejected"]
    assert request_reasons(time_zone="Europe/London") == ["TimeZone rejected"]
    assert request_reasons(time_zone="Europe/Berlin") == []


def test_a_period_in_the_past_and_an_expiration_out_of_bounds() -> None:
    later = NOW + timedelta(days=3)
    assert "Period out of bounds" in request_reasons(now=later)
    assert request_reasons(expiration_date_time=NOW - timedelta(seconds=1)) == [
        "ExpirationDateTime out of bounds"
    ]
    # Beyond the end of the request's last ISP (the end of the day here).
    assert request_reasons(expiration_date_time=datetime(2026, 12, 7, 23, 0, 1, tzinfo=UTC)) == [
        "ExpirationDateTime out of bounds"
    ]


def test_powers_revisions_and_something_requested() -> None:
    """flex-request-response.md: a higher sequence number accepted before, or no ISP with
    Disposition=Requested; flex-request.md: MinPower is the lower bound."""
    assert request_reasons(latest=1) == ["Subordinate sequence number"]
    assert request_reasons(latest=1, revision=2) == []
    upside_down = (FlexRequestISP(69, 10, -10, 8, AvailableRequested.REQUESTED),)
    assert request_reasons(isps=upside_down) == [MIN_ABOVE_MAX_POWER]
    available = (FlexRequestISP(69, -10, 10, 8, AvailableRequested.AVAILABLE),)
    assert request_reasons(isps=available) == [NOTHING_REQUESTED]


# --- FlexOffer --------------------------------------------------------------------------------


def offer_reasons(sent: Entry | None = None, now: datetime = NOW, **changes: object) -> list[str]:
    offer = flex_offer(**changes)
    if sent is None:
        sent = entry(flex_request(), Direction.SENT, Standing.ACCEPTED)
    request = codec.decode(sent.inner_xml)
    return check_flex_offer(offer, request=request, request_entry=sent, now=now, market=MARKET)


def test_an_offer_for_our_request_passes() -> None:
    assert offer_reasons() == []


def test_an_offer_for_an_unknown_request() -> None:
    offer = flex_offer()
    reasons = check_flex_offer(offer, request=None, request_entry=None, now=NOW, market=MARKET)
    assert reasons == ["Unknown FlexRequestMessageID reference"]
    unsolicited = flex_offer(request_id=None, unsolicited=True)
    assert (
        check_flex_offer(unsolicited, request=None, request_entry=None, now=NOW, market=MARKET)
        == []
    )


def test_an_offer_for_an_expired_request() -> None:
    """The request's ExpirationDateTime passed before the offer came."""
    sent = entry(flex_request(), Direction.SENT, Standing.ACCEPTED)
    late = sent.expires_at + timedelta(minutes=1)
    assert offer_reasons(sent, now=late, expiration_date_time=late + timedelta(minutes=5)) == [
        "Reference message expired"
    ]


def test_an_offer_for_another_period_or_point_or_beyond_the_requested_power() -> None:
    sent = entry(flex_request(), Direction.SENT, Standing.ACCEPTED)
    next_day = date(2026, 12, 8)
    assert offer_reasons(sent, period=next_day) == ["Reference Period mismatch"]
    assert offer_reasons(sent, congestion_point="ea1.2026-01.nl.example-grid:cp-east") == [
        "Invalid CongestionPoint"
    ]
    too_much = dataclasses.replace(
        flex_offer().offer_options[0], isps=(FlexOfferOptionISP(69, -300_000, 8),)
    )
    assert offer_reasons(sent, offer_options=(too_much,)) == [POWER_OUT_OF_BOUNDS]


def test_several_options_where_the_point_takes_no_mutually_exclusive_offers() -> None:
    """flex-offer.md, OfferOption; the DSO's portfolio says which points take them."""
    request = flex_request(congestion_point=OTHER_CP)
    sent = entry(request, Direction.SENT, Standing.ACCEPTED)
    assert offer_reasons(sent, congestion_point=OTHER_CP) == [MULTIPLE_OPTIONS]
    one = flex_offer().offer_options[:1]
    assert offer_reasons(sent, congestion_point=OTHER_CP, offer_options=one) == []


# --- FlexOfferRevocation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("standing", "reason"),
    [
        (Standing.ACCEPTED, None),
        (Standing.ORDERED, ALREADY_ORDERED),
        (Standing.REVOKED, "Reference message revoked"),
        (Standing.REJECTED, NOT_ACCEPTED),
    ],
)
def test_a_revocation_of_an_offer(standing: Standing, reason: str | None) -> None:
    """flex-offer-revocation.md: "Revocation is not allowed for FlexOffers that already have
    associated accepted FlexOrders"."""
    offer = flex_offer()
    received = entry(offer, Direction.RECEIVED, standing, settled_by="someone-else")
    expected = [reason] if reason else []
    assert check_revocation(revocation(offer), offer_entry=received, now=NOW) == expected


def test_a_revocation_of_an_unknown_or_expired_offer_and_the_same_one_again() -> None:
    offer = flex_offer()
    assert check_revocation(revocation(offer), offer_entry=None, now=NOW) == [
        "Unknown FlexOfferMessageID reference"
    ]
    received = entry(offer, Direction.RECEIVED, Standing.ACCEPTED)
    later = offer.expiration_date_time + timedelta(seconds=1)
    assert check_revocation(revocation(offer), offer_entry=received, now=later) == [
        "Reference message expired"
    ]
    mine = revocation(offer)
    revoked = dataclasses.replace(received, standing=Standing.REVOKED, settled_by=mine.message_id)
    assert check_revocation(mine, offer_entry=revoked, now=NOW) == []


# --- FlexOrder --------------------------------------------------------------------------------


def order_reasons(
    standing: Standing = Standing.ACCEPTED, now: datetime = NOW, **changes: object
) -> list[str]:
    offer = flex_offer()
    sent = entry(offer, Direction.SENT, standing, settled_by="another-order")
    order = flex_order(offer, **changes)
    return check_flex_order(order, offer=offer, offer_entry=sent, now=now, market=MARKET)


def test_an_order_of_an_open_or_accepted_offer_passes() -> None:
    assert order_reasons() == []
    assert order_reasons(Standing.OPEN) == []


@pytest.mark.parametrize(
    ("standing", "reason"),
    [
        (Standing.REVOKED, "Reference message revoked"),
        (Standing.ORDERED, ALREADY_ORDERED),
        (Standing.REJECTED, NOT_ACCEPTED),
    ],
)
def test_an_order_of_a_revoked_ordered_or_refused_offer(standing: Standing, reason: str) -> None:
    assert order_reasons(standing) == [reason]


def test_an_order_of_an_unknown_or_expired_offer() -> None:
    offer = flex_offer()
    assert check_flex_order(
        flex_order(offer), offer=None, offer_entry=None, now=NOW, market=MARKET
    ) == ["Unknown FlexOfferMessageID reference"]
    later = offer.expiration_date_time + timedelta(seconds=1)
    assert order_reasons(now=later) == ["Reference message expired"]


def test_an_order_must_copy_the_options_isps_and_respect_its_minimum() -> None:
    """flex-order.md: ISPs "copied from the FlexOffer message without modification";
    "The ActivationFactor must be greater than or equal to the MinActivationFactor"."""
    assert order_reasons(isps=(FlexOrderISP(69, -100_000, 8),)) == [ISPS_MISMATCH]
    # The same ISPs grouped otherwise are the same list.
    regrouped = (
        FlexOrderISP(69, -100_000, 2),
        FlexOrderISP(71, -100_000, 2),
        FlexOrderISP(73, -50_000, 4),
    )
    assert order_reasons(isps=regrouped) == []
    assert order_reasons(activation_factor=Decimal("0.25")) == [ACTIVATION_BELOW_MINIMUM]
    assert order_reasons(option_reference="none-such") == [UNKNOWN_OPTION]
    assert order_reasons(currency="USD") == [CURRENCY_MISMATCH]
    assert order_reasons(period=date(2026, 12, 8)) == ["Reference Period mismatch"]


def test_the_same_order_handled_again_finds_the_offer_ordered_by_itself() -> None:
    offer = flex_offer()
    order = flex_order(offer)
    mine = entry(offer, Direction.SENT, Standing.ORDERED, settled_by=order.message_id)
    assert check_flex_order(order, offer=offer, offer_entry=mine, now=NOW, market=MARKET) == []
    assert (offer.sender_domain, order.sender_domain) == (AGR, DSO)
