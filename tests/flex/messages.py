"""Flex messages for the tests of adapter.flex: a day in the future of the clock `NOW`, on a
congestion point of the DSO's, evening peak requested."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from adapter.flex.rules import Market
from adapter.uftp.messages import (
    AvailableRequested,
    ContractSettlement,
    ContractSettlementISP,
    ContractSettlementPeriod,
    DPrognosis,
    DPrognosisISP,
    FlexOffer,
    FlexOfferOption,
    FlexOfferOptionISP,
    FlexOfferRevocation,
    FlexOrder,
    FlexOrderISP,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexRequest,
    FlexRequestISP,
    FlexReservationUpdate,
    FlexReservationUpdateISP,
    FlexSettlement,
    Metering,
    MeteringISP,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringUnit,
)

DSO = "dso.example-grid.nl"
AGR = "agr.example.com"
CP = "ea1.2026-01.nl.example-grid:cp-north"
OTHER_CP = "ea1.2026-01.nl.example-grid:cp-south"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
DAY = date(2026, 12, 7)
#: 18:00 local time on DAY, the start of ISP 69.
PEAK = datetime(2026, 12, 7, 17, tzinfo=UTC)
MARKET = Market(timedelta(minutes=15), "Europe/Amsterdam", {CP: True, OTHER_CP: False})


def flex_request(**changes: Any) -> FlexRequest:
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": DSO,
        "recipient_domain": AGR,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000001",
        "conversation_id": "00000000-0000-4000-8000-0000000000c1",
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": DAY,
        "congestion_point": CP,
        "revision": 1,
        "expiration_date_time": PEAK - timedelta(hours=3),
        "isps": (
            FlexRequestISP(1, -500_000, 1_000_000, 68, AvailableRequested.AVAILABLE),
            FlexRequestISP(69, -250_000, 0, 8, AvailableRequested.REQUESTED),
            FlexRequestISP(77, -500_000, 1_000_000, 20, AvailableRequested.AVAILABLE),
        ),
    }
    return FlexRequest(**{**fields, **changes})


def flex_offer(
    request_id: str | None = "00000000-0000-4000-8000-000000000001", **changes: Any
) -> FlexOffer:
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": AGR,
        "recipient_domain": DSO,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000002",
        "conversation_id": "00000000-0000-4000-8000-0000000000c2",
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": DAY,
        "congestion_point": CP,
        "expiration_date_time": PEAK - timedelta(hours=2),
        "flex_request_message_id": request_id,
        "currency": "EUR",
        "offer_options": (
            FlexOfferOption(
                option_reference="full",
                price=Decimal("1250.00"),
                isps=(FlexOfferOptionISP(69, -250_000, 8),),
            ),
            FlexOfferOption(
                option_reference="partial",
                price=Decimal("400.00"),
                min_activation_factor=Decimal("0.50"),
                isps=(FlexOfferOptionISP(69, -100_000, 4), FlexOfferOptionISP(73, -50_000, 4)),
            ),
        ),
    }
    return FlexOffer(**{**fields, **changes})


def flex_order(offer: FlexOffer, **changes: Any) -> FlexOrder:
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": DSO,
        "recipient_domain": AGR,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000003",
        "conversation_id": "00000000-0000-4000-8000-0000000000c3",
        "isp_duration": offer.isp_duration,
        "time_zone": offer.time_zone,
        "period": offer.period,
        "congestion_point": offer.congestion_point,
        "flex_offer_message_id": offer.message_id,
        "price": Decimal("400.00"),
        "currency": "EUR",
        "order_reference": "order-1",
        "option_reference": "partial",
        "activation_factor": Decimal("0.75"),
        "isps": (FlexOrderISP(69, -100_000, 4), FlexOrderISP(73, -50_000, 4)),
    }
    return FlexOrder(**{**fields, **changes})


def revocation(offer: FlexOffer, **changes: Any) -> FlexOfferRevocation:
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": AGR,
        "recipient_domain": DSO,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000004",
        "conversation_id": "00000000-0000-4000-8000-0000000000c4",
        "flex_offer_message_id": offer.message_id,
    }
    return FlexOfferRevocation(**{**fields, **changes})


def settlement(order: FlexOrder, **changes: Any) -> FlexSettlement:
    """December's settlement of `order`, delivered in full; the bilateral-contract part the
    schema requires, empty of power."""
    fields: dict[str, Any] = {
        "period_start": date(2026, 12, 1),
        "period_end": date(2026, 12, 31),
        "currency": "EUR",
        "flex_order_settlements": (
            FlexOrderSettlement(
                order_reference=order.order_reference,
                period=order.period,
                congestion_point=order.congestion_point,
                price=order.price,
                net_settlement=order.price,
                isps=tuple(
                    FlexOrderSettlementISP(
                        isp.start, 0, isp.power, isp.power, isp.power, isp.duration
                    )
                    for isp in order.isps
                ),
            ),
        ),
        "contract_settlements": (
            ContractSettlement(
                periods=(
                    ContractSettlementPeriod(
                        period=order.period, isps=(ContractSettlementISP(1, 0, 96),)
                    ),
                )
            ),
        ),
    }
    return FlexSettlement(**{**fields, **changes})


def reservation_update(**changes: Any) -> FlexReservationUpdate:
    """DSO -> AGR: 200 kW stays reserved over the evening peak of DAY, the rest is released."""
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": DSO,
        "recipient_domain": AGR,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000005",
        "conversation_id": "00000000-0000-4000-8000-0000000000c5",
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": DAY,
        "congestion_point": CP,
        "contract_id": "contract-2026",
        "reference": "fru-1",
        "isps": (
            FlexReservationUpdateISP(1, 0, 68),
            FlexReservationUpdateISP(69, -200_000, 8),
            FlexReservationUpdateISP(77, 0, 20),
        ),
    }
    return FlexReservationUpdate(**{**fields, **changes})


def d_prognosis(**changes: Any) -> DPrognosis:
    """AGR -> DSO: 300 kW all day on DAY (96 ISPs), revision 1."""
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": AGR,
        "recipient_domain": DSO,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000006",
        "conversation_id": "00000000-0000-4000-8000-0000000000c6",
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": DAY,
        "congestion_point": CP,
        "revision": 1,
        "isps": (DPrognosisISP(1, 300_000, 96),),
    }
    return DPrognosis(**{**fields, **changes})


#: The connection a Metering message of the tests is about.
EAN = "E8712345678901234"


def metering(**changes: Any) -> Metering:
    """AGR -> DSO: the Power and ImportEnergy profiles of one connection on the day before NOW."""
    fields: dict[str, Any] = {
        "version": "3.1.0",
        "sender_domain": AGR,
        "recipient_domain": DSO,
        "time_stamp": NOW,
        "message_id": "00000000-0000-4000-8000-000000000007",
        "conversation_id": "00000000-0000-4000-8000-0000000000c7",
        "revision": 1,
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": DAY - timedelta(days=2),
        "ean": EAN,
        "profiles": (
            MeteringProfile(
                profile_type=MeteringProfileEnum.POWER,
                unit=MeteringUnit.KW,
                isps=tuple(MeteringISP(n, Decimal(4)) for n in range(1, 97)),
            ),
            MeteringProfile(
                profile_type=MeteringProfileEnum.IMPORT_ENERGY,
                unit=MeteringUnit.KWH,
                isps=tuple(MeteringISP(n, Decimal(1)) for n in range(1, 97)),
            ),
        ),
    }
    return Metering(**{**fields, **changes})
