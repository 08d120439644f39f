"""SignedMessage and Cryptographic Scheme 1: sealing, unsealing, the wrapper's schema, and
the `cs1.` public key strings (spec: signed-message.md, message-transport-mechanism.md).

The HTTP status each refusal maps to is part of the contract: 400 for anything that is not
a schema-valid SignedMessage, 401 for anything `crypto_sign_open` cannot open.
"""

from __future__ import annotations

import base64

import nacl.signing
import pytest
from lxml import etree
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_keypair

from adapter.uftp import codec
from adapter.uftp.envelope import (
    PublicKeys,
    SignedMessage,
    format_cs1,
    open_sealed,
    parse_cs1,
    parse_envelope,
    seal,
)
from adapter.uftp.errors import InvalidSignature, InvalidXml
from adapter.uftp.messages import PayloadMessage, Role
from tests import official_xsd

from . import samples

#: Where the official schemas are: UFTP_OFFICIAL_XSD_DIR (tests/official_xsd.py).
OFFICIAL_XSD_DIR = official_xsd.directory()

KeyPair = tuple[bytes, bytes]

#: The example public key string of message-transport-mechanism.md.
SPEC_CS1 = (
    "cs1.V4lZrkYHq8FzneXxUML+QEMXMul3tBm+gPGoVDIZBA92VoWTu8/kRu2Zx72XOm1i/qwwoSgXjqSAqSa43myCaQ=="
)


def inner_xml(version: str = "3.1.0") -> bytes:
    return codec.encode(samples.make_dso_portfolio_update(version))


def body_of(document: bytes) -> str:
    body: str | None = etree.fromstring(document).get("Body")
    assert body is not None
    return body


def wrapper(body: str, domain: str = samples.DSO_DOMAIN, role: str = "DSO") -> bytes:
    return (f'<SignedMessage SenderDomain="{domain}" SenderRole="{role}" Body="{body}"/>').encode()


# ============================================================================================
# Seal and open
# ============================================================================================


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_seal_parse_open_round_trip(role: Role, keypair: KeyPair) -> None:
    public, secret = keypair
    inner = inner_xml()
    document = seal(inner, secret, samples.DSO_DOMAIN, role)
    wrapped = parse_envelope(document)
    assert wrapped == SignedMessage(samples.DSO_DOMAIN, role, wrapped.sealed)
    assert open_sealed(wrapped.sealed, [public]) == inner


def test_every_sample_message_survives_the_envelope(
    sample_message: PayloadMessage, keypair: KeyPair
) -> None:
    public, secret = keypair
    document = seal(codec.encode(sample_message), secret, sample_message.sender_domain, Role.CRO)
    unsealed = open_sealed(parse_envelope(document).sealed, [public])
    assert codec.decode(unsealed) == sample_message


def test_body_is_base64_of_crypto_sign(keypair: KeyPair) -> None:
    public, secret = keypair
    inner = inner_xml()
    sealed = base64.b64decode(body_of(seal(inner, secret, samples.DSO_DOMAIN, Role.DSO)))
    # NaCl crypto_sign: the 64-byte Ed25519 signature, then the message itself.
    assert sealed == crypto_sign(inner, secret)
    signature, message = sealed[:crypto_sign_BYTES], sealed[crypto_sign_BYTES:]
    assert message == inner
    signing_key = nacl.signing.SigningKey(secret[:32])
    assert signature == signing_key.sign(inner).signature
    # Any other NaCl implementation opens it with the public key alone.
    assert nacl.signing.VerifyKey(public).verify(sealed) == inner


def test_sealing_is_deterministic(keypair: KeyPair) -> None:
    _, secret = keypair
    inner = inner_xml()
    first = seal(inner, secret, samples.DSO_DOMAIN, Role.DSO)
    assert seal(inner, secret, samples.DSO_DOMAIN, Role.DSO) == first


def test_sealed_document_is_a_utf8_signed_message(keypair: KeyPair) -> None:
    _, secret = keypair
    document = seal(inner_xml(), secret, samples.DSO_DOMAIN, Role.DSO)
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(document)
    assert root.tag == "SignedMessage"
    assert dict(root.attrib) == {
        "SenderDomain": samples.DSO_DOMAIN,
        "SenderRole": "DSO",
        "Body": body_of(document),
    }
    assert len(root) == 0


@official_xsd.needs_official_xsd
@pytest.mark.parametrize("subdir", list(official_xsd.VERSION_DIRS.values()))
def test_sealed_document_is_valid_against_the_official_schema(
    subdir: str, keypair: KeyPair
) -> None:
    _, secret = keypair
    schema = etree.XMLSchema(etree.parse(str(OFFICIAL_XSD_DIR / subdir / "UFTP-common.xsd")))
    document = seal(inner_xml(), secret, samples.CRO_DOMAIN, Role.CRO)
    assert schema.validate(etree.fromstring(document)), str(schema.error_log)


def test_open_with_the_second_of_two_keys_during_rotation(
    keypair: KeyPair, other_keypair: KeyPair
) -> None:
    old_public, _ = keypair
    new_public, new_secret = other_keypair
    inner = inner_xml()
    sealed = parse_envelope(seal(inner, new_secret, samples.DSO_DOMAIN, Role.DSO)).sealed
    assert open_sealed(sealed, [old_public, new_public]) == inner
    assert open_sealed(sealed, [new_public, old_public]) == inner
    # Keys may come from any iterable, e.g. a generator over a key store.
    assert open_sealed(sealed, (key for key in (old_public, new_public))) == inner


def test_wrong_key_is_invalid_signature(keypair: KeyPair, other_keypair: KeyPair) -> None:
    _, secret = keypair
    impostor_public, _ = other_keypair
    sealed = parse_envelope(seal(inner_xml(), secret, samples.DSO_DOMAIN, Role.DSO)).sealed
    with pytest.raises(InvalidSignature) as caught:
        open_sealed(sealed, [impostor_public])
    assert caught.value.status == 401
    assert not caught.value.temporary


def test_no_keys_is_invalid_signature(keypair: KeyPair) -> None:
    _, secret = keypair
    sealed = parse_envelope(seal(inner_xml(), secret, samples.DSO_DOMAIN, Role.DSO)).sealed
    with pytest.raises(InvalidSignature, match="no public key") as caught:
        open_sealed(sealed, [])
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "offset",
    [0, 31, crypto_sign_BYTES - 1, crypto_sign_BYTES, crypto_sign_BYTES + 100, -1],
    ids=[
        "signature-first-byte",
        "signature-middle",
        "signature-last-byte",
        "message-first-byte",
        "message-middle",
        "message-last-byte",
    ],
)
def test_tampered_body_is_invalid_signature(offset: int, keypair: KeyPair) -> None:
    public, secret = keypair
    sealed = bytearray(
        base64.b64decode(body_of(seal(inner_xml(), secret, "dso.example.com", Role.DSO)))
    )
    sealed[offset] ^= 0x01
    # The tampered envelope is still a schema-valid SignedMessage: it fails at unsealing.
    wrapped = parse_envelope(wrapper(base64.b64encode(bytes(sealed)).decode()))
    with pytest.raises(InvalidSignature) as caught:
        open_sealed(wrapped.sealed, [public])
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "change",
    ["truncated", "extended", "signature-only", "swapped-messages"],
)
def test_reshaped_body_is_invalid_signature(change: str, keypair: KeyPair) -> None:
    public, secret = keypair
    sealed = crypto_sign(inner_xml(), secret)
    other = crypto_sign(inner_xml(samples.DRAFT), secret)
    reshaped = {
        "truncated": sealed[:-1],
        "extended": sealed + b" ",
        "signature-only": sealed[:crypto_sign_BYTES],
        "swapped-messages": sealed[:crypto_sign_BYTES] + other[crypto_sign_BYTES:],
    }[change]
    with pytest.raises(InvalidSignature):
        open_sealed(reshaped, [public])


@pytest.mark.parametrize("sealed", [b"", b"short", bytes(crypto_sign_BYTES - 1)], ids=len)
def test_open_sealed_shorter_than_a_signature_is_invalid_signature(
    sealed: bytes, keypair: KeyPair
) -> None:
    public, _ = keypair
    with pytest.raises(InvalidSignature):
        open_sealed(sealed, [public])


def test_seal_refuses_a_public_key_in_place_of_the_secret_key(keypair: KeyPair) -> None:
    public, _ = keypair
    with pytest.raises(ValueError, match="64 bytes"):
        seal(inner_xml(), public, samples.DSO_DOMAIN, Role.DSO)


# ============================================================================================
# The SignedMessage wrapper: schema and form
# ============================================================================================

VALID_BODY = base64.b64encode(bytes(range(80))).decode()
NO_DOMAIN = f'<SignedMessage SenderRole="DSO" Body="{VALID_BODY}"/>'
NO_ROLE = f'<SignedMessage SenderDomain="dso.example.com" Body="{VALID_BODY}"/>'
NO_BODY = '<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO"/>'
WITH_CHILD = (
    f'<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO" Body="{VALID_BODY}">'
    "<TestMessage/></SignedMessage>"
)
WITH_TEXT = (
    f'<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO" Body="{VALID_BODY}">'
    f"{VALID_BODY}</SignedMessage>"
)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        pytest.param(NO_DOMAIN, "SenderDomain", id="missing-sender-domain"),
        pytest.param(NO_ROLE, "SenderRole", id="missing-sender-role"),
        pytest.param(NO_BODY, "Body", id="missing-body"),
        pytest.param(wrapper(VALID_BODY, role="BRP").decode(), "SenderRole", id="role-brp"),
        pytest.param(wrapper(VALID_BODY, role="dso").decode(), "SenderRole", id="role-lowercase"),
        pytest.param(wrapper(VALID_BODY, role="").decode(), "SenderRole", id="role-empty"),
        pytest.param(
            wrapper(VALID_BODY, domain="DSO.example.com").decode(),
            "SenderDomain",
            id="domain-uppercase",
        ),
        pytest.param(
            wrapper(VALID_BODY, domain="localhost").decode(), "SenderDomain", id="domain-dotless"
        ),
        pytest.param(
            wrapper(VALID_BODY, domain="https://dso.example.com").decode(),
            "SenderDomain",
            id="domain-url",
        ),
        pytest.param(WITH_CHILD, "child", id="child-element"),
        pytest.param(WITH_TEXT, "content", id="text-content"),
        pytest.param(wrapper("not base64!").decode(), "Body", id="body-not-base64"),
        pytest.param(wrapper(VALID_BODY[:-1]).decode(), "Body", id="body-bad-length"),
        pytest.param(wrapper("QQ=Q" + VALID_BODY).decode(), "Body", id="body-bad-padding"),
        pytest.param(
            wrapper(VALID_BODY).decode().replace("/>", ' Version="3.1.0"/>'),
            "Version",
            id="extra-attribute",
        ),
        pytest.param(
            wrapper(VALID_BODY).decode().replace("<SignedMessage", '<SignedMessage xmlns="urn:x"'),
            "urn:x",
            id="foreign-namespace",
        ),
        pytest.param(
            f"<signedmessage SenderDomain='dso.example.com' SenderRole='DSO' Body='{VALID_BODY}'/>",
            "signedmessage",
            id="root-lowercase",
        ),
        pytest.param(
            codec.encode(samples.make_test_message()).decode(), "TestMessage", id="unsealed-message"
        ),
    ],
)
def test_schema_violations_are_invalid_xml(document: str, named: str) -> None:
    with pytest.raises(InvalidXml) as caught:
        parse_envelope(document.encode())
    assert named in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "body",
    ["", "QQ==", base64.b64encode(bytes(crypto_sign_BYTES - 1)).decode()],
    ids=["empty", "one-byte", "63-bytes"],
)
def test_body_too_short_to_unseal_is_invalid_signature(body: str) -> None:
    # Schema-valid (xs:base64Binary allows it) but crypto_sign_open cannot open it: the
    # spec's table answers that with 401, not 400.
    with pytest.raises(InvalidSignature) as caught:
        parse_envelope(wrapper(body))
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "separator",
    ["\n", "&#13;&#10;", " "],
    ids=["newline", "crlf-references", "space"],
)
def test_line_wrapped_base64_body_is_read(separator: str, keypair: KeyPair) -> None:
    # MIME-style encoders wrap base64 at 76 characters; xs:base64Binary allows whitespace.
    public, secret = keypair
    inner = inner_xml()
    body = base64.b64encode(crypto_sign(inner, secret)).decode()
    wrapped_body = separator.join(body[i : i + 76] for i in range(0, len(body), 76))
    wrapped = parse_envelope(wrapper(wrapped_body))
    assert open_sealed(wrapped.sealed, [public]) == inner


def test_hand_written_wrapper_in_another_lexical_style(keypair: KeyPair) -> None:
    public, secret = keypair
    inner = inner_xml()
    body = base64.b64encode(crypto_sign(inner, secret)).decode()
    document = (
        "<?xml version='1.0' encoding='utf-8'?>\n<!-- from another implementation -->\n"
        f"<SignedMessage Body='{body}'\n\tSenderRole = 'AGR'  SenderDomain='agr.example.com' >"
        "<!-- nothing here --></SignedMessage>\n"
    ).encode()
    wrapped = parse_envelope(document)
    assert (wrapped.sender_domain, wrapped.sender_role) == ("agr.example.com", Role.AGR)
    assert open_sealed(wrapped.sealed, [public]) == inner


# ============================================================================================
# cs1 public key strings
# ============================================================================================


def test_format_and_parse_the_32_byte_form(keypair: KeyPair) -> None:
    public, _ = keypair
    text = format_cs1(public)
    assert text == "cs1." + base64.b64encode(public).decode()
    assert parse_cs1(text) == PublicKeys(public)
    assert parse_cs1(text).encryption is None


def test_format_and_parse_the_64_byte_form(keypair: KeyPair) -> None:
    public, _ = keypair
    encryption = bytes(range(32))
    text = format_cs1(public, encryption)
    assert base64.b64decode(text[4:]) == public + encryption
    assert parse_cs1(text) == PublicKeys(public, encryption)


def test_parse_the_spec_example() -> None:
    keys = parse_cs1(SPEC_CS1)
    raw = base64.b64decode(SPEC_CS1[4:])
    assert keys.signing == raw[:32]
    assert keys.encryption == raw[32:]
    assert keys.to_cs1() == SPEC_CS1


@pytest.mark.parametrize("with_encryption", [False, True], ids=["32-bytes", "64-bytes"])
def test_public_keys_to_cs1_round_trip(with_encryption: bool, keypair: KeyPair) -> None:
    public, _ = keypair
    keys = PublicKeys(public, crypto_sign_keypair()[0] if with_encryption else None)
    assert parse_cs1(keys.to_cs1()) == keys


def test_parse_cs1_ignores_surrounding_whitespace() -> None:
    # As read from a DNS TXT record or a file with a trailing newline.
    assert parse_cs1(f"  {SPEC_CS1}\n") == parse_cs1(SPEC_CS1)


def test_a_key_read_from_cs1_verifies_messages(keypair: KeyPair) -> None:
    public, secret = keypair
    inner = inner_xml()
    keys = parse_cs1(format_cs1(public))
    assert open_sealed(crypto_sign(inner, secret), [keys.signing]) == inner


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param(SPEC_CS1[4:], "cs1.", id="no-prefix"),
        pytest.param("CS1." + SPEC_CS1[4:], "cs1.", id="uppercase-prefix"),
        pytest.param("cs2." + SPEC_CS1[4:], "cs1.", id="other-scheme"),
        pytest.param("cs1" + SPEC_CS1[4:], "cs1.", id="prefix-without-period"),
        pytest.param("cs1.!!!!", "base64", id="bad-characters"),
        pytest.param(SPEC_CS1.replace("+", "-").replace("/", "_"), "base64", id="urlsafe-alphabet"),
        pytest.param(SPEC_CS1.rstrip("="), "base64", id="missing-padding"),
        pytest.param("cs1.é", None, id="non-ascii"),
        pytest.param("cs1.", "0", id="empty"),
        pytest.param("cs1." + base64.b64encode(bytes(31)).decode(), "31", id="31-bytes"),
        pytest.param("cs1." + base64.b64encode(bytes(33)).decode(), "33", id="33-bytes"),
        pytest.param("cs1." + base64.b64encode(bytes(48)).decode(), "48", id="48-bytes"),
        pytest.param("cs1." + base64.b64encode(bytes(65)).decode(), "65", id="65-bytes"),
    ],
)
def test_parse_cs1_rejects(text: str, complaint: str | None) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_cs1(text)


@pytest.mark.parametrize(
    ("signing", "encryption"),
    [(bytes(31), None), (bytes(64), None), (bytes(32), bytes(31)), (bytes(32), bytes(33))],
    ids=["signing-31", "signing-64", "encryption-31", "encryption-33"],
)
def test_format_cs1_rejects_wrong_key_lengths(signing: bytes, encryption: bytes | None) -> None:
    with pytest.raises(ValueError, match="bytes"):
        format_cs1(signing, encryption)
