"""One process per SQLite store: a second one refuses to open it and names the holder.

Two processes on one SQLite file would both deliver every pending message and both recover
every unhandled one. The store takes an exclusive `flock` on ``NAME.lock`` beside the file,
with the holder's pid in it; the kernel releases it on close and when the holder dies, however
it dies. A reader (``exclusive=False``, what `cro show` opens) takes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.store import InboundRecord, SqliteStore, StoreOpenError
from adapter.store.sqlite import lock_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock is POSIX")


def record(message_id: str) -> InboundRecord:
    return InboundRecord(
        "cro.test", message_id, "CRO", "FlexRequest", "c", "3.1.0", b"h", b"e", datetime.now(UTC)
    )


async def test_a_second_store_on_the_file_refuses_naming_the_process(tmp_path: Path) -> None:
    path = tmp_path / "var" / "dso.sqlite3"
    first = SqliteStore(path)
    await first.open()
    try:
        second = SqliteStore(path)
        with pytest.raises(StoreOpenError) as refused:
            await second.open()
        assert str(refused.value) == (
            f"{path}: the store is in use by process {os.getpid()} (it holds "
            f"{lock_path(path)}); a SQLite store admits one process: stop that one first, or "
            "share a PostgreSQL store between several"
        )
        assert lock_path(path).read_text() == f"{os.getpid()}\n"
    finally:
        await first.close()

    await second.open()  # the first one closed: free
    await second.close()


async def test_a_reader_opens_beside_the_holder_and_takes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cro.sqlite3"
    holder = SqliteStore(path)
    await holder.open()
    try:
        await holder.save_inbound(record("m1"))
        reader = SqliteStore(path, exclusive=False)
        await reader.open()
        try:
            assert [r.message_id for r in await reader.unfinished_inbound()] == ["m1"]
        finally:
            await reader.close()
        # Opening and closing voided nor released the holder's claim.
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            (claimed_by,) = conn.execute("SELECT claimed_by FROM inbound").fetchone()
        conn.close()
        assert claimed_by == holder.owner
        with pytest.raises(StoreOpenError, match="in use by process"):
            await SqliteStore(path).open()  # the holder still holds it
    finally:
        await holder.close()


_HOLDER = """
import asyncio, sys
from adapter.store import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.open()
    print("open", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "dso.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"open\n"
        with pytest.raises(StoreOpenError, match=f"in use by process {child.pid} "):
            await SqliteStore(path).open()
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()

    assert lock_path(path).read_text() == f"{child.pid}\n"  # stale, but unlocked
    store = SqliteStore(path)
    await store.open()
    try:
        assert lock_path(path).read_text() == f"{os.getpid()}\n"
    finally:
        await store.close()
