"""Complete sample UFTP messages of every type, for every Version the codec speaks.

Plain functions so that any test (or a benchmark) can import them; `conftest.py` wraps them
in fixtures. Every sample has its metadata filled with realistic values and an aware
TimeStamp, and is schema-valid, so `encode(sample)` succeeds and `decode` gives it back.

Entity addresses mix both schemes: EAN connection points (`ean.` + 18 digits) and EA1
congestion points, one of them the spec's own example, which contains `&` and `#`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from adapter.uftp.messages import (
    MESSAGE_TYPES,
    AcceptedDisputed,
    AGRPortfolioQuery,
    AGRPortfolioQueryCongestionPoint,
    AGRPortfolioQueryConnection,
    AGRPortfolioQueryDSOPortfolio,
    AGRPortfolioQueryDSOView,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    AGRPortfolioUpdateResponse,
    AvailableRequested,
    ContractSettlement,
    ContractSettlementISP,
    ContractSettlementPeriod,
    DPrognosis,
    DPrognosisISP,
    DPrognosisResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryCongestionPoint,
    DSOPortfolioQueryConnection,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    DSOPortfolioUpdateResponse,
    FlexOffer,
    FlexOfferOption,
    FlexOfferOptionISP,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderISP,
    FlexOrderResponse,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexRequestISP,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateISP,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Metering,
    MeteringISP,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringResponse,
    MeteringUnit,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
    Result,
    TestMessage,
    TestMessageResponse,
)

#: The Versions the codec reads and writes; 4.0.0 is the draft next version.
VERSIONS: tuple[str, ...] = ("3.0.0", "3.1.0", "4.0.0")
DRAFT = "4.0.0"

DSO_DOMAIN = "dso.example-grid.nl"
CRO_DOMAIN = "cro.example.com"
AGR_DOMAIN = "agr.example.com"
AGR2_DOMAIN = "agr2.example-energy.com"
DSO2_DOMAIN = "dso2.example.com"

TIME_ZONE = "Europe/Amsterdam"
#: Metadata TimeStamp: aware, with microseconds and a non-UTC offset (CEST).
TIME_STAMP = datetime(2024, 5, 1, 10, 15, 30, 250000, tzinfo=timezone(timedelta(hours=2)))
PERIOD = date(2024, 5, 2)
START = date(2024, 5, 1)
END = date(2024, 12, 31)

MESSAGE_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CONVERSATION_ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
#: MessageID of the request a sample response answers.
REQUEST_MESSAGE_ID = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
#: MessageIDs earlier messages of a flex conversation had (referred to by later ones).
FLEX_REQUEST_MESSAGE_ID = "9f3c1a2e-5b7d-4e8f-a1b2-c3d4e5f60718"
FLEX_OFFER_MESSAGE_ID = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
D_PROGNOSIS_MESSAGE_ID = "1b2c3d4e-5f6a-4b7c-9d8e-9fa0b1c2d3e4"

ISP_DURATION = timedelta(minutes=15)
#: Until when a FlexRequest or FlexOffer holds: the evening before the Period, in UTC+2.
EXPIRATION = datetime(2024, 5, 1, 18, 0, tzinfo=timezone(timedelta(hours=2)))

#: The spec's EA1 example (message-transport-mechanism.md, "EA1 addressing scheme").
EA1_SPEC_EXAMPLE = "ea1.2013-11.info.usef.test:001:002.090807002a&b#"
EA1_CP = "ea1.2007-11.net.example-grid:cp-utrecht-01"
EAN_CP = "ean.871685900012636543"
EAN_1 = "ean.871685900000000011"
EAN_2 = "ean.871685900000000028"
EAN_3 = "ean.871685900000000035"

M = TypeVar("M", bound=PayloadMessage)


def metadata(
    version: str, sender_domain: str, recipient_domain: str, **changes: Any
) -> dict[str, Any]:
    """Keyword arguments for the metadata of a message from `sender_domain`."""
    return {
        "version": version,
        "sender_domain": sender_domain,
        "recipient_domain": recipient_domain,
        "time_stamp": TIME_STAMP,
        "message_id": MESSAGE_ID,
        "conversation_id": CONVERSATION_ID,
        **changes,
    }


def response_metadata(
    version: str, sender_domain: str, recipient_domain: str, **changes: Any
) -> dict[str, Any]:
    """Metadata plus an accepted result referring to REQUEST_MESSAGE_ID."""
    return {
        **metadata(version, sender_domain, recipient_domain),
        "result": Result.ACCEPTED,
        "reference_message_id": REQUEST_MESSAGE_ID,
        **changes,
    }


# --- one factory per message type ----------------------------------------------------------


def make_test_message(version: str = "3.1.0", **changes: Any) -> TestMessage:
    return TestMessage(**metadata(version, DSO_DOMAIN, CRO_DOMAIN, **changes))


def make_test_message_response(version: str = "3.1.0", **changes: Any) -> TestMessageResponse:
    """In 3.x the type carries metadata only: no Result and no reference, so none is set."""
    if version == DRAFT:
        return TestMessageResponse(**response_metadata(version, CRO_DOMAIN, DSO_DOMAIN, **changes))
    return TestMessageResponse(**metadata(version, CRO_DOMAIN, DSO_DOMAIN, **changes))


def make_dso_portfolio_update(version: str = "3.1.0", **changes: Any) -> DSOPortfolioUpdate:
    """Two congestion points: every optional attribute present on one, absent on the other."""
    fields: dict[str, Any] = {
        **metadata(version, DSO_DOMAIN, CRO_DOMAIN),
        "time_zone": TIME_ZONE,
        "congestion_points": (
            DSOPortfolioUpdateCongestionPoint(
                entity_address=EA1_SPEC_EXAMPLE,
                start_period=START,
                end_period=END,
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR,
                connections=(
                    DSOPortfolioUpdateConnection(EAN_1, START, END),
                    DSOPortfolioUpdateConnection(EAN_2, START),
                ),
            ),
            DSOPortfolioUpdateCongestionPoint(
                entity_address=EAN_CP,
                start_period=START,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.AGR,
                connections=(DSOPortfolioUpdateConnection(EAN_3, PERIOD),),
            ),
        ),
    }
    return DSOPortfolioUpdate(**{**fields, **changes})


def make_dso_portfolio_update_response(
    version: str = "3.1.0", **changes: Any
) -> DSOPortfolioUpdateResponse:
    return DSOPortfolioUpdateResponse(
        **response_metadata(version, CRO_DOMAIN, DSO_DOMAIN, **changes)
    )


def make_dso_portfolio_query(version: str = "3.1.0", **changes: Any) -> DSOPortfolioQuery:
    fields: dict[str, Any] = {
        **metadata(version, DSO_DOMAIN, CRO_DOMAIN),
        "time_zone": TIME_ZONE,
        "period": PERIOD,
        "entity_address": EA1_CP,
    }
    return DSOPortfolioQuery(**{**fields, **changes})


def make_dso_portfolio_query_response(
    version: str = "3.1.0", **changes: Any
) -> DSOPortfolioQueryResponse:
    """One congestion point; one connection registered by an AGR, one not."""
    fields: dict[str, Any] = {
        **response_metadata(version, CRO_DOMAIN, DSO_DOMAIN),
        "time_zone": TIME_ZONE,
        "period": PERIOD,
        "congestion_point": DSOPortfolioQueryCongestionPoint(
            entity_address=EA1_CP,
            connections=(
                DSOPortfolioQueryConnection(EAN_1, AGR_DOMAIN),
                DSOPortfolioQueryConnection(EAN_2),
                DSOPortfolioQueryConnection(EAN_3, AGR2_DOMAIN),
            ),
        ),
    }
    return DSOPortfolioQueryResponse(**{**fields, **changes})


def make_agr_portfolio_update(version: str = "3.1.0", **changes: Any) -> AGRPortfolioUpdate:
    fields: dict[str, Any] = {
        **metadata(version, AGR_DOMAIN, CRO_DOMAIN),
        "time_zone": TIME_ZONE,
        "connections": (
            AGRPortfolioUpdateConnection(EAN_1, START, END),
            AGRPortfolioUpdateConnection(EAN_2, START),
        ),
    }
    return AGRPortfolioUpdate(**{**fields, **changes})


def make_agr_portfolio_update_response(
    version: str = "3.1.0", **changes: Any
) -> AGRPortfolioUpdateResponse:
    return AGRPortfolioUpdateResponse(
        **response_metadata(version, CRO_DOMAIN, AGR_DOMAIN, **changes)
    )


def make_agr_portfolio_query(version: str = "3.1.0", **changes: Any) -> AGRPortfolioQuery:
    fields: dict[str, Any] = {
        **metadata(version, AGR_DOMAIN, CRO_DOMAIN),
        "time_zone": TIME_ZONE,
        "period": PERIOD,
    }
    return AGRPortfolioQuery(**{**fields, **changes})


def make_agr_portfolio_query_response(
    version: str = "3.1.0", **changes: Any
) -> AGRPortfolioQueryResponse:
    """One DSO view: two DSO portfolios and one connection not allocated to any DSO."""
    fields: dict[str, Any] = {
        **response_metadata(version, CRO_DOMAIN, AGR_DOMAIN),
        "time_zone": TIME_ZONE,
        "period": PERIOD,
        "dso_views": (
            AGRPortfolioQueryDSOView(
                dso_portfolios=(
                    AGRPortfolioQueryDSOPortfolio(
                        dso_domain=DSO_DOMAIN,
                        congestion_points=(
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EA1_SPEC_EXAMPLE,
                                mutex_offers_supported=True,
                                day_ahead_redispatch_by=RedispatchBy.AGR,
                                intraday_redispatch_by=RedispatchBy.DSO,
                                connections=(AGRPortfolioQueryConnection(EAN_1),),
                            ),
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EAN_CP,
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.DSO,
                                connections=(AGRPortfolioQueryConnection(EAN_2),),
                            ),
                        ),
                    ),
                    AGRPortfolioQueryDSOPortfolio(
                        dso_domain=DSO2_DOMAIN,
                        congestion_points=(
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EA1_CP,
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.DSO,
                                connections=(AGRPortfolioQueryConnection(EAN_3),),
                            ),
                        ),
                    ),
                ),
                connections=(AGRPortfolioQueryConnection("ean.871685900000000042"),),
            ),
        ),
    }
    return AGRPortfolioQueryResponse(**{**fields, **changes})


def _flex(version: str, sender: str, recipient: str) -> dict[str, Any]:
    """Metadata plus the FlexMessageType attributes, for congestion point EA1_CP."""
    return {
        **metadata(version, sender, recipient),
        "isp_duration": ISP_DURATION,
        "time_zone": TIME_ZONE,
        "period": PERIOD,
        "congestion_point": EA1_CP,
    }


def make_flex_request(version: str = "3.1.0", **changes: Any) -> FlexRequest:
    """Requested ISPs in the evening peak, the rest of the day available; optional
    attributes present (ContractID, ServiceType) and absent (one ISP without Disposition)."""
    fields: dict[str, Any] = {
        **_flex(version, DSO_DOMAIN, AGR_DOMAIN),
        "revision": 3,
        "expiration_date_time": EXPIRATION,
        "contract_id": "contract-2024-001",
        "service_type": "day-ahead & <peak>",
        "isps": (
            FlexRequestISP(1, -500_000, 1_000_000, 68, AvailableRequested.AVAILABLE),
            FlexRequestISP(69, -250_000, 0, 8, AvailableRequested.REQUESTED),
            FlexRequestISP(77, 0, 0),
            FlexRequestISP(78, -9_000_000_000_000, 9_000_000_000_000, 19),
        ),
    }
    return FlexRequest(**{**fields, **changes})


def make_flex_request_response(version: str = "3.1.0", **changes: Any) -> FlexRequestResponse:
    return FlexRequestResponse(**response_metadata(version, AGR_DOMAIN, DSO_DOMAIN, **changes))


def make_flex_offer(version: str = "3.1.0", **changes: Any) -> FlexOffer:
    """A solicited offer of two mutually exclusive options (Unsolicited only from 3.1.0)."""
    fields: dict[str, Any] = {
        **_flex(version, AGR_DOMAIN, DSO_DOMAIN),
        "expiration_date_time": EXPIRATION,
        "unsolicited": None if version == "3.0.0" else False,
        "flex_request_message_id": FLEX_REQUEST_MESSAGE_ID,
        "contract_id": "contract-2024-001",
        "d_prognosis_message_id": D_PROGNOSIS_MESSAGE_ID,
        "baseline_reference": 'baseline "D-1"',
        "currency": "EUR",
        "offer_options": (
            FlexOfferOption(
                option_reference="full",
                price=Decimal("1250.5000"),
                isps=(FlexOfferOptionISP(69, -250_000, 8),),
            ),
            FlexOfferOption(
                option_reference="partial",
                price=Decimal("-0.0001"),
                min_activation_factor=Decimal("0.25"),
                isps=(FlexOfferOptionISP(69, -100_000, 4), FlexOfferOptionISP(73, -50_000)),
            ),
        ),
    }
    return FlexOffer(**{**fields, **changes})


def make_flex_offer_response(version: str = "3.1.0", **changes: Any) -> FlexOfferResponse:
    return FlexOfferResponse(**response_metadata(version, DSO_DOMAIN, AGR_DOMAIN, **changes))


def make_flex_offer_revocation(version: str = "3.1.0", **changes: Any) -> FlexOfferRevocation:
    fields: dict[str, Any] = {
        **metadata(version, AGR_DOMAIN, DSO_DOMAIN),
        "flex_offer_message_id": FLEX_OFFER_MESSAGE_ID,
    }
    return FlexOfferRevocation(**{**fields, **changes})


def make_flex_offer_revocation_response(
    version: str = "3.1.0", **changes: Any
) -> FlexOfferRevocationResponse:
    return FlexOfferRevocationResponse(
        **response_metadata(version, DSO_DOMAIN, AGR_DOMAIN, **changes)
    )


def make_flex_order(version: str = "3.1.0", **changes: Any) -> FlexOrder:
    """The offer's "partial" option ordered at half activation; every optional attribute
    the Version has is set (3.0.0: no Unsolicited, no ServiceType)."""
    later = version != "3.0.0"
    fields: dict[str, Any] = {
        **_flex(version, DSO_DOMAIN, AGR_DOMAIN),
        "unsolicited": False if later else None,
        "flex_offer_message_id": FLEX_OFFER_MESSAGE_ID,
        "service_type": "day-ahead" if later else None,
        "contract_id": "contract-2024-001",
        "d_prognosis_message_id": D_PROGNOSIS_MESSAGE_ID,
        "baseline_reference": "baseline D-1",
        "price": Decimal("-0.0001"),
        "currency": "EUR",
        "order_reference": "order/2024/0042 <a&b>",
        "option_reference": "partial",
        "activation_factor": Decimal("0.50"),
        "isps": (FlexOrderISP(69, -100_000, 4), FlexOrderISP(73, -50_000)),
    }
    return FlexOrder(**{**fields, **changes})


def make_flex_order_response(version: str = "3.1.0", **changes: Any) -> FlexOrderResponse:
    return FlexOrderResponse(**response_metadata(version, AGR_DOMAIN, DSO_DOMAIN, **changes))


def make_flex_reservation_update(version: str = "3.1.0", **changes: Any) -> FlexReservationUpdate:
    """Reserved power released outside the evening peak."""
    fields: dict[str, Any] = {
        **_flex(version, DSO_DOMAIN, AGR_DOMAIN),
        "contract_id": "contract-2024-001",
        "reference": "reservation-update-7",
        "isps": (
            FlexReservationUpdateISP(1, 0, 68),
            FlexReservationUpdateISP(69, -250_000, 8),
            FlexReservationUpdateISP(77, 0, 20),
        ),
    }
    return FlexReservationUpdate(**{**fields, **changes})


def make_flex_reservation_update_response(
    version: str = "3.1.0", **changes: Any
) -> FlexReservationUpdateResponse:
    return FlexReservationUpdateResponse(
        **response_metadata(version, AGR_DOMAIN, DSO_DOMAIN, **changes)
    )


def make_d_prognosis(version: str = "3.1.0", **changes: Any) -> DPrognosis:
    """A forecast for every ISP of the Period, in runs of equal power."""
    fields: dict[str, Any] = {
        **_flex(version, AGR_DOMAIN, DSO_DOMAIN),
        "revision": 12,
        "isps": (
            DPrognosisISP(1, 1_200_000, 28),
            DPrognosisISP(29, 800_000, 40),
            DPrognosisISP(69, 2_500_000, 8),
            DPrognosisISP(77, -150_000, 20),
        ),
    }
    return DPrognosis(**{**fields, **changes})


def make_d_prognosis_response(version: str = "3.1.0", **changes: Any) -> DPrognosisResponse:
    """The status of two earlier FlexOrders: one reflected in the prognosis, one not."""
    fields: dict[str, Any] = {
        **response_metadata(version, DSO_DOMAIN, AGR_DOMAIN),
        "flex_order_statuses": (
            FlexOrderStatus("2c3d4e5f-6a7b-4c8d-9e0f-a1b2c3d4e5f6", True),
            FlexOrderStatus("3D4E5F6A-7B8C-4D9E-8F0A-B1C2D3E4F5A6", False),
        ),
    }
    return DPrognosisResponse(**{**fields, **changes})


def make_flex_settlement(version: str = "3.1.0", **changes: Any) -> FlexSettlement:
    """May's settlement: one order delivered in full, one short with a penalty (optional
    attributes present on one, absent on the other), and one bilateral contract. In 3.x the
    message carries Result (its type extends the response type there)."""
    fields: dict[str, Any] = {
        **metadata(version, DSO_DOMAIN, AGR_DOMAIN),
        "period_start": date(2024, 5, 1),
        "period_end": date(2024, 5, 31),
        "currency": "EUR",
        "flex_order_settlements": (
            FlexOrderSettlement(
                order_reference="order/2024/0042 <a&b>",
                period=PERIOD,
                contract_id="contract-2024-001",
                d_prognosis_message_id=D_PROGNOSIS_MESSAGE_ID,
                congestion_point=EA1_CP,
                price=Decimal("625.2500"),
                penalty=Decimal("100.0000"),
                net_settlement=Decimal("525.2500"),
                isps=(
                    FlexOrderSettlementISP(69, 2_500_000, -100_000, 2_400_000, -100_000, 4),
                    FlexOrderSettlementISP(73, 2_500_000, -50_000, 2_480_000, -20_000, 1, 30_000),
                ),
            ),
            FlexOrderSettlement(
                period=date(2024, 5, 3),
                baseline_reference="baseline D-1",
                congestion_point=EAN_CP,
                price=Decimal(10),
                net_settlement=Decimal(10),
                isps=(FlexOrderSettlementISP(1, 0, 1000, 1000, 1000, 96),),
            ),
        ),
        "contract_settlements": (
            ContractSettlement(
                contract_id="contract-2024-001",
                periods=(
                    ContractSettlementPeriod(
                        period=PERIOD,
                        isps=(
                            ContractSettlementISP(1, -250_000, 68),
                            ContractSettlementISP(
                                69, -250_000, 8, -250_000, -300_000, -200_000, -150_000
                            ),
                        ),
                    ),
                    ContractSettlementPeriod(
                        period=date(2024, 5, 3),
                        isps=(ContractSettlementISP(1, 0, 96),),
                    ),
                ),
            ),
        ),
    }
    return FlexSettlement(**{**fields, **changes})


def make_flex_settlement_response(version: str = "3.1.0", **changes: Any) -> FlexSettlementResponse:
    """One order settlement accepted, one disputed."""
    fields: dict[str, Any] = {
        **response_metadata(version, AGR_DOMAIN, DSO_DOMAIN),
        "flex_order_settlement_statuses": (
            FlexOrderSettlementStatus("order/2024/0042 <a&b>", AcceptedDisputed.ACCEPTED),
            FlexOrderSettlementStatus(None, AcceptedDisputed.DISPUTED, 'delivered 1000 W, not "0"'),
        ),
    }
    return FlexSettlementResponse(**{**fields, **changes})


def make_metering(version: str = "3.1.0", **changes: Any) -> Metering:
    """A connection's day in two profiles: average power and imported energy, with values
    negative (export), zero and with many decimals."""
    fields: dict[str, Any] = {
        **metadata(version, AGR_DOMAIN, DSO_DOMAIN),
        "revision": 1,
        "isp_duration": ISP_DURATION,
        "time_zone": TIME_ZONE,
        "currency": "EUR",
        "period": PERIOD,
        "ean": "E8716859000000001",
        "profiles": (
            MeteringProfile(
                profile_type=MeteringProfileEnum.POWER,
                unit=MeteringUnit.KW,
                isps=(
                    MeteringISP(1, Decimal("12.5")),
                    MeteringISP(2, Decimal("-3.25")),
                    MeteringISP(3, Decimal(0)),
                ),
            ),
            MeteringProfile(
                profile_type=MeteringProfileEnum.IMPORT_ENERGY,
                unit=MeteringUnit.KWH,
                isps=(MeteringISP(1, Decimal("3.125")), MeteringISP(2, Decimal("0.000001"))),
            ),
        ),
    }
    return Metering(**{**fields, **changes})


def make_metering_response(version: str = "3.1.0", **changes: Any) -> MeteringResponse:
    return MeteringResponse(**response_metadata(version, DSO_DOMAIN, AGR_DOMAIN, **changes))


FACTORIES: dict[type[PayloadMessage], Callable[..., PayloadMessage]] = {
    TestMessage: make_test_message,
    TestMessageResponse: make_test_message_response,
    DSOPortfolioUpdate: make_dso_portfolio_update,
    DSOPortfolioUpdateResponse: make_dso_portfolio_update_response,
    DSOPortfolioQuery: make_dso_portfolio_query,
    DSOPortfolioQueryResponse: make_dso_portfolio_query_response,
    AGRPortfolioUpdate: make_agr_portfolio_update,
    AGRPortfolioUpdateResponse: make_agr_portfolio_update_response,
    AGRPortfolioQuery: make_agr_portfolio_query,
    AGRPortfolioQueryResponse: make_agr_portfolio_query_response,
    FlexRequest: make_flex_request,
    FlexRequestResponse: make_flex_request_response,
    FlexOffer: make_flex_offer,
    FlexOfferResponse: make_flex_offer_response,
    FlexOfferRevocation: make_flex_offer_revocation,
    FlexOfferRevocationResponse: make_flex_offer_revocation_response,
    FlexOrder: make_flex_order,
    FlexOrderResponse: make_flex_order_response,
    FlexReservationUpdate: make_flex_reservation_update,
    FlexReservationUpdateResponse: make_flex_reservation_update_response,
    DPrognosis: make_d_prognosis,
    DPrognosisResponse: make_d_prognosis_response,
    FlexSettlement: make_flex_settlement,
    FlexSettlementResponse: make_flex_settlement_response,
    Metering: make_metering,
    MeteringResponse: make_metering_response,
}
assert set(FACTORIES) == set(MESSAGE_TYPES.values()), "a message type has no sample factory"

#: Message types in a stable order (requests before their responses).
MESSAGE_CLASSES: tuple[type[PayloadMessage], ...] = tuple(FACTORIES)
RESPONSE_CLASSES: tuple[type[PayloadResponse], ...] = tuple(
    cls for cls in MESSAGE_CLASSES if issubclass(cls, PayloadResponse)
)


def sample(cls: type[M], version: str = "3.1.0", **changes: Any) -> M:
    """A complete sample of message type `cls` in `version`, with `changes` applied."""
    message = FACTORIES[cls](version, **changes)
    assert isinstance(message, cls)
    return message


def all_samples(version: str) -> dict[type[PayloadMessage], PayloadMessage]:
    """One sample of every message type in `version`."""
    return {cls: factory(version) for cls, factory in FACTORIES.items()}


def version_id(version: str) -> str:
    """Readable parametrize id of a Version ("v3.0.0")."""
    return f"v{version}"
