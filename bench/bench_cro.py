"""The CRO's time and memory for one large DSOPortfolioUpdate, from the POST to the response
being queued.

A DSOPortfolioUpdate of 100 congestion points x 1,000 connections (100,000 connections, a
signed envelope of about 10 MB) is POSTed raw with aiohttp to a real CRO participant on
loopback (the CRO's register handlers, its store in a temporary directory). Timed, with
`time.perf_counter`:

* **until 200**: from the start of the POST until the client has HTTP 200: the CRO reads
  the body, parses the SignedMessage, verifies the signature, parses and schema-validates
  the inner XML, builds the models and stores the inbound message durably;
* **until queued**: from the 200 until the response is queued in the CRO's outbox
  (`Outbox.deliver_now`): the handler judges the update, and the register checks and
  stores it in one transaction, then the response is stored with the inbound message
  marked handled. Of which **register**: the `apply_dso_update` call alone.

The client runs in a thread with its own event loop, so that it notices the 200 while the
CRO's loop is busy with the handler. Memory: the growth of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before the POST; ru_maxrss where that is not
possible) over the resident set just before; and, in a second run of the same scenario
with tracemalloc on (slower, not timed), the peak of Python allocations.

Scenarios (each on a fresh CRO and store):

* **first**: the update arrives at an empty register;
* **crowded**: another DSO's 100,000 connections are registered already, so the conflict
  check finds candidates in the index for real;
* **resend**: the same portfolio again (a new MessageID): recognised unchanged, nothing
  rewritten.

    .venv/bin/python bench/bench_cro.py                  # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/bench_cro.py --no-postgres
    .venv/bin/python bench/bench_cro.py --repeat 3       # median of 3 timed runs each

Prints the figures and PASS/FAIL against the targets (total < 1 s, peak growth < 300 MB),
exit status 1 when one is missed. Times are wall-clock: load on the machine shows in them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.directory import Peer, StaticDirectory
from adapter.keys import generate
from adapter.participant import Participant
from adapter.store import register_for
from adapter.store.register import PortfolioRegister, UpdateMeta
from adapter.store.sqlite import SqliteStore
from adapter.uftp import codec, envelope
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
TARGET_SECONDS = 1.0
TARGET_MB = 300.0
PG_DSN = os.environ.get("UFTP_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
CONTENT_TYPE = "text/xml; charset=utf-8"


# --- the message ---------------------------------------------------------------------------


def portfolio(prefix: str, seed: int) -> tuple[DSOPortfolioUpdateCongestionPoint, ...]:
    """100 x 1,000 connections with realistic, scattered EAN codes (as a real grid's are)."""
    rng = random.Random(seed)
    codes = rng.sample(range(10**11, 10**12), POINTS * CONNECTIONS)
    start = date(2024, 1, 1)
    return tuple(
        DSOPortfolioUpdateCongestionPoint(
            entity_address=f"ea1.2024-01.nl.example-grid:{prefix}-{p:03d}",
            start_period=start,
            mutex_offers_supported=True,
            day_ahead_redispatch_by=RedispatchBy.DSO,
            connections=tuple(
                DSOPortfolioUpdateConnection(f"ean.871685{codes[p * CONNECTIONS + c]:012d}", start)
                for c in range(CONNECTIONS)
            ),
        )
        for p in range(POINTS)
    )


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


# --- one run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    until_200: float
    until_queued: float
    register: float
    peak_growth_mb: float | None = None
    traced_peak_mb: float | None = None

    @property
    def total(self) -> float:
        return self.until_200 + self.until_queued


class TimedRegister:
    """The register, with the duration of its last `apply_dso_update` call."""

    def __init__(self, inner: PortfolioRegister) -> None:
        self._inner = inner
        self.last_apply = 0.0

    async def apply_dso_update(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.apply_dso_update(*args, **kwargs)
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


def post_in_thread(url: str, body: bytes) -> tuple[float, float, int]:
    """POST `body` from a thread with its own loop; (start, 200 received, status)."""
    result: list[tuple[float, float, int]] = []

    async def post() -> None:
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"Content-Type": CONTENT_TYPE}
            ) as response:
                await response.read()
                result.append((started, time.perf_counter(), response.status))

    thread = threading.Thread(target=lambda: asyncio.run(post()), name="bench-client")
    thread.start()
    thread.join()
    return result[0]


async def run_once(
    make_store: Callable[[], Any],
    scenario: str,
    *,
    traced: bool,
) -> Run:
    keys = generate()
    store = make_store()
    sink = Sink()
    sink_url = await sink.start()
    cro = Participant(
        domain=CRO,
        role=Role.CRO,
        keys=generate(),
        store=store,
        directory=StaticDirectory([Peer(DSO, Role.DSO, sink_url, (keys.public.signing,))]),
    )
    register = TimedRegister(register_for(store))
    cro.router.include(cro_router(register, CroSettings()))  # type: ignore[arg-type]
    await cro.start()
    try:
        mine = portfolio("cp", seed=1)
        stamp = datetime.now(UTC) - timedelta(minutes=1)
        if scenario == "crowded":
            others = portfolio("other", seed=2)
            meta = UpdateMeta(OTHER_DSO, str(uuid.uuid4()), stamp, stamp)
            await register.apply_dso_update(meta, others, lambda state: None)  # type: ignore[arg-type]
            del others
        if scenario == "resend":
            meta = UpdateMeta(DSO, str(uuid.uuid4()), stamp, stamp)
            await register.apply_dso_update(meta, mine, lambda state: None)  # type: ignore[arg-type]
        message_id, body = sealed_update(mine, keys.signing, datetime.now(UTC))
        del mine

        queued = asyncio.Event()
        queued_at: list[float] = []
        deliver_now = cro.outbox.deliver_now

        def on_queued(record: Any) -> None:
            if record.reference_message_id == message_id:
                queued_at.append(time.perf_counter())
                queued.set()
            deliver_now(record)

        cro.outbox.deliver_now = on_queued  # type: ignore[method-assign]

        gc.collect()
        can_reset = reset_peak()
        baseline_rss = rss_kb() if can_reset else peak_kb()
        if traced:
            tracemalloc.start()
        started, ok_at, status = await asyncio.to_thread(post_in_thread, cro.url(), body)
        if status != 200:
            raise RuntimeError(f"the CRO answered HTTP {status}")
        await asyncio.wait_for(queued.wait(), timeout=120)
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
        if traced:
            tracemalloc.stop()
        peak_growth = (peak_kb() - baseline_rss) / 1024
        response = await cro.store.get_inbound(DSO, message_id)
        assert response is not None and response.status == "handled"
        return Run(
            until_200=ok_at - started,
            until_queued=queued_at[0] - ok_at,
            register=register.last_apply,
            peak_growth_mb=None if traced else peak_growth,
            traced_peak_mb=None if traced_peak is None else traced_peak / 2**20,
        )
    finally:
        await cro.stop()
        await sink.stop()


# --- backends ------------------------------------------------------------------------------


def sqlite_stores(folder: Path) -> Callable[[], Any]:
    def make() -> SqliteStore:
        return SqliteStore(folder / f"cro-{uuid.uuid4().hex[:8]}.sqlite3")

    return make


async def postgres_stores() -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    """A factory of PostgresStores on fresh schemas, and a cleanup; None without a server."""
    try:
        import asyncpg

        from adapter.store.postgres import PostgresStore
    except ImportError:
        return None
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    schemas: list[str] = []

    def make() -> Any:
        schema = f"bench_cro_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        return PostgresStore(PG_DSN, schema=schema)

    async def cleanup() -> None:
        for schema in schemas:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()

    return make, cleanup


# --- main ----------------------------------------------------------------------------------


def calibration() -> float:
    """Seconds for a plain Python loop: how fast this machine runs Python right now."""
    started = time.perf_counter()
    total = 0
    for n in range(10_000_000):
        total += n
    return time.perf_counter() - started


def _line(label: str, runs: list[Run], memory: Run) -> tuple[str, bool]:
    until_200 = statistics.median(r.until_200 for r in runs)
    until_queued = statistics.median(r.until_queued for r in runs)
    register = statistics.median(r.register for r in runs)
    total = statistics.median(r.total for r in runs)
    growth = max(r.peak_growth_mb or 0.0 for r in runs)
    traced = memory.traced_peak_mb or 0.0
    ok = total < TARGET_SECONDS and growth < TARGET_MB and traced < TARGET_MB
    text = (
        f"{label:<20} until 200 {until_200:6.3f} s | until queued {until_queued:6.3f} s "
        f"(register {register:6.3f} s) | total {total:6.3f} s | peak RSS growth "
        f"{growth:6.1f} MB | tracemalloc peak {traced:6.1f} MB | {'PASS' if ok else 'FAIL'}"
    )
    return text, ok


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per scenario")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("first", "crowded", "resend"),
        help="run only these (repeatable); default: all",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    scenarios = args.scenario or ["first", "crowded", "resend"]
    backends: list[tuple[str, Callable[[], Any]]] = []
    cleanups = []
    folder = Path(tempfile.mkdtemp(prefix="bench_cro_"))
    backends.append(("sqlite", sqlite_stores(folder)))
    if not args.no_postgres:
        pg = await postgres_stores()
        if pg is None:
            print(f"PostgreSQL at {PG_DSN} not reachable: SQLite only", file=sys.stderr)
        else:
            backends.append(("postgres", pg[0]))
            cleanups.append(pg[1])

    print(
        f"DSOPortfolioUpdate of {POINTS} x {CONNECTIONS:,} connections; targets: total "
        f"< {TARGET_SECONDS:g} s, peak growth < {TARGET_MB:g} MB; "
        f"median of {args.repeat} run(s)\nmachine: {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, 10M-iteration Python loop in {calibration():.2f} s "
        "(to compare machines)"
    )
    all_ok = True
    try:
        for name, make in backends:
            for scenario in scenarios:
                runs = [await run_once(make, scenario, traced=False) for _ in range(args.repeat)]
                memory = await run_once(make, scenario, traced=True)
                text, ok = _line(f"{name} {scenario}", runs, memory)
                all_ok &= ok
                print(text, flush=True)
    finally:
        for cleanup in cleanups:
            await cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    print("PASS" if all_ok else "FAIL")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
