"""The [directory] table, and the date from which a participant signs with its next key."""

from __future__ import annotations

import dataclasses
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter.assemble import directory_for, reload_peers
from adapter.config import ConfigError
from adapter.directory import StaticDirectory
from adapter.directory.chain import DirectoryChain
from adapter.directory.dns import DnsDirectory
from adapter.directory.settings import DEFAULT_ENDPOINT, DirectorySettings, DnsSettings
from adapter.uftp.messages import Role
from tests.test_config import parse, valid


def with_directory(directory: dict[str, Any], **participant: Any) -> dict[str, Any]:
    data = valid()
    data["directory"] = directory
    data["participant"].update(participant)
    return data


def test_without_a_directory_table_the_configured_peers_are_the_directory() -> None:
    config = parse(valid())
    assert config.directory == DirectorySettings(("static",), None)
    chain = directory_for(config)
    assert [type(source) for source in chain.sources] == [StaticDirectory]
    assert chain.roles_of("cro.example.com") == {Role.CRO}


def test_static_peers_then_dns_in_the_configured_order() -> None:
    config = parse(
        with_directory(
            {"sources": ["static", "dns"], "dns": {"resolvers": ["127.0.0.1:5353", "[::1]"]}}
        )
    )
    assert config.directory.dns == DnsSettings(resolvers=(("127.0.0.1", 5353), ("::1", 53)))
    assert config.directory.dns.require_dnssec  # the default for DNS-sourced peers
    assert config.directory.dns.endpoint == DEFAULT_ENDPOINT
    chain = directory_for(config)
    assert [type(source) for source in chain.sources] == [StaticDirectory, DnsDirectory]


@pytest.mark.parametrize(
    ("directory", "field", "problem"),
    [
        (
            {"sources": ["ldap"]},
            "directory.sources[0]",
            "expected one of static, address_book, dns",
        ),
        ({"sources": ["dns", "dns"], "dns": {}}, "directory.sources[1]", "listed twice"),
        ({"sources": []}, "directory.sources", "at least one"),
        ({"sources": ["dns"]}, "directory.dns", "add a [directory.dns] table"),
        ({"dns": {"resolvers": ["127.0.0.1"]}}, "directory.dns", "does not list 'dns'"),
        ({"sources": ["dns"], "dns": {"resolvers": []}}, "directory.dns.resolvers", "at least"),
        (
            {"sources": ["dns"], "dns": {"resolvers": ["dns.example.com"]}},
            "directory.dns.resolvers[0]",
            "IP address",
        ),
        (
            {"sources": ["dns"], "dns": {"resolvers": ["127.0.0.1:0"]}},
            "directory.dns.resolvers[0]",
            "port",
        ),
        (
            {"sources": ["dns"], "dns": {"resolvers": ["127.0.0.1"], "endpoint": "https://x/"}},
            "directory.dns.endpoint",
            "{host}",
        ),
        (
            {"sources": ["dns"], "dns": {"resolvers": ["127.0.0.1"], "requre_dnssec": False}},
            "directory.dns.requre_dnssec",
            "did you mean 'require_dnssec'",
        ),
        ({"source": ["dns"]}, "directory.source", "did you mean 'sources'"),
    ],
)
def test_mistakes_name_the_field(directory: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(with_directory(directory))
    assert raised.value.field == field
    assert problem in raised.value.problem


def test_the_next_key_date_needs_an_offset() -> None:
    at = datetime(2026, 12, 8, 6, tzinfo=UTC)
    data = valid()
    data["participant"]["activate_next_key_at"] = at
    assert parse(data).participant.activate_next_key_at == at
    data["participant"]["activate_next_key_at"] = datetime(2026, 12, 8, 6)
    with pytest.raises(ConfigError, match="offset"):
        parse(data)


def test_reloading_replaces_the_static_peers_only() -> None:
    data = with_directory({"sources": ["static", "dns"], "dns": {"resolvers": ["127.0.0.1"]}})
    chain = directory_for(parse(data))
    data["peers"] = data["peers"][:1]
    assert reload_peers(chain, parse(data))
    assert chain.roles_of("agr.example.com") == frozenset()
    assert chain.roles_of("cro.example.com") == {Role.CRO}
    assert isinstance(chain.sources[1], DnsDirectory)
    assert not reload_peers(DirectoryChain([chain.sources[1]]), parse(data))


async def test_sighup_reads_the_peers_of_a_running_participant_again(tmp_path: Path) -> None:
    import asyncio

    import aiohttp

    from adapter.config import load_config
    from adapter.keys import generate, write_private
    from adapter.run import serve
    from adapter.testing import free_port
    from adapter.uftp import codec, envelope
    from tests.uftp.samples import make_test_message

    write_private(tmp_path / "keys" / "cro.key", generate())
    dso_keys = generate()
    port = free_port()
    config_file = tmp_path / "cro.toml"
    base = f"""
[participant]
domain = "cro.example.com"
role = "CRO"
signing_key = "keys/cro.key"
listen = "127.0.0.1:{port}"
store = "sqlite:var/cro.sqlite3"
versions = ["3.1.0"]
"""
    peer = f"""
[[peers]]
domain = "dso.example.com"
role = "DSO"
endpoint = "http://127.0.0.1:9/shapeshifter/api/v3/message"
public_keys = ["{dso_keys.public.to_cs1()}"]
"""
    config_file.write_text(base)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(load_config(config_file), stop=stop))
    url = f"http://127.0.0.1:{port}/shapeshifter/api/v3/message"
    message = dataclasses.replace(
        make_test_message(), sender_domain="dso.example.com", recipient_domain="cro.example.com"
    )
    body = envelope.seal(codec.encode(message), dso_keys.signing, "dso.example.com", Role.DSO)

    async def post() -> int:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}
                    ) as answer:
                        return answer.status
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)  # not listening yet
        raise AssertionError("the participant did not start")

    try:
        assert await post() == 401  # an unknown sender
        config_file.write_text(base + peer)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert await post() == 200
    finally:
        stop.set()
        await server


def test_an_address_book_with_the_hubs_oauth2_client(tmp_path: Path) -> None:
    from adapter.assemble import credentials_for
    from adapter.directory.addressbook import AddressBookDirectory
    from adapter.oauth2 import ClientAuth

    config = parse(
        with_directory(
            {
                "sources": ["static", "address_book"],
                "address_book": {
                    "url": "https://hub.example/api/participants",
                    "refresh_seconds": 60,
                    "oauth2": {
                        "token_url": "https://hub.example/oauth2/token",
                        "client_id": "dso.example.com",
                        "client_secret": "very-secret",
                        "scope": "uftp",
                    },
                },
            }
        )
    )
    book = config.directory.address_book
    assert book is not None and book.refresh_seconds == 60
    assert book.oauth2 is not None and book.oauth2.client_auth is ClientAuth.BASIC
    assert "very-secret" not in repr(config)
    chain = directory_for(config)
    assert isinstance(chain.sources[1], AddressBookDirectory)
    assert chain.sources[1].token is not None
    assert credentials_for(config, chain)


@pytest.mark.parametrize(
    ("book", "problem"),
    [
        ({}, "url"),
        ({"url": "ftp://hub.example/"}, "http(s) URL"),
        (
            {
                "url": "https://h.example/",
                "oauth2": {"token_url": "https://h.example/t", "client_id": "x"},
            },
            "client_secret",
        ),
        ({"url": "https://h.example/", "endpoint": "https://{host}/m"}, "template"),
    ],
)
def test_an_address_book_table_that_does_not_hold_is_refused(
    book: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match="address_book") as caught:
        parse(with_directory({"sources": ["address_book"], "address_book": book}))
    assert problem in str(caught.value)


async def test_a_peer_with_its_own_oauth2_and_an_inbound_bearer_check() -> None:
    from adapter.assemble import credentials_for

    data = valid()
    data["peers"][0]["oauth2"] = {
        "token_url": "https://auth.cro.example/token",
        "client_id": "dso.example.com",
        "client_secret": "peer-secret",
        "client_auth": "body",
    }
    data["oauth2_inbound"] = {
        "jwks_url": "https://auth.example/jwks",
        "audience": "dso.example.com",
        "issuer": "https://auth.example",
    }
    config = parse(data)
    peer = config.peers[0]
    assert peer.oauth2 is not None and "peer-secret" not in repr(peer)
    assert config.oauth2_inbound is not None
    credentials = credentials_for(config, directory_for(config))
    source = await credentials.for_url(peer.endpoint)
    assert source is not None and source.settings == peer.oauth2
    assert await credentials.for_url("https://other.example/") is None


async def test_sighup_gives_the_peers_their_oauth2_clients_again() -> None:
    from adapter.assemble import credentials_for, reload_credentials

    data = valid()
    data["peers"][0]["oauth2"] = {
        "token_url": "https://auth.cro.example/token",
        "client_id": "dso.example.com",
        "client_secret": "one",
    }
    config = parse(data)
    endpoint = config.peers[0].endpoint
    credentials = credentials_for(config, directory_for(config))
    first = await credentials.for_url(endpoint)
    reload_credentials(credentials, parse(data))
    assert await credentials.for_url(endpoint) is first  # unchanged: its token is kept
    data["peers"][0]["oauth2"]["client_secret"] = "two"
    reload_credentials(credentials, parse(data))
    second = await credentials.for_url(endpoint)
    assert second is not None and second is not first
    del data["peers"][0]["oauth2"]
    reload_credentials(credentials, parse(data))
    assert await credentials.for_url(endpoint) is None


def test_the_directory_tables_take_their_defaults_from_the_settings_classes() -> None:
    from adapter.directory.settings import AddressBookSettings, DnsSettings
    from adapter.oauth2 import ClientAuth, OAuth2Settings

    config = parse(
        with_directory(
            {
                "sources": ["address_book", "dns"],
                "address_book": {
                    "url": "https://hub.example/list",
                    "max_entries": 7,
                    "oauth2": {
                        "token_url": "https://hub.example/t",
                        "client_id": "x",
                        "client_secret": "s",
                        "client_auth": "body",
                    },
                },
                "dns": {"resolvers": ["127.0.0.1:53"], "require_dnssec": False},
            }
        )
    )
    book, dns = config.directory.address_book, config.directory.dns
    assert book is not None and dns is not None and book.oauth2 is not None
    assert book == AddressBookSettings(
        "https://hub.example/list", oauth2=book.oauth2, max_entries=7
    )
    assert book.oauth2 == OAuth2Settings(
        "https://hub.example/t", "x", client_secret="s", client_auth=ClientAuth.BODY
    )
    assert dns == DnsSettings((("127.0.0.1", 53),), require_dnssec=False)


@pytest.mark.parametrize(
    ("book", "problem"),
    [
        ({"max_bytes": 100}, "max_bytes: expected an integer >= 1024"),
        ({"max_entries": 0}, "max_entries: expected an integer >= 1"),
        ({"refresh_seconds": -1}, "refresh_seconds: expected a positive number"),
        ({"timeout_seconds": "10"}, "timeout_seconds: expected a positive number"),
    ],
)
def test_an_address_book_value_out_of_range_is_refused(book: dict[str, Any], problem: str) -> None:
    table = {"url": "https://hub.example/list", **book}
    with pytest.raises(ConfigError) as caught:
        parse(with_directory({"sources": ["address_book"], "address_book": table}))
    assert problem in str(caught.value)


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "hs512"], []])
def test_inbound_tokens_are_checked_with_public_key_algorithms_only(
    algorithms: list[str],
) -> None:
    data = valid()
    data["oauth2_inbound"] = {
        "jwks_url": "https://auth.example/jwks",
        "audience": "dso.example.com",
        "issuer": "https://auth.example",
        "algorithms": algorithms,
    }
    with pytest.raises(ConfigError, match="public-key signature algorithms"):
        parse(data)
