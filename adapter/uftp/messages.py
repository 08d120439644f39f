"""Typed, immutable models of the UFTP messages: the portfolio messages a DSO, a CRO and an
AGR exchange in the contract phase (spec: contract-phase.md), the flexibility trading between
DSO and AGR (FlexRequest to FlexSettlement, D-Prognosis, Metering), and the TestMessage pair.

Names follow the XSD types so that a reader can put the schema beside this file. Fields are
snake_case spellings of the XML attributes; the codec owns the mapping. Where the XSDs of the
Versions differ, a field holds the union (e.g. `unsolicited`, absent from 3.0.0) and the schema
of the message's Version decides what may be written.

Two shapes, chosen for cost: messages and congestion points are frozen dataclasses (a handful
per message), while the rows that come by the hundred thousand (connections, ISPs) are
NamedTuples, which are immutable too but build about twice as fast as a frozen dataclass.

Value types: powers and ISP numbers are `int` (xs:integer is unbounded, so is `int`); prices,
amounts, activation factors and metered values are `Decimal` (xs:decimal, exact); an
ISP-Duration is a `timedelta`; Periods are `date`s and instants aware `datetime`s.

Metadata (spec: metadata-attributes.md) defaults to empty: a handler or a caller composes the
business content and the participant fills Version, domains, TimeStamp and identifiers when it
sends. The codec refuses to serialize a message whose metadata is still empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, NamedTuple

__all__ = [
    "MESSAGE_TYPES",
    "RESPONSE_TYPES",
    "AGRPortfolioQuery",
    "AGRPortfolioQueryCongestionPoint",
    "AGRPortfolioQueryConnection",
    "AGRPortfolioQueryDSOPortfolio",
    "AGRPortfolioQueryDSOView",
    "AGRPortfolioQueryResponse",
    "AGRPortfolioUpdate",
    "AGRPortfolioUpdateConnection",
    "AGRPortfolioUpdateResponse",
    "AcceptedDisputed",
    "AvailableRequested",
    "ContractSettlement",
    "ContractSettlementISP",
    "ContractSettlementPeriod",
    "DPrognosis",
    "DPrognosisISP",
    "DPrognosisResponse",
    "DSOPortfolioQuery",
    "DSOPortfolioQueryCongestionPoint",
    "DSOPortfolioQueryConnection",
    "DSOPortfolioQueryResponse",
    "DSOPortfolioUpdate",
    "DSOPortfolioUpdateCongestionPoint",
    "DSOPortfolioUpdateConnection",
    "DSOPortfolioUpdateResponse",
    "FlexMessage",
    "FlexOffer",
    "FlexOfferOption",
    "FlexOfferOptionISP",
    "FlexOfferResponse",
    "FlexOfferRevocation",
    "FlexOfferRevocationResponse",
    "FlexOrder",
    "FlexOrderISP",
    "FlexOrderResponse",
    "FlexOrderSettlement",
    "FlexOrderSettlementISP",
    "FlexOrderSettlementStatus",
    "FlexOrderStatus",
    "FlexRequest",
    "FlexRequestISP",
    "FlexRequestResponse",
    "FlexReservationUpdate",
    "FlexReservationUpdateISP",
    "FlexReservationUpdateResponse",
    "FlexSettlement",
    "FlexSettlementResponse",
    "Metering",
    "MeteringISP",
    "MeteringProfile",
    "MeteringProfileEnum",
    "MeteringResponse",
    "MeteringUnit",
    "PayloadMessage",
    "PayloadResponse",
    "RedispatchBy",
    "Result",
    "Role",
    "TestMessage",
    "TestMessageResponse",
]


class Role(StrEnum):
    """USEF-RoleType: the roles that take part in UFTP."""

    AGR = "AGR"
    CRO = "CRO"
    DSO = "DSO"


class Result(StrEnum):
    """AcceptedRejectedType."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class RedispatchBy(StrEnum):
    """RedispatchByType: which party redispatches."""

    AGR = "AGR"
    DSO = "DSO"


class AcceptedDisputed(StrEnum):
    """AcceptedDisputedType: the AGR's verdict on one settled order."""

    ACCEPTED = "Accepted"
    DISPUTED = "Disputed"


class MeteringProfileEnum(StrEnum):
    """MeteringProfileEnum: what the values of a metering profile are."""

    #: Average active power over the ISP, import minus export (spec: metering.md).
    POWER = "Power"
    IMPORT_ENERGY = "ImportEnergy"
    EXPORT_ENERGY = "ExportEnergy"
    IMPORT_METER_READING = "ImportMeterReading"
    EXPORT_METER_READING = "ExportMeterReading"


class MeteringUnit(StrEnum):
    """MeteringUnitType: kW for Power profiles, kWh for energy and meter readings."""

    KW = "kW"
    KWH = "kWh"


class AvailableRequested(StrEnum):
    """AvailableRequestedType: whether a FlexRequest ISP asks for flexibility or only says how
    much room there is (spec: flex-request.md, Disposition)."""

    AVAILABLE = "Available"
    REQUESTED = "Requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadMessage:
    """PayloadMessageType: the metadata every inner message carries."""

    #: XML root element name; every concrete message sets it.
    xml_name: ClassVar[str] = ""

    version: str = ""
    sender_domain: str = ""
    recipient_domain: str = ""
    time_stamp: datetime | None = None
    message_id: str = ""
    conversation_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadResponse(PayloadMessage):
    """PayloadMessageResponseType plus the reference to the request it answers.

    In 3.x each response type names its reference attribute after the request
    (e.g. DSOPortfolioQueryMessageID); the draft next version calls it ReferenceMessageID for
    all. The model keeps one field, `reference_message_id`, and the codec writes the spelling of
    the message's Version.
    """

    #: The request type this response answers; every concrete response sets it.
    request_type: ClassVar[type[PayloadMessage]]

    result: Result = Result.ACCEPTED
    rejection_reason: str | None = None
    reference_message_id: str = ""

    @property
    def accepted(self) -> bool:
        return self.result == Result.ACCEPTED


# --- TestMessage ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessage(PayloadMessage):
    """Checks that two participants can reach each other and verify each other's signatures."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    xml_name: ClassVar[str] = "TestMessage"


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessageResponse(PayloadResponse):
    """Answer to a TestMessage.

    In 3.x this type carries only metadata (no Result, no reference); Result, RejectionReason
    and ReferenceMessageID exist from the draft next version on. The codec drops them for 3.x.
    """

    __test__: ClassVar[bool] = False
    xml_name: ClassVar[str] = "TestMessageResponse"
    request_type: ClassVar[type[PayloadMessage]] = TestMessage


# --- DSOPortfolioUpdate ---------------------------------------------------------------------


class DSOPortfolioUpdateConnection(NamedTuple):
    """A Connection behind a congestion point, for the Periods given (EndPeriod inclusive)."""

    entity_address: str
    start_period: date
    end_period: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdateCongestionPoint:
    """A congestion point the DSO trades flexibility on, with its connections."""

    entity_address: str
    start_period: date
    end_period: date | None = None
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    intraday_redispatch_by: RedispatchBy | None = None
    connections: tuple[DSOPortfolioUpdateConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdate(PayloadMessage):
    """DSO -> CRO: the congestion points the DSO trades on (spec: dso-portfolio-update.md)."""

    xml_name: ClassVar[str] = "DSOPortfolioUpdate"

    time_zone: str
    congestion_points: tuple[DSOPortfolioUpdateCongestionPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdateResponse(PayloadResponse):
    """CRO -> DSO. In 3.x its reference attribute is, as the XSD spells it,
    DSOPortfolioUpdateResponseMessageID."""

    xml_name: ClassVar[str] = "DSOPortfolioUpdateResponse"
    request_type: ClassVar[type[PayloadMessage]] = DSOPortfolioUpdate


# --- DSOPortfolioQuery ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQuery(PayloadMessage):
    """DSO -> CRO: which connections lie behind one congestion point on one Period."""

    xml_name: ClassVar[str] = "DSOPortfolioQuery"

    time_zone: str
    period: date
    entity_address: str


class DSOPortfolioQueryConnection(NamedTuple):
    """A connection of the queried congestion point; agr_domain when an AGR registered it."""

    entity_address: str
    agr_domain: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQueryCongestionPoint:
    entity_address: str
    connections: tuple[DSOPortfolioQueryConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQueryResponse(PayloadResponse):
    """CRO -> DSO: the answer to a DSOPortfolioQuery; no congestion point when rejected."""

    xml_name: ClassVar[str] = "DSOPortfolioQueryResponse"
    request_type: ClassVar[type[PayloadMessage]] = DSOPortfolioQuery

    time_zone: str
    period: date
    congestion_point: DSOPortfolioQueryCongestionPoint | None = None


# --- AGRPortfolioUpdate ---------------------------------------------------------------------


class AGRPortfolioUpdateConnection(NamedTuple):
    """A connection the aggregator represents, for the Periods given."""

    entity_address: str
    start_period: date
    end_period: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioUpdate(PayloadMessage):
    """AGR -> CRO: the connections the aggregator represents (spec: agr-portfolio-update.md)."""

    xml_name: ClassVar[str] = "AGRPortfolioUpdate"

    time_zone: str
    connections: tuple[AGRPortfolioUpdateConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioUpdateResponse(PayloadResponse):
    xml_name: ClassVar[str] = "AGRPortfolioUpdateResponse"
    request_type: ClassVar[type[PayloadMessage]] = AGRPortfolioUpdate


# --- AGRPortfolioQuery ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQuery(PayloadMessage):
    """AGR -> CRO: the DSO view of the aggregator's own connections on one Period."""

    xml_name: ClassVar[str] = "AGRPortfolioQuery"

    time_zone: str
    period: date


class AGRPortfolioQueryConnection(NamedTuple):
    entity_address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQueryCongestionPoint:
    """A congestion point holding at least one of the aggregator's connections, with its flags."""

    entity_address: str
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    intraday_redispatch_by: RedispatchBy | None = None
    connections: tuple[AGRPortfolioQueryConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQueryDSOPortfolio:
    """The part of one DSO's portfolio that holds the aggregator's connections."""

    dso_domain: str
    congestion_points: tuple[AGRPortfolioQueryCongestionPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQueryDSOView:
    """DSO-View: the DSO portfolios, and the connections not allocated to any DSO."""

    dso_portfolios: tuple[AGRPortfolioQueryDSOPortfolio, ...]
    connections: tuple[AGRPortfolioQueryConnection, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQueryResponse(PayloadResponse):
    xml_name: ClassVar[str] = "AGRPortfolioQueryResponse"
    request_type: ClassVar[type[PayloadMessage]] = AGRPortfolioQuery

    time_zone: str
    period: date
    dso_views: tuple[AGRPortfolioQueryDSOView, ...] = ()


# --- Flexibility trading between DSO and AGR -----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexMessage(PayloadMessage):
    """FlexMessageType: a message about the ISPs of one Period at one congestion point.

    ISP-Duration and TimeZone are market-wide values, repeated in every message so that a
    receiver can reject one that assumes others (spec: metadata-attributes.md).
    """

    isp_duration: timedelta
    time_zone: str
    period: date
    congestion_point: str


class FlexRequestISP(NamedTuple):
    """One or more ISPs (from `start`, 1 = the first of the day) of a FlexRequest: the room
    to deviate from the baseline, in Watts (spec: power.md for the sign)."""

    start: int
    min_power: int
    max_power: int
    duration: int = 1
    disposition: AvailableRequested | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexRequest(FlexMessage):
    """DSO -> AGR: a request for flexibility (spec: flex-request.md)."""

    xml_name: ClassVar[str] = "FlexRequest"

    revision: int
    expiration_date_time: datetime
    contract_id: str | None = None
    service_type: str | None = None
    isps: tuple[FlexRequestISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexRequestResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexRequestMessageID."""

    xml_name: ClassVar[str] = "FlexRequestResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexRequest


class FlexOfferOptionISP(NamedTuple):
    """The power offered for one or more ISPs, in Watts."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferOption:
    """One option of a FlexOffer; a DSO orders at most one option of an offer."""

    option_reference: str
    price: Decimal
    #: The XSD's default: an option without the attribute is to be activated fully.
    min_activation_factor: Decimal = Decimal("1.00")
    isps: tuple[FlexOfferOptionISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOffer(FlexMessage):
    """AGR -> DSO: an offer of flexibility, solicited by a FlexRequest or not
    (spec: flex-offer.md).

    `unsolicited` is None when the attribute is absent: 3.0.0 has no such attribute (an
    offer without FlexRequestMessageID is unsolicited), and the draft's default is false.
    """

    xml_name: ClassVar[str] = "FlexOffer"

    expiration_date_time: datetime
    unsolicited: bool | None = None
    flex_request_message_id: str | None = None
    contract_id: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None
    currency: str
    offer_options: tuple[FlexOfferOption, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferResponse(PayloadResponse):
    """DSO -> AGR. 3.x reference attribute: FlexOfferMessageID."""

    xml_name: ClassVar[str] = "FlexOfferResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexOffer


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocation(PayloadMessage):
    """AGR -> DSO: voids an earlier FlexOffer that has no accepted FlexOrder yet
    (spec: flex-offer-revocation.md)."""

    xml_name: ClassVar[str] = "FlexOfferRevocation"

    flex_offer_message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocationResponse(PayloadResponse):
    """DSO -> AGR. 3.x reference attribute: FlexOfferRevocationMessageID."""

    xml_name: ClassVar[str] = "FlexOfferRevocationResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexOfferRevocation


class FlexOrderISP(NamedTuple):
    """The power ordered for one or more ISPs, in Watts: the offer's, copied unchanged."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrder(FlexMessage):
    """DSO -> AGR: an order for flexibility, of one option of a FlexOffer or unsolicited
    (spec: flex-order.md). The ISPs must be the offer's exactly.

    3.0.0 requires `flex_offer_message_id` and knows neither `unsolicited` nor
    `service_type`; 3.1.0 added both and made the reference optional ("mandatory if
    Unsolicited=false").
    """

    xml_name: ClassVar[str] = "FlexOrder"

    unsolicited: bool | None = None
    flex_offer_message_id: str | None = None
    service_type: str | None = None
    contract_id: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None
    price: Decimal
    currency: str
    order_reference: str
    option_reference: str | None = None
    #: The XSD's default: an order without the attribute activates the option fully.
    activation_factor: Decimal = Decimal("1.00")
    isps: tuple[FlexOrderISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrderResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexOrderMessageID."""

    xml_name: ClassVar[str] = "FlexOrderResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexOrder


class FlexReservationUpdateISP(NamedTuple):
    """The power still reserved for one or more ISPs, in Watts (0: released)."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdate(FlexMessage):
    """DSO -> AGR: which part of a bilateral contract's volume stays reserved
    (spec: flex-reservation-update.md)."""

    xml_name: ClassVar[str] = "FlexReservationUpdate"

    contract_id: str
    reference: str
    isps: tuple[FlexReservationUpdateISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdateResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexReservationUpdateMessageID."""

    xml_name: ClassVar[str] = "FlexReservationUpdateResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexReservationUpdate


class DPrognosisISP(NamedTuple):
    """The power forecast for one or more ISPs, in Watts.

    Start and Duration are xs:integer in this type only (positiveInteger elsewhere), so 0
    and negative values pass the schema; whether they make sense is for the receiver."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DPrognosis(FlexMessage):
    """AGR -> DSO: the AGR's forecast for its connections behind a congestion point, for
    every ISP of the Period (spec: d-prognosis.md). XML name: D-Prognosis."""

    xml_name: ClassVar[str] = "D-Prognosis"

    revision: int
    isps: tuple[DPrognosisISP, ...]


class FlexOrderStatus(NamedTuple):
    """Whether the D-Prognosis just received reflects a FlexOrder sent earlier.

    The XSD names the order by FlexOrderMessageID (the spec page's "Sequence" is not in any
    Version's schema)."""

    flex_order_message_id: str
    is_validated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DPrognosisResponse(PayloadResponse):
    """DSO -> AGR, with the status of the FlexOrders for the Period. 3.x reference
    attribute: D-PrognosisMessageID."""

    xml_name: ClassVar[str] = "D-PrognosisResponse"
    request_type: ClassVar[type[PayloadMessage]] = DPrognosis

    flex_order_statuses: tuple[FlexOrderStatus, ...] = ()


class FlexOrderSettlementISP(NamedTuple):
    """What was ordered and delivered in one or more ISPs, in Watts."""

    start: int
    baseline_power: int
    ordered_flex_power: int
    actual_power: int
    delivered_flex_power: int
    duration: int = 1
    #: Flex power sold but not delivered; the XSD's default is 0.
    power_deficiency: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrderSettlement:
    """The settlement of one FlexOrder: its price, the penalty for a deficiency, the net."""

    #: Optional in the XSD (no `use`), though the spec page lists it for every order.
    order_reference: str | None = None
    period: date
    contract_id: str | None = None
    d_prognosis_message_id: str | None = None
    baseline_reference: str | None = None
    congestion_point: str
    price: Decimal
    #: The XSD's default is 0.
    penalty: Decimal = Decimal(0)
    net_settlement: Decimal
    isps: tuple[FlexOrderSettlementISP, ...]


class ContractSettlementISP(NamedTuple):
    """The reserved, requested, available, offered and ordered power of a bilateral
    contract in one or more ISPs, in Watts; the last four only where there was one."""

    start: int
    reserved_power: int
    duration: int = 1
    requested_power: int | None = None
    available_power: int | None = None
    offered_power: int | None = None
    ordered_power: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractSettlementPeriod:
    period: date
    isps: tuple[ContractSettlementISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractSettlement:
    """The settlement of one bilateral contract, Period by Period."""

    #: Optional in the XSD (no `use`).
    contract_id: str | None = None
    periods: tuple[ContractSettlementPeriod, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexSettlement(PayloadMessage):
    """DSO -> AGR: the orders (and bilateral contracts) of a settlement period, typically a
    month (spec: flex-settlement.md).

    Where the XSD and the spec page disagree, the XSD decides what is valid: every Version
    requires at least one FlexOrderSettlement and at least one ContractSettlement (the page
    says 0..n of each). In 3.x FlexSettlementType extends the response type, so the message
    carries `result` (required) and may carry `rejection_reason`; the draft has neither, and
    the codec refuses to write a draft settlement whose `result` or `rejection_reason` is set
    to anything but the defaults.
    """

    xml_name: ClassVar[str] = "FlexSettlement"

    period_start: date
    period_end: date
    currency: str
    flex_order_settlements: tuple[FlexOrderSettlement, ...]
    contract_settlements: tuple[ContractSettlement, ...]
    result: Result = Result.ACCEPTED
    rejection_reason: str | None = None


class FlexOrderSettlementStatus(NamedTuple):
    """The AGR's verdict on one FlexOrderSettlement, by its OrderReference."""

    order_reference: str | None
    disposition: AcceptedDisputed
    dispute_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexSettlementResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexSettlementMessageID.

    The XSD requires at least one FlexOrderSettlementStatus in every Version (the page's
    ContractSettlementStatus is in none), so a Rejected response without statuses is not
    schema-valid: a strict peer answers it with HTTP 400.
    """

    xml_name: ClassVar[str] = "FlexSettlementResponse"
    request_type: ClassVar[type[PayloadMessage]] = FlexSettlement

    flex_order_settlement_statuses: tuple[FlexOrderSettlementStatus, ...] = ()


class MeteringISP(NamedTuple):
    """The value of one ISP (numbered from 1), in the profile's unit."""

    start: int
    value: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteringProfile:
    """MeteringProfileType: one kind of metering data for the day, ISP by ISP."""

    profile_type: MeteringProfileEnum
    unit: MeteringUnit
    isps: tuple[MeteringISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metering(PayloadMessage):
    """AGR -> DSO: one connection's metering data for one day (spec: metering.md).

    The connection is an `ean` as the XSD's EANType has it ("E" and 16 digits), not an
    EntityAddress as the spec page says. `currency` is optional and "no longer used".
    """

    xml_name: ClassVar[str] = "Metering"

    revision: int
    isp_duration: timedelta
    time_zone: str
    currency: str | None = None
    period: date
    ean: str
    profiles: tuple[MeteringProfile, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteringResponse(PayloadResponse):
    """DSO -> AGR. 3.x reference attribute: MeteringMessageID."""

    xml_name: ClassVar[str] = "MeteringResponse"
    request_type: ClassVar[type[PayloadMessage]] = Metering


#: Every message type the codec reads and writes, by root element name.
MESSAGE_TYPES: dict[str, type[PayloadMessage]] = {
    cls.xml_name: cls
    for cls in (
        TestMessage,
        TestMessageResponse,
        DSOPortfolioUpdate,
        DSOPortfolioUpdateResponse,
        DSOPortfolioQuery,
        DSOPortfolioQueryResponse,
        AGRPortfolioUpdate,
        AGRPortfolioUpdateResponse,
        AGRPortfolioQuery,
        AGRPortfolioQueryResponse,
        FlexRequest,
        FlexRequestResponse,
        FlexOffer,
        FlexOfferResponse,
        FlexOfferRevocation,
        FlexOfferRevocationResponse,
        FlexOrder,
        FlexOrderResponse,
        FlexReservationUpdate,
        FlexReservationUpdateResponse,
        DPrognosis,
        DPrognosisResponse,
        FlexSettlement,
        FlexSettlementResponse,
        Metering,
        MeteringResponse,
    )
}

#: request type -> the response type that answers it.
RESPONSE_TYPES: dict[type[PayloadMessage], type[PayloadResponse]] = {
    cls.request_type: cls for cls in MESSAGE_TYPES.values() if issubclass(cls, PayloadResponse)
}
