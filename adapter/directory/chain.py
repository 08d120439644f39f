"""Several directory sources asked in the configured order: the first that knows a peer
answers for it.

A source that cannot tell now (`KeyLookupFailed`: DNS timed out) stops the search there: a
later source must not answer for a peer an earlier one might know differently, and the
sender is told to retry (419) rather than judged with keys that may not be its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..uftp.messages import Role
from . import Directory, Peer


class DirectoryChain:
    def __init__(self, sources: Sequence[Directory]) -> None:
        if not sources:
            raise ValueError("a directory chain needs at least one source")
        self.sources = tuple(sources)

    async def lookup(self, domain: str, role: Role) -> Peer | None:
        for source in self.sources:
            peer = await source.lookup(domain, role)
            if peer is not None:
                return peer
        return None

    def roles_of(self, domain: str) -> frozenset[Role]:
        roles: frozenset[Role] = frozenset()
        for source in self.sources:
            roles |= source.roles_of(domain)
        return roles

    async def refresh(self, domain: str, role: Role) -> Peer | None:
        """Ask the source that answers for the peer (or, for an unknown one, each) again."""
        for source in self.sources:
            if await source.lookup(domain, role) is not None:
                return await source.refresh(domain, role)
        for source in self.sources:
            peer = await source.refresh(domain, role)
            if peer is not None:
                return peer
        return None
