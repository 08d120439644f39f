"""The operator's view of a store (`adapter.store.admin`), on SQLite and a real PostgreSQL:
the same contract for both, with the fixtures of the store contract.

Listing and filtering, one message's envelope, requeueing a message whose delivery ended,
the queue depths and the status, and retention: what it removes and what it never touches.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from adapter.store import InboundStatus, OutboundStatus, SqliteStore, StoreOpenError, admin_for
from adapter.store.admin import MessageQuery, Pruned, QueueDepths, Requeued
from adapter.store.admin_sqlite import read_only
from adapter.store.base import Store
from tests.store import test_store_contract as contract
from tests.store.test_store_contract import RECIPIENT, SENDER, T0, attempt, inbound, outbound

# The contract's fixtures: every test here runs on SQLite and on PostgreSQL.
backend = contract.backend
store = contract.store

S = timedelta(seconds=1)
DAY = timedelta(days=1)


async def fill(store: Store) -> None:
    """Three inbound messages from two senders and four outbound ones to two recipients."""
    await store.save_inbound(inbound("in-1", received_at=T0))
    await store.save_inbound(inbound("in-2", received_at=T0 + S, message_type="FlexOffer"))
    await store.save_inbound(inbound("in-3", sender="agr.test", received_at=T0 + 2 * S))
    await store.finish_inbound(SENDER, "in-1", None)
    await store.add_outbound(outbound("out-1", created_at=T0))
    await store.add_outbound(outbound("out-2", created_at=T0 + S, recipient_domain="agr.test"))
    await store.add_outbound(outbound("out-3", created_at=T0 + 2 * S, message_type="FlexOrder"))
    await store.add_outbound(outbound("out-4", created_at=T0 + 3 * S))
    delivered = attempt("out-1", at=T0 + S, http_status=200, outcome="delivered", detail="")
    await store.record_attempt(delivered, OutboundStatus.DELIVERED, None)
    refused = attempt("out-3", at=T0 + 3 * S, http_status=400, outcome="permanent")
    await store.record_attempt(refused, OutboundStatus.FAILED, None)
    busy = attempt("out-4", at=T0 + 4 * S)
    await store.record_attempt(busy, OutboundStatus.PENDING, T0 + 9 * S)


async def test_lists_are_newest_first_and_every_filter_narrows_them(store: Store) -> None:
    await fill(store)
    admin = admin_for(store)

    every = await admin.inbound(MessageQuery())
    assert [m.message_id for m in every] == ["in-3", "in-2", "in-1"]
    assert every[2].status is InboundStatus.HANDLED and every[0].status is InboundStatus.RECEIVED
    assert every[2].envelope_bytes == len(inbound("in-1").envelope)
    assert every[2].received_at == T0
    sent = await admin.outbound(MessageQuery())
    assert [m.message_id for m in sent] == ["out-4", "out-3", "out-2", "out-1"]
    assert (sent[0].attempts, sent[0].next_attempt_at) == (1, T0 + 9 * S)
    assert sent[1].last_error == "permanent: HTTP 503"

    async def inbound_ids(**query: object) -> list[str]:
        return [m.message_id for m in await admin.inbound(MessageQuery(**query))]  # type: ignore[arg-type]

    async def outbound_ids(**query: object) -> list[str]:
        return [m.message_id for m in await admin.outbound(MessageQuery(**query))]  # type: ignore[arg-type]

    assert await inbound_ids(peer="agr.test") == ["in-3"]
    assert await inbound_ids(message_type="FlexOffer") == ["in-2"]
    assert await inbound_ids(status="handled") == ["in-1"]
    assert await inbound_ids(since=T0 + S) == ["in-3", "in-2"]
    assert await inbound_ids(message_id="in-2") == ["in-2"]
    assert await inbound_ids(limit=1) == ["in-3"]
    assert await inbound_ids(peer=SENDER, status="received") == ["in-2"]
    assert await outbound_ids(peer=RECIPIENT) == ["out-4", "out-3", "out-1"]
    assert await outbound_ids(message_type="FlexOrder") == ["out-3"]
    assert await outbound_ids(status="pending") == ["out-4", "out-2"]
    assert await outbound_ids(since=T0 + 2 * S, peer=RECIPIENT) == ["out-4", "out-3"]
    assert await outbound_ids(message_id="nothing") == []


async def test_one_envelope_is_read_whole(store: Store) -> None:
    await fill(store)
    admin = admin_for(store)
    assert await admin.inbound_envelope(SENDER, "in-2") == inbound("in-2").envelope
    assert await admin.inbound_envelope("agr.test", "in-2") is None
    assert await admin.outbound_envelope("out-2") == outbound("out-2").envelope
    assert await admin.outbound_envelope("unknown") is None


async def test_requeue_sends_an_ended_delivery_again_and_keeps_its_history(store: Store) -> None:
    await fill(store)
    admin = admin_for(store)
    now, deadline = T0 + DAY, T0 + DAY + timedelta(hours=1)

    assert await admin.requeue("out-3", now=now, deadline=deadline) is Requeued.REQUEUED

    record = await store.get_outbound("out-3")
    assert record is not None
    assert (record.status, record.next_attempt_at, record.deadline) == (
        OutboundStatus.PENDING,
        now,
        deadline,
    )
    assert record.attempts == 1
    assert await admin.attempts("out-3") == await store.attempts("out-3")
    assert len(await admin.attempts("out-3")) == 1
    assert "out-3" in [r.message_id for r in await store.pending_outbound()]
    await store.cancel_outbound("out-2")
    assert await admin.requeue("out-2", now=now, deadline=deadline) is Requeued.REQUEUED
    assert await admin.requeue("out-4", now=now, deadline=deadline) is Requeued.PENDING
    assert await admin.requeue("out-1", now=now, deadline=deadline) is Requeued.DELIVERED
    delivered = await store.get_outbound("out-1")
    assert delivered is not None and delivered.status is OutboundStatus.DELIVERED
    with pytest.raises(LookupError):
        await admin.requeue("unknown", now=now, deadline=deadline)


async def test_a_message_whose_envelope_was_pruned_cannot_be_requeued(store: Store) -> None:
    await fill(store)
    admin = admin_for(store)
    await admin.prune(envelopes_before=T0 + DAY, messages_before=T0)

    assert await admin.requeue("out-3", now=T0 + DAY, deadline=T0 + 2 * DAY) is (
        Requeued.NO_ENVELOPE
    )
    record = (await admin.outbound(MessageQuery(message_id="out-3")))[0]
    assert record.status is OutboundStatus.FAILED and record.envelope_bytes == 0


async def test_depths_and_status_count_what_waits_and_what_failed(store: Store) -> None:
    await fill(store)
    admin = admin_for(store)

    assert await admin.depths() == QueueDepths(
        outbound_pending=2,
        inbound_unfinished=2,
        oldest_pending_outbound=T0 + S,
        oldest_unfinished_inbound=T0 + S,
    )
    status = await admin.status(T0 + 2 * S)
    assert status.inbound == {InboundStatus.RECEIVED: 2, InboundStatus.HANDLED: 1}
    assert status.outbound == {
        OutboundStatus.PENDING: 2,
        OutboundStatus.DELIVERED: 1,
        OutboundStatus.FAILED: 1,
        OutboundStatus.EXPIRED: 0,
        OutboundStatus.CANCELLED: 0,
    }
    assert (status.failed_attempts, status.failed_messages) == (2, 1)
    by_domain = {peer.domain: peer for peer in status.peers}
    assert list(by_domain) == sorted([SENDER, RECIPIENT, "agr.test"])
    recipient = by_domain[RECIPIENT]
    assert (recipient.last_delivered, recipient.pending, recipient.failed_attempts) == (
        T0 + S,
        1,
        2,
    )
    assert recipient.last_received is None
    assert by_domain[SENDER].last_received == T0 + S
    agr = by_domain["agr.test"]
    assert (agr.last_received, agr.last_delivered, agr.pending) == (T0 + 2 * S, None, 1)
    later = await admin.status(T0 + 5 * S)  # the failures were before this window
    assert (later.failed_attempts, later.failed_messages) == (0, 0)


async def test_prune_removes_old_envelopes_then_old_messages_never_one_in_flight(
    store: Store,
) -> None:
    old, recent = T0 - 100 * DAY, T0 - DAY
    await store.save_inbound(inbound("old-handled", received_at=old))
    await store.finish_inbound(SENDER, "old-handled", outbound("old-response", created_at=old))
    await store.save_inbound(inbound("old-unfinished", received_at=old))
    await store.save_inbound(inbound("recent-handled", received_at=recent))
    await store.finish_inbound(SENDER, "recent-handled", None)
    await store.add_outbound(outbound("old-pending", created_at=old))
    await store.add_outbound(outbound("old-failed", created_at=old))
    await store.record_attempt(attempt("old-failed", at=old), OutboundStatus.FAILED, None)
    await store.add_outbound(outbound("recent-delivered", created_at=recent))
    ok = attempt("recent-delivered", at=recent, http_status=200, outcome="delivered", detail="")
    await store.record_attempt(ok, OutboundStatus.DELIVERED, None)
    await store.record_attempt(
        attempt("old-response", at=old, http_status=200, outcome="delivered", detail=""),
        OutboundStatus.DELIVERED,
        None,
    )
    admin = admin_for(store)

    # Envelopes kept 30 days, messages 400: only the old finished ones lose their envelope.
    pruned = await admin.prune(envelopes_before=T0 - 30 * DAY, messages_before=T0 - 400 * DAY)

    assert pruned == Pruned(inbound_envelopes=1, outbound_envelopes=2)
    sizes = {m.message_id: m.envelope_bytes for m in await admin.inbound(MessageQuery())}
    assert sizes["old-handled"] == 0 and sizes["old-unfinished"] > 0 and sizes["recent-handled"] > 0
    sizes = {m.message_id: m.envelope_bytes for m in await admin.outbound(MessageQuery())}
    assert sizes == {
        "old-response": 0,
        "old-failed": 0,
        "old-pending": len(outbound().envelope),
        "recent-delivered": len(outbound().envelope),
    }
    # What is in flight is still whole: the outbox and recovery read it as before.
    assert [r.message_id for r in await store.pending_outbound()] == ["old-pending"]
    assert [r.message_id for r in await store.unfinished_inbound()] == ["old-unfinished"]

    # Messages kept 30 days: the old finished ones go, with their attempts, in small batches.
    pruned = await admin.prune(
        envelopes_before=T0 - 30 * DAY, messages_before=T0 - 30 * DAY, batch=1
    )

    assert pruned == Pruned(inbound_messages=1, outbound_messages=2)
    assert {m.message_id for m in await admin.inbound(MessageQuery())} == {
        "old-unfinished",
        "recent-handled",
    }
    assert {m.message_id for m in await admin.outbound(MessageQuery())} == {
        "old-pending",
        "recent-delivered",
    }
    assert await store.attempts("old-failed") == []
    assert len(await store.attempts("recent-delivered")) == 1
    assert await store.get_outbound("old-pending") == outbound("old-pending", created_at=old)
    assert await admin.prune(envelopes_before=T0, messages_before=T0 - 30 * DAY) == Pruned(
        inbound_envelopes=1, outbound_envelopes=1
    )


# -- SQLite: the read-only view beside the store's owner ---------------------------------------


async def test_a_read_only_view_reads_beside_an_open_store_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    owner = SqliteStore(path)
    await owner.open()
    try:
        await fill(owner)
        async with read_only(path) as view:
            assert [m.message_id for m in await view.outbound(MessageQuery())] == [
                "out-4",
                "out-3",
                "out-2",
                "out-1",
            ]
            await owner.add_outbound(
                outbound("out-5", created_at=T0 + 5 * S)
            )  # the owner writes on
            assert len(await view.outbound(MessageQuery())) == 5
            assert (await view.depths()).outbound_pending == 3
            with pytest.raises(RuntimeError, match="read-only"):
                await view.requeue("out-3", now=T0, deadline=T0 + DAY)
        record = await owner.get_outbound("out-3")
        assert record is not None and record.status is OutboundStatus.FAILED
    finally:
        await owner.close()


async def test_a_read_only_view_creates_no_store_and_refuses_a_foreign_file(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.sqlite3"
    with pytest.raises(StoreOpenError, match="no SQLite store there"):
        async with read_only(missing):
            pass
    assert not missing.exists()
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreOpenError, match="not a uftp-adapter store"):
        async with read_only(foreign):
            pass
