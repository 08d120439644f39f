"""The inbound pipeline against a running endpoint: every HTTP status of the spec's table
(message-transport-mechanism.md) and every protocol rejection (message-validation.md)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import aiohttp
import pytest

from adapter.directory import Peer
from adapter.keys import generate
from adapter.participant import Participant
from adapter.router import HandlerContext, Router
from adapter.testing import TEST_LIMITS, Network, PeerClient, eventually
from adapter.uftp import codec, envelope
from adapter.uftp.errors import KeyLookupFailed
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadMessage,
    PayloadResponse,
    Result,
    Role,
    TestMessage,
)
from tests.uftp.samples import (
    make_dso_portfolio_update,
    make_dso_portfolio_update_response,
    make_test_message,
)

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
XML = {"Content-Type": "text/xml; charset=utf-8"}


class Setup:
    """A CRO under test and a DSO whose handlers collect the CRO's responses."""

    def __init__(self, network: Network, cro: Participant, dso: Participant) -> None:
        self.network = network
        self.cro = cro
        self.dso = dso
        self.handled: list[DSOPortfolioUpdate] = []
        self.responses: list[PayloadResponse] = []
        self.peer = PeerClient(DSO, Role.DSO, network.keys[DSO])

    def message(self, **changes: Any) -> DSOPortfolioUpdate:
        fields = {
            "sender_domain": DSO,
            "recipient_domain": CRO,
            "message_id": str(uuid.uuid4()),
            "conversation_id": str(uuid.uuid4()),
        }
        fields.update(changes)
        return dataclasses.replace(make_dso_portfolio_update(), **fields)

    def seal(
        self,
        message: PayloadMessage,
        *,
        domain: str = DSO,
        role: Role = Role.DSO,
        secret: bytes | None = None,
    ) -> bytes:
        return self.peer.seal(message, domain=domain, role=role, secret=secret)

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, str]:
        return await self.peer.post(self.cro.url(), body, headers, **kwargs)

    def response_to(self, message_id: str) -> PayloadResponse | None:
        for response in self.responses:
            if response.reference_message_id == message_id:
                return response
        return None


@pytest.fixture
async def setup(network: Network) -> Setup:
    cro_router, dso_router = Router(), Router()
    cro = network.create(
        CRO,
        Role.CRO,
        router=cro_router,
        limits=dataclasses.replace(TEST_LIMITS, rate_per_sender=5.0, burst=5),
    )
    dso = network.create(DSO, Role.DSO, router=dso_router)
    state = Setup(network, cro, dso)

    @cro_router.on(DSOPortfolioUpdate)
    async def update(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
        state.handled.append(message)
        return DSOPortfolioUpdateResponse()

    @dso_router.on(DSOPortfolioUpdateResponse)
    async def response(message: PayloadResponse, ctx: HandlerContext) -> None:
        state.responses.append(message)

    await network.start(cro, dso)
    network.introduce(cro, dso)
    return state


async def test_valid_message_is_answered_200_then_accepted(setup: Setup) -> None:
    message = setup.message()
    assert await setup.post(setup.seal(message)) == (200, "OK\n")
    await eventually(lambda: setup.response_to(message.message_id) is not None)
    response = setup.response_to(message.message_id)
    assert response is not None and response.result is Result.ACCEPTED


async def test_health_answers_while_serving(setup: Setup) -> None:
    async with aiohttp.ClientSession() as session:
        url = setup.cro.url().replace("/shapeshifter/api/v3/message", "/health")
        async with session.get(url) as response:
            assert response.status == 200
            assert await response.text() == "ok\n"


# -- transport errors: HTTP statuses -----------------------------------------------------------


async def test_missing_content_length_is_411(setup: Setup) -> None:
    body = setup.seal(setup.message())

    async def chunks():  # a streamed body is sent chunked, without Content-Length
        yield body

    status, text = await setup.post(chunks())  # type: ignore[arg-type]
    assert status == 411
    assert "Content-Length" in text


# Each variant of a rule is in tests/uftp/test_inbound.py, against the core's decision; here
# one of each, to show that the endpoint reads the head and answers the core's status.


@pytest.mark.parametrize("content_type", ["text/plain", "text/xml; charset=utf-16"])
async def test_wrong_content_type_or_charset_is_400(setup: Setup, content_type: str) -> None:
    status, _ = await setup.post(setup.seal(setup.message()), {"Content-Type": content_type})
    assert status == 400


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml; charset=UTF-8"])
async def test_xml_content_types_are_accepted(setup: Setup, content_type: str) -> None:
    status, _ = await setup.post(setup.seal(setup.message()), {"Content-Type": content_type})
    assert status == 200


async def test_body_over_the_cap_is_413(network: Network) -> None:
    small = network.create(
        "cro9.example.com", Role.CRO, limits=dataclasses.replace(TEST_LIMITS, max_body_bytes=10_000)
    )
    await network.start(small)
    async with (
        aiohttp.ClientSession() as session,
        session.post(small.url(), data=b"<" * 20_000, headers=XML) as response,
    ):
        assert response.status == 413


@pytest.mark.parametrize("body", [b"", b"<SignedMessage"], ids=["empty", "truncated"])
async def test_malformed_envelope_is_400(setup: Setup, body: bytes) -> None:
    status, _ = await setup.post(body)
    assert status == 400


async def test_unknown_sender_is_401(setup: Setup) -> None:
    stranger = generate()
    body = setup.seal(
        setup.message(sender_domain="dso9.example.com"),
        domain="dso9.example.com",
        secret=stranger.signing,
    )
    status, text = await setup.post(body)
    assert status == 401
    assert "unknown sender" in text


async def test_signature_by_a_wrong_key_is_401(setup: Setup) -> None:
    body = setup.seal(setup.message(), secret=generate().signing)
    status, _ = await setup.post(body)
    assert status == 401
    assert setup.handled == []


async def test_second_key_verifies_during_rotation(setup: Setup) -> None:
    new_keys = generate()
    directory = setup.cro.directory
    directory.add(  # type: ignore[attr-defined]
        setup.network.peer(
            setup.dso,
            signing_keys=(setup.network.keys[DSO].public.signing, new_keys.public.signing),
        )
    )
    status, _ = await setup.post(setup.seal(setup.message(), secret=new_keys.signing))
    assert status == 200


async def test_key_lookup_failure_is_419(network: Network) -> None:
    class FlakyDirectory:
        async def lookup(self, domain: str, role: Role) -> Peer | None:
            raise KeyLookupFailed("DNS lookup timed out")

        def roles_of(self, domain: str) -> frozenset[Role]:
            return frozenset()

    cro = network.create("cro8.example.com", Role.CRO)
    cro.directory = FlakyDirectory()  # type: ignore[assignment]
    cro._endpoint._directory = cro.directory
    await network.start(cro)
    message = dataclasses.replace(make_test_message(), recipient_domain="cro8.example.com")
    body = envelope.seal(codec.encode(message), generate().signing, DSO, Role.DSO)
    async with (
        aiohttp.ClientSession() as session,
        session.post(cro.url(), data=body, headers=XML) as response,
    ):
        assert response.status == 419


async def test_schema_invalid_inner_message_is_400(setup: Setup) -> None:
    inner = codec.encode(setup.message()).replace(
        b'TimeZone="Europe/Amsterdam"', b'TimeZone="Mars/Olympus"'
    )
    body = envelope.seal(inner, setup.network.keys[DSO].signing, DSO, Role.DSO)
    status, text = await setup.post(body)
    assert status == 400
    assert "TimeZone" in text


async def test_sender_over_its_rate_is_429(setup: Setup) -> None:
    statuses = [(await setup.post(setup.seal(setup.message())))[0] for _ in range(12)]
    assert 429 in statuses
    assert statuses[:5] == [200] * 5  # the burst


# -- protocol checks: HTTP 200, then a Rejected response ------------------------------------


async def rejection_of(setup: Setup, body: bytes, message_id: str) -> str | None:
    assert (await setup.post(body))[0] == 200
    await eventually(lambda: setup.response_to(message_id) is not None)
    response = setup.response_to(message_id)
    assert response is not None and response.result is Result.REJECTED
    return response.rejection_reason


async def test_mismatched_sender_domain_is_rejected(setup: Setup) -> None:
    other = "dso2.example.com"
    message = setup.message(sender_domain=other)
    reason = await rejection_of(setup, setup.seal(message), message.message_id)
    assert reason == "Mismatch SenderDomain"
    assert setup.handled == []


async def test_wrong_recipient_domain_is_rejected(setup: Setup) -> None:
    message = setup.message(recipient_domain="cro2.example.com")
    assert (
        await rejection_of(setup, setup.seal(message), message.message_id)
        == "Unknown RecipientDomain"
    )


async def test_unsupported_version_is_rejected(setup: Setup) -> None:
    message = setup.message(version="3.9.0")
    assert (
        await rejection_of(setup, setup.seal(message), message.message_id) == "Unsupported Version"
    )


async def test_wrong_role_for_the_message_type_is_rejected(network: Network) -> None:
    # An AGR may not publish a DSO portfolio.
    cro_router, agr_router = Router(), Router()
    responses: list[PayloadResponse] = []

    @agr_router.on(DSOPortfolioUpdateResponse)
    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        responses.append(message)

    cro = network.create(CRO, Role.CRO, router=cro_router)
    agr = network.create("agr.example.com", Role.AGR, router=agr_router)
    await network.start(cro, agr)
    network.introduce(cro, agr)
    message = dataclasses.replace(
        make_dso_portfolio_update(), sender_domain="agr.example.com", recipient_domain=CRO
    )
    body = envelope.seal(
        codec.encode(message), network.keys["agr.example.com"].signing, "agr.example.com", Role.AGR
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(cro.url(), data=body, headers=XML) as response,
    ):
        assert response.status == 200
    await eventually(lambda: len(responses) == 1)
    assert responses[0].rejection_reason == "Invalid SenderRole"


async def test_barred_sender_is_rejected(network: Network) -> None:
    responses: list[PayloadResponse] = []
    dso_router = Router()

    @dso_router.on(DSOPortfolioUpdateResponse)
    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        responses.append(message)

    cro = network.create(CRO, Role.CRO)
    dso = network.create(DSO, Role.DSO, router=dso_router)
    await network.start(cro, dso)
    network.introduce(cro, dso, barred=True)  # the CRO bars the DSO
    await dso.send(
        dataclasses.replace(make_dso_portfolio_update(), message_id="", conversation_id=""), to=CRO
    )
    await eventually(lambda: len(responses) == 1)
    assert responses[0].rejection_reason == "Barred Sender"


async def test_several_reasons_are_joined(setup: Setup) -> None:
    message = setup.message(
        recipient_domain="cro2.example.com", version="3.9.0", sender_domain="dso2.example.com"
    )
    reason = await rejection_of(setup, setup.seal(message), message.message_id)
    assert reason == "Mismatch SenderDomain; Unknown RecipientDomain; Unsupported Version"


# -- duplicates --------------------------------------------------------------------------------


async def test_exact_duplicate_is_handled_once_and_answered_once(setup: Setup) -> None:
    message = setup.message()
    body = setup.seal(message)
    assert (await setup.post(body))[0] == 200
    assert (await setup.post(body))[0] == 200
    await eventually(lambda: setup.response_to(message.message_id) is not None)
    await setup.post(setup.seal(setup.message()))  # a later message, to let any extra settle
    await eventually(lambda: len(setup.responses) == 2)
    assert len(setup.handled) == 2
    assert [r.reference_message_id for r in setup.responses].count(message.message_id) == 1


async def test_same_message_id_other_content_is_duplicate_identifier(setup: Setup) -> None:
    message = setup.message()
    assert (await setup.post(setup.seal(message)))[0] == 200
    await eventually(lambda: setup.response_to(message.message_id) is not None)
    changed = dataclasses.replace(message, time_zone="Europe/Brussels")
    assert (await setup.post(setup.seal(changed)))[0] == 200
    await eventually(
        lambda: [r.reference_message_id for r in setup.responses].count(message.message_id) == 2
    )
    second = [r for r in setup.responses if r.reference_message_id == message.message_id][1]
    assert second.result is Result.REJECTED
    assert second.rejection_reason == "Duplicate Identifier"
    assert len(setup.handled) == 1


async def test_a_response_copied_with_other_content_is_not_believed(
    network: Network, setup: Setup
) -> None:
    """A response whose MessageID is known with other content is not stored (Duplicate
    Identifier), so it is not handled either: the waiter and the handlers see the first
    copy, the one the store holds, never the conflicting one. Its sender still gets its 200
    (a response is never answered)."""
    cro = PeerClient(CRO, Role.CRO, network.keys[CRO])
    first = dataclasses.replace(
        make_dso_portfolio_update_response(),
        sender_domain=CRO,
        recipient_domain=DSO,
        message_id=str(uuid.uuid4()),
        reference_message_id=str(uuid.uuid4()),
    )
    changed = dataclasses.replace(first, result=Result.REJECTED, rejection_reason="Other")
    assert (await cro.post(setup.dso.url(), cro.seal(first)))[0] == 200
    await eventually(lambda: len(setup.responses) == 1)
    assert (await cro.post(setup.dso.url(), cro.seal(changed)))[0] == 200
    later = dataclasses.replace(first, message_id=str(uuid.uuid4()))
    assert (await cro.post(setup.dso.url(), cro.seal(later)))[0] == 200
    await eventually(lambda: later.message_id in [r.message_id for r in setup.responses])

    assert [r.message_id for r in setup.responses] == [first.message_id, later.message_id]
    assert all(r.result is Result.ACCEPTED for r in setup.responses)


async def test_test_message_from_peer_gets_response(setup: Setup) -> None:
    message = dataclasses.replace(
        make_test_message(), sender_domain=DSO, recipient_domain=CRO, message_id=str(uuid.uuid4())
    )
    assert isinstance(message, TestMessage)
    assert (await setup.post(setup.seal(message)))[0] == 200


async def test_malformed_http_is_logged_without_its_bytes(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging
    from urllib.parse import urlsplit

    port = urlsplit(setup.cro.url()).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with caplog.at_level(logging.DEBUG):
        writer.write(
            b"POST /shapeshifter/api/v3/message HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\nX-Note: ean.871685900000000011\r\n\r\nxxxxx"
        )
        await writer.drain()
        answer = await reader.read(200)
        writer.close()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    assert all(r.levelno < logging.WARNING for r in caplog.records if r.name == "aiohttp.server")
    assert "871685900000000011" not in caplog.text
    assert await setup.post(setup.seal(setup.message())) == (200, "OK\n")
