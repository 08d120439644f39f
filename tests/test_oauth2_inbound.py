"""The inbound bearer-token check: JWTs of the configured issuer's JWKS, for our audience."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from adapter.oauth2 import TokenSource
from adapter.oauth2_inbound import BearerCheck, BearerRefused, JwksUnavailable
from tests.hub import Hub

DSO = "dso.example.com"


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub({DSO: "dso-secret"})
    await hub.start()
    yield hub
    await hub.stop()


async def token(hub: Hub) -> str:
    return await TokenSource(hub.oauth2(DSO)).token()


async def test_a_token_of_the_issuer_for_our_audience_is_accepted(hub: Hub) -> None:
    claims = await BearerCheck(hub.inbound()).check(f"Bearer {await token(hub)}")
    assert claims["client_id"] == DSO


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic ZHNvOnNlY3JldA==", "Bearer ", "Bearer not.a.jwt", "Bearer " + "a" * 9000],
)
async def test_a_missing_or_malformed_token_is_401(hub: Hub, header: str | None) -> None:
    with pytest.raises(BearerRefused) as caught:
        await BearerCheck(hub.inbound()).check(header)
    assert caught.value.status == 401


async def test_a_token_for_another_audience_or_issuer_is_401(hub: Hub) -> None:
    good = await token(hub)
    for settings in (
        dataclasses.replace(hub.inbound(), audience="another-hub"),
        dataclasses.replace(hub.inbound(), issuer="https://other.issuer"),
    ):
        with pytest.raises(BearerRefused):
            await BearerCheck(settings).check(f"Bearer {good}")


async def test_an_expired_token_is_401(hub: Hub) -> None:
    hub.lifetime = 1
    expired = await token(hub)
    await asyncio.sleep(2.1)
    with pytest.raises(BearerRefused, match="expired"):
        await BearerCheck(hub.inbound(leeway_seconds=0)).check(f"Bearer {expired}")


async def test_a_token_signed_with_a_key_the_issuer_does_not_list_is_401(hub: Hub) -> None:
    check = BearerCheck(hub.inbound(refetch_interval_seconds=0))
    first = await token(hub)
    await check.check(f"Bearer {first}")
    hub.rotate_signing_key("k2")  # the issuer lists only its new key
    second = await token(hub)
    await check.check(f"Bearer {second}")  # a new key id: the JWKS is fetched again
    assert hub.requests["/oauth2/jwks"] == 2
    forger = Hub({DSO: "dso-secret"})  # same kid "k1", another key
    await forger.start()
    try:
        forged = await TokenSource(forger.oauth2(DSO)).token()
    finally:
        await forger.stop()
    with pytest.raises(BearerRefused):
        await check.check(f"Bearer {forged}")


async def test_an_unreachable_jwks_is_our_trouble_503(hub: Hub) -> None:
    good = await token(hub)
    settings = hub.inbound()
    await hub.stop()
    with pytest.raises(JwksUnavailable) as caught:
        await BearerCheck(settings).check(f"Bearer {good}")
    assert caught.value.status == 503 and caught.value.temporary
