"""The receiver's checks of FlexReservationUpdate, D-Prognosis and Metering beyond the schema
(flex-reservation-update.md, d-prognosis.md, metering.md, message-validation.md), and the
FlexOrderStatus a D-PrognosisResponse gives."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

from adapter.flex.rules import (
    DUPLICATE_PROFILE,
    INCOMPLETE_PROGNOSIS,
    UNIT_MISMATCH,
    check_d_prognosis,
    check_flex_reservation_update,
    check_metering,
    order_statuses,
)
from adapter.uftp import codec
from adapter.uftp.errors import Reason
from adapter.uftp.messages import (
    DPrognosisISP,
    FlexOrderISP,
    FlexOrderStatus,
    FlexReservationUpdateISP,
    MeteringISP,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringUnit,
)
from tests.flex.messages import (
    DAY,
    MARKET,
    NOW,
    OTHER_CP,
    d_prognosis,
    flex_offer,
    flex_order,
    metering,
    reservation_update,
)

SPRING = date(2027, 3, 28)  # 92 ISPs in Europe/Amsterdam


def test_the_sample_messages_are_valid_in_each_version() -> None:
    for version in ("3.0.0", "3.1.0", "4.0.0"):
        for message in (reservation_update(), d_prognosis(), metering()):
            decoded = codec.decode(codec.encode(dataclasses.replace(message, version=version)))
            assert decoded == dataclasses.replace(message, version=version)


# --- FlexReservationUpdate -------------------------------------------------------------------


def test_a_reservation_update_for_a_coming_day_passes() -> None:
    assert check_flex_reservation_update(reservation_update(), now=NOW, market=MARKET) == []


def test_a_reservation_update_out_of_the_market_or_the_day() -> None:
    unknown_point = reservation_update(congestion_point="ea1.2026-01.nl.example-grid:cp-east")
    assert check_flex_reservation_update(unknown_point, now=NOW, market=MARKET) == [
        Reason.INVALID_CONGESTION_POINT
    ]
    past = reservation_update(period=NOW.date() - timedelta(days=1))
    assert check_flex_reservation_update(past, now=NOW, market=MARKET) == [
        Reason.PERIOD_OUT_OF_BOUNDS
    ]
    beyond = reservation_update(isps=(FlexReservationUpdateISP(90, 0, 8),))
    assert check_flex_reservation_update(beyond, now=NOW, market=MARKET) == [
        Reason.ISPS_OUT_OF_BOUNDS
    ]
    twice = reservation_update(
        isps=(FlexReservationUpdateISP(1, 0, 4), FlexReservationUpdateISP(2, 0, 1))
    )
    assert check_flex_reservation_update(twice, now=NOW, market=MARKET) == [Reason.ISP_CONFLICT]
    half_hours = reservation_update(isp_duration=timedelta(minutes=30))
    assert check_flex_reservation_update(half_hours, now=NOW, market=MARKET) == [
        Reason.ISP_DURATION_REJECTED
    ]


# --- D-Prognosis -----------------------------------------------------------------------------


def test_a_full_day_prognosis_passes_and_one_of_the_spring_day_with_92_isps() -> None:
    assert check_d_prognosis(d_prognosis(), now=NOW, market=MARKET, latest_revision=None) == []
    spring = d_prognosis(period=SPRING, isps=(DPrognosisISP(1, 0, 92),))
    assert check_d_prognosis(spring, now=NOW, market=MARKET, latest_revision=None) == []
    too_many = d_prognosis(period=SPRING)  # 96 ISPs on a day of 92
    assert check_d_prognosis(too_many, now=NOW, market=MARKET, latest_revision=None) == [
        Reason.ISPS_OUT_OF_BOUNDS
    ]


def test_a_prognosis_must_cover_every_isp_of_the_day() -> None:
    partial = d_prognosis(isps=(DPrognosisISP(1, 0, 95),))
    assert check_d_prognosis(partial, now=NOW, market=MARKET, latest_revision=None) == [
        INCOMPLETE_PROGNOSIS
    ]
    # Start is an xs:integer in this type only: 0 and below pass the schema, not the check.
    before_the_day = d_prognosis(isps=(DPrognosisISP(0, 0, 1), DPrognosisISP(1, 0, 96)))
    assert check_d_prognosis(before_the_day, now=NOW, market=MARKET, latest_revision=None) == [
        Reason.ISPS_OUT_OF_BOUNDS
    ]


def test_a_prognosis_revision_must_exceed_the_one_accepted_before() -> None:
    assert (
        check_d_prognosis(d_prognosis(revision=2), now=NOW, market=MARKET, latest_revision=1) == []
    )
    for latest in (2, 3):
        assert check_d_prognosis(
            d_prognosis(revision=2), now=NOW, market=MARKET, latest_revision=latest
        ) == [Reason.SUBORDINATE_SEQUENCE_NUMBER]


def test_a_prognosis_for_a_past_day_or_an_unknown_point() -> None:
    past = d_prognosis(period=NOW.date() - timedelta(days=1))
    assert check_d_prognosis(past, now=NOW, market=MARKET, latest_revision=None) == [
        Reason.PERIOD_OUT_OF_BOUNDS
    ]
    # A day that has begun still takes one: its past ISPs are ignored (d-prognosis.md).
    today = d_prognosis(period=NOW.date())
    assert check_d_prognosis(today, now=NOW, market=MARKET, latest_revision=None) == []
    elsewhere = d_prognosis(congestion_point="ea1.2026-01.nl.example-grid:cp-east")
    assert check_d_prognosis(elsewhere, now=NOW, market=MARKET, latest_revision=None) == [
        Reason.INVALID_CONGESTION_POINT
    ]
    assert (
        check_d_prognosis(
            d_prognosis(congestion_point=OTHER_CP), now=NOW, market=MARKET, latest_revision=None
        )
        == []
    )


def test_an_order_is_validated_when_the_prognosis_moved_by_its_power() -> None:
    order = flex_order(flex_offer())  # -100 kW in ISPs 69-72, -50 kW in 73-76, factor 0.75
    baseline = d_prognosis()
    moved = d_prognosis(
        revision=2,
        isps=(
            DPrognosisISP(1, 300_000, 68),
            DPrognosisISP(69, 225_000, 4),
            DPrognosisISP(73, 262_500, 4),
            DPrognosisISP(77, 300_000, 20),
        ),
    )
    assert order_statuses(moved, [order], baseline) == [FlexOrderStatus(order.message_id, True)]
    assert order_statuses(baseline, [order], baseline) == [FlexOrderStatus(order.message_id, False)]
    assert order_statuses(moved, [order], None) == [FlexOrderStatus(order.message_id, False)]
    assert order_statuses(moved, [], baseline) == []
    unscaled = dataclasses.replace(order, activation_factor=Decimal("1.00"))
    assert not order_statuses(moved, [unscaled], baseline)[0].is_validated
    assert order.isps == (FlexOrderISP(69, -100_000, 4), FlexOrderISP(73, -50_000, 4))


# --- Metering --------------------------------------------------------------------------------


def test_metering_of_a_past_day_passes_and_of_a_coming_day_does_not() -> None:
    assert check_metering(metering(), now=NOW, market=MARKET) == []
    assert check_metering(metering(period=DAY), now=NOW, market=MARKET) == [
        Reason.PERIOD_OUT_OF_BOUNDS
    ]


def test_metering_profiles_once_each_in_their_unit_within_the_day() -> None:
    power = metering().profiles[0]
    twice = metering(profiles=(power, power))
    assert check_metering(twice, now=NOW, market=MARKET) == [DUPLICATE_PROFILE]
    in_kwh = metering(profiles=(dataclasses.replace(power, unit=MeteringUnit.KWH),))
    assert check_metering(in_kwh, now=NOW, market=MARKET) == [UNIT_MISMATCH]
    isp_97 = dataclasses.replace(power, isps=(*power.isps, MeteringISP(97, Decimal(4))))
    assert check_metering(metering(profiles=(isp_97,)), now=NOW, market=MARKET) == [
        Reason.ISPS_OUT_OF_BOUNDS
    ]
    again = dataclasses.replace(power, isps=(*power.isps, MeteringISP(5, Decimal(4))))
    assert check_metering(metering(profiles=(again,)), now=NOW, market=MARKET) == [
        Reason.ISP_CONFLICT
    ]
    reading = MeteringProfile(
        profile_type=MeteringProfileEnum.IMPORT_METER_READING,
        unit=MeteringUnit.KWH,
        isps=(MeteringISP(96, Decimal("12345.678")),),
    )
    assert check_metering(metering(profiles=(power, reading)), now=NOW, market=MARKET) == []
    hourly = metering(isp_duration=timedelta(hours=1))
    assert check_metering(hourly, now=NOW, market=MARKET) == [Reason.ISP_DURATION_REJECTED]
