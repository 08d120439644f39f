"""`parse_envelope` judges SignedMessages as the official schema does, fast path included.

The envelope reader checks a canonical Body itself and lets the schema judge the rest on a
copy without the Body (a 10 MB attribute costs libxml2 tens of milliseconds to re-scan).
These tests hold that shortcut to the official verdict on the SignedMessage part of the
conformance corpus, and on Body spellings the fast path must not wave through.
"""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from adapter.uftp import envelope
from adapter.uftp.errors import InvalidSignature, InvalidXml
from tests.official_xsd import needs_official_xsd
from tests.uftp import test_schema_conformance as conformance

SIGNED = base64.b64encode(bytes(range(64)) + b"<TestMessage/>").decode()


def verdict(data: bytes) -> bool:
    """Whether parse_envelope accepts the document as a SignedMessage (a Body too short
    to hold a signature is schema-valid but unopenable: 401, which counts as accepted)."""
    try:
        envelope.parse_envelope(data)
    except InvalidSignature:
        return True
    except InvalidXml:
        return False
    return True


def official(data: bytes) -> bool:
    return bool(conformance.official_schema("3.1.0").validate(etree.fromstring(data)))


def signed_message_samples() -> list[conformance.Sample]:
    return [
        sample
        for sample in conformance.corpus("3.1.0")
        if sample.root.tag == "SignedMessage" or sample.id.startswith("SignedMessage")
    ]


@needs_official_xsd
@pytest.mark.parametrize("sample", signed_message_samples(), ids=lambda s: s.id)
def test_same_verdict_as_official_schema(sample: conformance.Sample) -> None:
    data = conformance.serialize(sample.root)
    assert verdict(data) is official(data)


@needs_official_xsd
@pytest.mark.parametrize(
    "body",
    [
        SIGNED,
        SIGNED[:-4] + "AB==",  # unused bits set: not xs:base64Binary
        SIGNED[:-4] + "ABC=",
        "AQ==",
        "AB==",
        "AAE=",
        "AAF=",
        " " + SIGNED,
        SIGNED[:40] + " " + SIGNED[40:],
        SIGNED[:40] + "\n" + SIGNED[40:],
        SIGNED[:40] + "  " + SIGNED[40:],
        SIGNED + "=",
        SIGNED[:-1],
        "====",
        "A===",
        "*" + SIGNED[1:],
    ],
    ids=lambda b: repr(b[-12:]),
)
def test_body_spellings_get_the_official_verdict(body: str) -> None:
    data = (
        '<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO" Body="'
        + body.replace("\n", "&#10;")
        + '"/>'
    ).encode()
    assert verdict(data) is official(data)


def test_canonical_body_decodes_to_the_sealed_bytes() -> None:
    data = f'<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO" Body="{SIGNED}"/>'
    signed = envelope.parse_envelope(data.encode())
    assert signed.sealed == base64.b64decode(SIGNED)
