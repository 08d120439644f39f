"""Typed, immutable models of the UFTP messages: the portfolio messages a DSO, a CRO and an
AGR exchange in the contract phase (spec: contract-phase.md), the flexibility trading between
DSO and AGR (FlexRequest to FlexSettlement, D-Prognosis, Metering), and the TestMessage pair.

Names follow the XSD types so that a reader can put the schema beside this file. Fields are
snake_case spellings of the XML attributes; the codec owns the mapping. Where the XSDs of the
Versions differ, a field holds the union (e.g. `unsolicited`, absent from 3.0.0) and the schema
of the message's Version decides what may be written.

Two shapes, chosen for cost: messages and congestion points are frozen dataclasses (a handful
per message), while the rows that come by the hundred thousand (connections, ISPs) are
NamedTuples, which are immutable too but cheaper to build than a frozen dataclass.

Value types: powers and ISP numbers are `int` (xs:integer is unbounded, so is `int`); prices,
amounts, activation factors and metered values are `Decimal` (xs:decimal, exact); an
ISP-Duration is a `timedelta`; Periods are `date`s and instants aware `datetime`s.

Metadata (spec: metadata-attributes.md) defaults to empty: a handler or a caller composes the
business content and the participant fills Version, domains, TimeStamp and identifiers when it
sends. The codec refuses to serialize a message whose metadata is still empty.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import repeat
from typing import (
    Any,
    ClassVar,
    ForwardRef,
    Generic,
    NamedTuple,
    TypeVar,
    cast,
    get_args,
    get_origin,
    overload,
)

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
    "FlexOrderSettlementISPs",
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
    "MeteringISPs",
    "MeteringProfile",
    "MeteringProfileEnum",
    "MeteringResponse",
    "MeteringUnit",
    "PayloadMessage",
    "PayloadRequest",
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


#: Any role: a TestMessage is "used by implementations for (connectivity) testing purposes"
#: (spec: test-message.md), between any two of them.
_ANY: frozenset[Role] = frozenset(Role)
_DSO: frozenset[Role] = frozenset({Role.DSO})
_AGR: frozenset[Role] = frozenset({Role.AGR})
_CRO: frozenset[Role] = frozenset({Role.CRO})


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadMessage:
    """PayloadMessageType: the metadata every inner message carries.

    Each concrete message type also says, as class attributes, what the protocol knows of it
    beyond its fields: its XML name and who may send it to whom (`adapter.uftp.rules` checks
    the roles; the participant picks a peer's role by them). A response's roles are its
    request's, reversed, and are set from the request (see `PayloadRequest`).
    """

    #: XML root element name; every concrete message sets it.
    xml_name: ClassVar[str] = ""
    #: The roles that may send this type, and those it may be sent to.
    sender_roles: ClassVar[frozenset[Role]] = frozenset()
    recipient_roles: ClassVar[frozenset[Role]] = frozenset()

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
    the message's Version, `v3_reference` in 3.x.
    """

    #: The request type this response answers: set from the request that names this type.
    request_type: ClassVar[type[PayloadRequest[PayloadResponse]]]
    #: The 3.x attribute that holds `reference_message_id`, as the 3.x XSDs spell it (None:
    #: the type has no reference in 3.x). Every concrete response sets it.
    v3_reference: ClassVar[str | None]

    result: Result = Result.ACCEPTED
    rejection_reason: str | None = None
    reference_message_id: str = ""

    @property
    def accepted(self) -> bool:
        return self.result == Result.ACCEPTED


#: The response type of a request type.
R_co = TypeVar("R_co", bound=PayloadResponse, covariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadRequest(PayloadMessage, Generic[R_co]):
    """A message that is answered by a response message of type `R_co`, the type argument
    each request class names::

        class DSOPortfolioUpdate(PayloadRequest["DSOPortfolioUpdateResponse"]): ...

    That argument is the one place the pair is written down: a type checker reads it, so that
    `Participant.request(update, ...)` is typed by the response it returns, and this module
    reads it once all classes exist (`_bind_responses`), to set `response_type` here and the
    response's `request_type` and roles.
    """

    #: The response type that answers this request (the class named as `R_co`).
    response_type: ClassVar[type[PayloadResponse]]

    def response_from(self, response: PayloadResponse) -> R_co:
        """`response` as the answer to this request: `TypeError` if it is of another type."""
        if type(response) is not self.response_type:
            raise TypeError(f"a {response.xml_name} does not answer a {self.xml_name}")
        # `response_type` is the class this request's type argument names (`_bind_responses`
        # set it from that argument), so the check above proves what no annotation can say.
        return cast(R_co, response)


# --- TestMessage ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessage(PayloadRequest["TestMessageResponse"]):
    """Checks that two participants can reach each other and verify each other's signatures."""

    __test__: ClassVar[bool] = False  # not a pytest test class
    xml_name: ClassVar[str] = "TestMessage"
    sender_roles: ClassVar[frozenset[Role]] = _ANY
    recipient_roles: ClassVar[frozenset[Role]] = _ANY


@dataclass(frozen=True, slots=True, kw_only=True)
class TestMessageResponse(PayloadResponse):
    """Answer to a TestMessage.

    In 3.x this type carries only metadata (no Result, no reference); Result, RejectionReason
    and ReferenceMessageID exist from the draft next version on. The codec drops them for 3.x.
    """

    __test__: ClassVar[bool] = False
    xml_name: ClassVar[str] = "TestMessageResponse"
    v3_reference: ClassVar[str | None] = None


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
class DSOPortfolioUpdate(PayloadRequest["DSOPortfolioUpdateResponse"]):
    """DSO -> CRO: the congestion points the DSO trades on (spec: dso-portfolio-update.md)."""

    xml_name: ClassVar[str] = "DSOPortfolioUpdate"
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _CRO

    time_zone: str
    congestion_points: tuple[DSOPortfolioUpdateCongestionPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioUpdateResponse(PayloadResponse):
    """CRO -> DSO. In 3.x its reference attribute is, as the XSD spells it,
    DSOPortfolioUpdateResponseMessageID."""

    xml_name: ClassVar[str] = "DSOPortfolioUpdateResponse"
    v3_reference: ClassVar[str | None] = "DSOPortfolioUpdateResponseMessageID"


# --- DSOPortfolioQuery ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DSOPortfolioQuery(PayloadRequest["DSOPortfolioQueryResponse"]):
    """DSO -> CRO: which connections lie behind one congestion point on one Period."""

    xml_name: ClassVar[str] = "DSOPortfolioQuery"
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _CRO

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
    v3_reference: ClassVar[str | None] = "DSOPortfolioQueryMessageID"

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
class AGRPortfolioUpdate(PayloadRequest["AGRPortfolioUpdateResponse"]):
    """AGR -> CRO: the connections the aggregator represents (spec: agr-portfolio-update.md)."""

    xml_name: ClassVar[str] = "AGRPortfolioUpdate"
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _CRO

    time_zone: str
    connections: tuple[AGRPortfolioUpdateConnection, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioUpdateResponse(PayloadResponse):
    xml_name: ClassVar[str] = "AGRPortfolioUpdateResponse"
    v3_reference: ClassVar[str | None] = "AGRPortfolioUpdateMessageID"


# --- AGRPortfolioQuery ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AGRPortfolioQuery(PayloadRequest["AGRPortfolioQueryResponse"]):
    """AGR -> CRO: the DSO view of the aggregator's own connections on one Period."""

    xml_name: ClassVar[str] = "AGRPortfolioQuery"
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _CRO

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
    v3_reference: ClassVar[str | None] = "AGRPortfolioQueryMessageID"

    time_zone: str
    period: date
    dso_views: tuple[AGRPortfolioQueryDSOView, ...] = ()


# --- Flexibility trading between DSO and AGR -----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexMessage(PayloadRequest[R_co]):
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
class FlexRequest(FlexMessage["FlexRequestResponse"]):
    """DSO -> AGR: a request for flexibility (spec: flex-request.md)."""

    xml_name: ClassVar[str] = "FlexRequest"
    # "FlexRequest messages are used by DSOs to request flexibility from AGRs."
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _AGR

    revision: int
    expiration_date_time: datetime
    contract_id: str | None = None
    service_type: str | None = None
    isps: tuple[FlexRequestISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexRequestResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexRequestMessageID."""

    xml_name: ClassVar[str] = "FlexRequestResponse"
    v3_reference: ClassVar[str | None] = "FlexRequestMessageID"


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
class FlexOffer(FlexMessage["FlexOfferResponse"]):
    """AGR -> DSO: an offer of flexibility, solicited by a FlexRequest or not
    (spec: flex-offer.md).

    `unsolicited` is None when the attribute is absent: 3.0.0 has no such attribute (an
    offer without FlexRequestMessageID is unsolicited), and the draft's default is false.
    """

    xml_name: ClassVar[str] = "FlexOffer"
    # "FlexOffer messages are used by AGRs to make DSOs an offer for provision of flexibility."
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _DSO

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
    v3_reference: ClassVar[str | None] = "FlexOfferMessageID"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocation(PayloadRequest["FlexOfferRevocationResponse"]):
    """AGR -> DSO: voids an earlier FlexOffer that has no accepted FlexOrder yet
    (spec: flex-offer-revocation.md)."""

    xml_name: ClassVar[str] = "FlexOfferRevocation"
    # "used by the AGR to revoke a FlexOffer previously sent to a DSO"
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _DSO

    flex_offer_message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOfferRevocationResponse(PayloadResponse):
    """DSO -> AGR. 3.x reference attribute: FlexOfferRevocationMessageID."""

    xml_name: ClassVar[str] = "FlexOfferRevocationResponse"
    v3_reference: ClassVar[str | None] = "FlexOfferRevocationMessageID"


class FlexOrderISP(NamedTuple):
    """The power ordered for one or more ISPs, in Watts: the offer's, copied unchanged."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexOrder(FlexMessage["FlexOrderResponse"]):
    """DSO -> AGR: an order for flexibility, of one option of a FlexOffer or unsolicited
    (spec: flex-order.md). The ISPs must be the offer's exactly.

    3.0.0 requires `flex_offer_message_id` and knows neither `unsolicited` nor
    `service_type`; 3.1.0 added both and made the reference optional ("mandatory if
    Unsolicited=false").
    """

    xml_name: ClassVar[str] = "FlexOrder"
    # "FlexOrder messages are used by DSOs to purchase flexibility from an AGR"
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _AGR

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
    v3_reference: ClassVar[str | None] = "FlexOrderMessageID"


class FlexReservationUpdateISP(NamedTuple):
    """The power still reserved for one or more ISPs, in Watts (0: released)."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdate(FlexMessage["FlexReservationUpdateResponse"]):
    """DSO -> AGR: which part of a bilateral contract's volume stays reserved
    (spec: flex-reservation-update.md)."""

    xml_name: ClassVar[str] = "FlexReservationUpdate"
    # "used by DSOs to signal to an AGR which part of the contracted volume is still reserved"
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _AGR

    contract_id: str
    reference: str
    isps: tuple[FlexReservationUpdateISP, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FlexReservationUpdateResponse(PayloadResponse):
    """AGR -> DSO. 3.x reference attribute: FlexReservationUpdateMessageID."""

    xml_name: ClassVar[str] = "FlexReservationUpdateResponse"
    v3_reference: ClassVar[str | None] = "FlexReservationUpdateMessageID"


class DPrognosisISP(NamedTuple):
    """The power forecast for one or more ISPs, in Watts.

    Start and Duration are xs:integer in this type only (positiveInteger elsewhere), so 0
    and negative values pass the schema; whether they make sense is for the receiver."""

    start: int
    power: int
    duration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DPrognosis(FlexMessage["DPrognosisResponse"]):
    """AGR -> DSO: the AGR's forecast for its connections behind a congestion point, for
    every ISP of the Period (spec: d-prognosis.md). XML name: D-Prognosis."""

    xml_name: ClassVar[str] = "D-Prognosis"
    # d-prognosis.md: "between AGRs and DSOs"; the DSO answers with the status of the
    # FlexOrders it sent (d-prognosis-response.md), so the AGR sends the prognosis.
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _DSO

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
    v3_reference: ClassVar[str | None] = "D-PrognosisMessageID"

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


#: One ISP element's start tag in the text `FlexOrderSettlementISPs` holds: its attributes.
_ISP_TAG = re.compile(rb'<ISP((?:[ \t\r\n]+[^ \t\r\n=/>]+[ \t\r\n]*=[ \t\r\n]*"[^"]*")*)')
#: An ISP element with its attributes in the XSD's order, single spaces between them.
_ISP_ROW = re.compile(
    rb'<ISP Start="([^"]*)"(?: Duration="([^"]*)")? BaselinePower="([^"]*)"'
    rb' OrderedFlexPower="([^"]*)" ActualPower="([^"]*)" DeliveredFlexPower="([^"]*)"'
    rb'(?: PowerDeficiency="([^"]*)")?[ \t\r\n]*/?>'
)
#: One attribute in those, its value between double quotes.
_ISP_ATTRIBUTE = re.compile(rb'[ \t\r\n]+([^ \t\r\n=]+)[ \t\r\n]*=[ \t\r\n]*"([^"]*)"')


class FlexOrderSettlementISPs(Sequence[FlexOrderSettlementISP]):
    """An order's ISPs as the codec reads them from a large FlexSettlement: the text of the
    ISP elements, which the schema has checked (every value an xs:integer, written plainly:
    no reference, double quotes, `adapter.uftp.scan`), and the rows made from it when asked
    for, with the XSD's defaults for the optional Duration and PowerDeficiency.

    10,000 orders of 4 ISPs are 40,000 rows of seven ints: made as the message is read, they
    took most of the time above parsing and validating it (bench/README.md). Immutable, and
    equal to any sequence of the same rows (a tuple of them among others). The codec makes
    the rows at once where an ISP may hold a number `int` does not read (over 4,300 digits),
    so that reading one later cannot fail.
    """

    __slots__ = ("_text",)

    _text: bytes

    def __init__(self, text: bytes) -> None:
        object.__setattr__(self, "_text", text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def each(cls, texts: Sequence[bytes]) -> list[FlexOrderSettlementISPs]:
        """One for each of `texts`, as many `__init__` calls make them: its one slot set by
        C-level calls, a column at a time, a fifth of what 10,000 of those calls cost
        (bench/README.md)."""
        made = list(map(object.__new__, repeat(cls, len(texts))))
        deque(map(_SET_TEXT, made, texts), 0)
        return made

    def _rows(self) -> tuple[FlexOrderSettlementISP, ...]:
        found = _ISP_ROW.findall(self._text)
        if found and len(found) == self._text.count(b"<ISP"):
            # Written as this adapter and shapeshifter-uftp write them: one expression reads
            # every ISP (the optional attributes b"" where they are left out). tuple.__new__
            # stands in for the NamedTuple's constructor, at C speed.
            return tuple(
                [
                    tuple.__new__(
                        FlexOrderSettlementISP,
                        (
                            int(start),
                            int(baseline),
                            int(ordered),
                            int(actual),
                            int(delivered),
                            int(duration) if duration else 1,
                            int(deficiency) if deficiency else 0,
                        ),
                    )
                    for start, duration, baseline, ordered, actual, delivered, deficiency in found
                ]
            )
        rows = []
        for attributes in _ISP_TAG.findall(self._text):
            get = dict(_ISP_ATTRIBUTE.findall(attributes)).get
            rows.append(
                FlexOrderSettlementISP(
                    int(get(b"Start", b"")),
                    int(get(b"BaselinePower", b"")),
                    int(get(b"OrderedFlexPower", b"")),
                    int(get(b"ActualPower", b"")),
                    int(get(b"DeliveredFlexPower", b"")),
                    int(get(b"Duration", b"1")),
                    int(get(b"PowerDeficiency", b"0")),
                )
            )
        return tuple(rows)

    def __len__(self) -> int:
        return self._text.count(b"<ISP")

    @overload
    def __getitem__(self, index: int) -> FlexOrderSettlementISP: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[FlexOrderSettlementISP, ...]: ...
    def __getitem__(
        self, index: int | slice
    ) -> FlexOrderSettlementISP | tuple[FlexOrderSettlementISP, ...]:
        return self._rows()[index]

    def __iter__(self) -> Iterator[FlexOrderSettlementISP]:
        return iter(self._rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FlexOrderSettlementISPs) and other._text == self._text:
            return True
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return self._rows() == tuple(other)

    def __hash__(self) -> int:
        return hash(self._rows())  # as the equal tuple's

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._rows()!r})"

    def __reduce__(self) -> tuple[type[FlexOrderSettlementISPs], tuple[bytes]]:
        return (type(self), (self._text,))


#: What `FlexOrderSettlementISPs.__init__` does: set its one slot.
_SET_TEXT = vars(FlexOrderSettlementISPs)["_text"].__set__


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
    #: A tuple of rows, or for a large message read by the codec, the same rows made from
    #: the ISP elements' text when asked for (`FlexOrderSettlementISPs`).
    isps: Sequence[FlexOrderSettlementISP]


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
class FlexSettlement(PayloadRequest["FlexSettlementResponse"]):
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
    # "sent by DSOs on a regular basis (typically monthly) to AGRs, in order to initiate
    # settlement"
    sender_roles: ClassVar[frozenset[Role]] = _DSO
    recipient_roles: ClassVar[frozenset[Role]] = _AGR

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
    v3_reference: ClassVar[str | None] = "FlexSettlementMessageID"

    flex_order_settlement_statuses: tuple[FlexOrderSettlementStatus, ...] = ()


class MeteringISP(NamedTuple):
    """The value of one ISP (numbered from 1), in the profile's unit."""

    start: int
    value: Decimal


class MeteringISPs(Sequence[MeteringISP]):
    """A profile's ISPs held column-wise, as the codec reads a large Metering message: the
    ISP numbers (a `range` where they count up from 1, as they do in every profile a
    participant sends) and each value's text as the XML wrote it, which the schema has
    checked to be an xs:decimal. A row and its `Decimal` are made when asked for, from that
    text, so a value reads exactly as written ("1.50" stays 1.50).

    A Decimal takes 104 bytes and a fifth of a microsecond to make; a year of 15-minute ISPs
    for 100 connections holds 3.5 million (bench/README.md). Immutable, and equal to any
    sequence of the same `MeteringISP`s (a tuple of them among others), as the tuple it
    stands for would be.
    """

    __slots__ = ("_starts", "_values")

    _starts: Sequence[int]
    _values: tuple[bytes, ...]

    def __init__(self, starts: Sequence[int], values: tuple[bytes, ...]) -> None:
        if len(starts) != len(values):
            raise ValueError(f"{len(starts)} ISP numbers for {len(values)} values")
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_values", values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, index: int) -> MeteringISP: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[MeteringISP, ...]: ...
    def __getitem__(self, index: int | slice) -> MeteringISP | tuple[MeteringISP, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        return MeteringISP(self._starts[index], Decimal(self._values[index].decode()))

    def __iter__(self) -> Iterator[MeteringISP]:
        # tuple.__new__ stands in for the NamedTuple's constructor, at C speed.
        values = map(Decimal, map(bytes.decode, self._values))
        return map(tuple.__new__, repeat(MeteringISP), zip(self._starts, values, strict=True))

    @property
    def starts(self) -> Sequence[int]:
        """The ISP numbers, in order."""
        return self._starts

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MeteringISPs) and other._values == self._values:
            return list(other._starts) == list(self._starts)
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))  # as the equal tuple's

    def __repr__(self) -> str:
        return f"{type(self).__name__}({tuple(self)!r})"

    def __reduce__(self) -> tuple[type[MeteringISPs], tuple[Sequence[int], tuple[bytes, ...]]]:
        return (type(self), (self._starts, self._values))


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteringProfile:
    """MeteringProfileType: one kind of metering data for the day, ISP by ISP: a tuple of
    rows, or for a large message read by the codec, the same rows held column-wise
    (`MeteringISPs`)."""

    profile_type: MeteringProfileEnum
    unit: MeteringUnit
    isps: Sequence[MeteringISP]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metering(PayloadRequest["MeteringResponse"]):
    """AGR -> DSO: one connection's metering data for one day (spec: metering.md).

    The connection is an `ean` as the XSD's EANType has it ("E" and 16 digits), not an
    EntityAddress as the spec page says. `currency` is optional and "no longer used".
    """

    xml_name: ClassVar[str] = "Metering"
    # "If metering messages are used then the AGR must send metering messages"
    sender_roles: ClassVar[frozenset[Role]] = _AGR
    recipient_roles: ClassVar[frozenset[Role]] = _DSO

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
    v3_reference: ClassVar[str | None] = "MeteringMessageID"


def _bind_responses(namespace: dict[str, Any]) -> tuple[type[PayloadMessage], ...]:
    """The message types of `namespace` (this module's), each request bound to the response
    type it names: the request's `response_type`, the response's `request_type`, and the
    response's roles (its request's, reversed: the recipient answers the sender)."""
    kinds = tuple(
        value
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, PayloadMessage) and value.xml_name
    )
    for kind in kinds:
        if issubclass(kind, PayloadRequest):
            response = _named_response(kind, namespace)
            if getattr(response, "request_type", kind) is not kind:
                raise TypeError(f"{response.__name__} answers two request types")
            kind.response_type = response
            response.request_type = kind
            response.sender_roles = kind.recipient_roles
            response.recipient_roles = kind.sender_roles
    for kind in kinds:
        if issubclass(kind, PayloadResponse) and not hasattr(kind, "request_type"):
            raise TypeError(f"no request type names {kind.__name__} as its response")
    return kinds


def _named_response(
    request: type[PayloadRequest[PayloadResponse]], namespace: dict[str, Any]
) -> type[PayloadResponse]:
    """The response type that `request`'s base (`PayloadRequest[...]`, `FlexMessage[...]`)
    names, looked up in `namespace` when it is named by a string."""
    for base in getattr(request, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, PayloadRequest):
            (named,) = get_args(base)
            if isinstance(named, ForwardRef):
                named = namespace.get(named.__forward_arg__)
            if isinstance(named, type) and issubclass(named, PayloadResponse):
                return named
    raise TypeError(f"{request.__name__} names no response type")


#: Every message type the codec reads and writes, by root element name.
MESSAGE_TYPES: dict[str, type[PayloadMessage]] = {
    kind.xml_name: kind for kind in _bind_responses(globals())
}

#: request type -> the response type that answers it.
RESPONSE_TYPES: dict[type[PayloadMessage], type[PayloadResponse]] = {
    kind: kind.response_type for kind in MESSAGE_TYPES.values() if issubclass(kind, PayloadRequest)
}
