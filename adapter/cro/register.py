"""The Common Reference's rules as pure functions: no I/O, so each rule is a unit test away.

An update is judged in two steps, because part of the judgement needs the register:

1. `prepare_dso_update` / `prepare_agr_update` look at the message alone: who sent it
   (closed mode), its TimeZone, duplicates and periods. They return a *proposal*: the
   definitions to store (clipped where the policy says so) and the reasons found so far.
2. `check_dso_update` / `check_agr_update` run inside the store's transaction with the slice
   of the register the message touches (`adapter.store.register.DsoUpdateState`): message
   order, ownership of congestion points, conflicting connections. They raise one
   `Rejection` carrying every reason of both steps, as message-validation.md allows ("This
   field can contain multiple reasons for rejections (separated by a semicolon)").

What an update means, precisely:

* DSOPortfolioUpdate: each congestion point in the message replaces the DSO's definition of
  that point - its periods, flags and connections; points the message does not name stay as
  they were. A point's EndPeriod bounds its connections (the period rules below), so ending
  a point ends its connections with it (contract-phase.md: "It is not necessary to add
  connections to this message since they will also expire"); connections a message no longer
  lists are no longer part of the point, for any Period. Each Connection element is a
  membership with its own Period (dso-portfolio-update.md: "The first Period that the
  Connection is part of this CongestionPoint"), so one message may move a connection from
  one point to another (in `cp-a` until June, in `cp-b` from July), or list it twice in one
  point; only memberships whose Periods share a day conflict.
* AGRPortfolioUpdate: for every connection the message names, the aggregator's registration
  of that connection (all its periods) is replaced by the periods the message gives for it;
  connections it does not name stay registered as they were. A connection may appear more
  than once with periods that do not overlap (represented, not represented, represented
  again). To end a registration the aggregator sends the connection with an EndPeriod.

Periods are dates, EndPeriod inclusive, None = open-ended.

Rejection texts name at most `LISTED` items and count the rest: a RejectionReason that lists
100,000 connections helps nobody.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import chain, pairwise
from operator import itemgetter
from typing import Final

from adapter.config import CroMode, CroSettings, PeriodViolation
from adapter.store.register import (
    AgrAllocation,
    AgrUpdateState,
    ConnectionPeriod,
    DsoConnection,
    DsoUpdateState,
    Membership,
    PointDefinition,
)
from adapter.uftp.errors import Reason, Rejection
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioQueryCongestionPoint,
    AGRPortfolioQueryConnection,
    AGRPortfolioQueryDSOPortfolio,
    AGRPortfolioQueryDSOView,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    DSOPortfolioQuery,
    DSOPortfolioQueryCongestionPoint,
    DSOPortfolioQueryConnection,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    RedispatchBy,
)

__all__ = [
    "CONNECTION_CONFLICT",
    "DUPLICATE_CONGESTION_POINT",
    "DUPLICATE_CONNECTION",
    "ENDED_IN_OPEN_POINT",
    "END_BEFORE_START",
    "LISTED",
    "NO_CONGESTION_POINT",
    "OPEN_IN_ENDED_POINT",
    "OUTSIDE_POINT_PERIOD",
    "AgrProposal",
    "DsoProposal",
    "Policy",
    "admission",
    "agr_query_response",
    "check_agr_update",
    "check_dso_update",
    "dso_query_response",
    "listing",
    "overlapping_twice",
    "overlaps",
    "prepare_agr_update",
    "prepare_dso_update",
]

#: How many items a rejection reason names before it only counts the rest.
LISTED: Final = 5

# "[User defined]" reasons (contract-phase.md allows "any other reasonable cause").
DUPLICATE_CONGESTION_POINT: Final = "Duplicate CongestionPoint"
DUPLICATE_CONNECTION: Final = "Duplicate Connection"
CONNECTION_CONFLICT: Final = "Connection conflict"
END_BEFORE_START: Final = "EndPeriod before StartPeriod"
# The three period rules of dso-portfolio-update.md for a Connection in its CongestionPoint.
OUTSIDE_POINT_PERIOD: Final = "Connection period outside its CongestionPoint's period"
OPEN_IN_ENDED_POINT: Final = "Connection without EndPeriod in a CongestionPoint with one"
ENDED_IN_OPEN_POINT: Final = "Connection with EndPeriod in a CongestionPoint without one"
NO_CONGESTION_POINT: Final = "No congestion point holds your connections on this Period"


def listing(label: str, items: Sequence[str]) -> str:
    """`label: a, b, c, d, e and 99,995 more` - a reason that stays short."""
    shown = ", ".join(items[:LISTED])
    more = len(items) - LISTED
    return f"{label}: {shown}" + (f" and {more:,} more" if more > 0 else "")


def overlaps(start_a: date, end_a: date | None, start_b: date, end_b: date | None) -> bool:
    """Whether two inclusive periods (None = open end) share at least one day."""
    return (end_b is None or start_a <= end_b) and (end_a is None or start_b <= end_a)


_NAME: Final = itemgetter(0)


def overlapping_twice(connections: Collection[ConnectionPeriod]) -> list[str]:
    """The connections listed more than once for periods that share a day, each named once,
    in order of first appearance: what "Duplicate Connection" rejects in one update.

    A connection listed twice for disjoint periods is two memberships, not a duplicate: the
    AGRPortfolioUpdate's "represented, not represented, represented again", or the
    DSOPortfolioUpdate's connection that moves from one congestion point to another. Only
    overlapping ones are ambiguous: which of the two would hold on the shared day?

    The common case (every connection once) costs one set of the names, at C speed; only
    the names that repeat are grouped and their periods compared, sorted by StartPeriod: if
    any two periods share a day, two neighbours in that order do.
    """
    names = list(map(_NAME, connections))
    if len(set(names)) == len(names):
        return []
    periods: dict[str, list[tuple[date, date | None]]] = {
        name: [] for name, count in Counter(names).items() if count > 1
    }
    for name, start, end in connections:
        spans = periods.get(name)
        if spans is not None:
            spans.append((start, end))
    duplicates: list[str] = []
    for name, spans in periods.items():
        spans.sort(key=_NAME)
        if any(overlaps(*a, *b) for a, b in pairwise(spans)):
            duplicates.append(name)
    return duplicates


@dataclass(frozen=True, slots=True)
class Policy:
    """The CRO's policy (the [cro] table) plus who is pre-registered for closed mode."""

    mode: CroMode = CroMode.OPEN
    #: The market's time zone; a message in another one is "TimeZone rejected".
    time_zone: str = "Europe/Amsterdam"
    period_violation: PeriodViolation = PeriodViolation.REJECT
    known_dsos: frozenset[str] = frozenset()
    known_agrs: frozenset[str] = frozenset()

    @classmethod
    def from_settings(
        cls,
        settings: CroSettings,
        *,
        known_dsos: Collection[str] = (),
        known_agrs: Collection[str] = (),
    ) -> Policy:
        return cls(
            settings.mode,
            settings.time_zone,
            settings.period_violation,
            frozenset(known_dsos),
            frozenset(known_agrs),
        )


def admission(sender: str, time_zone: str, known: frozenset[str], policy: Policy) -> list[str]:
    """Reasons to refuse any message of `sender` whatever its content.

    "Unauthorized": closed mode and the sender is not pre-registered (contract-phase.md).
    "TimeZone rejected": not the market's time zone (message-validation.md). The names are
    compared, not the UTC offsets the spec speaks of: Periods are the market's days, and a
    zone that only agrees on today's offsets may not agree on every Period's.
    """
    reasons: list[str] = []
    if policy.mode is CroMode.CLOSED and sender not in known:
        reasons.append(Reason.UNAUTHORIZED)
    if time_zone != policy.time_zone:
        reasons.append(Reason.TIMEZONE_REJECTED)
    return reasons


# --------------------------------------------------------------------------------------------
# DSOPortfolioUpdate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DsoProposal:
    """A DSOPortfolioUpdate judged on its own: what to store and what is wrong so far."""

    sender_domain: str
    time_stamp: datetime
    points: tuple[PointDefinition, ...]
    #: Unauthorized / TimeZone rejected: reported first.
    admission: tuple[str, ...]
    #: Duplicates and period rules.
    problems: tuple[str, ...]
    #: Clip mode: the connections whose period broke a rule and was clipped or (within the
    #: point already) kept, as "connection at point: what happened" - for the log.
    clipped: tuple[str, ...] = ()

    @property
    def connection_count(self) -> int:
        return sum(len(point.connections) for point in self.points)


def _period(start: date, end: date | None) -> str:
    return f"{start.isoformat()}..{end.isoformat() if end else 'open'}"


def prepare_dso_update(message: DSOPortfolioUpdate, sender: str, policy: Policy) -> DsoProposal:
    """Judge a DSOPortfolioUpdate without the register.

    Duplicates: a congestion point named twice ("Duplicate CongestionPoint"), a connection
    listed twice for periods that share a day, in one point or in two ("Duplicate
    Connection", `overlapping_twice`); disjoint periods are a connection moving.

    Period rules (dso-portfolio-update.md, Connection StartPeriod/EndPeriod notes): a
    Connection's StartPeriod and EndPeriod lie within its CongestionPoint's period; its
    EndPeriod is empty if and only if the CongestionPoint's is; no EndPeriod is before its
    StartPeriod. contract-phase.md leaves the reaction to the CRO ("reject the message, adjust
    the period or reply with a warning"); `Policy.period_violation` chooses:

    * reject: each broken rule is a reason;
    * clip: a connection's period is cut to its congestion point's (StartPeriod raised,
      EndPeriod lowered or, when missing in an ended point, set to the point's). A connection
      with an EndPeriod in an open-ended point lies within the point already and is kept as
      sent. What cannot be clipped is still rejected: a period left empty by the cut, an
      EndPeriod before its StartPeriod, a congestion point's own reversed period.
    """
    clip = policy.period_violation is PeriodViolation.CLIP
    seen_points: set[str] = set()
    duplicate_points: list[str] = []
    reversed_periods: list[str] = []
    outside: list[str] = []
    open_in_ended: list[str] = []
    ended_in_open: list[str] = []
    clipped: list[str] = []
    points: list[PointDefinition] = []

    for point in message.congestion_points:
        address = point.entity_address
        if address in seen_points:
            duplicate_points.append(address)
        seen_points.add(address)
        point_start, point_end = point.start_period, point.end_period
        point_reversed = point_end is not None and point_end < point_start
        if point_reversed:
            reversed_periods.append(address)
        connections: Sequence[ConnectionPeriod] = point.connections
        fixed: list[ConnectionPeriod] | None = None
        for index, (name, start, end) in enumerate(point.connections):
            # The common case, in as few comparisons as possible: 100,000 pass here.
            if point_end is None:
                fine = end is None and start >= point_start
            else:
                fine = end is not None and point_start <= start <= end <= point_end
            if fine or point_reversed:
                continue
            where = f"{name} at {address}"
            if end is not None and end < start:
                reversed_periods.append(where)
                continue
            if clip:
                new_start = max(start, point_start)
                new_end = end if point_end is None else min(end or point_end, point_end)
                if new_end is not None and new_end < new_start:
                    outside.append(where)  # nothing left to keep
                elif (new_start, new_end) == (start, end):
                    clipped.append(f"{where}: {_period(start, end)} kept as sent")
                else:
                    if fixed is None:
                        fixed = list(point.connections)
                    fixed[index] = (name, new_start, new_end)
                    clipped.append(
                        f"{where}: {_period(start, end)} clipped to {_period(new_start, new_end)}"
                    )
                continue
            if (
                start < point_start
                or (point_end is not None and start > point_end)
                or (end is not None and end < point_start)
                or (end is not None and point_end is not None and end > point_end)
            ):
                outside.append(where)
            if point_end is not None and end is None:
                open_in_ended.append(where)
            elif point_end is None and end is not None:
                ended_in_open.append(where)
        if fixed is not None:
            connections = fixed
        points.append(
            PointDefinition(
                entity_address=address,
                start_period=point_start,
                end_period=point_end,
                mutex_offers_supported=point.mutex_offers_supported,
                day_ahead_redispatch_by=point.day_ahead_redispatch_by,
                intraday_redispatch_by=point.intraday_redispatch_by,
                connections=connections,
            )
        )

    # After clipping: the memberships as they would be stored are what may not overlap.
    duplicate_connections = overlapping_twice(
        list(chain.from_iterable(point.connections for point in points))
    )
    problems = [
        listing(label, items)
        for label, items in (
            (DUPLICATE_CONGESTION_POINT, duplicate_points),
            (DUPLICATE_CONNECTION, duplicate_connections),
            (END_BEFORE_START, reversed_periods),
            (OUTSIDE_POINT_PERIOD, outside),
            (OPEN_IN_ENDED_POINT, open_in_ended),
            (ENDED_IN_OPEN_POINT, ended_in_open),
        )
        if items
    ]
    return DsoProposal(
        sender_domain=sender,
        time_stamp=_time_stamp(message.time_stamp),
        points=tuple(points),
        admission=tuple(admission(sender, message.time_zone, policy.known_dsos, policy)),
        problems=tuple(problems),
        clipped=tuple(clipped),
    )


def check_dso_update(proposal: DsoProposal, state: DsoUpdateState) -> None:
    """Judge the proposal against the register; raise one Rejection with every reason.

    * "Subordinate sequence number": the TimeStamp is before that of the last update accepted
      from this DSO (contract-phase.md). An equal TimeStamp is not "lower" and passes.
    * "Invalid CongestionPoint": a point another DSO registered (message-validation.md:
      "the recipient is not active at this CongestionPoint"). A point stays its first DSO's,
      also after it ended.
    * "Connection conflict: <connection> at <point>": a connection the message puts in
      <point> (a point of this message) is part of another point for an overlapping period.
      The other point is not named: it may be another DSO's, and the CRO discloses a
      congestion point only on a need-to-know basis (privacy-and-security-by-design.md).
    """
    reasons = list(proposal.admission)
    if _subordinate(proposal.time_stamp, state.last_time_stamp):
        reasons.append(Reason.SUBORDINATE_SEQUENCE_NUMBER)
    foreign = [
        point.entity_address
        for point in proposal.points
        if state.owners.get(point.entity_address, proposal.sender_domain) != proposal.sender_domain
    ]
    if foreign:
        reasons.append(listing(Reason.INVALID_CONGESTION_POINT, foreign))
    reasons.extend(proposal.problems)
    conflicts = _dso_conflicts(proposal.points, state.memberships)
    if conflicts:
        reasons.append(listing(CONNECTION_CONFLICT, conflicts))
    if reasons:
        raise Rejection(*reasons)


def _dso_conflicts(
    points: Sequence[PointDefinition], memberships: Sequence[Membership]
) -> list[str]:
    if not memberships:
        return []
    held: dict[str, list[Membership]] = {}
    for membership in memberships:
        held.setdefault(membership.entity_address, []).append(membership)
    conflicts: list[str] = []
    for point in points:
        for name, start, end in point.connections:
            others = held.get(name)
            if others and any(overlaps(start, end, o.start_period, o.end_period) for o in others):
                conflicts.append(f"{name} at {point.entity_address}")
    return conflicts


# --------------------------------------------------------------------------------------------
# AGRPortfolioUpdate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgrProposal:
    """An AGRPortfolioUpdate judged on its own."""

    sender_domain: str
    time_stamp: datetime
    connections: tuple[ConnectionPeriod, ...]
    admission: tuple[str, ...]
    problems: tuple[str, ...]


def prepare_agr_update(message: AGRPortfolioUpdate, sender: str, policy: Policy) -> AgrProposal:
    """Judge an AGRPortfolioUpdate without the register.

    Rejected: an EndPeriod before its StartPeriod (nothing to clip it to, whatever
    `period_violation` says), and a connection named twice with overlapping periods (which
    of the two would be meant?).
    """
    reversed_periods = [
        name for name, start, end in message.connections if end is not None and end < start
    ]
    problems = [
        listing(label, items)
        for label, items in (
            (DUPLICATE_CONNECTION, overlapping_twice(message.connections)),
            (END_BEFORE_START, reversed_periods),
        )
        if items
    ]
    return AgrProposal(
        sender_domain=sender,
        time_stamp=_time_stamp(message.time_stamp),
        connections=tuple(message.connections),
        admission=tuple(admission(sender, message.time_zone, policy.known_agrs, policy)),
        problems=tuple(problems),
    )


def check_agr_update(proposal: AgrProposal, state: AgrUpdateState) -> None:
    """Judge the proposal against the register; raise one Rejection with every reason.

    "Connection conflict: <connection>": another aggregator registered the connection for an
    overlapping period. The other aggregator is not named (privacy-and-security-by-design.md).
    """
    reasons = list(proposal.admission)
    if _subordinate(proposal.time_stamp, state.last_time_stamp):
        reasons.append(Reason.SUBORDINATE_SEQUENCE_NUMBER)
    reasons.extend(proposal.problems)
    if state.registrations:
        held: dict[str, list[Membership]] = {}
        for registration in state.registrations:
            held.setdefault(registration.entity_address, []).append(registration)
        conflicts = _unique(
            name
            for name, start, end in proposal.connections
            if any(overlaps(start, end, o.start_period, o.end_period) for o in held.get(name, ()))
        )
        if conflicts:
            reasons.append(listing(CONNECTION_CONFLICT, conflicts))
    if reasons:
        raise Rejection(*reasons)


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


def dso_query_response(
    message: DSOPortfolioQuery, connections: Sequence[DsoConnection]
) -> DSOPortfolioQueryResponse:
    """The answer to a DSOPortfolioQuery (dso-portfolio-query-response.md), given the point's
    connections on the Period; "No connections available" when there are none (the schema
    wants at least one Connection in a CongestionPoint)."""
    if not connections:
        raise Rejection(Reason.NO_CONNECTIONS_AVAILABLE)
    return DSOPortfolioQueryResponse(
        time_zone=message.time_zone,
        period=message.period,
        congestion_point=DSOPortfolioQueryCongestionPoint(
            entity_address=message.entity_address,
            connections=tuple(
                DSOPortfolioQueryConnection(c.entity_address, c.agr_domain) for c in connections
            ),
        ),
    )


def agr_query_response(
    message: AGRPortfolioQuery, allocations: Sequence[AgrAllocation]
) -> AGRPortfolioQueryResponse:
    """The answer to an AGRPortfolioQuery (agr-portfolio-query-response.md): one DSO-View
    holding, per DSO, the congestion points (with their flags) of the aggregator's
    connections on the Period, plus its connections no congestion point holds then.

    The XSD (3.1.0 and the draft alike) requires a DSO-View with at least one DSO-Portfolio,
    each with a CongestionPoint with a Connection, although the spec's text allows none. So
    when no congestion point holds any of the aggregator's connections there is no
    schema-valid Accepted answer: it is rejected with a reason instead ("No connections
    available" when the aggregator has no connection on the Period at all). A Rejected
    AGRPortfolioQueryResponse is not schema-valid either (no DSO-View); the participant sends
    it unvalidated, and a peer that validates strictly answers it with HTTP 400.
    """
    if not allocations:
        raise Rejection(Reason.NO_CONNECTIONS_AVAILABLE)
    unallocated: list[AGRPortfolioQueryConnection] = []
    by_dso: dict[str, dict[str, tuple[AgrAllocation, list[AGRPortfolioQueryConnection]]]] = {}
    for allocation in allocations:
        connection = AGRPortfolioQueryConnection(allocation.entity_address)
        if allocation.congestion_point is None or allocation.dso_domain is None:
            unallocated.append(connection)
            continue
        points = by_dso.setdefault(allocation.dso_domain, {})
        points.setdefault(allocation.congestion_point, (allocation, []))[1].append(connection)
    if not by_dso:
        raise Rejection(NO_CONGESTION_POINT)
    portfolios = tuple(
        AGRPortfolioQueryDSOPortfolio(
            dso_domain=dso,
            congestion_points=tuple(
                AGRPortfolioQueryCongestionPoint(
                    entity_address=address,
                    mutex_offers_supported=bool(first.mutex_offers_supported),
                    day_ahead_redispatch_by=first.day_ahead_redispatch_by or RedispatchBy.DSO,
                    intraday_redispatch_by=first.intraday_redispatch_by,
                    connections=tuple(connections),
                )
                for address, (first, connections) in sorted(points.items())
            ),
        )
        for dso, points in sorted(by_dso.items())
    )
    return AGRPortfolioQueryResponse(
        time_zone=message.time_zone,
        period=message.period,
        dso_views=(
            AGRPortfolioQueryDSOView(dso_portfolios=portfolios, connections=tuple(unallocated)),
        ),
    )


# --------------------------------------------------------------------------------------------


def _time_stamp(value: datetime | None) -> datetime:
    if value is None:  # a decoded message always has one; a hand-built one may not
        raise ValueError("the message has no TimeStamp")
    return value


def _subordinate(time_stamp: datetime, last: datetime | None) -> bool:
    return last is not None and time_stamp < last


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
