"""The persistence port of the Common Reference register: what the CRO remembers about
congestion points, connections and aggregators, and nothing about how.

The CRO maintains the register that DSOs publish their congestion points to and aggregators
their connections to (spec: contract-phase.md, "Publish Congestion Points", "Publish
Connections"). Three promises rest on this port:

* **Atomic updates.** One accepted DSOPortfolioUpdate or AGRPortfolioUpdate is one
  transaction: the checks that need the register (`check` callbacks, pure functions from
  `adapter.cro.register`) run inside it, against the state it will change, and if one raises
  nothing of the message is stored.
* **Idempotence.** Every applied update is recorded under (sender domain, MessageID) in the
  same transaction as its change; applying the same message again returns
  `Applied.ALREADY_APPLIED` and changes nothing. The participant reruns a handler whose
  response was not yet queued when the process stopped, so this is what makes a crash safe.
* **History.** Rows are versioned, never overwritten or deleted: a version names the update
  that made it current (``valid_from``) and the one that replaced it (``superseded_by``,
  empty while current). Reads take an optional ``as_of`` instant and answer as the register
  stood then. A congestion point is versioned as a whole: a new version of the point when an
  update changes its definition or its connections, whose connection rows belong to that
  version and never change. A point resent unchanged (same definition, same connections in
  the same order, recognised by `rows_digest`) keeps its version and costs no writes;
  an update only rewrites the points it changes, never the whole register. An aggregator's
  registrations are versioned per row (`versioned_diff`).

Implementations: `register_sqlite.SqliteRegister` (on `SqliteStore.run`/`read`) and
`register_postgres.PostgresRegister` (on `PostgresStore.run`); `adapter.store.register_for`
picks the one of a store. Their tables are created on first use. The rest of the code never
writes SQL.

Periods are dates (the market's days), EndPeriod inclusive, None = open-ended.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from operator import itemgetter
from typing import NamedTuple, Protocol, TypeVar

from adapter.store.base import EventRecord
from adapter.uftp.messages import RedispatchBy

__all__ = [
    "AgrAllocation",
    "AgrUpdateState",
    "Applied",
    "ConnectionPeriod",
    "DsoConnection",
    "DsoUpdateState",
    "Membership",
    "PointDefinition",
    "PointSummary",
    "PortfolioRegister",
    "RegisterEvents",
    "StoredRows",
    "UpdateKind",
    "UpdateMeta",
    "UpdateSummary",
    "change_summary",
    "iso_rows",
    "rows_digest",
    "versioned_diff",
]

K = TypeVar("K", bound=Hashable)

#: (EntityAddress, StartPeriod, EndPeriod) of a connection. The message models'
#: DSOPortfolioUpdateConnection and AGRPortfolioUpdateConnection are such tuples already, so
#: 100,000 of them reach the store without being copied.
ConnectionPeriod = tuple[str, date, date | None]


class Applied(StrEnum):
    """What an `apply_*` call did."""

    APPLIED = "applied"
    #: The same (sender, MessageID) was applied before; nothing changed now.
    ALREADY_APPLIED = "already-applied"


class UpdateKind(StrEnum):
    DSO = "dso"
    AGR = "agr"


@dataclass(frozen=True, slots=True)
class UpdateMeta:
    """Who sent an update and when: the key of idempotence and of "Subordinate sequence
    number" (contract-phase.md)."""

    sender_domain: str
    message_id: str
    #: The message's TimeStamp: updates from one sender must not go back in time.
    time_stamp: datetime
    #: When the CRO applies it. Stored never earlier than the previous update's, so that the
    #: order of `recorded_at` is the order of application and `as_of` reads are exact.
    recorded_at: datetime
    #: The update's ConversationID: its register event belongs to that conversation, and
    #: the bus relay keeps a conversation's events in order (`adapter.bus.relay`).
    conversation_id: str = ""


@dataclass(frozen=True, slots=True)
class PointDefinition:
    """A congestion point as a DSOPortfolioUpdate defines it, with its connections."""

    entity_address: str
    start_period: date
    end_period: date | None
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    intraday_redispatch_by: RedispatchBy | None
    connections: Sequence[ConnectionPeriod]


class Membership(NamedTuple):
    """A current registration of a connection somewhere else than the update puts it: in
    another congestion point (`holder` is its EntityAddress) or by another aggregator
    (`holder` is its domain)."""

    entity_address: str
    holder: str
    start_period: date
    end_period: date | None


@dataclass(frozen=True, slots=True)
class DsoUpdateState:
    """What the register holds that the checks of one DSOPortfolioUpdate need."""

    #: Owning DSO of each congestion point of the message that is registered already.
    owners: Mapping[str, str]
    #: TimeStamp of the last update accepted from this DSO, if any.
    last_time_stamp: datetime | None
    #: Current memberships of the connections of the points the message changes, in points
    #: the update does not replace (those it does not name, and other DSOs' points it names).
    #: A point resent unchanged was checked when it was stored; nothing since could have
    #: made it conflict.
    memberships: Sequence[Membership]


@dataclass(frozen=True, slots=True)
class AgrUpdateState:
    """What the register holds that the checks of one AGRPortfolioUpdate need."""

    last_time_stamp: datetime | None
    #: Current registrations by other aggregators of the connections the message adds or
    #: changes.
    registrations: Sequence[Membership]


class DsoConnection(NamedTuple):
    """A connection of a congestion point on one Period, and the aggregator that registered
    it for that Period, if any (DSOPortfolioQueryResponse)."""

    entity_address: str
    agr_domain: str | None


class AgrAllocation(NamedTuple):
    """One of an aggregator's connections on one Period and the congestion point that holds
    it then; `congestion_point` and the fields after it are None when no DSO claims it."""

    entity_address: str
    congestion_point: str | None = None
    dso_domain: str | None = None
    mutex_offers_supported: bool | None = None
    day_ahead_redispatch_by: RedispatchBy | None = None
    intraday_redispatch_by: RedispatchBy | None = None


@dataclass(frozen=True, slots=True)
class PointSummary:
    """A congestion point for an operator: its definition, size and where it came from."""

    entity_address: str
    dso_domain: str
    start_period: date
    end_period: date | None
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    intraday_redispatch_by: RedispatchBy | None
    connections: int
    #: The update that made this definition current: its MessageID and when it was applied.
    message_id: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class UpdateSummary:
    """One accepted update, for the register's history."""

    seq: int
    kind: UpdateKind
    sender_domain: str
    message_id: str
    time_stamp: datetime
    recorded_at: datetime


class PortfolioRegister(Protocol):
    """The Common Reference register. All methods are safe to call concurrently; `apply_*`
    calls are serialised among themselves."""

    async def apply_dso_update(
        self,
        update: UpdateMeta,
        points: Sequence[PointDefinition],
        check: Callable[[DsoUpdateState], None],
    ) -> Applied:
        """Replace the definitions of `points` (each with its connections) in one transaction.

        Congestion points the update does not name stay as they are. `check` runs inside the
        transaction; whatever it raises propagates and nothing is stored.
        """

    async def apply_agr_update(
        self,
        update: UpdateMeta,
        connections: Sequence[ConnectionPeriod],
        check: Callable[[AgrUpdateState], None],
    ) -> Applied:
        """Replace the sender's registration of each connection `connections` names (all its
        periods) by the periods given, in one transaction; `check` as above."""

    async def owner(self, congestion_point: str) -> str | None:
        """The DSO that registered `congestion_point`, None when nobody did."""

    async def dso_connections(
        self, congestion_point: str, period: date, *, as_of: datetime | None = None
    ) -> list[DsoConnection]:
        """The connections of `congestion_point` on `period`, by EntityAddress."""

    async def agr_connections(
        self, agr_domain: str, period: date, *, as_of: datetime | None = None
    ) -> list[AgrAllocation]:
        """The aggregator's connections on `period`, by EntityAddress, with the congestion
        point holding each then, if any."""

    async def congestion_points(
        self, *, dso_domain: str | None = None, as_of: datetime | None = None
    ) -> list[PointSummary]:
        """Every congestion point (of one DSO), by DSO and EntityAddress."""

    async def updates(self, *, sender_domain: str | None = None) -> list[UpdateSummary]:
        """The accepted updates (of one sender), oldest first: the register's history."""


#: Builds the bus events of one applied update from its kind, its meta and `change_summary`;
#: the register writes them in the update's own transaction, and only when it applies it.
RegisterEvents = Callable[["UpdateKind", "UpdateMeta", Mapping[str, object]], Sequence[EventRecord]]


def change_summary(
    kind: UpdateKind,
    update: UpdateMeta,
    *,
    points: Sequence[PointDefinition] = (),
    connections: Sequence[ConnectionPeriod] = (),
) -> dict[str, object]:
    """What a register event says about an applied update: who, which message, and how much.

    Connections are counted, never listed: an EntityAddress identifies a household (personal
    data), and the message event that caused the change carries them for who needs them."""
    summary: dict[str, object] = {
        "kind": kind.value,
        "sender": update.sender_domain,
        "messageId": update.message_id,
        "timeStamp": update.time_stamp.isoformat(),
        "recordedAt": update.recorded_at.isoformat(),
    }
    if kind is UpdateKind.DSO:
        summary["congestionPoints"] = [
            {
                "entityAddress": point.entity_address,
                "startPeriod": point.start_period.isoformat(),
                "endPeriod": None if point.end_period is None else point.end_period.isoformat(),
                "connections": len(point.connections),
            }
            for point in points
        ]
    else:
        summary["connections"] = len(connections)
    return summary


def versioned_diff(current: Mapping[K, int], wanted: Iterable[K]) -> tuple[list[K], list[int]]:
    """Rows to insert and row ids to supersede so that the current rows become `wanted`.

    Rows are compared by value (`current` maps each current row's value to its id); a row
    wanted as it stands is neither inserted nor superseded, so it keeps its history.
    """
    remaining = dict(current)
    inserts: list[K] = []
    for row in wanted:
        if remaining.pop(row, None) is None:
            inserts.append(row)
    return inserts, list(remaining.values())


def iso_rows(connections: Iterable[ConnectionPeriod]) -> list[tuple[str, str, str | None]]:
    """The connections with ISO dates: what SQLite stores and what `rows_digest` hashes.

    Periods repeat (most connections of a point share its StartPeriod), so each date is
    formatted once, not 100,000 times.
    """
    text: dict[date | None, str | None] = {None: None}
    rows: list[tuple[str, str, str | None]] = []
    append = rows.append
    for name, start, end in connections:
        try:
            start_text = text[start]
        except KeyError:
            start_text = text[start] = start.isoformat()
        try:
            end_text = text[end]
        except KeyError:
            end_text = text[end] = end.isoformat()  # type: ignore[union-attr]  # None is cached
        append((name, start_text, end_text))  # type: ignore[arg-type]  # start is never None
    return rows


def rows_digest(rows: Sequence[tuple[str, str, str | None]]) -> bytes:
    """SHA-256 of a point's connection list (`iso_rows`), in order: how an unchanged point is
    recognised without reading its rows back (a resent point of 1,000 connections costs a
    hash, not a read of 1,000 rows)."""
    text = "\n".join(map("%s|%s|%s".__mod__, rows))
    return hashlib.sha256(text.encode("utf-8")).digest()


_NAME = itemgetter(0)
_START = itemgetter(1)
_END = itemgetter(2)


@dataclass(frozen=True, slots=True)
class StoredRows:
    """A point's connections as the register stores them, with their `rows_digest`.

    Nearly always every connection of a point shares the point's period; then the names and
    that one ISO period are all there is to store, and both the digest and the rows for an
    INSERT are made at C speed from the names. Otherwise `rows` holds every row (`iso_rows`).
    """

    names: list[str]
    #: The ISO (StartPeriod, EndPeriod) every connection shares; None when they differ.
    period: tuple[str, str | None] | None
    rows: list[tuple[str, str, str | None]] | None
    digest: bytes

    @classmethod
    def of(cls, connections: Sequence[ConnectionPeriod]) -> StoredRows:
        starts = set(map(_START, connections))
        ends = set(map(_END, connections))
        if len(starts) == 1 and len(ends) == 1:
            (start,) = starts
            (end,) = ends
            period = (start.isoformat(), None if end is None else end.isoformat())
            names = list(map(_NAME, connections))
            # "\n".join(f"{name}|{start}|{end}") without a string per row: the same text.
            suffix = f"|{period[0]}|{period[1]}"
            text = (suffix + "\n").join(names) + suffix
            return cls(names, period, None, hashlib.sha256(text.encode("utf-8")).digest())
        rows = iso_rows(connections)
        return cls([row[0] for row in rows], None, rows, rows_digest(rows))

    def __len__(self) -> int:
        return len(self.names)
