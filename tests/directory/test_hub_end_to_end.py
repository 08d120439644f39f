"""A hub-configured DSO and CRO: their peers come from the hub's address book, fetched with a
token from the hub's authorization server (authlib's, on loopback); the CRO requires that
server's JWTs on inbound POSTs, besides the signature."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapter.config import load_config
from adapter.directory.addressbook import AddressBookDirectory
from adapter.keys import PrivateKeys, generate, write_private
from adapter.participant import Participant
from adapter.store.base import OutboundStatus
from adapter.testing import composed
from adapter.uftp import codec, envelope
from adapter.uftp.messages import Result, Role
from adapter.wiring import participant_for
from tests.directory.dnslab import free_port
from tests.directory.sites import portfolio_update
from tests.hub import AUDIENCE, ISSUER, Hub
from tests.uftp.samples import make_dso_portfolio_update

DSO = "dso.example.test"
CRO = "cro.example.test"


def config(
    folder: Path, hub: Hub, domain: str, role: Role, key: PrivateKeys, port: int, inbound: bool
) -> Path:
    name = domain.split(".")[0]
    write_private(folder / "keys" / f"{name}.key", key)
    (folder / "secrets").mkdir(exist_ok=True)
    (folder / "secrets" / name).write_text(hub.clients[domain])
    checked = (
        f'\n[oauth2_inbound]\njwks_url = "{hub.jwks_url}"\naudience = "{AUDIENCE}"\n'
        f'issuer = "{ISSUER}"\n'
        if inbound
        else ""
    )
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[participant]
domain = "{domain}"
role = "{role}"
signing_key = "keys/{name}.key"
listen = "127.0.0.1:{port}"
store = "sqlite:var/{name}.sqlite3"
versions = ["3.1.0"]

[delivery]
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.5

[directory]
sources = ["address_book"]

[directory.address_book]
url = "{hub.book_url}"

[directory.address_book.oauth2]
token_url = "{hub.token_url}"
client_id = "{domain}"
client_secret_file = "secrets/{name}"
scope = "uftp"
{checked}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def hub_pair(tmp_path: Path) -> AsyncIterator[tuple[Participant, Participant, Hub]]:
    keys = {DSO: generate(), CRO: generate()}
    ports = {DSO: free_port(), CRO: free_port()}
    hub = Hub({DSO: "dso-secret", CRO: "cro-secret"})
    hub.book = {
        "participants": [
            {
                "domain": domain,
                "role": role,
                "publicKeys": [keys[domain].public.to_cs1()],
                "endpoint": f"http://127.0.0.1:{ports[domain]}/shapeshifter/api/v3/message",
            }
            for domain, role in ((DSO, "DSO"), (CRO, "CRO"))
        ]
    }
    await hub.start()
    dso = participant_for(
        load_config(config(tmp_path, hub, DSO, Role.DSO, keys[DSO], ports[DSO], False))
    )
    cro = participant_for(
        load_config(config(tmp_path, hub, CRO, Role.CRO, keys[CRO], ports[CRO], True))
    )
    await cro.start()
    await dso.start()
    try:
        yield dso, cro, hub
    finally:
        await dso.stop()
        await cro.stop()
        await hub.stop()


async def test_a_hub_configured_dso_sends_through_the_address_book_with_oauth2(
    hub_pair: tuple[Participant, Participant, Hub],
) -> None:
    dso, cro, hub = hub_pair
    (source,) = dso.directory.sources  # type: ignore[attr-defined]
    assert isinstance(source, AddressBookDirectory)

    response = await dso.request(composed(portfolio_update()), to=CRO, timeout=20)

    assert response.result is Result.ACCEPTED, response.rejection_reason
    # The list was fetched with the hub's token, and the CRO checked the DSO's token.
    assert all(a is not None and a.startswith("Bearer ") for a in hub.book_authorizations)
    assert hub.requests["/oauth2/jwks"] >= 1


async def test_the_cro_refuses_a_signed_message_without_a_token(
    hub_pair: tuple[Participant, Participant, Hub],
) -> None:
    dso, cro, hub = hub_pair
    message = codec.encode(make_dso_portfolio_update(sender_domain=DSO, recipient_domain=CRO))
    signed = envelope.seal(message, dso._keys.current.signing, DSO, Role.DSO)  # type: ignore[attr-defined]
    for body in (signed, b"not even XML"):
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                cro.url(), data=body, headers={"Content-Type": "text/xml; charset=utf-8"}
            ) as answer,
        ):
            # Not authenticated: 401 before the body is read, whatever it holds (spec,
            # message-transport-mechanism.md "Error handling"; RFC 6750 3 for the header).
            assert answer.status == 401
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_valid_token_does_not_stand_in_for_the_signature(
    hub_pair: tuple[Participant, Participant, Hub],
) -> None:
    dso, cro, hub = hub_pair
    del dso
    token = await _token(hub, DSO)
    message = codec.encode(make_dso_portfolio_update(sender_domain=DSO, recipient_domain=CRO))
    forged = envelope.seal(message, generate().signing, DSO, Role.DSO)  # not the DSO's key
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            cro.url(),
            data=forged,
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "Authorization": f"Bearer {token}",
            },
        ) as answer,
    ):
        assert answer.status == 401
        assert "signature" in (await answer.text()).lower()


async def _token(hub: Hub, client: str) -> str:
    from adapter.oauth2 import TokenSource

    return await TokenSource(hub.oauth2(client)).token()


async def test_delivery_records_show_the_cro_answered(
    hub_pair: tuple[Participant, Participant, Hub],
) -> None:
    dso, cro, hub = hub_pair
    response = await dso.request(composed(portfolio_update()), to=CRO, timeout=20)
    sent_back = await cro.store.get_outbound(response.message_id)
    assert sent_back is not None and sent_back.status is OutboundStatus.DELIVERED
    # Both participants fetched one token each and reused it.
    assert hub.requests["/oauth2/token"] == 2
