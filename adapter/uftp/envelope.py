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
from typing import cast

from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_open
from nacl.exceptions import BadSignatureError

from .errors import InvalidSignature, InvalidXml
from .messages import Role
from .xml import SCHEMAS, attr, locate_attribute, parse_xml

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


#: The attributes a SignedMessage may carry: its three, and those XML Schema lets any element
#: carry (the schema judges their values).
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
ENVELOPE_ATTRIBUTES = frozenset(
    {"SenderDomain", "SenderRole", "Body"}
    | {_XSI + name for name in ("type", "nil", "schemaLocation", "noNamespaceSchemaLocation")}
)
#: How many bytes a SignedMessage document may hold besides its Body's value: the XML
#: declaration, the element with its SenderDomain and SenderRole, and room to spare. The
#: wrapper is one element with attributes and no content, so anything larger is a document
#: made to cost its reader (millions of child elements or attributes), refused unread.
MAX_BESIDES_BODY = 16 * 1024
#: White space as XML has it; xs:base64Binary allows it between the characters.
_XML_SPACE = b" \t\r\n"
#: A character reference to white space, which is white space in an attribute value too.
_SPACE_REFERENCE = re.compile(rb"&#(?:[xX]0*(?:9|[aAdD]|20)|0*(?:9|10|13|32));")


def parse_envelope(data: bytes) -> SignedMessage:
    """Parse and schema-validate a SignedMessage document; the Body stays sealed.

    The Body's value is found in the raw bytes and decoded from them; the parser and the
    schema read the rest of the document, with an empty Body, and only once it is known to be
    small. So no part of the document costs more than its own size in memory, and the time
    to refuse it does not grow with what it holds besides the Body.

    Raises `InvalidXml` (HTTP 400) for anything malformed, forbidden or not schema-valid.
    """
    located = locate_attribute(data, b"Body", limit=MAX_BESIDES_BODY)
    if located.root is not None and located.root != "SignedMessage":
        raise InvalidXml(f"expected a SignedMessage, got <{located.root[:100]}>")
    value = located.value
    besides = len(data) - (0 if value is None else value.stop - value.start)
    if besides > MAX_BESIDES_BODY:
        raise InvalidXml(
            f"a SignedMessage holds its three attributes and nothing else: {besides} bytes "
            f"besides the Body, more than {MAX_BESIDES_BODY}"
        )
    root = parse_xml(data if value is None else data[: value.start] + data[value.stop :])
    if root.tag != "SignedMessage":
        raise InvalidXml(f"expected a SignedMessage, got <{root.tag}>")
    if len(root):
        raise InvalidXml("a SignedMessage has no child elements")
    # Checked before anything copies them; the schema would refuse them too. (An lxml
    # element iterates over its children: `keys()` are its attribute names.)
    # (Names are str in Python 3; the stub's `keys()` also allows bytes, hence the cast.)
    names = cast(list[str], root.keys())
    unexpected = [name for name in names if name not in ENVELOPE_ATTRIBUTES]
    if unexpected:
        raise InvalidXml(
            f"a SignedMessage has no attribute {unexpected[0][:100]}"
            + (f" (nor {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    SCHEMAS.latest.validate_root(root)
    if value is None:
        # Not found in the bytes (a start tag written in a way `locate_attribute` leaves
        # to the parser): small, then, and read as the parser read it.
        body = root.get("Body", "").encode("utf-8")
        sealed = _decode_base64(body, slice(0, len(body)))
    elif root.get("Body") != "":
        raise InvalidXml("not well-formed XML: the Body attribute is not where it was found")
    else:
        sealed = _decode_base64(data, value)
    if len(sealed) < SIGNATURE_BYTES:
        # Schema-valid (an empty Body is valid base64Binary) but cannot be unsealed: the spec
        # answers a message that crypto_sign_open cannot open with 401.
        raise InvalidSignature("the Body is shorter than a signature")
    return SignedMessage(root.get("SenderDomain", ""), Role(root.get("SenderRole", "")), sealed)


def _decode_base64(data: bytes, value: slice) -> bytes:
    """Decode the Body, `data[value]` as written, as xs:base64Binary, or raise `InvalidXml`.

    Every implementation writes canonical base64, which is decoded where it lies. The schema
    type also allows white space between the characters (it collapses it, so any amount),
    written as is or as character references, as MIME-style encoders wrap lines: that is
    removed first. Other references are not base64 characters in any writer's output and
    are refused with everything else that is not base64.
    """
    sealed = _canonical_base64(memoryview(data)[value])
    if sealed is None:
        sealed = _decode_spaced(data, value)
    if sealed is None:
        raise InvalidXml("the Body is not base64 (xs:base64Binary)")
    return sealed


def _decode_spaced(data: bytes, value: slice) -> bytes | None:
    """Base64 with white space between its characters, decoded a piece at a time so that the
    copies this makes stay small beside the document; None when it is not base64."""
    parts: list[bytes] = []
    carry = b""
    padded = False
    pos = value.start
    while pos < value.stop:
        end = min(pos + _PIECE, value.stop)
        reference = data.rfind(b"&", pos, end)
        if end < value.stop and reference > pos and data.find(b";", reference, end) < 0:
            end = reference  # the next piece reads that reference whole
        text = data[pos:end]
        if b"&" in text:
            text = _SPACE_REFERENCE.sub(b"", text)
        text = carry + text.translate(None, _XML_SPACE)
        whole = len(text) - len(text) % 4
        text, carry = text[:whole], text[whole:]
        if text:
            decoded = None if padded else _canonical_base64(text)
            if decoded is None:
                return None
            parts.append(decoded)
            padded = text.endswith(b"=")
        pos = end
    return None if carry else b"".join(parts)


#: How much of a Body `_decode_spaced` copies at a time.
_PIECE = 1024 * 1024


def _canonical_base64(text: bytes | memoryview) -> bytes | None:
    """Decode `text` if it is canonical base64 (no whitespace, padding right, unused bits
    zero as xs:base64Binary requires of the last character); None otherwise."""
    try:
        decoded = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    tail = bytes(text[-3:])
    if tail.endswith(b"=="):
        return decoded if tail[:1] in b"AQgw" else None
    if tail.endswith(b"="):
        return decoded if tail[1:2] in b"AEIMQUYcgkosw048" else None
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
