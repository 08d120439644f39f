"""OAuth2 client credentials (RFC 6749, 4.4) against a real authorization server on loopback
(authlib's, `tests.hub`): the token is fetched, cached, shared, renewed before it expires,
and a peer's 401 gets one fresh token and one retry."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web

from adapter.client import Client
from adapter.oauth2 import ClientAuth, Credentials, TokenFailed, TokenSource
from adapter.oauth2_inbound import BearerCheck, BearerRefused
from adapter.uftp.retry import Outcome
from tests.hub import AUDIENCE, Hub

DSO = "dso.example.com"
SECRET = "s3cret:with/odd chars%"


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub({DSO: SECRET})
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_token_is_fetched_with_basic_auth_and_cached(hub: Hub) -> None:
    source = TokenSource(hub.oauth2(DSO, scope="uftp"))
    first = await source.token()
    assert await source.token() == first
    assert hub.requests["/oauth2/token"] == 1
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["client_id"] == DSO and claims["aud"] == AUDIENCE


async def test_credentials_in_the_body_work_too(hub: Hub) -> None:
    source = TokenSource(hub.oauth2(DSO, client_auth=ClientAuth.BODY))
    assert await source.token()


async def test_the_secret_may_come_from_a_file(hub: Hub, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    settings = dataclasses.replace(hub.oauth2(DSO), client_secret=None, client_secret_file=secret)
    assert await TokenSource(settings).token()


async def test_concurrent_senders_share_one_fetch(hub: Hub) -> None:
    source = TokenSource(hub.oauth2(DSO))
    tokens = await asyncio.gather(*(source.token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert hub.requests["/oauth2/token"] == 1


async def test_a_token_is_renewed_shortly_before_it_expires(hub: Hub) -> None:
    now = [0.0]
    hub.lifetime = 120
    source = TokenSource(hub.oauth2(DSO, refresh_margin_seconds=30), clock=lambda: now[0])
    first = await source.token()
    now[0] = 89.0
    assert await source.token() == first
    now[0] = 91.0  # within 30 s of expiry
    assert await source.token() != first
    assert hub.requests["/oauth2/token"] == 2


async def test_a_wrong_secret_is_a_permanent_failure_that_shows_no_secret(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(hub.oauth2(DSO), client_secret="wrong-secret")
    with pytest.raises(TokenFailed) as caught:
        await TokenSource(settings).token()
    assert caught.value.outcome is Outcome.PERMANENT
    assert "invalid_client" in str(caught.value)
    shown = str(caught.value) + repr(settings) + repr(TokenSource(settings)) + caplog.text
    assert "wrong-secret" not in shown and SECRET not in repr(hub.oauth2(DSO))


async def test_an_unreachable_token_url_is_temporary(hub: Hub) -> None:
    settings = hub.oauth2(DSO)
    await hub.stop()
    with pytest.raises(TokenFailed) as caught:
        await TokenSource(settings).token()
    assert caught.value.outcome is Outcome.TEMPORARY


# -- a peer that wants a bearer token -----------------------------------------------------


@dataclasses.dataclass
class Peer:
    """A peer endpoint that checks bearer tokens as a CRO with [oauth2_inbound] does."""

    check: BearerCheck
    url: str = ""
    authorizations: list[str | None] = dataclasses.field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        self.authorizations.append(authorization)
        try:
            await self.check.check(authorization)
        except BearerRefused as exc:
            return web.Response(status=401, text=exc.detail)
        return web.Response(text="OK")


@pytest.fixture
async def peer(hub: Hub) -> AsyncIterator[Peer]:
    peer = Peer(BearerCheck(hub.inbound(refetch_interval_seconds=0)))
    app = web.Application()
    app.router.add_post("/message", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peer.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/message"  # type: ignore[union-attr]
    yield peer
    await runner.cleanup()


async def client_for(peer: Peer, source: TokenSource) -> Client:
    async def lookup(url: str) -> TokenSource | None:
        return source if url == peer.url else None

    credentials = Credentials([lookup])
    client = Client(credentials=credentials)
    await client.start()
    return client


async def test_posts_carry_the_bearer_token(hub: Hub, peer: Peer) -> None:
    source = TokenSource(hub.oauth2(DSO))
    client = await client_for(peer, source)
    try:
        assert (await client.post(peer.url, b"<x/>")).outcome is Outcome.DELIVERED
        assert (await client.post(peer.url, b"<x/>")).outcome is Outcome.DELIVERED
    finally:
        await client.close()
    assert peer.authorizations == [f"Bearer {hub.issued[0]}"] * 2


async def test_a_401_gets_one_fresh_token_and_one_retry(hub: Hub, peer: Peer) -> None:
    hub.lifetime = 1
    peer.check = BearerCheck(hub.inbound(leeway_seconds=0))
    # Our clock stands still: the token we hold has expired by the peer's clock, not ours.
    source = TokenSource(hub.oauth2(DSO), clock=lambda: 0.0)
    client = await client_for(peer, source)
    try:
        assert (await client.post(peer.url, b"<x/>")).outcome is Outcome.DELIVERED
        await asyncio.sleep(2.1)
        result = await client.post(peer.url, b"<x/>")
    finally:
        await client.close()
    assert result.outcome is Outcome.DELIVERED, result.detail
    assert len(hub.issued) == 2
    assert peer.authorizations[1:] == [f"Bearer {hub.issued[0]}", f"Bearer {hub.issued[1]}"]


async def test_a_401_to_a_fresh_token_fails_the_delivery_saying_why(
    hub: Hub, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub.audience = "someone-else"  # every token is for another audience: the peer refuses
    source = TokenSource(hub.oauth2(DSO))
    client = await client_for(peer, source)
    try:
        result = await client.post(peer.url, b"<x/>")
    finally:
        await client.close()
    assert result.outcome is Outcome.PERMANENT and result.status == 401
    assert "freshly fetched OAuth2 token" in result.detail and DSO in result.detail
    assert len(peer.authorizations) == 2 and len(hub.issued) == 2  # one refresh, one retry
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("adapter"))
    for token in hub.issued:
        assert token not in result.detail and token not in ours


async def test_a_post_to_a_peer_without_oauth2_carries_no_token(hub: Hub, peer: Peer) -> None:
    source = TokenSource(hub.oauth2(DSO))
    client = await client_for(peer, source)
    try:
        result = await client.post(peer.url + "?other", b"<x/>")
    finally:
        await client.close()
    assert result.status == 401 and peer.authorizations == [None]
    assert hub.requests.get("/oauth2/token", 0) == 0


async def test_a_token_server_that_refuses_us_fails_the_delivery_at_once(
    hub: Hub, peer: Peer
) -> None:
    source = TokenSource(dataclasses.replace(hub.oauth2(DSO), client_secret="wrong"))
    client = await client_for(peer, source)
    try:
        result = await client.post(peer.url, b"<x/>")
    finally:
        await client.close()
    assert result.outcome is Outcome.PERMANENT and "invalid_client" in result.detail
    assert peer.authorizations == []


async def test_the_token_does_not_follow_a_redirect_to_another_origin(hub: Hub, peer: Peer) -> None:
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="OK")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(request.query["to"]))

    app = web.Application()
    app.router.add_post("/m", elsewhere)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    here = f"http://127.0.0.1:{port}"
    credentials = Credentials()
    credentials.set_peers(
        [
            (f"{here}/moved?to={here}/m", hub.oauth2(DSO)),
            (f"{here}/moved?to={peer.url}", hub.oauth2(DSO)),
        ]
    )
    client = Client(credentials=credentials)
    try:
        same = await client.post(f"{here}/moved?to={here}/m", b"<x/>")
        other = await client.post(f"{here}/moved?to={peer.url}", b"<x/>")
    finally:
        await client.close()
        await runner.cleanup()
    assert same.outcome is Outcome.DELIVERED and seen == [f"Bearer {hub.issued[0]}"]
    # Another origin: no token; it answers 401, and the one retry does not send it there either.
    assert other.status == 401 and peer.authorizations == [None, None]


async def test_concurrent_senders_refused_with_the_same_token_share_one_refresh(
    hub: Hub, peer: Peer
) -> None:
    hub.lifetime = 1
    peer.check = BearerCheck(hub.inbound(leeway_seconds=0))
    source = TokenSource(hub.oauth2(DSO), clock=lambda: 0.0)  # ours never expires
    client = await client_for(peer, source)
    try:
        await source.token()
        await asyncio.sleep(2.1)  # expired by the peer's clock
        results = await asyncio.gather(*(client.post(peer.url, b"<x/>") for _ in range(10)))
    finally:
        await client.close()
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert hub.requests["/oauth2/token"] == 2  # the first token, and one refresh for all ten
