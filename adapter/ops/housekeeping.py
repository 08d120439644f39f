"""What a running participant does besides messages: periodic work on its store.

* **The outbox scan** (SQLite stores): every `OUTBOX_SCAN_SECONDS` the pending messages are
  read, and one that the outbox does not know of is scheduled: a message that an operator put
  back in the queue (`uftp-adapter outbox retry`) while this process ran. A SQLite store has
  one serving process, so every pending message is this process's to deliver. On PostgreSQL,
  several processes may share the store and each would schedule the others' messages, so no
  scan runs: a requeued message goes out at the next start of a process there.

* **Retention** ([retention]): at the start and every `PRUNE_SECONDS`, envelopes and
  messages older than their retention are removed (`adapter.ops.retention`). Every process
  on a shared PostgreSQL store does so; the work is idempotent and in short transactions.
* **The queue depths** for the metrics (when measured): every `DEPTHS_SECONDS`, from the
  store's indexes.

Each task logs its failure and carries on at its next turn: a store that fails now (a full
disk) is no reason to stop the others, nor the participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from adapter.participant import Participant
from adapter.store import admin_for
from adapter.store.admin import MessageQuery
from adapter.store.base import OutboundStatus
from adapter.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from adapter.config import RetentionSettings
    from adapter.ops.metrics import Metrics

__all__ = [
    "DEPTHS_SECONDS",
    "OUTBOX_SCAN_LIMIT",
    "OUTBOX_SCAN_SECONDS",
    "PRUNE_SECONDS",
    "Housekeeping",
]

log = logging.getLogger(__name__)

#: How often a running participant looks for messages put back in its queue by an operator.
OUTBOX_SCAN_SECONDS = 15.0
#: At most this many pending messages are looked at per scan (the oldest come first at the
#: next start anyway).
OUTBOX_SCAN_LIMIT = 10_000
#: How often the queue depths of the metrics are read from the store.
DEPTHS_SECONDS = 15.0
#: How often retention runs (and once at the start).
PRUNE_SECONDS = 3600.0


class Housekeeping:
    """The periodic tasks of one running participant; `start` after the participant's."""

    def __init__(
        self,
        participant: Participant,
        metrics: Metrics | None = None,
        retention: RetentionSettings | None = None,
    ) -> None:
        self._participant = participant
        self._metrics = metrics
        self._retention = retention
        self._admin = admin_for(participant.store)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if isinstance(self._participant.store, SqliteStore):
            self._every(OUTBOX_SCAN_SECONDS, self.scan_outbox, "outbox scan")
        if self._metrics is not None:
            self._every(DEPTHS_SECONDS, self.read_depths, "reading the queue depths", now=True)
        if self._retention is not None:
            self._every(PRUNE_SECONDS, self.prune, "retention", now=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _every(
        self, seconds: float, work: Callable[[], Awaitable[object]], name: str, *, now: bool = False
    ) -> None:
        """Run `work` every `seconds` (first after `seconds`, or at once when `now`)."""

        async def loop() -> None:
            if not now:
                await asyncio.sleep(seconds)
            while True:
                try:
                    await work()
                except Exception:
                    log.exception("%s failed; tried again in %g s", name, seconds)
                await asyncio.sleep(seconds)

        self._tasks.append(asyncio.get_running_loop().create_task(loop(), name=name))

    async def prune(self) -> None:
        if self._retention is not None:
            from adapter.ops import retention

            await retention.prune(self._admin, self._retention, datetime.now(UTC))

    async def read_depths(self) -> None:
        if self._metrics is not None:
            self._metrics.set_depths(await self._admin.depths(), datetime.now(UTC))

    async def scan_outbox(self) -> int:
        """Schedule the pending messages the outbox does not know of; how many it found."""
        outbox = self._participant.outbox
        pending = await self._admin.outbound(
            MessageQuery(status=OutboundStatus.PENDING.value, limit=OUTBOX_SCAN_LIMIT)
        )
        found = 0
        for summary in pending:
            if outbox.knows(summary.message_id):
                continue
            record = await self._participant.store.get_outbound(summary.message_id)
            if record is not None and record.status is OutboundStatus.PENDING:
                found += outbox.resume(record)
        if found:
            log.info("outbox scan: %d pending messages put back in the queue are scheduled", found)
        return found
