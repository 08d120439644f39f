"""Durable delivery: persist first, then POST; retry temporary failures until a deadline.

The spec asks a sender to keep trying "for a reasonable amount of time (which is again at least
one hour for routine messages, employing exponential back off)" and to return a message to its
sending process when delivery fails for good (message-transport-mechanism.md, "Transmission").
What an answer means and when to try again is the core's decision (`adapter.uftp.retry`);
this module carries it out.

A message is written to the store before its first attempt, so a crash between the two loses
nothing. Retries are timers in memory, each mirrored by `next_attempt_at` in the store, which
is what a restart reads. Delays grow as initial * 2**attempt, capped, with "equal jitter"
(half fixed, half random) so that a peer coming back from an outage is not hit by every
sender at the same instant.

Several processes may share one store, so each message has one owner at a time: the store
claims a message for the process that adds it, and this outbox delivers (and retries) only
what its store holds. What nobody holds - left by a process that stopped, or whose process
died and whose claim ran out - is claimed by `start()` and then by a poll every quarter of
the store's lease, by whichever process asks first. The cap on deliveries in flight to one
peer server is `PeerSlots`, which a store shared by several processes enforces across them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from .client import Client, DeliveryResult
from .limits import PerKeyLimit
from .ops.observer import NULL_OBSERVER, Observer
from .settings import Delivery
from .store.base import (
    DeliveryAttempt,
    EventRecord,
    OutboundRecord,
    OutboundStatus,
    StorageError,
    Store,
)
from .store.coordination import PeerSlots
from .uftp.retry import Backoff, Fate, Outcome, after_attempt
from .uftp.retry import backoff_delay as backoff_delay  # its old home: importable from here still

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: Called once per message when its delivery ends for good, successful or not.
FinalCallback = Callable[[OutboundRecord, OutboundStatus, DeliveryResult], None]

#: The bus events of a delivery that ended (the bus bridge's `outcome_events`).
OutcomeEvents = Callable[[OutboundRecord, OutboundStatus, str], Awaitable[Sequence[EventRecord]]]

#: How long `stop()` lets POSTs already on the wire finish, so that their outcome is recorded
#: rather than guessed at the next start (a cut-off attempt is repeated after a restart).
STOP_GRACE_SECONDS = 5.0
#: Messages claimed by one poll, as a multiple of the deliveries that may be in flight: enough
#: to keep the slots busy, not so many that one process takes a backlog the others could share.
CLAIM_BATCH_PER_SLOT = 4


#: The status a message's record takes for each fate the retry decision gives it.
_STATUS = {
    Fate.DELIVERED: OutboundStatus.DELIVERED,
    Fate.FAILED: OutboundStatus.FAILED,
    Fate.EXPIRED: OutboundStatus.EXPIRED,
    Fate.RETRY: OutboundStatus.PENDING,
}


class Outbox:
    def __init__(
        self,
        store: Store,
        client: Client,
        settings: Delivery,
        clock: Clock,
        on_final: FinalCallback,
        *,
        max_in_flight: int = 64,
        per_peer: int | None = None,
        peer_slots: PeerSlots | None = None,
    ) -> None:
        """`per_peer` caps the deliveries in flight to one peer server (None: no cap), so that
        a peer that hangs until the request timeout holds only its own share of the
        `max_in_flight` slots; `peer_slots`, if given, is that cap (across the processes of a
        shared store: `Coordinator.peer_slots`) and `per_peer` is not used."""
        self._store = store
        self._client = client
        self._settings = settings
        self._backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self._clock = clock
        self._on_final = on_final
        self._slots = asyncio.Semaphore(max_in_flight)
        self._claim_batch = max_in_flight * CLAIM_BATCH_PER_SLOT
        self._peer_slots: PeerSlots = (
            peer_slots if peer_slots is not None else PerKeyLimit(per_peer)
        )
        #: How often to look for messages nobody holds: a quarter of the store's lease.
        self.poll_seconds = store.lease.total_seconds() / 4
        self._poller: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: The records those timers will retry, by MessageID.
        self._waiting: dict[str, OutboundRecord] = {}
        #: Attempts under way (waiting for a slot, or POSTing), by MessageID.
        self._attempting: dict[str, asyncio.Task[None]] = {}
        #: MessageIDs being withdrawn: no attempt of theirs starts or is scheduled.
        self._withdrawing: set[str] = set()
        self._running = False
        #: Set by the bus bridge: events stored with the final attempt of each message.
        self.events: OutcomeEvents | None = None
        #: Told of every attempt and every delivery's end (`adapter.ops.observer`).
        self.observer: Observer = NULL_OBSERVER

    async def start(self) -> None:
        """Take over the deliveries nobody holds that are due (a previous run's, or those of a
        process that died), then keep looking for more every `poll_seconds`."""
        self._running = True
        claimed = await self._claim()
        if claimed:
            log.info("outbox: resuming %d pending deliveries", claimed)
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        """Stop delivering. What is pending stays in the store for the next start.

        POSTs already sent get `STOP_GRACE_SECONDS` to return, so the peer's answer to them
        is recorded: cancelling one after the peer received it would leave the store one
        attempt short. Attempts still waiting for a slot start no POST once stopped."""
        self._running = False
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._waiting.clear()
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def submit(self, record: OutboundRecord) -> None:
        """Persist `record`, then start delivering it."""
        await self._store.add_outbound(record)
        self.deliver_now(record)

    def deliver_now(self, record: OutboundRecord) -> None:
        """Start delivering a record that is already persisted (e.g. queued by a handler's
        transaction)."""
        self._schedule(record, None)

    def knows(self, message_id: str) -> bool:
        """Whether `message_id` waits for an attempt here, or one is under way."""
        return message_id in self._waiting or message_id in self._attempting

    def awaits_retry(self, message_id: str) -> bool:
        """Whether `message_id` waits here for its next attempt (which its response would
        end: `answered`)."""
        return message_id in self._waiting

    def resume(self, record: OutboundRecord) -> bool:
        """Schedule a pending record that this outbox does not know of (one an operator put
        back in the queue while we ran: `uftp-adapter outbox retry`), at its next attempt;
        False, changing nothing, when it is scheduled or under way already. Its status is
        read again before the POST."""
        if self.knows(record.message_id) or not self._running:
            return False
        self._schedule(record, record.next_attempt_at or self._clock())
        return True

    def answered(self, message_id: str, responder: str) -> None:
        """The response to `message_id` came from `responder`: if the message still waits for
        a retry (its 200 was lost, e.g. the peer crashed just after storing it), it was
        delivered all the same; no need to send it again."""
        record = self._waiting.get(message_id)
        if record is None or record.recipient_domain != responder:
            return
        self._timers.pop(message_id).cancel()
        del self._waiting[message_id]
        task = asyncio.get_running_loop().create_task(
            self._end_without_post(
                record,
                OutboundStatus.DELIVERED,
                Outcome.DELIVERED,
                "its response arrived before the next attempt",
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def withdraw(self, message_id: str) -> OutboundRecord | None:
        """Stop delivering `message_id` for good, if it is still pending; its record after.

        For a sender that gave up waiting (a command's timeout): a message delivered later
        would be applied without anyone being told. A POST already on the wire is let finish
        first, so the answer tells the truth: the record says delivered if that POST was
        accepted, cancelled if the message never reached the peer. None for an unknown
        MessageID."""
        self._withdrawing.add(message_id)
        try:
            timer = self._timers.pop(message_id, None)
            if timer is not None:
                timer.cancel()
            self._waiting.pop(message_id, None)
            under_way = self._attempting.get(message_id)
            if under_way is not None:
                await asyncio.wait({under_way})
            try:
                withdrawn = await self._store.cancel_outbound(message_id)
            except LookupError:
                return None
        finally:
            self._withdrawing.discard(message_id)
        record = await self._store.get_outbound(message_id)
        if withdrawn and record is not None:
            log.info(
                "outbox: %s -> %s withdrawn by its sender after %d attempts: %s",
                record.message_type,
                record.recipient_domain,
                record.attempts,
                record.last_error or "none made",
            )
        return record

    def new_deadline(self, created: datetime) -> datetime:
        return created + timedelta(seconds=self._settings.deadline_seconds)

    async def _end_without_post(
        self, record: OutboundRecord, status: OutboundStatus, outcome: Outcome, detail: str
    ) -> None:
        """End a message's delivery without another POST (its response proved it delivered,
        or its deadline passed unattempted), recorded like an attempt so the schedule in the
        store tells the whole story."""
        attempt = DeliveryAttempt(record.message_id, self._clock(), None, status.value, detail)
        try:
            events = await self._outcome_events(record, status, detail)
            await self._store.record_attempt(attempt, status, None, events=events)
        except Exception:
            log.exception("outbox: could not record %s as %s", record.message_id, status.value)
        log.log(
            logging.INFO if status is OutboundStatus.DELIVERED else logging.WARNING,
            "outbox: %s %s -> %s %s: %s",
            record.message_type,
            record.message_id,
            record.recipient_domain,
            status.value,
            detail,
        )
        final = replace(record, status=status, next_attempt_at=None)
        self.observer.sent(record.message_type, record.recipient_domain, status.value)
        self._on_final(final, status, DeliveryResult(outcome, None, detail))

    # -- internals ----------------------------------------------------------------------------

    async def _outcome_events(
        self, record: OutboundRecord, status: OutboundStatus, detail: str
    ) -> Sequence[EventRecord]:
        return () if self.events is None else await self.events(record, status, detail)

    def _holds(self, message_id: str) -> bool:
        """Whether this outbox is working on `message_id` (waiting to retry, or attempting)."""
        return message_id in self._timers or message_id in self._attempting

    async def _claim(self) -> int:
        """Claim the messages due before the next poll that nobody holds and schedule them;
        how many. A message of ours whose claim lapsed (the event loop was stalled beyond the
        lease) may come back: it is not scheduled twice."""
        room = self._claim_batch - len(self._timers) - len(self._attempting)
        if room <= 0:
            return 0
        due_by = self._clock() + timedelta(seconds=self.poll_seconds)
        records = await self._store.claim_outbound(due_by, room)
        now = self._clock()
        fresh = [record for record in records if not self._holds(record.message_id)]
        for record in fresh:
            self._schedule(record, record.next_attempt_at or now)
        return len(fresh)

    async def _poll(self) -> None:
        while self._running:
            await asyncio.sleep(self.poll_seconds)
            try:
                claimed = await self._claim()
            except StorageError as exc:
                log.warning("outbox: cannot look for messages to deliver: %s", exc)
                continue
            if claimed:
                log.info("outbox: took over %d pending deliveries", claimed)

    def _schedule(self, record: OutboundRecord, at: datetime | None) -> None:
        """Attempt `record` at `at`; None: now, a record just persisted (no one else can
        have changed it yet, so its status is not read again before the POST)."""
        if not self._running or record.message_id in self._withdrawing:
            return
        delay = 0.0 if at is None else max(0.0, (at - self._clock()).total_seconds())
        if delay <= 0:
            self._spawn(record, fresh=at is None)
            return
        loop = asyncio.get_running_loop()
        self._timers[record.message_id] = loop.call_later(delay, self._spawn, record)
        self._waiting[record.message_id] = record

    def _spawn(self, record: OutboundRecord, *, fresh: bool = False) -> None:
        self._timers.pop(record.message_id, None)
        self._waiting.pop(record.message_id, None)
        if not self._running or record.message_id in self._withdrawing:
            return
        task = asyncio.get_running_loop().create_task(self._attempt(record, fresh=fresh))
        self._tasks.add(task)
        self._attempting[record.message_id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._forget_attempt(record.message_id, task))

    def _forget_attempt(self, message_id: str, task: asyncio.Task[None]) -> None:
        if self._attempting.get(message_id) is task:
            del self._attempting[message_id]

    async def _attempt(self, record: OutboundRecord, *, fresh: bool = False) -> None:
        if self._clock() > record.deadline:
            # The deadline passed while no attempt could be made (we were stopped, or waited
            # for a slot): it ends here, as a failed retry past it would have.
            if not fresh and not await self._still_pending(record):
                return
            await self._end_without_post(
                record,
                OutboundStatus.EXPIRED,
                Outcome.TEMPORARY,
                "the delivery deadline passed before another attempt",
            )
            return
        # The peer's own slot first, so that a message waiting for it holds no global slot.
        async with self._peer_slots.hold(_server(record.endpoint)), self._slots:
            if not self._running:
                return  # stopped while waiting for a slot: the next start resumes it
            if record.message_id in self._withdrawing:
                return  # withdrawn while waiting for a slot: never sent
            if not fresh and not await self._still_pending(record):
                return  # withdrawn by another process (an operator's cancel): never sent
            started = self._clock()
            timer = time.perf_counter()
            result = await self._client.post(record.endpoint, record.envelope)
            self.observer.attempted(
                record.message_type,
                record.recipient_domain,
                result.outcome.value,
                result.status,
                time.perf_counter() - timer,
            )
        attempts = record.attempts + 1
        decision = after_attempt(
            result.outcome,
            attempt=attempts,
            deadline=record.deadline,
            now=self._clock(),
            backoff=self._backoff,
            rng=self._rng,
        )
        status, next_at = _STATUS[decision.fate], decision.at
        detail = result.detail if result.status is None else f"HTTP {result.status} {result.detail}"
        attempt = DeliveryAttempt(
            record.message_id, started, result.status, result.outcome.value, detail.strip()
        )
        updated = replace(
            record, attempts=attempts, status=status, next_attempt_at=next_at, last_error=detail
        )
        ours = True
        try:
            events: Sequence[EventRecord] = ()
            if status is not OutboundStatus.PENDING and self.events is not None:
                # The record as this attempt leaves it (its outcome event counts the attempts).
                events = await self.events(updated, status, detail.strip())
            ours = await self._store.record_attempt(attempt, status, next_at, events=events)
        except Exception:
            # The attempt happened; failing to log it must not stop the retry schedule. The
            # worst case after a crash is one extra attempt, which the receiver's duplicate
            # detection absorbs.
            log.exception("outbox: could not record attempt for %s", record.message_id)
        log_level = logging.INFO if status is not OutboundStatus.PENDING else logging.WARNING
        if log.isEnabledFor(log_level):  # its arguments are not worked out for nothing
            log.log(
                log_level,
                "outbox: %s %s -> %s attempt %d: %s%s",
                record.message_type,
                record.message_id,
                record.recipient_domain,
                attempts,
                detail.strip() or result.outcome.value,
                f"; next attempt at {next_at.isoformat()}" if next_at else f"; {status.value}",
            )
        if status is OutboundStatus.PENDING:
            assert next_at is not None
            if ours:
                self._schedule(updated, next_at)
            else:  # our claim lapsed: its next attempt is for whoever holds it now
                log.warning("outbox: %s is no longer ours to retry", record.message_id)
        else:
            self.observer.sent(record.message_type, record.recipient_domain, status.value)
            self._on_final(updated, status, result)

    async def _still_pending(self, record: OutboundRecord) -> bool:
        """Whether `record` is still pending in the store, read again before a retry: another
        process may have withdrawn it meanwhile (`uftp-adapter outbox cancel` beside a running
        serve), and a POST after that would deliver what its operator called off. A store
        that cannot answer now does not stop the retry: the attempt's record cannot undo a
        final status either way."""
        try:
            stored = await self._store.get_outbound(record.message_id)
        except Exception:
            log.exception("outbox: could not read %s before retrying it", record.message_id)
            return True
        if stored is not None and stored.status is OutboundStatus.PENDING:
            return True
        log.info(
            "outbox: %s -> %s is %s in the store: not attempted again",
            record.message_type,
            record.recipient_domain,
            stored.status.value if stored is not None else "gone",
        )
        return False


def _server(endpoint: str) -> str:
    """What a hanging peer ties up: its server (scheme, host and port), whatever the path; two
    domains hosted on one server share its slots."""
    url = urlsplit(endpoint)
    return f"{url.scheme}://{url.netloc}"
