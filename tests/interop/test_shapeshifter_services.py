"""Live exchanges with shapeshifter-uftp 2.4's services: a peer nobody here wrote.

Their CRO and DSO services run on loopback (uvicorn threads, see conftest.py) next to our
participants, both sides signing and verifying for real, in both directions:

- our DSO's `request()` to their CRO service, answered through their client;
- their DSO client's DSOPortfolioUpdate and TestMessage to our CRO, whose responses their DSO
  service receives and parses;
- their TestMessageResponse, which carries a Result attribute the 3.x schema does not allow
  on that type, refused by our endpoint with HTTP 400 as the spec's error table says.

Odd things about their 2.4.0 that the tests below pin down:

- A TestMessageResponse they write always has Result (their dataclass inherits it from
  PayloadMessageResponse), so no TestMessage of ours is ever answered: `request()` of a
  TestMessage to them can only time out.
- Their service answers an unknown sender HTTP 500 instead of 401: the key lookup gives None
  and their `unseal_message` raises TypeError, which nothing maps to a status. To a sender's
  outbox (ours included) a 500 is temporary, so the sender keeps retrying instead of failing
  at once.
- Their service does not check RecipientDomain: it processes, and answers, a message
  addressed to another participant. Ours rejects one ("Unknown RecipientDomain").
- Their parser fills what the XML lacks from their dataclass defaults: our 3.x
  TestMessageResponse has no Result, and it reaches their code with result=Accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter
from adapter.keys import generate
from adapter.participant import ResponseTimeout
from adapter.router import HandlerContext, Router
from adapter.store.base import OutboundStatus
from adapter.testing import Network, composed, eventually, post
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
    TestMessage,
)
from tests.interop.conftest import TheirSide, b64
from tests.uftp.samples import make_dso_portfolio_update

ss = pytest.importorskip("shapeshifter_uftp.uftp")
transport = pytest.importorskip("shapeshifter_uftp.transport")

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
ELSEWHERE = "elsewhere.example.com"


class CroHandlers:
    """Our CRO's router: records each DSOPortfolioUpdate and accepts it."""

    def __init__(self) -> None:
        self.updates: list[tuple[DSOPortfolioUpdate, HandlerContext]] = []
        self.router = Router()

        @self.router.on(DSOPortfolioUpdate)
        async def update(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
            self.updates.append((message, ctx))
            return DSOPortfolioUpdateResponse()


# --- a. our DSO -> their CRO ---------------------------------------------------------------


async def test_our_request_is_answered_by_their_cro(
    network: Network, shapeshifter: TheirSide
) -> None:
    their_cro = shapeshifter.cro(CRO)
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    shapeshifter.introduce(dso, their_cro)
    update = composed(make_dso_portfolio_update())

    response = await dso.request(update, to=CRO, timeout=10)

    received = await their_cro.next()
    assert isinstance(received, ss.DsoPortfolioUpdate)
    # What their service parsed is what we sent, field for field.
    ours = from_shapeshifter(received)
    assert isinstance(ours, DSOPortfolioUpdate)
    assert ours.congestion_points == update.congestion_points
    assert ours.time_zone == update.time_zone
    assert (ours.sender_domain, ours.recipient_domain) == (DSO, CRO)
    # Their answer, correlated to our request.
    assert isinstance(response, DSOPortfolioUpdateResponse)
    assert response.result is Result.ACCEPTED
    assert response.reference_message_id == received.message_id
    assert response.conversation_id == received.conversation_id
    assert (response.sender_domain, response.recipient_domain) == (CRO, DSO)


# --- b. their DSO -> our CRO ---------------------------------------------------------------


async def test_their_update_is_answered_by_our_cro(
    network: Network, shapeshifter: TheirSide
) -> None:
    handlers = CroHandlers()
    cro = network.create(CRO, Role.CRO, router=handlers.router)
    await network.start(cro)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    update = to_shapeshifter(composed(make_dso_portfolio_update()))

    client = shapeshifter.client_to(their_dso, cro)
    await asyncio.to_thread(client.send_dso_portfolio_update, update)  # raises unless 200

    response = await their_dso.next()
    [(handled, ctx)] = handlers.updates
    assert (ctx.sender_domain, ctx.sender_role) == (DSO, Role.DSO)
    assert handled.message_id == update.message_id  # their client filled it in
    assert handled.congestion_points == composed(make_dso_portfolio_update()).congestion_points
    # Their service parsed our response into their dataclass, with its reference.
    assert isinstance(response, ss.DsoPortfolioUpdateResponse)
    assert response.result == ss.AcceptedRejected.ACCEPTED
    assert response.rejection_reason is None
    assert response.dso_portfolio_update_message_id == update.message_id
    assert response.conversation_id == update.conversation_id
    assert (response.sender_domain, response.recipient_domain) == (CRO, DSO)


# --- c. their TestMessage -> our TestMessageResponse ---------------------------------------


async def test_their_test_message_gets_our_test_message_response(
    network: Network, shapeshifter: TheirSide
) -> None:
    cro = network.create(CRO, Role.CRO)  # a TestMessage needs no handler of ours
    await network.start(cro)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    test_message = ss.TestMessage()

    client = shapeshifter.client_to(their_dso, cro)
    await asyncio.to_thread(client.send_test_message, test_message)

    response = await their_dso.next()
    assert isinstance(response, ss.TestMessageResponse)
    assert response.conversation_id == test_message.conversation_id
    assert response.message_id != test_message.message_id
    assert (response.sender_domain, response.recipient_domain) == (CRO, DSO)
    assert response.version == "3.1.0"
    # We write no Result (3.x has none on this type); their default fills one in.
    assert response.result == ss.AcceptedRejected.ACCEPTED


# --- d. their TestMessageResponse -> HTTP 400 from us --------------------------------------


async def test_their_answer_to_our_test_message_is_refused_with_400(
    network: Network, shapeshifter: TheirSide
) -> None:
    """Their stock process_test_message answers; we refuse the answer for its Result, so
    our request() never gets a response."""
    their_cro = shapeshifter.cro(CRO)
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    shapeshifter.introduce(dso, their_cro)

    with pytest.raises(ResponseTimeout):
        await dso.request(TestMessage(), to=CRO, role=Role.CRO, timeout=1.5)

    received = await their_cro.next()
    assert isinstance(received, ss.TestMessage)
    assert received.sender_domain == DSO
    failure = await their_cro.next_failure()  # their client got no 200 for its answer
    assert failure.response.status_code == 400
    assert "attribute 'Result' is not allowed" in failure.response.text


async def test_their_sealed_test_message_response_is_refused_with_400(
    network: Network, shapeshifter: TheirSide
) -> None:
    """The same, byte for byte: their TestMessageResponse sealed with their transport, as
    their client does, and POSTed to our endpoint."""
    their_cro = shapeshifter.cro(CRO)
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    shapeshifter.introduce(dso, their_cro)
    sent = await dso.send(TestMessage(), to=CRO, role=Role.CRO)
    await their_cro.next()
    answer = ss.TestMessageResponse(
        version="3.1.0",
        sender_domain=CRO,
        recipient_domain=DSO,
        time_stamp=datetime.now(UTC).isoformat(),
        message_id="0b3f6a4e-3d4b-4a55-9c1e-0d5b6a1e2f30",
        conversation_id=sent.conversation_id,
    )
    assert 'Result="Accepted"' in transport.to_xml(answer)
    their_key = b64(shapeshifter.keys[CRO].signing)
    signed = ss.SignedMessage(
        sender_domain=CRO,
        sender_role=ss.UsefRole.CRO,
        body=transport.seal_message(answer, their_key),
    )

    status, text = await post(dso.url(), transport.to_xml(signed).encode())

    assert status == 400
    assert "Element 'TestMessageResponse', attribute 'Result'" in text
    assert await dso.store.get_inbound(CRO, answer.message_id) is None  # not stored


# --- e. odd things about them, and our checks staying strict --------------------------------


async def test_their_service_answers_500_to_an_unknown_sender(
    network: Network, shapeshifter: TheirSide
) -> None:
    """The spec says 401 for a sender whose key cannot be found; 2.4.0 answers 500, which a
    sender's outbox takes as temporary and retries."""
    their_cro = shapeshifter.cro(CRO)
    stranger = network.create("stranger.example.com", Role.DSO)
    await network.start(stranger)
    stranger.directory.add(shapeshifter.peer(their_cro))  # type: ignore[attr-defined]
    # ... but their address book does not know the stranger.

    sent = await stranger.send(composed(make_dso_portfolio_update()), to=CRO)

    async def attempted() -> bool:
        return len(await stranger.store.attempts(sent.message_id)) >= 1

    await eventually(attempted)
    first = (await stranger.store.attempts(sent.message_id))[0]
    assert first.http_status == 500
    assert first.outcome == "temporary"
    record = await stranger.store.get_outbound(sent.message_id)
    assert record is not None and record.status is OutboundStatus.PENDING
    assert their_cro.empty()


async def test_their_message_to_another_domain_is_rejected_by_us(
    network: Network, shapeshifter: TheirSide
) -> None:
    handlers = CroHandlers()
    cro = network.create(CRO, Role.CRO, router=handlers.router)
    await network.start(cro)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    update = to_shapeshifter(composed(make_dso_portfolio_update()))

    client = shapeshifter.client_to(their_dso, cro, recipient_domain=ELSEWHERE)
    await asyncio.to_thread(client.send_dso_portfolio_update, update)

    response = await their_dso.next()
    assert update.recipient_domain == ELSEWHERE
    assert isinstance(response, ss.DsoPortfolioUpdateResponse)
    assert response.result == ss.AcceptedRejected.REJECTED
    assert response.rejection_reason == "Unknown RecipientDomain"
    assert response.dso_portfolio_update_message_id == update.message_id
    assert handlers.updates == []  # the handler never saw it


async def test_their_service_does_not_check_the_recipient_domain(
    network: Network, shapeshifter: TheirSide
) -> None:
    """Addressed to ELSEWHERE but posted to their CRO, our update is processed and answered
    there all the same (from their own domain). We do not take that answer for ELSEWHERE's:
    a request is answered only by the peer it was sent to."""
    their_cro = shapeshifter.cro(CRO)
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    shapeshifter.introduce(dso, their_cro)
    dso.directory.add(shapeshifter.peer(their_cro, domain=ELSEWHERE))  # type: ignore[attr-defined]

    with pytest.raises(ResponseTimeout):
        await dso.request(composed(make_dso_portfolio_update()), to=ELSEWHERE, timeout=3)

    received = await their_cro.next()
    assert received.recipient_domain == ELSEWHERE


async def test_their_envelope_is_verified_by_us_like_any_other(
    network: Network, shapeshifter: TheirSide
) -> None:
    """Their client's envelope, signed with a key we do not hold for them, is a 401."""
    handlers = CroHandlers()
    cro = network.create(CRO, Role.CRO, router=handlers.router)
    await network.start(cro)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    message = to_shapeshifter(make_dso_portfolio_update())
    forged = ss.SignedMessage(
        sender_domain=DSO,
        sender_role=ss.UsefRole.DSO,
        body=transport.seal_message(message, b64(generate().signing)),
    )

    status, _ = await post(cro.url(), transport.to_xml(forged).encode())

    assert status == 401
    assert handlers.updates == []
    # The same message signed with their DSO's own key is accepted and handled.
    genuine = dataclasses.replace(
        forged, body=transport.seal_message(message, their_dso.signing_key)
    )
    status, _ = await post(cro.url(), transport.to_xml(genuine).encode())
    assert status == 200
    await eventually(lambda: len(handlers.updates) == 1)
    response = await their_dso.next()
    assert response.dso_portfolio_update_message_id == message.message_id
