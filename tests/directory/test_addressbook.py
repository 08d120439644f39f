"""The address-book source against a hub on loopback (`tests.hub`): the documented JSON read
with the hub's bearer token, malformed entries skipped, bounds kept, the list refreshed by
its max-age, and kept (stale) while the hub is down."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapter.directory import Peer, StaticDirectory
from adapter.directory.addressbook import AddressBookDirectory
from adapter.directory.settings import AddressBookSettings
from adapter.keys import generate
from adapter.oauth2 import TokenSource
from adapter.tls import TlsSettings, client_context, server_context
from adapter.uftp.errors import KeyLookupFailed
from adapter.uftp.messages import Role
from tests.certs import make_pki
from tests.hub import Hub

DSO = "dso.example.com"
CRO = "cro.example.com"
KEYS = {CRO: generate(), "agr.example.com": generate()}


def entry(domain: str, role: str, key: str | None = None, **more: object) -> dict[str, object]:
    return {
        "domain": domain,
        "role": role,
        "publicKeys": [key or KEYS[domain].public.to_cs1()],
        **more,
    }


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub({DSO: "dso-secret"})
    hub.book = {
        "participants": [
            entry(CRO, "CRO", endpoint="https://cro.example.com/shapeshifter/api/v3/message"),
            # A plain base64 Ed25519 key, and no endpoint: the configured template.
            entry(
                "agr.example.com",
                "AGR",
                base64.b64encode(KEYS["agr.example.com"].public.signing).decode(),
            ),
        ]
    }
    await hub.start()
    yield hub
    await hub.stop()


def book_for(
    hub: Hub, clock: list[float] | None = None, **settings: object
) -> AddressBookDirectory:
    now = clock if clock is not None else [0.0]
    return AddressBookDirectory(
        AddressBookSettings(
            hub.book_url,
            endpoint="https://{domain}/uftp/{role}",
            **settings,  # type: ignore[arg-type]
        ),
        token=TokenSource(hub.oauth2(DSO)),
        clock=lambda: now[0],
    )


async def test_entries_are_read_with_the_hubs_bearer_token(hub: Hub) -> None:
    book = book_for(hub)
    cro = await book.lookup(CRO, Role.CRO)
    assert cro == Peer(
        CRO,
        Role.CRO,
        "https://cro.example.com/shapeshifter/api/v3/message",
        (KEYS[CRO].public.signing,),
    )
    agr = await book.lookup("agr.example.com", Role.AGR)
    assert agr is not None and agr.endpoint == "https://agr.example.com/uftp/agr"
    assert agr.signing_keys == (KEYS["agr.example.com"].public.signing,)
    assert await book.lookup(CRO, Role.DSO) is None
    assert book.roles_of(CRO) == {Role.CRO}
    assert hub.book_authorizations == [f"Bearer {hub.issued[0]}"]
    assert await book.token_for(cro.endpoint) is book.token
    assert await book.token_for("https://elsewhere.example/") is None


async def test_without_a_token_the_hub_refuses_and_nothing_is_known(hub: Hub) -> None:
    book = AddressBookDirectory(AddressBookSettings(hub.book_url))
    with pytest.raises(KeyLookupFailed, match="HTTP 401"):
        await book.lookup(CRO, Role.CRO)


async def test_a_malformed_entry_is_skipped_with_a_warning_not_the_list(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.book["participants"][1:1] = [
        entry("Not A Domain", "CRO", KEYS[CRO].public.to_cs1()),
        {**entry(DSO, "CRO", "x"), "publicKeys": ["cs1.not-base64!"]},
        {**entry(DSO, "DSO", "x"), "publicKeys": [base64.b64encode(b"short").decode()]},
        entry(DSO, "BRP", KEYS[CRO].public.to_cs1()),
        "a string",
    ]
    book = book_for(hub)
    caplog.set_level(logging.WARNING)
    assert await book.lookup(CRO, Role.CRO) is not None
    assert await book.lookup("agr.example.com", Role.AGR) is not None
    assert book.roles_of(DSO) == frozenset()
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 5


async def test_the_list_is_bounded_in_entries_and_bytes(hub: Hub) -> None:
    book = book_for(hub, max_entries=1)
    assert await book.lookup(CRO, Role.CRO) is not None
    assert await book.lookup("agr.example.com", Role.AGR) is None  # beyond the first entry
    small = book_for(hub, max_bytes=100)
    with pytest.raises(KeyLookupFailed, match="over 100 bytes"):
        await small.lookup(CRO, Role.CRO)


async def test_cache_control_max_age_says_when_to_fetch_again(hub: Hub) -> None:
    hub.cache_control = "private, max-age=60"
    now = [0.0]
    book = book_for(hub, now, refresh_seconds=3600)
    await book.lookup(CRO, Role.CRO)
    now[0] = 59.0
    await book.lookup(CRO, Role.CRO)
    assert hub.requests["/api/participants"] == 1
    now[0] = 61.0
    await book.lookup(CRO, Role.CRO)
    assert hub.requests["/api/participants"] == 2


async def test_the_list_in_hand_is_kept_while_the_hub_is_down(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    book = book_for(hub, now, refresh_seconds=60)
    assert await book.lookup(CRO, Role.CRO) is not None
    await hub.stop()
    now[0] = 120.0
    caplog.set_level(logging.WARNING)
    assert await book.lookup(CRO, Role.CRO) is not None  # stale, and said so
    assert any("stale" in r.getMessage() for r in caplog.records)
    fresh = book_for(hub)
    with pytest.raises(KeyLookupFailed):  # nothing in hand: the sender is told to retry
        await fresh.lookup(CRO, Role.CRO)


async def test_a_key_rotated_in_the_list_is_found_by_refresh(hub: Hub) -> None:
    now = [0.0]
    book = book_for(hub, now, min_refresh_seconds=10)
    old = await book.lookup(CRO, Role.CRO)
    new_key = generate()
    hub.book["participants"][0]["publicKeys"] = [
        KEYS[CRO].public.to_cs1(),
        new_key.public.to_cs1(),
    ]
    assert await book.refresh(CRO, Role.CRO) is None  # asked moments ago
    now[0] = 11.0
    fresh = await book.refresh(CRO, Role.CRO)
    assert old is not None and fresh is not None
    assert fresh.signing_keys == (KEYS[CRO].public.signing, new_key.public.signing)


async def test_an_entry_without_an_endpoint_takes_the_one_dns_names(hub: Hub) -> None:
    named = Peer("agr.example.com", Role.AGR, "https://agr-host.example/m", (b"x" * 32,))
    book = AddressBookDirectory(
        AddressBookSettings(hub.book_url),
        token=TokenSource(hub.oauth2(DSO)),
        endpoints=StaticDirectory([named]),
    )
    agr = await book.lookup("agr.example.com", Role.AGR)
    assert agr is not None and agr.endpoint == named.endpoint
    assert agr.signing_keys == (KEYS["agr.example.com"].public.signing,)  # the book's keys
    assert await book.token_for(named.endpoint) is book.token
    plain = dataclasses.replace(book.settings)
    assert plain.endpoint is None


async def test_a_post_before_any_lookup_still_gets_the_hubs_token(hub: Hub) -> None:
    """A delivery resumed after a restart comes before any lookup has read the list."""
    book = book_for(hub)
    endpoint = "https://cro.example.com/shapeshifter/api/v3/message"
    assert await book.token_for(endpoint) is book.token
    assert hub.requests["/api/participants"] == 1


async def test_the_hub_over_https_is_verified_with_the_configured_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = Hub({DSO: "dso-secret"})
    hub.book = {"participants": [entry(CRO, "CRO", endpoint="https://cro.example.com/m")]}
    await hub.start(
        server_context(pki.server(require_client_certificates=False)),
        trust=client_context(TlsSettings(ca=pki.ca)),
    )
    try:
        assert hub.book_url.startswith("https://")
        for ca, known in ((pki.ca, True), (pki.other_ca, False)):
            trust = client_context(TlsSettings(ca=ca))
            book = AddressBookDirectory(
                AddressBookSettings(hub.book_url),
                token=TokenSource(hub.oauth2(DSO), ssl_context=trust),
                ssl_context=trust,
            )
            if known:
                assert await book.lookup(CRO, Role.CRO) is not None
            else:  # a hub our CA does not vouch for: no token, no list
                with pytest.raises(KeyLookupFailed, match="does not verify the certificate"):
                    await book.lookup(CRO, Role.CRO)
    finally:
        await hub.stop()


async def test_no_cache_refetches_as_often_as_the_floor_allows(hub: Hub) -> None:
    hub.cache_control = "no-cache"
    now = [0.0]
    book = book_for(hub, now, refresh_seconds=3600, min_refresh_seconds=5)
    await book.lookup(CRO, Role.CRO)
    now[0] = 4.0
    await book.lookup(CRO, Role.CRO)
    assert hub.requests["/api/participants"] == 1
    now[0] = 6.0
    await book.lookup(CRO, Role.CRO)
    assert hub.requests["/api/participants"] == 2
