"""Peers from DNS, trusted only when a validating resolver vouches for them (DNSSEC).

The records (spec: message-transport-mechanism.md, "Service discovery", DNS):

- ``_<role>._usef.<domain>`` TXT: up to two space-separated ``cs1.`` public key strings, two
  while a key is rotated (footnote 17). Read here from every string of every TXT record of
  the name (a key split over two strings, or two keys in two records, read alike), through
  any CNAME chain the resolver follows.
- ``_http._<role>._usef.<domain>`` CNAME: the host of the peer's endpoint. Chains are
  followed to `MAX_CNAME_CHAIN` hops; a loop or a longer chain is a temporary error
  (footnote 19). The URL is the configured template with ``{host}`` filled in.

Trust: "If DNS is used, implementation of DNSSEC is mandatory ... Implementations must use a
DNSSEC validating resolver" (ibid., "Cryptographic scheme"). This module does not validate
signatures itself: it asks the configured resolver (which must be on a trusted path, e.g.
loopback) and believes only answers with the AD (authenticated data) bit. An answer without
it is refused with a warning that names the record ("Absent DNSSEC authentication, private key
strings must not be relied on", footnote 18): the peer is then unknown here. A validation
failure (the resolver's SERVFAIL for a bogus signature), a timeout or any other temporary
failure raises `KeyLookupFailed`, which the endpoint answers with 419 Authentication Timeout
("Failed to look up the sender's public signature key in DNS", ibid., "Error handling"),
never blaming the sender with 400 or 401.

Answers are cached for their TTL (capped by `max_ttl_seconds`; an absent peer for the SOA's
negative TTL, capped by `negative_ttl_seconds`); temporary failures are not cached. The cache
and the lookups in flight are bounded: sender domains are the peer's to choose.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..fetch import SingleFlight
from ..printable import printable
from ..uftp.envelope import parse_cs1
from ..uftp.errors import AdapterError, KeyLookupFailed
from ..uftp.messages import Role
from . import Peer
from .settings import DnsSettings

log = logging.getLogger(__name__)

#: CNAME hops followed to find the endpoint host (footnote 19: "to an implementation-defined
#: maximum depth").
MAX_CNAME_CHAIN = 8
#: Keys read from a peer's records: the spec publishes up to two; a zone may briefly list
#: more (two records during a rotation), and each is tried on every signature, so a bound.
MAX_KEYS = 4
_CS1 = re.compile(r"cs1\.[A-Za-z0-9+/]+={0,2}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    peer: Peer | None


class _Absent(AdapterError):
    """Nothing usable at a name (NXDOMAIN, no data, or refused as unsigned), for `ttl`."""

    def __init__(self, ttl: float) -> None:
        super().__init__(ttl)
        self.ttl = ttl


class DnsDirectory:
    """A directory source that resolves peers over DNS with DNSSEC (see the module text)."""

    def __init__(self, settings: DnsSettings, *, clock: Callable[[], float] = time.monotonic):
        if not settings.resolvers:
            raise ValueError("DNS discovery needs at least one validating resolver")
        self.settings = settings
        self._clock = clock
        self._cache: OrderedDict[tuple[str, Role], _Entry] = OrderedDict()
        self._in_flight: dict[tuple[str, Role], SingleFlight[_Entry]] = {}
        self._refreshed: dict[tuple[str, Role], float] = {}
        self._queries = asyncio.Semaphore(settings.max_lookups_in_flight)

    # -- the Directory protocol -------------------------------------------------------------

    async def lookup(self, domain: str, role: Role) -> Peer | None:
        key = (domain, role)
        entry = self._cache.get(key)
        if entry is not None and entry.expires > self._clock():
            self._cache.move_to_end(key)
            return entry.peer
        return (await self._resolve(key)).peer

    def roles_of(self, domain: str) -> frozenset[Role]:
        now = self._clock()
        return frozenset(
            role
            for role in Role
            if (entry := self._cache.get((domain, role))) is not None
            and entry.peer is not None
            and entry.expires > now
        )

    async def refresh(self, domain: str, role: Role) -> Peer | None:
        key = (domain, role)
        now = self._clock()
        last = self._refreshed.get(key)
        if last is not None and now - last < self.settings.refresh_interval_seconds:
            return None  # asked moments ago: a peer cannot make us query DNS per message
        if len(self._refreshed) >= self.settings.max_cached:
            self._refreshed.clear()
        self._refreshed[key] = now
        self._cache.pop(key, None)
        return (await self._resolve(key)).peer

    # -- resolving --------------------------------------------------------------------------

    async def _resolve(self, key: tuple[str, Role]) -> _Entry:
        """One lookup per peer at a time; the others wait for its answer (and have it even
        when the caller that started it goes away)."""
        flight = self._in_flight.get(key)
        if flight is None:
            flight = self._in_flight[key] = SingleFlight()
        return await flight.run(lambda: self._resolve_once(key))

    async def _resolve_once(self, key: tuple[str, Role]) -> _Entry:
        try:
            entry = await self._fetch(*key)
        finally:
            del self._in_flight[key]
        self._remember(key, entry)
        return entry

    def _remember(self, key: tuple[str, Role], entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.max_cached:
            self._cache.popitem(last=False)

    async def _fetch(self, domain: str, role: Role) -> _Entry:
        try:
            base = dns.name.from_text(f"_{role.value.lower()}._usef.{domain}")
        except dns.exception.DNSException:
            # Not a name DNS can hold (a label over 63 bytes): no peer there. The domain is
            # the sender's to write, and schema-valid is not always DNS-valid.
            return _Entry(self._clock() + self.settings.negative_ttl_seconds, None)
        keys_found, host_found = await asyncio.gather(
            self._keys(base),
            self._endpoint_host(dns.name.Name((b"_http", *base.labels))),
            return_exceptions=True,
        )
        # Keys absent: the peer is not in DNS, whatever became of its endpoint.
        for found in (keys_found, host_found):
            if isinstance(found, _Absent):
                return _Entry(self._clock() + found.ttl, None)
        for found in (keys_found, host_found):
            if isinstance(found, BaseException):
                raise found
        assert not isinstance(keys_found, BaseException)
        assert not isinstance(host_found, BaseException)
        keys, keys_ttl = keys_found
        host, host_ttl = host_found
        endpoint = self.settings.endpoint.format(host=host)
        ttl = min(keys_ttl, host_ttl, self.settings.max_ttl_seconds)
        return _Entry(self._clock() + ttl, Peer(domain, role, endpoint, keys))

    async def _keys(self, name: dns.name.Name) -> tuple[tuple[bytes, ...], float]:
        response = await self._query(name, dns.rdatatype.TXT)
        rrset, ttl = self._answer(response, name, dns.rdatatype.TXT)
        # Every string of every record, joined: a key may be split over two strings, and
        # "==cs1." can only be the end of one key and the start of the next.
        text = " ".join(b"".join(rdata.strings).decode("ascii", "replace") for rdata in rrset)
        keys: list[bytes] = []
        for found in _CS1.findall(text)[: 4 * MAX_KEYS]:
            try:
                signing = parse_cs1(found).signing
            except ValueError as exc:
                log.warning("DNS: %s holds a malformed cs1 key, skipped: %s", _shown(name), exc)
                continue
            if signing not in keys:
                keys.append(signing)
        if not keys:
            log.warning("DNS: %s has no cs1 public key string", _shown(name))
            raise _Absent(self._negative(ttl))
        if len(keys) > MAX_KEYS:
            log.warning(
                "DNS: %s lists %d keys; the first %d are used", _shown(name), len(keys), MAX_KEYS
            )
        return tuple(keys[:MAX_KEYS]), ttl

    async def _endpoint_host(self, name: dns.name.Name) -> tuple[str, float]:
        """The target of `name`'s CNAME chain, hop by hop so that each hop is authenticated
        (the final host's own A record need not be: TLS authenticates the endpoint)."""
        seen = {name}
        target = name
        ttl = math.inf
        for _ in range(MAX_CNAME_CHAIN + 1):
            response = await self._query(target, dns.rdatatype.CNAME)
            try:
                rrset, hop_ttl = self._answer(response, target, dns.rdatatype.CNAME)
            except _Absent as absent:
                if target == name:
                    raise
                del absent  # `target` is the host: it has no CNAME of its own
                host = target.to_text(omit_final_dot=True)
                if not _HOST.fullmatch(host):
                    log.warning(
                        "DNS: %s names the endpoint host %s, not a host name",
                        _shown(name),
                        printable(host, 80),
                    )
                    raise _Absent(self._negative(ttl)) from None
                return host, ttl
            ttl = min(ttl, hop_ttl)
            target = rrset[0].target
            if target in seen:
                raise KeyLookupFailed(f"the CNAME chain of {name} loops")
            seen.add(target)
        raise KeyLookupFailed(f"the CNAME chain of {name} is longer than {MAX_CNAME_CHAIN} hops")

    def _answer(
        self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[dns.rrset.RRset, float]:
        """The `rdtype` records of `name` in `response` (through the CNAMEs the resolver
        followed) and their TTL; raises `_Absent` when there are none or they are unsigned."""
        target = name
        ttl = math.inf
        for _ in range(MAX_CNAME_CHAIN + 1):
            rrset = response.get_rrset(response.answer, target, dns.rdataclass.IN, rdtype)
            if rrset is not None:
                ttl = min(ttl, rrset.ttl)
                break
            alias = response.get_rrset(
                response.answer, target, dns.rdataclass.IN, dns.rdatatype.CNAME
            )
            if alias is None:
                raise _Absent(self._negative(_soa_ttl(response)))
            ttl = min(ttl, alias.ttl)
            target = alias[0].target
        else:
            raise KeyLookupFailed(f"the CNAME chain of {name} is longer than {MAX_CNAME_CHAIN}")
        if self.settings.require_dnssec and not response.flags & dns.flags.AD:
            log.warning(
                "DNS: refused the answer for %s %s: it is not DNSSEC-validated (the resolver "
                "did not set the AD bit), and unsigned keys or endpoints must not be relied "
                "on; the peer's zone must be signed, or the peer configured in [[peers]]",
                _shown(name),
                dns.rdatatype.to_text(rdtype),
            )
            raise _Absent(self._negative(ttl))
        return rrset, ttl

    def _negative(self, ttl: float) -> float:
        return min(ttl, self.settings.negative_ttl_seconds)

    async def _query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        """The resolver's answer (NOERROR or NXDOMAIN); `KeyLookupFailed` when no configured
        resolver gives one: timeouts, SERVFAIL (a bogus signature), REFUSED."""
        request = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        # RFC 6840, 5.7: a query with AD set asks the resolver to say whether it validated.
        request.flags |= dns.flags.AD
        problems = []
        async with self._queries:
            for host, port in self.settings.resolvers:
                try:
                    response, _ = await dns.asyncquery.udp_with_fallback(
                        request, host, timeout=self.settings.timeout_seconds, port=port
                    )
                except dns.exception.Timeout:
                    problems.append(f"{host}:{port} timed out")
                    continue
                except (OSError, dns.exception.DNSException) as exc:
                    problems.append(f"{host}:{port}: {exc}")
                    continue
                rcode = response.rcode()
                if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    return response
                problems.append(f"{host}:{port} answered {dns.rcode.to_text(rcode)}")
        detail = f"DNS lookup of {name} {dns.rdatatype.to_text(rdtype)} failed: " + "; ".join(
            problems
        )
        log.warning("%s (temporary: to be asked again)", detail)
        raise KeyLookupFailed(detail)


def _soa_ttl(response: dns.message.Message) -> float:
    """The negative-caching TTL of an answer without data (RFC 2308: the SOA's own TTL, at
    most its MINIMUM field); 0 without an SOA."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


def _shown(name: dns.name.Name) -> str:
    return printable(name.to_text(), 300)
