"""What an operator reads and steers in a store: the messages in and out, a message requeued,
the depth of the queues, and what retention removes.

A port of its own beside `Store`, as the register's is (`register.py`): the participant never
needs these operations, and they read across many messages where the participant reads one.
`adapter.store.admin_for` picks the implementation for an opened store;
`admin_sqlite.read_only` gives one on a SQLite file that a running `serve` owns, without
writing to it.

Lists carry no envelope (a routine one is 16 KB, a portfolio update megabytes), only its
size: `envelope_bytes` is 0 once retention removed it. `*_envelope` reads one.

Retention (`prune`) never touches a message still in flight: an inbound message not yet
handled, an outbound one still pending. Message rows outlive their envelopes: the envelopes
hold connection identifiers (personal data in this domain), the rows only who sent what when.
The Common Reference register's tables are not this port's: its history is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from adapter.store.base import DeliveryAttempt, InboundStatus, OutboundStatus

__all__ = [
    "InboundSummary",
    "MessageQuery",
    "OutboundSummary",
    "PeerActivity",
    "Pruned",
    "QueueDepths",
    "Requeued",
    "StoreAdmin",
    "StoreStatus",
]

#: How many messages a list shows unless asked for more.
DEFAULT_LIMIT = 50
#: Rows removed per transaction while pruning: short transactions, so that the participant's
#: own writes go on between them.
PRUNE_BATCH = 2000


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Which messages to list, newest first. Every filter given must hold."""

    #: The sender's domain (inbound) or the recipient's (outbound).
    peer: str | None = None
    #: The message type, as its XML element is named: "DSOPortfolioUpdate".
    message_type: str | None = None
    #: An `InboundStatus` or `OutboundStatus` value.
    status: str | None = None
    #: Received (inbound) or created (outbound) at or after this instant.
    since: datetime | None = None
    message_id: str | None = None
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.since is not None and self.since.utcoffset() is None:
            raise ValueError("since must be an aware datetime")


@dataclass(frozen=True, slots=True)
class InboundSummary:
    sender_domain: str
    message_id: str
    sender_role: str
    message_type: str
    conversation_id: str
    version: str
    received_at: datetime
    status: InboundStatus
    rejection: str | None
    #: Size of the stored envelope; 0 once retention removed it.
    envelope_bytes: int


@dataclass(frozen=True, slots=True)
class OutboundSummary:
    message_id: str
    recipient_domain: str
    recipient_role: str
    message_type: str
    conversation_id: str
    reference_message_id: str | None
    endpoint: str
    created_at: datetime
    deadline: datetime
    status: OutboundStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    #: Size of the stored envelope; 0 once retention removed it.
    envelope_bytes: int


class Requeued(StrEnum):
    """What `requeue` did."""

    #: Pending again: delivered at the next attempt, until the new deadline.
    REQUEUED = "requeued"
    #: It was pending already; nothing changed.
    PENDING = "pending"
    #: It was delivered; sending it again would only be answered "Already Submitted".
    DELIVERED = "delivered"
    #: Retention removed its envelope: there is nothing left to send.
    NO_ENVELOPE = "no-envelope"


@dataclass(frozen=True, slots=True)
class QueueDepths:
    """What waits: cheap to read (indexes), for a metrics gauge refreshed every few seconds."""

    outbound_pending: int
    inbound_unfinished: int
    oldest_pending_outbound: datetime | None
    oldest_unfinished_inbound: datetime | None


@dataclass(frozen=True, slots=True)
class PeerActivity:
    """One peer, as the store has seen it."""

    domain: str
    #: The last message received from it.
    last_received: datetime | None
    #: The last delivery to it that succeeded.
    last_delivered: datetime | None
    #: Messages to it still to be delivered.
    pending: int
    #: Delivery attempts to it since `StoreStatus.since` that did not deliver.
    failed_attempts: int


@dataclass(frozen=True, slots=True)
class StoreStatus:
    depths: QueueDepths
    #: Messages by status (every status present, zero or not).
    inbound: dict[InboundStatus, int]
    outbound: dict[OutboundStatus, int]
    #: The start of the window the failure counts cover (an hour ago, for `status`).
    since: datetime
    #: Delivery attempts since `since` that did not deliver.
    failed_attempts: int
    #: Messages whose delivery ended without success (failed, expired) with an attempt
    #: since `since`.
    failed_messages: int
    #: Every peer the store has exchanged messages with, by domain.
    peers: list[PeerActivity]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one `prune` removed."""

    inbound_envelopes: int = 0
    outbound_envelopes: int = 0
    inbound_messages: int = 0
    outbound_messages: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(
            self.inbound_envelopes + other.inbound_envelopes,
            self.outbound_envelopes + other.outbound_envelopes,
            self.inbound_messages + other.inbound_messages,
            self.outbound_messages + other.outbound_messages,
        )

    @property
    def total(self) -> int:
        return (
            self.inbound_envelopes
            + self.outbound_envelopes
            + self.inbound_messages
            + self.outbound_messages
        )


class StoreAdmin(Protocol):
    """The operator's view of one store."""

    async def inbound(self, query: MessageQuery) -> list[InboundSummary]:
        """Received messages matching `query`, newest first."""

    async def outbound(self, query: MessageQuery) -> list[OutboundSummary]:
        """Sent (or to be sent) messages matching `query`, newest first."""

    async def inbound_envelope(self, sender_domain: str, message_id: str) -> bytes | None:
        """The SignedMessage as received; None when unknown or pruned."""

    async def outbound_envelope(self, message_id: str) -> bytes | None:
        """The SignedMessage as sent; None when unknown or pruned."""

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        """The delivery attempts of one message, oldest first (as `Store.attempts`)."""

    async def requeue(self, message_id: str, *, now: datetime, deadline: datetime) -> Requeued:
        """A message whose delivery ended without success (failed, expired or cancelled)
        pending again: next attempt `now`, retried until `deadline`; its attempts so far stay
        on record. LookupError for an unknown message."""

    async def depths(self) -> QueueDepths: ...

    async def status(self, since: datetime) -> StoreStatus:
        """Counts by status, and failures and peers' activity since `since`. Reads every
        message's row: for an operator's look, not for a frequent probe (`depths` is)."""

    async def prune(
        self, *, envelopes_before: datetime, messages_before: datetime, batch: int = PRUNE_BATCH
    ) -> Pruned:
        """Remove the envelopes of finished messages older than `envelopes_before`, and
        finished messages (with their envelopes and delivery attempts) older than
        `messages_before`, in transactions of at most `batch` rows. Messages in flight are
        never touched."""
