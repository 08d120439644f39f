"""The optional check of inbound bearer tokens: a JWT access token signed by a key of the
configured JWKS URL, for our audience, from the configured issuer.

In addition to the message signature, never instead of it: a request with a valid token
still has its signature verified (`adapter.server`), and the check runs before the body is
read, so that nothing of an unauthorized request is trusted or even buffered. A missing or
invalid token is 401 with a ``WWW-Authenticate: Bearer`` challenge (RFC 6750, section 3;
the spec's status table, message-transport-mechanism.md "Error handling", gives 401 for a
request that is not authenticated). A JWKS that cannot be fetched is our trouble, not the
sender's: 503, which a sender retries.

The keys are cached; a token signed with a key id not in the cache fetches the set again,
at most once per `refetch_interval_seconds`, so that an issuer's key rotation is followed
while a sender cannot make us fetch per request. Needs PyJWT (the `oauth2` extra).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

import jwt

from .fetch import FetchFailed, SingleFlight, fetch
from .oauth2 import InboundOAuth2Settings
from .printable import printable
from .uftp.errors import TransportError

__all__ = ["BearerCheck", "BearerRefused", "InboundOAuth2Settings", "JwksUnavailable"]

log = logging.getLogger(__name__)

#: A JWT access token is a few hundred bytes to a few KB; a longer header is not decoded.
MAX_TOKEN_LENGTH = 8 * 1024
MAX_JWKS_BYTES = 256 * 1024


class BearerRefused(TransportError):
    """No acceptable bearer token: 401, permanent (a new token makes a new request)."""

    status = 401
    headers = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)


class JwksUnavailable(TransportError):
    """The issuer's keys could not be fetched: our trouble, answered 503 (temporary)."""

    status = 503
    temporary = True
    headers = (("Retry-After", "5"),)


class BearerCheck:
    """Checks the Authorization header of an inbound request (see the module text)."""

    def __init__(
        self,
        settings: InboundOAuth2Settings,
        *,
        ssl_context: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._ssl = ssl_context
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetching: SingleFlight[None] = SingleFlight()

    async def check(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims; raises `BearerRefused` or `JwksUnavailable`."""
        if not authorization:
            raise BearerRefused("a bearer token is required (Authorization: Bearer ...)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BearerRefused("the Authorization header is not a bearer token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise BearerRefused("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise BearerRefused("the bearer token is not a JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise BearerRefused("the bearer token's key id is not a string")
        key = await self._key(kid)
        if key is None:
            raise BearerRefused("the bearer token is signed with a key the issuer does not list")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(self.settings.algorithms),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            # PyJWT's messages name the claim, never the token itself.
            raise BearerRefused(
                f"the bearer token is not valid: {printable(str(exc), 120)}"
            ) from None
        return claims

    async def _key(self, kid: str | None) -> jwt.PyJWK | None:
        now = self._clock()
        stale = (
            self._fetched_at is None or now - self._fetched_at > self.settings.jwks_max_age_seconds
        )
        unknown = self._lookup(kid) is None
        may_refetch = (
            self._fetched_at is None
            or now - self._fetched_at >= self.settings.refetch_interval_seconds
        )
        if stale or (unknown and may_refetch):
            try:
                await self._fetch_once()
            except JwksUnavailable:
                if not self._keys:
                    raise
                # Keep the keys we have: the issuer's JWKS being down is no reason to refuse
                # tokens they verify.
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch_once(self) -> None:
        await self._fetching.run(self._fetch)

    async def _fetch(self) -> None:
        url = self.settings.jwks_url
        try:
            fetched = await fetch(
                "GET",
                url,
                max_bytes=MAX_JWKS_BYTES,
                timeout_seconds=self.settings.timeout_seconds,
                ssl_context=self._ssl,
            )
        except FetchFailed as exc:
            self._fetched_at = self._clock()  # not again before the refetch interval
            log.warning("OAuth2: the JWKS %s could not be fetched: %s", url, exc)
            raise JwksUnavailable("the issuer's keys cannot be fetched now, retry") from None
        status, raw = fetched.status, fetched.body
        self._fetched_at = self._clock()
        problem = None
        keys: dict[str | None, jwt.PyJWK] = {}
        if status != 200:
            problem = f"HTTP {status}"
        else:
            try:
                found = jwt.PyJWKSet.from_json(raw.decode("utf-8"))
            except (jwt.PyJWTError, ValueError, UnicodeDecodeError) as exc:
                problem = f"not a usable JWK set: {printable(str(exc), 120)}"
            else:
                keys = {key.key_id: key for key in found.keys}
        if problem is not None:
            log.warning("OAuth2: the JWKS %s was refused: %s", url, problem)
            raise JwksUnavailable("the issuer's keys cannot be fetched now, retry")
        self._keys = keys
        log.info("OAuth2: %d key(s) from the JWKS %s", len(keys), url)
