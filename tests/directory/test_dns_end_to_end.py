"""A DSO and a CRO that know each other only through DNS: their configurations list no
peers, only a validating resolver (Unbound on loopback) in front of the signed zone (NSD) that
publishes both participants' keys and endpoints (message-transport-mechanism.md, "Service
discovery", DNS)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import aiohttp
import pytest

from adapter.config import load_config
from adapter.directory.dns import DnsDirectory
from adapter.participant import Participant
from adapter.router import HandlerContext, Router
from adapter.store.base import OutboundStatus
from adapter.testing import composed
from adapter.uftp import codec, envelope
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)
from adapter.wiring import participant_for
from tests.directory.sites import CRO, DSO, Site, portfolio_update
from tests.uftp.samples import make_dso_portfolio_update


async def test_dso_and_cro_exchange_a_portfolio_update_through_dnssec_validated_dns(
    pair: tuple[Participant, Participant],
) -> None:
    dso, cro = pair
    assert dso.directory.roles_of(CRO) == frozenset()  # nothing configured: DNS only
    (source,) = dso.directory.sources  # type: ignore[attr-defined]
    assert isinstance(source, DnsDirectory) and source.settings.require_dnssec  # the default

    response = await dso.request(composed(portfolio_update()), to=CRO, timeout=20)

    assert response.result is Result.ACCEPTED, response.rejection_reason
    assert response.sender_domain == CRO
    # The CRO verified the DSO's signature with the key from DNS and answered at the endpoint
    # DNS names for the DSO; the DSO verified the answer with the CRO's key from DNS.
    sent_back = await cro.store.get_outbound(response.message_id)
    assert sent_back is not None and sent_back.status is OutboundStatus.DELIVERED
    dso_port = site_port(dso)
    assert sent_back.endpoint == f"http://localhost:{dso_port}/shapeshifter/api/v3/message"


def site_port(participant: Participant) -> int:
    return int(participant.url().rsplit(":", 1)[1].split("/")[0])


async def test_a_sender_dns_cannot_vouch_for_now_is_answered_419(site: Site) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = f"127.0.0.1:{silent.getsockname()[1]}"
        cro = participant_for(load_config(site.config(CRO, Role.CRO, site.ports[DSO], resolver)))
        await cro.start()
        try:
            message = codec.encode(
                make_dso_portfolio_update(sender_domain=DSO, recipient_domain=CRO)
            )
            body = envelope.seal(message, site.keys[DSO].signing, DSO, Role.DSO)
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    cro.url(), data=body, headers={"Content-Type": "text/xml; charset=utf-8"}
                ) as answer,
            ):
                # Spec, "Error handling": failed to look up the sender's key in DNS: 419.
                assert answer.status == 419
        finally:
            await cro.stop()


async def test_an_answer_dns_cannot_address_now_waits_and_goes_out_later(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """The request verified, but when the answer is to go out the sender's record has expired
    and DNS does not answer: the answer waits (DNS's fault, not the sender's) and goes out
    once DNS answers again."""
    resolver = site.lab.resolver
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    router = Router()
    now = [0.0]

    @router.on(DSOPortfolioUpdate)
    async def accept(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
        # The first time: the cached record expires, and the resolver falls silent for a
        # second. (Handling is tried again in full, so this handler runs again.)
        if now[0] == 0.0:
            (source,) = cro.directory.sources  # type: ignore[attr-defined]
            reachable = source.settings
            source.settings = dataclasses.replace(
                reachable, resolvers=(("127.0.0.1", silent.getsockname()[1]),)
            )
            now[0] += 3600
            asyncio.get_running_loop().call_later(
                1.0, lambda: setattr(source, "settings", reachable)
            )
        return DSOPortfolioUpdateResponse()

    dso = participant_for(load_config(site.config(DSO, Role.DSO, site.ports[CRO], resolver)))
    cro = Participant.from_config(
        load_config(site.config(CRO, Role.CRO, site.ports[DSO], resolver)), router=router
    )
    (cro_source,) = cro.directory.sources  # type: ignore[attr-defined]
    cro_source._clock = lambda: now[0]
    await cro.start()
    await dso.start()
    try:
        with caplog.at_level(logging.WARNING):
            response = await dso.request(composed(portfolio_update()), to=CRO, timeout=20)
    finally:
        await dso.stop()
        await cro.stop()
        silent.close()
    assert response.result is Result.ACCEPTED
    assert "failed for a fault of ours (KeyLookupFailed" in caplog.text  # it did wait
