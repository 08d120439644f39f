"""UFTP messages <-> XML bytes, for Versions 3.0.0, 3.1.0 and the draft next version (4.0.0).

Reading is parse (hardened, see `xml.py`) -> validate against the schema of the message's
Version -> build the model. Validation comes before any value is read, so the readers below
can trust the shape of the tree and stay simple and fast: the connections of a large
portfolio update are read column-wise (`columns.py`), without a Python object per element.

Writing is plain string assembly with attribute escaping, which is several times faster than
building an lxml tree for the same document, and is validated against the same schema before
it leaves (on by default), so that a mistake in our own data is reported here rather than as
an HTTP 400 from the peer.

The one difference between the versions for these messages: a 3.x response names its
reference to the request per type (DSOPortfolioQueryMessageID, ...; TestMessageResponse has
none, and no Result), the draft calls it ReferenceMessageID everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import chain
from typing import Any, TypeVar

from lxml import etree

from .columns import ConnectionColumns, R
from .errors import IncompleteMessage, InvalidOutbound, InvalidXml
from .messages import (
    MESSAGE_TYPES,
    AGRPortfolioQuery,
    AGRPortfolioQueryCongestionPoint,
    AGRPortfolioQueryConnection,
    AGRPortfolioQueryDSOPortfolio,
    AGRPortfolioQueryDSOView,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    AGRPortfolioUpdateResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryCongestionPoint,
    DSOPortfolioQueryConnection,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    DSOPortfolioUpdateResponse,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
    Result,
    TestMessage,
    TestMessageResponse,
)
from .xml import SCHEMAS, attr, parse_xml

#: Versions whose wire format this codec reads and writes.
KNOWN_VERSIONS = ("3.0.0", "3.1.0", "4.0.0")

#: 3.x reference attribute of each response type (None: the type has no reference in 3.x).
V3_REFERENCE_ATTRIBUTE: dict[type[PayloadResponse], str | None] = {
    TestMessageResponse: None,
    DSOPortfolioUpdateResponse: "DSOPortfolioUpdateResponseMessageID",
    DSOPortfolioQueryResponse: "DSOPortfolioQueryMessageID",
    AGRPortfolioUpdateResponse: "AGRPortfolioUpdateMessageID",
    AGRPortfolioQueryResponse: "AGRPortfolioQueryMessageID",
}


def is_draft(version: str) -> bool:
    return version.startswith("4.")


# ============================================================================================
# Reading
# ============================================================================================


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
    #: unmodified tree (libxml2 releases the GIL meanwhile); for a 100,000-connection portfolio
    #: that hides most of the validation time.
    executor: Executor | None = None
    #: Held while the model is built: e.g. the cyclic garbage collector paused, which the
    #: hundreds of thousands of rows of a portfolio (tuples, no cycles) would otherwise wake.
    building: Callable[[], AbstractContextManager[object]] = nullcontext
    #: Messages above this many bytes are large; smaller ones are read without help.
    threshold: int = CONCURRENT_VALIDATION_BYTES


def decode(data: bytes, *, bulk: Bulk | None = None) -> PayloadMessage:
    """Parse, validate and read one inner UFTP message. Raises `InvalidXml` (HTTP 400).

    `bulk`: the caller's help for a message larger than its `threshold`."""
    root = parse_xml(data)
    return decode_element(root, bulk=bulk if bulk and len(data) > bulk.threshold else None)


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


@lru_cache(maxsize=4096)
def _date(text: str) -> date:
    # xs:date may carry a time zone suffix ("2024-05-01Z", "2024-05-01+02:00"); a Period is
    # a calendar day in the message's TimeZone, so the suffix carries no information here.
    return date.fromisoformat(text.strip()[:10])


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


#: Enum members by value: a dict look-up instead of Enum.__call__, several times faster.
_REDISPATCH: dict[str, RedispatchBy] = {member.value: member for member in RedispatchBy}


def _redispatch(text: str | None) -> RedispatchBy | None:
    return None if text is None else _REDISPATCH[text]


def _metadata(root: etree._Element) -> dict[str, Any]:
    get = root.get
    return {
        "version": get("Version"),
        "sender_domain": get("SenderDomain"),
        "recipient_domain": get("RecipientDomain"),
        "time_stamp": _datetime(get("TimeStamp", "")),
        "message_id": get("MessageID"),
        "conversation_id": get("ConversationID"),
    }


def _response(cls: type[PayloadResponse], root: etree._Element, meta: dict[str, Any]) -> None:
    """Add the response attributes of `root` to `meta`, as its Version spells them."""
    version = meta["version"]
    if is_draft(version):
        reference: str | None = "ReferenceMessageID"
    else:
        reference = V3_REFERENCE_ATTRIBUTE[cls]
    meta["reference_message_id"] = root.get(reference, "") if reference else ""
    result = root.get("Result")
    if result is not None:
        meta["result"] = Result(result)
    meta["rejection_reason"] = root.get("RejectionReason")


def _read_test_message(root: etree._Element, meta: dict[str, Any]) -> TestMessage:
    return TestMessage(**meta)


def _metadata_only_response(
    cls: type[PayloadResponse],
) -> Callable[[etree._Element, dict[str, Any]], PayloadResponse]:
    """The reader of a response that carries nothing beyond the response attributes."""

    def read(root: etree._Element, meta: dict[str, Any]) -> PayloadResponse:
        _response(cls, root, meta)
        return cls(**meta)

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
            row(c.get("EntityAddress"), _date(c.get("StartPeriod")), _opt_end(c)) for c in elements
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


def _read_dso_portfolio_update(root: etree._Element, meta: dict[str, Any]) -> DSOPortfolioUpdate:
    points = []
    elements = list(root)
    for cp, connections in zip(elements, _dso_connections(root, elements), strict=True):
        get = cp.get
        points.append(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=get("EntityAddress"),
                start_period=_date(get("StartPeriod")),
                end_period=_opt_date(get("EndPeriod")),
                mutex_offers_supported=_bool(get("MutexOffersSupported")),
                day_ahead_redispatch_by=_REDISPATCH[get("DayAheadRedispatchBy")],
                intraday_redispatch_by=_redispatch(get("IntradayRedispatchBy")),
                connections=connections,
            )
        )
    return DSOPortfolioUpdate(
        **meta, time_zone=root.get("TimeZone"), congestion_points=tuple(points)
    )


def _read_dso_portfolio_query(root: etree._Element, meta: dict[str, Any]) -> DSOPortfolioQuery:
    return DSOPortfolioQuery(
        **meta,
        time_zone=root.get("TimeZone"),
        period=_date(root.get("Period")),
        entity_address=root.get("EntityAddress"),
    )


def _read_dso_portfolio_query_response(
    root: etree._Element, meta: dict[str, Any]
) -> DSOPortfolioQueryResponse:
    _response(DSOPortfolioQueryResponse, root, meta)
    point = None
    for cp in root:
        point = DSOPortfolioQueryCongestionPoint(
            entity_address=cp.get("EntityAddress"),
            connections=tuple(
                DSOPortfolioQueryConnection(c.get("EntityAddress"), c.get("AGR-Domain")) for c in cp
            ),
        )
    return DSOPortfolioQueryResponse(
        **meta,
        time_zone=root.get("TimeZone"),
        period=_date(root.get("Period")),
        congestion_point=point,
    )


def _read_agr_portfolio_update(root: etree._Element, meta: dict[str, Any]) -> AGRPortfolioUpdate:
    rows = _connection_rows(_AGR_CONNECTIONS, root, len(root), root)
    return AGRPortfolioUpdate(**meta, time_zone=root.get("TimeZone"), connections=tuple(rows))


def _read_agr_portfolio_query(root: etree._Element, meta: dict[str, Any]) -> AGRPortfolioQuery:
    return AGRPortfolioQuery(
        **meta, time_zone=root.get("TimeZone"), period=_date(root.get("Period"))
    )


def _agr_connections(parent: etree._Element) -> tuple[AGRPortfolioQueryConnection, ...]:
    return tuple(
        AGRPortfolioQueryConnection(c.get("EntityAddress")) for c in parent if c.tag == "Connection"
    )


def _read_agr_portfolio_query_response(
    root: etree._Element, meta: dict[str, Any]
) -> AGRPortfolioQueryResponse:
    _response(AGRPortfolioQueryResponse, root, meta)
    views = []
    for view in root:
        portfolios = []
        for portfolio in view:
            if portfolio.tag != "DSO-Portfolio":
                continue
            points = tuple(
                AGRPortfolioQueryCongestionPoint(
                    entity_address=cp.get("EntityAddress"),
                    mutex_offers_supported=_bool(cp.get("MutexOffersSupported")),
                    day_ahead_redispatch_by=RedispatchBy(cp.get("DayAheadRedispatchBy")),
                    intraday_redispatch_by=_redispatch(cp.get("IntradayRedispatchBy")),
                    connections=_agr_connections(cp),
                )
                for cp in portfolio
            )
            portfolios.append(
                AGRPortfolioQueryDSOPortfolio(
                    dso_domain=portfolio.get("DSO-Domain"), congestion_points=points
                )
            )
        views.append(
            AGRPortfolioQueryDSOView(
                dso_portfolios=tuple(portfolios), connections=_agr_connections(view)
            )
        )
    return AGRPortfolioQueryResponse(
        **meta,
        time_zone=root.get("TimeZone"),
        period=_date(root.get("Period")),
        dso_views=tuple(views),
    )


_READERS: dict[type[PayloadMessage], Callable[[etree._Element, dict[str, Any]], PayloadMessage]] = {
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
}


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
        reference = V3_REFERENCE_ATTRIBUTE[type(message)]
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


def _write_metadata_only(message: PayloadMessage, parts: list[str]) -> None:
    extra = _response_attributes(message) if isinstance(message, PayloadResponse) else ""
    _open(message, parts, extra)
    parts.append("/>")


def _write_dso_portfolio_update(message: DSOPortfolioUpdate, parts: list[str]) -> None:
    _open(message, parts, f' TimeZone="{attr(message.time_zone)}"')
    parts.append(">")
    append = parts.append
    for cp in message.congestion_points:
        append(
            f'<CongestionPoint EntityAddress="{attr(cp.entity_address)}"'
            f' StartPeriod="{cp.start_period.isoformat()}"'
            f"{_opt('EndPeriod', cp.end_period)}"
            f' MutexOffersSupported="{"true" if cp.mutex_offers_supported else "false"}"'
            f' DayAheadRedispatchBy="{cp.day_ahead_redispatch_by}"'
            f"{_opt('IntradayRedispatchBy', cp.intraday_redispatch_by)}>"
        )
        for c in cp.connections:
            end = "" if c.end_period is None else f' EndPeriod="{c.end_period.isoformat()}"'
            append(
                f'<Connection EntityAddress="{attr(c.entity_address)}"'
                f' StartPeriod="{c.start_period.isoformat()}"{end}/>'
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
}
