"""``serve --workers N``: N processes on one port and one PostgreSQL store, as a user runs it.

The workers share the port (SO_REUSEPORT: the kernel spreads connections over them), yet a
second ``serve`` of the same configuration is refused as before, with workers or without.
The parent passes SIGTERM on and waits for every worker; a worker that dies is started
again; workers whose parent died stop. A SQLite store is refused: one process per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from adapter.keys import PrivateKeys, load_private
from adapter.listen import bind, workers_supported
from adapter.ops.logs import announce
from adapter.uftp import codec, envelope
from adapter.uftp.messages import Role, TestMessage
from tests.postgres import import_asyncpg
from tests.resilience.harness import free_port
from tests.resilience.shared import (
    CRO,
    DSO,
    PG_DSN,
    CountingPeer,
    store_url,
    until,
    write_config,
)
from tests.serve import Process, serve_argv

asyncpg = import_asyncpg()

pytestmark = pytest.mark.skipif(not workers_supported(), reason="--workers needs Linux")


def cro_config(tmp_path: Path, site_keys: Path, store: str, peer_url: str, port: int) -> Path:
    return write_config(
        tmp_path / "cro.toml",
        domain=CRO,
        role="CRO",
        key=site_keys / "cro.key",
        port=port,
        store=store,
        peer_domain=DSO,
        peer_role="DSO",
        peer_url=peer_url,
        peer_pub=site_keys / "dso.pub",
        extra='[cro]\nmode = "open"\n',
    )


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[list[Process]]:
    children: list[Process] = []
    try:
        yield children
    finally:
        for process in children:
            await process.ensure_dead()


async def start_workers(started: list[Process], config: Path, name: str = "serve") -> Process:
    process = Process(name, serve_argv(config, "--workers", "2"), config.parent / f"{name}.log")
    await process.start()
    started.append(process)
    return process


def pids_of(line: str) -> list[int]:
    """The workers' pids in the parent's line 'serving with N workers on port P: pids ...'."""
    return [int(word) for word in line.split(": pids ", 1)[1].split()]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def post_test_messages(port: int, dso_key: PrivateKeys, count: int) -> list[int]:
    """`count` TestMessages from the DSO, each on a new connection (new source port: the
    kernel's hash picks a worker for each); their HTTP statuses."""
    statuses = []
    for _ in range(count):
        message = TestMessage(
            version="3.1.0",
            sender_domain=DSO,
            recipient_domain=CRO,
            time_stamp=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
        )
        body = envelope.seal(codec.encode(message), dso_key.signing, DSO, Role.DSO)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/shapeshifter/api/v3/message",
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
            ) as response,
        ):
            statuses.append(response.status)
    return statuses


async def run_once(*argv: str) -> tuple[int, str]:
    child = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    return child.returncode, err.decode()


async def test_workers_share_the_port_and_a_second_serve_is_refused(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    started: list[Process],
) -> None:
    counting_peer.closed = True  # responses stay pending, held by the worker that handled each
    port = free_port()
    config = cro_config(tmp_path, site_keys, store_url(pg_schema), counting_peer.url, port)
    parent = await start_workers(started, config)
    line: str = await parent.until_line(lambda line: line.startswith("serving with"), 60)
    workers = pids_of(line)
    assert len(workers) == 2 and parent.pid not in workers
    # Each worker says it serves once its signal handlers are in place.
    await parent.until_line(lambda line: line.startswith("serving CRO"), 60, nth=len(workers))

    statuses = await post_test_messages(port, load_private(site_keys / "dso.key"), 24)

    assert statuses == [200] * 24

    async def holders() -> set[int]:
        conn = await asyncpg.connect(PG_DSN)
        try:
            rows = await conn.fetch(
                f"SELECT claimed_by FROM {pg_schema}.outbound "
                "WHERE message_type = 'TestMessageResponse'"
            )
        finally:
            await conn.close()
        return {int(row["claimed_by"].split(":")[-2]) for row in rows if row["claimed_by"]}

    async def spread() -> bool:
        return await holders() == set(workers)

    await until(spread, 30, "each worker handled some (the kernel spread the connections)")

    code, err = await run_once(sys.executable, "-m", "adapter", "serve", "--config", str(config))
    assert code == 2
    assert err.splitlines()[-1] == f"uftp-adapter: error: port {port} on 127.0.0.1 is in use"
    code, err = await run_once(
        sys.executable, "-m", "adapter", "serve", "--config", str(config), "--workers", "2"
    )
    assert code == 2
    assert err.splitlines()[-1] == (
        f"uftp-adapter: error: port {port} on 127.0.0.1 is in use (by another `serve --workers`)"
    )

    assert await parent.terminate(30) == 0
    assert not any(alive(pid) for pid in workers)
    for sock in bind("127.0.0.1", port):  # free again
        sock.close()


async def test_a_dead_worker_is_started_again_and_workers_stop_with_their_parent(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    started: list[Process],
) -> None:
    port = free_port()
    config = cro_config(tmp_path, site_keys, store_url(pg_schema), counting_peer.url, port)
    parent = await start_workers(started, config)
    workers = pids_of(await parent.until_line(lambda line: line.startswith("serving with"), 60))
    # Each worker says it serves once its signal handlers are in place.
    await parent.until_line(lambda line: line.startswith("serving CRO"), 60, nth=len(workers))

    os.kill(workers[0], signal.SIGKILL)
    again = await parent.until_line(lambda line: line.startswith("worker 0 started again"), 30)
    replacement = int(again.rsplit(" ", 1)[1])
    await parent.until_line(lambda line: line.startswith("serving CRO"), 60, nth=3)  # its third
    assert await post_test_messages(port, load_private(site_keys / "dso.key"), 8) == [200] * 8

    parent.kill()
    await parent.wait()
    await until(
        lambda: not alive(replacement) and not alive(workers[1]), 15, "the workers stopping"
    )
    for sock in bind("127.0.0.1", port):  # the port and its guard are free
        sock.close()


def test_workers_with_a_sqlite_store_are_refused(tmp_path: Path, site_keys: Path) -> None:
    config = cro_config(tmp_path, site_keys, f"sqlite:{tmp_path / 'cro.sqlite3'}", "http://x/", 0)
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"uftp-adapter: error: --workers 2: {config} has a SQLite store, which admits one "
        'process; several share a PostgreSQL store (store = "postgresql://...")'
    )
    assert not (tmp_path / "cro.sqlite3").exists()  # nothing opened


async def test_sighup_reaches_every_worker_and_stops_none(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    started: list[Process],
) -> None:
    port = free_port()
    config = cro_config(tmp_path, site_keys, store_url(pg_schema), counting_peer.url, port)
    parent = await start_workers(started, config)
    workers = pids_of(await parent.until_line(lambda line: line.startswith("serving with"), 60))
    # Each worker says it serves once its signal handlers are in place.
    await parent.until_line(lambda line: line.startswith("serving CRO"), 60, nth=len(workers))

    os.kill(parent.pid, signal.SIGHUP)

    log = tmp_path / "serve.log"
    await until(
        lambda: log.read_text().count("SIGHUP: ") == len(workers), 15, "each worker re-reading"
    )
    assert alive(parent.pid) and all(alive(pid) for pid in workers)
    assert await post_test_messages(port, load_private(site_keys / "dso.key"), 4) == [200] * 4


def test_each_line_said_on_the_shared_stdout_is_one_write() -> None:
    """The workers and their parent share one stdout. Under PYTHONUNBUFFERED (`python -u`, as
    many containers and CI set it) `print` writes the text and its newline in two writes, so
    two workers announcing at once gave the line 'serving CRO ...serving CRO ...' and an
    empty one: a reader of the lines saw one worker serving where two were. Each line must
    reach the kernel in one write (a write to a pipe up to PIPE_BUF bytes is atomic).

    A datagram socket keeps the boundary of every write, so the test reads them as the
    kernel got them, through the stream `python -u` gives a process."""
    sending, receiving = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sending, receiving:
        raw = io.FileIO(sending.fileno(), "wb", closefd=False)
        unbuffered = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        announce("serving CRO cro.example at http://127.0.0.1:8080/", out=unbuffered)
        announce("shutting down", "json", out=unbuffered)
        receiving.setblocking(False)
        writes = []
        with contextlib.suppress(BlockingIOError):
            while True:
                writes.append(receiving.recv(65536))
    assert len(writes) == 2, writes
    assert writes[0] == b"serving CRO cro.example at http://127.0.0.1:8080/\n"
    assert writes[1].endswith(b'"message": "shutting down"}\n') and writes[1].count(b"\n") == 1
