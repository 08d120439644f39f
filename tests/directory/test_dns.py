"""Peers from DNS (message-transport-mechanism.md, "Service discovery", DNS), against NSD
serving signed and unsigned zones and a validating Unbound on loopback (`dnslab`).

Only answers the resolver authenticated are believed; a bogus signature, a timeout or another
temporary failure is `KeyLookupFailed` (419), never an unknown peer (401)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from adapter.directory import Peer, StaticDirectory
from adapter.directory.chain import DirectoryChain
from adapter.directory.dns import DnsDirectory
from adapter.directory.settings import DnsSettings
from adapter.keys import generate
from adapter.uftp.errors import KeyLookupFailed
from adapter.uftp.messages import Role
from tests.directory.dnslab import DnsLab, Zone, cname, txt

ENDPOINT = "http://{host}:8081/shapeshifter/api/v3/message"
CRO_KEY = generate().public
NEXT_KEY = generate().public
OTHER_KEY = generate().public
SPLIT = CRO_KEY.to_cs1()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    lab = DnsLab(
        tmp_path_factory.mktemp("dns"),
        [
            Zone(
                "example.test",
                signed=True,
                records=[
                    txt("_cro._usef.cro", CRO_KEY.to_cs1()),
                    cname("_http._cro._usef.cro", "web.cro"),
                    cname("web.cro", "localhost."),
                    # A key split over two strings, and a second key in a second record.
                    txt("_cro._usef.split", SPLIT[:50], SPLIT[50:]),
                    txt("_cro._usef.split", NEXT_KEY.to_cs1()),
                    cname("_http._cro._usef.split", "localhost."),
                    # Two keys in one string, as during a rotation (footnote 17).
                    txt("_cro._usef.rotating", f"{CRO_KEY.to_cs1()} {NEXT_KEY.to_cs1()}"),
                    cname("_http._cro._usef.rotating", "localhost."),
                    # The keys behind a CNAME.
                    cname("_cro._usef.alias", "keys.alias"),
                    txt("keys.alias", OTHER_KEY.to_cs1()),
                    cname("_http._cro._usef.alias", "localhost."),
                    # An endpoint whose CNAME chain loops (footnote 19: temporary).
                    txt("_cro._usef.loop", CRO_KEY.to_cs1()),
                    cname("_http._cro._usef.loop", "a.loop"),
                    cname("a.loop", "b.loop"),
                    cname("b.loop", "a.loop"),
                    # Keys but no endpoint.
                    txt("_cro._usef.noweb", CRO_KEY.to_cs1()),
                    # Changed by the tests below, with TTLs of a second.
                    txt("_cro._usef.ttl", CRO_KEY.to_cs1(), ttl=1),
                    cname("_http._cro._usef.ttl", "localhost.", ttl=1),
                ],
            ),
            Zone(
                "plain.test",
                signed=False,
                records=[
                    txt("_cro._usef.cro", CRO_KEY.to_cs1()),
                    cname("_http._cro._usef.cro", "localhost."),
                ],
            ),
            Zone(
                "bogus.test",
                signed=True,
                records=[
                    txt("_cro._usef.cro", CRO_KEY.to_cs1()),
                    cname("_http._cro._usef.cro", "localhost."),
                ],
                corrupt=("_cro._usef.cro",),
            ),
        ],
    )
    lab.start()
    yield lab
    lab.stop()


def directory(lab: DnsLab, *, require_dnssec: bool = True) -> DnsDirectory:
    host, port = lab.resolver.split(":")
    return DnsDirectory(
        DnsSettings(
            resolvers=((host, int(port)),),
            endpoint=ENDPOINT,
            timeout_seconds=2,
            require_dnssec=require_dnssec,
        )
    )


async def test_a_signed_peer_has_its_keys_and_the_endpoint_its_cname_chain_names(
    lab: DnsLab,
) -> None:
    peer = await directory(lab).lookup("cro.example.test", Role.CRO)
    assert peer == Peer(
        "cro.example.test",
        Role.CRO,
        "http://localhost:8081/shapeshifter/api/v3/message",
        (CRO_KEY.signing,),
    )


async def test_keys_are_read_from_every_string_of_every_record(lab: DnsLab) -> None:
    peer = await directory(lab).lookup("split.example.test", Role.CRO)
    assert peer is not None
    assert sorted(peer.signing_keys) == sorted([CRO_KEY.signing, NEXT_KEY.signing])


async def test_two_keys_in_one_string_both_verify(lab: DnsLab) -> None:
    peer = await directory(lab).lookup("rotating.example.test", Role.CRO)
    assert peer is not None
    assert peer.signing_keys == (CRO_KEY.signing, NEXT_KEY.signing)


async def test_keys_behind_a_cname_are_followed(lab: DnsLab) -> None:
    peer = await directory(lab).lookup("alias.example.test", Role.CRO)
    assert peer is not None and peer.signing_keys == (OTHER_KEY.signing,)


async def test_an_endpoint_cname_loop_is_a_temporary_failure(lab: DnsLab) -> None:
    with pytest.raises(KeyLookupFailed, match="loops"):
        await directory(lab).lookup("loop.example.test", Role.CRO)


async def test_a_name_without_records_is_unknown(lab: DnsLab) -> None:
    source = directory(lab)
    assert await source.lookup("nobody.example.test", Role.CRO) is None  # NXDOMAIN
    assert await source.lookup("cro.example.test", Role.DSO) is None  # not in that role
    assert await source.lookup("noweb.example.test", Role.CRO) is None  # keys, no endpoint
    assert source.roles_of("nobody.example.test") == frozenset()


async def test_roles_are_known_once_asked(lab: DnsLab) -> None:
    source = directory(lab)
    assert source.roles_of("cro.example.test") == frozenset()
    await source.lookup("cro.example.test", Role.CRO)
    assert source.roles_of("cro.example.test") == {Role.CRO}


async def test_an_unsigned_answer_is_refused_with_a_clear_log_line(
    lab: DnsLab, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="adapter.directory.dns"):
        assert await directory(lab).lookup("cro.plain.test", Role.CRO) is None
    assert "not DNSSEC-validated" in caplog.text
    assert "_cro._usef.cro.plain.test" in caplog.text


async def test_unsigned_answers_are_believed_only_when_dnssec_is_not_required(
    lab: DnsLab,
) -> None:
    peer = await directory(lab, require_dnssec=False).lookup("cro.plain.test", Role.CRO)
    assert peer is not None and peer.signing_keys == (CRO_KEY.signing,)


async def test_a_bogus_signature_is_a_temporary_failure_not_an_unknown_peer(
    lab: DnsLab,
) -> None:
    # Spec footnote 18: "treating verification failures as temporary errors".
    with pytest.raises(KeyLookupFailed, match="SERVFAIL") as failed:
        await directory(lab).lookup("cro.bogus.test", Role.CRO)
    assert failed.value.status == 419
    # Even when unsigned answers are welcome: a bad signature is not an unsigned answer.
    with pytest.raises(KeyLookupFailed):
        await directory(lab, require_dnssec=False).lookup("cro.bogus.test", Role.CRO)


async def test_a_resolver_that_does_not_answer_is_a_timeout_419() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries go unanswered
        port = silent.getsockname()[1]
        source = DnsDirectory(DnsSettings(resolvers=(("127.0.0.1", port),), timeout_seconds=0.5))
        started = time.monotonic()
        with pytest.raises(KeyLookupFailed, match="timed out") as failed:
            await source.lookup("cro.example.test", Role.CRO)
    assert failed.value.status == 419
    assert time.monotonic() - started < 5
    # Not remembered: the next lookup asks again.
    assert source.roles_of("cro.example.test") == frozenset()


async def test_the_next_resolver_is_asked_when_one_times_out(lab: DnsLab) -> None:
    host, port = lab.resolver.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        settings = DnsSettings(
            resolvers=(("127.0.0.1", silent.getsockname()[1]), (host, int(port))),
            timeout_seconds=0.3,
            endpoint=ENDPOINT,
        )
        peer = await DnsDirectory(settings).lookup("cro.example.test", Role.CRO)
    assert peer is not None


async def test_answers_are_cached_for_their_ttl_and_asked_again_after(lab: DnsLab) -> None:
    source = directory(lab)
    assert (await source.lookup("ttl.example.test", Role.CRO)).signing_keys == (  # type: ignore[union-attr]
        CRO_KEY.signing,
    )
    lab.publish(
        "example.test",
        [
            *lab.zones["example.test"].records[:-2],
            txt("_cro._usef.ttl", NEXT_KEY.to_cs1(), ttl=1),
            cname("_http._cro._usef.ttl", "localhost.", ttl=1),
        ],
    )
    peer = await source.lookup("ttl.example.test", Role.CRO)
    if peer is not None and peer.signing_keys == (NEXT_KEY.signing,):
        pytest.fail("the cached answer was not used")  # publishing took less than the TTL
    await asyncio.sleep(2.2)  # our cache and the resolver's expire
    peer = await source.lookup("ttl.example.test", Role.CRO)
    assert peer is not None and peer.signing_keys == (NEXT_KEY.signing,)
    # Restore for the other tests.
    lab.publish(
        "example.test",
        [
            *lab.zones["example.test"].records[:-2],
            txt("_cro._usef.ttl", CRO_KEY.to_cs1(), ttl=1),
            cname("_http._cro._usef.ttl", "localhost.", ttl=1),
        ],
    )


async def test_refresh_bypasses_the_cache_at_most_once_a_second(lab: DnsLab) -> None:
    now = [0.0]
    source = DnsDirectory(directory(lab).settings, clock=lambda: now[0])
    await asyncio.sleep(2.2)  # whatever the resolver cached of "ttl" expires
    first = await source.lookup("ttl.example.test", Role.CRO)
    assert first is not None and first.signing_keys == (CRO_KEY.signing,)
    records = lab.zones["example.test"].records[:-2]
    lab.publish(
        "example.test",
        [
            *records,
            txt("_cro._usef.ttl", f"{CRO_KEY.to_cs1()} {NEXT_KEY.to_cs1()}", ttl=1),
            cname("_http._cro._usef.ttl", "localhost.", ttl=1),
        ],
    )
    await asyncio.sleep(2.2)  # the resolver's copy expires; ours does not (its clock stands)
    assert await source.lookup("ttl.example.test", Role.CRO) == first
    fresh = await source.refresh("ttl.example.test", Role.CRO)
    assert fresh is not None and fresh.signing_keys == (CRO_KEY.signing, NEXT_KEY.signing)
    assert await source.lookup("ttl.example.test", Role.CRO) == fresh
    # A peer cannot make us ask DNS for every message it signs badly.
    assert await source.refresh("ttl.example.test", Role.CRO) is None
    now[0] += 1.5
    assert await source.refresh("ttl.example.test", Role.CRO) == fresh
    lab.publish(
        "example.test",
        [
            *records,
            txt("_cro._usef.ttl", CRO_KEY.to_cs1(), ttl=1),
            cname("_http._cro._usef.ttl", "localhost.", ttl=1),
        ],
    )


async def test_lookups_of_one_peer_at_once_ask_dns_once(lab: DnsLab) -> None:
    source = directory(lab)
    queries = 0
    query = source._query

    async def counted(*args: object) -> object:
        nonlocal queries
        queries += 1
        return await query(*args)  # type: ignore[arg-type]

    source._query = counted  # type: ignore[method-assign]
    peers = await asyncio.gather(*(source.lookup("cro.example.test", Role.CRO) for _ in range(20)))
    assert len(set(peers)) == 1 and peers[0] is not None
    assert queries == 1 + 3  # the TXT record, and the CNAME hops web.cro, localhost.


async def test_a_caller_that_goes_away_leaves_the_lookup_to_the_others(lab: DnsLab) -> None:
    """A sender that hangs up (its request cancelled) must not fail the lookup of the others
    waiting on the same peer."""
    source = directory(lab)
    first = asyncio.create_task(source.lookup("cro.example.test", Role.CRO))
    await asyncio.sleep(0)
    second = asyncio.create_task(source.lookup("cro.example.test", Role.CRO))
    await asyncio.sleep(0)
    first.cancel()
    peer = await second
    assert peer is not None and peer.domain == "cro.example.test"
    assert first.cancelled()


async def test_the_chain_asks_static_peers_first_then_dns(lab: DnsLab) -> None:
    static_peer = Peer("cro.example.test", Role.CRO, "https://configured", (OTHER_KEY.signing,))
    chain = DirectoryChain([StaticDirectory([static_peer]), directory(lab)])
    assert await chain.lookup("cro.example.test", Role.CRO) == static_peer
    from_dns = await chain.lookup("split.example.test", Role.CRO)
    assert from_dns is not None and from_dns.endpoint.startswith("http://localhost:8081/")
    assert chain.roles_of("split.example.test") == {Role.CRO}
    # A static peer's keys change only with the configuration: nothing to refresh.
    assert await chain.refresh("cro.example.test", Role.CRO) is None
    assert await chain.lookup("nobody.example.test", Role.CRO) is None


async def test_a_dns_failure_in_the_chain_is_not_passed_over() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        dns_source = DnsDirectory(
            DnsSettings(resolvers=(("127.0.0.1", silent.getsockname()[1]),), timeout_seconds=0.3)
        )
        later = StaticDirectory([Peer("cro.example.test", Role.CRO, "https://x", (b"k" * 32,))])
        with pytest.raises(KeyLookupFailed):
            await DirectoryChain([dns_source, later]).lookup("cro.example.test", Role.CRO)


def test_missing_dns_servers_fail_under_ci_rather_than_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.directory import dnslab

    monkeypatch.setattr(dnslab, "PROGRAMS", ("no-such-dns-server",))
    monkeypatch.setattr(dnslab, "REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match="may not skip"):
        dnslab.require_programs()
    monkeypatch.setattr(dnslab, "REQUIRED", False)
    with pytest.raises(pytest.skip.Exception):
        dnslab.require_programs()


async def test_a_sender_domain_dns_cannot_hold_is_an_unknown_peer() -> None:
    source = DnsDirectory(DnsSettings(resolvers=(("127.0.0.1", 9),), timeout_seconds=0.2))
    assert await source.lookup("a" * 64 + ".example.test", Role.CRO) is None
    assert await source.lookup(("a" * 60 + ".") * 5 + "test", Role.CRO) is None
