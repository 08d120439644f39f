"""The two ways UFTP says "no", as types.

The transport mechanism (spec: message-transport-mechanism.md, "Error handling") draws a hard
line: until the inner message has been verified and found schema-valid, a problem is answered
with an HTTP status code; after that point it is answered with HTTP 200 and a response message
whose Result is Rejected and whose RejectionReason says why (spec: message-validation.md).

`TransportError` subclasses carry their HTTP status so that the server never decides a status
from a string; `Rejection` carries RejectionReason texts so that handlers and protocol checks
never spell them twice. Both are about a peer's message; a message of our own that cannot be
sent as it stands is `InvalidOutbound`, which no peer is ever answered with (as h11 keeps
LocalProtocolError apart from RemoteProtocolError).

`AdapterError`, the root of every error the package raises on purpose, is defined here because
the core imports nothing of the rest of the package: every other module can derive from it.
`adapter.errors` lists the whole tree.
"""

from __future__ import annotations

from enum import StrEnum


class AdapterError(Exception):
    """Root of every error uftp-adapter raises on purpose: `except AdapterError` catches what
    the adapter means to raise, and nothing it raises by mistake (see `adapter.errors`)."""


class UftpError(AdapterError):
    """Base of every error the protocol core raises on purpose."""


# --------------------------------------------------------------------------------------------
# Transport errors: answered with an HTTP status, before any response message exists.
# Statuses from the table in message-transport-mechanism.md.
# --------------------------------------------------------------------------------------------


class TransportError(UftpError):
    """A problem answered with an HTTP status instead of a response message."""

    status: int = 400
    #: Temporary errors are worth retrying by the sender (spec: 419 and 429 are temporary).
    temporary: bool = False
    #: Response headers that belong to the status (e.g. what a 415 would have accepted).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        #: The answer to the peer: it may quote values of the peer's own message.
        self.detail = detail
        #: What a log may show above debug level: the detail without quoted values, which
        #: can be personal data (an EntityAddress); the detail itself where it quotes none.
        self.reason = detail if reason is None else reason


class LengthRequired(TransportError):
    """Missing Content-Length header: 411, permanent."""

    status = 411


class BadContentType(TransportError):
    """Content-Type not text/xml (or application/xml) or charset not UTF-8: 400, permanent."""

    status = 400


class UnsupportedContentEncoding(TransportError):
    """A Content-Encoding other than identity: 415, permanent.

    The spec sends the SignedMessage as it is, with its length (message-transport-mechanism.md,
    "Transmission"), and defines no content coding; a compressed body would be inflated
    beyond what the body cap counts. RFC 9110 (15.5.16) answers an unsupported content coding
    with 415 and Accept-Encoding naming the codings that would have been accepted.
    """

    status = 415
    headers = (("Accept-Encoding", "identity"),)


class PayloadTooLarge(TransportError):
    """Body over the receiver's configured cap: 413."""

    status = 413


class RequestTimeout(TransportError):
    """The body did not arrive within the read timeout: 408, temporary."""

    status = 408
    temporary = True


class BodyIncomplete(TransportError):
    """The sender closed the connection before its body was complete: 400 (if anyone is
    still there to read it)."""

    status = 400


class RateLimited(TransportError):
    """Sender over the receiver's rate policy: 429, temporary."""

    status = 429
    temporary = True


class ServerBusy(TransportError):
    """Our capacity for request bodies is in use: 503, temporary. A sender retries a 5xx
    later (message-transport-mechanism.md, "Transmission"); Retry-After says when."""

    status = 503
    temporary = True
    headers = (("Retry-After", "1"),)


class InvalidXml(TransportError):
    """Not well-formed, forbidden construct (DTD, entities), or not schema-valid: 400.

    Raised for the SignedMessage wrapper and for the unsealed inner message alike; the spec
    gives both the same status.
    """

    status = 400


class KeyLookupFailed(TransportError):
    """The sender's public key could not be looked up for a temporary reason: 419."""

    status = 419
    temporary = True


class InvalidSignature(TransportError):
    """Unknown sender, or the signature verifies with none of its current keys: 401."""

    status = 401


# --------------------------------------------------------------------------------------------
# Rejections: HTTP 200 and a response message with Result=Rejected.
# --------------------------------------------------------------------------------------------


class Reason(StrEnum):
    """RejectionReason texts of message-validation.md, spelled exactly as the table does."""

    UNKNOWN_SENDER_DOMAIN_SM = "Unknown SenderDomain (SignedMessage)"
    INVALID_SENDER_ROLE = "Invalid SenderRole"
    INVALID_SENDER_COMBINATION = "Invalid Sender combination"
    MISMATCH_SENDER_DOMAIN = "Mismatch SenderDomain"
    INVALID_SIGNED_MESSAGE = "Invalid SignedMessage"
    INVALID_MESSAGE = "Invalid Message"
    UNKNOWN_RECIPIENT_DOMAIN = "Unknown RecipientDomain"
    UNKNOWN_SENDER_DOMAIN = "Unknown SenderDomain (message)"
    BARRED_SENDER = "Barred Sender"
    DUPLICATE_IDENTIFIER = "Duplicate Identifier"
    ALREADY_SUBMITTED = "Already Submitted"
    TIMEZONE_REJECTED = "TimeZone rejected"
    INVALID_CONGESTION_POINT = "Invalid CongestionPoint"
    PERIOD_OUT_OF_BOUNDS = "Period out of bounds"
    ISP_DURATION_REJECTED = "ISP duration rejected"
    ISPS_OUT_OF_BOUNDS = "ISPs out of bounds"
    ISP_CONFLICT = "ISP conflict"
    REFERENCE_PERIOD_MISMATCH = "Reference Period mismatch"
    REFERENCE_MESSAGE_EXPIRED = "Reference message expired"
    REFERENCE_MESSAGE_REVOKED = "Reference message revoked"
    EXPIRATION_DATE_TIME_OUT_OF_BOUNDS = "ExpirationDateTime out of bounds"
    # Not in the table; the spec allows "other reasonable causes" and says an invalid Version
    # is rejected with a reason (message-transport-mechanism.md, "Messages").
    UNSUPPORTED_VERSION = "Unsupported Version"
    SUBORDINATE_SEQUENCE_NUMBER = "Subordinate sequence number"
    #: Another "reasonable cause": a TimeStamp beyond the receiver's clock tolerance.
    TIME_STAMP_OUT_OF_BOUNDS = "TimeStamp out of bounds"
    UNAUTHORIZED = "Unauthorized"
    NO_CONNECTIONS_AVAILABLE = "No connections available"


def unknown_reference(message_type: str) -> str:
    """ "Unknown <MessageType>MessageID reference" of message-validation.md, for the type the
    reference names: unknown_reference("FlexRequest") is "Unknown FlexRequestMessageID
    reference"."""
    return f"Unknown {message_type}MessageID reference"


class Rejection(UftpError):
    """The message is understood but refused; becomes Result=Rejected with these reasons.

    A message can fail several checks at once; the spec lets RejectionReason hold them all,
    separated by semicolons, which `text` does.
    """

    def __init__(self, *reasons: str) -> None:
        if not reasons:
            raise ValueError("a Rejection needs at least one reason")
        self.reasons: tuple[str, ...] = tuple(str(r) for r in reasons)
        super().__init__(self.text)

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


def rejection_reasons(text: str | None) -> list[str]:
    """The reasons of a RejectionReason as a peer wrote it, one each: the field "can contain
    multiple reasons for rejections (separated by a semicolon)" (spec/message-validation.md),
    so a reason of the peer's own that holds a semicolon reads as two - the wire cannot say
    otherwise. The inverse, as far as it goes, of `Rejection.text`."""
    return [reason.strip() for reason in (text or "").split(";") if reason.strip()]


# --------------------------------------------------------------------------------------------
# Our own messages: never a peer's fault, never answered to a peer.
# --------------------------------------------------------------------------------------------


class InvalidOutbound(UftpError):
    """A message of ours cannot be sent as it stands: it would not be schema-valid in its
    Version (a malformed EntityAddress, a structure the schema forbids) or holds text XML
    cannot carry. The mistake is in our data or code; unlike `InvalidXml`, it has no HTTP
    status, as no peer is to blame."""


class IncompleteMessage(InvalidOutbound):
    """A message was to be serialized without the metadata every UFTP message must carry."""
