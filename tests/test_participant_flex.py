"""Flexibility trading between a DSO and an AGR participant, end to end on loopback: signed
envelopes over HTTP, the codec and schema of each Version, the role rules, the router.

The spec's message pages say who sends what (flex-request.md: "used by DSOs to request
flexibility from AGRs", ...); message-validation.md says how a receiver refuses what it may
not take: with HTTP 200 and a Rejected response, once the message is verified and valid.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from adapter.participant import Participant
from adapter.router import HandlerContext, Router
from adapter.uftp.messages import (
    FlexOfferResponse,
    FlexRequest,
    FlexRequestResponse,
    PayloadMessage,
    PayloadResponse,
    Result,
    Role,
)
from tests.conftest import Network
from tests.uftp.samples import make_flex_offer, make_flex_request

DSO = "dso.example-grid.nl"
AGR = "agr.example.com"

#: One Version of each major: 3.1.0 (per-type references) and the draft (ReferenceMessageID).
versions = pytest.mark.parametrize("version", ["3.1.0", "4.0.0"])


def bare(message: PayloadMessage) -> Any:
    """A sample with its metadata cleared, as an application composes it."""
    return dataclasses.replace(
        message,
        version="",
        sender_domain="",
        recipient_domain="",
        time_stamp=None,
        message_id="",
        conversation_id="",
    )


async def dso_and_agr(
    network: Network, version: str, *, agr_router: Router | None = None
) -> tuple[Participant, Participant]:
    dso = network.create(DSO, Role.DSO, versions=(version,))
    agr = network.create(AGR, Role.AGR, versions=(version,), router=agr_router)
    await network.start(dso, agr)
    network.introduce(dso, agr)
    return dso, agr


@versions
async def test_flex_request_is_answered_by_the_agr_handler(network: Network, version: str) -> None:
    seen: list[tuple[FlexRequest, HandlerContext]] = []
    router = Router()

    @router.on(FlexRequest)
    async def flex_request(message: FlexRequest, ctx: HandlerContext) -> PayloadResponse:
        seen.append((message, ctx))
        if not any(isp.disposition == "Requested" for isp in message.isps):
            return FlexRequestResponse(result=Result.REJECTED, rejection_reason="No ISP requested")
        return FlexRequestResponse()

    dso, agr = await dso_and_agr(network, version, agr_router=router)
    request = bare(make_flex_request())

    response = await dso.request(request, to=AGR, timeout=10)

    [(received, ctx)] = seen
    assert ctx.sender_domain == DSO and ctx.sender_role is Role.DSO
    # What the AGR's handler saw is what the DSO's application composed, typed.
    assert received.isps == request.isps
    assert received.expiration_date_time == request.expiration_date_time
    assert received.isp_duration == request.isp_duration
    assert received.version == version
    assert isinstance(response, FlexRequestResponse)
    assert response.result is Result.ACCEPTED
    assert response.reference_message_id == received.message_id
    assert response.conversation_id == received.conversation_id
    assert response.version == version  # a response is written in its request's Version
    assert (response.sender_domain, response.recipient_domain) == (AGR, DSO)

    nothing_requested = tuple(isp._replace(disposition=None) for isp in request.isps)
    refused = await dso.request(
        dataclasses.replace(request, isps=nothing_requested), to=AGR, timeout=10
    )
    assert refused.result is Result.REJECTED
    assert refused.rejection_reason == "No ISP requested"


@versions
async def test_dso_without_handler_rejects_a_flex_offer_as_invalid_message(
    network: Network, version: str
) -> None:
    """Before the flex messages were known, the DSO answered HTTP 400 ("not a message type this
    endpoint accepts") and the AGR's request failed for good; now the offer is verified,
    read, and answered in the protocol."""
    dso, agr = await dso_and_agr(network, version)

    response = await agr.request(bare(make_flex_offer()), to=DSO, timeout=10)

    assert isinstance(response, FlexOfferResponse)
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Invalid Message"
    attempts = await agr.store.attempts(response.reference_message_id)
    assert [a.http_status for a in attempts] == [200]


async def test_a_message_the_sender_role_may_not_send_is_rejected(network: Network) -> None:
    """A FlexRequest comes from a DSO only; an AGR's is refused with "Invalid SenderRole",
    and one the DSO addresses to another DSO as if it were an AGR too."""
    dso, agr = await dso_and_agr(network, "3.1.0")

    from_agr = await agr.request(bare(make_flex_request()), to=DSO, role=Role.DSO, timeout=10)

    assert from_agr.result is Result.REJECTED
    assert from_agr.rejection_reason == "Invalid SenderRole"

    offer_to_agr = await dso.request(bare(make_flex_offer()), to=AGR, role=Role.AGR, timeout=10)
    assert offer_to_agr.result is Result.REJECTED
    assert offer_to_agr.rejection_reason == "Invalid SenderRole"
