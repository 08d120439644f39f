"""The relay: publishes the bus outbox of the store, with confirms, and marks it published.

Events are written to the store in the transaction of the state they report (the
transactional outbox); the relay is the only thing that sends them to the broker. So the
store is the buffer: while the broker is away, events wait there, the UFTP side goes on
answering its peers as ever, and the relay catches up when the broker is back.

Guarantees and how:

* At least once: an event is marked published only after the broker confirmed it; a crash
  between the confirm and the mark publishes it again. Its id stays the same, so consumers
  drop the second copy. Marks are written in batches (every `mark_seconds`, or once
  `batch` events wait for one, and when the relay stops), not one write per round. Until
  its mark is written, a confirmed event is known here and not published again.
* Handed, not read back: a store whose events are all this process's (SQLite: one process
  per file) hands the relay the events of each commit, after the COMMIT, with their place in
  the store's order (`Store.listen_events`); the relay keeps them until confirmed, and reads
  the outbox only when what it holds may not be all: at start (what an earlier process left),
  after holding more than `max_held` events (a long outage: it lets go of them and reads them
  back in batches), and at each `poll_seconds` of quiet. A PostgreSQL store hands nothing (its
  other processes' events of a conversation may precede ours), so its relay reads the outbox
  each round, as any reader of a shared store must.
* In order per conversation: each round takes the oldest unpublished events (store order)
  and publishes those of one conversation (``correlationid``) one after the other, each
  after the previous one's confirm; conversations go concurrently, which is what keeps the
  broker's round trip from capping the rate. An event that fails stops its conversation for
  this round, so nothing of it overtakes the event. A read of the outbox that came back full
  (more may follow) is published alone: events held beyond it might overtake unread older
  ones of their conversation.
* One relay per store: the relay holds the store's relay lock (a PostgreSQL advisory lock
  on a connection of its own); the relays of other processes on the same store wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from adapter.bus.events import CloudEvent
from adapter.bus.port import Bus, BusError, Unroutable
from adapter.store.base import EventRecord, Store, StoredEvent

__all__ = ["Relay"]

log = logging.getLogger(__name__)


#: A timer may run this much before its time (the event loop's clock resolution and more).
_TIMER_SLACK = 0.001


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _event(record: EventRecord) -> CloudEvent:
    """The event to publish: the journal's, as the store handed it, as it is; what was
    read from the store is made again from its attributes, and checked on the way out."""
    return record.cloud_event or CloudEvent.from_attributes(record.attributes, record.data)


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
        max_held: int = 1000,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._linger = linger_seconds
        self._mark_every = mark_seconds
        #: Events the broker confirmed whose mark is not yet written, by seq.
        self._confirmed: set[int] = set()
        self._marking: asyncio.TimerHandle | None = None
        self._marks: set[asyncio.Task[None]] = set()
        #: Events committed and not yet confirmed, by seq: handed by the store, or read.
        self._held: dict[int, StoredEvent] = {}
        self._max_held = max_held
        #: `_held` may lack some unpublished event: read the outbox before publishing.
        self._stale = True
        #: Counts the times `_held` was let go of (a read under way then may have missed some).
        self._drops = 0
        self._bus = bus
        self._batch = batch
        #: How often to look for events other processes wrote (ours wake the relay at once).
        self._poll = poll_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        #: The idle relay's wait: resolved True by a commit (after the linger), False by the
        #: poll timer. None while the relay is not idle.
        self._waiter: asyncio.Future[bool] | None = None
        self._lingering: asyncio.TimerHandle | None = None
        #: The loop time of the last commit that woke the relay, and whether it came within
        #: `linger_seconds` of the one before.
        self._last_wake = -math.inf
        self._close = False
        #: One poll timer, kept across idle waits (see `_await_commit`), and the loop time
        #: at which the idle wait under way, if any, is over.
        self._poll_timer: asyncio.TimerHandle | None = None
        self._idle_until = 0.0
        self._rng = random.Random()
        self.published = 0
        self._failures = 0
        #: What the relay does now, for `/health`.
        self.state = "starting"

    def wake(self, events: Sequence[StoredEvent] | None = None) -> None:
        """Events were committed: publish them now, not at the next poll. `events`: those
        committed, when they are all the store's new ones; None: read the store."""
        if events is None:
            self._stale = True
        elif len(self._held) + len(events) > self._max_held:
            self._let_go()  # the outbox keeps them: read back in batches
        else:
            for stored in events:
                self._held[stored.seq] = stored
        loop = asyncio.get_running_loop()
        now = loop.time()
        close = now - self._last_wake < self._linger
        busy = close and self._close
        self._last_wake, self._close = now, close
        waiter = self._waiter
        if waiter is None or self._lingering is not None:
            return  # publishing (the next round takes them), or lingering already
        if busy:
            # Idle, but commits come in quick succession (two gaps below the linger in a
            # row: load): publish after the linger, so that the commits of the next moments
            # join the same round (under load a round carries many events, not one: a
            # publish window and a write of marks per round, whatever its size).
            self._lingering = loop.call_later(self._linger, self._release, waiter)
        elif not waiter.done():
            # At a low rate (a message's event or two, then quiet) nothing is likely to join:
            # publish now, without a timer and a wake-up of the loop for nothing.
            waiter.set_result(True)

    def _release(self, waiter: asyncio.Future[bool]) -> None:
        self._lingering = None
        if not waiter.done():
            waiter.set_result(True)

    def _let_go(self) -> None:
        self._held.clear()
        self._drops += 1
        self._stale = True

    async def run(self) -> None:
        """Relay while holding the store's relay lock; wait for it while another holds it."""
        while True:
            try:
                lock = await self._store.try_relay_lock()
            except Exception as exc:
                self.state = f"waiting for the store: {exc}"
                log.warning("bus relay: cannot take the relay lock: %s", exc)
                await asyncio.sleep(self._backoff_max)
                continue
            if lock is None:
                self.state = "standby: another process relays this store"
                await asyncio.sleep(self._poll * 5)
                continue
            self._let_go()  # another relay may have published meanwhile: start from the store
            try:
                while lock.held:
                    await self._round()
            finally:
                if self._poll_timer is not None:  # kept across idle waits: not past the run
                    self._poll_timer.cancel()
                    self._poll_timer = None
                await self._mark_now()  # what was confirmed, so that it is not sent again
                await lock.release()

    async def _round(self) -> None:
        if len(self._confirmed) >= self._batch:
            await self._mark_now()  # the marks waiting are bounded by one batch
        batch = await self._next_batch()
        if batch is None:
            return
        if not batch:
            await self._idle()
            return
        self.state = f"publishing {len(batch)} events"
        published, error = await self._publish(batch)
        if published:
            self.published += len(published)
            for seq in published:
                self._held.pop(seq, None)
            self._confirmed.update(published)
            if self._marking is None:
                loop = asyncio.get_running_loop()
                self._marking = loop.call_later(self._mark_every, self._mark_later)
        if error is None:
            self._failures = 0
            if not self._held and not self._stale and len(self._confirmed) < self._batch:
                # All published, and no commit since: wait for the next one here, not after
                # a round that finds nothing (at a low rate, a round less per event).
                await self._idle()
            return
        # The next round starts again from the events not confirmed (held, or read again):
        # conversations that did not fail go on with their newer events; a failed one
        # starts again from the event that failed.
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
        await asyncio.sleep(delay)

    async def _idle(self) -> None:
        self.state = "idle"
        if not await self._await_commit():
            self._stale = True  # quiet: look for what other processes wrote

    async def _next_batch(self) -> list[StoredEvent] | None:
        """The oldest unconfirmed events, at most `batch`: those held, unless they may not
        be all, then read from the store first. None when the store could not be read."""
        if not self._stale:
            return self._oldest_held()
        self._stale = False  # a commit or a let-go during the read makes it so again
        drops = self._drops
        try:
            # The store leaves out what was published and waits for its mark.
            read = await self._store.unpublished_events(self._batch, skip=tuple(self._confirmed))
        except Exception as exc:
            self._stale = True
            self.state = f"waiting for the store: {exc}"
            log.warning("bus relay: cannot read the outbox: %s", exc)
            await asyncio.sleep(self._backoff_max)
            return None
        if len(self._held) + len(read) > self._max_held:
            self._let_go()
        else:
            for stored in read:
                self._held[stored.seq] = stored
        if len(read) == self._batch or self._drops != drops:
            # More may wait in the store (or held events were let go of during the read):
            # what the read returned is a prefix of the outbox in store order, and safe to
            # publish alone; the rest next round.
            self._stale = True
            return read
        # The read saw every event committed before it; the store handed those after it.
        return self._oldest_held()

    def _oldest_held(self) -> list[StoredEvent]:
        held = self._held
        if len(held) < 2:  # at a low rate: nothing to sort
            return list(held.values())
        return [held[seq] for seq in sorted(held)[: self._batch]]

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
                try:
                    await self._bus.publish(_event(stored.event), stored.event.route)
                except BusError as exc:
                    errors.append(exc)
                    return
                confirmed.append(stored.seq)

        if len(chains) == 1:
            # One conversation's events (the usual round at a low rate): published from this
            # task, without a task and a gather for one chain.
            (events,) = chains.values()
            await chain(events)
        else:
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

    async def _await_commit(self) -> bool:
        """Wait, idle, for a commit (True: then the linger has passed too) or for
        `poll_seconds` of quiet (False).

        This is the relay's wait between the events of a low rate, one or two per message:
        a future resolved by `wake` through the linger's timer, and a poll timer that is
        kept, not made and cancelled for every wait (what `asyncio.timeout` and an
        `asyncio.Event` would cost each time, with a second wake-up for the linger)."""
        if self._stale or self._held:
            # Committed while the outbox was read (what `wake` leaves: events held, or the
            # outbox to read again): publish after the linger.
            await asyncio.sleep(self._linger)
            return True
        loop = asyncio.get_running_loop()
        self._idle_until = loop.time() + self._poll
        if self._poll_timer is None:
            self._poll_timer = loop.call_at(self._idle_until, self._poll_due)
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        try:
            return await waiter
        finally:
            self._waiter = None
            if self._lingering is not None:  # the poll came first: the next wait lingers anew
                self._lingering.cancel()
                self._lingering = None

    def _poll_due(self) -> None:
        """The poll timer: ends the idle wait under way once it has lasted `poll_seconds`;
        an earlier one's time is up, and this one is still to wait: set for it."""
        self._poll_timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # not idle: the next idle wait sets the timer again
        loop = asyncio.get_running_loop()
        if self._idle_until - loop.time() <= _TIMER_SLACK:
            waiter.set_result(False)
        else:
            self._poll_timer = loop.call_at(self._idle_until, self._poll_due)
