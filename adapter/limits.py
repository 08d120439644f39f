"""A cap on concurrent work per key (per sender, per peer server), beside a global one.

A global semaphore alone lets one peer take every slot: a noisy sender fills the handler slots,
a peer that hangs fills the delivery slots, and everybody else waits behind it. So each unit of
work first takes a slot of its own key, and only then a global one. That order matters: work
that waits for its key's slot holds no global slot while it waits.

Keys are peers we verified or configured, so there are few, but a semaphore is still only
kept while someone holds or awaits it: nothing grows with the keys seen over time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

_UNLIMITED: AbstractAsyncContextManager[None] = contextlib.nullcontext()


class PerKeyLimit:
    """At most `limit` holders per key at once; None means no cap (and no cost)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"a per-key limit must be at least 1, got {limit}")
        self._limit = limit
        #: key -> (its semaphore, how many hold or await it)
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """`async with limit.hold(key):` runs the block once `key` has a free slot."""
        if self._limit is None:
            return _UNLIMITED
        return self._hold(key, self._limit)

    @contextlib.asynccontextmanager
    async def _hold(self, key: str, limit: int) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(key) or (asyncio.Semaphore(limit), 0)
        self._slots[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[key]
            if users == 1:
                del self._slots[key]
            else:
                self._slots[key] = (semaphore, users - 1)
