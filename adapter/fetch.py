"""Small HTTP fetches from a server that is not ours to trust for size or speed: an OAuth2
token URL, an issuer's JWKS, a hub's address book.

Each of these is a peer-controlled resource, so every fetch is bounded in time
(`timeout_seconds`, the whole exchange) and in bytes (`max_bytes`; one byte more is read to
tell a body at the cap from one over it), follows no redirect, keeps no cookie, and verifies
TLS with the configured trust ([tls] ca) or the system's. What went wrong is one
`FetchFailed`, whose text names no header or body (a token or secret may be in either);
`certificate` tells a trust setting of ours that retrying cannot fix.

`SingleFlight` lets one fetch run at a time: callers that need the result while one is under
way await that one, so that a burst of requests (or a peer's burst of unknown key ids)
costs the server one fetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import Generic, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from .uftp.errors import AdapterError

__all__ = ["FetchFailed", "Fetched", "SingleFlight", "fetch"]

T = TypeVar("T")


class FetchFailed(AdapterError):
    """The server did not answer in time, could not be reached, or answered more than
    `max_bytes`. `certificate`: its TLS certificate does not verify with our trust setting
    (a configuration to fix, not a server to wait for)."""

    def __init__(self, detail: str, *, certificate: bool = False) -> None:
        super().__init__(detail)
        self.certificate = certificate


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: CIMultiDictProxy[str]
    #: At most `max_bytes`.
    body: bytes


async def fetch(
    method: str,
    url: str,
    *,
    max_bytes: int,
    timeout_seconds: float,
    ssl_context: SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
) -> Fetched:
    """One bounded request (see the module text); raises `FetchFailed`."""
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as session,
            session.request(
                method,
                url,
                data=form,
                headers=headers,
                allow_redirects=False,
                ssl=ssl_context or True,
            ) as response,
        ):
            body = await response.content.read(max_bytes + 1)
            status, answered = response.status, response.headers
    except TimeoutError:
        raise FetchFailed("timed out") from None
    except aiohttp.ClientConnectorCertificateError:
        raise FetchFailed(
            "our trust setting ([tls] ca) does not verify the certificate it shows",
            certificate=True,
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise FetchFailed(f"unreachable: {type(exc).__name__}") from None
    if len(body) > max_bytes:
        raise FetchFailed(f"the answer is over {max_bytes} bytes")
    return Fetched(status, answered, body)


class SingleFlight(Generic[T]):
    """At most one run of a coroutine at a time (see the module text). A caller cancelled
    while waiting leaves the run going for the others."""

    def __init__(self) -> None:
        self._running: asyncio.Task[T] | None = None

    @property
    def running(self) -> bool:
        return self._running is not None

    async def run(self, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the run under way, or of a new one made by `start`."""
        if self._running is None:
            self._running = asyncio.ensure_future(start())
            self._running.add_done_callback(self._done)
        return await asyncio.shield(self._running)

    def _done(self, task: asyncio.Task[T]) -> None:
        self._running = None
        if not task.cancelled():
            task.exception()  # retrieved: the waiters, if any, have it
