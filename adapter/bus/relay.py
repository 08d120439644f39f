"""The relay: publishes the bus outbox of the store, with confirms, and marks it published.

Events are written to the store in the transaction of the state they report (the
transactional outbox); the relay is the only thing that sends them to the broker. So the
store is the buffer: while the broker is away, events wait there, the UFTP side goes on
answering its peers as ever, and the relay catches up when the broker is back.

Guarantees and how:

* At least once: an event is marked published only after the broker confirmed it; a crash
  between the confirm and the mark publishes it again. Its id stays the same, so consumers
  drop the second copy. Marks are written in batches (every `mark_seconds`, or once
  `batch` events wait for one, and when the relay stops), not one write per round: each
  write is a commit of its own. Until its mark is written, a confirmed event is known here
  and not published again.
* In order per conversation: each round reads the oldest unpublished events (store order)
  and publishes those of one conversation (``correlationid``) one after the other, each
  after the previous one's confirm; conversations go concurrently, which is what keeps the
  broker's round trip from capping the rate. An event that fails stops its conversation for
  this round, so nothing of it overtakes the event.
* One relay per store: the relay holds the store's relay lock (a PostgreSQL advisory lock
  on a connection of its own); the relays of other processes on the same store wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime

from adapter.bus.events import CloudEvent
from adapter.bus.port import Bus, BusError, Unroutable
from adapter.store.base import Store, StoredEvent

__all__ = ["Relay"]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Relay:
    """Publishes one store's events to one bus until stopped (run it as a task)."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        *,
        batch: int = 500,
        poll_seconds: float = 1.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 15.0,
        linger_seconds: float = 0.005,
        mark_seconds: float = 0.05,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._linger = linger_seconds
        self._mark_every = mark_seconds
        #: Events the broker confirmed whose mark is not yet written, by seq.
        self._confirmed: set[int] = set()
        self._marking: asyncio.TimerHandle | None = None
        self._marks: set[asyncio.Task[None]] = set()
        self._bus = bus
        self._batch = batch
        #: How often to look for events other processes wrote (ours wake the relay at once).
        self._poll = poll_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self.published = 0
        self._failures = 0
        #: What the relay does now, for `/health`.
        self.state = "starting"

    def wake(self) -> None:
        """Events were committed: look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Relay while holding the store's relay lock; wait for it while another holds it."""
        while True:
            try:
                lock = await self._store.try_relay_lock()
            except Exception as exc:
                self.state = f"waiting for the store: {exc}"
                log.warning("bus relay: cannot take the relay lock: %s", exc)
                await self._sleep(self._backoff_max)
                continue
            if lock is None:
                self.state = "standby: another process relays this store"
                await self._sleep(self._poll * 5)
                continue
            try:
                while lock.held:
                    await self._round()
            finally:
                await self._mark_now()  # what was confirmed, so that it is not sent again
                await lock.release()

    async def _round(self) -> None:
        self._wake.clear()  # before reading: a commit from now on wakes the next wait
        if len(self._confirmed) >= self._batch:
            await self._mark_now()  # the marks waiting are bounded by one batch
        try:
            # The store leaves out what was published and waits for its mark.
            batch = await self._store.unpublished_events(self._batch, skip=tuple(self._confirmed))
        except Exception as exc:
            self.state = f"waiting for the store: {exc}"
            log.warning("bus relay: cannot read the outbox: %s", exc)
            await self._sleep(self._backoff_max)
            return
        if not batch:
            self.state = "idle"
            await self._sleep(self._poll, wakeable=True)
            # Woken by a commit: let the commits of the next moments join the same round, so
            # that under load a round carries many events, not one (a read, a publish window
            # and a write per round, whatever its size).
            await asyncio.sleep(self._linger)
            return
        self.state = f"publishing {len(batch)} events"
        published, error = await self._publish(batch)
        if published:
            self.published += len(published)
            self._confirmed.update(published)
            if self._marking is None:
                loop = asyncio.get_running_loop()
                self._marking = loop.call_later(self._mark_every, self._mark_later)
        if error is None:
            self._failures = 0
            return
        # The next round reads the outbox again: conversations that did not fail go on with
        # their newer events; a failed one starts again from the event that failed.
        self._failures += 1
        delay = self._delay(self._failures)
        level = logging.ERROR if isinstance(error, Unroutable) else logging.WARNING
        log.log(
            level,
            "bus relay: %s; %d events wait, retrying in %.1f s",
            error,
            len(batch) - len(published),
            delay,
        )
        self.state = f"waiting for the broker: {error}"
        await self._sleep(delay)

    async def _publish(self, batch: list[StoredEvent]) -> tuple[list[int], BusError | None]:
        """Publish `batch`, each conversation's events in order; the seqs confirmed and the
        first error met, if any."""
        chains: dict[str, list[StoredEvent]] = {}
        for stored in batch:
            conversation = stored.event.attributes.get("correlationid") or f"-{stored.seq}"
            chains.setdefault(conversation, []).append(stored)
        confirmed: list[int] = []
        errors: list[BusError] = []

        async def chain(events: list[StoredEvent]) -> None:
            for stored in events:
                record = stored.event
                try:
                    event = CloudEvent.from_attributes(record.attributes, record.data)
                    await self._bus.publish(event, record.route)
                except BusError as exc:
                    errors.append(exc)
                    return
                confirmed.append(stored.seq)

        await asyncio.gather(*(chain(events) for events in chains.values()))
        return sorted(confirmed), (errors[0] if errors else None)

    def _mark_later(self) -> None:
        self._marking = None
        task = asyncio.get_running_loop().create_task(self._mark_now())
        self._marks.add(task)
        task.add_done_callback(self._marks.discard)

    async def _mark_now(self) -> None:
        """Write the marks of the events confirmed so far, in one write. One that cannot be
        written stays known here (the next round does not publish it again) and is tried
        again; should the process end first, the event is published again: a duplicate,
        which its id lets consumers drop, never a loss."""
        if self._marking is not None:
            self._marking.cancel()
            self._marking = None
        seqs = sorted(self._confirmed)
        if not seqs:
            return
        try:
            await self._store.mark_published(seqs, self._clock())
        except Exception as exc:
            log.warning("bus relay: cannot mark %d events published: %s", len(seqs), exc)
            if self._marking is None:
                loop = asyncio.get_running_loop()
                self._marking = loop.call_later(self._backoff_max, self._mark_later)
            return
        self._confirmed.difference_update(seqs)

    def _delay(self, failures: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * 2.0 ** (failures - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _sleep(self, seconds: float, *, wakeable: bool = False) -> None:
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
