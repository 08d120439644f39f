"""Protocol checks that end in a Rejected response (message-validation.md)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from adapter.uftp.messages import Role
from adapter.uftp.rules import may_send, protocol_rejections
from tests.uftp.samples import CRO_DOMAIN, DSO_DOMAIN, TIME_STAMP, make_dso_portfolio_update

WINDOW = (timedelta(days=7), timedelta(minutes=15))


def reasons(**changes: object) -> list[str]:
    message = dataclasses.replace(make_dso_portfolio_update(), **changes)
    return protocol_rejections(
        message,
        envelope_sender_domain=DSO_DOMAIN,
        envelope_sender_role=Role.DSO,
        own_domain=CRO_DOMAIN,
        own_role=Role.CRO,
        supported_versions=("3.1.0",),
        now=TIME_STAMP,
        time_stamp_window=WINDOW,
    )


def test_a_sound_message_passes() -> None:
    assert reasons() == []


@pytest.mark.parametrize(
    ("offset", "rejected"),
    [
        (timedelta(minutes=14), False),
        (timedelta(minutes=16), True),
        (-timedelta(days=6), False),
        (-timedelta(days=8), True),
    ],
    ids=["14-min-ahead", "16-min-ahead", "6-days-old", "8-days-old"],
)
def test_time_stamp_window(offset: timedelta, rejected: bool) -> None:
    result = reasons(time_stamp=TIME_STAMP + offset)
    assert result == (["TimeStamp out of bounds"] if rejected else [])


def test_reasons_come_together_in_table_order() -> None:
    assert reasons(
        sender_domain="dso2.example.com",
        recipient_domain="cro2.example.com",
        version="3.0.0",
        time_stamp=TIME_STAMP + timedelta(days=1),
    ) == [
        "Mismatch SenderDomain",
        "Unknown RecipientDomain",
        "Unsupported Version",
        "TimeStamp out of bounds",
    ]


def test_roles() -> None:
    from adapter.uftp.messages import AGRPortfolioUpdate, DSOPortfolioUpdate, TestMessage

    assert may_send(DSOPortfolioUpdate, Role.DSO, Role.CRO)
    assert not may_send(DSOPortfolioUpdate, Role.AGR, Role.CRO)
    assert not may_send(DSOPortfolioUpdate, Role.DSO, Role.DSO)
    assert may_send(AGRPortfolioUpdate, Role.AGR, Role.CRO)
    assert all(may_send(TestMessage, a, b) for a in Role for b in Role)


def test_flex_roles_follow_the_message_pages() -> None:
    """flex-request.md: "used by DSOs to request flexibility from AGRs"; flex-offer.md: "used
    by AGRs to make DSOs an offer"; flex-offer-revocation.md: "used by the AGR to revoke a
    FlexOffer previously sent to a DSO"; flex-order.md: "used by DSOs to purchase flexibility
    from an AGR"; flex-reservation-update.md: "used by DSOs to signal to an AGR". Each
    response goes back the other way."""
    from adapter.uftp.messages import (
        RESPONSE_TYPES,
        DPrognosis,
        FlexOffer,
        FlexOfferRevocation,
        FlexOrder,
        FlexRequest,
        FlexReservationUpdate,
        FlexSettlement,
        Metering,
    )

    for request, sender, recipient in (
        (FlexRequest, Role.DSO, Role.AGR),
        (FlexOffer, Role.AGR, Role.DSO),
        (FlexOfferRevocation, Role.AGR, Role.DSO),
        (FlexOrder, Role.DSO, Role.AGR),
        (FlexReservationUpdate, Role.DSO, Role.AGR),
        (DPrognosis, Role.AGR, Role.DSO),
        (FlexSettlement, Role.DSO, Role.AGR),
        (Metering, Role.AGR, Role.DSO),
    ):
        assert may_send(request, sender, recipient)
        assert request.recipient_roles == {recipient}
        assert [(a, b) for a in Role for b in Role if may_send(request, a, b)] == [
            (sender, recipient)
        ]
        assert may_send(RESPONSE_TYPES[request], recipient, sender)
        assert RESPONSE_TYPES[request].recipient_roles == {sender}


def test_every_message_type_has_a_route() -> None:
    from adapter.uftp.messages import MESSAGE_TYPES

    for kind in MESSAGE_TYPES.values():
        assert kind.sender_roles and kind.recipient_roles, kind.__name__
