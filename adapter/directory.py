"""Who is who: the endpoint and public keys of each peer.

The spec allows two ways to learn them (message-transport-mechanism.md, "Service
discovery"): a single authority's address book, or DNS with DNSSEC. `StaticDirectory` is the
address book, read from the configuration. A directory that must ask the network raises
`KeyLookupFailed` for a temporary failure, which the endpoint answers with 419 so that the
sender retries later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .uftp.messages import Role


@dataclass(frozen=True, slots=True)
class Peer:
    domain: str
    role: Role
    endpoint: str
    #: Current public signing keys: one, or two while the peer rotates its key.
    signing_keys: tuple[bytes, ...]
    barred: bool = False


class Directory(Protocol):
    async def lookup(self, domain: str, role: Role) -> Peer | None:
        """The peer, None when unknown; raises `KeyLookupFailed` when it cannot tell now."""

    def roles_of(self, domain: str) -> frozenset[Role]:
        """The roles `domain` is known in (to address a message without naming a role)."""


class StaticDirectory:
    """Peers known from configuration."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self._peers = {(peer.domain, peer.role): peer for peer in peers}

    async def lookup(self, domain: str, role: Role) -> Peer | None:
        return self._peers.get((domain, role))

    def roles_of(self, domain: str) -> frozenset[Role]:
        return frozenset(role for (name, role) in self._peers if name == domain)

    def add(self, peer: Peer) -> None:
        """Add or replace a peer (e.g. after a key rotation was announced)."""
        self._peers[(peer.domain, peer.role)] = peer
