"""The CRO's rules as pure functions: each rule accepted and rejected, and clip mode.

No register, no I/O: the state a check needs is built by hand (`DsoUpdateState`, ...).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from adapter.config import CroMode, PeriodViolation
from adapter.cro.register import (
    CONNECTION_CONFLICT,
    DUPLICATE_CONGESTION_POINT,
    DUPLICATE_CONNECTION,
    END_BEFORE_START,
    ENDED_IN_OPEN_POINT,
    NO_CONGESTION_POINT,
    OPEN_IN_ENDED_POINT,
    OUTSIDE_POINT_PERIOD,
    Policy,
    admission,
    agr_query_response,
    check_agr_update,
    check_dso_update,
    dso_query_response,
    listing,
    overlapping_twice,
    overlaps,
    prepare_agr_update,
    prepare_dso_update,
)
from adapter.store.register import (
    AgrAllocation,
    AgrUpdateState,
    DsoConnection,
    DsoUpdateState,
    Membership,
)
from adapter.uftp.errors import Rejection
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    DSOPortfolioQuery,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
)

DSO = "dso.example.com"
DSO2 = "dso2.example.com"
AGR = "agr.example.com"
CP1 = "ea1.2024-01.nl.example:cp1"
CP2 = "ea1.2024-01.nl.example:cp2"
E1, E2, E3 = "ean.000000000000000001", "ean.000000000000000002", "ean.000000000000000003"
TZ = "Europe/Amsterdam"
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
JAN, JUN, DEC = date(2024, 1, 1), date(2024, 6, 1), date(2024, 12, 31)
OPEN = Policy()
CLIP = Policy(period_violation=PeriodViolation.CLIP)
EMPTY_DSO = DsoUpdateState(owners={}, last_time_stamp=None, memberships=())
EMPTY_AGR = AgrUpdateState(last_time_stamp=None, registrations=())


def point(
    address: str = CP1,
    *connections: DSOPortfolioUpdateConnection,
    start: date = JAN,
    end: date | None = None,
) -> DSOPortfolioUpdateCongestionPoint:
    return DSOPortfolioUpdateCongestionPoint(
        entity_address=address,
        start_period=start,
        end_period=end,
        mutex_offers_supported=True,
        day_ahead_redispatch_by=RedispatchBy.DSO,
        connections=connections or (DSOPortfolioUpdateConnection(E1, start),),
    )


def dpu(*points: DSOPortfolioUpdateCongestionPoint, time_zone: str = TZ) -> DSOPortfolioUpdate:
    return DSOPortfolioUpdate(
        sender_domain=DSO, time_stamp=T0, time_zone=time_zone, congestion_points=points
    )


def apu(*connections: AGRPortfolioUpdateConnection, time_zone: str = TZ) -> AGRPortfolioUpdate:
    return AGRPortfolioUpdate(
        sender_domain=AGR, time_stamp=T0, time_zone=time_zone, connections=connections
    )


def reasons_of(proposal_check: object) -> tuple[str, ...]:
    with pytest.raises(Rejection) as rejection:
        proposal_check()  # type: ignore[operator]
    return rejection.value.reasons


def dso_reasons(message: DSOPortfolioUpdate, policy: Policy = OPEN, state=EMPTY_DSO) -> tuple:
    proposal = prepare_dso_update(message, DSO, policy)
    return reasons_of(lambda: check_dso_update(proposal, state))


def dso_accepts(message: DSOPortfolioUpdate, policy: Policy = OPEN, state=EMPTY_DSO):
    proposal = prepare_dso_update(message, DSO, policy)
    check_dso_update(proposal, state)  # raises if rejected
    return proposal


C = DSOPortfolioUpdateConnection


# --- admission -----------------------------------------------------------------------------


def test_open_mode_admits_anyone_in_the_market_time_zone() -> None:
    assert admission("stranger.example.com", TZ, frozenset(), OPEN) == []


def test_closed_mode_admits_only_pre_registered_senders() -> None:
    closed = Policy(mode=CroMode.CLOSED, known_dsos=frozenset({DSO}))
    assert admission(DSO, TZ, closed.known_dsos, closed) == []
    assert admission(DSO2, TZ, closed.known_dsos, closed) == ["Unauthorized"]


def test_other_time_zone_is_rejected() -> None:
    assert admission(DSO, "Europe/London", frozenset(), OPEN) == ["TimeZone rejected"]
    custom = Policy(time_zone="Europe/London")
    assert admission(DSO, "Europe/London", frozenset(), custom) == []


# --- DSOPortfolioUpdate: the message alone ---------------------------------------------------


def test_valid_update_is_accepted_and_its_rows_are_not_copied() -> None:
    message = dpu(point(CP1, C(E1, JAN), C(E2, JUN)), point(CP2, C(E3, JAN), end=DEC))
    with pytest.raises(Rejection):  # E3 has no EndPeriod in an ended point
        dso_accepts(message)
    message = dpu(point(CP1, C(E1, JAN), C(E2, JUN)), point(CP2, C(E3, JAN, DEC), end=DEC))
    proposal = dso_accepts(message)
    assert [p.entity_address for p in proposal.points] == [CP1, CP2]
    assert proposal.points[0].connections is message.congestion_points[0].connections
    assert proposal.connection_count == 3
    assert proposal.clipped == ()


def test_same_congestion_point_twice_is_rejected() -> None:
    reasons = dso_reasons(dpu(point(CP1, C(E1, JAN)), point(CP1, C(E2, JAN))))
    assert reasons == (f"{DUPLICATE_CONGESTION_POINT}: {CP1}",)


@pytest.mark.parametrize("second_point", [CP1, CP2])
def test_same_connection_twice_is_rejected(second_point: str) -> None:
    if second_point == CP1:
        message = dpu(point(CP1, C(E1, JAN), C(E1, JUN)))
    else:
        message = dpu(point(CP1, C(E1, JAN)), point(CP2, C(E1, JAN)))
    assert dso_reasons(message) == (f"{DUPLICATE_CONNECTION}: {E1}",)


# The example of a connection moving: in cp-a for the first half of 2028, in cp-b after.
CP_A, CP_B = "ea1.2028-01.nl.example:cp-a", "ea1.2028-01.nl.example:cp-b"
MOVING = "ean.871685901000112"
JAN28, JUN30_28, JUL28 = date(2028, 1, 1), date(2028, 6, 30), date(2028, 7, 1)


def test_a_connection_moves_between_points_in_one_update() -> None:
    """Each Connection element has its own Period (dso-portfolio-update.md: "The first
    Period that the Connection is part of this CongestionPoint"): disjoint Periods in two
    points are one connection moving, not a duplicate."""
    message = dpu(
        point(CP_A, C(MOVING, JAN28, JUN30_28), start=JAN28, end=JUN30_28),
        point(CP_B, C(MOVING, JUL28), start=JUL28),
    )
    proposal = dso_accepts(message)
    assert [list(p.connections) for p in proposal.points] == [
        [C(MOVING, JAN28, JUN30_28)],
        [C(MOVING, JUL28)],
    ]


def test_the_same_move_in_two_messages_is_accepted_alike() -> None:
    dso_accepts(dpu(point(CP_A, C(MOVING, JAN28, JUN30_28), start=JAN28, end=JUN30_28)))
    in_cp_a = DsoUpdateState(
        owners={CP_A: DSO},
        last_time_stamp=T0,
        memberships=(Membership(MOVING, CP_A, JAN28, JUN30_28),),
    )
    dso_accepts(dpu(point(CP_B, C(MOVING, JUL28), start=JUL28)), state=in_cp_a)


@pytest.mark.parametrize(
    "cp_b_start",
    [JUN30_28, date(2028, 3, 1), JAN28, date(2027, 12, 1)],
    ids=["one-day", "half", "same-start", "around"],
)
def test_overlapping_memberships_in_one_update_are_still_rejected(cp_b_start: date) -> None:
    message = dpu(
        point(CP_A, C(MOVING, JAN28, JUN30_28), start=JAN28, end=JUN30_28),
        point(CP_B, C(MOVING, cp_b_start), start=cp_b_start),
    )
    assert dso_reasons(message) == (f"{DUPLICATE_CONNECTION}: {MOVING}",)


def test_a_connection_may_leave_a_point_and_return() -> None:
    away = C(E1, date(2024, 3, 1), date(2024, 5, 31))
    message = dpu(
        point(CP1, C(E1, JAN, date(2024, 2, 29)), C(E1, JUN, DEC), end=DEC),
        point(CP2, away, end=DEC),
    )
    dso_accepts(message)


def test_duplicates_are_judged_on_the_clipped_periods() -> None:
    """In clip mode an open connection in a point that ends is cut to the point's end; what
    is stored then does not overlap the next point's membership."""
    message = dpu(
        point(CP_A, C(MOVING, JAN28), start=JAN28, end=JUN30_28),
        point(CP_B, C(MOVING, JUL28), start=JUL28),
    )
    proposal = dso_accepts(message, CLIP)
    assert list(proposal.points[0].connections) == [(MOVING, JAN28, JUN30_28)]
    assert dso_reasons(message) == (
        f"{DUPLICATE_CONNECTION}: {MOVING}",
        f"{OPEN_IN_ENDED_POINT}: {MOVING} at {CP_A}",
    )


def test_overlapping_twice_names_each_duplicate_once_in_order() -> None:
    assert overlapping_twice([]) == []
    assert overlapping_twice([(E1, JAN, None), (E2, JAN, None)]) == []
    assert overlapping_twice([(E1, JUN, None), (E1, JAN, date(2024, 5, 31))]) == []
    listed = [
        (E2, JAN, JUN),
        (E1, JAN, None),
        (E2, date(2024, 6, 2), None),
        (E3, JAN, JAN),
        (E1, DEC, DEC),
        (E2, JUN, JUN),  # shares June 1 with the first E2
        (E3, JAN, JAN),
    ]
    assert overlapping_twice(listed) == [E2, E1, E3]
    # Overlapping periods that are not neighbours in the order given are found too.
    far = [(E1, JAN, DEC), (E1, date(2025, 1, 1), None), (E1, JUN, JUN)]
    assert overlapping_twice(far) == [E1]


@pytest.mark.parametrize(
    ("connection", "point_end", "reason"),
    [
        # StartPeriod before the point's StartPeriod
        (C(E1, date(2023, 12, 31)), None, OUTSIDE_POINT_PERIOD),
        # StartPeriod after the point's EndPeriod (and EndPeriod after it)
        (C(E1, date(2025, 1, 1), date(2025, 2, 1)), DEC, OUTSIDE_POINT_PERIOD),
        # EndPeriod after the point's EndPeriod
        (C(E1, JAN, date(2025, 1, 1)), DEC, OUTSIDE_POINT_PERIOD),
        # EndPeriod before the point's StartPeriod (and before its own start: reversed)
        (C(E1, JAN, date(2023, 1, 1)), None, END_BEFORE_START),
        # EndPeriod null although the point's is set
        (C(E1, JAN), DEC, OPEN_IN_ENDED_POINT),
        # EndPeriod set although the point's is null
        (C(E1, JAN, JUN), None, ENDED_IN_OPEN_POINT),
        # EndPeriod before StartPeriod
        (C(E1, JUN, date(2024, 5, 1)), DEC, END_BEFORE_START),
    ],
)
def test_period_rules_reject(connection: C, point_end: date | None, reason: str) -> None:
    reasons = dso_reasons(dpu(point(CP1, connection, end=point_end)))
    assert reasons[0].startswith(reason + ":"), reasons
    assert f"{E1} at {CP1}" in reasons[0]


@pytest.mark.parametrize(
    ("connection", "point_end"),
    [
        (C(E1, JAN), None),
        (C(E1, JUN), None),
        (C(E1, JAN, DEC), DEC),
        (C(E1, JUN, JUN), DEC),
        (C(E1, DEC, DEC), DEC),
    ],
)
def test_period_rules_accept(connection: C, point_end: date | None) -> None:
    dso_accepts(dpu(point(CP1, connection, end=point_end)))


def test_reversed_congestion_point_period_is_rejected_once() -> None:
    reasons = dso_reasons(dpu(point(CP1, C(E1, JUN, JAN), start=JUN, end=JAN)))
    assert reasons == (f"{END_BEFORE_START}: {CP1}",)


def test_several_rules_broken_are_reported_together() -> None:
    message = dpu(
        point(CP1, C(E1, date(2023, 1, 1)), C(E2, JAN, JUN)),
        point(CP1, C(E3, JAN)),
        time_zone="Europe/London",
    )
    closed = Policy(mode=CroMode.CLOSED)
    reasons = dso_reasons(message, closed)
    assert reasons[:2] == ("Unauthorized", "TimeZone rejected")
    assert {r.split(":")[0] for r in reasons[2:]} == {
        DUPLICATE_CONGESTION_POINT,
        OUTSIDE_POINT_PERIOD,
        ENDED_IN_OPEN_POINT,
    }


def test_many_violations_make_a_short_reason() -> None:
    connections = tuple(C(f"ean.{n:018d}", date(2023, 1, 1)) for n in range(100_000))
    reasons = dso_reasons(dpu(point(CP1, *connections)))
    assert len(reasons) == 1
    assert reasons[0].endswith("and 99,995 more")
    assert len(reasons[0]) < 400


def test_listing_names_the_first_few_and_counts_the_rest() -> None:
    assert listing("X", ["a", "b"]) == "X: a, b"
    assert listing("X", [str(n) for n in range(7)]) == "X: 0, 1, 2, 3, 4 and 2 more"


# --- clip mode -----------------------------------------------------------------------------


def test_clip_mode_clips_to_the_point_period_and_says_so() -> None:
    message = dpu(
        point(
            CP1,
            C(E1, date(2023, 6, 1), date(2025, 6, 1)),  # both ends outside
            C(E2, JUN),  # no EndPeriod in an ended point: ends with the point
            C(E3, JAN, JUN),  # fine
            start=JAN,
            end=DEC,
        )
    )
    proposal = dso_accepts(message, CLIP)
    assert list(proposal.points[0].connections) == [(E1, JAN, DEC), (E2, JUN, DEC), C(E3, JAN, JUN)]
    assert len(proposal.clipped) == 2
    assert (
        proposal.clipped[0]
        == f"{E1} at {CP1}: 2023-06-01..2025-06-01 clipped to 2024-01-01..2024-12-31"
    )


def test_clip_mode_keeps_an_ended_connection_in_an_open_point() -> None:
    proposal = dso_accepts(dpu(point(CP1, C(E1, JAN, JUN))), CLIP)
    assert list(proposal.points[0].connections) == [C(E1, JAN, JUN)]
    assert proposal.clipped == (f"{E1} at {CP1}: 2024-01-01..2024-06-01 kept as sent",)


@pytest.mark.parametrize(
    ("connection", "reason"),
    [
        (C(E1, date(2025, 1, 1), date(2025, 2, 1)), OUTSIDE_POINT_PERIOD),  # nothing left
        (C(E1, date(2023, 1, 1), date(2023, 2, 1)), OUTSIDE_POINT_PERIOD),  # nothing left
        (C(E1, JUN, JAN), END_BEFORE_START),  # reversed: nothing to clip
    ],
)
def test_clip_mode_still_rejects_what_cannot_be_clipped(connection: C, reason: str) -> None:
    reasons = dso_reasons(dpu(point(CP1, connection, end=DEC)), CLIP)
    assert reasons == (f"{reason}: {E1} at {CP1}",)


# --- DSOPortfolioUpdate: against the register -------------------------------------------------


def test_older_update_than_the_last_accepted_is_subordinate() -> None:
    message = dpu(point(CP1, C(E1, JAN)))
    later = DsoUpdateState(owners={}, last_time_stamp=T0 + timedelta(seconds=1), memberships=())
    assert dso_reasons(message, state=later) == ("Subordinate sequence number",)
    same = DsoUpdateState(owners={}, last_time_stamp=T0, memberships=())
    dso_accepts(message, state=same)
    earlier = DsoUpdateState(owners={}, last_time_stamp=T0 - timedelta(days=1), memberships=())
    dso_accepts(message, state=earlier)


def test_congestion_point_of_another_dso_is_invalid() -> None:
    message = dpu(point(CP1, C(E1, JAN)), point(CP2, C(E2, JAN)))
    theirs = DsoUpdateState(owners={CP1: DSO, CP2: DSO2}, last_time_stamp=None, memberships=())
    assert dso_reasons(message, state=theirs) == (f"Invalid CongestionPoint: {CP2}",)
    ours = DsoUpdateState(owners={CP1: DSO, CP2: DSO}, last_time_stamp=None, memberships=())
    dso_accepts(message, state=ours)


def test_connection_in_another_point_for_an_overlapping_period_conflicts() -> None:
    message = dpu(point(CP1, C(E1, JAN), C(E2, JUN)))
    elsewhere = DsoUpdateState(
        owners={},
        last_time_stamp=None,
        memberships=(Membership(E2, CP2, JAN, date(2024, 6, 30)),),
    )
    # The other point is not named: it may be another DSO's.
    assert dso_reasons(message, state=elsewhere) == (f"{CONNECTION_CONFLICT}: {E2} at {CP1}",)


def test_connection_in_another_point_before_it_joins_does_not_conflict() -> None:
    message = dpu(point(CP1, C(E1, JAN), C(E2, JUN)))
    moved = DsoUpdateState(
        owners={}, last_time_stamp=None, memberships=(Membership(E2, CP2, JAN, date(2024, 5, 31)),)
    )
    dso_accepts(message, state=moved)


def test_periods_overlap_inclusively() -> None:
    assert overlaps(JAN, JUN, JUN, DEC)
    assert not overlaps(JAN, date(2024, 5, 31), JUN, DEC)
    assert overlaps(JAN, None, DEC, DEC)
    assert overlaps(DEC, DEC, JAN, None)
    assert not overlaps(DEC, None, JAN, JUN)


# --- AGRPortfolioUpdate ----------------------------------------------------------------------

A = AGRPortfolioUpdateConnection


def agr_reasons(message: AGRPortfolioUpdate, policy: Policy = OPEN, state=EMPTY_AGR) -> tuple:
    proposal = prepare_agr_update(message, AGR, policy)
    return reasons_of(lambda: check_agr_update(proposal, state))


def test_agr_update_is_accepted() -> None:
    proposal = prepare_agr_update(apu(A(E1, JAN), A(E2, JAN, JUN)), AGR, OPEN)
    check_agr_update(proposal, EMPTY_AGR)
    assert proposal.connections == (A(E1, JAN), A(E2, JAN, JUN))


def test_agr_connection_twice_with_disjoint_periods_is_accepted() -> None:
    proposal = prepare_agr_update(apu(A(E1, JUN), A(E1, JAN, date(2024, 3, 1))), AGR, OPEN)
    check_agr_update(proposal, EMPTY_AGR)


def test_agr_connection_twice_with_overlapping_periods_is_rejected() -> None:
    assert agr_reasons(apu(A(E1, JAN), A(E1, JUN, DEC))) == (f"{DUPLICATE_CONNECTION}: {E1}",)


def test_agr_end_before_start_is_rejected_even_in_clip_mode() -> None:
    assert agr_reasons(apu(A(E1, JUN, JAN)), CLIP) == (f"{END_BEFORE_START}: {E1}",)


def test_agr_closed_mode_and_time_zone() -> None:
    closed = Policy(mode=CroMode.CLOSED, known_dsos=frozenset({AGR}))  # known as DSO only
    assert agr_reasons(apu(A(E1, JAN), time_zone="Europe/Paris"), closed) == (
        "Unauthorized",
        "TimeZone rejected",
    )
    allowed = Policy(mode=CroMode.CLOSED, known_agrs=frozenset({AGR}))
    check_agr_update(prepare_agr_update(apu(A(E1, JAN)), AGR, allowed), EMPTY_AGR)


def test_agr_registration_conflicting_with_another_agr_is_rejected() -> None:
    state = AgrUpdateState(
        last_time_stamp=None,
        registrations=(Membership(E1, "agr2.example.com", JAN, JUN), Membership(E2, "x", JAN, JAN)),
    )
    assert agr_reasons(apu(A(E1, JUN), A(E2, JUN)), state=state) == (
        f"{CONNECTION_CONFLICT}: {E1}",
    )


def test_agr_subordinate_update() -> None:
    state = AgrUpdateState(last_time_stamp=T0 + timedelta(hours=1), registrations=())
    assert agr_reasons(apu(A(E1, JUN)), state=state) == ("Subordinate sequence number",)


# --- queries ---------------------------------------------------------------------------------


def test_dso_query_answers_connections_with_their_agr() -> None:
    query = DSOPortfolioQuery(time_zone=TZ, period=JUN, entity_address=CP1)
    response = dso_query_response(query, [DsoConnection(E1, AGR), DsoConnection(E2, None)])
    assert response.period == JUN and response.time_zone == TZ
    assert response.congestion_point is not None
    assert response.congestion_point.entity_address == CP1
    assert [(c.entity_address, c.agr_domain) for c in response.congestion_point.connections] == [
        (E1, AGR),
        (E2, None),
    ]


def test_dso_query_without_connections_is_rejected() -> None:
    query = DSOPortfolioQuery(time_zone=TZ, period=JUN, entity_address=CP1)
    assert reasons_of(lambda: dso_query_response(query, [])) == ("No connections available",)


def test_agr_query_groups_by_dso_and_point_and_lists_the_unallocated() -> None:
    query = AGRPortfolioQuery(time_zone=TZ, period=JUN)
    allocations = [
        AgrAllocation(E1, CP2, DSO2, False, RedispatchBy.AGR, None),
        AgrAllocation(E2, CP1, DSO, True, RedispatchBy.DSO, RedispatchBy.AGR),
        AgrAllocation(E3),
        AgrAllocation("ean.000000000000000004", CP1, DSO, True, RedispatchBy.DSO, RedispatchBy.AGR),
    ]
    response = agr_query_response(query, allocations)
    [view] = response.dso_views
    assert [p.dso_domain for p in view.dso_portfolios] == [DSO, DSO2]
    [cp1] = view.dso_portfolios[0].congestion_points
    assert cp1.entity_address == CP1 and cp1.mutex_offers_supported
    assert cp1.intraday_redispatch_by is RedispatchBy.AGR
    assert [c.entity_address for c in cp1.connections] == [E2, "ean.000000000000000004"]
    [cp2] = view.dso_portfolios[1].congestion_points
    assert cp2.day_ahead_redispatch_by is RedispatchBy.AGR and not cp2.mutex_offers_supported
    assert [c.entity_address for c in view.connections] == [E3]


def test_agr_query_without_connections_or_points_is_rejected() -> None:
    query = AGRPortfolioQuery(time_zone=TZ, period=JUN)
    assert reasons_of(lambda: agr_query_response(query, [])) == ("No connections available",)
    assert reasons_of(lambda: agr_query_response(query, [AgrAllocation(E1)])) == (
        NO_CONGESTION_POINT,
    )
