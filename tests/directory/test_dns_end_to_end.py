"""A DSO and a CRO that know each other only through DNS: their configurations list no
peers, only a validating resolver (Unbound on loopback) in front of the signed zone (NSD) that
publishes both participants' keys and endpoints (message-transport-mechanism.md, "Service
discovery", DNS)."""

from __future__ import annotations

import aiohttp

from adapter.config import load_config
from adapter.directory.dns import DnsDirectory
from adapter.participant import Participant
from adapter.store.base import OutboundStatus
from adapter.testing import composed
from adapter.uftp import codec, envelope
from adapter.uftp.messages import Result, Role
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
    import socket

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
