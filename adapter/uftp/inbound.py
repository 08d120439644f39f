"""The inbound decision, without I/O: what a POSTed request is, in the order of the spec's
error table (message-transport-mechanism.md, "Error handling"), and what it may not go on to.

The decision is a few steps, because between them the caller does what only it can: read the
body (within its own budget and timeout), ask a directory for the sender's keys (which may
take a network round trip), count the sender's rate. An HTTP server drives them like this::

    check_transport(head, max_body_bytes=...)  # 411 / 400 / 415 / 413
    body = <read Content-Length bytes>            # (the server: 503, 408, 400)
    signed = read_envelope(body)                  # 400 / 401: the wrapper, unverified
    keys = <look up signed.sender_domain, signed.sender_role>   # (the server: 419)
    opened = open_message(signed, keys)           # 401 / 400: verified, then parsed
    <the sender's rate>                           # (the server: 429)
    reasons = rejections(opened, receiver, now=...)   # for a Rejected response, after the 200

A step that refuses raises the `TransportError` that carries its HTTP status; the reasons of
the last step are answered with HTTP 200 and a Rejected response instead (message-validation.md),
once the message is stored. Nothing here knows of aiohttp, the store or the clock: the caller
gives the request's head as plain values and the time as a value, so that every rule can be
tested with bytes in and a decision out (tests/uftp/test_inbound.py, fuzz/fuzz_inbound.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from . import codec, envelope
from .codec import Bulk
from .envelope import SignedMessage
from .errors import (
    BadContentType,
    InvalidSignature,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedContentEncoding,
)
from .messages import PayloadMessage, Role
from .rules import protocol_rejections

__all__ = [
    "ACCEPTED_CONTENT_TYPES",
    "Opened",
    "Receiver",
    "RequestHead",
    "SenderKeys",
    "check_transport",
    "major",
    "message_path",
    "open_message",
    "read_envelope",
    "rejections",
]

#: The spec sends text/xml; application/xml is the same media type by another name.
ACCEPTED_CONTENT_TYPES = frozenset({"text/xml", "application/xml"})


def major(version: str) -> int:
    """The major number of a Version ("3.1.0" -> 3)."""
    return int(version.split(".")[0])


def message_path(version_major: int) -> str:
    """URL path for a major Version (spec: "Version coupled to URL")."""
    return f"/shapeshifter/api/v{version_major}/message"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the transport checks read of a request: its headers, as plain values."""

    #: The Content-Length header; None when the request has none (sent chunked).
    content_length: int | None
    #: The media type of the Content-Type header, without its parameters.
    content_type: str | None
    #: The charset parameter of the Content-Type header, if any.
    charset: str | None = None
    #: Every Content-Encoding header, as sent (each may list several codings).
    content_encodings: tuple[str, ...] = ()


def check_transport(head: RequestHead, *, max_body_bytes: int) -> None:
    """Refuse a request whose head alone disqualifies it, before its body is read.

    Raises, in the order of the spec's table: `LengthRequired` (411), `BadContentType` (400),
    `UnsupportedContentEncoding` (415: the spec defines no content coding, and a body is read
    as it was sent, never inflated beyond what the cap counts), `PayloadTooLarge` (413).
    """
    if head.content_length is None:
        raise LengthRequired("Content-Length is required")
    content_type = (head.content_type or "").lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise BadContentType(f"Content-Type must be text/xml, not {head.content_type}")
    charset = head.charset
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise BadContentType(f"the charset must be UTF-8, not {charset}")
    codings = [
        coding.strip().lower() for header in head.content_encodings for coding in header.split(",")
    ]
    if any(coding not in ("", "identity") for coding in codings):
        raise UnsupportedContentEncoding(
            f"Content-Encoding must be identity, not {', '.join(codings)}"
        )
    if head.content_length > max_body_bytes:
        raise PayloadTooLarge(f"the body exceeds {max_body_bytes} bytes")


def read_envelope(body: bytes) -> SignedMessage:
    """The SignedMessage wrapper of a request body, its Body still sealed (unverified).

    Raises `InvalidXml` (400) for a malformed, forbidden or schema-invalid wrapper, and
    `InvalidSignature` (401) for a Body too short to hold a signature. See
    `envelope.parse_envelope`, which does the reading.
    """
    return envelope.parse_envelope(body)


class SenderKeys(Protocol):
    """What a directory knows of a sender that the decision needs (`directory.Peer` is one)."""

    @property
    def signing_keys(self) -> tuple[bytes, ...]:
        """Its current public signing keys: one, or two while it rotates its key."""
        ...

    @property
    def barred(self) -> bool:
        """Whether its messages are to be rejected as "Barred Sender"."""
        ...


@dataclass(frozen=True, slots=True)
class Opened:
    """A message whose signature verified and which is schema-valid: trusted to be what its
    sender sent, not yet judged by the protocol checks."""

    #: From the SignedMessage: who signed it.
    sender_domain: str
    sender_role: Role
    #: The verified inner XML, as signed.
    inner_xml: bytes
    message: PayloadMessage
    #: SHA-256 of the inner XML: what "the same message" means for duplicates.
    content_hash: bytes
    #: Whether the directory bars this sender.
    barred: bool


def open_message(
    signed: SignedMessage, keys: SenderKeys | None, *, bulk: Bulk | None = None
) -> Opened:
    """Verify `signed` with the sender's `keys` (None: the directory does not know it), then
    parse and validate the inner message: nothing inside the Body is read before the
    signature checks out (signed-message.md).

    Raises `InvalidSignature` (401) for an unknown sender or a signature none of its keys
    verifies, `InvalidXml` (400) for an inner message that is not schema-valid in its
    Version. `bulk` is the help the caller lends to read a large message faster
    (`codec.Bulk`: a thread, a paused collector); the core takes none of its own.
    """
    if keys is None:
        raise InvalidSignature(
            f"unknown sender {signed.sender_domain} in role {signed.sender_role}"
        )
    inner = envelope.open_sealed(signed.sealed, keys.signing_keys)
    message = codec.decode(inner, bulk=bulk)
    digest = hashlib.sha256(inner).digest()
    return Opened(signed.sender_domain, signed.sender_role, inner, message, digest, keys.barred)


@dataclass(frozen=True, slots=True)
class Receiver:
    """The participant a message must be addressed to, as the protocol checks see it."""

    domain: str
    role: Role
    #: The Versions accepted on the URL path the message came by: each major Version has its
    #: own path (spec: "Version coupled to URL"), so a 4.x message on the v3 path is refused.
    versions: tuple[str, ...]
    #: (how old, how far ahead) a TimeStamp may be; None: any.
    time_stamp_window: tuple[timedelta, timedelta] | None = None

    @classmethod
    def on_path(
        cls,
        domain: str,
        role: Role,
        versions: Iterable[str],
        version_major: int,
        time_stamp_window: tuple[timedelta, timedelta] | None = None,
    ) -> Receiver:
        """The receiver on the path of `version_major`, of the Versions we speak."""
        on_path = tuple(v for v in versions if major(v) == version_major)
        return cls(domain, role, on_path, time_stamp_window)


def rejections(opened: Opened, receiver: Receiver, *, now: datetime) -> tuple[str, ...]:
    """The reasons to reject `opened` with, in a response rather than an HTTP error; empty
    when it may go to its handler. See `rules.protocol_rejections`."""
    return tuple(
        protocol_rejections(
            opened.message,
            envelope_sender_domain=opened.sender_domain,
            envelope_sender_role=opened.sender_role,
            own_domain=receiver.domain,
            own_role=receiver.role,
            supported_versions=receiver.versions,
            barred=opened.barred,
            now=now,
            time_stamp_window=receiver.time_stamp_window,
        )
    )
