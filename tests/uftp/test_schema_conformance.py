"""Conformance of the adapter's runtime UFTP schemas with the official Shapeshifter XSDs.

For every supported protocol version a corpus of sample messages (valid base samples plus
many mutations) is validated against both our self-contained runtime schema and the official
schema set; both must reach the same verdict on every sample.  Where the verdict is known in
advance (valid base samples, mutations that must break a message) it is asserted as well, so
the comparison cannot pass vacuously.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.official_xsd import needs_official_xsd

from .official import OFFICIAL_FILES, OFFICIAL_XSD_DIR, official_schema

OUR_XSD_DIR = Path(__file__).parents[2] / "adapter" / "uftp" / "schemas"

#: Every test here reads the official schemas but `test_our_schema_shape`, which is cheap to
#: skip with them: one mark for the module (tests/official_xsd.py).
pytestmark = needs_official_xsd

# Protocol version -> (official schema directory, our runtime schema file).
VERSIONS: dict[str, tuple[str, str]] = {
    "3.0.0": ("3.0.0", "3.0.0.xsd"),
    "3.1.0": ("3.1.0", "3.1.0.xsd"),
    "4.0.0": ("draft", "4.0.0.xsd"),
}
DRAFT = "4.0.0"

# The official entry files, one per role, each including the message sets that role
# exchanges; the union of what they include is the official schema our runtime schema
# mirrors (UFTP-agr-dso.xsd includes UFTP-metering.xsd in turn).
OFFICIAL_ENTRIES = ("UFTP-agr.xsd", "UFTP-cro.xsd", "UFTP-dso.xsd")

GLOBAL_ELEMENTS = {
    "SignedMessage",
    "TestMessage",
    "TestMessageResponse",
    "DSOPortfolioUpdate",
    "DSOPortfolioUpdateResponse",
    "DSOPortfolioQuery",
    "DSOPortfolioQueryResponse",
    "AGRPortfolioUpdate",
    "AGRPortfolioUpdateResponse",
    "AGRPortfolioQuery",
    "AGRPortfolioQueryResponse",
    "FlexRequest",
    "FlexRequestResponse",
    "FlexOffer",
    "FlexOfferResponse",
    "FlexOfferRevocation",
    "FlexOfferRevocationResponse",
    "FlexOrder",
    "FlexOrderResponse",
    "FlexReservationUpdate",
    "FlexReservationUpdateResponse",
    "D-Prognosis",
    "D-PrognosisResponse",
    "FlexSettlement",
    "FlexSettlementResponse",
    "Metering",
    "MeteringResponse",
}

# The 3.x reference attribute of each response type (the draft has ReferenceMessageID).
V3_REFERENCES = {
    "DSOPortfolioUpdateResponse": "DSOPortfolioUpdateResponseMessageID",
    "DSOPortfolioQueryResponse": "DSOPortfolioQueryMessageID",
    "AGRPortfolioUpdateResponse": "AGRPortfolioUpdateMessageID",
    "AGRPortfolioQueryResponse": "AGRPortfolioQueryMessageID",
    "FlexRequestResponse": "FlexRequestMessageID",
    "FlexOfferResponse": "FlexOfferMessageID",
    "FlexOfferRevocationResponse": "FlexOfferRevocationMessageID",
    "FlexOrderResponse": "FlexOrderMessageID",
    "FlexReservationUpdateResponse": "FlexReservationUpdateMessageID",
    "D-PrognosisResponse": "D-PrognosisMessageID",
    "FlexSettlementResponse": "FlexSettlementMessageID",
    "MeteringResponse": "MeteringMessageID",
}

XS = "{http://www.w3.org/2001/XMLSchema}"
FOREIGN_NS = "urn:example:not-uftp"


# --------------------------------------------------------------------------------------
# Sample model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    tag: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    children: tuple[Node, ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class Sample:
    id: str
    root: Node
    # True/False: the verdict is known and asserted; None: only parity is checked.
    expect_valid: bool | None


def el(tag: str, attrs: Mapping[str, str] | None = None, *children: Node) -> Node:
    return Node(tag, dict(attrs or {}), tuple(children))


def to_element(node: Node) -> etree._Element:
    element = etree.Element(node.tag, attrib=dict(node.attrs))
    element.text = node.text
    for child in node.children:
        element.append(to_element(child))
    return element


def serialize(node: Node) -> bytes:
    data: bytes = etree.tostring(to_element(node))
    return data


Path_ = tuple[int, ...]


def walk(node: Node, path: Path_ = (), sig: str = "") -> Iterator[tuple[Path_, str, Node]]:
    """Yield (index path, readable tag path, node) for every node, depth first."""
    sig = f"{sig}/{node.tag}" if sig else node.tag
    yield path, sig, node
    for index, child in enumerate(node.children):
        yield from walk(child, (*path, index), sig)


def unique_nodes(root: Node) -> Iterator[tuple[Path_, str, Node]]:
    """Like walk(), but only the first node for every readable tag path."""
    seen: set[str] = set()
    for path, sig, node in walk(root):
        if sig not in seen:
            seen.add(sig)
            yield path, sig, node


def update(root: Node, path: Path_, fn: Callable[[Node], Node]) -> Node:
    if not path:
        return fn(root)
    head, *rest = path
    children = list(root.children)
    children[head] = update(children[head], tuple(rest), fn)
    return replace(root, children=tuple(children))


def with_attr(node: Node, name: str, value: str) -> Node:
    return replace(node, attrs={**node.attrs, name: value})


def without_attr(node: Node, name: str) -> Node:
    return replace(node, attrs={k: v for k, v in node.attrs.items() if k != name})


def setting(name: str, value: str) -> Callable[[Node], Node]:
    return lambda node: with_attr(node, name, value)


def dropping(name: str) -> Callable[[Node], Node]:
    return lambda node: without_attr(node, name)


def without_children(tag: str) -> Callable[[Node], Node]:
    return lambda node: replace(node, children=tuple(c for c in node.children if c.tag != tag))


def with_children(fn: Callable[[tuple[Node, ...]], tuple[Node, ...]]) -> Callable[[Node], Node]:
    return lambda node: replace(node, children=fn(node.children))


# --------------------------------------------------------------------------------------
# Schema facts used to generate the corpus
# --------------------------------------------------------------------------------------

# Attributes that are optional wherever they occur.
OPTIONAL_ATTRS = {
    "EndPeriod",
    "IntradayRedispatchBy",
    "RejectionReason",
    "AGR-Domain",
    "Duration",
    "ServiceType",
    "Unsolicited",
    "BaselineReference",
    "MinActivationFactor",
    "ActivationFactor",
    "Penalty",
    "PowerDeficiency",
    "RequestedPower",
    "AvailablePower",
    "OfferedPower",
    "OrderedPower",
    "DisputeReason",
}
# (element, attribute): optional there, required elsewhere.
OPTIONAL_AT = {
    ("ISP", "Disposition"),  # of a FlexRequest; required in FlexOrderSettlementStatus
    ("FlexRequest", "ContractID"),
    ("FlexOffer", "ContractID"),
    ("FlexOffer", "FlexRequestMessageID"),
    ("FlexOffer", "D-PrognosisMessageID"),
    ("FlexOrder", "ContractID"),
    ("FlexOrder", "D-PrognosisMessageID"),
    ("FlexOrder", "OptionReference"),
    ("FlexOrderSettlement", "OrderReference"),
    ("FlexOrderSettlement", "ContractID"),
    ("FlexOrderSettlement", "D-PrognosisMessageID"),
    ("FlexOrderSettlementStatus", "OrderReference"),
    ("ContractSettlement", "ContractID"),
    ("Metering", "Currency"),
    # FlexSettlementType extends PayloadMessageResponseType in 3.x: RejectionReason is
    # optional there (and Result required) as on every response.
}


def is_optional(version: str, tag: str, attr: str) -> bool:
    """Whether `attr` of element `tag` is optional in the official schema of `version`."""
    if (tag, attr) == ("FlexOrder", "FlexOfferMessageID"):
        return version != "3.0.0"  # "Mandatory if Unsolicited=false" from 3.1.0 on
    return attr in OPTIONAL_ATTRS or (tag, attr) in OPTIONAL_AT


# (parent, child) groups with minOccurs=0; every other child group has minOccurs=1.
OPTIONAL_CHILDREN = {
    ("DSOPortfolioQueryResponse", "CongestionPoint"),
    ("DSO-View", "Connection"),
    ("D-PrognosisResponse", "FlexOrderStatus"),
}
# (parent, child) groups with maxOccurs=1; every other child group is unbounded.
SINGLE_CHILDREN = {("DSOPortfolioQueryResponse", "CongestionPoint")}

ATTR_KINDS: dict[str, str] = {
    "Version": "version",
    "SenderDomain": "domain",
    "RecipientDomain": "domain",
    "DSO-Domain": "domain",
    "AGR-Domain": "domain",
    "TimeStamp": "datetime",
    "MessageID": "uuid",
    "ConversationID": "uuid",
    "ReferenceMessageID": "uuid",
    "DSOPortfolioUpdateResponseMessageID": "uuid",
    "DSOPortfolioQueryMessageID": "uuid",
    "AGRPortfolioUpdateMessageID": "uuid",
    "AGRPortfolioQueryMessageID": "uuid",
    "EntityAddress": "ea",
    "StartPeriod": "date",
    "EndPeriod": "date",
    "Period": "date",
    "TimeZone": "tz",
    "MutexOffersSupported": "boolean",
    "DayAheadRedispatchBy": "redispatch",
    "IntradayRedispatchBy": "redispatch",
    "Result": "result",
    "SenderRole": "role",
    "Body": "base64",
    "RejectionReason": "string",
    "FlexRequestMessageID": "uuid",
    "FlexOfferMessageID": "uuid",
    "FlexOfferRevocationMessageID": "uuid",
    "D-PrognosisMessageID": "uuid",
    "ISP-Duration": "duration",
    "CongestionPoint": "ea",
    "Revision": "long",
    "ExpirationDateTime": "datetime",
    "ContractID": "string",
    "ServiceType": "string",
    "BaselineReference": "string",
    "OptionReference": "string",
    "Disposition": "available-requested",
    "MinPower": "integer",
    "MaxPower": "integer",
    "Power": "integer",
    "Start": "positive",
    "Duration": "positive",
    "Unsolicited": "boolean",
    "Currency": "currency",
    "Price": "amount",
    "MinActivationFactor": "factor",
    "ActivationFactor": "factor",
    "FlexOrderMessageID": "uuid",
    "FlexReservationUpdateMessageID": "uuid",
    "OrderReference": "string",
    "Reference": "string",
    "IsValidated": "boolean",
    "FlexSettlementMessageID": "uuid",
    "PeriodStart": "date",
    "PeriodEnd": "date",
    "Penalty": "amount",
    "NetSettlement": "amount",
    "BaselinePower": "integer",
    "OrderedFlexPower": "integer",
    "ActualPower": "integer",
    "DeliveredFlexPower": "integer",
    "PowerDeficiency": "integer",
    "ReservedPower": "integer",
    "RequestedPower": "integer",
    "AvailablePower": "integer",
    "OfferedPower": "integer",
    "OrderedPower": "integer",
    "DisputeReason": "string",
    "MeteringMessageID": "uuid",
    "EAN": "ean",
    "ProfileType": "profile",
    "Unit": "unit",
    "Value": "decimal",
}
# (readable path, attribute) -> kind, where the name alone does not tell.
ATTR_KINDS_AT: dict[tuple[str, str], str] = {
    # D-PrognosisISPType alone types these xs:integer, not xs:positiveInteger.
    ("D-Prognosis/ISP", "Start"): "integer",
    ("D-Prognosis/ISP", "Duration"): "integer",
    ("FlexSettlementResponse/FlexOrderSettlementStatus", "Disposition"): "accepted-disputed",
    ("Metering/Profile/ISP", "Start"): "integer",
}


def attr_kind(sig: str, attr: str) -> str:
    return ATTR_KINDS_AT.get((sig, attr)) or ATTR_KINDS[attr]


# Values that must be rejected for a kind, in every version.
BAD_VALUES: dict[str, list[tuple[str, str]]] = {
    "uuid": [
        ("too-short", "3f2504e0-4f89-11d3-9a0c-0305e82c330"),
        ("no-hyphens", "3f2504e04f8911d39a0c0305e82c3301"),
        ("non-hex", "3g2504e0-4f89-11d3-9a0c-0305e82c3301"),
        ("braces", "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}"),
        ("trailing-char", "3f2504e0-4f89-11d3-9a0c-0305e82c3301a"),
        ("leading-space", " 3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
        ("empty", ""),
    ],
    "domain": [
        ("uppercase", "DSO.example.com"),
        ("no-dot", "localhost"),
        ("one-letter-tld", "example.c"),
        ("numeric-tld", "example.123"),
        ("leading-hyphen", "-dso.example.com"),
        ("trailing-hyphen-label", "dso-.example.com"),
        ("double-dot", "dso..example.com"),
        ("trailing-dot", "dso.example.com."),
        ("underscore", "dso_1.example.com"),
        ("punycode-idn", "xn--bcher-kva.example"),
        ("with-port", "dso.example.com:443"),
        ("url", "https://dso.example.com"),
        ("empty", ""),
    ],
    "ea": [
        ("ean-11-digits", "ean.12345678901"),
        ("ean-35-digits", "ean." + "1" * 35),
        ("ean-letter", "ean.87168590001263654a"),
        ("ean-uppercase-scheme", "EAN.871685900012636543"),
        ("ea1-no-colon", "ea1.2007-11.net.example.grid"),
        ("ea1-one-digit-month", "ea1.2007-1.net.example:cp1"),
        ("ea1-empty-local-part", "ea1.2007-11.net.example:"),
        ("ea1-empty-naming-authority", "ea1.2007-11.:cp1"),
        ("ea1-naming-authority-245", "ea1.2007-11." + "a" * 245 + ":cp1"),
        ("ea1-newline", "ea1.2007-11.net.example:cp\n1"),
        ("ea2-scheme", "ea2.2007-11.net.example:cp1"),
        ("no-scheme", "871685900012636543"),
        ("empty", ""),
    ],
    "version": [
        ("two-part", "3.1"),
        ("v-prefix", "v3.1.0"),
        ("prerelease", "3.1.0-rc1"),
        ("four-part", "3.1.0.1"),
        ("empty", ""),
    ],
    "tz": [
        ("asia", "Asia/Tokyo"),
        ("utc", "UTC"),
        ("etc", "Etc/UTC"),
        ("offset", "+01:00"),
        ("city-too-short", "Europe/AB"),
        ("lowercase-area", "europe/Amsterdam"),
        ("space", "America/New York"),
        ("empty", ""),
    ],
    "date": [
        ("month-13", "2024-13-01"),
        ("feb-30", "2024-02-30"),
        ("feb-29-non-leap", "2023-02-29"),
        ("day-first", "01-05-2024"),
        ("unpadded", "2024-5-1"),
        ("datetime", "2024-05-01T00:00:00"),
        ("empty", ""),
    ],
    "datetime": [
        ("space-separator", "2024-05-01 10:15:30Z"),
        ("date-only", "2024-05-01"),
        ("hour-25", "2024-05-01T25:00:00Z"),
        ("no-seconds", "2024-05-01T10:15Z"),
        ("short-offset", "2024-05-01T10:15:30+2:00"),
        ("empty", ""),
    ],
    "boolean": [
        ("yes", "yes"),
        ("uppercase", "TRUE"),
        ("two", "2"),
        ("empty", ""),
    ],
    "role": [("brp", "BRP"), ("mdc", "MDC"), ("lowercase", "agr"), ("empty", "")],
    "result": [("ok", "OK"), ("lowercase", "accepted"), ("empty", "")],
    "redispatch": [("cro", "CRO"), ("lowercase", "dso"), ("empty", "")],
    "base64": [("illegal-chars", "not base64!"), ("bad-length", "abc"), ("bad-padding", "QQ=Q")],
    "string": [],
    "integer": [
        ("fraction", "1.5"),
        ("word", "abc"),
        ("exponent", "1e3"),
        ("hex", "0x10"),
        ("inner-space", "1 000"),
        ("empty", ""),
    ],
    "positive": [
        ("zero", "0"),
        ("signed-zero", "+0"),
        ("negative", "-1"),
        ("fraction", "1.0"),
        ("word", "abc"),
        ("empty", ""),
    ],
    "long": [
        ("above-max", "9223372036854775808"),
        ("below-min", "-9223372036854775809"),
        ("fraction", "1.5"),
        ("word", "abc"),
        ("empty", ""),
    ],
    "amount": [
        ("five-fraction-digits", "1.23456"),
        ("exponent", "1e3"),
        ("nan", "NaN"),
        ("comma", "1,5"),
        ("currency-sign", "EUR 1"),
        ("empty", ""),
    ],
    "factor": [
        ("zero", "0"),
        ("below-min", "0.001"),
        ("above-max", "1.01"),
        ("two", "2"),
        ("negative", "-0.5"),
        ("percent", "50%"),
        ("empty", ""),
    ],
    "currency": [
        ("lowercase", "eur"),
        ("four-letters", "EURO"),
        ("two-letters", "EU"),
        ("digit", "E1R"),
        ("symbol", "€"),
        ("empty", ""),
    ],
    "duration": [
        ("no-designator", "15M"),
        ("bare-t", "PT"),
        ("bare-p", "P"),
        ("number-without-unit", "PT15"),
        ("lowercase-unit", "PT15m"),
        ("minutes-in-date-part-order", "P15MT"),
        ("negative-part", "P-1D"),
        ("empty", ""),
    ],
    "available-requested": [("lowercase", "available"), ("offered", "Offered"), ("empty", "")],
    "accepted-disputed": [("rejected", "Rejected"), ("lowercase", "disputed"), ("empty", "")],
    "decimal": [
        ("word", "abc"),
        ("exponent", "1e3"),
        ("nan", "NaN"),
        ("infinity", "INF"),
        ("comma", "1,5"),
        ("empty", ""),
    ],
    "ean": [
        ("fifteen-digits", "E" + "1" * 15),
        ("seventeen-digits", "E" + "1" * 17),
        ("other-letter", "X" + "1" * 16),
        ("no-letter", "1" * 17),
        ("entity-address", "ean.871685900012636543"),
        ("empty", ""),
    ],
    "profile": [("lowercase", "power"), ("energy", "Energy"), ("empty", "")],
    "unit": [("lowercase", "kw"), ("megawatt", "MW"), ("uppercase-h", "kWH"), ("empty", "")],
}

# Values that must be rejected only by the draft (4.0.0), whose TimeStamp is a
# pattern-restricted xs:dateTime; they are valid xs:dateTime values in 3.x.
DRAFT_ONLY_BAD_VALUES: dict[str, list[tuple[str, str]]] = {
    "datetime": [
        ("no-timezone", "2024-05-01T10:15:30"),
        ("ten-fraction-digits", "2024-05-01T10:15:30.1234567890Z"),
    ],
}

# Alternative values that must be accepted.
GOOD_VALUES: dict[str, list[tuple[str, str]]] = {
    "uuid": [("uppercase", "3F2504E0-4F89-11D3-9A0C-0305E82C3301")],
    "domain": [
        ("single-char-labels", "a.bc"),
        ("hyphenated", "my-dso.example-energy.nl"),
        ("digit-labels", "1.2.example"),
    ],
    "ea": [
        ("ean-12-digits", "ean.123456789012"),
        ("ean-34-digits", "ean." + "1" * 34),
        ("ea1-colons-in-local-part", "ea1.2007-11.net.example:a:b:c"),
        ("ea1-max-lengths", "ea1.2007-11." + "a" * 244 + ":" + "b" * 244),
        ("ea1-month-unchecked", "ea1.2007-99.net.example:cp1"),
    ],
    "version": [("multi-digit", "10.20.300")],
    "tz": [
        ("nested", "America/Argentina/Buenos_Aires"),
        ("pacific", "Pacific/Auckland"),
        ("africa", "Africa/Lagos"),
    ],
    "date": [
        ("leap-day", "2024-02-29"),
        ("utc-suffix", "2024-05-01Z"),
        ("with-offset", "2024-05-01+02:00"),
    ],
    "datetime": [
        ("utc-z", "2024-05-01T08:15:30Z"),
        ("negative-offset", "2024-05-01T03:15:30-05:00"),
        ("nine-fraction-digits", "2024-05-01T10:15:30.123456789+02:00"),
        ("no-fraction", "2024-05-01T10:15:30+02:00"),
    ],
    "boolean": [("one", "1"), ("zero", "0"), ("false", "false"), ("true", "true")],
    "role": [("agr", "AGR"), ("cro", "CRO"), ("dso", "DSO")],
    "result": [("accepted", "Accepted"), ("rejected", "Rejected")],
    "redispatch": [("agr", "AGR"), ("dso", "DSO")],
    "base64": [("short", "QQ==")],
    "string": [("empty", ""), ("unicode", "Überlast 50 %")],
    "integer": [
        ("negative", "-5"),
        ("zero", "0"),
        ("plus", "+7"),
        ("leading-zeros", "007"),
        ("beyond-64-bits", "123456789012345678901234567890"),
    ],
    "positive": [("one", "1"), ("plus", "+3"), ("leading-zeros", "0096"), ("huge", "9" * 25)],
    "long": [
        ("max", "9223372036854775807"),
        ("min", "-9223372036854775808"),
        ("zero", "0"),
        ("plus", "+1"),
    ],
    "amount": [
        ("four-fraction-digits", "1.2345"),
        ("negative", "-10"),
        ("zero", "0"),
        ("leading-dot", ".5"),
        ("plus", "+3.1"),
        ("large", "123456789012345678901234.5"),
    ],
    "factor": [("min", "0.01"), ("one", "1"), ("max", "1.00"), ("half", "0.5")],
    "currency": [("usd", "USD"), ("no-currency", "XXX")],
    "duration": [
        ("hour", "PT1H"),
        ("seconds", "PT900S"),
        ("day", "P1D"),
        ("negative", "-PT15M"),
        ("fraction", "PT0.5S"),
        ("all-parts", "P0Y0M0DT0H15M0S"),
        ("months", "P1M"),
    ],
    "available-requested": [("available", "Available"), ("requested", "Requested")],
    "accepted-disputed": [("accepted", "Accepted"), ("disputed", "Disputed")],
    "decimal": [
        ("negative", "-1.5"),
        ("zero", "0"),
        ("many-digits", "123456.789012345678901234567890"),
        ("leading-dot", ".5"),
    ],
    "ean": [("lowercase-e", "e" + "1" * 16), ("uppercase-e", "E8716859000000001")],
    "profile": [
        ("power", "Power"),
        ("import-energy", "ImportEnergy"),
        ("export-energy", "ExportEnergy"),
        ("import-reading", "ImportMeterReading"),
        ("export-reading", "ExportMeterReading"),
    ],
    "unit": [("kw", "kW"), ("kwh", "kWh")],
}

# Corner cases whose verdict is not asserted, only compared between the two schemas.
EDGE_VALUES: dict[str, list[tuple[str, str]]] = {
    "version": [("arabic-indic-digits", "\u0663.\u0661.\u0660")],
    "ea": [("ea1-tab", "ea1.2007-11.net.example:cp\t1")],
    "datetime": [
        ("padded", " 2024-05-01T10:15:30Z "),
        ("hour-24", "2024-05-01T24:00:00Z"),
        ("dot-without-fraction", "2024-05-01T10:15:30.Z"),
        ("year-0000", "0000-05-01T10:15:30Z"),
    ],
    "date": [("padded", " 2024-05-01 "), ("five-digit-year", "12024-05-01")],
    "boolean": [("padded", " true ")],
    "tz": [("trailing-slash", "Europe/Amsterdam/")],
    "base64": [("empty", ""), ("internal-spaces", "QUJD REVG"), ("line-breaks", "QUJD\nREVG")],
    "integer": [("padded", " 5 ")],
    "positive": [("padded", " 1 ")],
    "long": [("padded", " 1 ")],
    "amount": [("trailing-dot", "5."), ("trailing-zero", "1.23450"), ("padded", " 1.5 ")],
    "factor": [("trailing-zero", "1.000"), ("leading-dot", ".5")],
    "duration": [("padded", " PT15M "), ("dot-seconds", "PT15.S")],
    "decimal": [("trailing-dot", "5."), ("padded", " 1.5 ")],
    "ean": [("padded", " E8716859000000001 ")],
}

# --------------------------------------------------------------------------------------
# Base samples
# --------------------------------------------------------------------------------------

UUIDS = [
    "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
]
EA1 = "ea1.2007-11.net.example.grid:cp-utrecht-01"
EAN_CP = "ean.871685900012636543"
EAN_1 = "ean.871685900000000011"
EAN_2 = "ean.871685900000000028"
TZ = "Europe/Amsterdam"


def header(version: str, sender: str, recipient: str) -> dict[str, str]:
    return {
        "Version": version,
        "SenderDomain": sender,
        "RecipientDomain": recipient,
        "TimeStamp": "2024-05-01T10:15:30.250+02:00",
        "MessageID": UUIDS[0],
        "ConversationID": UUIDS[1],
    }


def response_attrs(version: str, name: str) -> dict[str, str]:
    """Attributes of response type `name` in `version`, with its Version's reference."""
    attrs = {"Result": "Rejected", "RejectionReason": "Unknown congestion point"}
    if version == DRAFT:
        return {"ReferenceMessageID": UUIDS[2], **attrs}
    if name not in V3_REFERENCES:  # 3.x TestMessageResponse is not a response type
        return {}
    return {V3_REFERENCES[name]: UUIDS[2], **attrs}


def rich_samples(version: str) -> dict[str, Node]:
    cro_dso = header(version, "cro.example.com", "dso.example-grid.nl")
    dso_cro = header(version, "dso.example-grid.nl", "cro.example.com")
    agr_cro = header(version, "agr.example.com", "cro.example.com")
    cro_agr = header(version, "cro.example.com", "agr.example.com")
    period = {"StartPeriod": "2024-05-01", "EndPeriod": "2024-12-31"}

    def update_connection(address: str) -> Node:
        return el("Connection", {"EntityAddress": address, **period})

    def query_cp(address: str) -> Node:
        return el(
            "CongestionPoint",
            {
                "EntityAddress": address,
                "MutexOffersSupported": "true",
                "DayAheadRedispatchBy": "AGR",
                "IntradayRedispatchBy": "DSO",
            },
            el("Connection", {"EntityAddress": EAN_1}),
            el("Connection", {"EntityAddress": EAN_2}),
        )

    def dso_view(domain: str) -> Node:
        return el(
            "DSO-View",
            {},
            el("DSO-Portfolio", {"DSO-Domain": domain}, query_cp(EA1), query_cp(EAN_CP)),
            el("DSO-Portfolio", {"DSO-Domain": "dso2.example.com"}, query_cp(EAN_CP)),
            el("Connection", {"EntityAddress": EAN_1}),
            el("Connection", {"EntityAddress": EAN_2}),
        )

    test_message = el("TestMessage", header(version, "agr.example.com", "dso.example-grid.nl"))
    samples = {
        "TestMessage": test_message,
        "TestMessageResponse": el(
            "TestMessageResponse",
            {
                **header(version, "dso.example-grid.nl", "agr.example.com"),
                **response_attrs(version, "TestMessageResponse"),
            },
        ),
        "DSOPortfolioUpdate": el(
            "DSOPortfolioUpdate",
            {**dso_cro, "TimeZone": TZ},
            el(
                "CongestionPoint",
                {
                    "EntityAddress": EA1,
                    **period,
                    "MutexOffersSupported": "false",
                    "DayAheadRedispatchBy": "DSO",
                    "IntradayRedispatchBy": "AGR",
                },
                update_connection(EAN_1),
                update_connection(EAN_2),
            ),
            el(
                "CongestionPoint",
                {
                    "EntityAddress": EAN_CP,
                    **period,
                    "MutexOffersSupported": "true",
                    "DayAheadRedispatchBy": "AGR",
                    "IntradayRedispatchBy": "DSO",
                },
                update_connection(EAN_2),
            ),
        ),
        "DSOPortfolioUpdateResponse": el(
            "DSOPortfolioUpdateResponse",
            {**cro_dso, **response_attrs(version, "DSOPortfolioUpdateResponse")},
        ),
        "DSOPortfolioQuery": el(
            "DSOPortfolioQuery",
            {**dso_cro, "TimeZone": TZ, "Period": "2024-05-02", "EntityAddress": EA1},
        ),
        "DSOPortfolioQueryResponse": el(
            "DSOPortfolioQueryResponse",
            {
                **cro_dso,
                **response_attrs(version, "DSOPortfolioQueryResponse"),
                "TimeZone": TZ,
                "Period": "2024-05-02",
            },
            el(
                "CongestionPoint",
                {"EntityAddress": EA1},
                el("Connection", {"EntityAddress": EAN_1, "AGR-Domain": "agr.example.com"}),
                el("Connection", {"EntityAddress": EAN_2, "AGR-Domain": "agr2.example.com"}),
            ),
        ),
        "AGRPortfolioUpdate": el(
            "AGRPortfolioUpdate",
            {**agr_cro, "TimeZone": TZ},
            update_connection(EAN_1),
            update_connection(EAN_2),
        ),
        "AGRPortfolioUpdateResponse": el(
            "AGRPortfolioUpdateResponse",
            {**cro_agr, **response_attrs(version, "AGRPortfolioUpdateResponse")},
        ),
        "AGRPortfolioQuery": el(
            "AGRPortfolioQuery", {**agr_cro, "TimeZone": TZ, "Period": "2024-05-02"}
        ),
        "AGRPortfolioQueryResponse": el(
            "AGRPortfolioQueryResponse",
            {
                **cro_agr,
                **response_attrs(version, "AGRPortfolioQueryResponse"),
                "TimeZone": TZ,
                "Period": "2024-05-02",
            },
            dso_view("dso.example-grid.nl"),
            dso_view("dso3.example.com"),
        ),
        "SignedMessage": el(
            "SignedMessage",
            {
                "SenderDomain": "agr.example.com",
                "SenderRole": "AGR",
                "Body": base64.b64encode(serialize(test_message)).decode("ascii"),
            },
        ),
    }
    samples.update(flex_samples(version))
    assert set(samples) == GLOBAL_ELEMENTS
    return samples


def flex_samples(version: str) -> dict[str, Node]:
    """The messages between DSO and AGR: every optional attribute present, and two children
    wherever the schema allows more than one."""
    dso_agr = header(version, "dso.example-grid.nl", "agr.example.com")
    agr_dso = header(version, "agr.example.com", "dso.example-grid.nl")
    flex = {"ISP-Duration": "PT15M", "TimeZone": TZ, "Period": "2024-05-02", "CongestionPoint": EA1}
    unsolicited = {} if version == "3.0.0" else {"Unsolicited": "false"}

    def response(name: str, sender: dict[str, str]) -> Node:
        return el(name, {**sender, **response_attrs(version, name)})

    def settlement_isp(start: str) -> Node:
        return el(
            "ISP",
            {
                "Start": start,
                "Duration": "4",
                "BaselinePower": "2500000",
                "OrderedFlexPower": "-100000",
                "ActualPower": "2420000",
                "DeliveredFlexPower": "-80000",
                "PowerDeficiency": "20000",
            },
        )

    def settlement_order(reference: str) -> Node:
        return el(
            "FlexOrderSettlement",
            {
                "OrderReference": reference,
                "Period": "2024-05-02",
                "ContractID": "contract-1",
                "D-PrognosisMessageID": UUIDS[1],
                "BaselineReference": "baseline-1",
                "CongestionPoint": EA1,
                "Price": "625.25",
                "Penalty": "100",
                "NetSettlement": "525.25",
            },
            settlement_isp("69"),
            settlement_isp("73"),
        )

    def contract_isp(start: str) -> Node:
        return el(
            "ISP",
            {
                "Start": start,
                "Duration": "4",
                "ReservedPower": "-250000",
                "RequestedPower": "-250000",
                "AvailablePower": "-300000",
                "OfferedPower": "-200000",
                "OrderedPower": "-150000",
            },
        )

    def contract_settlement(contract: str) -> Node:
        return el(
            "ContractSettlement",
            {"ContractID": contract},
            el("Period", {"Period": "2024-05-02"}, contract_isp("69"), contract_isp("73")),
            el("Period", {"Period": "2024-05-03"}, contract_isp("1")),
        )

    return {
        "FlexRequest": el(
            "FlexRequest",
            {
                **dso_agr,
                **flex,
                "Revision": "2",
                "ExpirationDateTime": "2024-05-01T18:00:00+02:00",
                "ContractID": "contract-1",
                "ServiceType": "day-ahead",
            },
            el(
                "ISP",
                {
                    "Disposition": "Requested",
                    "MinPower": "-5000",
                    "MaxPower": "0",
                    "Start": "69",
                    "Duration": "8",
                },
            ),
            el(
                "ISP",
                {
                    "Disposition": "Available",
                    "MinPower": "-1000",
                    "MaxPower": "1000",
                    "Start": "1",
                    "Duration": "68",
                },
            ),
        ),
        "FlexRequestResponse": response("FlexRequestResponse", agr_dso),
        "FlexOffer": el(
            "FlexOffer",
            {
                **agr_dso,
                **flex,
                "ExpirationDateTime": "2024-05-01T18:00:00+02:00",
                **unsolicited,
                "FlexRequestMessageID": UUIDS[2],
                "ContractID": "contract-1",
                "D-PrognosisMessageID": UUIDS[1],
                "BaselineReference": "baseline-1",
                "Currency": "EUR",
            },
            el(
                "OfferOption",
                {"OptionReference": "A", "Price": "12.5000", "MinActivationFactor": "0.50"},
                el("ISP", {"Power": "-5000", "Start": "69", "Duration": "4"}),
                el("ISP", {"Power": "-2500", "Start": "73", "Duration": "4"}),
            ),
            el(
                "OfferOption",
                {"OptionReference": "B", "Price": "8", "MinActivationFactor": "1.00"},
                el("ISP", {"Power": "-2500", "Start": "69", "Duration": "8"}),
            ),
        ),
        "FlexOfferResponse": response("FlexOfferResponse", dso_agr),
        "FlexOfferRevocation": el(
            "FlexOfferRevocation", {**agr_dso, "FlexOfferMessageID": UUIDS[2]}
        ),
        "FlexOfferRevocationResponse": response("FlexOfferRevocationResponse", dso_agr),
        "FlexOrder": el(
            "FlexOrder",
            {
                **dso_agr,
                **flex,
                **unsolicited,
                "FlexOfferMessageID": UUIDS[2],
                **({} if version == "3.0.0" else {"ServiceType": "day-ahead"}),
                "ContractID": "contract-1",
                "D-PrognosisMessageID": UUIDS[1],
                "BaselineReference": "baseline-1",
                "Price": "-12.5",
                "Currency": "EUR",
                "OrderReference": "order-1",
                "OptionReference": "A",
                "ActivationFactor": "0.75",
            },
            el("ISP", {"Power": "-5000", "Start": "69", "Duration": "4"}),
            el("ISP", {"Power": "-2500", "Start": "73", "Duration": "4"}),
        ),
        "FlexOrderResponse": response("FlexOrderResponse", agr_dso),
        "FlexReservationUpdate": el(
            "FlexReservationUpdate",
            {**dso_agr, **flex, "ContractID": "contract-1", "Reference": "update-1"},
            el("ISP", {"Power": "0", "Start": "1", "Duration": "68"}),
            el("ISP", {"Power": "-5000", "Start": "69", "Duration": "28"}),
        ),
        "FlexReservationUpdateResponse": response("FlexReservationUpdateResponse", agr_dso),
        "D-Prognosis": el(
            "D-Prognosis",
            {**agr_dso, **flex, "Revision": "4"},
            el("ISP", {"Power": "1200000", "Start": "1", "Duration": "68"}),
            el("ISP", {"Power": "-150000", "Start": "69", "Duration": "28"}),
        ),
        "FlexSettlement": el(
            "FlexSettlement",
            {
                **dso_agr,
                # 3.x: FlexSettlementType extends the response type, Result and all.
                **({} if version == DRAFT else {"Result": "Accepted", "RejectionReason": ""}),
                "PeriodStart": "2024-05-01",
                "PeriodEnd": "2024-05-31",
                "Currency": "EUR",
            },
            settlement_order("order-1"),
            settlement_order("order-2"),
            contract_settlement("contract-1"),
            contract_settlement("contract-2"),
        ),
        "FlexSettlementResponse": el(
            "FlexSettlementResponse",
            {**agr_dso, **response_attrs(version, "FlexSettlementResponse")},
            el(
                "FlexOrderSettlementStatus",
                {"OrderReference": "order-1", "Disposition": "Accepted"},
            ),
            el(
                "FlexOrderSettlementStatus",
                {"OrderReference": "order-2", "Disposition": "Disputed", "DisputeReason": "late"},
            ),
        ),
        "Metering": el(
            "Metering",
            {
                **agr_dso,
                "Revision": "1",
                "ISP-Duration": "PT15M",
                "TimeZone": TZ,
                "Currency": "EUR",
                "Period": "2024-05-02",
                "EAN": "E8716859000000001",
            },
            el(
                "Profile",
                {"ProfileType": "Power", "Unit": "kW"},
                el("ISP", {"Start": "1", "Value": "12.5"}),
                el("ISP", {"Start": "2", "Value": "-3.25"}),
            ),
            el(
                "Profile",
                {"ProfileType": "ImportEnergy", "Unit": "kWh"},
                el("ISP", {"Start": "1", "Value": "3.125"}),
            ),
        ),
        "MeteringResponse": response("MeteringResponse", dso_agr),
        "D-PrognosisResponse": el(
            "D-PrognosisResponse",
            {**dso_agr, **response_attrs(version, "D-PrognosisResponse")},
            el("FlexOrderStatus", {"FlexOrderMessageID": UUIDS[0], "IsValidated": "true"}),
            el("FlexOrderStatus", {"FlexOrderMessageID": UUIDS[1], "IsValidated": "false"}),
        ),
    }


def minimal(version: str, node: Node) -> Node:
    """Drop optional attributes and optional children; keep one child per required group."""
    kept: list[Node] = []
    seen: set[str] = set()
    for child in node.children:
        if (node.tag, child.tag) in OPTIONAL_CHILDREN or child.tag in seen:
            continue
        seen.add(child.tag)
        kept.append(minimal(version, child))
    attrs = {k: v for k, v in node.attrs.items() if not is_optional(version, node.tag, k)}
    return replace(node, attrs=attrs, children=tuple(kept))


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------


def attribute_mutations(version: str, name: str, root: Node) -> Iterator[Sample]:
    for path, sig, node in unique_nodes(root):
        for attr in node.attrs:
            kind = attr_kind(sig, attr)
            where = f"{name}:{sig}@{attr}"
            required = not is_optional(version, node.tag, attr)
            yield Sample(
                f"{where}:removed",
                update(root, path, dropping(attr)),
                expect_valid=not required,
            )
            bad = list(BAD_VALUES[kind])
            if version == DRAFT:
                bad += DRAFT_ONLY_BAD_VALUES.get(kind, [])
            else:
                # Same values must still be accepted by 3.x (plain xs:dateTime).
                for label, value in DRAFT_ONLY_BAD_VALUES.get(kind, []):
                    yield Sample(
                        f"{where}:good-{label}",
                        update(root, path, setting(attr, value)),
                        expect_valid=True,
                    )
            for label, value in bad:
                yield Sample(
                    f"{where}:bad-{label}",
                    update(root, path, setting(attr, value)),
                    expect_valid=False,
                )
            for label, value in GOOD_VALUES[kind]:
                yield Sample(
                    f"{where}:good-{label}",
                    update(root, path, setting(attr, value)),
                    expect_valid=True,
                )
            for label, value in EDGE_VALUES.get(kind, []):
                yield Sample(
                    f"{where}:edge-{label}",
                    update(root, path, setting(attr, value)),
                    expect_valid=None,
                )


def structure_mutations(name: str, root: Node) -> Iterator[Sample]:
    for path, sig, node in unique_nodes(root):
        where = f"{name}:{sig}"
        yield Sample(
            f"{where}:unknown-attribute",
            update(root, path, setting("Unexpected", "x")),
            expect_valid=False,
        )
        yield Sample(
            f"{where}:foreign-namespace-attribute",
            update(root, path, setting(f"{{{FOREIGN_NS}}}Note", "x")),
            expect_valid=False,
        )
        yield Sample(
            f"{where}:unknown-child",
            update(root, path, with_children(lambda cs: (*cs, el("Unexpected")))),
            expect_valid=False,
        )
        yield Sample(
            f"{where}:text-content",
            update(root, path, lambda n: replace(n, text="unexpected text")),
            expect_valid=False,
        )
        yield Sample(
            f"{where}:whitespace-content",
            update(root, path, lambda n: replace(n, text="\n  ")),
            expect_valid=None,
        )
        if node.children:
            yield Sample(
                f"{where}:child-in-foreign-namespace",
                update(
                    root,
                    path,
                    with_children(
                        lambda cs: (replace(cs[0], tag=f"{{{FOREIGN_NS}}}{cs[0].tag}"), *cs[1:])
                    ),
                ),
                expect_valid=False,
            )
            yield Sample(
                f"{where}:child-renamed",
                update(
                    root,
                    path,
                    with_children(lambda cs: (replace(cs[0], tag=cs[0].tag + "s"), *cs[1:])),
                ),
                expect_valid=False,
            )
        for child_tag in dict.fromkeys(child.tag for child in node.children):
            group = f"{where}/{child_tag}"
            required = (node.tag, child_tag) not in OPTIONAL_CHILDREN
            yield Sample(
                f"{group}:all-removed",
                update(
                    root,
                    path,
                    without_children(child_tag),
                ),
                expect_valid=not required,
            )
            single = (node.tag, child_tag) in SINGLE_CHILDREN

            def duplicate(n: Node, t: str = child_tag) -> Node:
                index = next(i for i, c in enumerate(n.children) if c.tag == t)
                children = n.children
                return replace(n, children=(*children[: index + 1], *children[index:]))

            yield Sample(
                f"{group}:repeated",
                update(root, path, duplicate),
                expect_valid=not single,
            )
        if len({child.tag for child in node.children}) > 1:
            yield Sample(
                f"{where}:children-reordered",
                update(root, path, with_children(lambda cs: tuple(reversed(cs)))),
                expect_valid=False,
            )


# Attributes 3.1.0 added (UFTP-agr-dso.xsd, 3.0.0 -> 3.1.0), with a value valid in 3.1.0.
ADDED_IN_3_1: dict[str, tuple[tuple[str, str], ...]] = {
    "FlexOffer": (("Unsolicited", "true"),),
    "FlexOrder": (("Unsolicited", "true"), ("ServiceType", "intraday")),
}


def root_mutations(version: str, name: str, root: Node) -> Iterator[Sample]:
    yield Sample(f"{name}:root-renamed", replace(root, tag=f"{name}X"), expect_valid=False)
    yield Sample(f"{name}:root-lowercase", replace(root, tag=name.lower()), expect_valid=False)
    yield Sample(
        f"{name}:root-in-foreign-namespace",
        replace(root, tag=f"{{{FOREIGN_NS}}}{name}"),
        expect_valid=False,
    )
    if name != "SignedMessage":
        # Attributes of a payload message under the envelope element, and vice versa.
        yield Sample(f"{name}:root-as-SignedMessage", replace(root, tag="SignedMessage"), False)
    else:
        yield Sample(f"{name}:root-as-TestMessage", replace(root, tag="TestMessage"), False)
    # Cross-version response attributes.
    if "Result" in root.attrs:
        if version == DRAFT:
            legacy = V3_REFERENCES.get(name, "InReplyTo")
            yield Sample(
                f"{name}:3x-reference-attribute-added",
                with_attr(root, legacy, UUIDS[2]),
                expect_valid=False,
            )
        else:
            yield Sample(
                f"{name}:draft-ReferenceMessageID-added",
                with_attr(root, "ReferenceMessageID", UUIDS[2]),
                expect_valid=False,
            )
    if name == "TestMessageResponse" and version != DRAFT:
        yield Sample(
            f"{name}:draft-response-attributes-added",
            Node(name, {**root.attrs, "ReferenceMessageID": UUIDS[2], "Result": "Accepted"}),
            expect_valid=False,
        )
    # What 3.1.0 added to FlexOffer and FlexOrder, which 3.0.0 does not know.
    for attr, value in ADDED_IN_3_1.get(name, ()):
        yield Sample(
            f"{name}:{attr}-of-3.1.0",
            with_attr(root, attr, value),
            expect_valid=version != "3.0.0",
        )


def global_mutations(version: str, samples: Mapping[str, Node]) -> Iterator[Sample]:
    test_attrs = samples["TestMessage"].attrs
    # Names UFTP does not define as messages, or only as parts of one.
    yield Sample("A-Prognosis:usef-message-root", Node("A-Prognosis", test_attrs), False)
    yield Sample("FlexMessage:abstract-type-name-as-root", Node("FlexMessage", test_attrs), False)
    yield Sample("ISP:local-element-as-root", Node("ISP", {"Power": "1", "Start": "1"}), False)
    yield Sample("OfferOption:local-element-as-root", samples["FlexOffer"].children[0], False)
    # A flex message with its metadata only, and one addressed to a phase it is not from.
    yield Sample("FlexRequest:metadata-only", Node("FlexRequest", test_attrs), False)
    yield Sample(
        "FlexOfferRevocation:as-FlexOfferResponse",
        replace(samples["FlexOfferRevocation"], tag="FlexOfferResponse"),
        False,
    )
    yield Sample(
        "Connection:local-element-as-root",
        Node("Connection", {"EntityAddress": EAN_1}),
        False,
    )
    yield Sample(
        "CongestionPoint:local-element-as-root",
        samples["DSOPortfolioUpdate"].children[0],
        False,
    )
    yield Sample(
        "PayloadMessage:abstract-type-name-as-root", Node("PayloadMessage", test_attrs), False
    )
    # Messages carrying another message's content.
    yield Sample(
        "DSOPortfolioQuery:as-AGRPortfolioQuery",
        replace(samples["DSOPortfolioQuery"], tag="AGRPortfolioQuery"),
        False,
    )
    yield Sample(
        "AGRPortfolioUpdate:as-DSOPortfolioUpdate",
        replace(samples["AGRPortfolioUpdate"], tag="DSOPortfolioUpdate"),
        False,
    )
    # The version attribute is not tied to the schema version.
    other = "3.1.0" if version == DRAFT else DRAFT
    yield Sample(
        f"TestMessage:Version-{other}",
        with_attr(samples["TestMessage"], "Version", other),
        True,
    )


@functools.cache
def corpus(version: str) -> tuple[Sample, ...]:
    samples: list[Sample] = []
    rich = rich_samples(version)
    for name, root in rich.items():
        small = minimal(version, root)
        samples.append(Sample(f"{name}:rich", root, True))
        samples.append(Sample(f"{name}:minimal", small, True))
        samples.extend(attribute_mutations(version, name, root))
        samples.extend(structure_mutations(name, root))
        samples.extend(root_mutations(version, name, root))
        # Structure mutations of the minimal form catch minOccurs on the bare skeleton.
        for sample in structure_mutations(name, small):
            if sample.id.endswith(":all-removed"):
                samples.append(replace(sample, id=f"{sample.id}[minimal]"))
    samples.extend(global_mutations(version, rich))
    ids = [sample.id for sample in samples]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, duplicates
    return tuple(samples)


# --------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------


def official_elements(version: str) -> set[str]:
    """The global elements the official files of `version` declare."""
    declared: set[str] = set()
    for name in OFFICIAL_FILES:
        tree = etree.parse(str(OFFICIAL_XSD_DIR / VERSIONS[version][0] / name))
        declared |= {str(e.get("name")) for e in tree.getroot().findall(f"{XS}element")}
    return declared


@functools.cache
def our_schema(version: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(OUR_XSD_DIR / VERSIONS[version][1])))


def is_valid(schema: etree.XMLSchema, document: etree._Element) -> bool:
    return bool(schema.validate(document))


def parse(sample: Sample) -> etree._Element:
    # Round-trip through bytes so the document is exactly what a receiver would parse.
    return etree.fromstring(serialize(sample.root))


def _params() -> list[Any]:
    return [
        pytest.param(version, sample, id=f"{version}|{sample.id}")
        for version in VERSIONS
        for sample in corpus(version)
    ]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def includes_of(path: Path) -> set[str]:
    """The files `path` includes, directly or through the files it includes."""
    found: set[str] = set()
    for node in etree.parse(str(path)).getroot().iter(f"{XS}include"):
        name = str(node.get("schemaLocation"))
        if name not in found:
            found |= {name} | includes_of(path.with_name(name))
    return found


@pytest.mark.parametrize("version", list(VERSIONS))
def test_official_entry_files_cover_exactly_our_message_set(version: str) -> None:
    directory = OFFICIAL_XSD_DIR / VERSIONS[version][0]
    assert set().union(*(includes_of(directory / e) for e in OFFICIAL_ENTRIES)) == OFFICIAL_FILES
    assert official_elements(version) == GLOBAL_ELEMENTS


@pytest.mark.parametrize("version", list(VERSIONS))
def test_our_schema_shape(version: str) -> None:
    path = OUR_XSD_DIR / VERSIONS[version][1]
    root = etree.parse(str(path)).getroot()
    assert root.get("targetNamespace") is None
    assert root.get("elementFormDefault") == "qualified"
    assert root.get("attributeFormDefault") == "unqualified"
    assert {str(e.get("name")) for e in root.findall(f"{XS}element")} == GLOBAL_ELEMENTS
    assert not list(root.iter(f"{XS}include", f"{XS}import", f"{XS}annotation"))
    our_schema(version)  # loads


@pytest.mark.parametrize(("version", "sample"), _params())
def test_same_verdict_as_official_schema(version: str, sample: Sample) -> None:
    document = parse(sample)
    official = is_valid(official_schema(version), document)
    ours = is_valid(our_schema(version), document)
    if sample.expect_valid is not None:
        assert official is sample.expect_valid, (
            f"official schema says valid={official}, corpus expects {sample.expect_valid}: "
            f"{official_schema(version).error_log}"
        )
    assert ours is official, f"our schema says valid={ours}: {our_schema(version).error_log}"


@pytest.mark.parametrize("version", list(VERSIONS))
def test_corpus_is_substantial(version: str) -> None:
    samples = corpus(version)
    base = [s for s in samples if s.id.endswith((":rich", ":minimal"))]
    assert len(base) == 2 * len(GLOBAL_ELEMENTS)
    assert all(s.expect_valid is True for s in base)
    assert all(is_valid(official_schema(version), parse(s)) for s in base)
    invalid = [s for s in samples if s.expect_valid is False]
    valid = [s for s in samples if s.expect_valid is True]
    assert len(invalid) > 100
    assert len(valid) > 50
    assert sum(not is_valid(official_schema(version), parse(s)) for s in invalid) == len(invalid)
