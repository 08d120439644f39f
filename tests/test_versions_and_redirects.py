"""Version coupled to URL, responses written in the request's Version, and redirects."""

from __future__ import annotations

import pytest
from aiohttp import web

from adapter.participant import DeliveryFailed
from adapter.router import HandlerContext, Router
from adapter.testing import Network, accepting, composed, eventually
from adapter.uftp import codec
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)
from tests.uftp.samples import make_dso_portfolio_update

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"


async def test_draft_version_is_served_on_its_own_path_and_answered_in_it(
    network: Network,
) -> None:
    cro = network.create(
        CRO, Role.CRO, router=accepting(DSOPortfolioUpdate), versions=("3.1.0", "4.0.0")
    )
    dso = network.create(DSO, Role.DSO, versions=("4.0.0",))
    await network.start(cro, dso)
    network.introduce(cro, dso)
    # The DSO speaks the draft: it reaches the CRO on the v4 path.
    dso.directory.add(network.peer(cro, endpoint=cro.url("4.0.0")))  # type: ignore[attr-defined]
    assert cro.url("4.0.0").endswith("/shapeshifter/api/v4/message")

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    assert response.result is Result.ACCEPTED
    assert response.version == "4.0.0"  # written in the Version of the request
    assert response.reference_message_id  # as ReferenceMessageID, the draft's spelling


async def test_a_draft_message_on_the_v3_path_is_rejected(network: Network) -> None:
    responses: list[PayloadResponse] = []
    dso_router = Router()

    @dso_router.on(DSOPortfolioUpdateResponse)
    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        responses.append(message)

    cro = network.create(
        CRO, Role.CRO, router=accepting(DSOPortfolioUpdate), versions=("3.1.0", "4.0.0")
    )
    dso = network.create(DSO, Role.DSO, router=dso_router, versions=("4.0.0", "3.1.0"))
    await network.start(cro, dso)
    network.introduce(cro, dso)  # the CRO's configured endpoint is its v3 path
    await dso.send(composed(make_dso_portfolio_update()), to=CRO)
    await eventually(lambda: len(responses) == 1)
    assert responses[0].result is Result.REJECTED
    assert responses[0].rejection_reason == "Unsupported Version"


async def redirector(target: str, *, status: int = 307) -> web.AppRunner:
    """A front end that redirects every POST to `target` (or to itself, for a loop)."""

    async def redirect(request: web.Request) -> web.Response:
        location = target or str(request.url)
        return web.Response(status=status, headers={"Location": location})

    app = web.Application()
    app.router.add_post("/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    site = next(iter(runner.sites))
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}/shapeshifter/api/v3/message"


@pytest.mark.parametrize("status", [307, 308])
async def test_redirects_are_followed_with_method_and_body(network: Network, status: int) -> None:
    cro = network.create(CRO, Role.CRO, router=accepting(DSOPortfolioUpdate))
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    front = await redirector(cro.url(), status=status)
    try:
        dso.directory.add(network.peer(cro, endpoint=url_of(front)))  # type: ignore[attr-defined]
        response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
        assert response.result is Result.ACCEPTED
    finally:
        await front.cleanup()


async def test_a_redirect_loop_is_a_temporary_failure_until_the_deadline(
    network: Network,
) -> None:
    from adapter.config import DeliverySettings

    cro = network.create(CRO, Role.CRO)
    dso = network.create(
        DSO,
        Role.DSO,
        delivery=DeliverySettings(
            # Long enough for a second attempt on a loaded machine (each follows the loop).
            deadline_seconds=2.0,
            backoff_initial_seconds=0.05,
            backoff_max_seconds=0.1,
        ),
    )
    await network.start(cro, dso)
    network.introduce(cro, dso)
    loop = await redirector("")
    try:
        dso.directory.add(network.peer(cro, endpoint=url_of(loop)))  # type: ignore[attr-defined]
        with pytest.raises(DeliveryFailed) as failure:
            await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
        assert "redirects" in str(failure.value)
        attempts = await dso.store.attempts(failure.value.message_id)
        assert len(attempts) >= 2 and all(a.outcome == "temporary" for a in attempts)
    finally:
        await loop.cleanup()


def test_inner_xml_of_a_draft_response_uses_reference_message_id() -> None:
    response = DSOPortfolioUpdateResponse(
        version="4.0.0",
        sender_domain=CRO,
        recipient_domain=DSO,
        time_stamp=make_dso_portfolio_update().time_stamp,
        message_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        conversation_id="3f2504e0-4f89-11d3-9a0c-0305e82c3302",
        reference_message_id="3f2504e0-4f89-11d3-9a0c-0305e82c3303",
    )
    xml = codec.encode(response)
    assert b'ReferenceMessageID="3f2504e0-4f89-11d3-9a0c-0305e82c3303"' in xml
    assert b"DSOPortfolioUpdateResponseMessageID" not in xml


async def test_a_response_proves_delivery_when_the_200_was_lost(network: Network) -> None:
    """The CRO stored the request but its 200 never reached us (here: a front end that
    forwards the request, then answers 503). The response that follows proves delivery: the
    request is not sent again."""
    import aiohttp

    from adapter.config import DeliverySettings
    from adapter.store.base import OutboundStatus

    cro = network.create(CRO, Role.CRO, router=accepting(DSOPortfolioUpdate))
    dso = network.create(
        DSO,
        Role.DSO,
        delivery=DeliverySettings(backoff_initial_seconds=5.0, backoff_max_seconds=10.0),
    )
    await network.start(cro, dso)
    network.introduce(cro, dso)
    hits: list[int] = []

    async def lossy(request: web.Request) -> web.Response:
        hits.append(1)
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.post(cro.url(), data=body, headers={"Content-Type": "text/xml"}) as forwarded,
        ):
            assert forwarded.status == 200
        return web.Response(status=503, text="the 200 got lost\n")

    app = web.Application()
    app.router.add_post("/{tail:.*}", lossy)
    front = web.AppRunner(app)
    await front.setup()
    await web.TCPSite(front, "127.0.0.1", 0).start()
    try:
        dso.directory.add(network.peer(cro, endpoint=url_of(front)))  # type: ignore[attr-defined]
        response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=4)
        assert response.result is Result.ACCEPTED

        async def settled() -> bool:
            record = await dso.store.get_outbound(response.reference_message_id)
            return record is not None and record.status is OutboundStatus.DELIVERED

        await eventually(settled, timeout=3)
        attempts = await dso.store.attempts(response.reference_message_id)
        assert [a.outcome for a in attempts] == ["temporary", "delivered"]
        assert "response arrived" in attempts[-1].detail
        assert hits == [1]  # sent once
    finally:
        await front.cleanup()
