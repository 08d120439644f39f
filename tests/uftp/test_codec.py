"""The codec: UFTP messages <-> XML bytes, for Versions 3.0.0, 3.1.0 and the draft 4.0.0.

What a participant relies on: what it encodes is what the peer decodes (and what the
official Shapeshifter schema accepts), the wire spelling follows the message's Version,
hand-written XML from other implementations is read whatever its lexical style, and every
refusal is a typed error (`IncompleteMessage` before sending, `InvalidXml` = HTTP 400 on
receipt), never a stray `ValueError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from adapter.uftp import codec
from adapter.uftp.errors import IncompleteMessage, InvalidOutbound, InvalidXml, TransportError
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioQueryConnection,
    AGRPortfolioQueryDSOView,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    AGRPortfolioUpdateResponse,
    DPrognosisResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryConnection,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    DSOPortfolioUpdateResponse,
    FlexOfferResponse,
    FlexOfferRevocationResponse,
    FlexOrderResponse,
    FlexRequestResponse,
    FlexReservationUpdateResponse,
    FlexSettlementResponse,
    MeteringResponse,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
    Result,
    TestMessage,
    TestMessageResponse,
)
from tests import official_xsd

from . import samples
from .official import official_schema
from .samples import DRAFT, REQUEST_MESSAGE_ID, VERSIONS

needs_official_xsd = official_xsd.needs_official_xsd

#: The 3.x reference attribute of each response type, as the official XSDs spell it.
V3_REFERENCE = {
    DSOPortfolioUpdateResponse: "DSOPortfolioUpdateResponseMessageID",
    DSOPortfolioQueryResponse: "DSOPortfolioQueryMessageID",
    AGRPortfolioUpdateResponse: "AGRPortfolioUpdateMessageID",
    AGRPortfolioQueryResponse: "AGRPortfolioQueryMessageID",
    FlexRequestResponse: "FlexRequestMessageID",
    FlexOfferResponse: "FlexOfferMessageID",
    FlexOfferRevocationResponse: "FlexOfferRevocationMessageID",
    FlexOrderResponse: "FlexOrderMessageID",
    FlexReservationUpdateResponse: "FlexReservationUpdateMessageID",
    DPrognosisResponse: "D-PrognosisMessageID",
    FlexSettlementResponse: "FlexSettlementMessageID",
    MeteringResponse: "MeteringMessageID",
}
V3_VERSIONS = ("3.0.0", "3.1.0")
METADATA_ATTRIBUTES = {
    "Version",
    "SenderDomain",
    "RecipientDomain",
    "TimeStamp",
    "MessageID",
    "ConversationID",
}

version_params = pytest.mark.parametrize("version", VERSIONS, ids=samples.version_id)
v3_params = pytest.mark.parametrize("version", V3_VERSIONS, ids=samples.version_id)
#: Every response type x Version that carries Result and a reference (all but 3.x TM_R).
response_with_result_params = pytest.mark.parametrize(
    ("cls", "version"),
    [
        pytest.param(cls, version, id=f"{cls.xml_name}-v{version}")
        for cls in samples.RESPONSE_CLASSES
        for version in VERSIONS
        if cls is not TestMessageResponse or version == DRAFT
    ],
)


def raw_root(data: bytes) -> etree._Element:
    """The encoded document as any other XML reader sees it (plain lxml, no codec)."""
    return etree.fromstring(data)


def round_trip(message: PayloadMessage) -> PayloadMessage:
    return codec.decode(codec.encode(message))


def header(version: str = "3.1.0", **changes: str) -> str:
    """Metadata attributes for a hand-written message, in the usual order."""
    attributes = {
        "Version": version,
        "SenderDomain": samples.DSO_DOMAIN,
        "RecipientDomain": samples.CRO_DOMAIN,
        "TimeStamp": "2024-05-01T10:15:30+02:00",
        "MessageID": samples.MESSAGE_ID,
        "ConversationID": samples.CONVERSATION_ID,
        **changes,
    }
    return " ".join(f'{name}="{value}"' for name, value in attributes.items())


# ============================================================================================
# Round trip, for every message type x Version
# ============================================================================================


def test_round_trip(sample_message: PayloadMessage) -> None:
    decoded = codec.decode(codec.encode(sample_message))
    assert type(decoded) is type(sample_message)
    assert decoded == sample_message
    # Equal instants are not enough: the sender's UTC offset survives the trip.
    assert decoded.time_stamp is not None and sample_message.time_stamp is not None
    assert decoded.time_stamp.utcoffset() == sample_message.time_stamp.utcoffset()


@needs_official_xsd
def test_encoding_is_valid_against_the_official_schema(sample_message: PayloadMessage) -> None:
    schema = official_schema(sample_message.version)
    document = raw_root(codec.encode(sample_message))
    assert schema.validate(document), str(schema.error_log)


def test_encoding_is_utf8_xml_with_the_root_named_after_the_type(
    sample_message: PayloadMessage,
) -> None:
    data = codec.encode(sample_message)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = raw_root(data)
    assert root.tag == sample_message.xml_name
    assert root.get("Version") == sample_message.version
    assert root.get("MessageID") == samples.MESSAGE_ID
    assert root.get("ConversationID") == samples.CONVERSATION_ID


def test_version_is_kept_exactly(make_sample: Callable[..., PayloadMessage]) -> None:
    # 3.0.0 and 3.1.0 share a wire format, but a reply must echo what the peer speaks.
    for version in VERSIONS:
        assert round_trip(make_sample(DSOPortfolioQuery, version)).version == version


def test_unknown_version_is_read_so_that_it_can_be_rejected_with_a_reason() -> None:
    # An otherwise sound message of an unsupported Version decodes (validated against the
    # latest released schema), so the receiver can answer "Unsupported Version" instead of 400.
    message = codec.decode(f"<TestMessage {header('2.0.0')}/>".encode())
    assert message.version == "2.0.0"


# ============================================================================================
# Version-specific wire format of responses
# ============================================================================================


@pytest.mark.parametrize("cls", list(V3_REFERENCE), ids=lambda cls: cls.xml_name)
@v3_params
def test_3x_response_uses_the_per_type_reference_attribute(
    cls: type[PayloadResponse], version: str
) -> None:
    root = raw_root(codec.encode(samples.sample(cls, version)))
    assert root.get(V3_REFERENCE[cls]) == REQUEST_MESSAGE_ID
    assert root.get("ReferenceMessageID") is None
    assert root.get("Result") == "Accepted"


@pytest.mark.parametrize("cls", samples.RESPONSE_CLASSES, ids=lambda cls: cls.xml_name)
def test_draft_response_uses_reference_message_id(cls: type[PayloadResponse]) -> None:
    root = raw_root(codec.encode(samples.sample(cls, DRAFT)))
    assert root.get("ReferenceMessageID") == REQUEST_MESSAGE_ID
    assert root.get("Result") == "Accepted"
    assert not set(root.attrib) & set(V3_REFERENCE.values())


@pytest.mark.parametrize("cls", list(V3_REFERENCE), ids=lambda cls: cls.xml_name)
def test_3x_reference_attribute_written_by_hand_is_read(cls: type[PayloadResponse]) -> None:
    message = samples.sample(cls, "3.0.0")
    data = codec.encode(message).replace(
        REQUEST_MESSAGE_ID.encode(), b"01234567-89AB-CDEF-0123-456789ABCDEF"
    )
    decoded = codec.decode(data)
    assert isinstance(decoded, cls)
    assert decoded.reference_message_id == "01234567-89AB-CDEF-0123-456789ABCDEF"


@v3_params
def test_3x_test_message_response_carries_metadata_only(version: str) -> None:
    root = raw_root(codec.encode(samples.make_test_message_response(version)))
    assert set(root.attrib) == METADATA_ATTRIBUTES


@v3_params
def test_3x_test_message_response_reads_as_accepted_without_reference(version: str) -> None:
    decoded = codec.decode(f"<TestMessageResponse {header(version)}/>".encode())
    assert isinstance(decoded, TestMessageResponse)
    assert decoded.accepted
    assert decoded.rejection_reason is None
    assert decoded.reference_message_id == ""


@v3_params
def test_3x_test_message_response_drops_result_and_reference(version: str) -> None:
    # Documented in TestMessageResponse: 3.x has no Result, so a rejection cannot be
    # expressed; the codec drops it rather than writing a schema-invalid message.
    message = samples.make_test_message_response(
        version,
        result=Result.REJECTED,
        rejection_reason="Unknown SenderDomain (message)",
        reference_message_id=REQUEST_MESSAGE_ID,
    )
    root = raw_root(codec.encode(message))
    assert set(root.attrib) == METADATA_ATTRIBUTES


def test_draft_test_message_response_carries_result_and_reference() -> None:
    message = samples.make_test_message_response(
        DRAFT, result=Result.REJECTED, rejection_reason="Barred Sender"
    )
    root = raw_root(codec.encode(message))
    assert root.get("Result") == "Rejected"
    assert root.get("RejectionReason") == "Barred Sender"
    assert root.get("ReferenceMessageID") == REQUEST_MESSAGE_ID
    assert round_trip(message) == message


@response_with_result_params
def test_rejected_response_round_trips(cls: type[PayloadResponse], version: str) -> None:
    message = samples.sample(
        cls, version, result=Result.REJECTED, rejection_reason="Duplicate Identifier"
    )
    decoded = round_trip(message)
    assert isinstance(decoded, PayloadResponse)
    assert decoded.result is Result.REJECTED
    assert not decoded.accepted
    assert decoded == message


# ============================================================================================
# Escaping
# ============================================================================================

AWKWARD_ADDRESSES = [
    pytest.param(samples.EA1_SPEC_EXAMPLE, id="spec-example-amp-hash"),
    pytest.param('ea1.2024-01.test.example:<cp>&"1"', id="lt-gt-amp-quote"),
    pytest.param("ea1.2024-01.test.example:cp\t1's", id="tab-apostrophe"),
    pytest.param("ea1.2024-01.test.example:&amp;&#10;", id="entity-lookalikes"),
    pytest.param("ea1.2024-01.test.example:  two  spaces ", id="spaces-kept"),
]


@pytest.mark.parametrize("address", AWKWARD_ADDRESSES)
@version_params
def test_entity_address_with_markup_characters_round_trips(address: str, version: str) -> None:
    message = samples.make_dso_portfolio_query(version, entity_address=address)
    data = codec.encode(message)
    # Any XML reader, not only our decoder, must see the same value.
    assert raw_root(data).get("EntityAddress") == address
    assert codec.decode(data) == message


@pytest.mark.parametrize("address", AWKWARD_ADDRESSES)
def test_awkward_addresses_round_trip_in_nested_elements(address: str) -> None:
    dpu = samples.make_dso_portfolio_update()
    dpu_point = dataclasses.replace(
        dpu.congestion_points[0],
        entity_address=address,
        connections=(DSOPortfolioUpdateConnection(address, samples.START),),
    )
    dpqr = samples.make_dso_portfolio_query_response()
    assert dpqr.congestion_point is not None
    dpqr_point = dataclasses.replace(
        dpqr.congestion_point,
        entity_address=address,
        connections=(DSOPortfolioQueryConnection(address, samples.AGR_DOMAIN),),
    )
    apqr = samples.make_agr_portfolio_query_response()
    view = apqr.dso_views[0]
    portfolio = view.dso_portfolios[0]
    apqr_point = dataclasses.replace(
        portfolio.congestion_points[0],
        entity_address=address,
        connections=(AGRPortfolioQueryConnection(address),),
    )
    apqr_view = dataclasses.replace(
        view,
        dso_portfolios=(dataclasses.replace(portfolio, congestion_points=(apqr_point,)),),
        connections=(AGRPortfolioQueryConnection(address),),
    )
    messages: list[PayloadMessage] = [
        dataclasses.replace(dpu, congestion_points=(dpu_point,)),
        dataclasses.replace(dpqr, congestion_point=dpqr_point),
        samples.make_agr_portfolio_update(
            connections=(AGRPortfolioUpdateConnection(address, samples.START),)
        ),
        dataclasses.replace(apqr, dso_views=(apqr_view,)),
    ]
    for message in messages:
        data = codec.encode(message)
        addresses = {
            e.get("EntityAddress") for e in raw_root(data).iter() if e.get("EntityAddress")
        }
        assert addresses == {address}
        assert codec.decode(data) == message


REJECTION_REASONS = [
    pytest.param('Period out of bounds: "2024-05-01" < today & > 7 days', id="amp-lt-gt-quote"),
    pytest.param("Invalid Message;\tline 1\nline 2\r\nline 3", id="tab-newline-crlf"),
    pytest.param("  leading and trailing spaces  ", id="spaces"),
    pytest.param("Überlast 50 % ✓", id="non-ascii"),
    pytest.param("", id="empty-but-present"),
]


@pytest.mark.parametrize("reason", REJECTION_REASONS)
@version_params
def test_rejection_reason_round_trips_exactly(reason: str, version: str) -> None:
    message = samples.make_dso_portfolio_update_response(
        version, result=Result.REJECTED, rejection_reason=reason
    )
    data = codec.encode(message)
    assert raw_root(data).get("RejectionReason") == reason
    assert codec.decode(data) == message


def test_newline_in_entity_address_is_refused_not_silently_changed() -> None:
    # The schema's '.' does not match a line break; such an address cannot be sent.
    message = samples.make_dso_portfolio_query(entity_address="ea1.2024-01.test.example:a\nb")
    with pytest.raises(InvalidOutbound, match="EntityAddress"):
        codec.encode(message)


# ============================================================================================
# Optional attributes and elements: absent vs present
# ============================================================================================


def test_dso_portfolio_update_optional_attributes() -> None:
    message = samples.make_dso_portfolio_update()
    root = raw_root(codec.encode(message))
    full, bare = root  # the sample's first congestion point has every optional attribute
    assert full.get("EndPeriod") == "2024-12-31"
    assert full.get("IntradayRedispatchBy") == "AGR"
    assert "EndPeriod" not in bare.attrib
    assert "IntradayRedispatchBy" not in bare.attrib
    assert full[0].get("EndPeriod") == "2024-12-31"
    assert "EndPeriod" not in full[1].attrib

    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, DSOPortfolioUpdate)
    first, second = decoded.congestion_points
    assert (first.end_period, first.intraday_redispatch_by) == (samples.END, RedispatchBy.AGR)
    assert (second.end_period, second.intraday_redispatch_by) == (None, None)
    assert [c.end_period for c in first.connections] == [samples.END, None]


@pytest.mark.parametrize("sizes", [(1,), (3, 1, 250, 7)], ids=["one-cp", "four-cps"])
@pytest.mark.parametrize("end_on_last", [False, True], ids=["no-ends", "one-end"])
def test_dso_portfolio_update_keeps_connections_with_their_congestion_point(
    sizes: tuple[int, ...], end_on_last: bool
) -> None:
    # Connections are read column-wise when none has an EndPeriod, row by row otherwise;
    # both must hand each congestion point exactly its own connections, in order.
    points = []
    serial = 0
    for index, size in enumerate(sizes):
        connections = []
        for _ in range(size):
            serial += 1
            connections.append(
                DSOPortfolioUpdateConnection(
                    f"ean.{871685900000000000 + serial}", samples.START + timedelta(days=serial)
                )
            )
        if end_on_last and index == len(sizes) - 1:
            connections[-1] = connections[-1]._replace(end_period=samples.END)
        points.append(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ea1.2007-11.net.example-grid:cp-{index}",
                start_period=samples.START,
                mutex_offers_supported=bool(index % 2),
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(connections),
            )
        )
    message = samples.make_dso_portfolio_update(congestion_points=tuple(points))
    decoded = round_trip(message)
    assert decoded == message
    assert isinstance(decoded, DSOPortfolioUpdate)
    assert [len(cp.connections) for cp in decoded.congestion_points] == list(sizes)


@version_params
def test_dso_portfolio_query_response_without_congestion_point(version: str) -> None:
    message = samples.make_dso_portfolio_query_response(
        version,
        result=Result.REJECTED,
        rejection_reason="Unknown congestion point",
        congestion_point=None,
    )
    data = codec.encode(message)
    assert len(raw_root(data)) == 0
    assert codec.decode(data) == message


def test_agr_domain_absent_vs_present() -> None:
    message = samples.make_dso_portfolio_query_response()
    root = raw_root(codec.encode(message))
    assert [c.get("AGR-Domain") for c in root[0]] == [
        samples.AGR_DOMAIN,
        None,
        samples.AGR2_DOMAIN,
    ]
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, DSOPortfolioQueryResponse)
    assert decoded.congestion_point is not None
    assert decoded.congestion_point.connections[1] == DSOPortfolioQueryConnection(samples.EAN_2)


def test_rejection_reason_absent_vs_empty() -> None:
    absent = samples.make_agr_portfolio_update_response(rejection_reason=None)
    empty = samples.make_agr_portfolio_update_response(rejection_reason="")
    assert "RejectionReason" not in raw_root(codec.encode(absent)).attrib
    assert raw_root(codec.encode(empty)).get("RejectionReason") == ""
    assert round_trip(absent) == absent
    assert round_trip(empty) == empty


def test_agr_portfolio_query_response_views_with_and_without_loose_connections() -> None:
    message = samples.make_agr_portfolio_query_response()
    view = message.dso_views[0]
    bare_view = AGRPortfolioQueryDSOView(dso_portfolios=view.dso_portfolios[:1])
    message = dataclasses.replace(message, dso_views=(view, bare_view))
    root = raw_root(codec.encode(message))
    assert [child.tag for child in root[0]] == ["DSO-Portfolio", "DSO-Portfolio", "Connection"]
    assert [child.tag for child in root[1]] == ["DSO-Portfolio"]
    assert round_trip(message) == message


def test_agr_portfolio_update_connection_end_period_absent_vs_present() -> None:
    message = samples.make_agr_portfolio_update()
    root = raw_root(codec.encode(message))
    assert [c.get("EndPeriod") for c in root] == ["2024-12-31", None]
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, AGRPortfolioUpdate)
    assert [c.end_period for c in decoded.connections] == [samples.END, None]


# ============================================================================================
# Reading XML written by other implementations
# ============================================================================================


def test_decode_hand_written_message_in_another_lexical_style() -> None:
    data = (
        "\ufeff<?xml version='1.0' encoding='utf-8'?>\n"
        "<!-- written by another implementation -->\n"
        "<?xml-stylesheet href='x.xsl'?>\n"
        "<DSOPortfolioQuery\n"
        "    EntityAddress = 'ea1.2013-11.info.usef.test:001:002.090807002a&amp;b#'\n"
        "\tPeriod='2024-05-02' TimeZone=\"Europe/Amsterdam\"\n"
        f"    ConversationID='{samples.CONVERSATION_ID}' MessageID='{samples.MESSAGE_ID}'\n"
        "    TimeStamp='2024-05-01T10:15:30.250+02:00' RecipientDomain='cro.example.com'\n"
        "    SenderDomain='dso.example-grid.nl' Version='3.1.0'  ><!-- no content -->"
        "</DSOPortfolioQuery >\n"
        "<!-- trailing comment -->\n"
    ).encode()
    assert codec.decode(data) == samples.make_dso_portfolio_query(
        entity_address=samples.EA1_SPEC_EXAMPLE
    )


def test_decode_children_separated_by_whitespace_and_comments() -> None:
    message = samples.make_agr_portfolio_query_response()
    data = codec.encode(message)
    for tag in (b"<DSO-View>", b"<DSO-Portfolio ", b"<CongestionPoint ", b"<Connection "):
        data = data.replace(tag, b"\n  <!-- x -->\n  " + tag)
    data = data.replace(b"/>", b"/>\n  <?pi x?>\n")
    assert codec.decode(data) == message


@pytest.mark.parametrize(
    "period",
    ["2024-05-02", "2024-05-02Z", "2024-05-02+02:00", "2024-05-02-11:00"],
    ids=["plain", "utc-suffix", "plus-offset", "minus-offset"],
)
@version_params
def test_period_with_time_zone_suffix_is_the_calendar_day(period: str, version: str) -> None:
    data = (
        f'<AGRPortfolioQuery {header(version)} TimeZone="Europe/Amsterdam" Period="{period}"/>'
    ).encode()
    decoded = codec.decode(data)
    assert isinstance(decoded, AGRPortfolioQuery)
    assert decoded.period == date(2024, 5, 2)


@v3_params
def test_3x_time_stamp_without_offset_is_read_as_utc(version: str) -> None:
    decoded = codec.decode(
        f"<TestMessage {header(version, TimeStamp='2024-05-01T10:15:30')}/>".encode()
    )
    assert decoded.time_stamp == datetime(2024, 5, 1, 10, 15, 30, tzinfo=UTC)
    assert decoded.time_stamp is not None and decoded.time_stamp.utcoffset() == timedelta(0)


def test_draft_time_stamp_without_offset_is_refused() -> None:
    data = f"<TestMessage {header(DRAFT, TimeStamp='2024-05-01T10:15:30')}/>".encode()
    with pytest.raises(InvalidXml, match="TimeStamp"):
        codec.decode(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T08:15:30Z", datetime(2024, 5, 1, 8, 15, 30, tzinfo=UTC)),
        (
            "2024-05-01T03:15:30-05:00",
            datetime(2024, 5, 1, 3, 15, 30, tzinfo=timezone(timedelta(hours=-5))),
        ),
        (
            "2024-05-01T10:15:30.5+14:00",
            datetime(2024, 5, 1, 10, 15, 30, 500000, tzinfo=timezone(timedelta(hours=14))),
        ),
        # Nanoseconds (allowed by the draft's pattern) are cut to Python's microseconds.
        (
            "2024-05-01T10:15:30.123456789+02:00",
            datetime(2024, 5, 1, 10, 15, 30, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
    ids=["z", "negative-offset", "one-fraction-digit", "nine-fraction-digits"],
)
@version_params
def test_time_stamp_forms(text: str, expected: datetime, version: str) -> None:
    decoded = codec.decode(f"<TestMessage {header(version, TimeStamp=text)}/>".encode())
    assert decoded.time_stamp == expected
    assert decoded.time_stamp is not None
    assert decoded.time_stamp.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("0", False), ("true", True), ("false", False)],
)
def test_boolean_lexical_forms(text: str, expected: bool) -> None:
    message = samples.make_dso_portfolio_update()
    data = codec.encode(message).replace(
        b'MutexOffersSupported="true"', f'MutexOffersSupported="{text}"'.encode()
    )
    decoded = codec.decode(data)
    assert isinstance(decoded, DSOPortfolioUpdate)
    assert decoded.congestion_points[0].mutex_offers_supported is expected

    apqr = codec.encode(samples.make_agr_portfolio_query_response()).replace(
        b'MutexOffersSupported="true"', f'MutexOffersSupported="{text}"'.encode()
    )
    decoded_apqr = codec.decode(apqr)
    assert isinstance(decoded_apqr, AGRPortfolioQueryResponse)
    point = decoded_apqr.dso_views[0].dso_portfolios[0].congestion_points[0]
    assert point.mutex_offers_supported is expected


def test_uppercase_uuid_is_kept_as_written() -> None:
    message_id = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    decoded = codec.decode(f"<TestMessage {header(MessageID=message_id)}/>".encode())
    assert decoded.message_id == message_id


# ============================================================================================
# Encode refuses
# ============================================================================================

METADATA_FIELDS = ["version", "sender_domain", "recipient_domain", "message_id", "conversation_id"]


@pytest.mark.parametrize("field", [*METADATA_FIELDS, "time_stamp"])
def test_encode_refuses_a_message_with_a_metadata_field_missing(
    field: str, sample_message: PayloadMessage
) -> None:
    empty: Any = None if field == "time_stamp" else ""
    incomplete = dataclasses.replace(sample_message, **{field: empty})
    with pytest.raises(IncompleteMessage) as caught:
        codec.encode(incomplete)
    assert field in str(caught.value)
    assert sample_message.xml_name in str(caught.value)
    for other in METADATA_FIELDS:
        if other != field:
            assert other not in str(caught.value)


def test_encode_names_every_missing_metadata_field() -> None:
    with pytest.raises(IncompleteMessage) as caught:
        codec.encode(TestMessage())
    for field in [*METADATA_FIELDS, "time_stamp"]:
        assert field in str(caught.value)


def test_encode_refuses_a_naive_time_stamp() -> None:
    message = samples.make_test_message(time_stamp=datetime(2024, 5, 1, 10, 15, 30))
    with pytest.raises(IncompleteMessage, match="timezone-aware"):
        codec.encode(message)
    with pytest.raises(IncompleteMessage, match="timezone-aware"):
        codec.encode(message, validate=False)


@response_with_result_params
def test_encode_refuses_a_response_without_reference(
    cls: type[PayloadResponse], version: str
) -> None:
    message = samples.sample(cls, version, reference_message_id="")
    with pytest.raises(IncompleteMessage, match="reference_message_id"):
        codec.encode(message)


@pytest.mark.parametrize(
    "address",
    ["ea2.2024-01.test.example:cp1", "ean.12345", "EAN.871685900012636543", "ea1.2024-01.x"],
    ids=["ea2-scheme", "ean-too-short", "uppercase-scheme", "ea1-without-colon"],
)
def test_encode_refuses_a_malformed_entity_address(address: str) -> None:
    message = samples.make_dso_portfolio_query(entity_address=address)
    with pytest.raises(InvalidOutbound, match="EntityAddress") as caught:
        codec.encode(message)
    # Our own mistake: no HTTP status that could be answered to a peer as its fault.
    assert not isinstance(caught.value, TransportError)
    # Without validation the bytes go out as they are, and the receiver refuses them.
    data = codec.encode(message, validate=False)
    with pytest.raises(InvalidXml, match="EntityAddress"):
        codec.decode(data)


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"sender_domain": "DSO.example.com"}, "SenderDomain"),
        ({"recipient_domain": "localhost"}, "RecipientDomain"),
        ({"message_id": "not-a-uuid"}, "MessageID"),
        ({"version": "3.1"}, "Version"),
        ({"time_zone": "UTC"}, "TimeZone"),
        (
            {"time_stamp": datetime(2024, 5, 1, tzinfo=timezone(timedelta(seconds=30)))},
            "TimeStamp",
        ),
    ],
    ids=[
        "uppercase-domain",
        "dotless-domain",
        "bad-uuid",
        "two-part-version",
        "utc-zone",
        "second-offset",
    ],
)
def test_encode_validates_metadata_values(changes: dict[str, Any], attribute: str) -> None:
    with pytest.raises(InvalidOutbound, match=attribute):
        codec.encode(samples.make_agr_portfolio_query(**changes))


@pytest.mark.parametrize(
    "character", ["\x00", "\x1b", "\ufffe"], ids=["nul", "escape", "non-character-fffe"]
)
@pytest.mark.parametrize("field", ["entity_address", "rejection_reason"])
def test_encode_refuses_characters_xml_cannot_hold(character: str, field: str) -> None:
    message = samples.make_dso_portfolio_query_response(
        result=Result.REJECTED, rejection_reason="Invalid Message"
    )
    if field == "entity_address":
        assert message.congestion_point is not None
        point = dataclasses.replace(
            message.congestion_point,
            entity_address=f"ea1.2024-01.test.example:cp{character}1",
        )
        message = dataclasses.replace(message, congestion_point=point)
    else:
        message = dataclasses.replace(message, rejection_reason=f"Invalid{character}Message")
    with pytest.raises(InvalidOutbound):
        codec.encode(message)


def test_encode_refuses_a_lone_surrogate_as_invalid_outbound() -> None:
    message = samples.make_dso_portfolio_update_response(
        result=Result.REJECTED, rejection_reason="Invalid Message \udcff"
    )
    with pytest.raises(InvalidOutbound):
        codec.encode(message)


def test_rejected_agr_portfolio_query_response_needs_a_dso_view() -> None:
    # The official schemas require at least one DSO-View even in a rejection, so the model's
    # default (no views) cannot be sent; the codec says so instead of sending invalid XML.
    message = samples.make_agr_portfolio_query_response(
        result=Result.REJECTED, rejection_reason="Period out of bounds", dso_views=()
    )
    with pytest.raises(InvalidOutbound, match="DSO-View"):
        codec.encode(message)


def test_encode_refuses_a_structure_the_schema_forbids() -> None:
    # A DSOPortfolioUpdate needs at least one congestion point.
    with pytest.raises(InvalidOutbound, match="CongestionPoint"):
        codec.encode(samples.make_dso_portfolio_update(congestion_points=()))


# ============================================================================================
# Decode refuses
# ============================================================================================


@pytest.mark.parametrize(
    "root",
    ["A-Prognosis", "SignedMessage", "testmessage", "Message", "PayloadMessage", "FlexMessage"],
)
def test_decode_refuses_unknown_root_elements(root: str) -> None:
    with pytest.raises(InvalidXml) as caught:
        codec.decode(f"<{root} {header()}/>".encode())
    assert root in str(caught.value)
    assert caught.value.status == 400


def test_decode_refuses_a_message_type_in_a_namespace() -> None:
    data = f'<TestMessage xmlns="urn:example:not-uftp" {header()}/>'.encode()
    with pytest.raises(InvalidXml, match="not-uftp"):
        codec.decode(data)


SCHEMA_INVALID = [
    pytest.param(f"<TestMessage {header()} Extra='1'/>", "Extra", id="unknown-attribute"),
    pytest.param(
        "<TestMessage " + header().replace(f'MessageID="{samples.MESSAGE_ID}" ', "") + "/>",
        "MessageID",
        id="missing-message-id",
    ),
    pytest.param(
        f"<TestMessage {header(SenderDomain='dso_1.example.com')}/>",
        "SenderDomain",
        id="bad-domain",
    ),
    pytest.param(
        f"<TestMessage {header(ConversationID='{6ba7b810-9dad-11d1-80b4-00c04fd430c8}')}/>",
        "ConversationID",
        id="braced-uuid",
    ),
    pytest.param(
        f"<TestMessage {header(TimeStamp='2024-05-01 10:15:30Z')}/>",
        "TimeStamp",
        id="space-in-time-stamp",
    ),
    pytest.param(
        f"<TestMessage {header()}><Extra/></TestMessage>",
        "Element content",
        id="unexpected-child",
    ),
    pytest.param(f"<TestMessage {header()}>text</TestMessage>", "content", id="text-content"),
    pytest.param(
        f'<DSOPortfolioUpdate {header()} TimeZone="Europe/Amsterdam"/>',
        "CongestionPoint",
        id="missing-congestion-point",
    ),
    pytest.param(
        f'<AGRPortfolioQuery {header()} TimeZone="Europe/Amsterdam" Period="2024-02-30"/>',
        "Period",
        id="february-30",
    ),
    pytest.param(
        f'<AGRPortfolioQuery {header()} TimeZone="Asia/Tokyo" Period="2024-05-02"/>',
        "TimeZone",
        id="time-zone-outside-pattern",
    ),
    pytest.param(
        f'<AGRPortfolioUpdateResponse {header()} Result="OK"'
        f' AGRPortfolioUpdateMessageID="{REQUEST_MESSAGE_ID}"/>',
        "Result",
        id="bad-result",
    ),
    pytest.param(
        f'<AGRPortfolioUpdateResponse {header()} Result="Accepted"'
        f' ReferenceMessageID="{REQUEST_MESSAGE_ID}"/>',
        "AGRPortfolioUpdateMessageID",
        id="3x-response-with-draft-reference",
    ),
    pytest.param(
        f'<AGRPortfolioUpdateResponse {header(DRAFT)} Result="Accepted"'
        f' AGRPortfolioUpdateMessageID="{REQUEST_MESSAGE_ID}"/>',
        "ReferenceMessageID",
        id="draft-response-with-3x-reference",
    ),
    pytest.param(
        f'<TestMessageResponse {header()} Result="Accepted"/>',
        "Result",
        id="3x-test-message-response-with-result",
    ),
    pytest.param(
        f"<TestMessageResponse {header(DRAFT)}/>",
        "Result",
        id="draft-test-message-response-without-result",
    ),
]


@pytest.mark.parametrize(("xml", "named"), SCHEMA_INVALID)
def test_decode_refuses_schema_invalid_messages_naming_the_problem(xml: str, named: str) -> None:
    with pytest.raises(InvalidXml) as caught:
        codec.decode(xml.encode())
    assert "schema" in str(caught.value)
    assert named in str(caught.value)
    assert caught.value.status == 400


UNREPRESENTABLE = [
    pytest.param(f"<TestMessage {header(TimeStamp='2024-05-01T24:00:00Z')}/>", id="hour-24-3x"),
    pytest.param(
        f"<TestMessage {header(DRAFT, TimeStamp='2024-05-01T24:00:00+02:00')}/>",
        id="hour-24-draft",
    ),
    pytest.param(
        f"<TestMessage {header(TimeStamp='12024-05-01T10:00:00Z')}/>", id="five-digit-year-stamp"
    ),
    pytest.param(
        f"<TestMessage {header(TimeStamp='-0044-03-15T12:00:00Z')}/>", id="negative-year-stamp"
    ),
    pytest.param(
        f'<AGRPortfolioQuery {header()} TimeZone="Europe/Amsterdam" Period="12024-05-02"/>',
        id="five-digit-year-period",
    ),
    pytest.param(
        f'<AGRPortfolioQuery {header(DRAFT)} TimeZone="Europe/Amsterdam" Period="10000-01-01Z"/>',
        id="five-digit-year-period-draft",
    ),
    pytest.param(
        codec.encode(samples.make_agr_portfolio_update())
        .decode()
        .replace('EndPeriod="2024-12-31"', 'EndPeriod="99999-12-31"'),
        id="five-digit-year-end-period",
    ),
]


@needs_official_xsd
@pytest.mark.parametrize("xml", UNREPRESENTABLE)
def test_unrepresentable_values_are_schema_valid(xml: str) -> None:
    """The premise of the test below: the official schema itself accepts these values."""
    version = raw_root(xml.encode()).get("Version")
    assert version is not None
    assert official_schema(version).validate(raw_root(xml.encode()))


@pytest.mark.parametrize("xml", UNREPRESENTABLE)
def test_decode_refuses_schema_valid_but_unrepresentable_values(xml: str) -> None:
    data = xml.encode()
    with pytest.raises(InvalidXml) as caught:
        codec.decode(data)
    assert not isinstance(caught.value, ValueError)
    assert caught.value.status == 400
