"""OAuth2 client credentials (RFC 6749, section 4.4): the bearer token we send to a peer or
hub that asks for one.

The UFTP specification authenticates messages by their signature alone; a hub may put an
authorization server in front of its participants' endpoints, and the spec's status table
leaves room for it: 401 is permanent "unless private arrangements between sender and
recipient exist" (message-transport-mechanism.md, "Error handling"). A token is such an
arrangement, so a 401 from a peer we sent a token to is worth one fresh token and one retry
(`adapter.client`), and no more.

A `TokenSource` fetches a token from the token URL (form-encoded, the client authenticated
with HTTP Basic or in the body, RFC 6749 section 2.3.1), keeps it until shortly before it
expires, and lets one fetch run at a time: senders that need a token while one is being
fetched wait for that one. `Credentials` says which source, if any, goes with a POST to an
endpoint: per peer ([[peers]] oauth2) or per hub (the address book's).

Neither the client secret nor a token is ever logged or shown in a repr or an error.
"""

from __future__ import annotations

import json
import logging
import time
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from ssl import SSLContext
from typing import Any
from urllib.parse import quote

from .fetch import FetchFailed, SingleFlight, fetch
from .printable import printable
from .uftp.errors import AdapterError
from .uftp.retry import Outcome

__all__ = [
    "ClientAuth",
    "Credentials",
    "InboundOAuth2Settings",
    "OAuth2Settings",
    "TokenFailed",
    "TokenSource",
]

log = logging.getLogger(__name__)

#: A token endpoint's answer is a small JSON object; anything longer is not read.
MAX_TOKEN_RESPONSE = 64 * 1024
#: The token endpoint's error codes that a retry cannot cure (RFC 6749, section 5.2): our
#: configuration is wrong (or the hub revoked our client).
_PERMANENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}
)


class ClientAuth(StrEnum):
    """How the client authenticates at the token URL (RFC 6749, section 2.3.1)."""

    #: HTTP Basic with the form-encoded client id and secret (the one servers must support).
    BASIC = "basic"
    #: client_id and client_secret in the form body.
    BODY = "body"


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """An oauth2 table ([[peers]] oauth2, [directory.address_book.oauth2])."""

    token_url: str
    client_id: str
    #: The secret itself, or (`client_secret_file`) a file holding it, read at each fetch so
    #: that a rotated secret needs no restart. Never in a repr.
    client_secret: str | None = field(default=None, repr=False)
    client_secret_file: Path | None = None
    scope: str | None = None
    client_auth: ClientAuth = ClientAuth.BASIC
    #: A token is fetched anew this long before it expires.
    refresh_margin_seconds: float = 30.0
    #: The lifetime assumed when the token response has no expires_in.
    default_lifetime_seconds: float = 300.0
    timeout_seconds: float = 10.0

    def secret(self) -> str:
        if self.client_secret_file is not None:
            return self.client_secret_file.read_text(encoding="utf-8").strip()
        return self.client_secret or ""


@dataclass(frozen=True, slots=True)
class InboundOAuth2Settings:
    """The [oauth2_inbound] table: bearer tokens our endpoint requires
    (`adapter.oauth2_inbound`, which needs PyJWT)."""

    jwks_url: str
    audience: str
    issuer: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: float = 30.0
    #: The key set is fetched again after this long, or sooner for an unknown key id.
    jwks_max_age_seconds: float = 3600.0
    refetch_interval_seconds: float = 10.0
    timeout_seconds: float = 5.0


class TokenFailed(AdapterError):
    """No token could be had. `outcome` is what it means for a delivery: TEMPORARY when the
    authorization server is down or busy, PERMANENT when it refuses our client (a
    configuration to fix, which retrying for an hour cannot)."""

    def __init__(self, detail: str, outcome: Outcome) -> None:
        super().__init__(detail)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    #: On the source's clock, less the margin: fetched anew from then on.
    renew_at: float


class TokenSource:
    """The bearer token of one client (see the module text)."""

    def __init__(
        self,
        settings: OAuth2Settings,
        *,
        ssl_context: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._ssl = ssl_context
        self._clock = clock
        self._token: _Token | None = None
        self._fetching: SingleFlight[_Token] = SingleFlight()

    def __repr__(self) -> str:
        return f"TokenSource({self.settings.token_url!r}, client_id={self.settings.client_id!r})"

    async def token(self) -> str:
        """A token that is not about to expire: the cached one, or a fresh one."""
        token = self._token
        if token is not None and token.renew_at > self._clock():
            return token.value
        return (await self._fetch_once()).value

    async def refresh(self, stale: str) -> str:
        """A token other than `stale` (which a peer refused): the one another sender fetched
        meanwhile, or a fresh one."""
        token = self._token
        if token is not None and token.value != stale and token.renew_at > self._clock():
            return token.value
        if token is not None and token.value == stale:
            self._token = None
        return (await self._fetch_once()).value

    async def _fetch_once(self) -> _Token:
        """One fetch at a time: concurrent callers share the one under way."""
        return await self._fetching.run(self._fetch)

    async def _fetch(self) -> _Token:
        settings = self.settings
        form = {"grant_type": "client_credentials"}
        if settings.scope:
            form["scope"] = settings.scope
        headers = {"Accept": "application/json"}
        try:
            secret = settings.secret()
        except OSError as exc:
            raise TokenFailed(
                f"OAuth2: cannot read the client secret file {settings.client_secret_file}: "
                f"{exc.strerror}",
                Outcome.PERMANENT,
            ) from None
        if settings.client_auth is ClientAuth.BASIC:
            # RFC 6749, 2.3.1: id and secret form-encoded before they are Basic-encoded.
            pair = f"{quote(settings.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = settings.client_id
            form["client_secret"] = secret
        started = self._clock()
        where = settings.token_url
        try:
            fetched = await fetch(
                "POST",
                where,
                max_bytes=MAX_TOKEN_RESPONSE,
                timeout_seconds=settings.timeout_seconds,
                ssl_context=self._ssl,
                headers=headers,
                form=form,
            )
        except FetchFailed as exc:
            # A certificate that does not verify is our trust setting, as for a peer
            # (`adapter.client`): retrying cannot fix it.
            raise TokenFailed(
                f"OAuth2: the token URL {where}: {exc}"
                + ("; a TLS configuration error, not retried" if exc.certificate else ""),
                Outcome.PERMANENT if exc.certificate else Outcome.TEMPORARY,
            ) from None
        status, raw = fetched.status, fetched.body
        body = _json_object(raw)
        if status != 200:
            error = body.get("error") if body is not None else None
            code = error if isinstance(error, str) else ""
            outcome = (
                Outcome.PERMANENT
                if code in _PERMANENT_ERRORS or (status == 401 and not code)
                else Outcome.TEMPORARY
            )
            raise TokenFailed(
                f"OAuth2: the token URL {where} refused client {settings.client_id!r}: HTTP "
                f"{status} {printable(code, 60)}".rstrip(),
                outcome,
            )
        token = body.get("access_token") if body is not None else None
        kind = body.get("token_type") if body is not None else None
        if not isinstance(token, str) or not token or not token.isascii() or " " in token:
            raise TokenFailed(
                f"OAuth2: the token response of {where} has no usable access_token",
                Outcome.TEMPORARY,
            )
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise TokenFailed(
                f"OAuth2: {where} issued a token of type {printable(str(kind), 40)}, not Bearer",
                Outcome.PERMANENT,
            )
        assert body is not None
        lifetime = body.get("expires_in", settings.default_lifetime_seconds)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = settings.default_lifetime_seconds
        log.info(
            "OAuth2: token for client %r from %s, valid %ds",
            settings.client_id,
            where,
            int(lifetime),
        )
        margin = min(settings.refresh_margin_seconds, float(lifetime) / 2)
        self._token = _Token(token, started + float(lifetime) - margin)
        return self._token


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


#: Which token source goes with an endpoint URL; None: none of this lookup's.
SourceFor = Callable[[str], Awaitable["TokenSource | None"]]


class Credentials:
    """Which token, if any, goes with a POST to an endpoint URL.

    Asks the configured peers' sources (exact endpoint URL, replaced when the configuration
    is read again) and then each other lookup (an address book's: the hub's source for the
    endpoints it lists)."""

    def __init__(
        self, lookups: Sequence[SourceFor] = (), *, ssl_context: SSLContext | None = None
    ) -> None:
        #: What the token URLs' certificates are verified with ([tls] ca).
        self._ssl = ssl_context
        self._peers: dict[str, TokenSource] = {}
        self._sources: dict[OAuth2Settings, TokenSource] = {}
        self._lookups = tuple(lookups)

    def __bool__(self) -> bool:
        return bool(self._peers or self._lookups)

    async def for_url(self, url: str) -> TokenSource | None:
        source = self._peers.get(url)
        if source is not None:
            return source
        for lookup in self._lookups:
            source = await lookup(url)
            if source is not None:
                return source
        return None

    def set_peers(self, peers: Iterable[tuple[str, OAuth2Settings]]) -> None:
        """Use these (endpoint, settings) from now on; a source whose settings did not
        change is kept, with its cached token."""
        sources: dict[OAuth2Settings, TokenSource] = {}
        by_endpoint: dict[str, TokenSource] = {}
        for endpoint, settings in peers:
            source = sources.get(settings) or self._sources.get(settings)
            if source is None:
                source = TokenSource(settings, ssl_context=self._ssl)
            sources[settings] = by_endpoint[endpoint] = source
        self._sources, self._peers = sources, by_endpoint
