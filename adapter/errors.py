"""Every error uftp-adapter raises on purpose, under one root, `AdapterError`.

    AdapterError
    +-- UftpError               the protocol core (adapter.uftp.errors)
    |   +-- TransportError      a peer's request refused with an HTTP status (`.status`):
    |   |   |                   LengthRequired 411, BadContentType 400, UnsupportedContent-
    |   |   |                   Encoding 415, PayloadTooLarge 413, RequestTimeout 408,
    |   |   |                   BodyIncomplete 400, RateLimited 429, ServerBusy 503,
    |   |   |                   KeyLookupFailed 419, and:
    |   |   +-- InvalidXml      the peer's XML is malformed, forbidden or not schema-valid (400)
    |   |   +-- InvalidSignature  unknown sender, or no key of its verifies (401)
    |   +-- Rejection           understood and refused: a Rejected response (`.reasons`);
    |   |                       raised by a handler to answer so
    |   +-- InvalidOutbound     a message of ours cannot be sent as it stands: our mistake,
    |       |                   never answered to a peer (h11's LocalProtocolError)
    |       +-- IncompleteMessage  its metadata is not filled
    +-- DeliveryFailed          a message refused for good, or not delivered by its deadline
    +-- ResponseTimeout         (a TimeoutError too) delivered, or still being retried, but no
    |                           response in time
    +-- UnknownPeer             (a LookupError too) no configured peer for the address
    +-- ConfigError             a mistake in the configuration file: file, field, problem
    |   +-- AdminSocketError    (adapter.ops.admin) the admin socket cannot be made safely
    +-- AdminError              the admin socket of a running serve cannot be used, or
    |                           refused the command line's request
    +-- SettingsError           (a ValueError too) a settings object (adapter.settings) given
    |                           a value out of its range: field, problem
    +-- TlsFileError            a certificate, key or CA file that cannot be used
    +-- KeyFileError            a signing key file missing, unreadable, malformed, exposed
    |   +-- KeyFileExists       refused to overwrite a private key
    +-- StoreOpenError          (a RuntimeError too) a store that cannot be opened
    +-- StorageError            the store failing at work (disk full, database down): our
    |                           fault, never a peer's; a message meeting it is handled again
    +-- CannotListen            (an OSError too) the endpoint's address cannot be bound
    +-- PortfolioFileError      (a ValueError too; adapter.dso) a mistake in a portfolio file
    +-- PortfolioRuleError      (a ValueError too; adapter.dso) a portfolio the CRO would reject

The root is defined in the protocol core, which imports nothing of the rest of the package,
so that every module can derive from it. This module gathers the tree but the portfolio
errors, which `adapter` and `adapter.dso` export; it defines the errors of sending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ConfigError
from .keys import KeyFileError, KeyFileExists
from .listen import CannotListen
from .settings import SettingsError
from .store.base import OutboundStatus, StorageError, StoreOpenError
from .tls import TlsFileError
from .uftp.errors import (
    AdapterError,
    BadContentType,
    BodyIncomplete,
    IncompleteMessage,
    InvalidOutbound,
    InvalidSignature,
    InvalidXml,
    KeyLookupFailed,
    LengthRequired,
    PayloadTooLarge,
    RateLimited,
    Reason,
    Rejection,
    RequestTimeout,
    ServerBusy,
    TransportError,
    UftpError,
    UnsupportedContentEncoding,
)

if TYPE_CHECKING:
    from .client import DeliveryResult

__all__ = [
    "AdapterError",
    "AdminError",
    "BadContentType",
    "BodyIncomplete",
    "CannotListen",
    "ConfigError",
    "DeliveryFailed",
    "IncompleteMessage",
    "InvalidOutbound",
    "InvalidSignature",
    "InvalidXml",
    "KeyFileError",
    "KeyFileExists",
    "KeyLookupFailed",
    "LengthRequired",
    "PayloadTooLarge",
    "RateLimited",
    "Reason",
    "Rejection",
    "RequestTimeout",
    "ResponseTimeout",
    "ServerBusy",
    "SettingsError",
    "StorageError",
    "StoreOpenError",
    "TlsFileError",
    "TransportError",
    "UftpError",
    "UnknownPeer",
    "UnsupportedContentEncoding",
]


class DeliveryFailed(AdapterError):
    """A message could not be delivered: a permanent HTTP error, or retries ran out.

    `message_id` is the message's, `status` how its delivery ended (failed or expired) and
    `result` the last attempt's answer."""

    def __init__(self, message_id: str, status: OutboundStatus, result: DeliveryResult) -> None:
        self.message_id = message_id
        self.status = status
        self.result = result
        if status is not OutboundStatus.FAILED:
            how = "could not be delivered in time"
        else:  # refused by the peer, or never sent (our TLS trust does not verify the peer)
            how = "was refused" if result.status else "could not be sent"
        code = f" (HTTP {result.status})" if result.status else ""
        super().__init__(f"message {message_id} {how}{code}: {result.detail}")


class ResponseTimeout(AdapterError, TimeoutError):
    """The request was delivered (or is still being retried) but no response came in time.

    `message_id` is the request's: `Participant.withdraw` stops its delivery, if it is still
    being retried and should not arrive late."""

    def __init__(self, text: str, message_id: str) -> None:
        super().__init__(text)
        self.message_id = message_id


class AdminError(AdapterError):
    """The admin socket of a running serve cannot be used (not ours, not safe, another
    participant's), or the serve refused the command line's request (`adapter.ops.admin`)."""


class UnknownPeer(AdapterError, LookupError):
    """No peer is configured for the domain (and role) a message is addressed to."""
