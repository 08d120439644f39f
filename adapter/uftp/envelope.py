"""SignedMessage: the wrapper every UFTP message travels in (spec: signed-message.md).

Cryptographic Scheme 1 (spec: message-transport-mechanism.md, "Cryptographic Scheme"): the
sender runs NaCl `crypto_sign` (Ed25519) over the inner XML with its private signing key; the
opaque result (64-byte signature followed by the message) goes base64-encoded into the Body
attribute. The receiver runs `crypto_sign_open` with the sender's public signing key, which
verifies and returns the plaintext in one call, so an unverified message can never be read by
accident. This module never looks inside the Body before that call succeeds.

Public keys are exchanged as `cs1.` strings: base64 of the 32-byte signing key followed by the
32-byte encryption key. Participants that only sign publish the 32-byte form; both are read.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode, b64encode
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_open
from nacl.exceptions import BadSignatureError

from .errors import InvalidSignature, InvalidXml
from .messages import Role
from .xml import SCHEMAS, attr, parse_xml

CS1_PREFIX = "cs1."
#: InternetDomainType of the schema.
_DOMAIN = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}")
SIGNING_KEY_BYTES = 32
#: A sealed message is the signature followed by the message itself.
SIGNATURE_BYTES = crypto_sign_BYTES
#: libsodium's secret key: 32-byte seed followed by the 32-byte public key.
SECRET_KEY_BYTES = 64


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """A participant's published keys: the one that verifies, and optionally the one that
    encrypts (unused by UFTP messages today, kept so that a cs1 string round-trips)."""

    signing: bytes
    encryption: bytes | None = None

    def to_cs1(self) -> str:
        return format_cs1(self.signing, self.encryption)


def format_cs1(signing: bytes, encryption: bytes | None = None) -> str:
    """The cs1 string of a signing key, or of a signing key followed by an encryption key."""
    if len(signing) != SIGNING_KEY_BYTES:
        raise ValueError(f"a signing key has {SIGNING_KEY_BYTES} bytes, not {len(signing)}")
    raw = signing
    if encryption is not None:
        if len(encryption) != SIGNING_KEY_BYTES:
            raise ValueError(f"an encryption key has 32 bytes, not {len(encryption)}")
        raw += encryption
    return CS1_PREFIX + b64encode(raw).decode("ascii")


def parse_cs1(text: str) -> PublicKeys:
    """Read a cs1 public key string (32 or 64 bytes once decoded)."""
    text = text.strip()
    if not text.startswith(CS1_PREFIX):
        raise ValueError("a public key string starts with 'cs1.'")
    try:
        raw = b64decode(text[len(CS1_PREFIX) :], validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError; so are non-ASCII characters
        raise ValueError(f"the cs1 key is not valid base64: {exc}") from None
    if len(raw) == SIGNING_KEY_BYTES:
        return PublicKeys(raw)
    if len(raw) == 2 * SIGNING_KEY_BYTES:
        return PublicKeys(raw[:SIGNING_KEY_BYTES], raw[SIGNING_KEY_BYTES:])
    raise ValueError(f"a cs1 key holds 32 or 64 bytes, this one holds {len(raw)}")


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """The parsed wrapper. `sealed` is the decoded Body: signature + inner XML, unverified."""

    sender_domain: str
    sender_role: Role
    sealed: bytes


def seal(inner_xml: bytes, secret_key: bytes, sender_domain: str, sender_role: Role) -> bytes:
    """Sign `inner_xml` and wrap it in a SignedMessage document, ready to POST.

    `secret_key` is libsodium's 64-byte signing secret key (seed + public key).
    """
    if len(secret_key) != SECRET_KEY_BYTES:
        raise ValueError(f"a signing secret key has {SECRET_KEY_BYTES} bytes")
    if _DOMAIN.fullmatch(sender_domain) is None:
        raise ValueError(f"not an InternetDomain: {sender_domain!r}")
    body = b64encode(crypto_sign(inner_xml, secret_key))
    return b"".join(
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<SignedMessage SenderDomain="',
            attr(sender_domain).encode("utf-8"),
            b'" SenderRole="',
            str(sender_role).encode("ascii"),
            b'" Body="',
            body,
            b'"/>',
        )
    )


def parse_envelope(data: bytes) -> SignedMessage:
    """Parse and schema-validate a SignedMessage document; the Body stays sealed.

    Raises `InvalidXml` (HTTP 400) for anything malformed, forbidden or not schema-valid.
    """
    root = parse_xml(data, huge=True)
    if root.tag != "SignedMessage":
        raise InvalidXml(f"expected a SignedMessage, got <{root.tag}>")
    if len(root):
        raise InvalidXml("a SignedMessage has no child elements")
    body = root.get("Body")
    sealed = _canonical_base64(body) if body else None
    if sealed is None:
        # Not the canonical base64 every implementation writes: let the schema judge the
        # whole document (it allows spaces inside base64Binary), then decode leniently.
        SCHEMAS.latest.validate_root(root)
        try:
            sealed = b64decode(body or "")
        except (binascii.Error, ValueError) as exc:
            raise InvalidXml(f"the Body is not base64: {exc}") from None
    else:
        # The Body is checked; the schema checks everything else on a copy without the
        # 10 MB attribute, which would otherwise cost it tens of milliseconds to re-scan.
        stand_in = etree.Element(root.tag, dict(root.attrib, Body=""))
        stand_in.text = root.text
        SCHEMAS.latest.validate_root(stand_in)
    if len(sealed) < SIGNATURE_BYTES:
        # Schema-valid (an empty Body is valid base64Binary) but cannot be unsealed: the spec
        # answers a message that crypto_sign_open cannot open with 401.
        raise InvalidSignature("the Body is shorter than a signature")
    return SignedMessage(root.get("SenderDomain", ""), Role(root.get("SenderRole")), sealed)


def _canonical_base64(text: str) -> bytes | None:
    """Decode `text` if it is canonical base64 (no whitespace, padding right, unused bits
    zero as xs:base64Binary requires of the last character); None otherwise."""
    try:
        decoded = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if text.endswith("=="):
        return decoded if text[-3] in "AQgw" else None
    if text.endswith("="):
        return decoded if text[-2] in "AEIMQUYcgkosw048" else None
    return decoded


def open_sealed(sealed: bytes, signing_keys: Iterable[bytes]) -> bytes:
    """Verify `sealed` against each of the sender's current signing keys; the inner XML.

    Several keys are tried because the spec asks a participant rotating its key to publish
    the old and the new one side by side for a while (transport mechanism, footnote 17).
    Raises `InvalidSignature` (HTTP 401) when no key verifies.
    """
    tried = 0
    for key in signing_keys:
        tried += 1
        try:
            return crypto_sign_open(sealed, key)
        except BadSignatureError:
            continue
    if not tried:
        raise InvalidSignature("no public key is known for the sender")
    raise InvalidSignature(f"the signature verifies with none of the sender's {tried} key(s)")
