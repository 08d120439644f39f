"""A client that posts what a peer would - or what no peer should: a message signed by any
key, in any role, or bytes that are no message at all - to a participant's endpoint, over
real HTTP, and reads the status it answers."""

from __future__ import annotations

from typing import Any

import aiohttp

from adapter.keys import PrivateKeys, generate
from adapter.uftp import codec, envelope
from adapter.uftp.messages import PayloadMessage, Role

__all__ = ["XML", "PeerClient", "post"]

#: The request headers of a UFTP POST (message-transport-mechanism.md).
XML = {"Content-Type": "text/xml; charset=utf-8"}


class PeerClient:
    """Plays the peer `domain` in `role`, signing with `keys` (new ones by default)."""

    def __init__(self, domain: str, role: Role, keys: PrivateKeys | None = None) -> None:
        self.domain = domain
        self.role = role
        self.keys = keys if keys is not None else generate()

    def seal(
        self,
        inner: PayloadMessage | bytes,
        *,
        domain: str | None = None,
        role: Role | None = None,
        secret: bytes | None = None,
    ) -> bytes:
        """A SignedMessage around `inner` (a message, encoded and schema-checked, or bytes as
        they are), from `domain` in `role` (ours by default), signed with `secret` (ours)."""
        data = inner if isinstance(inner, bytes) else codec.encode(inner)
        return envelope.seal(
            data, secret or self.keys.signing, domain or self.domain, role or self.role
        )

    async def post(
        self, url: str, body: Any, headers: dict[str, str] | None = None, **options: Any
    ) -> tuple[int, str]:
        """`post` from this peer (which the body alone says)."""
        return await post(url, body, headers, **options)


async def post(
    url: str, body: Any, headers: dict[str, str] | None = None, **options: Any
) -> tuple[int, str]:
    """POST `body` to `url` (with the UFTP headers unless `headers` are given); the status
    and text of the answer. `options` go to aiohttp's `post`."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers or XML, **options) as response,
    ):
        return response.status, await response.text()
