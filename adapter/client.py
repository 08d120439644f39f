"""POST one sealed envelope to a peer and say what the answer means for delivery.

The classification is the spec's (message-transport-mechanism.md, "Transmission"), and the
core's (`adapter.uftp.retry.classify`): 200 is final success; server errors, unknown statuses,
timeouts and resets are temporary; a non-ambiguous 4xx is final failure. Redirects are
honoured for load balancing, keeping method and body, a bounded number of times.

A peer that asks for an OAuth2 bearer token (`adapter.oauth2`) gets one with each POST; its
401 is answered with one fresh token and one retry of the POST, and a 401 to the fresh token
fails the delivery for good, saying so.

A peer's TLS certificate that our trust settings do not verify is none of these: it is a
configuration error (ours, or a certificate the peer must replace), which retrying for an hour
cannot fix and which must not read as the peer's outage. It fails the delivery at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from .oauth2 import Credentials, TokenFailed
from .printable import printable
from .settings import Delivery

# The classification lived here before the core had `retry`; importable from here still.
from .uftp.retry import TEMPORARY_4XX as TEMPORARY_4XX
from .uftp.retry import Outcome as Outcome
from .uftp.retry import classify

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    #: The final HTTP status, or None when no answer came.
    status: int | None
    #: What the peer said (first line of its body) or what went wrong on the way.
    detail: str


def _first_line(text: str) -> str:
    """The first line of a peer's answer, escaped: it reaches our logs, the store and the
    operator's terminal as the reason of a failed attempt."""
    lines = text.strip().splitlines()
    return printable(lines[0][:200]) if lines else ""


def _unreachable(exc: aiohttp.ClientConnectorError) -> str:
    """Why no connection could be made, in a few words: "connection refused (host:port)"."""
    error = exc.os_error
    if isinstance(error, socket.gaierror):
        reason = f"cannot resolve the host name: {error.strerror}"
    elif error.errno:
        reason = os.strerror(error.errno).lower()
    else:
        reason = str(error) or type(error).__name__
    return f"{reason} ({exc.host}:{exc.port})"


def _unverified(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """What an operator must fix when a peer's certificate does not verify."""
    error = exc.certificate_error
    reason = getattr(error, "verify_message", None) or str(error)
    return (
        f"TLS configuration error, not retried: our trust setting ([tls] ca; the system's "
        f"trust store when it is not set) does not verify the certificate of "
        f"{exc.host}:{exc.port}: {reason}"
    )


class Client:
    """One aiohttp session for every delivery of a participant (connections are reused)."""

    def __init__(
        self,
        delivery: Delivery | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connection_limit: int = 100,
        credentials: Credentials | None = None,
    ) -> None:
        """Attempts as `delivery` says (its request timeout and redirects)."""
        delivery = delivery or Delivery()
        self._timeout = aiohttp.ClientTimeout(total=delivery.request_timeout_seconds)
        self._max_redirects = delivery.max_redirects
        self._ssl = ssl_context
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        #: The bearer tokens of the peers that ask for one (None: no peer does).
        self.credentials = credentials

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl or True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"Content-Type": CONTENT_TYPE},
                # The body is signed XML; nothing to gain from aiohttp's cookie jar.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, envelope: bytes) -> DeliveryResult:
        """POST `envelope` to `url`, following redirects; never raises for network trouble.

        With a bearer token when `credentials` has one for `url`: a 401 then gets one fresh
        token and one retry (the spec's 401 is permanent "unless private arrangements between
        sender and recipient exist", message-transport-mechanism.md, "Error handling")."""
        source = await self.credentials.for_url(url) if self.credentials else None
        if source is None:
            return await self._post(url, envelope, None)
        try:
            token = await source.token()
        except TokenFailed as exc:
            return DeliveryResult(exc.outcome, None, str(exc))
        result = await self._post(url, envelope, token)
        if result.status != 401:
            return result
        try:
            token = await source.refresh(token)
        except TokenFailed as exc:
            return DeliveryResult(exc.outcome, 401, f"{result.detail}; {exc}")
        retried = await self._post(url, envelope, token)
        if retried.status == 401:
            return DeliveryResult(
                Outcome.PERMANENT,
                401,
                f"{retried.detail} (refused with a freshly fetched OAuth2 token too: the peer "
                f"does not accept client {source.settings.client_id!r}, or our signature)",
            )
        return retried

    async def _post(self, url: str, envelope: bytes, token: str | None) -> DeliveryResult:
        if self._session is None:
            await self.start()
        assert self._session is not None
        origin = urlsplit(url)[:2]
        for _ in range(self._max_redirects + 1):
            # The token goes to the peer's origin only, not wherever it redirects to.
            headers = (
                {"Authorization": f"Bearer {token}"}
                if token is not None and urlsplit(url)[:2] == origin
                else None
            )
            try:
                async with self._session.post(
                    url, data=envelope, allow_redirects=False, headers=headers
                ) as response:
                    status = response.status
                    location = response.headers.get("Location")
                    text = (await response.content.read(1024)).decode("utf-8", "replace")
            except TimeoutError:
                return DeliveryResult(Outcome.TEMPORARY, None, "timed out")
            except aiohttp.ClientConnectorCertificateError as exc:
                return DeliveryResult(Outcome.PERMANENT, None, _unverified(exc))
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc, aiohttp.ClientSSLError):  # the handshake failed
                    return DeliveryResult(Outcome.TEMPORARY, None, f"{type(exc).__name__}: {exc}")
                return DeliveryResult(Outcome.TEMPORARY, None, _unreachable(exc))
            except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                if url.startswith("https:") and isinstance(exc, aiohttp.ClientOSError):
                    # With TLS 1.3 a server that wants a client certificate (or distrusts
                    # ours) just resets the connection; say what that usually means.
                    detail += " (over TLS this often means the peer refused our client certificate)"
                return DeliveryResult(Outcome.TEMPORARY, None, detail)
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                continue
            return DeliveryResult(classify(status), status, _first_line(text))
        return DeliveryResult(Outcome.TEMPORARY, None, f"more than {self._max_redirects} redirects")
