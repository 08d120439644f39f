"""The persistence port: what the participant needs to remember, and nothing about how.

Two promises rest on it. "Never lose a message": an inbound message is stored before the
sender hears HTTP 200, an outbound one before its first delivery attempt. "Never handle one
twice": an inbound message is keyed by (sender domain, MessageID), so a resent copy is
recognised, and marking it handled happens in the same transaction that queues its response.

Implementations: `sqlite.SqliteStore` (embedded default) and `postgres.PostgresStore`. The
rest of the code never writes SQL.

A third promise lets several processes share one store (PostgreSQL; a SQLite file admits one
process, see `sqlite`): "one owner at a time". Every message still to be worked on - an
outbound one pending delivery, an inbound one received but not handled - is *claimed* by
the store object that works on it (`Store.owner`, one per process), for a lease of
`Store.lease`. The store claims what it adds itself (`save_inbound`, `add_outbound`, the
response of `finish_inbound`); it releases a claim when the work ends (handled, delivered,
failed, expired, cancelled) and all of its own on `release_claims` and `close`. A process
renews its claims (`renew_claims`) well within the lease; one that dies stops renewing, and
once its leases run out the others take its work over with `claim_outbound` and
`claim_unfinished_inbound`. Lease times are the store's own clock (PostgreSQL's `now()`), so
hosts whose clocks differ still agree on who holds what.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from adapter.uftp.errors import AdapterError

if TYPE_CHECKING:
    from adapter.bus.events import CloudEvent
    from adapter.store.coordination import Coordinator

#: How long a claim lasts unless its holder renews it: how long the work of a process that
#: died waits before another takes it over. Renewals come every third of it.
DEFAULT_LEASE: Final = timedelta(seconds=30)


class StoreOpenError(AdapterError, RuntimeError):
    """The store cannot be opened: its database is unreachable or refuses us, its tables were
    written by a newer version of this program, or its driver is not installed.

    A fault of the deployment, never of a peer. The message names the store (its file, or its
    PostgreSQL schema and database) and what to do, so that the command line can show it as
    one line instead of a traceback.
    """


def newer_schema(store: str, component: str, found: int, ours: int) -> StoreOpenError:
    """The error for tables of a newer program: opening them anyway could misread them, and
    a migration only ever goes forward."""
    return StoreOpenError(
        f"{store}: the {component} tables are schema version {found}, newer than this "
        f"program's version {ours}: they were written by a newer uftp-adapter; run that "
        "version (or a later one) on this store"
    )


class StorageError(AdapterError):
    """The store could not do its work for a reason of its own: the disk is full, the database
    is unreachable or failing. The driver's error is the `__cause__`.

    A type of its own because such a failure is always our fault, never a peer's
    (a message that was valid stays valid): the participant keeps a message whose handling
    meets one unfinished and handles it again, instead of rejecting it. Errors that are
    answers (a taken key, an unknown message) are not wrapped.
    """


class InboundStatus(StrEnum):
    #: Stored and acknowledged with HTTP 200; its handler has not finished yet.
    RECEIVED = "received"
    #: Its handler finished (or it was rejected); its response, if any, is in the outbox.
    HANDLED = "handled"


class OutboundStatus(StrEnum):
    #: Waiting for its first or next delivery attempt.
    PENDING = "pending"
    #: The peer answered 200.
    DELIVERED = "delivered"
    #: A permanent failure (a non-temporary 4xx, or no endpoint for the recipient).
    FAILED = "failed"
    #: Temporary failures until the delivery deadline passed.
    EXPIRED = "expired"
    #: Withdrawn by its sender before it was delivered (a command gave up waiting for it).
    CANCELLED = "cancelled"


class SaveOutcome(StrEnum):
    """What `save_inbound` found; the spec's duplicate rules (message-validation.md)."""

    NEW = "new"
    #: Same sender and MessageID, same content: "Already Submitted", not handled again.
    ALREADY_SUBMITTED = "already-submitted"
    #: Same sender and MessageID, other content: "Duplicate Identifier".
    DUPLICATE_IDENTIFIER = "duplicate-identifier"


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """An inbound message as received: the raw envelope is kept for audit."""

    sender_domain: str
    message_id: str
    sender_role: str
    message_type: str
    conversation_id: str
    version: str
    #: SHA-256 of the inner (unsealed) XML: what "same content" means for duplicates.
    content_hash: bytes
    envelope: bytes
    received_at: datetime
    status: InboundStatus = InboundStatus.RECEIVED
    #: Rejection reasons found by the protocol checks before the 200 ("; "-joined), if any.
    rejection: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """A message on its way out: the sealed SignedMessage exactly as it will be POSTed."""

    message_id: str
    recipient_domain: str
    recipient_role: str
    message_type: str
    conversation_id: str
    #: MessageID of the request this message answers, for responses.
    reference_message_id: str | None
    endpoint: str
    envelope: bytes
    created_at: datetime
    #: After this instant temporary failures stop being retried.
    deadline: datetime
    status: OutboundStatus = OutboundStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    #: The bus command (adapter.bus) this message was made for: stored with the message,
    #: at most once per command (`DuplicateCommand`), and named by its outcome event.
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of an outbound message and how it ended; the retry schedule, made visible."""

    message_id: str
    attempted_at: datetime
    #: HTTP status, or None when no response came (timeout, reset, refused).
    http_status: int | None
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event for the message bus, written in the same transaction as the state it reports
    (the transactional outbox of `adapter.bus.relay`), published later by the relay."""

    #: The CloudEvents id: stable across republication, so that consumers can dedupe.
    event_id: str
    #: The routing key, e.g. ``in.DSOPortfolioUpdate`` or ``outcome.delivered``.
    route: str
    #: CloudEvents attributes as canonical strings, ``datacontenttype`` included.
    attributes: Mapping[str, str]
    data: bytes
    created_at: datetime
    #: The fact the event reports, when one fact must make one event only (the outcome of
    #: one outbound message): a second event with a taken key is not stored.
    key: str | None = None
    #: The bus command the event goes back to, to be found where the event is stored, in
    #: its transaction: the stored event names it in its ``commandid`` attribute (and
    #: keeps no `command_of`).
    command_of: CommandOf | None = None
    #: The event these attributes and data make, when the journal built (and checked) it in
    #: this process: what a store that hands its commits to the relay passes on, so that
    #: the relay publishes it as is (the store that names the command of `command_of` names
    #: it in both, `CloudEvent.extended`). None for what is read from a store (the relay
    #: checks that again).
    cloud_event: CloudEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CommandOf:
    """Which bus command an event goes back to: the one that made our message `message_id`,
    or, without one, the latest that sent a message in `conversation_id` (what a response
    that names no request, a 3.x TestMessageResponse, answers)."""

    message_id: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An unpublished event and its place in the store's order (publication order)."""

    seq: int
    event: EventRecord


#: Told of committed events (see `Store.listen_events`).
EventListener = Callable[[Sequence[StoredEvent] | None], None]


class DuplicateCommand(AdapterError):
    """A bus command whose id is known already: what it asked for was done before."""

    def __init__(self, command_id: str) -> None:
        self.command_id = command_id
        super().__init__(f"command {command_id!r} was carried out before")


class NotOpen(AdapterError, LookupError):
    """The inbound request is unknown, or no longer open (answered, or its deadline passed)."""


class RelayLock(Protocol):
    """The right to relay this store's events, held by one process at a time."""

    @property
    def held(self) -> bool:
        """Still held (a PostgreSQL session lock ends with its connection)."""

    async def release(self) -> None: ...


class Store(Protocol):
    """Durable state of one participant. All methods are safe to call concurrently."""

    #: How long the claims this store takes last without a renewal.
    lease: timedelta

    @property
    def owner(self) -> str:
        """Who this store object is in the claims it holds: host, process and a token, set
        when it opens (a process that restarts is a new owner)."""
        ...

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release this store's claims (`release_claims`), then disconnect."""

    async def save_inbound(
        self, record: InboundRecord, *, events: Sequence[EventRecord] = ()
    ) -> SaveOutcome:
        """Store a received message durably unless its (sender, MessageID) is known; `events`
        with it, in the same transaction, only when it is NEW. A new one is held by this store
        until it is handled."""

    async def finish_inbound(
        self,
        sender_domain: str,
        message_id: str,
        response: OutboundRecord | None,
        *,
        events: Sequence[EventRecord] = (),
        require_open: bool = False,
    ) -> None:
        """Mark a message handled and queue its response, in one transaction, with `events`:
        the message's claim ends, the response is held by this store.

        With `require_open`, raise `NotOpen` unless the message was still unhandled. A
        response made for a bus command (its `command_id`) records the command;
        `DuplicateCommand` (and nothing stored) when it was carried out before."""

    async def unfinished_inbound(self) -> list[InboundRecord]:
        """Messages acknowledged with 200 whose handling did not finish, whoever holds them:
        a listing (recovery takes them with `claim_unfinished_inbound`)."""

    async def get_inbound(self, sender_domain: str, message_id: str) -> InboundRecord | None: ...

    async def add_outbound(
        self,
        record: OutboundRecord,
        *,
        events: Sequence[EventRecord] = (),
    ) -> None:
        """Persist an outgoing message before its first delivery attempt, held by this store;
        `events` and the bus command that asked for it (its `command_id`; `DuplicateCommand`
        when known) in the same transaction."""

    async def record_attempt(
        self,
        attempt: DeliveryAttempt,
        status: OutboundStatus,
        next_attempt_at: datetime | None,
        *,
        events: Sequence[EventRecord] = (),
    ) -> bool:
        """Log one delivery attempt and move the message to its new status; `events` are
        stored only when this attempt ends a pending message (its outcome, once).

        True if the message is still pending and this store still holds it, so its next
        attempt is the caller's to make; False once its delivery ended, or when another
        owner took it over (this store's lease ran out meanwhile) or nobody holds it."""

    async def cancel_outbound(self, message_id: str) -> bool:
        """Withdraw a message still pending: no process attempts it again.

        True if it was pending and is now cancelled; False if its delivery had already
        ended (delivered, failed, expired or cancelled), which it then keeps. LookupError
        for an unknown message."""

    async def pending_outbound(self) -> list[OutboundRecord]:
        """Every message still to be delivered, earliest next attempt first, whoever holds
        it (with the bus command each was made for, as `get_outbound`): a listing, which
        claims nothing (delivery takes messages with `claim_outbound`)."""

    async def claim_outbound(self, due_by: datetime, limit: int) -> list[OutboundRecord]:
        """Claim at most `limit` pending messages due by `due_by` (their next attempt, or
        their creation when none was made) that nobody holds or whose holder's lease ran
        out, earliest first. Concurrent callers in several processes get disjoint sets."""

    async def claim_unfinished_inbound(self, limit: int) -> list[InboundRecord]:
        """Claim at most `limit` messages acknowledged but not handled that nobody holds or
        whose holder's lease ran out, oldest first: what a process that died left."""

    async def renew_claims(self) -> None:
        """Extend every claim this store holds by a lease from now."""

    async def release_claims(self) -> None:
        """Give up every claim this store holds, so that others may take the work at once
        (a clean stop); the rows themselves are unchanged."""

    def coordinator(self) -> Coordinator:
        """What processes sharing this store use to coordinate besides rows (see
        `adapter.store.coordination`); not started."""
        ...

    async def get_outbound(self, message_id: str) -> OutboundRecord | None: ...

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        """The delivery attempts of one message, oldest first."""

    # -- the bus outbox (adapter.bus) ---------------------------------------------------------

    async def add_events(self, events: Sequence[EventRecord]) -> None:
        """Store events that report no other state (errors of bus commands)."""

    def listen_events(self, callback: EventListener) -> None:
        """Call `callback` after each commit of this process that added events: with those
        events when they are all the store has (a SQLite store, one process's), with None
        when other processes may write events too (PostgreSQL: read the store)."""

    async def unpublished_events(
        self, limit: int, *, skip: Collection[int] = ()
    ) -> list[StoredEvent]:
        """Up to `limit` events not yet published, in store order, but for those whose seq
        is in `skip` (published, their mark not written yet)."""

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None: ...

    async def command_message(self, command_id: str) -> str | None:
        """The MessageID a bus command was carried out as, None if unknown."""

    async def try_relay_lock(self) -> RelayLock | None:
        """The relay's lock of this store, None when another process holds it."""
