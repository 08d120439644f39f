"""The inbound decision of the core, without a server: every refusal of the spec's error table
(message-transport-mechanism.md, "Error handling") with its HTTP status, in its order, and the
protocol checks that end in a Rejected response (message-validation.md).

`tests/test_server.py` holds the same table against a running endpoint, for what the edge
adds: reading the body, the directory, the rate, the store and the 200.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from nacl.bindings import crypto_sign_keypair

from adapter.uftp import codec, envelope, inbound
from adapter.uftp.errors import (
    BadContentType,
    InvalidSignature,
    InvalidXml,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedContentEncoding,
)
from adapter.uftp.inbound import Receiver, RequestHead
from adapter.uftp.messages import DSOPortfolioUpdate, Role

from . import samples

DSO, CRO = samples.DSO_DOMAIN, samples.CRO_DOMAIN
CAP = 10_000
NOW = samples.TIME_STAMP
CRO_V3 = Receiver(CRO, Role.CRO, ("3.0.0", "3.1.0"))


@dataclasses.dataclass(frozen=True)
class Keys:
    """What a directory returns for a sender (`inbound.SenderKeys`)."""

    signing_keys: tuple[bytes, ...]
    barred: bool = False


@pytest.fixture(scope="module")
def dso_keys() -> tuple[bytes, bytes]:
    public, secret = crypto_sign_keypair()
    return public, secret


def sealed(message: DSOPortfolioUpdate, secret: bytes, *, role: Role = Role.DSO) -> bytes:
    return envelope.seal(codec.encode(message), secret, message.sender_domain, role)


def head(
    length: int | None = 100, content_type: str | None = "text/xml", **rest: object
) -> RequestHead:
    return RequestHead(length, content_type, **rest)  # type: ignore[arg-type]


# -- the request's head: 411, 400, 415, 413 ---------------------------------------------------


def test_a_request_without_content_length_is_411() -> None:
    with pytest.raises(LengthRequired) as refused:
        inbound.check_transport(head(None), max_body_bytes=CAP)
    assert refused.value.status == 411


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("application/json", None),
        ("text/plain", None),
        ("text/xml", "iso-8859-1"),
        ("text/xml", "utf-16"),
        (None, None),
    ],
)
def test_another_content_type_or_charset_is_400(
    content_type: str | None, charset: str | None
) -> None:
    with pytest.raises(BadContentType) as refused:
        inbound.check_transport(
            head(content_type=content_type, charset=charset), max_body_bytes=CAP
        )
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [("text/xml", None), ("application/xml", None), ("text/xml", "UTF-8"), ("TEXT/XML", "utf_8")],
)
def test_xml_in_utf_8_passes(content_type: str, charset: str | None) -> None:
    inbound.check_transport(head(content_type=content_type, charset=charset), max_body_bytes=CAP)


@pytest.mark.parametrize("codings", [("gzip",), ("identity, deflate",), ("identity", "br")])
def test_a_content_coding_is_415_with_what_would_do(codings: tuple[str, ...]) -> None:
    with pytest.raises(UnsupportedContentEncoding) as refused:
        inbound.check_transport(head(content_encodings=codings), max_body_bytes=CAP)
    assert refused.value.status == 415
    assert dict(refused.value.headers) == {"Accept-Encoding": "identity"}


def test_identity_is_no_coding() -> None:
    inbound.check_transport(head(content_encodings=("identity", " IDENTITY ")), max_body_bytes=CAP)


def test_a_body_over_the_cap_is_413_and_one_at_it_passes() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        inbound.check_transport(head(CAP + 1), max_body_bytes=CAP)
    assert refused.value.status == 413
    inbound.check_transport(head(CAP), max_body_bytes=CAP)


def test_the_head_is_judged_in_the_order_of_the_table() -> None:
    """A request wrong in every way is refused for the first row: the length."""
    everything_wrong = head(None, "text/plain", content_encodings=("gzip",))
    with pytest.raises(LengthRequired):
        inbound.check_transport(everything_wrong, max_body_bytes=CAP)
    with pytest.raises(BadContentType):
        inbound.check_transport(
            head(CAP + 1, "text/plain", content_encodings=("gzip",)), max_body_bytes=CAP
        )


# -- the wrapper, the keys, the signature, the inner message: 400, 401 ------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml", b"<SignedMessage", b"<Other/>", b'<SignedMessage SenderDomain="x" />'],
    ids=["empty", "text", "truncated", "wrong-root", "schema-invalid"],
)
def test_a_malformed_envelope_is_400(body: bytes) -> None:
    with pytest.raises(InvalidXml) as refused:
        inbound.read_envelope(body)
    assert refused.value.status == 400


def test_the_envelope_names_its_sender_before_anything_is_verified(
    dso_keys: tuple[bytes, bytes],
) -> None:
    signed = inbound.read_envelope(sealed(samples.make_dso_portfolio_update(), dso_keys[1]))
    assert (signed.sender_domain, signed.sender_role) == (DSO, Role.DSO)


def test_an_unknown_sender_is_401(dso_keys: tuple[bytes, bytes]) -> None:
    signed = inbound.read_envelope(sealed(samples.make_dso_portfolio_update(), dso_keys[1]))
    with pytest.raises(InvalidSignature, match="unknown sender") as refused:
        inbound.open_message(signed, None)
    assert refused.value.status == 401


def test_a_signature_by_another_key_is_401(dso_keys: tuple[bytes, bytes]) -> None:
    _, impostor = crypto_sign_keypair()
    signed = inbound.read_envelope(sealed(samples.make_dso_portfolio_update(), impostor))
    with pytest.raises(InvalidSignature) as refused:
        inbound.open_message(signed, Keys((dso_keys[0],)))
    assert refused.value.status == 401


def test_either_key_verifies_while_the_sender_rotates(dso_keys: tuple[bytes, bytes]) -> None:
    new_public, new_secret = crypto_sign_keypair()
    message = samples.make_dso_portfolio_update()
    signed = inbound.read_envelope(sealed(message, new_secret))
    opened = inbound.open_message(signed, Keys((dso_keys[0], new_public)))
    assert opened.message == message


def test_a_schema_invalid_inner_message_is_400_after_the_signature(
    dso_keys: tuple[bytes, bytes],
) -> None:
    inner = codec.encode(samples.make_dso_portfolio_update()).replace(
        b'TimeZone="Europe/Amsterdam"', b'TimeZone="Mars/Olympus"'
    )
    signed = inbound.read_envelope(envelope.seal(inner, dso_keys[1], DSO, Role.DSO))
    with pytest.raises(InvalidXml, match="TimeZone") as refused:
        inbound.open_message(signed, Keys((dso_keys[0],)))
    assert refused.value.status == 400
    # The same bytes signed by someone else are refused for the signature, unread.
    _, impostor = crypto_sign_keypair()
    forged = inbound.read_envelope(envelope.seal(inner, impostor, DSO, Role.DSO))
    with pytest.raises(InvalidSignature):
        inbound.open_message(forged, Keys((dso_keys[0],)))


def test_an_opened_message_carries_what_the_store_needs(dso_keys: tuple[bytes, bytes]) -> None:
    message = samples.make_dso_portfolio_update()
    inner = codec.encode(message)
    signed = inbound.read_envelope(envelope.seal(inner, dso_keys[1], DSO, Role.DSO))
    opened = inbound.open_message(signed, Keys((dso_keys[0],), barred=True))
    assert opened.inner_xml == inner and opened.message == message
    assert (opened.sender_domain, opened.sender_role, opened.barred) == (DSO, Role.DSO, True)
    changed = inbound.open_message(
        inbound.read_envelope(envelope.seal(inner + b" ", dso_keys[1], DSO, Role.DSO)),
        Keys((dso_keys[0],)),
    )
    assert changed.content_hash != opened.content_hash  # "the same message": the same bytes


# -- the protocol checks: a Rejected response ---------------------------------------------------


def opened(
    dso_keys: tuple[bytes, bytes], *, barred: bool = False, role: Role = Role.DSO, **changes: object
) -> inbound.Opened:
    message = samples.make_dso_portfolio_update(**changes)
    signed = inbound.read_envelope(envelope.seal(codec.encode(message), dso_keys[1], DSO, role))
    return inbound.open_message(signed, Keys((dso_keys[0],), barred=barred))


def test_a_message_as_it_should_be_has_no_rejections(dso_keys: tuple[bytes, bytes]) -> None:
    assert inbound.rejections(opened(dso_keys), CRO_V3, now=NOW) == ()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sender_domain": "dso2.example.com"}, "Mismatch SenderDomain"),
        ({"recipient_domain": "cro2.example.com"}, "Unknown RecipientDomain"),
        ({"version": "4.0.0"}, "Unsupported Version"),
    ],
)
def test_a_checked_field_is_rejected_with_its_reason(
    dso_keys: tuple[bytes, bytes], changes: dict[str, object], reason: str
) -> None:
    assert inbound.rejections(opened(dso_keys, **changes), CRO_V3, now=NOW) == (reason,)


def test_a_sender_in_a_role_that_may_not_send_the_type_is_rejected(
    dso_keys: tuple[bytes, bytes],
) -> None:
    assert inbound.rejections(opened(dso_keys, role=Role.AGR), CRO_V3, now=NOW) == (
        "Invalid SenderRole",
    )


def test_a_barred_sender_is_rejected(dso_keys: tuple[bytes, bytes]) -> None:
    assert inbound.rejections(opened(dso_keys, barred=True), CRO_V3, now=NOW) == ("Barred Sender",)


def test_every_reason_is_given_together(dso_keys: tuple[bytes, bytes]) -> None:
    message = opened(
        dso_keys, sender_domain="dso2.example.com", recipient_domain="cro2.example.com"
    )
    assert inbound.rejections(message, CRO_V3, now=NOW) == (
        "Mismatch SenderDomain",
        "Unknown RecipientDomain",
    )


def test_each_major_version_is_accepted_on_its_own_path(dso_keys: tuple[bytes, bytes]) -> None:
    ours = ("3.1.0", "4.0.0")
    v3 = Receiver.on_path(CRO, Role.CRO, ours, 3)
    v4 = Receiver.on_path(CRO, Role.CRO, ours, 4)
    assert (v3.versions, v4.versions) == (("3.1.0",), ("4.0.0",))
    draft = opened(dso_keys, version="4.0.0")
    assert inbound.rejections(draft, v4, now=NOW) == ()
    assert inbound.rejections(draft, v3, now=NOW) == ("Unsupported Version",)
    assert inbound.message_path(4) == "/shapeshifter/api/v4/message"


def test_a_time_stamp_outside_the_window_is_rejected(dso_keys: tuple[bytes, bytes]) -> None:
    window = (timedelta(hours=1), timedelta(minutes=15))
    receiver = dataclasses.replace(CRO_V3, time_stamp_window=window)
    message = opened(dso_keys)
    assert inbound.rejections(message, receiver, now=NOW + timedelta(minutes=59)) == ()
    assert inbound.rejections(message, receiver, now=NOW + timedelta(hours=2)) == (
        "TimeStamp out of bounds",
    )
    assert inbound.rejections(message, receiver, now=NOW - timedelta(minutes=16)) == (
        "TimeStamp out of bounds",
    )
