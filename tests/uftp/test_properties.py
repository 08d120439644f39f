"""Properties of the codec and the envelope, checked with generated inputs.

(a) Any valid message survives the trip: decode(encode(m)) == m, for every Version, with
    entity addresses drawn from the schema's own pattern (markup characters included).
(b) Whatever bytes arrive, `codec.decode` and `envelope.parse_envelope` either return or
    raise a `UftpError` (which the server maps to an HTTP status): never anything else.
    Random bytes rarely get past the XML parser, so valid encodings are also mutated (bit
    flips, truncation, insertion) to reach the schema and the model-building code.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_keypair

from adapter.uftp import codec, envelope
from adapter.uftp.errors import UftpError
from adapter.uftp.messages import (
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
    RedispatchBy,
    Result,
    Role,
    TestMessage,
)

from . import samples

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------------------
# Valid values, following the schema's patterns
# --------------------------------------------------------------------------------------------

#: Printable characters an entity address may hold: all of printable ASCII (so & < > " '
#: and the space), a tab (the schema's '.' matches it), and a few non-ASCII characters.
ADDRESS_CHARACTERS = st.characters(
    min_codepoint=0x20, max_codepoint=0x7E, include_characters="\t\u00e9\u20ac\u2713\u00a0"
)


def ea1_addresses(max_part: int) -> st.SearchStrategy[str]:
    """`ea1\\.[0-9]{4}-[0-9]{2}\\..{1,244}:.{1,244}`, parts capped at `max_part`."""
    part = st.text(ADDRESS_CHARACTERS, min_size=1, max_size=max_part)
    return st.builds(
        lambda year, month, authority, local: f"ea1.{year:04d}-{month:02d}.{authority}:{local}",
        st.integers(0, 9999),
        st.integers(0, 99),  # the pattern checks digits only, not the month's range
        part,
        part,
    )


ean_addresses = st.text(string.digits, min_size=12, max_size=34).map(lambda d: f"ean.{d}")
#: Addresses inside messages: short parts keep nested messages quick to generate.
entity_addresses = st.one_of(ea1_addresses(max_part=24), ean_addresses)
#: Addresses up to the pattern's full length, for the one-address test.
long_entity_addresses = st.one_of(ea1_addresses(max_part=244), ean_addresses)

# InternetDomainType: ([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}  (built, not st.from_regex: faster)
_label = st.lists(
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6), min_size=1, max_size=3
).map("-".join)
domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=3),
    st.text(string.ascii_lowercase, min_size=2, max_size=6),
)
# TimeZoneNameType: (Africa|America|Australia|Europe|Pacific)/[a-zA-Z0-9_/]{3,}
time_zones = st.builds(
    lambda area, place: f"{area}/{place}",
    st.sampled_from(["Africa", "America", "Australia", "Europe", "Pacific"]),
    st.text(string.ascii_letters + string.digits + "_/", min_size=3, max_size=30),
)
uuids = st.builds(
    lambda value, upper: str(value).upper() if upper else str(value), st.uuids(), st.booleans()
)
versions = st.sampled_from(samples.VERSIONS)
# xs:dateTime offsets lie within +-14:00 and are whole minutes.
offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


def _in_utc_range(value: datetime) -> bool:
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


# Instants that exist: the decoder refuses a local time of year 1 whose UTC falls in year 0
# (or one of 9999 that falls in 10000), since no datetime can hold it.
time_stamps = st.datetimes(timezones=offsets).filter(_in_utc_range)
dates = st.dates()
redispatch = st.sampled_from(RedispatchBy)

#: Any XML character, line ends and tabs included (RejectionReason is a plain xs:string).
xml_text = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Cn"), include_characters="\t\n\r")
)


def small_tuples(
    element: st.SearchStrategy[Any], min_size: int = 1, max_size: int = 3
) -> st.SearchStrategy[Any]:
    return st.lists(element, min_size=min_size, max_size=max_size).map(tuple)


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "version": draw(versions),
        "sender_domain": draw(domains),
        "recipient_domain": draw(domains),
        "time_stamp": draw(time_stamps),
        "message_id": draw(uuids),
        "conversation_id": draw(uuids),
    }


@st.composite
def response_metadata(draw: st.DrawFn) -> dict[str, Any]:
    return {
        **draw(metadata()),
        "result": draw(st.sampled_from(Result)),
        "rejection_reason": draw(st.none() | xml_text),
        "reference_message_id": draw(uuids),
    }


@st.composite
def dso_portfolio_updates(draw: st.DrawFn) -> DSOPortfolioUpdate:
    connection = st.builds(DSOPortfolioUpdateConnection, entity_addresses, dates, st.none() | dates)
    point = st.builds(
        DSOPortfolioUpdateCongestionPoint,
        entity_address=entity_addresses,
        start_period=dates,
        end_period=st.none() | dates,
        mutex_offers_supported=st.booleans(),
        day_ahead_redispatch_by=redispatch,
        intraday_redispatch_by=st.none() | redispatch,
        connections=small_tuples(connection),
    )
    return DSOPortfolioUpdate(
        **draw(metadata()), time_zone=draw(time_zones), congestion_points=draw(small_tuples(point))
    )


@st.composite
def agr_portfolio_updates(draw: st.DrawFn) -> AGRPortfolioUpdate:
    connection = st.builds(AGRPortfolioUpdateConnection, entity_addresses, dates, st.none() | dates)
    return AGRPortfolioUpdate(
        **draw(metadata()), time_zone=draw(time_zones), connections=draw(small_tuples(connection))
    )


@st.composite
def dso_portfolio_query_responses(draw: st.DrawFn) -> DSOPortfolioQueryResponse:
    connection = st.builds(DSOPortfolioQueryConnection, entity_addresses, st.none() | domains)
    point = st.builds(
        DSOPortfolioQueryCongestionPoint,
        entity_address=entity_addresses,
        connections=small_tuples(connection),
    )
    return DSOPortfolioQueryResponse(
        **draw(response_metadata()),
        time_zone=draw(time_zones),
        period=draw(dates),
        congestion_point=draw(st.none() | point),
    )


@st.composite
def agr_portfolio_query_responses(draw: st.DrawFn) -> AGRPortfolioQueryResponse:
    connection = st.builds(AGRPortfolioQueryConnection, entity_addresses)
    point = st.builds(
        AGRPortfolioQueryCongestionPoint,
        entity_address=entity_addresses,
        mutex_offers_supported=st.booleans(),
        day_ahead_redispatch_by=redispatch,
        intraday_redispatch_by=st.none() | redispatch,
        connections=small_tuples(connection, max_size=2),
    )
    portfolio = st.builds(
        AGRPortfolioQueryDSOPortfolio,
        dso_domain=domains,
        congestion_points=small_tuples(point, max_size=2),
    )
    view = st.builds(
        AGRPortfolioQueryDSOView,
        dso_portfolios=small_tuples(portfolio, max_size=2),
        connections=small_tuples(connection, min_size=0, max_size=2),
    )
    return AGRPortfolioQueryResponse(
        **draw(response_metadata()),
        time_zone=draw(time_zones),
        period=draw(dates),
        dso_views=draw(small_tuples(view, max_size=2)),
    )


@st.composite
def simple_messages(draw: st.DrawFn) -> PayloadMessage:
    """The message types without business content, and the two queries."""
    kind = draw(st.sampled_from(["test", "dpq", "apq", "dpu_r", "apu_r"]))
    if kind == "test":
        return TestMessage(**draw(metadata()))
    if kind == "dpq":
        return DSOPortfolioQuery(
            **draw(metadata()),
            time_zone=draw(time_zones),
            period=draw(dates),
            entity_address=draw(entity_addresses),
        )
    if kind == "apq":
        return AGRPortfolioQuery(**draw(metadata()), time_zone=draw(time_zones), period=draw(dates))
    if kind == "dpu_r":
        return DSOPortfolioUpdateResponse(**draw(response_metadata()))
    return AGRPortfolioUpdateResponse(**draw(response_metadata()))


valid_messages = st.one_of(
    dso_portfolio_updates(),
    agr_portfolio_updates(),
    dso_portfolio_query_responses(),
    agr_portfolio_query_responses(),
    simple_messages(),
)


# --------------------------------------------------------------------------------------------
# (a) Round trip
# --------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(valid_messages)
def test_any_valid_message_round_trips(message: PayloadMessage) -> None:
    decoded = codec.decode(codec.encode(message))
    assert decoded == message
    assert decoded.time_stamp is not None and message.time_stamp is not None
    assert decoded.time_stamp.utcoffset() == message.time_stamp.utcoffset()


@PROPERTY_SETTINGS
@given(long_entity_addresses, versions)
def test_any_entity_address_of_the_pattern_is_accepted_and_kept(address: str, version: str) -> None:
    message = samples.make_dso_portfolio_query(version, entity_address=address)
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, DSOPortfolioQuery)
    assert decoded.entity_address == address


# --------------------------------------------------------------------------------------------
# (b) Anything in: a result or a UftpError out
# --------------------------------------------------------------------------------------------

_PUBLIC, _SECRET = crypto_sign_keypair()
SEED_MESSAGES = [
    codec.encode(message)
    for version in samples.VERSIONS
    for message in samples.all_samples(version).values()
]
SEED_ENVELOPES = [
    envelope.seal(data, _SECRET, samples.DSO_DOMAIN, Role.DSO) for data in SEED_MESSAGES[:10]
]
#: Fragments that move a document into another branch of the parser or the schema.
INTERESTING = [
    b"&",
    b"<",
    b">",
    b'"',
    b"'",
    b"=",
    b" ",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"<!--x-->",
    b"<!DOCTYPE x>",
    b"<![CDATA[x]]>",
    b"&#0;",
    b"&#x10FFFF;",
    b"&amp;",
    b"<a/>",
    b"</a>",
    b"24",
    b"99999",
    b"-",
    b"+14:00",
    b"Z",
    b"T",
    b"4.",
    b"3.",
    b"true",
    b"1",
]


def attempt(parse: Any, data: bytes) -> object | None:
    """`parse(data)`, with a UftpError as None; any other exception fails the test."""
    try:
        result: object = parse(data)
    except UftpError:
        return None
    return result


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "copy"]))
        position = draw(st.integers(0, len(data)))
        if operation == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.sampled_from(INTERESTING) | st.binary(max_size=8))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif operation == "copy":
            start = draw(st.integers(0, len(data)))
            data[position:position] = data[start : start + draw(st.integers(1, 64))]
    return bytes(data)


xmlish_bytes = st.text(
    st.sampled_from(list("<>/=\"' &;#!?-:.xmlTestMessageVrsion0123456789\n\t")), max_size=200
).map(str.encode)


@PROPERTY_SETTINGS
@given(st.binary(max_size=2048) | xmlish_bytes)
def test_decode_of_any_bytes_returns_or_raises_a_uftp_error(data: bytes) -> None:
    attempt(codec.decode, data)


@PROPERTY_SETTINGS
@given(st.binary(max_size=2048) | xmlish_bytes)
def test_parse_envelope_of_any_bytes_returns_or_raises_a_uftp_error(data: bytes) -> None:
    attempt(envelope.parse_envelope, data)


@PROPERTY_SETTINGS
@given(mutated(SEED_MESSAGES))
def test_decode_of_mutated_messages_returns_or_raises_a_uftp_error(data: bytes) -> None:
    result = attempt(codec.decode, data)
    if result is not None:
        # Whatever is accepted is a complete message, which encodes to the same message.
        assert isinstance(result, PayloadMessage)
        assert codec.decode(codec.encode(result)) == result


@PROPERTY_SETTINGS
@given(mutated(SEED_ENVELOPES))
def test_mutated_envelopes_are_refused_or_unseal_to_the_original(data: bytes) -> None:
    wrapped = attempt(envelope.parse_envelope, data)
    if wrapped is None:
        return
    assert isinstance(wrapped, envelope.SignedMessage)
    inner = attempt(lambda sealed: envelope.open_sealed(sealed, [_PUBLIC]), wrapped.sealed)
    if inner is not None:
        # The signature held, so whatever was changed did not touch the signed bytes.
        assert inner in SEED_MESSAGES


@PROPERTY_SETTINGS
@given(mutated(SEED_MESSAGES))
def test_unsealing_and_decoding_mutated_inner_messages(data: bytes) -> None:
    # The whole receive path for a correctly signed but broken inner message.
    document = envelope.seal(data, _SECRET, samples.DSO_DOMAIN, Role.DSO)
    sealed = envelope.parse_envelope(document).sealed
    assert envelope.open_sealed(sealed, [_PUBLIC]) == data
    attempt(codec.decode, data)


def test_seeds_are_valid() -> None:
    # Premise of the mutation tests: they start from messages that are accepted.
    for data in SEED_MESSAGES:
        assert isinstance(codec.decode(data), PayloadMessage)
    for document in SEED_ENVELOPES:
        assert envelope.open_sealed(envelope.parse_envelope(document).sealed, [_PUBLIC])
