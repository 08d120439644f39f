"""Who may send which message to whom, and the other checks that end in a Rejected response.

The roles are the message types' own (`sender_roles`, `recipient_roles` in `messages`, with
the spec's words beside them): contract phase (spec: contract-phase.md, plan-phase.md), a DSO
publishes and queries its portfolio at the CRO; an aggregator does the same for its own
connections; the CRO answers both. Flexibility trading (spec: the message pages flex-*.md,
d-prognosis.md, metering.md): the DSO requests, orders, updates reservations and settles; the
AGR offers, revokes its offers, sends D-Prognoses and metering data; each answers the other's
messages. TestMessage may pass between any two participants.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import Reason
from .messages import PayloadMessage, PayloadResponse, Role


def may_send(message_type: type[PayloadMessage], sender: Role, recipient: Role) -> bool:
    """Whether a participant in role `sender` may send `message_type` to one in `recipient`."""
    return sender in message_type.sender_roles and recipient in message_type.recipient_roles


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
