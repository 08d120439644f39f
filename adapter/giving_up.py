"""What a command says when it stops waiting for the response to its request.

Shared by the command line standalone (`adapter.run.request_once`) and by a running `serve`
answering it through its admin socket (`adapter.ops.admin`), so that both say the same.
"""

from __future__ import annotations

from .participant import Participant
from .store.base import OutboundStatus

__all__ = ["gave_up"]


async def gave_up(
    participant: Participant,
    message_id: str,
    timeout: float,
    keep_trying: bool,
    *,
    serving: bool = False,
) -> str:
    """What became of a request whose response did not come within `timeout` seconds, in
    one line; unless `keep_trying`, a request not yet delivered is withdrawn first.
    `serving`: the participant goes on running (a `serve` asked through its admin socket),
    so a message left queued is retried now, not at its next start."""
    if keep_trying:
        record = await participant.store.get_outbound(message_id)
    else:
        record = await participant.withdraw(message_id)
    if record is None:  # not stored at all: nothing to tell but the time
        return f"no response within {timeout:g} s"
    attempts = await participant.store.attempts(message_id)
    tried = f"{len(attempts)} attempt{'' if len(attempts) == 1 else 's'}"
    last = attempts[-1].detail if attempts else "no attempt was made"
    if record.status is OutboundStatus.DELIVERED:
        return f"delivered to {record.recipient_domain}, but no response within {timeout:g} s"
    if record.status is OutboundStatus.CANCELLED:
        return (
            f"not delivered to {record.recipient_domain} within {timeout:g} s: {last}, {tried}; "
            "withdrawn, it will not be sent (--keep-trying leaves it queued)"
        )
    if record.status is OutboundStatus.PENDING:
        when = (
            "the running serve keeps trying"
            if serving
            else "delivered when this participant next runs"
        )
        return (
            f"not delivered to {record.recipient_domain} within {timeout:g} s: {last}, {tried}; "
            f"still queued: {when}, until {record.deadline.isoformat(timespec='seconds')}"
        )
    return f"not delivered to {record.recipient_domain}: {record.status}, {last}, {tried}"
