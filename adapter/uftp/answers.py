"""Building the messages a participant sends: their metadata, and the answer every request
is owed.

Every request is answered with exactly one response message (message-validation.md): Accepted,
or Rejected with a RejectionReason. The response carries the request's ConversationID and a
reference to its MessageID (message-transport-mechanism.md, "Awaiting reply"), and is written
in the Version of the request it answers, when the receiver speaks it.

Pure: the clock value and the identifiers are the caller's to give, so that what a message
looks like is decided here and what time it is is decided at the edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from .messages import RESPONSE_TYPES, PayloadMessage, PayloadResponse, Result

M = TypeVar("M", bound=PayloadMessage)

__all__ = [
    "accepted",
    "answer",
    "copied_fields",
    "fill",
    "rejected",
    "response_version",
]


def fill(
    message: M,
    *,
    version: str,
    sender_domain: str,
    recipient_domain: str,
    time_stamp: datetime,
    message_id: str,
    conversation_id: str,
) -> M:
    """`message` with the metadata of a message sent now (spec: metadata-attributes.md).

    Every value is the caller's: a request keeps a Version or ConversationID its composer
    chose (`message.version or ...`), an answer takes its request's (`answer`)."""
    return dataclasses.replace(
        message,
        version=version,
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        time_stamp=time_stamp,
        message_id=message_id,
        conversation_id=conversation_id,
    )


def copied_fields(request: PayloadMessage, response_type: type[PayloadResponse]) -> dict[str, Any]:
    """The response's required business fields that the request carries (TimeZone, Period)."""
    names = _COPIED.get((type(request), response_type))
    if names is None:
        names = _COPIED[type(request), response_type] = _copied(type(request), response_type)
    return {name: getattr(request, name) for name in names}


#: `_copied` for each pair of types met so far (a few dozen at most).
_COPIED: dict[tuple[type[PayloadMessage], type[PayloadResponse]], tuple[str, ...]] = {}


def _copied(
    request_type: type[PayloadMessage], response_type: type[PayloadResponse]
) -> tuple[str, ...]:
    """The names `copied_fields` copies, which depend on the two types alone: worked out
    once per pair rather than for every answer."""
    metadata = {f.name for f in dataclasses.fields(PayloadResponse)}
    return tuple(
        f.name
        for f in dataclasses.fields(response_type)
        if f.name not in metadata
        and (f.name in request_type.__dataclass_fields__ or hasattr(request_type, f.name))
    )


def accepted(request: PayloadMessage) -> PayloadResponse:
    """A bare Accepted response to `request` (metadata to be filled by `answer`)."""
    response_type = RESPONSE_TYPES[type(request)]
    return response_type(result=Result.ACCEPTED, **copied_fields(request, response_type))


def rejected(request: PayloadMessage, reasons: Iterable[str]) -> PayloadResponse:
    """A Rejected response to `request` with the reasons joined as the spec allows ("; ")."""
    response_type = RESPONSE_TYPES[type(request)]
    return response_type(
        result=Result.REJECTED,
        rejection_reason="; ".join(reasons),
        **copied_fields(request, response_type),
    )


def response_version(request: PayloadMessage, versions: tuple[str, ...]) -> str:
    """The Version an answer to `request` is written in: the request's, if it is one of
    `versions` (ours, the one we send first), else the one we send."""
    return request.version if request.version in versions else versions[0]


def answer(
    request: PayloadMessage,
    response: PayloadResponse | None,
    *,
    sender_domain: str,
    recipient_domain: str,
    versions: tuple[str, ...],
    time_stamp: datetime,
    message_id: str,
) -> PayloadResponse:
    """`response` (None: Accepted) as the answer to `request`, its metadata complete: in the
    request's Version (`response_version`), in its conversation, referring to its MessageID.

    `response` must be of the request's response type; the caller decides what a handler
    that returned another one deserves (`rejected`, with "Invalid Message")."""
    if response is None:
        response = accepted(request)
    # `fill`'s metadata and the reference in one copy: a response is built once per message.
    return dataclasses.replace(
        response,
        version=response_version(request, versions),
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        time_stamp=time_stamp,
        message_id=message_id,
        conversation_id=request.conversation_id,
        reference_message_id=request.message_id,
    )
