"""Two participants that know each other only through DNS: their configurations list no
peers, only a validating resolver (Unbound on loopback) in front of the signed zone (NSD)
that publishes both participants' keys and endpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter.config import load_config
from adapter.keys import PrivateKeys, generate, write_private
from adapter.participant import Participant
from adapter.uftp.messages import DSOPortfolioUpdate, Role
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
