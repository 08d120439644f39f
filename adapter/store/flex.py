"""The persistence port of the flex conversations: the FlexRequests, FlexOffers and
FlexOrders (and FlexReservationUpdates, D-Prognoses and Metering) a participant sent and
received, and where each stands (`adapter.flex.state`).

What rests on it: a FlexOffer is checked against the FlexRequest it names, a FlexOrder or a
FlexOfferRevocation against the offer (message-validation.md, "Unknown ... reference",
"Reference message expired", "Reference message revoked"), after a restart and in whichever
process of a shared PostgreSQL store the message arrives. Two promises:

* **Idempotence.** `record` keeps the first entry under (direction, peer, MessageID) and
  returns it: a message handled again after a crash is recorded once.
* **Events with the change.** A book made with `events` (`flex_book_for(store, events=...)`)
  writes the bus events of each entry it records and each move it makes in the same
  transaction, so an event is published exactly when the change is stored.
* **One fate per offer.** `settle` moves an entry from one of the standings it names to
  another in one atomic step, naming the message that moved it, and says whether it did:
  an order and a revocation of one offer, or two orders, cannot both win.

Implementations: `flex_sqlite.SqliteFlexBook` and `flex_postgres.PostgresFlexBook`;
`adapter.store.flex_book_for` picks the one of a store. Tables are created on first use
and versioned under component "flex" in `schema_version`, as the register's are.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Protocol

from adapter.flex.state import Direction, Entry, Standing
from adapter.store.base import EventRecord

__all__ = ["FlexBook", "FlexEvents"]

#: Builds the bus events of one change of the book: the entry as it now stands, and the
#: change ("sent" or "received" for a new entry; the standing it moved to for a settled
#: one). The book writes them in the change's own transaction, and only when it made it.
FlexEvents = Callable[[Entry, str], Sequence[EventRecord]]


class FlexBook(Protocol):
    async def record(self, entry: Entry) -> Entry:
        """Store `entry` unless one with its (direction, peer, MessageID) is stored; the
        stored one."""
        ...

    async def get(
        self, direction: Direction, message_id: str, *, peer_domain: str | None = None
    ) -> Entry | None:
        """The entry of `message_id` (sent to or received from `peer_domain`, if given)."""
        ...

    async def settle(
        self,
        direction: Direction,
        peer_domain: str,
        message_id: str,
        *,
        from_: Collection[Standing],
        to: Standing,
        by: str | None,
        reason: str | None = None,
    ) -> bool:
        """Move the entry from a standing in `from_` to `to`, naming the message `by` that
        moved it; False when it is not in one of `from_` (or not there at all)."""
        ...

    async def latest_revision(
        self,
        direction: Direction,
        peer_domain: str,
        congestion_point: str,
        period: date,
        *,
        excluding: str,
        accepted_only: bool = False,
        message_type: str = "FlexRequest",
    ) -> int | None:
        """The highest Revision of the messages of `message_type` (FlexRequests, or
        D-Prognoses) for (congestion point, Period) exchanged with `peer_domain`, other than
        MessageID `excluding`; with `accepted_only`, of those accepted only."""
        ...

    async def entries(
        self, direction: Direction | None = None, message_type: str | None = None
    ) -> list[Entry]:
        """The recorded entries, oldest first, of one direction and type if given."""
        ...
