"""The checks a receiver of a flex message makes beyond the schema: the pure core.

Each function takes a message, what the conversation holds that it refers to (`Entry` and
the message it recorded, read by the caller), the market's agreed values (`Market`) and the
time, and returns the RejectionReasons it earns, in the order the spec's pages list them;
an empty list accepts it. No I/O and no clock: the handlers (`adapter.flex.handlers`) read
the state and the time at the edge, and record the outcome.

The reasons are the texts of message-validation.md's table where it has one, cited at each
check; where a page allows a rejection without naming its text (flex-order-response.md: an
order that "does not exactly match the contents of the corresponding FlexOffer"), the text
is ours and says what is wrong, as the spec asks of "[Other reasonable cause]".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.flex.state import Entry, Standing
from adapter.uftp.errors import Reason, unknown_reference
from adapter.uftp.messages import (
    AcceptedDisputed,
    AvailableRequested,
    DPrognosis,
    FlexMessage,
    FlexOffer,
    FlexOfferRevocation,
    FlexOrder,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexReservationUpdate,
    FlexSettlement,
    Metering,
    MeteringProfileEnum,
    MeteringUnit,
)

__all__ = [
    "ACTIVATION_BELOW_MINIMUM",
    "ALREADY_ORDERED",
    "CURRENCY_MISMATCH",
    "DUPLICATE_OPTION_REFERENCE",
    "DUPLICATE_PROFILE",
    "INCOMPLETE_PROGNOSIS",
    "ISPS_MISMATCH",
    "MIN_ABOVE_MAX_POWER",
    "MULTIPLE_OPTIONS",
    "NOTHING_REQUESTED",
    "NOT_ACCEPTED",
    "POWER_OUT_OF_BOUNDS",
    "UNIT_MISMATCH",
    "UNKNOWN_OPTION",
    "UNKNOWN_ORDER",
    "Market",
    "check_d_prognosis",
    "check_flex_offer",
    "check_flex_order",
    "check_flex_request",
    "check_flex_reservation_update",
    "check_flex_settlement",
    "check_metering",
    "check_revocation",
    "day_bounds",
    "expanded",
    "isp_reasons",
    "isps_per_day",
    "market_reasons",
    "order_statuses",
]

# Texts of our own, for causes a page allows without naming them ("[Other reasonable cause]",
# message-validation.md).
#: flex-request-response.md: rejection is allowed when "the FlexRequest does not contain any
#: ISPs with Disposition=Requested" (flex-request.md: "At least one ISP should have
#: Disposition = Requested").
NOTHING_REQUESTED = "No ISP with Disposition=Requested"
#: flex-request.md: MinPower and MaxPower are the lower and upper bound of one range.
MIN_ABOVE_MAX_POWER = "MinPower above MaxPower"
#: flex-offer-response.md: the offer must fit "each ISP with Disposition=Requested in the
#: corresponding FlexRequest"; an offered power outside the request's MinPower..MaxPower, or
#: for an ISP the request does not name, does not.
POWER_OUT_OF_BOUNDS = "Power out of bounds"
#: flex-offer.md, OfferOption: "If the DSO does not support mutually exclusive offers it will
#: reject FlexOffers that contain more than one OfferOption."
MULTIPLE_OPTIONS = "Mutually exclusive OfferOptions not supported"
#: flex-offer.md: OptionReference identifies an option among several.
DUPLICATE_OPTION_REFERENCE = "Duplicate OptionReference"
#: flex-offer-revocation-response.md: "the offered flexibility has already been ordered";
#: flex-order-response.md: "the FlexOrder was already accepted previously".
ALREADY_ORDERED = "FlexOffer already ordered"
#: flex-offer-revocation.md: "this FlexOffer must have been accepted previously".
NOT_ACCEPTED = "FlexOffer not accepted"
#: flex-order.md: "AGR implementations will (and must) reject FlexOrder messages where the
#: ISP list is not exactly the same as offered."
ISPS_MISMATCH = "ISPs do not match the FlexOffer"
#: flex-order.md: OptionReference is "the OptionReference from the OfferOption chosen".
UNKNOWN_OPTION = "Unknown OptionReference"
#: flex-order.md: "The ActivationFactor must be greater than or equal to the
#: MinActivationFactor in the OfferOption chosen from the FlexOffer."
ACTIVATION_BELOW_MINIMUM = "ActivationFactor below MinActivationFactor"
#: flex-order-response.md: an order that "does not exactly match the contents of the
#: corresponding FlexOffer".
CURRENCY_MISMATCH = "Currency does not match the FlexOffer"
#: flex-settlement-response.md: a settlement item "not in accordance with the AGR's
#: accounting" is disputed, not rejected: no accepted FlexOrder of this DSO has its
#: OrderReference, Period and congestion point.
#: d-prognosis-response.md: a prognosis may be rejected if it "does not contain a full list of
#: ISPs for the Period it applies to" (d-prognosis.md: "Every day-ahead D-Prognosis must
#: contain a Power value for every single ISP of the specified Period").
INCOMPLETE_PROGNOSIS = "Not every ISP of the Period has a Power"
#: metering.md: "all agreed profile types must be included" - each once.
DUPLICATE_PROFILE = "Duplicate ProfileType"
#: metering.md, Unit: "use kW for Power and kWh for energy profile types".
UNIT_MISMATCH = "Unit does not match the ProfileType"
UNKNOWN_ORDER = "No accepted FlexOrder with this OrderReference, Period and CongestionPoint"


@dataclass(frozen=True, slots=True)
class Market:
    """The values agreed for the market (metadata-attributes.md: ISP-Duration and TimeZone
    are "the agreed-upon common value for the market").

    `congestion_points`: the points this participant trades on, with whether each takes
    mutually exclusive offers (a DSO's from its portfolio); None when it does not know
    them, and then nothing is rejected for the point.
    """

    isp_duration: timedelta = timedelta(minutes=15)
    time_zone: str = "Europe/Amsterdam"
    congestion_points: Mapping[str, bool] | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def day_bounds(period: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants (UTC) a Period begins and ends: local midnight to local midnight."""
    start = datetime.combine(period, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(period + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def isps_per_day(period: date, market: Market) -> int:
    """How many ISPs the Period has: 96 of 15 minutes on most days in Europe/Amsterdam, 92
    on the day clocks go forward and 100 on the day they go back (message-validation.md,
    "ISPs out of bounds": "(24 hours / ISP-Duration (in hours)) + DST_offset")."""
    start, end = day_bounds(period, market.zone)
    return (end - start) // market.isp_duration


def expanded(spans: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """{ISP number: power} of (start, power, duration) rows; for comparing two ISP lists
    that group the same ISPs differently."""
    return {
        number: power
        for start, power, duration in spans
        for number in range(start, start + duration)
    }


def market_reasons(message: FlexMessage[Any] | Metering, market: Market) -> list[str]:
    """ISP-Duration and TimeZone against the market's (message-validation.md, "ISP duration
    rejected", "TimeZone rejected": a TimeZone "that has a different UTC offset than is the
    agreed-upon common value", so another name for the same offsets on the Period passes)."""
    reasons: list[str] = []
    if message.isp_duration != market.isp_duration:
        reasons.append(Reason.ISP_DURATION_REJECTED)
    try:
        theirs = ZoneInfo(message.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        reasons.append(Reason.TIMEZONE_REJECTED)
    else:
        if day_bounds(message.period, theirs) != day_bounds(message.period, market.zone):
            reasons.append(Reason.TIMEZONE_REJECTED)
    return reasons


def isp_reasons(spans: Iterable[tuple[int, int]], period: date, market: Market) -> list[str]:
    """(Start, Duration) pairs against the Period (message-validation.md, "ISPs out of
    bounds": at least one ISP, none beyond the day's count; "ISP conflict": no ISP twice;
    power.md: "ISP elements may not cross period boundaries")."""
    count = isps_per_day(period, market)
    reasons: list[str] = []
    covered: set[int] = set()
    conflict = out = False
    seen = 0
    for start, duration in spans:
        seen += 1
        if start < 1 or duration < 1 or start + duration - 1 > count:
            out = True
            continue
        numbers = range(start, start + duration)
        if not covered.isdisjoint(numbers):
            conflict = True
        covered.update(numbers)
    if out or seen == 0:
        reasons.append(Reason.ISPS_OUT_OF_BOUNDS)
    if conflict:
        reasons.append(Reason.ISP_CONFLICT)
    return reasons


def _period_reasons(period: date, now: datetime, market: Market) -> list[str]:
    """message-validation.md, "Period out of bounds": "a FlexRequest with a Period in the
    past" - one whose last ISP has ended."""
    _, end = day_bounds(period, market.zone)
    return [Reason.PERIOD_OUT_OF_BOUNDS] if end <= now else []


def _expiration_reasons(
    expires: datetime, period: date, spans: Iterable[tuple[int, int]], now: datetime, m: Market
) -> list[str]:
    """message-validation.md, "ExpirationDateTime out of bounds": "in the past or exceeds the
    ISPs in the message" - later than the end of its last ISP."""
    ends = [start + duration - 1 for start, duration in spans]
    if expires <= now:
        return [Reason.EXPIRATION_DATE_TIME_OUT_OF_BOUNDS]
    if ends:
        start, _ = day_bounds(period, m.zone)
        if expires > start + max(ends) * m.isp_duration:
            return [Reason.EXPIRATION_DATE_TIME_OUT_OF_BOUNDS]
    return []


def _point_reasons(congestion_point: str, market: Market) -> list[str]:
    """message-validation.md, "Invalid CongestionPoint": "Unknown CongestionPoint or the
    recipient is not active at this CongestionPoint" - where the recipient knows its points."""
    points = market.congestion_points
    if points is not None and congestion_point not in points:
        return [Reason.INVALID_CONGESTION_POINT]
    return []


def _common(
    message: FlexMessage[Any], spans: list[tuple[int, int]] | None, now: datetime, market: Market
) -> list[str]:
    """What every flex message is checked for; its ISPs (`spans`) too unless None."""
    reasons = market_reasons(message, market)
    reasons += _point_reasons(message.congestion_point, market)
    # In another ISP length the ISPs cannot be counted against the market's.
    if spans is not None and Reason.ISP_DURATION_REJECTED not in reasons:
        reasons += isp_reasons(spans, message.period, market)
    reasons += _period_reasons(message.period, now, market)
    return reasons


def _unique(reasons: list[str]) -> list[str]:
    return list(dict.fromkeys(reasons))


# --- FlexRequest (received by the AGR) -------------------------------------------------------


def check_flex_request(
    request: FlexRequest, *, now: datetime, market: Market, latest_revision: int | None
) -> list[str]:
    """A FlexRequest the AGR received (flex-request.md, flex-request-response.md).

    `latest_revision`: the highest Revision of another FlexRequest this DSO sent for the same
    congestion point and Period, if any; flex-request-response.md allows rejecting a request
    when one "with a higher sequence number was already accepted previously", and
    flex-request.md asks each new revision to increment it, so an equal one is refused too.
    """
    spans = [(isp.start, isp.duration) for isp in request.isps]
    reasons = _common(request, spans, now, market)
    reasons += _expiration_reasons(request.expiration_date_time, request.period, spans, now, market)
    if latest_revision is not None and latest_revision >= request.revision:
        reasons.append(Reason.SUBORDINATE_SEQUENCE_NUMBER)
    if any(isp.min_power > isp.max_power for isp in request.isps):
        reasons.append(MIN_ABOVE_MAX_POWER)
    if not any(isp.disposition is AvailableRequested.REQUESTED for isp in request.isps):
        reasons.append(NOTHING_REQUESTED)
    return _unique(reasons)


# --- FlexOffer (received by the DSO) ---------------------------------------------------------


def check_flex_offer(
    offer: FlexOffer,
    *,
    request: FlexRequest | None,
    request_entry: Entry | None,
    now: datetime,
    market: Market,
) -> list[str]:
    """A FlexOffer the DSO received (flex-offer.md, flex-offer-response.md).

    A solicited offer names a FlexRequest this DSO sent to the offering AGR: `request` and
    `request_entry` are it, None when there is no such request (then "Unknown
    FlexRequestMessageID reference", message-validation.md; a request sent to another AGR is
    unknown to this one too).
    """
    spans = [(isp.start, isp.duration) for option in offer.offer_options for isp in option.isps]
    reasons = _common(offer, None, now, market)
    if Reason.ISP_DURATION_REJECTED not in reasons:
        for option in offer.offer_options:  # each option is a list of ISPs of its own
            reasons += isp_reasons(
                [(isp.start, isp.duration) for isp in option.isps], offer.period, market
            )
    reasons += _expiration_reasons(offer.expiration_date_time, offer.period, spans, now, market)
    points = market.congestion_points
    if (
        len(offer.offer_options) > 1
        and points is not None
        and not points.get(offer.congestion_point, True)
    ):
        reasons.append(MULTIPLE_OPTIONS)
    references = [option.option_reference for option in offer.offer_options]
    if len(set(references)) != len(references):
        reasons.append(DUPLICATE_OPTION_REFERENCE)
    # flex-offer.md: FlexRequestMessageID is "mandatory if and only if solicited"; 3.0.0 has
    # no Unsolicited attribute, and there an offer without the reference is unsolicited.
    solicited = offer.unsolicited is False or offer.flex_request_message_id is not None
    if solicited:
        reasons += _request_reasons(offer, request, request_entry, now)
    return _unique(reasons)


def _request_reasons(
    offer: FlexOffer, request: FlexRequest | None, entry: Entry | None, now: datetime
) -> list[str]:
    if request is None or entry is None:
        return [unknown_reference("FlexRequest")]
    reasons: list[str] = []
    if entry.expired(now):  # message-validation.md, "Reference message expired"
        reasons.append(Reason.REFERENCE_MESSAGE_EXPIRED)
    if request.period != offer.period:  # "Reference Period mismatch"
        reasons.append(Reason.REFERENCE_PERIOD_MISMATCH)
    if request.congestion_point != offer.congestion_point:
        reasons.append(Reason.INVALID_CONGESTION_POINT)
    bounds = {
        number: (isp.min_power, isp.max_power)
        for isp in request.isps
        for number in range(isp.start, isp.start + isp.duration)
    }
    for option in offer.offer_options:
        for number, power in expanded(option.isps).items():
            low, high = bounds.get(number, (1, 0))  # an ISP the request does not name: out
            if not low <= power <= high:
                reasons.append(POWER_OUT_OF_BOUNDS)
                return reasons
    return reasons


# --- FlexOfferRevocation (received by the DSO) -----------------------------------------------


def check_revocation(
    revocation: FlexOfferRevocation, *, offer_entry: Entry | None, now: datetime
) -> list[str]:
    """A FlexOfferRevocation the DSO received (flex-offer-revocation.md: "Revocation is not
    allowed for FlexOffers that already have associated accepted FlexOrders").

    `offer_entry`: the offer the revoking AGR sent us under that MessageID, if any. The same
    revocation handled again (after a restart) finds the offer revoked by itself: accepted.
    """
    if offer_entry is None:
        return [unknown_reference("FlexOffer")]
    if offer_entry.settled_by == revocation.message_id:
        return []
    if offer_entry.standing is Standing.ORDERED:
        return [ALREADY_ORDERED]
    if offer_entry.standing is Standing.REVOKED:
        return [Reason.REFERENCE_MESSAGE_REVOKED]
    if offer_entry.standing is Standing.REJECTED:
        return [NOT_ACCEPTED]
    if offer_entry.expired(now):
        return [Reason.REFERENCE_MESSAGE_EXPIRED]
    return []


# --- FlexOrder (received by the AGR) ---------------------------------------------------------


def check_flex_order(
    order: FlexOrder,
    *,
    offer: FlexOffer | None,
    offer_entry: Entry | None,
    now: datetime,
    market: Market,
) -> list[str]:
    """A FlexOrder the AGR received (flex-order.md, flex-order-response.md: rejection "only
    ... in case the FlexOrder was already accepted previously, cannot be found, or does not
    exactly match the contents of the corresponding FlexOffer", besides message-validation.md).

    `offer` and `offer_entry`: the FlexOffer this AGR sent the ordering DSO under the order's
    FlexOfferMessageID, if any.
    """
    spans = [(isp.start, isp.duration) for isp in order.isps]
    reasons = _common(order, spans, now, market)
    # 3.0.0 requires the reference; from 3.1.0 it is "mandatory if and only if solicited".
    solicited = order.unsolicited is not True
    if solicited:
        reasons += _offer_reasons(order, offer, offer_entry, now)
    return _unique(reasons)


def _offer_reasons(
    order: FlexOrder, offer: FlexOffer | None, entry: Entry | None, now: datetime
) -> list[str]:
    if offer is None or entry is None:
        return [unknown_reference("FlexOffer")]
    reasons: list[str] = []
    if entry.settled_by != order.message_id:  # not this order, handled again
        if entry.standing is Standing.REVOKED:  # "Reference message revoked"
            reasons.append(Reason.REFERENCE_MESSAGE_REVOKED)
        elif entry.standing is Standing.ORDERED:
            reasons.append(ALREADY_ORDERED)
        elif entry.standing is Standing.REJECTED:  # the DSO refused the offer it now orders
            reasons.append(NOT_ACCEPTED)
        elif entry.expired(now):  # "Reference message expired"
            reasons.append(Reason.REFERENCE_MESSAGE_EXPIRED)
    if offer.period != order.period:  # "Reference Period mismatch"
        reasons.append(Reason.REFERENCE_PERIOD_MISMATCH)
    if offer.congestion_point != order.congestion_point:
        reasons.append(Reason.INVALID_CONGESTION_POINT)
    if offer.currency != order.currency:
        reasons.append(CURRENCY_MISMATCH)
    options = offer.offer_options
    chosen = [
        option
        for option in options
        if option.option_reference == order.option_reference
        or (order.option_reference is None and len(options) == 1)
    ]
    if not chosen:
        reasons.append(UNKNOWN_OPTION)
        return reasons
    option = chosen[0]
    if expanded(order.isps) != expanded(option.isps):
        reasons.append(ISPS_MISMATCH)
    if order.activation_factor < option.min_activation_factor:
        reasons.append(ACTIVATION_BELOW_MINIMUM)
    return reasons


# --- FlexSettlement (received by the AGR) ----------------------------------------------------


def check_flex_settlement(
    settlement: FlexSettlement, *, orders: Iterable[FlexOrder], market: Market
) -> tuple[list[str], tuple[FlexOrderSettlementStatus, ...]]:
    """A FlexSettlement the AGR received: the reasons to reject it, and the verdict on each
    FlexOrderSettlement.

    flex-settlement-response.md: rejection "only ... in case a FlexSettlement covering a given
    period was already accepted previously, or contains invalid data" - here a settlement
    item with a Period outside the settlement period (message-validation.md, "Period out of
    bounds", its own example) or ISPs that do not fit their Period ("ISPs out of bounds",
    "ISP conflict"). An item "not in accordance with the AGR's accounting" is Disputed:
    `orders` are the FlexOrders this AGR accepted from the DSO.
    """
    reasons: list[str] = []
    if settlement.period_start > settlement.period_end:
        reasons.append(Reason.PERIOD_OUT_OF_BOUNDS)
    known = {(o.order_reference, o.period, o.congestion_point) for o in orders}
    statuses = []
    for item in settlement.flex_order_settlements:
        if not settlement.period_start <= item.period <= settlement.period_end:
            reasons.append(Reason.PERIOD_OUT_OF_BOUNDS)
        reasons += isp_reasons(
            [(isp.start, isp.duration) for isp in item.isps], item.period, market
        )
        if (item.order_reference, item.period, item.congestion_point) in known:
            statuses.append(
                FlexOrderSettlementStatus(item.order_reference, AcceptedDisputed.ACCEPTED)
            )
        else:
            statuses.append(
                FlexOrderSettlementStatus(
                    item.order_reference, AcceptedDisputed.DISPUTED, UNKNOWN_ORDER
                )
            )
    return _unique(reasons), tuple(statuses)


# --- FlexReservationUpdate (received by the AGR) ---------------------------------------------


def check_flex_reservation_update(
    update: FlexReservationUpdate, *, now: datetime, market: Market
) -> list[str]:
    """A FlexReservationUpdate the AGR received (flex-reservation-update.md).

    message-validation.md applies "ISP duration rejected", "TimeZone rejected", "Invalid
    CongestionPoint", "ISPs out of bounds", "ISP conflict" and "Period out of bounds" to it
    (FRU); flex-reservation-update-response.md allows rejecting one whose "deadline for
    sending the update has expired": a Period that has ended. Whether it matches the
    bilateral contract (ContractID) is the AGR's own business, not checked here.
    """
    spans = [(isp.start, isp.duration) for isp in update.isps]
    return _unique(_common(update, spans, now, market))


# --- D-Prognosis (received by the DSO) -------------------------------------------------------


def check_d_prognosis(
    prognosis: DPrognosis, *, now: datetime, market: Market, latest_revision: int | None
) -> list[str]:
    """A D-Prognosis the DSO received (d-prognosis.md, d-prognosis-response.md): the
    market's ISP-Duration and TimeZone, a congestion point of this DSO's, every ISP of the
    Period exactly once, a Period not wholly past ("all ISPs are already pending
    settlement"), and a Revision above that of any prognosis accepted before for the point
    and Period ("a Prognosis of the same type and from the same originator with a higher
    sequence number was already processed"; d-prognosis.md: "must be incremented each time",
    so an equal one is refused too)."""
    spans = [(isp.start, isp.duration) for isp in prognosis.isps]
    reasons = _common(prognosis, spans, now, market)
    if Reason.ISP_DURATION_REJECTED not in reasons and not _isps_refused(reasons):
        covered = sum(duration for _, duration in spans)
        if covered != isps_per_day(prognosis.period, market):
            reasons.append(INCOMPLETE_PROGNOSIS)
    if latest_revision is not None and latest_revision >= prognosis.revision:
        reasons.append(Reason.SUBORDINATE_SEQUENCE_NUMBER)
    return _unique(reasons)


def _isps_refused(reasons: list[str]) -> bool:
    return Reason.ISPS_OUT_OF_BOUNDS in reasons or Reason.ISP_CONFLICT in reasons


def order_statuses(
    prognosis: DPrognosis, orders: Iterable[FlexOrder], baseline: DPrognosis | None
) -> list[FlexOrderStatus]:
    """d-prognosis-response.md: a FlexOrderStatus for each FlexOrder sent for the Period,
    IsValidated when "the Prognosis that was just received reflects this previously
    submitted FlexOrder": against `baseline`, the prognosis the DSO held before it ordered,
    each ordered ISP moved by the ordered power (scaled by the ActivationFactor). Without a
    baseline no order can be shown reflected, and each is reported not validated."""
    now_power = expanded((isp.start, isp.power, isp.duration) for isp in prognosis.isps)
    before = (
        expanded((isp.start, isp.power, isp.duration) for isp in baseline.isps)
        if baseline is not None
        else None
    )
    statuses: list[FlexOrderStatus] = []
    for order in orders:
        ordered = expanded((isp.start, isp.power, isp.duration) for isp in order.isps)
        factor = order.activation_factor
        validated = before is not None and all(
            number in now_power
            and number in before
            and now_power[number] - before[number] == round(power * factor)
            for number, power in ordered.items()
        )
        statuses.append(FlexOrderStatus(order.message_id, validated))
    return statuses


# --- Metering (received by the DSO) ----------------------------------------------------------

#: metering.md: "use kW for Power and kWh for energy profile types" (meter readings too).
_UNITS = {
    MeteringProfileEnum.POWER: MeteringUnit.KW,
    MeteringProfileEnum.IMPORT_ENERGY: MeteringUnit.KWH,
    MeteringProfileEnum.EXPORT_ENERGY: MeteringUnit.KWH,
    MeteringProfileEnum.IMPORT_METER_READING: MeteringUnit.KWH,
    MeteringProfileEnum.EXPORT_METER_READING: MeteringUnit.KWH,
}


def check_metering(metering: Metering, *, now: datetime, market: Market) -> list[str]:
    """A Metering message the DSO received (metering.md): the market's ISP-Duration and
    TimeZone (message-validation.md applies both to M), each ProfileType once with its unit,
    each profile's ISPs within the Period and none twice ("ISPs out of bounds", "ISP
    conflict"), and a Period that has begun ("Period out of bounds": metering is "the day
    that the metering data covers", sent once the data is collected).

    Together these bound what a peer may make us store: at most five profiles of at most
    one value per ISP of the day (the message's bytes are bounded before it is parsed)."""
    reasons = market_reasons(metering, market)
    kinds = [profile.profile_type for profile in metering.profiles]
    if len(set(kinds)) != len(kinds):
        reasons.append(DUPLICATE_PROFILE)
    if any(_UNITS.get(profile.profile_type) != profile.unit for profile in metering.profiles):
        reasons.append(UNIT_MISMATCH)
    if Reason.ISP_DURATION_REJECTED not in reasons:
        for profile in metering.profiles:
            spans = [(isp.start, 1) for isp in profile.isps]
            reasons += isp_reasons(spans, metering.period, market)
    start, _ = day_bounds(metering.period, market.zone)
    if start > now:
        reasons.append(Reason.PERIOD_OUT_OF_BOUNDS)
    return _unique(reasons)
