"""Who is who: the endpoint and public keys of each peer.

The spec allows two ways to learn them (message-transport-mechanism.md, "Service
discovery"): a single authority's address book, or DNS with DNSSEC. `StaticDirectory` is the
address book read from the configuration; `adapter.directory.dns` asks DNS; a
`chain.DirectoryChain` asks its sources in the configured order. A directory that must ask the
network raises `KeyLookupFailed` for a temporary failure, which the endpoint answers with 419
so that the sender retries later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..uftp.messages import Role

__all__ = ["Directory", "Peer", "StaticDirectory"]


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
        """The roles `domain` is known in (to address a message without naming a role).

        A source that asks the network knows only the roles it was asked about already."""

    async def refresh(self, domain: str, role: Role) -> Peer | None:
        """The peer as its source says now, bypassing any cache; None when nothing may have
        changed since `lookup` (a static source). Asked once when a signature fails with the
        keys `lookup` gave, before answering 401: the peer may have rotated its key."""


class StaticDirectory:
    """Peers known from configuration; `replace` swaps them all (the config re-read)."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self._peers = {(peer.domain, peer.role): peer for peer in peers}

    async def lookup(self, domain: str, role: Role) -> Peer | None:
        return self._peers.get((domain, role))

    def roles_of(self, domain: str) -> frozenset[Role]:
        return frozenset(role for (name, role) in self._peers if name == domain)

    async def refresh(self, domain: str, role: Role) -> Peer | None:
        return None  # only `replace` changes what is known here

    def add(self, peer: Peer) -> None:
        """Add or replace a peer (e.g. after a key rotation was announced)."""
        self._peers[(peer.domain, peer.role)] = peer

    def replace(self, peers: Iterable[Peer]) -> None:
        """Know exactly `peers` from now on (a configuration read again)."""
        self._peers = {(peer.domain, peer.role): peer for peer in peers}
