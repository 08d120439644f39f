"""UFTP messages <-> XML bytes, for Versions 3.0.0, 3.1.0 and the draft next version (4.0.0).

Reading is parse (hardened, see `xml.py`) -> validate against the schema of the message's
Version -> build the model. No model is returned before the whole message has been found
valid, so the readers below can trust the shape of the tree and stay simple and fast: the
connections of a portfolio update are read column-wise (`columns.py`), without a Python
object per element. A large DSOPortfolioUpdate, FlexSettlement or Metering is validated
without a tree and read from its bytes (`scan.py`) or, written otherwise, as a stream, a
child of the root at a time (`_decode_streamed`).

Writing is plain string assembly with attribute escaping, which costs less than building an
lxml tree for the same document (bench/README.md, "Measurements behind the code"), and is
validated against the same schema before it leaves (on by default), so that a mistake in our
own data is reported here rather than as an HTTP 400 from the peer.

Where the Versions differ, the schema of the message's Version decides; the codec writes and
reads the union. The differences: a 3.x response names its reference to the request per type
(DSOPortfolioQueryMessageID, FlexOfferMessageID, ...; TestMessageResponse has none, and no
Result), the draft calls it ReferenceMessageID everywhere; FlexOffer and FlexOrder gained
Unsolicited in 3.1.0 (and FlexOrder ServiceType, with FlexOfferMessageID optional).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import chain, repeat
from operator import methodcaller
from typing import Any, TypedDict, TypeVar, cast

from lxml import etree

from .columns import ConnectionColumns, R, shared_ints
from .durations import format_duration, parse_duration
from .errors import IncompleteMessage, InvalidOutbound, InvalidXml
from .messages import (
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
    FlexMessage,
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
from .scan import metering_profiles, order_settlements, plain_content, portfolio_points
from .xml import (
    NEEDS_ESCAPE,
    SCHEMAS,
    attr,
    locate_attribute,
    parse_xml,
    stream_children,
    validate_stream,
)

#: Versions whose wire format this codec reads and writes.
KNOWN_VERSIONS = ("3.0.0", "3.1.0", "4.0.0")


def is_draft(version: str) -> bool:
    return version.startswith("4.")


# ============================================================================================
# Reading
# ============================================================================================


class _Metadata(TypedDict):
    """The metadata attributes of a message being read (PayloadMessageType)."""

    version: str
    sender_domain: str
    recipient_domain: str
    time_stamp: datetime
    message_id: str
    conversation_id: str


class _Reply(_Metadata):
    """The metadata of a response being read, and its response attributes."""

    result: Result
    rejection_reason: str | None
    reference_message_id: str


class _FlexFields(TypedDict):
    """The FlexMessageType attributes of a Flex* message being read."""

    isp_duration: timedelta
    time_zone: str
    period: date
    congestion_point: str


#: Above this size a message is read with the caller's `Bulk` help, if it offers any.
CONCURRENT_VALIDATION_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Bulk:
    """Help with reading a large message that the core does not take on its own: a thread,
    and a pause of the garbage collector, are the process's to give, so the caller chooses
    (`adapter.bulk.LARGE_MESSAGES` is the endpoint's choice). Without it a message of any size
    is validated first, then read, on the caller's thread.
    """

    #: Runs the schema validation while the model is built on the calling thread from the same,
    #: unmodified tree (libxml2 releases the GIL meanwhile), for a large message read from a
    #: tree: an AGRPortfolioUpdate of 100,000 connections, say. (A large DSOPortfolioUpdate,
    #: FlexSettlement or Metering is validated without a tree on the calling thread instead,
    #: and read from its bytes or as a stream: `_decode_streamed`.)
    executor: Executor | None = None
    #: Held while the model is built: e.g. the cyclic garbage collector paused, which the
    #: hundreds of thousands of rows of a portfolio (tuples, no cycles) would otherwise wake.
    building: Callable[[], AbstractContextManager[object]] = nullcontext
    #: Messages above this many bytes are large; smaller ones are read without help.
    threshold: int = CONCURRENT_VALIDATION_BYTES


def decode(data: bytes, *, bulk: Bulk | None = None) -> PayloadMessage:
    """Parse, validate and read one inner UFTP message. Raises `InvalidXml` (HTTP 400).

    `bulk`: the caller's help for a message larger than its `threshold`."""
    large = bulk if bulk and len(data) > bulk.threshold else None
    if large is not None:
        streamed = _decode_streamed(data, large)
        if streamed is not None:
            return streamed
    root = parse_xml(data)
    return decode_element(root, bulk=large)


#: How far into a message its root's Version is looked for, for `_decode_streamed`.
_ROOT_TAG_LIMIT = 64 * 1024


def _decode_streamed(data: bytes, bulk: Bulk) -> PayloadMessage | None:
    """A large portfolio update, settlement or metering message, never held as a whole tree
    (several times larger than the models: 60 MB for 100,000 portfolio connections, 2 GB for
    a year of metering data; bench/README.md).

    A portfolio update, settlement or metering message written plainly (`scan.plain_content`,
    as participants write) is validated by libxml2 without building a tree at all
    (`xml.validate_stream`), and `scan` reads the children from the bytes: a portfolio's
    congestion points one at a time, a large message's ISP values kept as text until asked for.
    Every other one, or one where `scan` finds a form it does not read (then the message is
    parsed twice), is read as a stream: each child of the root validated, read and dropped
    once it has ended (`xml.stream_children`). None for every other message, and for a root
    written in a way this does not read (a namespace, a Version with a character reference):
    those are read from the tree.
    """
    located = locate_attribute(data, b"Version", limit=_ROOT_TAG_LIMIT)
    streamed = _STREAMED.get(located.root or "")
    if streamed is None or located.value is None:
        return None
    version = data[located.value]
    if b"&" in version or locate_attribute(data, b"xmlns", limit=_ROOT_TAG_LIMIT).value:
        return None
    tags, reader, assemble = streamed
    schema = SCHEMAS.for_version(version.decode("utf-8", "replace"))
    scan = _SCANNED.get(located.root or "")
    plain = plain_content(data) if scan is not None else None
    with bulk.building():
        try:
            if scan is not None and plain is not None:
                validate_stream(data, schema)
                root = parse_xml(plain[0])
                scanned = scan(data, plain[1])
                if scanned is not None:
                    return assemble(root, _metadata(root), scanned)
            root, children = stream_children(data, schema, tags, reader())
            return assemble(root, _metadata(root), children)
        except ValueError as exc:
            # Schema-valid but outside what Python's types hold, as `_read` says.
            raise InvalidXml(f"{located.root}: {exc}") from None


def decode_element(root: etree._Element, *, bulk: Bulk | None = None) -> PayloadMessage:
    """Validate and read an already parsed inner message.

    With `bulk`, the validation runs on its executor while this thread builds the model,
    inside its `building` context. The model is only returned once the validation has passed,
    so the result is the same as validating first.
    """
    cls = MESSAGE_TYPES.get(root.tag) if isinstance(root.tag, str) else None
    if cls is None:
        raise InvalidXml(f"<{root.tag}> is not a message type this endpoint accepts")
    schema = SCHEMAS.for_version(root.get("Version"))
    if bulk is None:
        schema.validate_root(root)
        return _read(cls, root)
    if bulk.executor is None:
        schema.validate_root(root)
        with bulk.building():
            return _read(cls, root)
    verdict = bulk.executor.submit(schema.validate_root, root)
    try:
        with bulk.building():
            message = _read(cls, root)
    except Exception as exc:
        # Reading an invalid document can fail in any way; the schema's verdict, which
        # names the actual problem, takes precedence.
        invalid = verdict.exception()
        if invalid is not None:
            raise invalid from None
        raise exc
    verdict.result()  # raises InvalidXml if the document is not valid
    return message


def _read(cls: type[PayloadMessage], root: etree._Element) -> PayloadMessage:
    try:
        return _READERS[cls](root, _metadata(root))
    except ValueError as exc:
        # Schema-valid but outside what Python's types hold (e.g. a year beyond 9999).
        raise InvalidXml(f"{root.tag}: {exc}") from None


def _parse_date(text: str) -> date:
    # xs:date may carry a time zone suffix ("2024-05-01Z", "2024-05-01+02:00"); a Period is
    # a calendar day in the message's TimeZone, so the suffix carries no information here.
    return date.fromisoformat(text.strip()[:10])


#: `_parse_date`, cached (a portfolio repeats a few dates many times). Annotated, because the
#: cache's wrapper takes any hashable arguments and would let a `str | None` through.
_date: Callable[[str], date] = lru_cache(maxsize=4096)(_parse_date)


def _opt_date(text: str | None) -> date | None:
    return None if text is None else _date(text)


def _opt_end(element: etree._Element) -> date | None:
    return _opt_date(element.get("EndPeriod"))


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    # 3.x allows a TimeStamp without offset; the draft forbids it. Read such a value as UTC,
    # the only reading that does not depend on where the receiver happens to run.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        # "0001-01-01T00:00:00+14:00" is a year-0 instant: no datetime holds it, and a
        # value stored now would fail whoever compares or converts it later.
        raise ValueError(f"TimeStamp {text!r} lies outside the years 1 to 9999 in UTC") from None
    return value


def _bool(text: str) -> bool:
    return text.strip() in ("true", "1")


#: Enum members by value: a dict look-up, cheaper than Enum.__call__ for every row.
_REDISPATCH: dict[str, RedispatchBy] = {member.value: member for member in RedispatchBy}


def _redispatch(text: str | None) -> RedispatchBy | None:
    return None if text is None else _REDISPATCH[text]


def _opt_bool(text: str | None) -> bool | None:
    return None if text is None else _bool(text)


def _opt_int(text: str | None, default: int) -> int:
    # int() takes what xs:integer allows ("+7", "007", surrounding blanks); more than 4,300
    # digits is a ValueError, which `_read` reports as InvalidXml.
    return default if text is None else int(text)


def _opt_power(text: str | None) -> int | None:
    return None if text is None else int(text)


def _decimal(text: str) -> Decimal:
    # The schema lets through only plain decimals ("-1.50", ".5", "5."): no exponent, no NaN.
    return Decimal(text.strip())


#: The XSD defaults of activation factors and of a settlement's Penalty.
_ONE = Decimal("1.00")
_ZERO = Decimal(0)

_AVAILABLE_REQUESTED: dict[str, AvailableRequested] = {m.value: m for m in AvailableRequested}
_ACCEPTED_DISPUTED: dict[str, AcceptedDisputed] = {m.value: m for m in AcceptedDisputed}
_PROFILE_TYPES: dict[str, MeteringProfileEnum] = {m.value: m for m in MeteringProfileEnum}
_UNITS: dict[str, MeteringUnit] = {m.value: m for m in MeteringUnit}


def _flex(root: etree._Element) -> _FlexFields:
    """The FlexMessageType attributes every Flex* message carries."""
    get = root.get
    return {
        "isp_duration": parse_duration(get("ISP-Duration", "")),
        "time_zone": get("TimeZone", ""),
        "period": _date(get("Period", "")),
        "congestion_point": get("CongestionPoint", ""),
    }


def _metadata(root: etree._Element) -> _Metadata:
    get = root.get
    return {
        "version": get("Version", ""),
        "sender_domain": get("SenderDomain", ""),
        "recipient_domain": get("RecipientDomain", ""),
        "time_stamp": _datetime(get("TimeStamp", "")),
        "message_id": get("MessageID", ""),
        "conversation_id": get("ConversationID", ""),
    }


def _response(cls: type[PayloadResponse], root: etree._Element, meta: _Metadata) -> _Reply:
    """`meta` and the response attributes of `root`, as its Version spells them."""
    reference = "ReferenceMessageID" if is_draft(meta["version"]) else cls.v3_reference
    result = root.get("Result")  # absent from a 3.x TestMessageResponse, which has none
    return _Reply(
        **meta,
        reference_message_id=root.get(reference, "") if reference else "",
        result=Result.ACCEPTED if result is None else Result(result),
        rejection_reason=root.get("RejectionReason"),
    )


def _read_test_message(root: etree._Element, meta: _Metadata) -> TestMessage:
    return TestMessage(**meta)


def _metadata_only_response(
    cls: type[PayloadResponse],
) -> Callable[[etree._Element, _Metadata], PayloadResponse]:
    """The reader of a response that carries nothing beyond the response attributes."""

    def read(root: etree._Element, meta: _Metadata) -> PayloadResponse:
        return cls(**_response(cls, root, meta))

    return read


#: Below this many connections, reading element by element costs no more than column-wise:
#: with EndPeriods, the stylesheet's set-up outweighs it up to about 64 connections.
_COLUMN_WISE_FROM = 64

_DSO_CONNECTIONS = ConnectionColumns("*/Connection", DSOPortfolioUpdateConnection, _date)
_AGR_CONNECTIONS = ConnectionColumns("Connection", AGRPortfolioUpdateConnection, _date)


def _connection_rows(
    columns: ConnectionColumns[R],
    root: etree._Element,
    total: int,
    elements: Iterable[etree._Element],
) -> list[R]:
    """The `total` Connection `elements` under `root` as rows: column-wise when there are
    enough of them and their values fall into place, element by element otherwise."""
    rows = columns.rows(root, total) if total >= _COLUMN_WISE_FROM else None
    if rows is None:
        row = columns.row
        rows = [
            row(c.get("EntityAddress", ""), _date(c.get("StartPeriod", "")), _opt_end(c))
            for c in elements
        ]
    return rows


def _dso_connections(
    root: etree._Element, points: list[etree._Element]
) -> list[tuple[DSOPortfolioUpdateConnection, ...]]:
    """The connections of each congestion point (`points`, the children of `root`)."""
    sizes = [len(cp) for cp in points]
    rows = _connection_rows(_DSO_CONNECTIONS, root, sum(sizes), chain(*points))
    result = []
    offset = 0
    for size in sizes:
        result.append(tuple(rows[offset : offset + size]))
        offset += size
    return result


def _read_dso_portfolio_update(root: etree._Element, meta: _Metadata) -> DSOPortfolioUpdate:
    elements = list(root)
    points = [
        _dso_point(cp.get, connections)
        for cp, connections in zip(elements, _dso_connections(root, elements), strict=True)
    ]
    return _dso_portfolio_update(root, meta, points)


def _dso_portfolio_update(
    root: etree._Element, meta: _Metadata, points: list[DSOPortfolioUpdateCongestionPoint]
) -> DSOPortfolioUpdate:
    return DSOPortfolioUpdate(
        **meta, time_zone=root.get("TimeZone", ""), congestion_points=tuple(points)
    )


def _dso_point(
    get: Callable[..., Any], connections: tuple[DSOPortfolioUpdateConnection, ...]
) -> DSOPortfolioUpdateCongestionPoint:
    """A CongestionPoint from its attributes (`get`: an element's or a dict's) and its rows."""
    return DSOPortfolioUpdateCongestionPoint(
        entity_address=get("EntityAddress", ""),
        start_period=_date(get("StartPeriod", "")),
        end_period=_opt_date(get("EndPeriod")),
        mutex_offers_supported=_bool(get("MutexOffersSupported", "")),
        day_ahead_redispatch_by=_REDISPATCH[get("DayAheadRedispatchBy", "")],
        intraday_redispatch_by=_redispatch(get("IntradayRedispatchBy")),
        connections=connections,
    )


#: The connections of one CongestionPoint, read from it: as `_DSO_CONNECTIONS`, but from the
#: congestion point as root, which the stylesheet for EndPeriods then sees as its document.
_POINT_CONNECTIONS = ConnectionColumns("Connection", DSOPortfolioUpdateConnection, _date)


def _streamed_dso_point(cp: etree._Element) -> DSOPortfolioUpdateCongestionPoint:
    """One CongestionPoint of a DSOPortfolioUpdate read as a stream (`_decode_streamed`), its
    connections column-wise. Only there: lxml runs a stylesheet on an element that is not the
    root of its document by relinking the element's children for the while (a fake document),
    which a validation of the same tree on another thread (`decode_element`) must not meet;
    in a stream the validation is the parser's own, paused while this reads."""
    return _dso_point(cp.get, tuple(_connection_rows(_POINT_CONNECTIONS, cp, len(cp), cp)))


def _scanned_dso_point(
    attributes: dict[str, str], connections: tuple[DSOPortfolioUpdateConnection, ...]
) -> DSOPortfolioUpdateCongestionPoint:
    """One CongestionPoint of a DSOPortfolioUpdate read from the validated bytes (`scan`)."""
    return _dso_point(attributes.get, connections)


def _read_dso_portfolio_query(root: etree._Element, meta: _Metadata) -> DSOPortfolioQuery:
    return DSOPortfolioQuery(
        **meta,
        time_zone=root.get("TimeZone", ""),
        period=_date(root.get("Period", "")),
        entity_address=root.get("EntityAddress", ""),
    )


def _read_dso_portfolio_query_response(
    root: etree._Element, meta: _Metadata
) -> DSOPortfolioQueryResponse:
    reply = _response(DSOPortfolioQueryResponse, root, meta)
    point = None
    for cp in root:
        point = DSOPortfolioQueryCongestionPoint(
            entity_address=cp.get("EntityAddress", ""),
            connections=tuple(
                DSOPortfolioQueryConnection(c.get("EntityAddress", ""), c.get("AGR-Domain"))
                for c in cp
            ),
        )
    return DSOPortfolioQueryResponse(
        **reply,
        time_zone=root.get("TimeZone", ""),
        period=_date(root.get("Period", "")),
        congestion_point=point,
    )


def _read_agr_portfolio_update(root: etree._Element, meta: _Metadata) -> AGRPortfolioUpdate:
    rows = _connection_rows(_AGR_CONNECTIONS, root, len(root), root)
    return AGRPortfolioUpdate(**meta, time_zone=root.get("TimeZone", ""), connections=tuple(rows))


def _read_agr_portfolio_query(root: etree._Element, meta: _Metadata) -> AGRPortfolioQuery:
    return AGRPortfolioQuery(
        **meta, time_zone=root.get("TimeZone", ""), period=_date(root.get("Period", ""))
    )


def _agr_connections(parent: etree._Element) -> tuple[AGRPortfolioQueryConnection, ...]:
    return tuple(
        AGRPortfolioQueryConnection(c.get("EntityAddress", ""))
        for c in parent
        if c.tag == "Connection"
    )


def _read_agr_portfolio_query_response(
    root: etree._Element, meta: _Metadata
) -> AGRPortfolioQueryResponse:
    reply = _response(AGRPortfolioQueryResponse, root, meta)
    views = []
    for view in root:
        portfolios = []
        for portfolio in view:
            if portfolio.tag != "DSO-Portfolio":
                continue
            points = tuple(
                AGRPortfolioQueryCongestionPoint(
                    entity_address=cp.get("EntityAddress", ""),
                    mutex_offers_supported=_bool(cp.get("MutexOffersSupported", "")),
                    day_ahead_redispatch_by=RedispatchBy(cp.get("DayAheadRedispatchBy", "")),
                    intraday_redispatch_by=_redispatch(cp.get("IntradayRedispatchBy")),
                    connections=_agr_connections(cp),
                )
                for cp in portfolio
            )
            portfolios.append(
                AGRPortfolioQueryDSOPortfolio(
                    dso_domain=portfolio.get("DSO-Domain", ""), congestion_points=points
                )
            )
        views.append(
            AGRPortfolioQueryDSOView(
                dso_portfolios=tuple(portfolios), connections=_agr_connections(view)
            )
        )
    return AGRPortfolioQueryResponse(
        **reply,
        time_zone=root.get("TimeZone", ""),
        period=_date(root.get("Period", "")),
        dso_views=tuple(views),
    )


def _read_flex_request(root: etree._Element, meta: _Metadata) -> FlexRequest:
    get = root.get
    isps = []
    for isp in root:
        disposition = isp.get("Disposition")
        isps.append(
            FlexRequestISP(
                int(isp.get("Start", "")),
                int(isp.get("MinPower", "")),
                int(isp.get("MaxPower", "")),
                _opt_int(isp.get("Duration"), 1),
                None if disposition is None else _AVAILABLE_REQUESTED[disposition],
            )
        )
    return FlexRequest(
        **meta,
        **_flex(root),
        revision=int(get("Revision", "")),
        expiration_date_time=_datetime(get("ExpirationDateTime", "")),
        contract_id=get("ContractID"),
        service_type=get("ServiceType"),
        isps=tuple(isps),
    )


def _read_flex_offer(root: etree._Element, meta: _Metadata) -> FlexOffer:
    get = root.get
    options = []
    for option in root:
        factor = option.get("MinActivationFactor")
        options.append(
            FlexOfferOption(
                option_reference=option.get("OptionReference", ""),
                price=_decimal(option.get("Price", "")),
                min_activation_factor=_ONE if factor is None else _decimal(factor),
                isps=tuple(
                    FlexOfferOptionISP(
                        int(isp.get("Start", "")),
                        int(isp.get("Power", "")),
                        _opt_int(isp.get("Duration"), 1),
                    )
                    for isp in option
                ),
            )
        )
    return FlexOffer(
        **meta,
        **_flex(root),
        expiration_date_time=_datetime(get("ExpirationDateTime", "")),
        unsolicited=_opt_bool(get("Unsolicited")),
        flex_request_message_id=get("FlexRequestMessageID"),
        contract_id=get("ContractID"),
        d_prognosis_message_id=get("D-PrognosisMessageID"),
        baseline_reference=get("BaselineReference"),
        currency=get("Currency", ""),
        offer_options=tuple(options),
    )


def _read_flex_offer_revocation(root: etree._Element, meta: _Metadata) -> FlexOfferRevocation:
    return FlexOfferRevocation(**meta, flex_offer_message_id=root.get("FlexOfferMessageID", ""))


def _read_flex_order(root: etree._Element, meta: _Metadata) -> FlexOrder:
    get = root.get
    factor = get("ActivationFactor")
    return FlexOrder(
        **meta,
        **_flex(root),
        unsolicited=_opt_bool(get("Unsolicited")),
        flex_offer_message_id=get("FlexOfferMessageID"),
        service_type=get("ServiceType"),
        contract_id=get("ContractID"),
        d_prognosis_message_id=get("D-PrognosisMessageID"),
        baseline_reference=get("BaselineReference"),
        price=_decimal(get("Price", "")),
        currency=get("Currency", ""),
        order_reference=get("OrderReference", ""),
        option_reference=get("OptionReference"),
        activation_factor=_ONE if factor is None else _decimal(factor),
        isps=tuple(
            FlexOrderISP(
                int(isp.get("Start", "")),
                int(isp.get("Power", "")),
                _opt_int(isp.get("Duration"), 1),
            )
            for isp in root
        ),
    )


def _read_flex_reservation_update(root: etree._Element, meta: _Metadata) -> FlexReservationUpdate:
    return FlexReservationUpdate(
        **meta,
        **_flex(root),
        contract_id=root.get("ContractID", ""),
        reference=root.get("Reference", ""),
        isps=tuple(
            FlexReservationUpdateISP(
                int(isp.get("Start", "")),
                int(isp.get("Power", "")),
                _opt_int(isp.get("Duration"), 1),
            )
            for isp in root
        ),
    )


def _read_d_prognosis(root: etree._Element, meta: _Metadata) -> DPrognosis:
    return DPrognosis(
        **meta,
        **_flex(root),
        revision=int(root.get("Revision", "")),
        isps=tuple(
            DPrognosisISP(
                int(isp.get("Start", "")),
                int(isp.get("Power", "")),
                _opt_int(isp.get("Duration"), 1),
            )
            for isp in root
        ),
    )


def _read_d_prognosis_response(root: etree._Element, meta: _Metadata) -> DPrognosisResponse:
    reply = _response(DPrognosisResponse, root, meta)
    return DPrognosisResponse(
        **reply,
        flex_order_statuses=tuple(
            FlexOrderStatus(
                status.get("FlexOrderMessageID", ""), _bool(status.get("IsValidated", ""))
            )
            for status in root
        ),
    )


def _read_flex_settlement(root: etree._Element, meta: _Metadata) -> FlexSettlement:
    return _flex_settlement(root, meta, [_settlement_child(child) for child in root])


def _settlement_child(child: etree._Element) -> FlexOrderSettlement | ContractSettlement:
    """A FlexOrderSettlement or a ContractSettlement, the two children of a FlexSettlement."""
    if child.tag == "FlexOrderSettlement":
        return _flex_order_settlement(child)
    return ContractSettlement(
        contract_id=child.get("ContractID"),
        periods=tuple(
            ContractSettlementPeriod(
                period=_date(period.get("Period", "")),
                isps=tuple(_contract_settlement_isp(isp) for isp in period),
            )
            for period in child
        ),
    )


def _flex_settlement(
    root: etree._Element,
    meta: _Metadata,
    children: list[FlexOrderSettlement | ContractSettlement],
) -> FlexSettlement:
    get = root.get
    result = get("Result")  # 3.x only: FlexSettlementType extends the response type there
    return FlexSettlement(
        **meta,
        period_start=_date(get("PeriodStart", "")),
        period_end=_date(get("PeriodEnd", "")),
        currency=get("Currency", ""),
        flex_order_settlements=tuple(c for c in children if isinstance(c, FlexOrderSettlement)),
        contract_settlements=tuple(c for c in children if isinstance(c, ContractSettlement)),
        result=Result.ACCEPTED if result is None else Result(result),
        rejection_reason=get("RejectionReason"),
    )


def _flex_order_settlement(element: etree._Element) -> FlexOrderSettlement:
    get = element.get
    penalty = get("Penalty")
    return FlexOrderSettlement(
        order_reference=get("OrderReference"),
        period=_date(get("Period", "")),
        contract_id=get("ContractID"),
        d_prognosis_message_id=get("D-PrognosisMessageID"),
        baseline_reference=get("BaselineReference"),
        congestion_point=get("CongestionPoint", ""),
        price=_decimal(get("Price", "")),
        penalty=_ZERO if penalty is None else _decimal(penalty),
        net_settlement=_decimal(get("NetSettlement", "")),
        isps=tuple(
            FlexOrderSettlementISP(
                int(isp.get("Start", "")),
                int(isp.get("BaselinePower", "")),
                int(isp.get("OrderedFlexPower", "")),
                int(isp.get("ActualPower", "")),
                int(isp.get("DeliveredFlexPower", "")),
                _opt_int(isp.get("Duration"), 1),
                _opt_int(isp.get("PowerDeficiency"), 0),
            )
            for isp in element
        ),
    )


def _contract_settlement_isp(isp: etree._Element) -> ContractSettlementISP:
    get = isp.get
    return ContractSettlementISP(
        int(get("Start", "")),
        int(get("ReservedPower", "")),
        _opt_int(get("Duration"), 1),
        _opt_power(get("RequestedPower")),
        _opt_power(get("AvailablePower")),
        _opt_power(get("OfferedPower")),
        _opt_power(get("OrderedPower")),
    )


def _read_flex_settlement_response(root: etree._Element, meta: _Metadata) -> FlexSettlementResponse:
    reply = _response(FlexSettlementResponse, root, meta)
    return FlexSettlementResponse(
        **reply,
        flex_order_settlement_statuses=tuple(
            FlexOrderSettlementStatus(
                status.get("OrderReference"),
                _ACCEPTED_DISPUTED[status.get("Disposition", "")],
                status.get("DisputeReason"),
            )
            for status in root
        ),
    )


def _read_metering(root: etree._Element, meta: _Metadata) -> Metering:
    read = _metering_profiles()
    return _metering(root, meta, [read(profile) for profile in root])


def _metering_profiles() -> Callable[[etree._Element], MeteringProfile]:
    """The reader of one message's Profiles: its ISP numbers are shared (`shared_ints`)."""
    starts: dict[str, int] = {}

    def read(profile: etree._Element) -> MeteringProfile:
        return MeteringProfile(
            profile_type=_PROFILE_TYPES[profile.get("ProfileType", "")],
            unit=_UNITS[profile.get("Unit", "")],
            isps=_metering_isps(profile, starts),
        )

    return read


def _metering(root: etree._Element, meta: _Metadata, profiles: list[MeteringProfile]) -> Metering:
    get = root.get
    return Metering(
        **meta,
        revision=int(get("Revision", "")),
        isp_duration=parse_duration(get("ISP-Duration", "")),
        time_zone=get("TimeZone", ""),
        currency=get("Currency"),
        period=_date(get("Period", "")),
        ean=get("EAN", ""),
        profiles=tuple(profiles),
    )


def _metering_isps(profile: etree._Element, starts: dict[str, int]) -> tuple[MeteringISP, ...]:
    """A profile's ISPs (a year of 15-minute ISPs is 35,040 a profile), read attribute by
    attribute over the elements, each column converted at C speed (`_required_column`)."""
    isps = list(profile)
    return tuple(
        map(
            tuple.__new__,
            repeat(MeteringISP),
            zip(
                shared_ints(_required_column(isps, "Start"), starts),
                # Decimal() takes the blanks xs:decimal allows around the value, as `_decimal`.
                map(Decimal, _required_column(isps, "Value")),
                strict=True,
            ),
        )
    )


def _required_column(elements: list[etree._Element], name: str) -> list[str]:
    """The attribute `name`, which the schema requires, of each of `elements`.

    A pass per attribute over the element proxies, each value got at C speed, costs less
    than a row per element, and less than an XPath per attribute: lxml's XPath costs about as
    much per value as a proxy per element (bench/README.md). An element without the
    attribute gives None, and the reading fails: the document is then invalid, and the
    validation the caller awaits says so."""
    return cast(list[str], list(map(methodcaller("get", name), elements)))


_READERS: dict[type[PayloadMessage], Callable[[etree._Element, _Metadata], PayloadMessage]] = {
    TestMessage: _read_test_message,
    TestMessageResponse: _metadata_only_response(TestMessageResponse),
    DSOPortfolioUpdate: _read_dso_portfolio_update,
    DSOPortfolioUpdateResponse: _metadata_only_response(DSOPortfolioUpdateResponse),
    DSOPortfolioQuery: _read_dso_portfolio_query,
    DSOPortfolioQueryResponse: _read_dso_portfolio_query_response,
    AGRPortfolioUpdate: _read_agr_portfolio_update,
    AGRPortfolioUpdateResponse: _metadata_only_response(AGRPortfolioUpdateResponse),
    AGRPortfolioQuery: _read_agr_portfolio_query,
    AGRPortfolioQueryResponse: _read_agr_portfolio_query_response,
    FlexRequest: _read_flex_request,
    FlexRequestResponse: _metadata_only_response(FlexRequestResponse),
    FlexOffer: _read_flex_offer,
    FlexOfferResponse: _metadata_only_response(FlexOfferResponse),
    FlexOfferRevocation: _read_flex_offer_revocation,
    FlexOfferRevocationResponse: _metadata_only_response(FlexOfferRevocationResponse),
    FlexOrder: _read_flex_order,
    FlexOrderResponse: _metadata_only_response(FlexOrderResponse),
    FlexReservationUpdate: _read_flex_reservation_update,
    FlexReservationUpdateResponse: _metadata_only_response(FlexReservationUpdateResponse),
    DPrognosis: _read_d_prognosis,
    DPrognosisResponse: _read_d_prognosis_response,
    FlexSettlement: _read_flex_settlement,
    FlexSettlementResponse: _read_flex_settlement_response,
    Metering: _read_metering,
    MeteringResponse: _metadata_only_response(MeteringResponse),
}


#: The messages `_decode_streamed` reads, by root tag: the children it reads one at a time,
#: the reader of one message's children, and what builds the message from its root and them.
_STREAMED: dict[
    str,
    tuple[
        tuple[str, ...],
        Callable[[], Callable[[etree._Element], Any]],
        Callable[[etree._Element, _Metadata, list[Any]], PayloadMessage],
    ],
] = {
    "Metering": (("Profile",), _metering_profiles, _metering),
    "FlexSettlement": (
        ("FlexOrderSettlement", "ContractSettlement"),
        lambda: _settlement_child,
        _flex_settlement,
    ),
    "DSOPortfolioUpdate": (
        ("CongestionPoint",),
        lambda: _streamed_dso_point,
        _dso_portfolio_update,
    ),
}


#: The messages whose children `_decode_streamed` reads from the validated bytes, column-wise
#: (`scan`), where they are written plainly; those written otherwise are read from the
#: stream.
_SCANNED: dict[str, Callable[[bytes, int], list[Any] | None]] = {
    "Metering": metering_profiles,
    "FlexSettlement": lambda data, body: _scanned_settlement(data, body),
    "DSOPortfolioUpdate": lambda data, body: portfolio_points(
        data, body, _date, _scanned_dso_point
    ),
}


def _scanned_settlement(
    data: bytes, body: int
) -> list[FlexOrderSettlement | ContractSettlement] | None:
    """The children of a valid FlexSettlement: the orders from the bytes (`scan`), the few
    ContractSettlements after them from a tree of their own."""
    scanned = order_settlements(data, body, _date)
    if scanned is None:
        return None
    orders, contracts = scanned
    end = data.rfind(b"</FlexSettlement")
    # The content between the orders and the root's end tag is the ContractSettlements alone
    # (the XSD's sequence), written plainly (`scan.plain_content`): a root of its own holds them.
    rest = parse_xml(b"<ContractSettlements>" + data[contracts:end] + b"</ContractSettlements>")
    return [*orders, *map(_settlement_child, rest)]


# ============================================================================================
# Writing
# ============================================================================================

M = TypeVar("M", bound=PayloadMessage)


def encode(message: PayloadMessage, *, validate: bool = True) -> bytes:
    """Serialize `message` (metadata complete) to UTF-8 XML in the wire format of its Version.

    Raises `IncompleteMessage` when metadata is missing, `InvalidOutbound` for text XML cannot
    carry and, with `validate`, when the result would not be schema-valid (e.g. a malformed
    EntityAddress): our own mistake, never a peer's (`InvalidXml` is the peer's).
    """
    parts: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _WRITERS[type(message)](message, parts)
    try:
        data = "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in some string field
        raise InvalidOutbound(f"{message.xml_name}: a value is not encodable text: {exc}") from None
    if validate:
        try:
            SCHEMAS.for_version(message.version).validate_root(parse_xml(data))
        except InvalidXml as exc:
            raise InvalidOutbound(exc.detail) from None
    return data


_REQUIRED_METADATA = (
    "version",
    "sender_domain",
    "recipient_domain",
    "message_id",
    "conversation_id",
)


def _open(message: PayloadMessage, parts: list[str], extra: str = "") -> None:
    """Append the start tag with metadata (and `extra` attributes), unclosed."""
    missing = [
        name
        for name in (
            "version",
            "sender_domain",
            "recipient_domain",
            "message_id",
            "conversation_id",
        )
        if not getattr(message, name)
    ]
    stamp = message.time_stamp
    if stamp is None:
        missing.append("time_stamp")
    if missing:
        raise IncompleteMessage(f"{message.xml_name}: metadata not filled: {', '.join(missing)}")
    assert stamp is not None
    if stamp.tzinfo is None:
        raise IncompleteMessage(f"{message.xml_name}: time_stamp must be timezone-aware")
    parts.append(
        f'<{message.xml_name} Version="{attr(message.version)}"'
        f' SenderDomain="{attr(message.sender_domain)}"'
        f' RecipientDomain="{attr(message.recipient_domain)}"'
        f' TimeStamp="{stamp.isoformat()}"'
        f' MessageID="{attr(message.message_id)}"'
        f' ConversationID="{attr(message.conversation_id)}"{extra}'
    )


def _response_attributes(message: PayloadResponse) -> str:
    if is_draft(message.version):
        reference: str | None = "ReferenceMessageID"
    else:
        reference = message.v3_reference
        if reference is None:  # 3.x TestMessageResponse: metadata only
            return ""
    if not message.reference_message_id:
        raise IncompleteMessage(f"{message.xml_name}: reference_message_id not filled")
    text = f' Result="{message.result}"'
    if message.rejection_reason is not None:
        text += f' RejectionReason="{attr(message.rejection_reason)}"'
    return text + f' {reference}="{attr(message.reference_message_id)}"'


def _opt(name: str, value: object) -> str:
    return "" if value is None else f' {name}="{value}"'


def _opt_text(name: str, value: str | None) -> str:
    """An optional attribute of free text (escaped)."""
    return "" if value is None else f' {name}="{attr(value)}"'


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _opt_bool_text(name: str, value: bool | None) -> str:
    return "" if value is None else f' {name}="{_bool_text(value)}"'


def _dec(value: Decimal) -> str:
    # Fixed-point: str() would write Decimal("1E+3") as "1E+3", which xs:decimal refuses.
    # An int given where the model says Decimal is written as the integer it is (format()
    # would give it six zero decimals, more than a CurrencyAmount may have).
    return format(value if isinstance(value, Decimal) else Decimal(value), "f")


def _duration_attr(value: int) -> str:
    """An ISP's Duration; 1 is the XSD's default and is left out."""
    return "" if value == 1 else f' Duration="{value}"'


def _expiration(message: PayloadMessage, value: datetime) -> str:
    if value.tzinfo is None:
        # The draft requires an offset; in 3.x a naive value would be read back as UTC.
        raise IncompleteMessage(f"{message.xml_name}: expiration_date_time must be timezone-aware")
    return f' ExpirationDateTime="{value.isoformat()}"'


def _factor_attr(name: str, value: Decimal) -> str:
    """An activation factor; 1.00 is the XSD's default and is left out."""
    return "" if value == _ONE else f' {name}="{_dec(value)}"'


def _flex_attributes(message: FlexMessage[PayloadResponse]) -> str:
    return (
        f' ISP-Duration="{format_duration(message.isp_duration)}"'
        f' TimeZone="{attr(message.time_zone)}"'
        f' Period="{message.period.isoformat()}"'
        f' CongestionPoint="{attr(message.congestion_point)}"'
    )


def _write_metadata_only(message: PayloadMessage, parts: list[str]) -> None:
    extra = _response_attributes(message) if isinstance(message, PayloadResponse) else ""
    _open(message, parts, extra)
    parts.append("/>")


def _write_dso_portfolio_update(message: DSOPortfolioUpdate, parts: list[str]) -> None:
    _open(message, parts, f' TimeZone="{attr(message.time_zone)}"')
    parts.append(">")
    append = parts.append
    needs_escape = NEEDS_ESCAPE.search
    for cp in message.congestion_points:
        append(
            f'<CongestionPoint EntityAddress="{attr(cp.entity_address)}"'
            f' StartPeriod="{cp.start_period.isoformat()}"'
            f"{_opt('EndPeriod', cp.end_period)}"
            f' MutexOffersSupported="{"true" if cp.mutex_offers_supported else "false"}"'
            f' DayAheadRedispatchBy="{cp.day_ahead_redispatch_by}"'
            f"{_opt('IntradayRedispatchBy', cp.intraday_redispatch_by)}>"
        )
        # The rows unpacked and `attr` called only for a value that needs escaping: this loop
        # runs once per connection, and a portfolio has many.
        for address, start, stop in cp.connections:
            end = "" if stop is None else f' EndPeriod="{stop.isoformat()}"'
            escaped = address if needs_escape(address) is None else attr(address)
            append(
                f'<Connection EntityAddress="{escaped}" StartPeriod="{start.isoformat()}"{end}/>'
            )
        append("</CongestionPoint>")
    append(f"</{message.xml_name}>")


def _write_dso_portfolio_query(message: DSOPortfolioQuery, parts: list[str]) -> None:
    _open(
        message,
        parts,
        f' TimeZone="{attr(message.time_zone)}" Period="{message.period.isoformat()}"'
        f' EntityAddress="{attr(message.entity_address)}"',
    )
    parts.append("/>")


def _write_dso_portfolio_query_response(
    message: DSOPortfolioQueryResponse, parts: list[str]
) -> None:
    _open(
        message,
        parts,
        _response_attributes(message)
        + f' TimeZone="{attr(message.time_zone)}" Period="{message.period.isoformat()}"',
    )
    cp = message.congestion_point
    if cp is None:
        parts.append("/>")
        return
    parts.append(f'><CongestionPoint EntityAddress="{attr(cp.entity_address)}">')
    for c in cp.connections:
        domain = "" if c.agr_domain is None else f' AGR-Domain="{attr(c.agr_domain)}"'
        parts.append(f'<Connection EntityAddress="{attr(c.entity_address)}"{domain}/>')
    parts.append(f"</CongestionPoint></{message.xml_name}>")


def _write_agr_portfolio_update(message: AGRPortfolioUpdate, parts: list[str]) -> None:
    _open(message, parts, f' TimeZone="{attr(message.time_zone)}"')
    parts.append(">")
    for c in message.connections:
        end = "" if c.end_period is None else f' EndPeriod="{c.end_period.isoformat()}"'
        parts.append(
            f'<Connection EntityAddress="{attr(c.entity_address)}"'
            f' StartPeriod="{c.start_period.isoformat()}"{end}/>'
        )
    parts.append(f"</{message.xml_name}>")


def _write_agr_portfolio_query(message: AGRPortfolioQuery, parts: list[str]) -> None:
    _open(
        message,
        parts,
        f' TimeZone="{attr(message.time_zone)}" Period="{message.period.isoformat()}"',
    )
    parts.append("/>")


def _write_agr_connections(
    connections: tuple[AGRPortfolioQueryConnection, ...], parts: list[str]
) -> None:
    for c in connections:
        parts.append(f'<Connection EntityAddress="{attr(c.entity_address)}"/>')


def _write_agr_portfolio_query_response(
    message: AGRPortfolioQueryResponse, parts: list[str]
) -> None:
    _open(
        message,
        parts,
        _response_attributes(message)
        + f' TimeZone="{attr(message.time_zone)}" Period="{message.period.isoformat()}"',
    )
    if not message.dso_views:
        parts.append("/>")
        return
    parts.append(">")
    for view in message.dso_views:
        parts.append("<DSO-View>")
        for portfolio in view.dso_portfolios:
            parts.append(f'<DSO-Portfolio DSO-Domain="{attr(portfolio.dso_domain)}">')
            for cp in portfolio.congestion_points:
                parts.append(
                    f'<CongestionPoint EntityAddress="{attr(cp.entity_address)}"'
                    f' MutexOffersSupported="{"true" if cp.mutex_offers_supported else "false"}"'
                    f' DayAheadRedispatchBy="{cp.day_ahead_redispatch_by}"'
                    f"{_opt('IntradayRedispatchBy', cp.intraday_redispatch_by)}>"
                )
                _write_agr_connections(cp.connections, parts)
                parts.append("</CongestionPoint>")
            parts.append("</DSO-Portfolio>")
        _write_agr_connections(view.connections, parts)
        parts.append("</DSO-View>")
    parts.append(f"</{message.xml_name}>")


def _write_flex_request(message: FlexRequest, parts: list[str]) -> None:
    _open(
        message,
        parts,
        _flex_attributes(message)
        + f' Revision="{message.revision}"'
        + _expiration(message, message.expiration_date_time)
        + _opt_text("ContractID", message.contract_id)
        + _opt_text("ServiceType", message.service_type),
    )
    parts.append(">")
    append = parts.append
    for isp in message.isps:
        append(
            f'<ISP{_opt("Disposition", isp.disposition)} MinPower="{isp.min_power}"'
            f' MaxPower="{isp.max_power}" Start="{isp.start}"{_duration_attr(isp.duration)}/>'
        )
    append(f"</{message.xml_name}>")


def _write_flex_offer(message: FlexOffer, parts: list[str]) -> None:
    _open(
        message,
        parts,
        _flex_attributes(message)
        + _expiration(message, message.expiration_date_time)
        + _opt_bool_text("Unsolicited", message.unsolicited)
        + _opt_text("FlexRequestMessageID", message.flex_request_message_id)
        + _opt_text("ContractID", message.contract_id)
        + _opt_text("D-PrognosisMessageID", message.d_prognosis_message_id)
        + _opt_text("BaselineReference", message.baseline_reference)
        + f' Currency="{attr(message.currency)}"',
    )
    parts.append(">")
    append = parts.append
    for option in message.offer_options:
        factor = option.min_activation_factor
        append(
            f'<OfferOption OptionReference="{attr(option.option_reference)}"'
            f' Price="{_dec(option.price)}"{_factor_attr("MinActivationFactor", factor)}>'
        )
        _write_power_isps(option.isps, parts)
        append("</OfferOption>")
    append(f"</{message.xml_name}>")


def _write_flex_offer_revocation(message: FlexOfferRevocation, parts: list[str]) -> None:
    _open(message, parts, f' FlexOfferMessageID="{attr(message.flex_offer_message_id)}"')
    parts.append("/>")


def _write_power_isps(
    isps: Iterable[FlexOfferOptionISP | FlexOrderISP | FlexReservationUpdateISP | DPrognosisISP],
    parts: list[str],
) -> None:
    """ISPs of one Power each, as offers, orders, reservation updates and D-Prognoses have."""
    append = parts.append
    for isp in isps:
        append(f'<ISP Power="{isp.power}" Start="{isp.start}"{_duration_attr(isp.duration)}/>')


def _write_flex_order(message: FlexOrder, parts: list[str]) -> None:
    _open(
        message,
        parts,
        _flex_attributes(message)
        + _opt_bool_text("Unsolicited", message.unsolicited)
        + _opt_text("FlexOfferMessageID", message.flex_offer_message_id)
        + _opt_text("ServiceType", message.service_type)
        + _opt_text("ContractID", message.contract_id)
        + _opt_text("D-PrognosisMessageID", message.d_prognosis_message_id)
        + _opt_text("BaselineReference", message.baseline_reference)
        + f' Price="{_dec(message.price)}" Currency="{attr(message.currency)}"'
        + f' OrderReference="{attr(message.order_reference)}"'
        + _opt_text("OptionReference", message.option_reference)
        + _factor_attr("ActivationFactor", message.activation_factor),
    )
    parts.append(">")
    _write_power_isps(message.isps, parts)
    parts.append(f"</{message.xml_name}>")


def _write_flex_reservation_update(message: FlexReservationUpdate, parts: list[str]) -> None:
    _open(
        message,
        parts,
        _flex_attributes(message)
        + f' ContractID="{attr(message.contract_id)}" Reference="{attr(message.reference)}"',
    )
    parts.append(">")
    _write_power_isps(message.isps, parts)
    parts.append(f"</{message.xml_name}>")


def _write_d_prognosis(message: DPrognosis, parts: list[str]) -> None:
    _open(message, parts, _flex_attributes(message) + f' Revision="{message.revision}"')
    parts.append(">")
    _write_power_isps(message.isps, parts)
    parts.append(f"</{message.xml_name}>")


def _write_d_prognosis_response(message: DPrognosisResponse, parts: list[str]) -> None:
    _open(message, parts, _response_attributes(message))
    if not message.flex_order_statuses:
        parts.append("/>")
        return
    parts.append(">")
    for status in message.flex_order_statuses:
        parts.append(
            f'<FlexOrderStatus FlexOrderMessageID="{attr(status.flex_order_message_id)}"'
            f' IsValidated="{_bool_text(status.is_validated)}"/>'
        )
    parts.append(f"</{message.xml_name}>")


def _write_flex_settlement(message: FlexSettlement, parts: list[str]) -> None:
    if is_draft(message.version):
        if message.result is not Result.ACCEPTED or message.rejection_reason is not None:
            raise InvalidOutbound(
                f"{message.xml_name}: Result and RejectionReason exist in 3.x only, "
                f"not in Version {message.version}"
            )
        response = ""
    else:
        response = f' Result="{message.result}"' + _opt_text(
            "RejectionReason", message.rejection_reason
        )
    _open(
        message,
        parts,
        response
        + f' PeriodStart="{message.period_start.isoformat()}"'
        + f' PeriodEnd="{message.period_end.isoformat()}"'
        + f' Currency="{attr(message.currency)}"',
    )
    parts.append(">")
    append = parts.append
    for order in message.flex_order_settlements:
        penalty = order.penalty
        append(
            "<FlexOrderSettlement"
            + _opt_text("OrderReference", order.order_reference)
            + f' Period="{order.period.isoformat()}"'
            + _opt_text("ContractID", order.contract_id)
            + _opt_text("D-PrognosisMessageID", order.d_prognosis_message_id)
            + _opt_text("BaselineReference", order.baseline_reference)
            + f' CongestionPoint="{attr(order.congestion_point)}"'
            + f' Price="{_dec(order.price)}"'
            + ("" if penalty == _ZERO else f' Penalty="{_dec(penalty)}"')
            + f' NetSettlement="{_dec(order.net_settlement)}">'
        )
        for isp in order.isps:
            append(
                f'<ISP Start="{isp.start}"{_duration_attr(isp.duration)}'
                f' BaselinePower="{isp.baseline_power}"'
                f' OrderedFlexPower="{isp.ordered_flex_power}"'
                f' ActualPower="{isp.actual_power}"'
                f' DeliveredFlexPower="{isp.delivered_flex_power}"'
                # 0 is the XSD's default and is left out.
                f"{_opt('PowerDeficiency', isp.power_deficiency or None)}/>"
            )
        append("</FlexOrderSettlement>")
    for contract in message.contract_settlements:
        append(f"<ContractSettlement{_opt_text('ContractID', contract.contract_id)}>")
        for period in contract.periods:
            append(f'<Period Period="{period.period.isoformat()}">')
            for c in period.isps:
                append(
                    f'<ISP Start="{c.start}"{_duration_attr(c.duration)}'
                    f' ReservedPower="{c.reserved_power}"'
                    f"{_opt('RequestedPower', c.requested_power)}"
                    f"{_opt('AvailablePower', c.available_power)}"
                    f"{_opt('OfferedPower', c.offered_power)}"
                    f"{_opt('OrderedPower', c.ordered_power)}/>"
                )
            append("</Period>")
        append("</ContractSettlement>")
    append(f"</{message.xml_name}>")


def _write_flex_settlement_response(message: FlexSettlementResponse, parts: list[str]) -> None:
    _open(message, parts, _response_attributes(message))
    if not message.flex_order_settlement_statuses:
        parts.append("/>")  # not schema-valid: the XSD wants one status at least
        return
    parts.append(">")
    for status in message.flex_order_settlement_statuses:
        parts.append(
            "<FlexOrderSettlementStatus"
            + _opt_text("OrderReference", status.order_reference)
            + f' Disposition="{status.disposition}"'
            + _opt_text("DisputeReason", status.dispute_reason)
            + "/>"
        )
    parts.append(f"</{message.xml_name}>")


def _write_metering(message: Metering, parts: list[str]) -> None:
    _open(
        message,
        parts,
        f' Revision="{message.revision}"'
        f' ISP-Duration="{format_duration(message.isp_duration)}"'
        f' TimeZone="{attr(message.time_zone)}"'
        + _opt_text("Currency", message.currency)
        + f' Period="{message.period.isoformat()}" EAN="{attr(message.ean)}"',
    )
    parts.append(">")
    append = parts.append
    for profile in message.profiles:
        append(f'<Profile ProfileType="{profile.profile_type}" Unit="{profile.unit}">')
        for isp in profile.isps:
            append(f'<ISP Start="{isp.start}" Value="{_dec(isp.value)}"/>')
        append("</Profile>")
    append(f"</{message.xml_name}>")


#: Each writer takes the type it is filed under, which no dict type can say: hence `Any`.
_WRITERS: dict[type[PayloadMessage], Callable[[Any, list[str]], None]] = {
    TestMessage: _write_metadata_only,
    TestMessageResponse: _write_metadata_only,
    DSOPortfolioUpdate: _write_dso_portfolio_update,
    DSOPortfolioUpdateResponse: _write_metadata_only,
    DSOPortfolioQuery: _write_dso_portfolio_query,
    DSOPortfolioQueryResponse: _write_dso_portfolio_query_response,
    AGRPortfolioUpdate: _write_agr_portfolio_update,
    AGRPortfolioUpdateResponse: _write_metadata_only,
    AGRPortfolioQuery: _write_agr_portfolio_query,
    AGRPortfolioQueryResponse: _write_agr_portfolio_query_response,
    FlexRequest: _write_flex_request,
    FlexRequestResponse: _write_metadata_only,
    FlexOffer: _write_flex_offer,
    FlexOfferResponse: _write_metadata_only,
    FlexOfferRevocation: _write_flex_offer_revocation,
    FlexOfferRevocationResponse: _write_metadata_only,
    FlexOrder: _write_flex_order,
    FlexOrderResponse: _write_metadata_only,
    FlexReservationUpdate: _write_flex_reservation_update,
    FlexReservationUpdateResponse: _write_metadata_only,
    DPrognosis: _write_d_prognosis,
    DPrognosisResponse: _write_d_prognosis_response,
    FlexSettlement: _write_flex_settlement,
    FlexSettlementResponse: _write_flex_settlement_response,
    Metering: _write_metering,
    MeteringResponse: _write_metadata_only,
}
