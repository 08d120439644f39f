"""A DSO and a CRO that know each other only through DNS: their configurations list no
peers, only a validating resolver (Unbound on loopback) in front of the signed zone (NSD) that
publishes both participants' keys and endpoints (message-transport-mechanism.md, "Service
discovery", DNS)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from adapter.config import load_config
from adapter.directory.dns import DnsDirectory
from adapter.keys import PrivateKeys, generate, write_private
from adapter.participant import Participant
from adapter.store.base import OutboundStatus
from adapter.testing import composed
from adapter.uftp import codec, envelope
from adapter.uftp.messages import DSOPortfolioUpdate, Result, Role
from adapter.wiring import participant_for
from tests.directory.dnslab import DnsLab, Zone, cname, free_port, txt
from tests.uftp.samples import make_dso_portfolio_update

DSO = "dso.example.test"
CRO = "cro.example.test"


@dataclass
class Site:
    lab: DnsLab
    keys: dict[str, PrivateKeys]
    ports: dict[str, int]
    folder: Path

    def config(self, domain: str, role: Role, peer_port: int, resolver: str) -> Path:
        """A configuration with DNS as its only directory source."""
        name = domain.split(".")[0]
        path = self.folder / f"{name}.toml"
        key = self.folder / "keys" / f"{name}.key"
        if not key.exists():
            write_private(key, self.keys[domain])
        path.write_text(
            f"""
[participant]
domain = "{domain}"
role = "{role}"
signing_key = "keys/{name}.key"
listen = "127.0.0.1:{self.ports[domain]}"
store = "sqlite:var/{name}.sqlite3"
versions = ["3.1.0"]

[delivery]
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.5

[directory]
sources = ["dns"]

[directory.dns]
resolvers = ["{resolver}"]
timeout_seconds = 1
endpoint = "http://{{host}}:{peer_port}/shapeshifter/api/v3/message"
""",
            encoding="utf-8",
        )
        return path


def records(keys: dict[str, PrivateKeys]) -> list[str]:
    return [
        txt("_dso._usef.dso", keys[DSO].public.to_cs1(), ttl=1),
        cname("_http._dso._usef.dso", "localhost.", ttl=1),
        txt("_cro._usef.cro", keys[CRO].public.to_cs1(), ttl=1),
        cname("_http._cro._usef.cro", "web.cro", ttl=1),
        cname("web.cro", "localhost.", ttl=1),
    ]


def portfolio_update() -> DSOPortfolioUpdate:
    """One congestion point the CRO accepts."""
    update = make_dso_portfolio_update()
    return dataclasses.replace(update, congestion_points=update.congestion_points[1:])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    keys = {DSO: generate(), CRO: generate()}
    lab = DnsLab(tmp_path / "dns", [Zone("example.test", signed=True, records=records(keys))])
    lab.start()
    try:
        yield Site(lab, keys, {DSO: free_port(), CRO: free_port()}, tmp_path)
    finally:
        lab.stop()


@pytest.fixture
async def pair(site: Site) -> AsyncIterator[tuple[Participant, Participant]]:
    resolver = site.lab.resolver
    dso = participant_for(load_config(site.config(DSO, Role.DSO, site.ports[CRO], resolver)))
    cro = participant_for(load_config(site.config(CRO, Role.CRO, site.ports[DSO], resolver)))
    await cro.start()
    await dso.start()
    try:
        yield dso, cro
    finally:
        await dso.stop()
        await cro.stop()


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
