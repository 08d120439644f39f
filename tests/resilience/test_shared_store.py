"""Several processes on one PostgreSQL store, as OS processes on loopback, one of them killed.

What a shared store must give (README, "Durability"): every message delivered exactly once
whichever process holds it, the per-peer cap held by all processes together, every response
reaching the `request()` that awaits it in whichever process, and nothing lost when a process
dies - its claims lapse and another takes its work over. Each test has its own schema of the
real PostgreSQL (UFTP_TEST_POSTGRES_DSN); the peer is real too: it verifies each signature,
and counts the POSTs it answers with 200 per MessageID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from adapter.config import load_config
from adapter.keys import PrivateKeys, generate, load_private, write_private
from adapter.participant import Participant
from adapter.run import participant_for
from adapter.uftp import codec, envelope
from adapter.uftp.messages import DSOPortfolioQuery, DSOPortfolioQueryResponse, Result
from tests.resilience.dso_driver import portfolio_update
from tests.resilience.harness import Process, free_port
from tests.resilience.stores import open_read_only, read_sender

asyncpg = pytest.importorskip("asyncpg")

PG_DSN = os.environ.get("UFTP_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
PG_REQUIRED = "UFTP_TEST_POSTGRES_DSN" in os.environ
DSO = "dso.shared.test"
CRO = "cro.shared.test"
#: Claims lapse one second after their process died.
LEASE_SECONDS = 1.0
#: Deliveries to one peer server in flight at once, all processes together.
PER_PEER = 2

pytestmark = pytest.mark.skipif(os.name != "posix", reason="processes killed with SIGKILL")


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if PG_REQUIRED:
            raise
        pytest.skip(f"no PostgreSQL at {PG_DSN}: {exc}")
    name = f"test_shared_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await admin.close()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    for name in ("dso", "cro"):
        write_private(folder / f"{name}.key", generate())
    return folder


def store_url(schema: str) -> str:
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


def write_config(
    path: Path,
    *,
    domain: str,
    role: str,
    key: Path,
    port: int,
    store: str,
    peer_domain: str,
    peer_role: str,
    peer_url: str,
    peer_pub: Path,
    extra: str = "",
) -> Path:
    path.write_text(
        f"""\
[participant]
domain = "{domain}"
role = "{role}"
signing_key = "{key}"
listen = "127.0.0.1:{port}"
store = "{store}"
versions = ["3.1.0"]

[delivery]
deadline_seconds = 300
request_timeout_seconds = 10
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.4
lease_seconds = {LEASE_SECONDS}

[limits]
deliveries_per_peer = {PER_PEER}
{extra}
[[peers]]
domain = "{peer_domain}"
role = "{peer_role}"
endpoint = "{peer_url}"
public_keys_file = "{peer_pub}"
""",
        "utf-8",
    )
    return path


def dso_config(
    tmp_path: Path, keys: Path, schema: str, name: str, peer_url: str, port: int = 0
) -> Path:
    """A DSO process's configuration: all share `schema`, each has a port of its own."""
    return write_config(
        tmp_path / f"{name}.toml",
        domain=DSO,
        role="DSO",
        key=keys / "dso.key",
        port=port or free_port(),
        store=store_url(schema),
        peer_domain=CRO,
        peer_role="CRO",
        peer_url=peer_url,
        peer_pub=keys / "cro.pub",
    )


@dataclass
class CountingPeer:
    """A CRO's endpoint that verifies the DSO's signature, counts the POSTs it accepts per
    MessageID and how many are in progress at once, and answers after `delay` seconds: 503
    while `closed`, 200 otherwise. It sends no responses."""

    dso_key: PrivateKeys
    delay: float = 0.05
    closed: bool = False
    port: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    in_progress: int = 0
    most_in_progress: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/shapeshifter/api/v3/message"

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.in_progress += 1
        self.most_in_progress = max(self.most_in_progress, self.in_progress)
        try:
            body = await request.read()
            signed = envelope.parse_envelope(body)
            inner = envelope.open_sealed(signed.sealed, [self.dso_key.public.signing])
            message = codec.decode(inner)
            await asyncio.sleep(self.delay)
            if self.closed:
                return web.Response(status=503, text="not yet\n")
            self.accepted[message.message_id] += 1
            return web.Response(text="OK\n")
        finally:
            self.in_progress -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/shapeshifter/api/v3/message", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def peer(keys: Path) -> AsyncIterator[CountingPeer]:
    counting = CountingPeer(load_private(keys / "dso.key"))
    await counting.start()
    try:
        yield counting
    finally:
        await counting.stop()


class Processes:
    """Child processes of one test, ended whatever happens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Process] = []

    async def driver(self, name: str, config: Path, count: int) -> Process:
        argv = [sys.executable, "-m", "tests.resilience.shared_driver", "--config", str(config)]
        argv += ["--count", str(count), "--to", CRO]
        return await self._start(Process(name, argv, self.root / f"{name}.log"))

    async def serve(self, name: str, config: Path) -> Process:
        argv = [sys.executable, "-m", "adapter", "-v", "serve", "--config", str(config)]
        process = await self._start(Process(name, argv, self.root / f"{name}.log"))
        await process.until_line(lambda line: line.startswith("serving"), 60)
        return process

    async def _start(self, process: Process) -> Process:
        await process.start()
        self.started.append(process)
        return process

    async def close(self) -> None:
        for process in self.started:
            with contextlib.suppress(Exception):
                await process.terminate(10)
            await process.ensure_dead()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    children = Processes(tmp_path)
    try:
        yield children
    finally:
        await children.close()


async def outbound_status(schema: str) -> Counter[str]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f"SELECT status, count(*) AS n FROM {schema}.outbound GROUP BY 1")
    finally:
        await conn.close()
    return Counter({row["status"]: row["n"] for row in rows})


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = condition() if callable(condition) else condition
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def test_three_processes_deliver_every_message_once_within_one_cap(
    tmp_path: Path, keys: Path, schema: str, peer: CountingPeer, processes: Processes
) -> None:
    """Three processes each queue a burst while the peer refuses (503), so that each starts
    with the others' messages pending in the store; then the peer accepts. Each message is
    accepted exactly once, and the peer never has more than the cap in progress."""
    peer.closed = True
    peer.delay = 0.02
    drivers = []
    for name in ("a", "b", "c"):
        config = dso_config(tmp_path, keys, schema, name, peer.url)
        drivers.append(await processes.driver(name, config, 30))
    for driver in drivers:
        await driver.until(lambda event: event["event"] == "burst", 60)
    await asyncio.sleep(2 * LEASE_SECONDS)  # every process has polled the store meanwhile
    assert (await outbound_status(schema))["pending"] == 90

    peer.closed = False
    await until(lambda: len(peer.accepted) == 90, 60, "every message accepted")
    await asyncio.sleep(1.0)  # a copy sent twice would have arrived by now

    sent = {event["message_id"] for d in drivers for event in d.events if event["event"] == "sent"}
    assert set(peer.accepted) == sent and len(sent) == 90
    assert [m for m, n in peer.accepted.items() if n != 1] == []
    assert peer.most_in_progress <= PER_PEER
    assert await outbound_status(schema) == Counter({"delivered": 90})


async def test_a_process_killed_mid_burst_loses_nothing(
    tmp_path: Path, keys: Path, schema: str, peer: CountingPeer, processes: Processes
) -> None:
    """A process is SIGKILLed while it delivers its burst: its claims lapse and the other
    process delivers the rest. Only what was on the wire at the kill (at most the cap) may
    arrive twice, which the receiver's duplicate check answers."""
    peer.delay = 0.05
    survivor = await processes.serve("survivor", dso_config(tmp_path, keys, schema, "b", peer.url))
    victim = await processes.driver("victim", dso_config(tmp_path, keys, schema, "a", peer.url), 60)
    await victim.until(lambda event: event["event"] == "burst", 60)
    await until(lambda: len(peer.accepted) >= 10, 30, "the victim delivering")

    victim.kill()
    await victim.wait()
    left = (await outbound_status(schema))["pending"]
    assert left > 10  # the survivor has work to take over

    await until(lambda: len(peer.accepted) == 60, 30, "the survivor delivering the rest")
    await asyncio.sleep(1.0)
    assert sum(1 for n in peer.accepted.values() if n > 1) <= PER_PEER
    assert peer.most_in_progress <= PER_PEER
    assert await outbound_status(schema) == Counter({"delivered": 60})
    assert survivor.returncode is None


async def test_a_response_posted_to_another_process_reaches_the_waiting_request(
    tmp_path: Path, keys: Path, schema: str, processes: Processes
) -> None:
    """request() runs here, in process A; the CRO answers to process B (a load balancer in
    front of both would choose either; here the CRO knows only B's address)."""
    b_port = free_port()
    cro_config = write_config(
        tmp_path / "cro.toml",
        domain=CRO,
        role="CRO",
        key=keys / "cro.key",
        port=free_port(),
        store=f"sqlite:{tmp_path / 'cro.sqlite3'}",
        peer_domain=DSO,
        peer_role="DSO",
        peer_url=f"http://127.0.0.1:{b_port}/shapeshifter/api/v3/message",
        peer_pub=keys / "dso.pub",
        extra='[cro]\nmode = "open"\n',
    )
    cro = participant_for(load_config(cro_config))
    await cro.start()
    a: Participant | None = None
    try:
        await processes.serve("b", dso_config(tmp_path, keys, schema, "b", cro.url(), b_port))
        a = participant_for(load_config(dso_config(tmp_path, keys, schema, "a", cro.url())))
        await a.start()

        update = portfolio_update(0, 2)
        accepted = await a.request(update, to=CRO, timeout=30)
        assert accepted.result is Result.ACCEPTED
        point = update.congestion_points[0]
        queries = [
            DSOPortfolioQuery(
                time_zone=update.time_zone,
                period=point.start_period,
                entity_address=point.entity_address,
            )
            for _ in range(8)
        ]
        answers = await asyncio.gather(*(a.request(q, to=CRO, timeout=30) for q in queries))

        assert [r.result for r in answers] == [Result.ACCEPTED] * 8
        assert len({r.reference_message_id for r in answers}) == 8
        assert all(isinstance(r, DSOPortfolioQueryResponse) for r in answers)
        assert a.waiters.awaiting() == []
    finally:
        if a is not None:
            await a.stop()
        await cro.stop()


async def test_what_a_killed_process_left_unhandled_is_handled_once_by_another(
    tmp_path: Path, keys: Path, schema: str, processes: Processes
) -> None:
    """Two CRO processes on one store; the DSO posts its burst to the first, which runs the
    store's recovery and is SIGKILLed while messages it acknowledged wait to be handled. The
    second takes the recovery over when the first's connection ends, and handles them once
    their claims lapse; the responses the first had queued go out from the second. Then the
    first comes back, for the DSO's requests still pending (the DSO knows its address only):
    every update is applied once and answered once."""
    dso_port, first_port, second_port = free_port(), free_port(), free_port()
    dso_url = f"http://127.0.0.1:{dso_port}/shapeshifter/api/v3/message"
    cro_configs = [
        write_config(
            tmp_path / f"cro-{name}.toml",
            domain=CRO,
            role="CRO",
            key=keys / "cro.key",
            port=port,
            store=store_url(schema),
            peer_domain=DSO,
            peer_role="DSO",
            peer_url=dso_url,
            peer_pub=keys / "dso.pub",
            extra='[cro]\nmode = "open"\ntime_zone = "Europe/Amsterdam"\n',
        )
        for name, port in (("first", first_port), ("second", second_port))
    ]
    dso_store = tmp_path / "dso.sqlite3"
    dso_config = write_config(
        tmp_path / "dso.toml",
        domain=DSO,
        role="DSO",
        key=keys / "dso.key",
        port=dso_port,
        store=f"sqlite:{dso_store}",
        peer_domain=CRO,
        peer_role="CRO",
        peer_url=f"http://127.0.0.1:{first_port}/shapeshifter/api/v3/message",
        peer_pub=keys / "cro.pub",
    )
    first = await processes.serve("first", cro_configs[0])  # it takes the recovery
    second = await processes.serve("second", cro_configs[1])
    argv = [sys.executable, "-m", "tests.resilience.dso_driver", "--config", str(dso_config)]
    now = datetime.now(UTC).isoformat()  # frozen: no update is older than one applied
    argv += ["--count", "30", "--connections", "800", "--time-stamp", now]
    dso = await processes._start(Process("dso", argv, tmp_path / "dso.log"))
    await dso.until(lambda e: e["event"] == "progress" and e["delivered"] >= 2, 60)

    first.kill()
    await first.wait()
    left = await inbound_status(schema)
    assert left["received"] >= 1, left  # acknowledged, not handled: the second's to handle

    await until(lambda: inbound_status(schema, unhandled_only=True), 30, "the second handling them")
    assert "taking over" in (tmp_path / "second.log").read_text()
    again = await processes.serve("first-again", cro_configs[0])
    done = await dso.until(lambda e: e["event"] == "done", 120)
    assert done["requests"] == 30
    await dso.terminate()
    for process in (second, again):
        await process.terminate()

    conn = await asyncpg.connect(PG_DSN)
    try:
        applied = await conn.fetch(
            f"SELECT message_id, count(*) AS n FROM {schema}.cro_update "
            "WHERE kind = 'dso' GROUP BY message_id"
        )
        answers = await conn.fetch(
            f"SELECT reference_message_id, count(*) AS n FROM {schema}.outbound "
            "WHERE message_type = 'DSOPortfolioUpdateResponse' GROUP BY 1"
        )
    finally:
        await conn.close()
    assert len(applied) == 30 and {row["n"] for row in applied} == {1}
    assert len(answers) == 30 and {row["n"] for row in answers} == {1}
    with open_read_only(dso_store) as read:
        sender = read_sender(read)
    assert sender.delivered == 30
    assert Counter(sender.answers().values()) == Counter({1: 30})
    assert {result for _, result, _ in sender.responses.values()} == {Result.ACCEPTED}


async def inbound_status(schema: str, *, unhandled_only: bool = False) -> Counter[str] | bool:
    """The CRO's inbound messages by status; with `unhandled_only`, whether none is left."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f"SELECT status, count(*) AS n FROM {schema}.inbound GROUP BY 1")
    finally:
        await conn.close()
    counts = Counter({row["status"]: row["n"] for row in rows})
    return counts["received"] == 0 if unhandled_only else counts
