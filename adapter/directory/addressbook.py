"""Peers from a hub's address book: its participant list, fetched over HTTPS as JSON with the
hub's bearer token (`adapter.oauth2`).

The spec allows "a single authority's address book" beside DNS (message-transport-mechanism.md,
"Service discovery"). What a hub's list looks like is the hub's to say; the document format
is one class behind `AddressBookFormat`, and `UftpJson` reads this project's documented
shape (README, "Peers from a hub's address book"):

    {"participants": [
        {"domain": "cro.example.com", "role": "CRO",
         "publicKeys": ["cs1.<base64>", "<base64 Ed25519 public key>"],
         "endpoint": "https://cro.example.com/shapeshifter/api/v3/message"}
    ]}

A malformed entry is skipped with a warning, not the whole list. The list is bounded in
bytes and entries (the hub is a peer too). It is used for the configured interval or the
answer's Cache-Control max-age, then fetched again when a lookup needs it; when the hub
cannot be reached the list in hand is kept (stale, and logged) and the hub asked again
later. Without any list yet, a lookup raises `KeyLookupFailed`: the endpoint answers 419 and
the sender retries, rather than being judged unknown.
"""

from __future__ import annotations

import json
import logging
import re
import time
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Protocol

from ..fetch import FetchFailed, SingleFlight, fetch
from ..oauth2 import TokenFailed, TokenSource
from ..printable import printable
from ..uftp.envelope import CS1_PREFIX, parse_cs1
from ..uftp.errors import AdapterError, KeyLookupFailed
from ..uftp.messages import Role
from . import Directory, Peer
from .settings import AddressBookSettings

__all__ = [
    "AddressBookDirectory",
    "AddressBookFormat",
    "AddressBookInvalid",
    "Entry",
    "UftpJson",
]

log = logging.getLogger(__name__)

#: Keys read from one entry: the spec publishes up to two (old and new during a rotation).
MAX_KEYS = 4
_DOMAIN = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}")
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])no-(?:cache|store)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Entry:
    """One participant of the list."""

    domain: str
    role: Role
    signing_keys: tuple[bytes, ...]
    #: None: the configured template or DNS says.
    endpoint: str | None = None


class AddressBookInvalid(AdapterError):
    """The document as a whole is unusable (not JSON, not the expected shape)."""


class AddressBookFormat(Protocol):
    """A hub's document format: one class per format."""

    def entries(self, document: bytes, max_entries: int) -> list[Entry]:
        """The well-formed entries of `document` (at most `max_entries`), a malformed entry
        skipped with a warning; raises `AddressBookInvalid` when the whole is unusable."""


class UftpJson:
    """The project's address-book JSON (see the module text and the README)."""

    def entries(self, document: bytes, max_entries: int) -> list[Entry]:
        try:
            data = json.loads(document)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AddressBookInvalid(f"not JSON: {printable(str(exc), 120)}") from None
        listed = data.get("participants") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise AddressBookInvalid('expected an object with a "participants" array')
        if len(listed) > max_entries:
            log.warning(
                "address book: %d entries listed; the first %d are used", len(listed), max_entries
            )
        found: list[Entry] = []
        for index, item in enumerate(listed[:max_entries]):
            try:
                found.append(self._entry(item))
            except ValueError as exc:
                log.warning("address book: entry %d skipped: %s", index, exc)
        return found

    @staticmethod
    def _entry(item: object) -> Entry:
        if not isinstance(item, dict):
            raise ValueError("not an object")
        domain = item.get("domain")
        if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain) or len(domain) > 253:
            raise ValueError(f"domain {printable(repr(domain), 80)} is not an internet domain")
        role = item.get("role")
        if role not in tuple(Role):
            raise ValueError(
                f"{domain}: role {printable(repr(role), 40)} is not one of AGR, CRO, DSO"
            )
        keys = item.get("publicKeys")
        if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
            raise ValueError(f"{domain}: publicKeys must list 1 to {MAX_KEYS} keys")
        signing: list[bytes] = []
        for text in keys:
            key = _signing_key(text)
            if key not in signing:
                signing.append(key)
        endpoint = item.get("endpoint")
        if endpoint is not None and not (
            isinstance(endpoint, str)
            and endpoint.startswith(("https://", "http://"))
            and len(endpoint) <= 2048
            and endpoint.isprintable()
        ):
            raise ValueError(f"{domain}: endpoint is not an http(s) URL")
        return Entry(domain, Role(role), tuple(signing), endpoint)


def _signing_key(text: object) -> bytes:
    """An Ed25519 public signing key: a cs1 string, or the 32 bytes in plain base64."""
    if not isinstance(text, str) or len(text) > 200:
        raise ValueError("a public key is a cs1 string or base64")
    if text.startswith(CS1_PREFIX):
        return parse_cs1(text).signing
    try:
        raw = b64decode(text, validate=True)
    except ValueError:
        raise ValueError("a public key is neither a cs1 string nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key holds 32 bytes, this one {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class _Book:
    entries: Mapping[tuple[str, Role], Entry]
    #: On the directory's clock: fetched again when a lookup comes after this.
    fresh_until: float
    fetched_at: float = field(default=0.0)


class AddressBookDirectory:
    """A directory source that reads a hub's address book (see the module text)."""

    def __init__(
        self,
        settings: AddressBookSettings,
        *,
        token: TokenSource | None = None,
        endpoints: Directory | None = None,
        document_format: AddressBookFormat | None = None,
        ssl_context: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        #: The hub's token: for the list, and for the POSTs to the peers it lists.
        self.token = token
        self._endpoints = endpoints
        self._format = document_format or UftpJson()
        self._ssl = ssl_context
        self._clock = clock
        self._book: _Book | None = None
        self._retry_at = 0.0
        self._fetching: SingleFlight[None] = SingleFlight()
        #: The endpoint URLs of the peers it lists (those DNS named included).
        self._known_endpoints: set[str] = set()

    # -- the Directory protocol -------------------------------------------------------------

    async def lookup(self, domain: str, role: Role) -> Peer | None:
        book = await self._current()
        entry = book.entries.get((domain, role))
        return None if entry is None else await self._peer(entry)

    def roles_of(self, domain: str) -> frozenset[Role]:
        book = self._book
        if book is None:
            return frozenset()
        return frozenset(role for (name, role) in book.entries if name == domain)

    async def refresh(self, domain: str, role: Role) -> Peer | None:
        """The list fetched again (a signature failed: the peer may have rotated its key),
        at most once per `min_refresh_seconds`."""
        book = self._book
        now = self._clock()
        if book is not None and now - book.fetched_at < self.settings.min_refresh_seconds:
            return None
        try:
            await self._fetch_once()
        except KeyLookupFailed:
            return None
        return await self.lookup(domain, role)

    # -- credentials --------------------------------------------------------------------------

    async def token_for(self, url: str) -> TokenSource | None:
        """The hub's token source for a POST to an endpoint of a peer it lists. The list is
        read first if it is not in hand (a delivery resumed after a restart comes before any
        lookup); a list that cannot be read now leaves the POST without a token."""
        if self.token is None:
            return None
        if self._book is None:
            try:
                await self._current()
            except KeyLookupFailed:
                return None
        return self.token if url in self._known_endpoints else None

    # -- the list -----------------------------------------------------------------------------

    async def _current(self) -> _Book:
        book = self._book
        now = self._clock()
        if book is not None and (book.fresh_until > now or self._retry_at > now):
            return book
        try:
            await self._fetch_once()
        except KeyLookupFailed:
            if book is None:
                raise
            log.warning(
                "address book: %s unreachable: using the list fetched %ds ago (stale)",
                self.settings.url,
                int(now - book.fetched_at),
            )
            return book
        assert self._book is not None
        return self._book

    async def _fetch_once(self) -> None:
        await self._fetching.run(self._fetch)

    async def _fetch(self) -> None:
        settings = self.settings
        try:
            document, max_age = await self._download()
            entries = self._format.entries(document, settings.max_entries)
        except (KeyLookupFailed, AddressBookInvalid, TokenFailed) as exc:
            self._retry_at = self._clock() + settings.retry_seconds
            log.warning("address book: %s not read: %s", settings.url, exc)
            raise KeyLookupFailed(f"the address book cannot be read now: {exc}") from None
        book: dict[tuple[str, Role], Entry] = {}
        for entry in entries:
            key = (entry.domain, entry.role)
            if key in book:
                log.warning("address book: %s (%s) listed twice; the first is used", *key)
                continue
            book[key] = entry
        now = self._clock()
        lifetime = settings.refresh_seconds if max_age is None else max_age
        lifetime = max(lifetime, settings.min_refresh_seconds)
        self._book = _Book(book, now + lifetime, now)
        self._known_endpoints = {e.endpoint for e in book.values() if e.endpoint is not None} | {
            self._template(e) for e in book.values() if e.endpoint is None and settings.endpoint
        }
        self._retry_at = 0.0
        log.info("address book: %d participants from %s", len(book), settings.url)

    async def _download(self) -> tuple[bytes, float | None]:
        """The document and its Cache-Control max-age; one fresh token and one retry on 401."""
        token = await self.token.token() if self.token is not None else None
        status, document, max_age = await self._get(token)
        if status == 401 and self.token is not None and token is not None:
            token = await self.token.refresh(token)
            status, document, max_age = await self._get(token)
        if status != 200:
            raise KeyLookupFailed(f"HTTP {status}")
        return document, max_age

    async def _get(self, token: str | None) -> tuple[int, bytes, float | None]:
        settings = self.settings
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            fetched = await fetch(
                "GET",
                settings.url,
                max_bytes=settings.max_bytes,
                timeout_seconds=settings.timeout_seconds,
                ssl_context=self._ssl,
                headers=headers,
            )
        except FetchFailed as exc:
            raise KeyLookupFailed(str(exc)) from None
        status, document = fetched.status, fetched.body
        cache_control = fetched.headers.get("Cache-Control", "")
        found = _MAX_AGE.search(cache_control)
        if found:
            return status, document, float(found.group(1))
        if _NO_CACHE.search(cache_control):
            return status, document, 0.0  # as often as `min_refresh_seconds` allows
        return status, document, None

    async def _peer(self, entry: Entry) -> Peer | None:
        endpoint = entry.endpoint
        if endpoint is None and self.settings.endpoint:
            endpoint = self._template(entry)
        if endpoint is None and self._endpoints is not None:
            named = await self._endpoints.lookup(entry.domain, entry.role)
            if named is not None:
                endpoint = named.endpoint
                self._known_endpoints.add(endpoint)
        if endpoint is None:
            log.warning(
                "address book: %s (%s) has no endpoint, and none is configured or in DNS",
                entry.domain,
                entry.role,
            )
            return None
        return Peer(entry.domain, entry.role, endpoint, entry.signing_keys)

    def _template(self, entry: Entry) -> str:
        assert self.settings.endpoint is not None
        return self.settings.endpoint.format(domain=entry.domain, role=entry.role.value.lower())
