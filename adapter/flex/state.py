"""What a participant remembers of its flex conversations: each FlexRequest, FlexOffer and
FlexOrder it sent or received, with where it stands.

Pure values; `adapter.store.flex` keeps them durably (SQLite or PostgreSQL), so that a
FlexOrder for an offer sent before a restart, or received by another process of a shared
store, is checked against the same state.

Expiry is not a stored state: it follows from ExpirationDateTime and the time of the check
(`Entry.expired`), so a clock is never needed to keep the store true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

__all__ = ["Direction", "Entry", "Standing"]


class Direction(StrEnum):
    """Whether we sent the message or received it."""

    SENT = "sent"
    RECEIVED = "received"


class Standing(StrEnum):
    """Where a flex message stands in its conversation.

    A FlexRequest or FlexOffer is OPEN until its response says ACCEPTED or REJECTED (a
    received one: until we answered it). An accepted FlexOffer may then be REVOKED by its
    AGR (flex-offer-revocation.md) or ORDERED by the DSO (flex-order.md), never both: the
    first to be recorded wins. A FlexOrder is OPEN, then ACCEPTED or REJECTED by the AGR.
    """

    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVOKED = "revoked"
    ORDERED = "ordered"


@dataclass(frozen=True, slots=True)
class Entry:
    """One flex message of a conversation, as recorded.

    `inner_xml` is the message as it travelled (the codec reads it back, typed); the other
    fields are what the checks and the listings select on. `reference` is the MessageID the
    message refers to (an offer's FlexRequestMessageID, an order's or a revocation's
    FlexOfferMessageID); `settled_by` the MessageID of the message that moved it to its
    standing (the order that ordered an offer, the revocation that revoked it), which makes
    handling that message again idempotent.
    """

    direction: Direction
    peer_domain: str
    message_type: str
    message_id: str
    conversation_id: str
    period: date | None
    congestion_point: str | None
    expires_at: datetime | None
    reference: str | None
    revision: int | None
    standing: Standing
    settled_by: str | None
    #: Why it was rejected, one reason each, exactly as decided (ours) or as the peer's
    #: RejectionReason read (theirs, kept whole): `_answered_before` answers them again.
    reasons: tuple[str, ...]
    recorded_at: datetime
    inner_xml: bytes

    @property
    def reason(self) -> str | None:
        """The reasons as one text, as a RejectionReason carries them (for the operator)."""
        return "; ".join(self.reasons) if self.reasons else None

    def expired(self, now: datetime) -> bool:
        """Past its ExpirationDateTime (an ordered offer stays ordered: the order holds)."""
        return (
            self.expires_at is not None
            and self.expires_at <= now
            and self.standing is not Standing.ORDERED
        )

    def shown_standing(self, now: datetime) -> str:
        """The standing as an operator reads it: "expired" for an open or accepted one
        whose ExpirationDateTime passed."""
        if self.expired(now) and self.standing in (Standing.OPEN, Standing.ACCEPTED):
            return "expired"
        return str(self.standing)
