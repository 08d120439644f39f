"""adapter.interop.shapeshifter against shapeshifter-uftp 2.4: models and XML, both ways.

For every message type: ours -> theirs -> ours and theirs -> ours -> theirs give back an equal
object, and the XML each library writes is read by the other into equal objects. Equality is
checked on a typed, field-for-field picture of each object (`picture`), stricter than `==`:
it tells a DSO row from an AGR row with the same values, and a TimeStamp of +02:00 from the
same instant in UTC. Where a quirk of theirs prevents interop, a test below shows exactly how.

shapeshifter-uftp logs every message it signs or reads at DEBUG on its logger
"shapeshifter-uftp" (hyphen, not the package name); the fixture below quiets it.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

ss = pytest.importorskip("shapeshifter_uftp.uftp")
transport = pytest.importorskip("shapeshifter_uftp.transport")

from xsdata.models.datatype import XmlDate, XmlDuration  # noqa: E402

import adapter.interop  # noqa: E402
from adapter.bulk import LARGE_MESSAGES  # noqa: E402
from adapter.interop import shapeshifter as bridge  # noqa: E402
from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter  # noqa: E402
from adapter.uftp import (  # noqa: E402
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
    FlexRequest,
    FlexRequestISP,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    InvalidXml,
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
    decode,
    encode,
)
from tests.uftp import samples as uftp_samples  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_shapeshifter() -> Iterator[None]:
    logger = logging.getLogger("shapeshifter-uftp")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


# --- field-for-field picture ----------------------------------------------------------------


def picture(value: Any, *, loose_enums: bool = False) -> Any:
    """A nested, typed rendering of `value` that compares field for field.

    Dataclasses and NamedTuples keep their type name beside their fields, enums their type
    and value, datetimes their text (so the offset counts, not just the instant). With
    `loose_enums`, an enum member renders as its text: their parser leaves enum attributes as
    plain `str` (test_their_parser_leaves_enums_as_text).
    """

    def draw(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return (
                type(value).__name__,
                {f.name: draw(getattr(value, f.name)) for f in dataclasses.fields(value)},
            )
        if isinstance(value, tuple) and hasattr(value, "_asdict"):
            fields: dict[str, Any] = value._asdict()
            return (type(value).__name__, {k: draw(v) for k, v in fields.items()})
        if isinstance(value, list | tuple):
            return [type(value).__name__, *map(draw, value)]
        if isinstance(value, Enum):
            return value.value if loose_enums else (type(value).__name__, value.value)
        if isinstance(value, datetime):
            return ("datetime", value.isoformat())
        if isinstance(value, date):
            return ("date", value.isoformat())
        return value

    return draw(value)


def assert_same(actual: Any, expected: Any, *, loose_enums: bool = False) -> None:
    assert picture(actual, loose_enums=loose_enums) == picture(expected, loose_enums=loose_enums)
    assert actual == expected


# --- samples --------------------------------------------------------------------------------

CEST = timezone(timedelta(hours=2))
DSO = "dso.example.com"
CRO = "cro-1.example.org"
AGR = "agr.example.net"
REASON = 'Unknown congestion point\t"ean.871685900000000001"\n& <more>'
EAN_CP = "ean.871685900000000001"
EA1_CP = "ea1.2007-11.net.example:cp-2"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def meta(version: str = "3.1.0", n: int = 1, *, utc: bool = False) -> dict[str, Any]:
    stamp = (
        datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
        if utc
        else datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=CEST)
    )
    return {
        "version": version,
        "sender_domain": DSO,
        "recipient_domain": CRO,
        "time_stamp": stamp,
        "message_id": uuid(n),
        "conversation_id": uuid(1000 + n),
    }


def response(result: Result = Result.ACCEPTED, **extra: Any) -> dict[str, Any]:
    reason = REASON if result is Result.REJECTED else None
    return {"result": result, "rejection_reason": reason, "reference_message_id": uuid(7), **extra}


def dso_update(version: str = "3.1.0") -> DSOPortfolioUpdate:
    row = DSOPortfolioUpdateConnection
    return DSOPortfolioUpdate(
        **meta(version, 2),
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=EAN_CP,
                start_period=date(2024, 5, 1),
                end_period=date(2024, 12, 31),
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR,
                connections=(
                    row("ean.871685900000000101", date(2024, 5, 1)),
                    row("ean.871685900000000102", date(2024, 5, 2), date(2024, 6, 30)),
                ),
            ),
            DSOPortfolioUpdateCongestionPoint(
                entity_address=EA1_CP,
                start_period=date(2024, 6, 1),
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.AGR,
                connections=(row("ea1.2007-11.net.example:conn-1", date(2024, 6, 1)),),
            ),
        ),
    )


def dso_query_response(result: Result, version: str = "3.1.0") -> DSOPortfolioQueryResponse:
    point = None
    if result is Result.ACCEPTED:
        point = DSOPortfolioQueryCongestionPoint(
            entity_address=EAN_CP,
            connections=(
                DSOPortfolioQueryConnection("ean.871685900000000101", AGR),
                DSOPortfolioQueryConnection("ean.871685900000000102"),
            ),
        )
    return DSOPortfolioQueryResponse(
        **meta(version, 4),
        **response(result),
        time_zone="Europe/Amsterdam",
        period=date(2024, 5, 3),
        congestion_point=point,
    )


def agr_query_response(result: Result, version: str = "3.1.0") -> AGRPortfolioQueryResponse:
    row = AGRPortfolioQueryConnection
    return AGRPortfolioQueryResponse(
        **meta(version, 6),
        **response(result),
        time_zone="Europe/Amsterdam",
        period=date(2024, 5, 4),
        dso_views=(
            AGRPortfolioQueryDSOView(
                dso_portfolios=(
                    AGRPortfolioQueryDSOPortfolio(
                        dso_domain=DSO,
                        congestion_points=(
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EAN_CP,
                                mutex_offers_supported=True,
                                day_ahead_redispatch_by=RedispatchBy.DSO,
                                intraday_redispatch_by=RedispatchBy.DSO,
                                connections=(row("ean.871685900000000101"),),
                            ),
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EA1_CP,
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.AGR,
                                connections=(
                                    row("ea1.2007-11.net.example:conn-1"),
                                    row("ea1.2007-11.net.example:conn-2"),
                                ),
                            ),
                        ),
                    ),
                    AGRPortfolioQueryDSOPortfolio(
                        dso_domain="other-dso.example.com",
                        congestion_points=(
                            AGRPortfolioQueryCongestionPoint(
                                entity_address="ean.871685900000000003",
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.DSO,
                                connections=(row("ean.871685900000000301"),),
                            ),
                        ),
                    ),
                ),
                connections=(row("ean.871685900000000999"), row("ean.871685900000000998")),
            ),
            AGRPortfolioQueryDSOView(
                dso_portfolios=(
                    AGRPortfolioQueryDSOPortfolio(
                        dso_domain=DSO,
                        congestion_points=(
                            AGRPortfolioQueryCongestionPoint(
                                entity_address=EAN_CP,
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.AGR,
                                connections=(row("ean.871685900000000102"),),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


def our_samples(version: str) -> dict[str, PayloadMessage]:
    """One or more models of every message type, optional attributes present and absent."""
    samples: dict[str, PayloadMessage] = {
        "TestMessage": TestMessage(**meta(version, 1, utc=True)),
        "DSOPortfolioUpdate": dso_update(version),
        "DSOPortfolioUpdateResponse-accepted": DSOPortfolioUpdateResponse(
            **meta(version, 3), **response()
        ),
        "DSOPortfolioUpdateResponse-rejected": DSOPortfolioUpdateResponse(
            **meta(version, 3, utc=True), **response(Result.REJECTED)
        ),
        "DSOPortfolioQuery": DSOPortfolioQuery(
            **meta(version, 4),
            time_zone="Europe/Amsterdam",
            period=date(2024, 5, 3),
            entity_address=EAN_CP,
        ),
        "DSOPortfolioQueryResponse-accepted": dso_query_response(Result.ACCEPTED, version),
        "DSOPortfolioQueryResponse-rejected": dso_query_response(Result.REJECTED, version),
        "AGRPortfolioUpdate": AGRPortfolioUpdate(
            **meta(version, 5),
            time_zone="Europe/London",
            connections=(
                AGRPortfolioUpdateConnection("ean.871685900000000101", date(2024, 5, 1)),
                AGRPortfolioUpdateConnection(
                    "ea1.2007-11.net.example:conn-1", date(2024, 5, 1), date(2025, 4, 30)
                ),
            ),
        ),
        "AGRPortfolioUpdateResponse-accepted": AGRPortfolioUpdateResponse(
            **meta(version, 5), **response()
        ),
        "AGRPortfolioUpdateResponse-rejected": AGRPortfolioUpdateResponse(
            **meta(version, 5), **response(Result.REJECTED)
        ),
        "AGRPortfolioQuery": AGRPortfolioQuery(
            **meta(version, 6), time_zone="Europe/Amsterdam", period=date(2024, 5, 4)
        ),
        "AGRPortfolioQueryResponse-accepted": agr_query_response(Result.ACCEPTED, version),
        "AGRPortfolioQueryResponse-rejected": agr_query_response(Result.REJECTED, version),
    }
    if version.startswith("3."):
        # 3.x TestMessageResponse: metadata only, which their dataclass reads as Accepted.
        samples["TestMessageResponse"] = TestMessageResponse(**meta(version, 2))
    else:
        # Draft TestMessageResponse has a reference, which has no place on their side
        # (test_draft_test_message_response_reference_has_no_place_there); without one it
        # converts, though our codec would not write it.
        samples["TestMessageResponse"] = TestMessageResponse(
            **meta(version, 2), result=Result.REJECTED, rejection_reason=REASON
        )
    samples.update(flex_samples(version))
    return samples


def flex_samples(version: str) -> dict[str, PayloadMessage]:
    """The messages between DSO and AGR: the codec's samples (every optional attribute set),
    and variants with them absent."""
    make = uftp_samples
    bare_offer = FlexOffer(
        **meta(version, 12, utc=True),
        isp_duration=timedelta(minutes=30),
        time_zone="Europe/London",
        period=date(2024, 10, 27),
        congestion_point=EAN_CP,
        expiration_date_time=datetime(2024, 10, 26, 23, 59, 59, tzinfo=UTC),
        flex_request_message_id=uuid(11),
        currency="GBP",
        offer_options=(
            FlexOfferOption(
                option_reference="only",
                price=Decimal(7),
                isps=(FlexOfferOptionISP(1, 1),),
            ),
        ),
    )
    return {
        "FlexRequest": make.make_flex_request(version),
        "FlexRequest-bare": FlexRequest(
            **meta(version, 11),
            isp_duration=timedelta(minutes=15),
            time_zone="Europe/Amsterdam",
            period=date(2024, 3, 31),
            congestion_point=EAN_CP,
            revision=0,
            expiration_date_time=datetime(2024, 3, 30, 12, tzinfo=CEST),
            isps=(FlexRequestISP(1, 0, 0, 92, AvailableRequested.REQUESTED),),
        ),
        "FlexRequestResponse-accepted": make.make_flex_request_response(version),
        "FlexRequestResponse-rejected": make.make_flex_request_response(
            version, **response(Result.REJECTED)
        ),
        "FlexOffer": make.make_flex_offer(version),
        "FlexOffer-bare": bare_offer,
        "FlexOfferResponse": make.make_flex_offer_response(version),
        "FlexOfferRevocation": make.make_flex_offer_revocation(version),
        "FlexOfferRevocationResponse": make.make_flex_offer_revocation_response(
            version, **response(Result.REJECTED)
        ),
        "FlexOrder": make.make_flex_order(version),
        "FlexOrder-bare": FlexOrder(
            **meta(version, 13),
            isp_duration=timedelta(minutes=15),
            time_zone="Europe/Amsterdam",
            period=date(2024, 5, 2),
            congestion_point=EAN_CP,
            flex_offer_message_id=uuid(12),
            price=Decimal("100.0000"),
            currency="EUR",
            order_reference="o-13",
            isps=(FlexOrderISP(1, -10, 96),),
        ),
        "FlexOrderResponse": make.make_flex_order_response(version),
        "FlexReservationUpdate": make.make_flex_reservation_update(version),
        "FlexReservationUpdateResponse": make.make_flex_reservation_update_response(
            version, **response(Result.REJECTED)
        ),
        "D-Prognosis": make.make_d_prognosis(version),
        "D-Prognosis-odd-isps": DPrognosis(
            **meta(version, 14),
            isp_duration=timedelta(hours=1),
            time_zone="Europe/Amsterdam",
            period=date(2024, 10, 27),
            congestion_point=EA1_CP,
            revision=9_223_372_036_854_775_807,
            # xs:integer in this type alone: zero and negative pass the schema.
            isps=(DPrognosisISP(0, 5, 25), DPrognosisISP(-1, -5, 0)),
        ),
        "D-PrognosisResponse": make.make_d_prognosis_response(version),
        "D-PrognosisResponse-rejected": DPrognosisResponse(
            **meta(version, 15), **response(Result.REJECTED)
        ),
        "FlexSettlement": make.make_flex_settlement(version),
        "FlexSettlement-bare": FlexSettlement(
            **meta(version, 16),
            period_start=date(2024, 6, 1),
            period_end=date(2024, 6, 30),
            currency="EUR",
            flex_order_settlements=(
                FlexOrderSettlement(
                    period=date(2024, 6, 2),
                    congestion_point=EAN_CP,
                    price=Decimal("1.5"),
                    net_settlement=Decimal("1.5"),
                    isps=(FlexOrderSettlementISP(5, 1, 2, 3, 4),),
                ),
            ),
            contract_settlements=(
                ContractSettlement(
                    periods=(
                        ContractSettlementPeriod(
                            period=date(2024, 6, 2), isps=(ContractSettlementISP(5, 0),)
                        ),
                    )
                ),
            ),
        ),
        "FlexSettlementResponse": make.make_flex_settlement_response(version),
        "Metering": make.make_metering(version),
        "Metering-bare": Metering(
            **meta(version, 18),
            revision=2,
            isp_duration=timedelta(minutes=15),
            time_zone="Europe/Amsterdam",
            period=date(2024, 5, 2),
            ean="e0000000000000001",
            profiles=(
                MeteringProfile(
                    profile_type=MeteringProfileEnum.EXPORT_METER_READING,
                    unit=MeteringUnit.KWH,
                    isps=(MeteringISP(96, Decimal("123456.7890")),),
                ),
            ),
        ),
        "MeteringResponse": make.make_metering_response(version, **response(Result.REJECTED)),
        "FlexSettlementResponse-rejected": FlexSettlementResponse(
            **meta(version, 17),
            **response(Result.REJECTED),
            flex_order_settlement_statuses=(
                FlexOrderSettlementStatus("o-1", AcceptedDisputed.DISPUTED, "no such order"),
            ),
        ),
    }


OURS_V3 = our_samples("3.1.0")
OURS_V30 = our_samples("3.0.0")
OURS_DRAFT = our_samples("4.0.0")


def their_meta(n: int, stamp: str = "2024-05-01T10:30:15.123456+02:00") -> dict[str, Any]:
    return {
        "sender_domain": CRO,
        "recipient_domain": DSO,
        "time_stamp": stamp,
        "message_id": uuid(n),
        "conversation_id": uuid(2000 + n),
    }


def their_samples() -> dict[str, Any]:
    """Their dataclasses, built as code written against shapeshifter-uftp builds them."""
    redispatch = ss.RedispatchBy
    agr_row = ss.AgrPortfolioQueryResponseConnection
    return {
        "TestMessage": ss.TestMessage(**their_meta(1)),
        "TestMessageResponse": ss.TestMessageResponse(
            **their_meta(2), result=ss.AcceptedRejected.REJECTED, rejection_reason=REASON
        ),
        "DSOPortfolioUpdate": ss.DsoPortfolioUpdate(
            **their_meta(3),
            time_zone="Europe/Amsterdam",
            congestion_points=[
                ss.DsoPortfolioUpdateCongestionPoint(
                    entity_address=EAN_CP,
                    start_period=XmlDate(2024, 5, 1),
                    end_period=XmlDate(2025, 1, 1),
                    mutex_offers_supported=False,
                    day_ahead_redispatch_by=redispatch.AGR,
                    intraday_redispatch_by=redispatch.DSO,
                    connections=[
                        ss.DsoPortfolioUpdateConnection(
                            entity_address="ean.871685900000000101",
                            start_period=XmlDate(2024, 5, 1),
                            end_period=XmlDate(2024, 5, 31),
                        ),
                        ss.DsoPortfolioUpdateConnection(
                            entity_address="ean.871685900000000102",
                            start_period=XmlDate(2024, 5, 2),
                        ),
                    ],
                ),
                ss.DsoPortfolioUpdateCongestionPoint(
                    entity_address=EA1_CP,
                    start_period=XmlDate(2024, 7, 1),
                    mutex_offers_supported=True,
                    day_ahead_redispatch_by=redispatch.DSO,
                    connections=[
                        ss.DsoPortfolioUpdateConnection(
                            entity_address="ea1.2007-11.net.example:conn-1",
                            start_period=XmlDate(2024, 7, 1),
                        ),
                    ],
                ),
            ],
        ),
        "DSOPortfolioUpdateResponse": ss.DsoPortfolioUpdateResponse(
            **their_meta(4),
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason=REASON,
            dso_portfolio_update_message_id=uuid(3),
        ),
        "DSOPortfolioQuery": ss.DsoPortfolioQuery(
            **their_meta(5), period=XmlDate(2024, 5, 3), entity_address=EAN_CP
        ),
        "DSOPortfolioQueryResponse-accepted": ss.DsoPortfolioQueryResponse(
            **their_meta(6),
            dso_portfolio_query_message_id=uuid(5),
            period=XmlDate(2024, 5, 3),
            congestion_point=ss.DsoPortfolioQueryCongestionPoint(
                entity_address=EAN_CP,
                connections=[
                    ss.DsoPortfolioQueryConnection(entity_address="ean.871685900000000101"),
                    ss.DsoPortfolioQueryConnection(
                        entity_address="ean.871685900000000102", agr_domain=AGR
                    ),
                ],
            ),
        ),
        "DSOPortfolioQueryResponse-rejected": ss.DsoPortfolioQueryResponse(
            **their_meta(6),
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason=REASON,
            dso_portfolio_query_message_id=uuid(5),
            period=XmlDate(2024, 5, 3),
        ),
        "AGRPortfolioUpdate": ss.AgrPortfolioUpdate(
            **their_meta(7),
            connections=[
                ss.AgrPortfolioUpdateConnection(
                    entity_address="ean.871685900000000101", start_period=XmlDate(2024, 5, 1)
                ),
                ss.AgrPortfolioUpdateConnection(
                    entity_address="ean.871685900000000102",
                    start_period=XmlDate(2024, 5, 1),
                    end_period=XmlDate(2024, 9, 30),
                ),
            ],
        ),
        "AGRPortfolioUpdateResponse": ss.AgrPortfolioUpdateResponse(
            **their_meta(8), agr_portfolio_update_message_id=uuid(7)
        ),
        "AGRPortfolioQuery": ss.AgrPortfolioQuery(
            **their_meta(9), time_zone="Europe/Brussels", period=XmlDate(2024, 5, 4)
        ),
        "AGRPortfolioQueryResponse": ss.AgrPortfolioQueryResponse(
            **their_meta(10),
            agr_portfolio_query_message_id=uuid(9),
            period=XmlDate(2024, 5, 4),
            dso_views=[
                ss.AgrPortfolioQueryResponseDSOView(
                    dso_portfolios=[
                        ss.AgrPortfolioQueryResponseDSOPortfolio(
                            dso_domain=DSO,
                            congestion_points=[
                                ss.AgrPortfolioQueryResponseCongestionPoint(
                                    entity_address=EAN_CP,
                                    mutex_offers_supported=True,
                                    day_ahead_redispatch_by=redispatch.AGR,
                                    intraday_redispatch_by=redispatch.AGR,
                                    connections=[agr_row(entity_address="ean.871685900000000101")],
                                ),
                                ss.AgrPortfolioQueryResponseCongestionPoint(
                                    entity_address=EA1_CP,
                                    mutex_offers_supported=False,
                                    day_ahead_redispatch_by=redispatch.DSO,
                                    connections=[
                                        agr_row(entity_address="ea1.2007-11.net.example:c-1"),
                                        agr_row(entity_address="ea1.2007-11.net.example:c-2"),
                                    ],
                                ),
                            ],
                        )
                    ],
                    connections=[agr_row(entity_address="ean.871685900000000999")],
                ),
                ss.AgrPortfolioQueryResponseDSOView(
                    dso_portfolios=[
                        ss.AgrPortfolioQueryResponseDSOPortfolio(
                            dso_domain="other-dso.example.com",
                            congestion_points=[
                                ss.AgrPortfolioQueryResponseCongestionPoint(
                                    entity_address="ean.871685900000000003",
                                    mutex_offers_supported=False,
                                    day_ahead_redispatch_by=redispatch.DSO,
                                    connections=[agr_row(entity_address="ean.871685900000000301")],
                                )
                            ],
                        )
                    ],
                ),
            ],
        ),
    }


def their_flex_samples() -> dict[str, Any]:
    """Their flex dataclasses, as code written against shapeshifter-uftp builds them."""
    flex = {
        "isp_duration": XmlDuration("PT15M"),
        "time_zone": "Europe/Amsterdam",
        "period": XmlDate(2024, 5, 2),
        "congestion_point": EA1_CP,
    }
    return {
        "FlexRequest": ss.FlexRequest(
            **their_meta(21),
            **flex,
            revision=1,
            expiration_date_time="2024-05-01T18:00:00+02:00",
            service_type="intraday",
            isps=[
                ss.FlexRequestISP(
                    disposition=ss.AvailableRequested.AVAILABLE,
                    min_power=-1000,
                    max_power=1000,
                    start=1,
                    duration=68,
                ),
                ss.FlexRequestISP(
                    disposition=ss.AvailableRequested.REQUESTED,
                    min_power=-5000,
                    max_power=-2000,
                    start=69,
                ),
                ss.FlexRequestISP(min_power=0, max_power=0, start=70, duration=27),
            ],
        ),
        "FlexRequestResponse": ss.FlexRequestResponse(
            **their_meta(22),
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason=REASON,
            flex_request_message_id=uuid(21),
        ),
        "FlexOffer": ss.FlexOffer(
            **their_meta(23),
            **flex,
            expiration_date_time="2024-05-01T17:00:00+02:00",
            flex_request_message_id=uuid(21),
            contract_id="c-1",
            currency="EUR",
            offer_options=[
                ss.FlexOfferOption(
                    option_reference="A",
                    price=Decimal("10.25"),
                    min_activation_factor=Decimal("0.5"),
                    isps=[
                        ss.FlexOfferOptionISP(power=-5000, start=69),
                        ss.FlexOfferOptionISP(power=-2000, start=70, duration=3),
                    ],
                ),
                ss.FlexOfferOption(
                    option_reference="B",
                    price=Decimal("0"),
                    isps=[ss.FlexOfferOptionISP(power=-1000, start=69, duration=4)],
                ),
            ],
        ),
        "FlexOffer-unsolicited": ss.FlexOffer(
            **their_meta(24),
            **flex,
            expiration_date_time="2024-05-01T17:00:00+00:00",
            unsolicited=True,
            d_prognosis_message_id=uuid(20),
            baseline_reference="b-7",
            currency="EUR",
            offer_options=[
                ss.FlexOfferOption(
                    option_reference="A",
                    price=Decimal("-3.5"),
                    isps=[ss.FlexOfferOptionISP(power=2000, start=1, duration=96)],
                ),
            ],
        ),
        "FlexOfferResponse": ss.FlexOfferResponse(**their_meta(25), flex_offer_message_id=uuid(23)),
        "FlexOfferRevocation": ss.FlexOfferRevocation(
            **their_meta(26), flex_offer_message_id=uuid(23)
        ),
        "FlexOfferRevocationResponse": ss.FlexOfferRevocationResponse(
            **their_meta(27), flex_offer_revocation_message_id=uuid(26)
        ),
        "FlexOrder": ss.FlexOrder(
            **their_meta(28),
            **flex,
            flex_offer_message_id=uuid(23),
            price=Decimal("5.1250"),
            currency="EUR",
            order_reference="PO-28",
            option_reference="A",
            activation_factor=Decimal("0.75"),
            isps=[
                ss.FlexOrderISP(power=-5000, start=69),
                ss.FlexOrderISP(power=-2000, start=70, duration=3),
            ],
        ),
        "FlexOrder-unsolicited": ss.FlexOrder(
            **their_meta(29),
            **flex,
            unsolicited=True,
            service_type="intraday",
            contract_id="c-9",
            d_prognosis_message_id=uuid(20),
            baseline_reference="b-9",
            price=Decimal(0),
            currency="EUR",
            order_reference="PO-29",
            isps=[ss.FlexOrderISP(power=1000, start=1, duration=96)],
        ),
        "FlexOrderResponse": ss.FlexOrderResponse(
            **their_meta(30),
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason=REASON,
            flex_order_message_id=uuid(28),
        ),
        "FlexReservationUpdate": ss.FlexReservationUpdate(
            **their_meta(31),
            **flex,
            contract_id="c-9",
            reference="r-31",
            isps=[
                ss.FlexReservationUpdateISP(power=0, start=1, duration=68),
                ss.FlexReservationUpdateISP(power=-3000, start=69, duration=28),
            ],
        ),
        "FlexReservationUpdateResponse": ss.FlexReservationUpdateResponse(
            **their_meta(32), flex_reservation_update_message_id=uuid(31)
        ),
        "D-Prognosis": ss.DPrognosis(
            **their_meta(33),
            **flex,
            revision=5,
            isps=[
                ss.DPrognosisISP(power=1000, start=1, duration=48),
                ss.DPrognosisISP(power=-500, start=49, duration=48),
            ],
        ),
        "D-PrognosisResponse": ss.DPrognosisResponse(
            **their_meta(34),
            d_prognosis_message_id=uuid(33),
            flex_order_statuses=[
                ss.FlexOrderStatus(flex_order_message_id=uuid(28), is_validated=True),
                ss.FlexOrderStatus(flex_order_message_id=uuid(29), is_validated=False),
            ],
        ),
        "FlexSettlement": ss.FlexSettlement(
            **their_meta(36),
            period_start=XmlDate(2024, 5, 1),
            period_end=XmlDate(2024, 5, 31),
            currency="EUR",
            flex_order_settlements=[
                ss.FlexOrderSettlement(
                    order_reference="PO-28",
                    period=XmlDate(2024, 5, 2),
                    congestion_point=EA1_CP,
                    price=Decimal("5.125"),
                    penalty=Decimal("1"),
                    net_settlement=Decimal("4.125"),
                    isps=[
                        ss.FlexOrderSettlementISP(
                            start=69,
                            baseline_power=3000,
                            ordered_flex_power=-2000,
                            actual_power=1500,
                            delivered_flex_power=-1500,
                            power_deficiency=500,
                        ),
                        ss.FlexOrderSettlementISP(
                            start=70,
                            duration=3,
                            baseline_power=3000,
                            ordered_flex_power=-2000,
                            actual_power=1000,
                            delivered_flex_power=-2000,
                        ),
                    ],
                ),
            ],
            contract_settlements=[
                ss.ContractSettlement(
                    contract_id="c-9",
                    periods=[
                        ss.ContractSettlementPeriod(
                            period=XmlDate(2024, 5, 2),
                            isps=[
                                ss.ContractSettlementISP(
                                    start=1, duration=96, reserved_power=-3000, ordered_power=-1
                                )
                            ],
                        )
                    ],
                )
            ],
        ),
        "FlexSettlementResponse": ss.FlexSettlementResponse(
            **their_meta(37),
            flex_settlement_message_id=uuid(36),
            flex_order_settlement_statuses=[
                ss.FlexOrderSettlementStatus(
                    order_reference="PO-28", disposition=ss.AcceptedDisputed.ACCEPTED
                ),
                ss.FlexOrderSettlementStatus(
                    disposition=ss.AcceptedDisputed.DISPUTED, dispute_reason=REASON
                ),
            ],
        ),
        "Metering": ss.Metering(
            **their_meta(38),
            revision=3,
            isp_duration=XmlDuration("PT15M"),
            time_zone="Europe/Amsterdam",
            period=XmlDate(2024, 5, 2),
            ean="E8716859000000001",
            profiles=[
                ss.MeteringProfile(
                    profile_type=ss.MeteringProfileEnum.POWER,
                    unit=ss.MeteringUnit.K_W,
                    isps=[
                        ss.MeteringISP(start=1, value=Decimal("1.5")),
                        ss.MeteringISP(start=2, value=Decimal("-0.25")),
                    ],
                ),
                ss.MeteringProfile(
                    profile_type=ss.MeteringProfileEnum.IMPORT_METER_READING,
                    unit=ss.MeteringUnit.K_WH,
                    isps=[ss.MeteringISP(start=1, value=Decimal("99999.001"))],
                ),
            ],
        ),
        "MeteringResponse": ss.MeteringResponse(**their_meta(39), metering_message_id=uuid(38)),
        "D-PrognosisResponse-none": ss.DPrognosisResponse(
            **their_meta(35),
            result=ss.AcceptedRejected.REJECTED,
            rejection_reason=REASON,
            d_prognosis_message_id=uuid(33),
        ),
    }


THEIRS = {**their_samples(), **their_flex_samples()}

#: Their class for each of ours: the dispatch table must agree with this reading of their API.
COUNTERPARTS: dict[type[PayloadMessage], type[Any]] = {
    TestMessage: ss.TestMessage,
    TestMessageResponse: ss.TestMessageResponse,
    DSOPortfolioUpdate: ss.DsoPortfolioUpdate,
    DSOPortfolioUpdateResponse: ss.DsoPortfolioUpdateResponse,
    DSOPortfolioQuery: ss.DsoPortfolioQuery,
    DSOPortfolioQueryResponse: ss.DsoPortfolioQueryResponse,
    AGRPortfolioUpdate: ss.AgrPortfolioUpdate,
    AGRPortfolioUpdateResponse: ss.AgrPortfolioUpdateResponse,
    AGRPortfolioQuery: ss.AgrPortfolioQuery,
    AGRPortfolioQueryResponse: ss.AgrPortfolioQueryResponse,
    FlexRequest: ss.FlexRequest,
    FlexRequestResponse: ss.FlexRequestResponse,
    FlexOffer: ss.FlexOffer,
    FlexOfferResponse: ss.FlexOfferResponse,
    FlexOfferRevocation: ss.FlexOfferRevocation,
    FlexOfferRevocationResponse: ss.FlexOfferRevocationResponse,
    FlexOrder: ss.FlexOrder,
    FlexOrderResponse: ss.FlexOrderResponse,
    FlexReservationUpdate: ss.FlexReservationUpdate,
    FlexReservationUpdateResponse: ss.FlexReservationUpdateResponse,
    DPrognosis: ss.DPrognosis,
    DPrognosisResponse: ss.DPrognosisResponse,
    FlexSettlement: ss.FlexSettlement,
    FlexSettlementResponse: ss.FlexSettlementResponse,
    Metering: ss.Metering,
    MeteringResponse: ss.MeteringResponse,
}

ALL_OURS = {
    f"{version}-{name}": model
    for version, samples in (("3.1.0", OURS_V3), ("3.0.0", OURS_V30), ("4.0.0", OURS_DRAFT))
    for name, model in samples.items()
}


def is_draft_response(model: PayloadMessage) -> bool:
    return isinstance(model, PayloadResponse) and model.version.startswith("4.")


# Our XML they can read: everything but draft responses (test_draft_response_xml_...).
OURS_THEY_READ = {k: m for k, m in ALL_OURS.items() if not is_draft_response(m)}
# Their XML we can read: everything but their TestMessageResponse (always carries Result).
THEIRS_WE_READ = {k: t for k, t in THEIRS.items() if not isinstance(t, ss.TestMessageResponse)}


def test_samples_cover_every_message_type() -> None:
    assert set(COUNTERPARTS) == set(MESSAGE_TYPES.values())
    for samples in (OURS_V3, OURS_V30, OURS_DRAFT):
        assert {type(m) for m in samples.values()} == set(MESSAGE_TYPES.values())
    assert {type(t) for t in THEIRS.values()} == set(COUNTERPARTS.values())
    assert {type(m) for m in OURS_THEY_READ.values()} == set(MESSAGE_TYPES.values())
    assert {type(t) for t in THEIRS_WE_READ.values()} == set(COUNTERPARTS.values()) - {
        ss.TestMessageResponse
    }


def test_our_xml_samples_are_schema_valid() -> None:
    # Guards the XML tests below: a sample our codec could not write would prove nothing.
    for key, model in ALL_OURS.items():
        if isinstance(model, TestMessageResponse) and model.version.startswith("4."):
            continue  # has no reference, which the draft requires; not written by the codec
        assert picture(decode(encode(model))) == picture(model), key


# --- round trips through the other model ----------------------------------------------------


@pytest.mark.parametrize("key", ALL_OURS)
def test_ours_to_theirs_and_back(key: str) -> None:
    model = ALL_OURS[key]
    theirs = to_shapeshifter(model)
    assert type(theirs) is COUNTERPARTS[type(model)]
    assert_same(from_shapeshifter(theirs), model)


@pytest.mark.parametrize("key", THEIRS)
def test_theirs_to_ours_and_back(key: str) -> None:
    theirs = THEIRS[key]
    model = from_shapeshifter(theirs)
    assert COUNTERPARTS[type(model)] is type(theirs)
    assert_same(to_shapeshifter(model), theirs)


def test_values_convert_to_their_types() -> None:
    theirs = to_shapeshifter(OURS_V3["DSOPortfolioUpdate"])
    point = theirs.congestion_points[0]
    assert point.start_period == XmlDate(2024, 5, 1)
    assert point.end_period == XmlDate(2024, 12, 31)
    assert point.day_ahead_redispatch_by is ss.RedispatchBy.DSO
    assert point.intraday_redispatch_by is ss.RedispatchBy.AGR
    assert point.mutex_offers_supported is True
    assert point.connections[0].end_period is None
    assert theirs.congestion_points[1].intraday_redispatch_by is None
    assert theirs.time_stamp == "2024-05-01T10:30:15.123456+02:00"
    rejected = to_shapeshifter(OURS_V3["DSOPortfolioUpdateResponse-rejected"])
    assert rejected.result is ss.AcceptedRejected.REJECTED
    assert rejected.rejection_reason == REASON
    assert rejected.dso_portfolio_update_message_id == uuid(7)


def test_values_convert_to_our_types() -> None:
    model = from_shapeshifter(THEIRS["DSOPortfolioUpdate"])
    assert isinstance(model, DSOPortfolioUpdate)
    point = model.congestion_points[0]
    assert type(point.start_period) is date
    assert point.day_ahead_redispatch_by is RedispatchBy.AGR
    assert type(point.connections[0]) is DSOPortfolioUpdateConnection
    assert model.time_stamp == datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=CEST)
    assert model.time_stamp.utcoffset() == timedelta(hours=2)
    response = from_shapeshifter(THEIRS["AGRPortfolioUpdateResponse"])
    assert isinstance(response, AGRPortfolioUpdateResponse)
    assert response.result is Result.ACCEPTED
    assert response.rejection_reason is None
    assert response.reference_message_id == uuid(7)


# --- XML written by one side, read by the other ---------------------------------------------


@pytest.mark.parametrize("key", OURS_THEY_READ)
def test_our_xml_is_read_by_them(key: str) -> None:
    model = ALL_OURS[key]
    parsed = transport.from_xml(encode(model))
    assert_same(parsed, to_shapeshifter(model), loose_enums=True)
    assert_same(from_shapeshifter(parsed), model)


# Their draft responses carry 3.x reference attributes (test_their_draft_response_xml_...).
def written_in(theirs: Any, version: str) -> bool:
    """Whether their object, with this Version set, is a message of that Version: not a draft
    response (test_their_draft_response_xml_...) nor a 3.0.0 offer or order with what 3.1.0
    added (test_unsolicited_is_not_3_0_0)."""
    if version.startswith("4.") and isinstance(theirs, ss.PayloadMessageResponse):
        return False
    if version != "3.0.0":
        return True
    added_in_3_1 = ("unsolicited", "service_type")
    return all(getattr(theirs, name, None) is None for name in added_in_3_1) and (
        not isinstance(theirs, ss.FlexOrder) or theirs.flex_offer_message_id is not None
    )


THEIR_XML_CASES = [
    (key, version)
    for key, theirs in THEIRS_WE_READ.items()
    for version in ("3.0.0", "3.1.0", "4.0.0")
    if written_in(theirs, version)
]


@pytest.mark.parametrize(("key", "version"), THEIR_XML_CASES)
def test_their_xml_is_read_by_us(key: str, version: str) -> None:
    theirs = dataclasses.replace(THEIRS[key], version=version)
    model = decode(transport.to_xml(theirs).encode("utf-8"))
    assert_same(model, from_shapeshifter(theirs))
    assert_same(to_shapeshifter(model), theirs)


# --- quirks ---------------------------------------------------------------------------------


def test_their_parser_leaves_enums_as_text() -> None:
    """Their fields are typed with StrEnums, yet their parser fills in plain text."""
    parsed = transport.from_xml(encode(OURS_V3["DSOPortfolioUpdateResponse-rejected"]))
    assert type(parsed.result) is str
    assert parsed.result == ss.AcceptedRejected.REJECTED
    point = transport.from_xml(encode(OURS_V3["DSOPortfolioUpdate"])).congestion_points[0]
    assert type(point.day_ahead_redispatch_by) is str
    # The bridge reads text and members alike, and hands over our enum members.
    model = from_shapeshifter(parsed)
    assert isinstance(model, DSOPortfolioUpdateResponse)
    assert model.result is Result.REJECTED


def test_their_test_message_response_xml_is_not_valid_3x() -> None:
    """Their TestMessageResponse always writes Result; the 3.x type is metadata only."""
    theirs = ss.TestMessageResponse(**their_meta(2))
    xml = transport.to_xml(theirs)
    assert ' Result="Accepted"' in xml
    with pytest.raises(InvalidXml, match="Result"):
        decode(xml.encode("utf-8"))
    # Without the attribute it is our 3.x message, and it converts to their object.
    stripped = xml.replace(' Result="Accepted"', "").encode("utf-8")
    assert_same(to_shapeshifter(decode(stripped)), theirs)


def test_their_draft_test_message_response_xml_lacks_the_reference() -> None:
    theirs = ss.TestMessageResponse(**their_meta(2), version="4.0.0")
    with pytest.raises(InvalidXml, match="ReferenceMessageID"):
        decode(transport.to_xml(theirs).encode("utf-8"))


def test_draft_test_message_response_reference_has_no_place_there() -> None:
    model = TestMessageResponse(**meta("4.0.0"), reference_message_id=uuid(9))
    with pytest.raises(ValueError, match="reference_message_id"):
        to_shapeshifter(model)
    # They read the draft XML all the same, dropping the reference without a word.
    parsed = transport.from_xml(encode(model))
    assert_same(from_shapeshifter(parsed), dataclasses.replace(model, reference_message_id=""))


@pytest.mark.parametrize(
    "key",
    [
        "DSOPortfolioUpdateResponse-accepted",
        "DSOPortfolioQueryResponse-rejected",
        "AGRPortfolioUpdateResponse-rejected",
        "AGRPortfolioQueryResponse-accepted",
    ],
)
def test_draft_response_xml_is_unreadable_by_them(key: str) -> None:
    """They know only the 3.x reference attributes, which a draft response does not have."""
    xml = encode(OURS_DRAFT[key])
    assert b' ReferenceMessageID="' in xml
    with pytest.raises(TypeError, match="message_id"):
        transport.from_xml(xml)


@pytest.mark.parametrize(
    "key",
    [
        "DSOPortfolioUpdateResponse",
        "DSOPortfolioQueryResponse-accepted",
        "AGRPortfolioUpdateResponse",
        "AGRPortfolioQueryResponse",
    ],
)
def test_their_draft_response_xml_is_rejected_by_us(key: str) -> None:
    theirs = dataclasses.replace(THEIRS[key], version="4.0.0")
    with pytest.raises(InvalidXml, match="MessageID"):
        decode(transport.to_xml(theirs).encode("utf-8"))
    # The objects convert all the same: the reference lands in reference_message_id.
    model = from_shapeshifter(theirs)
    assert isinstance(model, PayloadResponse)
    assert model.reference_message_id
    assert_same(to_shapeshifter(model), theirs)


def test_unsolicited_is_not_3_0_0() -> None:
    """Their FlexOffer writes Unsolicited whatever its Version; 3.0.0 has no such attribute,
    so our codec refuses such a 3.0.0 message, as the official 3.0.0 schema does."""
    theirs = dataclasses.replace(THEIRS["FlexOffer-unsolicited"], version="3.0.0")
    with pytest.raises(InvalidXml, match="Unsolicited"):
        decode(transport.to_xml(theirs).encode("utf-8"))
    # Read as 3.1.0, the same offer is fine.
    model = decode(transport.to_xml(THEIRS["FlexOffer-unsolicited"]).encode("utf-8"))
    assert isinstance(model, FlexOffer) and model.unsolicited is True


def test_unsolicited_3_0_0_offer_cannot_be_built_there() -> None:
    """3.0.0 says an offer is unsolicited by leaving FlexRequestMessageID out; their FlexOffer
    wants Unsolicited=true for that, which 3.0.0 cannot say."""
    model = dataclasses.replace(uftp_samples.make_flex_offer("3.0.0"), flex_request_message_id=None)
    decode(encode(model))  # a sound 3.0.0 message
    with pytest.raises(TypeError, match="FlexRequestMessageId is required"):
        to_shapeshifter(model)


def test_prices_they_would_round_are_refused() -> None:
    model = uftp_samples.make_flex_offer()
    option = dataclasses.replace(model.offer_options[0], price=Decimal("0.00001"))
    with pytest.raises(ValueError, match=r"Price 0\.00001 has more than 4 decimals"):
        to_shapeshifter(dataclasses.replace(model, offer_options=(option,)))
    option = dataclasses.replace(model.offer_options[0], min_activation_factor=Decimal("0.255"))
    with pytest.raises(ValueError, match="MinActivationFactor"):
        to_shapeshifter(dataclasses.replace(model, offer_options=(option,)))


def test_durations_and_amounts_convert_to_their_types() -> None:
    theirs = to_shapeshifter(uftp_samples.make_flex_offer())
    assert theirs.isp_duration == XmlDuration("PT15M")
    assert theirs.expiration_date_time == "2024-05-01T18:00:00+02:00"
    option = theirs.offer_options[1]
    assert option.price == Decimal("-0.0001") and option.min_activation_factor == Decimal("0.25")
    back = from_shapeshifter(dataclasses.replace(theirs, isp_duration=XmlDuration("PT900S")))
    assert isinstance(back, FlexOffer)
    assert back.isp_duration == timedelta(minutes=15)
    assert type(back.offer_options[0].price) is Decimal


def test_their_draft_flex_settlement_xml_carries_result() -> None:
    """Their FlexSettlement is a response class, as in the 3.x XSD, and writes Result in the
    draft too, where the type has none: our codec refuses it, as the draft schema does."""
    theirs = dataclasses.replace(THEIRS["FlexSettlement"], version="4.0.0")
    xml = transport.to_xml(theirs)
    assert ' Result="Accepted"' in xml
    with pytest.raises(InvalidXml, match="Result"):
        decode(xml.encode("utf-8"))
    stripped = xml.replace(' Result="Accepted"', "").encode("utf-8")
    assert_same(to_shapeshifter(decode(stripped)), theirs)


def test_our_draft_flex_settlement_is_read_by_them_as_accepted() -> None:
    model = OURS_DRAFT["FlexSettlement"]
    assert b" Result=" not in encode(model)
    parsed = transport.from_xml(encode(model))
    assert parsed.result == ss.AcceptedRejected.ACCEPTED
    assert_same(from_shapeshifter(parsed), model)


def test_utc_stamp_spelled_z_comes_back_as_plus_zero() -> None:
    theirs = ss.TestMessage(**their_meta(1, stamp="2024-05-01T08:30:00Z"))
    model = from_shapeshifter(theirs)
    assert model.time_stamp == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    back = to_shapeshifter(model)
    assert back.time_stamp == "2024-05-01T08:30:00+00:00"
    assert datetime.fromisoformat(back.time_stamp) == datetime.fromisoformat(theirs.time_stamp)


def test_stamp_digits_beyond_microseconds_are_cut() -> None:
    theirs = ss.TestMessage(**their_meta(1, stamp="2024-05-01T10:00:00.123456789+02:00"))
    assert to_shapeshifter(from_shapeshifter(theirs)).time_stamp == (
        "2024-05-01T10:00:00.123456+02:00"
    )


def test_stamp_without_offset_is_read_as_utc() -> None:
    theirs = ss.TestMessage(**their_meta(1, stamp="2024-05-01T10:00:00"))
    assert from_shapeshifter(theirs).time_stamp == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_naive_stamp_is_refused() -> None:
    model = TestMessage(**{**meta(), "time_stamp": datetime(2024, 5, 1, 10)})
    with pytest.raises(ValueError, match="timezone-aware"):
        to_shapeshifter(model)


def test_period_zone_suffix_is_dropped() -> None:
    """xs:date may carry a zone; XmlDate keeps it, a Period (a calendar day) does not."""
    xml = transport.to_xml(THEIRS["AGRPortfolioQuery"]).replace(
        'Period="2024-05-04"', 'Period="2024-05-04+02:00"'
    )
    theirs = transport.from_xml(xml.encode("utf-8"))
    assert theirs.period == XmlDate(2024, 5, 4, 120)
    model = from_shapeshifter(theirs)
    assert isinstance(model, AGRPortfolioQuery)
    assert model.period == date(2024, 5, 4)
    assert to_shapeshifter(model).period == XmlDate(2024, 5, 4)
    assert_same(decode(xml.encode("utf-8")), model)  # the codec reads it the same way


def test_periods_and_stamps_given_in_python_types_are_read() -> None:
    theirs = ss.AgrPortfolioQuery(
        **{**their_meta(9), "time_stamp": datetime(2024, 5, 1, 10, tzinfo=CEST)},
        period=date(2024, 5, 4),
    )
    model = from_shapeshifter(theirs)
    assert isinstance(model, AGRPortfolioQuery)
    assert model.period == date(2024, 5, 4)
    assert model.time_stamp == datetime(2024, 5, 1, 10, tzinfo=CEST)


def test_unset_metadata_is_none_there_and_empty_here() -> None:
    model = TestMessage()
    theirs = to_shapeshifter(model)
    assert (theirs.version, theirs.sender_domain, theirs.time_stamp, theirs.message_id) == (
        None,
        None,
        None,
        None,
    )
    assert_same(from_shapeshifter(theirs), model)


def test_version_can_be_given() -> None:
    theirs = ss.TestMessage(**their_meta(1))
    assert theirs.version == "3.1.0"  # their default, whatever the caller meant
    assert from_shapeshifter(theirs).version == "3.1.0"
    assert from_shapeshifter(theirs, version="3.0.0").version == "3.0.0"


def test_text_where_a_bool_belongs_is_refused() -> None:
    theirs = THEIRS["DSOPortfolioUpdate"]
    point = dataclasses.replace(theirs.congestion_points[0], mutex_offers_supported="false")
    with pytest.raises(TypeError, match="MutexOffersSupported"):
        from_shapeshifter(dataclasses.replace(theirs, congestion_points=[point]))


def test_unknown_enum_values_are_refused() -> None:
    theirs = dataclasses.replace(THEIRS["DSOPortfolioUpdateResponse"], result="Maybe")
    with pytest.raises(ValueError, match="'Maybe' is not a valid Result"):
        from_shapeshifter(theirs)


def test_empty_lists_are_refused_by_their_constructors() -> None:
    sample = OURS_V3["AGRPortfolioQueryResponse-rejected"]
    assert isinstance(sample, AGRPortfolioQueryResponse)
    model = dataclasses.replace(sample, dso_views=())
    with pytest.raises(ValueError, match="dso_views"):
        to_shapeshifter(model)


def test_types_without_counterpart_are_refused() -> None:
    with pytest.raises(TypeError, match="no shapeshifter-uftp counterpart"):
        to_shapeshifter(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SignedMessage"):
        from_shapeshifter(ss.SignedMessage(sender_domain=DSO, sender_role="DSO", body=b""))


def test_package_exports_the_bridge_lazily() -> None:
    assert adapter.interop.to_shapeshifter is bridge.to_shapeshifter
    assert adapter.interop.from_shapeshifter is bridge.from_shapeshifter
    with pytest.raises(AttributeError):
        _ = adapter.interop.no_such_bridge


def test_missing_extra_names_the_install_command() -> None:
    # In a fresh interpreter, so that hiding the package leaves this process untouched.
    code = (
        "import sys; sys.modules['shapeshifter_uftp'] = None\n"
        "import adapter.interop\n"
        "try:\n"
        "    adapter.interop.to_shapeshifter\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'uftp-adapter[shapeshifter]'" in out


def test_their_parser_builds_our_classes_unless_confined() -> None:
    """xsdata builds the last-imported dataclass named like the root; the bridge fixes that."""
    code = (
        "import logging\n"
        "from shapeshifter_uftp import transport\n"
        "logging.getLogger('shapeshifter-uftp').setLevel(logging.WARNING)\n"
        "from datetime import UTC, datetime\n"
        "from adapter.uftp import TestMessage, encode\n"
        "uid = '00000001-0000-4000-8000-000000000001'\n"
        "xml = encode(TestMessage(version='3.1.0', sender_domain='a.example.com',\n"
        "    recipient_domain='b.example.com', time_stamp=datetime.now(UTC),\n"
        "    message_id=uid, conversation_id=uid))\n"
        "print(type(transport.from_xml(xml)).__module__)\n"
        "import adapter.interop.shapeshifter\n"
        "print(type(transport.from_xml(xml)).__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["adapter.uftp.messages", "shapeshifter_uftp.uftp.messages.test_message"]


def test_bridge_leaves_a_parser_package_the_application_chose() -> None:
    context = transport.parser.context
    assert context.models_package == bridge.THEIR_PACKAGE
    context.models_package = "shapeshifter_uftp.uftp"
    try:
        bridge._confine_their_parser()
        assert context.models_package == "shapeshifter_uftp.uftp"
    finally:
        context.models_package = bridge.THEIR_PACKAGE
        context.reset()


# --- large messages, their ISPs held as text ------------------------------------------------


@pytest.mark.parametrize("name", ["Metering-3.1.0.xml", "FlexSettlement-3.1.0.xml"])
def test_column_wise_isps_convert_to_theirs_as_rows_do(name: str) -> None:
    """A large Metering or FlexSettlement read by our codec holds its ISPs as text
    (`MeteringISPs`, `FlexOrderSettlementISPs`): converted, it is what the rows give."""
    data = (Path(__file__).parent / "fixtures" / name).read_bytes()
    columns = decode(data, bulk=dataclasses.replace(LARGE_MESSAGES, threshold=0))
    rows = decode(data)
    assert columns == rows and type(columns) is type(rows)
    held = columns.profiles[0].isps if name.startswith("Metering") else None  # type: ignore[attr-defined]
    if held is None:
        held = columns.flex_order_settlements[0].isps  # type: ignore[attr-defined]
    assert not isinstance(held, tuple)
    assert to_shapeshifter(columns) == to_shapeshifter(rows)
    assert_same(from_shapeshifter(to_shapeshifter(columns)), rows)
