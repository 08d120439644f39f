"""What processes sharing one store coordinate besides its rows.

The rows say who works on a message: claims with leases (`adapter.store.base`). Three things
are not rows:

* a task that runs in one process per store at a time (`Singleton`): taking over the inbound
  messages a dead process left unhandled;
* the cap on deliveries in flight to one peer server (`PeerSlots`), which must hold across
  processes, or N processes would put N times the configured cap on a peer;
* the news that a response arrived (`Notifier`), for the process whose `request()` awaits
  it: the peer POSTs a response to whichever process its load balancer picks.

One process per store needs none of this across processes: `LocalCoordinator` does it in
memory, and is what a SQLite store gives (its lock file admits one process). PostgreSQL gives
`adapter.store.postgres_coordination.PostgresCoordinator`: session advisory locks and
LISTEN/NOTIFY on one connection of each process, so that whatever a process holds there is
released by the server the moment that connection ends, with its process or without.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from adapter.limits import PerKeyLimit

__all__ = [
    "Coordinator",
    "LocalCoordinator",
    "LocalSingleton",
    "Notifier",
    "PeerSlots",
    "Singleton",
]


class Notifier(Protocol):
    """Short messages to every process of a store (this one included)."""

    async def notify(self, payload: str) -> None:
        """Send `payload` (at most a few hundred bytes) to every subscriber of the store."""

    def subscribe(self, on_payload: Callable[[str], None], on_gap: Callable[[], None]) -> None:
        """Call `on_payload` with each notification, and `on_gap` once the connection that
        receives them is back after a loss: what was sent meanwhile never arrives."""


class Singleton(Protocol):
    """A task that runs in one process per store at a time. The holder keeps it until its
    process stops or dies (or loses its connection to the store); the others ask again."""

    @property
    def held(self) -> bool:
        """Whether this process holds it now."""
        ...

    async def try_acquire(self) -> bool:
        """Take it if nobody holds it; whether this process holds it now."""
        ...


class PeerSlots(Protocol):
    """At most a fixed number of holders per key (a peer server), across the processes."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """`async with slots.hold(key):` runs the block once `key` has a free slot."""
        ...


class Coordinator(Protocol):
    #: None: one process per store, nobody else to tell.
    notifier: Notifier | None

    def singleton(self, name: str) -> Singleton: ...

    def peer_slots(self, limit: int | None) -> PeerSlots:
        """Slots of `limit` per key (None: no cap)."""
        ...

    async def start(self) -> None:
        """Connect what the coordination needs (after the store opened)."""

    async def close(self) -> None:
        """Give up everything held: singletons, slots, subscriptions."""


class LocalSingleton:
    """One process per store: this one holds every singleton."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def try_acquire(self) -> bool:
        self._held = True
        return True


class LocalCoordinator:
    """Coordination within one process, for a store that admits one process."""

    notifier: Notifier | None = None

    def singleton(self, name: str) -> Singleton:
        return LocalSingleton(name)

    def peer_slots(self, limit: int | None) -> PeerSlots:
        return PerKeyLimit(limit)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
