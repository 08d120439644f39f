"""Who may send which message to whom.

Contract phase (spec: contract-phase.md, plan-phase.md): a DSO publishes and queries its
portfolio at the CRO; an aggregator does the same for its own connections; the CRO answers
both. Flexibility trading (spec: the message pages flex-*.md, d-prognosis.md, metering.md):
the DSO requests, orders, updates reservations and settles; the AGR offers, revokes its
offers, sends D-Prognoses and metering data; each answers the other's messages.
TestMessage may pass between any two participants.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import Reason
from .messages import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateResponse,
    DPrognosis,
    DPrognosisResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    FlexOffer,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Metering,
    MeteringResponse,
    PayloadMessage,
    PayloadResponse,
    Role,
    TestMessage,
    TestMessageResponse,
)

_ANY = frozenset(Role)
_DSO = frozenset({Role.DSO})
_AGR = frozenset({Role.AGR})

#: message type -> (roles that may send it, roles that may receive it)
ROUTES: dict[type[PayloadMessage], tuple[frozenset[Role], frozenset[Role]]] = {
    TestMessage: (_ANY, _ANY),
    TestMessageResponse: (_ANY, _ANY),
    DSOPortfolioUpdate: (frozenset({Role.DSO}), frozenset({Role.CRO})),
    DSOPortfolioUpdateResponse: (frozenset({Role.CRO}), frozenset({Role.DSO})),
    DSOPortfolioQuery: (frozenset({Role.DSO}), frozenset({Role.CRO})),
    DSOPortfolioQueryResponse: (frozenset({Role.CRO}), frozenset({Role.DSO})),
    AGRPortfolioUpdate: (frozenset({Role.AGR}), frozenset({Role.CRO})),
    AGRPortfolioUpdateResponse: (frozenset({Role.CRO}), frozenset({Role.AGR})),
    AGRPortfolioQuery: (frozenset({Role.AGR}), frozenset({Role.CRO})),
    AGRPortfolioQueryResponse: (frozenset({Role.CRO}), frozenset({Role.AGR})),
    # "FlexRequest messages are used by DSOs to request flexibility from AGRs."
    FlexRequest: (_DSO, _AGR),
    FlexRequestResponse: (_AGR, _DSO),
    # "FlexOffer messages are used by AGRs to make DSOs an offer for provision of flexibility."
    FlexOffer: (_AGR, _DSO),
    FlexOfferResponse: (_DSO, _AGR),
    # "used by the AGR to revoke a FlexOffer previously sent to a DSO"
    FlexOfferRevocation: (_AGR, _DSO),
    FlexOfferRevocationResponse: (_DSO, _AGR),
    # "FlexOrder messages are used by DSOs to purchase flexibility from an AGR"
    FlexOrder: (_DSO, _AGR),
    FlexOrderResponse: (_AGR, _DSO),
    # "used by DSOs to signal to an AGR which part of the contracted volume is still reserved"
    FlexReservationUpdate: (_DSO, _AGR),
    FlexReservationUpdateResponse: (_AGR, _DSO),
    # d-prognosis.md: "between AGRs and DSOs"; the DSO answers with the status of the
    # FlexOrders it sent (d-prognosis-response.md), so the AGR sends the prognosis.
    DPrognosis: (_AGR, _DSO),
    DPrognosisResponse: (_DSO, _AGR),
    # "sent by DSOs on a regular basis (typically monthly) to AGRs, in order to initiate
    # settlement"
    FlexSettlement: (_DSO, _AGR),
    FlexSettlementResponse: (_AGR, _DSO),
    # "If metering messages are used then the AGR must send metering messages"
    Metering: (_AGR, _DSO),
    MeteringResponse: (_DSO, _AGR),
}


def may_send(message_type: type[PayloadMessage], sender: Role, recipient: Role) -> bool:
    """Whether a participant in role `sender` may send `message_type` to one in `recipient`."""
    route = ROUTES.get(message_type)
    return route is not None and sender in route[0] and recipient in route[1]


def recipient_roles(message_type: type[PayloadMessage]) -> frozenset[Role]:
    """The roles a message of this type can be addressed to."""
    route = ROUTES.get(message_type)
    return route[1] if route is not None else frozenset()


def protocol_rejections(
    message: PayloadMessage,
    *,
    envelope_sender_domain: str,
    envelope_sender_role: Role,
    own_domain: str,
    own_role: Role,
    supported_versions: tuple[str, ...],
    barred: bool = False,
    now: datetime | None = None,
    time_stamp_window: tuple[timedelta, timedelta] | None = None,
) -> list[str]:
    """The checks that end in a Rejected response rather than an HTTP error.

    They run once the inner message is verified and schema-valid (message-validation.md):
    from then on problems are reported in the response message. All failing checks are
    reported together; the spec lets RejectionReason hold several, separated by ";".
    """
    reasons: list[str] = []
    if barred:
        reasons.append(Reason.BARRED_SENDER)
    if message.sender_domain != envelope_sender_domain:
        reasons.append(Reason.MISMATCH_SENDER_DOMAIN)
    # A response answers a request of ours, whatever its type; whether it is the answer the
    # request awaits is the correlation's question (the participant checks who sent it).
    if not isinstance(message, PayloadResponse) and not may_send(
        type(message), envelope_sender_role, own_role
    ):
        reasons.append(Reason.INVALID_SENDER_ROLE)
    if message.recipient_domain != own_domain:
        reasons.append(Reason.UNKNOWN_RECIPIENT_DOMAIN)
    if message.version not in supported_versions:
        reasons.append(Reason.UNSUPPORTED_VERSION)
    stamp = message.time_stamp
    if time_stamp_window is not None and now is not None and stamp is not None:
        past, future = time_stamp_window
        if not now - past <= stamp <= now + future:
            reasons.append(Reason.TIME_STAMP_OUT_OF_BOUNDS)
    return reasons
