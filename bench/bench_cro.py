"""The CRO's time and memory for one large DSOPortfolioUpdate, from the POST to the response
being queued, against registers of several sizes, on SQLite and PostgreSQL.

A DSOPortfolioUpdate of 100 congestion points x 1,000 connections (100,000 connections, a
signed envelope of about 10 MB) is POSTed raw with aiohttp to a real CRO participant on
loopback (the CRO's register handlers, its store). Timed, with `time.perf_counter`:

* **until 200**: from the start of the POST until the client has HTTP 200: the CRO reads
  the body, parses the SignedMessage, verifies the signature, parses and schema-validates
  the inner XML, builds the models and stores the inbound message durably;
* **until queued**: from the 200 until the response is queued in the CRO's outbox
  (`Outbox.deliver_now`): the handler judges the update, and the register checks and
  stores it in one transaction, then the response is stored with the inbound message
  marked handled. Of which **register**: the `apply_dso_update` call alone.

Register sizes (`--sizes`, default 0, 100k and 1M): the connections of another DSO
registered before the update arrives (points of 1,000 connections), so that the conflict
check finds candidates in the index for real and the tables are as large as a national
register's. They are loaded through the register itself, 100,000 connections an update
(COPY on PostgreSQL, multi-row INSERTs on SQLite), by a process of their own; then, on
PostgreSQL, the tables are analyzed, autovacuum is turned off for them and a CHECKPOINT is
taken, and the loader syncs the disk, so that neither an autovacuum run nor the writing out
of what the loader wrote lands inside a measurement.

Scenarios, at each size:

* **new**: the portfolio arrives for the first time;
* **resend**: the same portfolio again (a new MessageID): recognised unchanged, nothing
  rewritten.

Every run is a fresh process on a freshly loaded register, so no figure depends on the runs
before it; with `--repeat N`, N rounds each run every case once, so that a change of load on
the machine in the meantime touches every case alike. Memory: the growth of that process's
peak resident set (VmHWM, reset through /proc/self/clear_refs just before the POST;
ru_maxrss where that is not possible) over the resident set just before; and, in one more
run with tracemalloc on (slower, not timed), the peak of Python allocations.

    .venv/bin/python bench/bench_cro.py                        # both stores, all sizes
    .venv/bin/python bench/bench_cro.py --stores sqlite --sizes 0,100k
    .venv/bin/python bench/bench_cro.py --repeat 3 --scenario new

PostgreSQL: `--postgres-dsn`, default $UFTP_TEST_POSTGRES_DSN or
postgresql://postgres@127.0.0.1:5432/test; each run uses a schema of its own, dropped after.
A DSN without a user, or a server that cannot be reached, is an error (exit status 2), not a
reason to measure SQLite alone: ask for that with `--stores sqlite`.

Prints the figures and PASS/FAIL against the targets (total < 1 s on SQLite and < 1.5 s on
PostgreSQL at every size, peak growth < 300 MB), exit status 1 when one is missed. Times
are wall-clock: load on the machine shows in them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import math
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.directory import Peer, StaticDirectory
from adapter.keys import generate
from adapter.participant import Participant
from adapter.settings import Limits
from adapter.store import register_for
from adapter.store.register import PointDefinition, PortfolioRegister, UpdateMeta
from adapter.store.sqlite import SqliteStore
from adapter.uftp import codec, envelope
from adapter.uftp.errors import Rejection
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
    Role,
)

CRO = "cro.example.com"
DSO = "dso.example-grid.nl"
OTHER_DSO = "dso2.example-grid.nl"
POINTS, CONNECTIONS = 100, 1000
#: Connections of the other DSO per loading update.
LOAD_CHUNK = 100_000
TARGET_SECONDS = {"sqlite": 1.0, "postgres": 1.5}
TARGET_MB = 300.0
PG_DSN = os.environ.get("UFTP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONTENT_TYPE = "text/xml; charset=utf-8"
STORES = ("sqlite", "postgres")
SCENARIOS = ("new", "resend")


# --- the messages ----------------------------------------------------------------------------


def portfolio(
    prefix: str, seed: int, *, points: int = POINTS, ean: str = "871685", first: int = 0
) -> tuple[DSOPortfolioUpdateCongestionPoint, ...]:
    """`points` x 1,000 connections with realistic, scattered EAN codes (as a real grid's
    are). The measured DSO's codes start 871685, the other DSO's 871686: never the same."""
    rng = random.Random(seed)
    codes = rng.sample(range(10**11, 10**12), points * CONNECTIONS)
    start = date(2024, 1, 1)
    return tuple(
        DSOPortfolioUpdateCongestionPoint(
            entity_address=f"ea1.2024-01.nl.example-grid:{prefix}-{first + p:05d}",
            start_period=start,
            mutex_offers_supported=True,
            day_ahead_redispatch_by=RedispatchBy.DSO,
            connections=tuple(
                DSOPortfolioUpdateConnection(f"ean.{ean}{codes[p * CONNECTIONS + c]:012d}", start)
                for c in range(CONNECTIONS)
            ),
        )
        for p in range(points)
    )


def definitions(
    points: Sequence[DSOPortfolioUpdateCongestionPoint],
) -> list[PointDefinition]:
    """The points as the register stores them (what the CRO's rules make of a message)."""
    return [
        PointDefinition(
            p.entity_address,
            p.start_period,
            p.end_period,
            p.mutex_offers_supported,
            p.day_ahead_redispatch_by,
            p.intraday_redispatch_by,
            p.connections,
        )
        for p in points
    ]


def sealed_update(
    points: Sequence[DSOPortfolioUpdateCongestionPoint], secret: bytes, stamp: datetime
) -> tuple[str, bytes]:
    message = DSOPortfolioUpdate(
        version="3.1.0",
        sender_domain=DSO,
        recipient_domain=CRO,
        time_stamp=stamp,
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        time_zone="Europe/Amsterdam",
        congestion_points=tuple(points),
    )
    inner = codec.encode(message)
    return message.message_id, envelope.seal(inner, secret, DSO, Role.DSO)


# --- where a run's register lives ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """One run's store: an SQLite file, or a schema of the PostgreSQL database."""

    store: str
    location: str  # the file's path, or the schema's name
    dsn: str = ""

    def open_store(self) -> Any:
        if self.store == "sqlite":
            return SqliteStore(Path(self.location))
        from adapter.store.postgres import PostgresStore

        return PostgresStore(self.dsn, schema=self.location)


# --- memory --------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def rss_kb() -> int:
    return _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- loading a register (in a process of its own) -------------------------------------------


async def load(target: Target, size: int, scenario: str) -> dict[str, float]:
    """Register `size` connections of another DSO (and, for a resend, the measured DSO's
    portfolio itself) in `target`; the seconds it took."""
    store = target.open_store()
    await store.open()
    started = time.perf_counter()
    try:
        register = register_for(store)
        stamp = datetime.now(UTC) - timedelta(minutes=5)
        accept = lambda state: None  # noqa: E731 - the loader judges nothing
        for first in range(0, size, LOAD_CHUNK):
            count = min(LOAD_CHUNK, size - first)
            points = portfolio(
                "other",
                seed=1000 + first,
                points=-(-count // CONNECTIONS),
                ean="871686",
                first=first // CONNECTIONS,
            )
            meta = UpdateMeta(OTHER_DSO, f"load-{first}", stamp, stamp)
            await register.apply_dso_update(meta, definitions(points), accept)
        if scenario == "resend":
            meta = UpdateMeta(DSO, "first", stamp, stamp)
            await register.apply_dso_update(meta, definitions(portfolio("cp", seed=1)), accept)
        loaded = time.perf_counter() - started
        if target.store == "postgres":
            await register.analyzed()  # type: ignore[attr-defined]  # the register's own

            async def settle(conn: Any) -> list[str]:
                tables: list[str] = [
                    row[0]
                    for row in await conn.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = $1", target.location
                    )
                ]
                for table in tables:
                    await conn.execute(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)')
                return tables

            # This schema's tables only, one a transaction: an ANALYZE of the whole database
            # in one transaction holds a lock on every table it has counted, other users'
            # too, and deadlocked with another such ANALYZE on the shared server.
            for table in await store.run(settle):

                async def analyze(conn: Any, table: str = table) -> None:
                    await conn.execute(f'ANALYZE "{table}"')

                await store.run(analyze)
            await checkpoint(store)
        return {"load_seconds": loaded}
    finally:
        await store.close()
        os.sync()  # the loader's writes reach the disk before, not during, the measurement


async def checkpoint(store: Any) -> None:
    """CHECKPOINT, where the DSN's user may: the WAL of a million rows loaded would otherwise
    be written out by a checkpoint during the measurement."""
    import asyncpg

    async def op(conn: Any) -> None:
        await conn.execute("CHECKPOINT")

    try:
        await store.run(op)
    except asyncpg.InsufficientPrivilegeError:
        print("bench_cro: no CHECKPOINT (not permitted for this user)", file=sys.stderr)


# --- one measured run (in a process of its own) ---------------------------------------------


# --- CPU time ------------------------------------------------------------------------------


def _thread_cpu(pid: int) -> float | None:
    """CPU seconds of process `pid` so far (/proc/PID/schedstat, nanoseconds); None where it
    cannot be read (another machine's server, no /proc)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class ServerCpu:
    """The CPU time of the PostgreSQL backends that serve this process: each connection the
    store's pool opens is noted by its backend's pid (the server forks one per connection),
    and their CPU time is read from /proc where the server runs on this machine."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def install(self) -> None:
        import asyncpg.connection

        connect = asyncpg.connection.connect

        async def noted(*args: Any, **kwargs: Any) -> Any:
            conn = await connect(*args, **kwargs)
            self.pids.append(conn.get_server_pid())
            return conn

        asyncpg.connection.connect = noted  # the pool looks it up when it is made

    def seconds(self) -> float | None:
        """The backends' CPU seconds so far; None when there are none (SQLite) or one
        cannot be read."""
        if not self.pids:
            return None
        total = 0.0
        for pid in self.pids:
            cpu = _thread_cpu(pid)
            if cpu is None:
                return None
            total += cpu
        return total


@dataclasses.dataclass
class Run:
    until_200: float
    until_queued: float
    register: float
    peak_growth_mb: float | None = None
    traced_peak_mb: float | None = None
    #: CPU seconds of the CRO's process (with the thread that posts) to the 200 and after
    #: it, and of its PostgreSQL backends from the POST until queued (None: SQLite, whose
    #: work is in the CRO's process, or a server whose /proc is out of reach).
    cpu_until_200: float = 0.0
    cpu_after_200: float = 0.0
    server_cpu: float | None = None

    @property
    def total(self) -> float:
        return self.until_200 + self.until_queued


class TimedRegister:
    """The register, with the duration of its last `apply_dso_update` call and what it
    raised, if anything."""

    def __init__(self, inner: PortfolioRegister) -> None:
        self._inner = inner
        self.last_apply = 0.0
        self.rejection: Rejection | None = None

    async def apply_dso_update(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.apply_dso_update(*args, **kwargs)
        except Rejection as exc:
            self.rejection = exc
            raise
        finally:
            self.last_apply = time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Sink:
    """The DSO's endpoint: takes the CRO's response and says 200."""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/shapeshifter/api/v3/message", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/shapeshifter/api/v3/message"

    async def _post(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK\n")

    async def stop(self) -> None:
        await self._runner.cleanup()


def post_in_thread(url: str, body: bytes) -> tuple[float, float, int, float, float]:
    """POST `body` from a thread with its own loop; (start, 200 received, status, and the
    process's CPU seconds at the start and at the 200)."""
    result: list[tuple[float, float, int, float, float]] = []

    async def post() -> None:
        async with aiohttp.ClientSession() as session:
            cpu_started = time.process_time()
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"Content-Type": CONTENT_TYPE}
            ) as response:
                await response.read()
                result.append(
                    (
                        started,
                        time.perf_counter(),
                        response.status,
                        cpu_started,
                        time.process_time(),
                    )
                )

    thread = threading.Thread(target=lambda: asyncio.run(post()), name="bench-client")
    thread.start()
    thread.join()
    return result[0]


async def measure(target: Target, *, traced: bool) -> Run:
    """POST the portfolio to a CRO on `target`'s register and time it (see the docstring)."""
    keys = generate()
    server = ServerCpu()
    if target.store == "postgres":
        server.install()
    store = target.open_store()
    sink = Sink()
    sink_url = await sink.start()
    cro = Participant(
        domain=CRO,
        role=Role.CRO,
        keys=generate(),
        store=store,
        directory=StaticDirectory([Peer(DSO, Role.DSO, sink_url, (keys.public.signing,))]),
        limits=Limits(rate_per_sender=math.inf, handlers_per_sender=None, deliveries_per_peer=None),
    )
    register = TimedRegister(register_for(store))
    cro.router.include(cro_router(register, CroSettings()))
    await cro.start()
    try:
        mine = portfolio("cp", seed=1)
        message_id, body = sealed_update(mine, keys.signing, datetime.now(UTC))
        del mine

        queued = asyncio.Event()
        queued_at: list[float] = []
        cpu_queued: list[tuple[float, float | None]] = []
        deliver_now = cro.outbox.deliver_now

        def on_queued(record: Any) -> None:
            if record.reference_message_id == message_id:
                queued_at.append(time.perf_counter())
                cpu_queued.append((time.process_time(), server.seconds()))
                queued.set()
            deliver_now(record)

        cro.outbox.deliver_now = on_queued  # type: ignore[method-assign]

        gc.collect()
        can_reset = reset_peak()
        baseline_rss = rss_kb() if can_reset else peak_kb()
        if traced:
            tracemalloc.start()
        server_started = server.seconds()
        started, ok_at, status, cpu_started, cpu_ok = await asyncio.to_thread(
            post_in_thread, cro.url(), body
        )
        if status != 200:
            raise RuntimeError(f"the CRO answered HTTP {status}")
        await asyncio.wait_for(queued.wait(), timeout=300)
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
        if traced:
            tracemalloc.stop()
        peak_growth = (peak_kb() - baseline_rss) / 1024
        if register.rejection is not None:
            raise RuntimeError(f"the CRO rejected the update: {register.rejection}")
        response = await cro.store.get_inbound(DSO, message_id)
        assert response is not None and response.status == "handled"
        return Run(
            until_200=ok_at - started,
            until_queued=queued_at[0] - ok_at,
            register=register.last_apply,
            peak_growth_mb=None if traced else peak_growth,
            traced_peak_mb=None if traced_peak is None else traced_peak / 2**20,
            cpu_until_200=cpu_ok - cpu_started,
            cpu_after_200=cpu_queued[0][0] - cpu_ok,
            server_cpu=(
                None
                if server_started is None or cpu_queued[0][1] is None
                else cpu_queued[0][1] - server_started
            ),
        )
    finally:
        await cro.stop()
        await sink.stop()


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """What a child process does: load a register or measure one run."""
    logging.basicConfig(level=logging.WARNING)
    target = Target(**task["target"])
    if task["do"] == "load":
        return asyncio.run(load(target, task["size"], task["scenario"]))
    return dataclasses.asdict(asyncio.run(measure(target, traced=task["traced"])))


def in_fresh_process(task: dict[str, Any]) -> dict[str, Any]:
    """Run `worker(task)` in a new Python process; its result."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)],
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {task['do']} process failed (exit status {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


# --- the stores ----------------------------------------------------------------------------


class Backends:
    """Fresh targets for each run, and their removal."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.folder = Path(tempfile.mkdtemp(prefix="bench_cro_"))

    def new(self, store: str) -> Target:
        if store == "sqlite":
            return Target(store, str(self.folder / f"cro-{uuid.uuid4().hex[:8]}.sqlite3"))
        return Target(store, f"bench_cro_{uuid.uuid4().hex[:10]}", self.dsn)

    async def remove(self, target: Target) -> None:
        if target.store == "sqlite":
            for path in self.folder.glob(Path(target.location).name + "*"):
                path.unlink()
            return
        import asyncpg

        admin = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {target.location} CASCADE")
        finally:
            await admin.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


async def check_postgres(dsn: str) -> str | None:
    """Why the PostgreSQL DSN cannot be used, or None when it can."""
    if not urlsplit(dsn).username:
        return (
            f"the PostgreSQL DSN {dsn!r} names no user (it would connect as the operating "
            "system's user): give one, postgresql://USER@HOST:PORT/DATABASE"
        )
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"cannot connect to PostgreSQL at {dsn!r}: {exc}"
    await conn.close()
    return None


# --- main ----------------------------------------------------------------------------------


def calibration() -> float:
    """Seconds for a plain Python loop: how fast this machine runs Python right now."""
    started = time.perf_counter()
    total = 0
    for n in range(10_000_000):
        total += n
    return time.perf_counter() - started


def size_of(text: str) -> int:
    """`0`, `100000`, `100k`, `1M`."""
    match = re.fullmatch(r"([0-9]+)([kKmM]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a register size: {text!r} (e.g. 0, 100k, 1M)")
    return int(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2].lower()]


def sizes_of(text: str) -> list[int]:
    return [size_of(part) for part in text.split(",")]


def stores_of(text: str) -> list[str]:
    stores = [part.strip() for part in text.split(",")]
    unknown = [store for store in stores if store not in STORES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown store {unknown[0]!r} (sqlite, postgres)")
    return stores


def label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


def _line(store: str, size: int, scenario: str, runs: list[Run], memory: Run) -> tuple[str, bool]:
    until_200 = statistics.median(r.until_200 for r in runs)
    until_queued = statistics.median(r.until_queued for r in runs)
    register = statistics.median(r.register for r in runs)
    total = statistics.median(r.total for r in runs)
    growth = statistics.median(r.peak_growth_mb or 0.0 for r in runs)
    traced = memory.traced_peak_mb or 0.0
    ok = total < TARGET_SECONDS[store] and growth < TARGET_MB and traced < TARGET_MB
    cpu_200 = statistics.median(r.cpu_until_200 for r in runs)
    cpu_after = statistics.median(r.cpu_after_200 for r in runs)
    servers = [r.server_cpu for r in runs if r.server_cpu is not None]
    cpu_total = [
        r.cpu_until_200 + r.cpu_after_200 + (r.server_cpu or 0.0)
        for r in runs
        if store == "sqlite" or r.server_cpu is not None
    ]
    text = (
        f"{store:<8} {label(size):>5} {scenario:<7} until 200 {until_200:6.3f} s | until "
        f"queued {until_queued:6.3f} s (register {register:6.3f} s) | total {total:6.3f} s "
        f"[{' '.join(f'{r.total:.3f}' for r in runs)}] | CPU: CRO {cpu_200:5.3f} + "
        f"{cpu_after:5.3f} s, PostgreSQL "
        + (f"{statistics.median(servers):5.3f} s" if servers else "-")
        + (
            f", both {statistics.median(cpu_total):5.3f} s "
            f"[{' '.join(f'{c:.3f}' for c in cpu_total)}]"
            if cpu_total
            else ""
        )
        + f" | peak RSS growth {growth:6.1f} MB | tracemalloc peak {traced:6.1f} MB | "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return text, ok


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per case (median)")
    parser.add_argument(
        "--stores",
        type=stores_of,
        default=list(STORES),
        help="comma-separated: sqlite, postgres (default both)",
    )
    parser.add_argument(
        "--sizes",
        type=sizes_of,
        default=[0, 100_000, 1_000_000],
        help="connections of another DSO registered before the update, comma-separated "
        "(default 0,100k,1M)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only these (repeatable); default: all",
    )
    parser.add_argument("--postgres-dsn", default=PG_DSN, help=f"default {PG_DSN}")
    parser.add_argument("--no-traced", action="store_true", help="skip the tracemalloc run")
    args = parser.parse_args(argv)
    scenarios = args.scenario or list(SCENARIOS)
    if "postgres" in args.stores:
        problem = await check_postgres(args.postgres_dsn)
        if problem is not None:
            print(
                f"bench_cro: {problem}; or measure SQLite alone with --stores sqlite",
                file=sys.stderr,
            )
            return 2

    print(
        f"DSOPortfolioUpdate of {POINTS} x {CONNECTIONS:,} connections; targets: total "
        f"< {TARGET_SECONDS['sqlite']:g} s (SQLite), < {TARGET_SECONDS['postgres']:g} s "
        f"(PostgreSQL), peak growth < {TARGET_MB:g} MB; median of {args.repeat} run(s), "
        f"each in a fresh process\nmachine: {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, 10M-iteration Python loop in {calibration():.2f} s "
        "(to compare machines)",
        flush=True,
    )
    backends = Backends(args.postgres_dsn)
    cases = [
        (store, size, scenario)
        for store in args.stores
        for size in args.sizes
        for scenario in scenarios
    ]
    runs: dict[tuple[str, int, str], list[Run]] = {case: [] for case in cases}
    memory: dict[tuple[str, int, str], Run] = {}
    loads: dict[tuple[str, int, str], list[float]] = {case: [] for case in cases}
    # Round after round over all cases, so that load on the machine drifting in the
    # meantime touches every case alike; the tracemalloc runs last.
    rounds = [False] * args.repeat + [True] * (not args.no_traced)
    try:
        for number, traced in enumerate(rounds, 1):
            what = "tracemalloc run" if traced else f"round {number} of {args.repeat}"
            print(f"{what}: {len(cases)} cases", file=sys.stderr, flush=True)
            for case in cases:
                store, size, scenario = case
                target = backends.new(store)
                try:
                    task = {"target": dataclasses.asdict(target)}
                    loaded = in_fresh_process(
                        {**task, "do": "load", "size": size, "scenario": scenario}
                    )
                    loads[case].append(loaded["load_seconds"])
                    run = Run(**in_fresh_process({**task, "do": "measure", "traced": traced}))
                finally:
                    await backends.remove(target)
                if traced:
                    memory[case] = run
                else:
                    runs[case].append(run)
    finally:
        backends.close()
    all_ok = True
    for case in cases:
        text, ok = _line(*case, runs[case], memory.get(case) or Run(0, 0, 0))
        all_ok &= ok
        print(f"{text} | loaded in {statistics.median(loads[case]):.1f} s", flush=True)
    print("PASS" if all_ok else "FAIL")
    return 0 if all_ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
        sys.exit(0)
    sys.exit(asyncio.run(main()))
