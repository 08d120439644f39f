"""How many inbound messages per second each store makes durable, by concurrency.

Run: ``.venv/bin/python bench/bench_store.py [--seconds 3] [--postgres DSN] [--dir DIR]``.

Each figure is `save_inbound` calls completed per second by N concurrent callers, each call
awaited until its COMMIT returned, i.e. what the HTTP endpoint could acknowledge with 200.
SQLite runs with synchronous=FULL in a temporary directory (give --dir on the disk you will
deploy on: tmpfs or a disk that ignores flushes gives meaningless figures). At concurrency 1
every save pays a whole fsync; with more callers, group commit lets one fsync carry many
saves, which the "saves/commit" column shows. "sqlite/loop" is the same store with its COMMIT
on the event loop (as before issue 13), measured in turn with the other. The CPU per save is
this process's (all its threads). PostgreSQL groups commits itself (and its
figure includes a network round trip per statement); it is skipped if unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from adapter.store import InboundRecord, SqliteStore, Store

CONCURRENCIES = (1, 10, 100)
ENVELOPE = b"<SignedMessage>" + b"x" * 2000 + b"</SignedMessage>"  # a typical small message


def record() -> InboundRecord:
    message_id = str(uuid.uuid4())
    return InboundRecord(
        sender_domain="cro.bench.test",
        message_id=message_id,
        sender_role="CRO",
        message_type="FlexOffer",
        conversation_id=message_id,
        version="3.1.0",
        content_hash=hashlib.sha256(message_id.encode()).digest(),
        envelope=ENVELOPE,
        received_at=datetime.now(UTC),
    )


async def saves_per_second(
    store: Store, concurrency: int, seconds: float
) -> tuple[float, int, float]:
    """Keep `concurrency` callers saving for `seconds`; return the rate, the saves done and
    this process's CPU seconds per save (all its threads: the SQLite commit thread too)."""
    deadline = time.perf_counter() + seconds
    done = 0
    cpu = time.process_time()

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await store.save_inbound(record())
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return done / elapsed, done, (time.process_time() - cpu) / max(done, 1)


async def bench_sqlite(seconds: float, directory: str | None) -> None:
    """The store as it runs (COMMIT on its commit thread) and, interleaved, with the COMMIT
    on the event loop as before (``loop``)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        stores = {
            "sqlite": SqliteStore(Path(tmp) / "bench.sqlite3"),
            "sqlite/loop": SqliteStore(Path(tmp) / "loop.sqlite3", commit_off_loop=False),
        }
        for store in stores.values():
            await store.open()
        try:
            for concurrency in CONCURRENCIES:
                for name, store in stores.items():
                    commits = store.commits
                    rate, saves, cpu = await saves_per_second(store, concurrency, seconds)
                    per_commit = saves / max(store.commits - commits, 1)
                    print(
                        f"{name:11} concurrency {concurrency:>3}: {rate:8.0f} saves/s"
                        f"   ({per_commit:5.1f} saves/commit, {cpu * 1e6:4.0f} us CPU/save)"
                    )
        finally:
            for store in stores.values():
                await store.close()


async def bench_postgres(seconds: float, dsn: str) -> None:
    try:
        import asyncpg

        from adapter.store.postgres import PostgresStore
    except ImportError:
        print("postgres  skipped: asyncpg is not installed")
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgres  skipped: cannot connect ({type(exc).__name__})")
        return
    store = PostgresStore(dsn, schema=schema, max_connections=20)
    try:
        await store.open()
        for concurrency in CONCURRENCIES:
            rate, _, cpu = await saves_per_second(store, concurrency, seconds)
            print(
                f"{'postgres':11} concurrency {concurrency:>3}: {rate:8.0f} saves/s"
                f"   (pool of 20, {cpu * 1e6:4.0f} us CPU/save here, the server's apart)"
            )
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("UFTP_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test"),
        help="DSN of a PostgreSQL database to bench in a throw-away schema",
    )
    parser.add_argument("--dir", help="where to put the SQLite file (default: system temp)")
    args = parser.parse_args()
    print(f"inbound saves per second, {args.seconds:g} s per figure, envelope {len(ENVELOPE)} B")
    await bench_sqlite(args.seconds, args.dir)
    await bench_postgres(args.seconds, args.postgres)
    print(
        "Every save is durable when counted (SQLite: WAL fsynced at COMMIT; PostgreSQL:\n"
        "synchronous_commit=on). Concurrency 1 is the fsync latency bound; the higher\n"
        "concurrencies show how far group commit shares one fsync among callers."
    )


if __name__ == "__main__":
    asyncio.run(main())
