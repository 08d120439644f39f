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

import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import date
from typing import Final, Generic, Protocol, TypeVar

from adapter.flex.state import Direction, Entry, Standing
from adapter.store.base import EventRecord

__all__ = [
    "COLUMNS",
    "COMPONENT",
    "SCHEMA_VERSION",
    "FlexBook",
    "FlexEvents",
    "StoredBook",
    "reasons_column",
    "reasons_of_column",
]

T = TypeVar("T")

#: Version of the `flex_entry` table of both books (component "flex" in `schema_version`).
SCHEMA_VERSION: Final = 1
COMPONENT: Final = "flex"

#: The columns of `flex_entry`, in the order the books write and read them.
COLUMNS: Final = (
    "direction, peer_domain, message_type, message_id, conversation_id, period, "
    "congestion_point, expires_at, reference, revision, standing, settled_by, reason, "
    "recorded_at, inner_xml"
)

#: Builds the bus events of one change of the book: the entry as it now stands, and the
#: change ("sent" or "received" for a new entry; the standing it moved to for a settled
#: one). The book writes them in the change's own transaction, and only when it made it.
FlexEvents = Callable[[Entry, str], Sequence[EventRecord]]


def reasons_column(reasons: Sequence[str]) -> str | None:
    """An entry's reasons as the `reason` column keeps them: a JSON array, so that a reason
    holding "; " (peer-controlled text can) comes back as one; NULL for none."""
    return json.dumps(list(reasons), ensure_ascii=False) if reasons else None


def reasons_of_column(text: str | None) -> tuple[str, ...]:
    """The reasons of a `reason` column, written as `reasons_column` does or, by a schema
    version 1 book before it, joined with "; " (read back the way they were joined)."""
    if not text:
        return ()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(reason, str) for reason in value):
            return tuple(value)
    return tuple(text.split("; "))


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
        reasons: Sequence[str] = (),
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


class _EventsWritten(Protocol):
    def events_written(self) -> None: ...


S = TypeVar("S", bound=_EventsWritten)


class StoredBook(Generic[S]):
    """What the SQLite and the PostgreSQL book share around their own SQL: the store, the
    events of each change (built only for a change made, and written by the change's
    transaction), and the store's relay told of them once that transaction committed."""

    def __init__(self, store: S, *, events: FlexEvents | None = None) -> None:
        self._store = store
        self._ready = False
        self._events = events

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._store!r})"

    def _events_of(self, entry: Entry, change: str) -> Sequence[EventRecord]:
        """The events of a change the transaction made (`change` as `FlexEvents` says)."""
        return () if self._events is None else self._events(entry, change)

    async def _changed(self, transaction: Awaitable[tuple[T, bool]]) -> T:
        """The result of a `transaction` that changes the book and says whether it wrote
        events; the relay is told of those once it committed."""
        result, written = await transaction
        if written:
            self._store.events_written()
        return result
