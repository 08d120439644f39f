"""Pages SQLite writes per round trip: the store operations of bench_roundtrip.py's round
trip, without HTTP, on two SQLite stores (CRO, DSO) in one process.

One round trip, as the participants of bench_roundtrip.py run it: the DSO stores its request
(`add_outbound`), the CRO receives it (`save_inbound`), answers (`finish_inbound` with the
response) and records its delivery (`record_attempt`, delivered); the DSO records the
request's delivery, receives the response and marks it handled. `--concurrency` round trips
run at once, so the group commit batches them as in the real thing. The envelopes are random
bytes of the benchmark's sizes (18 KB request, 2 KB response). The MessageIDs are the
participant's (`adapter.uftp.identifiers.new_message_id`, in order of time); `--random-ids`
makes them random (version 4), as a peer's may be and as ours were.

Printed per side: WAL frames (pages) written per round trip and per commit, and the commits
per round trip; then the CPU time per round trip of the whole process. Checkpoints are off
while it measures (the WAL only grows), so its size counts every frame written: that is the
figure to compare, as it does not depend on the machine's load. The CPU time does; compare it
only between runs made one after the other, several times.

    .venv/bin/python bench/bench_store_pages.py [--rounds N] [--prefill N] [--concurrency C]
    .venv/bin/python bench/bench_store_pages.py --random-ids  # version 4 MessageIDs
    PYTHONPATH=DIR .venv/bin/python bench/bench_store_pages.py   # another checkout's adapter
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import adapter.store.sqlite as sqlite_module
from adapter.store.base import DeliveryAttempt, InboundRecord, OutboundRecord, OutboundStatus
from adapter.store.sqlite import SqliteStore
from adapter.uftp.identifiers import new_message_id

REQUEST_BYTES = 18_000
RESPONSE_BYTES = 2_000


def _outbound(message_id: str, recipient: str, size: int, reference: str | None) -> OutboundRecord:
    now = datetime.now(UTC)
    return OutboundRecord(
        message_id=message_id,
        recipient_domain=recipient,
        recipient_role="CRO" if recipient == "cro.example" else "DSO",
        message_type="DSOPortfolioUpdate" if reference is None else "DSOPortfolioUpdateResponse",
        conversation_id=message_id,
        reference_message_id=reference,
        endpoint=f"http://{recipient}/shapeshifter/api/v3/message",
        envelope=os.urandom(size),
        created_at=now,
        deadline=now + timedelta(hours=1),
    )


def _inbound(record: OutboundRecord, sender: str) -> InboundRecord:
    return InboundRecord(
        sender_domain=sender,
        message_id=record.message_id,
        sender_role="DSO" if sender == "dso.example" else "CRO",
        message_type=record.message_type,
        conversation_id=record.conversation_id,
        version="3.0.0",
        content_hash=hashlib.sha256(record.envelope).digest(),
        envelope=record.envelope,
        received_at=datetime.now(UTC),
    )


def _random_id() -> str:
    return str(uuid.uuid4())


def _delivered(message_id: str) -> DeliveryAttempt:
    return DeliveryAttempt(message_id, datetime.now(UTC), 200, "delivered", "")


#: How MessageIDs are made (`--random-ids`: version 4).
new_id = new_message_id


async def round_trip(cro: SqliteStore, dso: SqliteStore) -> None:
    request = _outbound(new_id(), "cro.example", REQUEST_BYTES, None)
    await dso.add_outbound(request)
    await cro.save_inbound(_inbound(request, "dso.example"))
    response = _outbound(new_id(), "dso.example", RESPONSE_BYTES, request.message_id)
    await cro.finish_inbound("dso.example", request.message_id, response)
    await asyncio.gather(
        cro.record_attempt(_delivered(response.message_id), OutboundStatus.DELIVERED, None),
        dso.record_attempt(_delivered(request.message_id), OutboundStatus.DELIVERED, None),
    )
    await dso.save_inbound(_inbound(response, "cro.example"))
    await dso.finish_inbound("cro.example", response.message_id, None)


async def run(count: int, concurrency: int, cro: SqliteStore, dso: SqliteStore) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await round_trip(cro, dso)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def wal_frames(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    page_size: int = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, size - 32) // (page_size + 24)


def checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="round trips measured")
    parser.add_argument("--prefill", type=int, default=3000, help="round trips before")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--random-ids", action="store_true", help="version 4 MessageIDs")
    args = parser.parse_args()
    global new_id
    if args.random_ids:
        new_id = _random_id
    # Measure every frame: no checkpoint resets the WAL while the round trips run.
    sqlite_module.CHECKPOINT_EVERY_COMMITS = 10**9  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="uftp-pages-") as directory:
        paths = {"cro": Path(directory) / "cro.sqlite3", "dso": Path(directory) / "dso.sqlite3"}
        cro, dso = SqliteStore(paths["cro"]), SqliteStore(paths["dso"])
        await cro.open()
        await dso.open()
        await run(args.prefill, args.concurrency, cro, dso)
        for path in paths.values():
            checkpoint(path)
        frames = {side: wal_frames(path) for side, path in paths.items()}
        commits = {"cro": cro.commits, "dso": dso.commits}
        cpu = time.process_time()
        await run(args.rounds, args.concurrency, cro, dso)
        cpu = time.process_time() - cpu
        for side, store in (("cro", cro), ("dso", dso)):
            written = wal_frames(paths[side]) - frames[side]
            made = store.commits - commits[side]
            print(
                f"{side}: {written / args.rounds:.2f} WAL frames per round trip, "
                f"{written / made:.1f} per commit, {made / args.rounds:.2f} commits per round trip"
            )
        print(
            f"CPU per round trip (both stores, one process): {cpu / args.rounds * 1000:.3f} ms "
            f"({args.rounds} round trips at concurrency {args.concurrency}, "
            f"after {args.prefill}; load average {os.getloadavg()[0]:.1f})"
        )
        await cro.close()
        await dso.close()


if __name__ == "__main__":
    asyncio.run(main())
