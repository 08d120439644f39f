"""Round trips per second and CPU per round trip on PostgreSQL: a CRO of 1 or 2 worker processes.

One round trip: the DSO sends a 10 x 10 DSOPortfolioUpdate (10 congestion points of 10
connections) with `Participant.request()`, the CRO verifies, stores and handles it and sends
its DSOPortfolioUpdateResponse, and the DSO's request returns it. The CRO's handler accepts
without a register, as in bench_roundtrip.py, so that what is measured is the adapter and its
store. Both sides run on PostgreSQL (UFTP_TEST_POSTGRES_DSN), each on a fresh schema per run.

The CRO runs as ``serve --workers N`` runs it: one group of SO_REUSEPORT sockets per worker
on one port (`adapter.listen.bind_workers`), N forked processes sharing one schema, the
kernel spreading the DSO's connections over them. The DSO is one process, driving
`--concurrency` requests at a time.

For each configuration the bench reports round trips per second in the measured window and
the CPU time per round trip of the DSO, of the CRO (summed over its workers) and of the
PostgreSQL server processes serving them (their backends, found by application_name; shown
when their /proc entries are readable), read from /proc before and after the window, every
thread counted. Configurations are interleaved (1, 2, 1, 2, ...) so that a change in the
machine's load between runs shows as spread, not as a difference between configurations.

    .venv/bin/python bench/bench_workers.py                   # 3 rounds, 8 s each
    .venv/bin/python bench/bench_workers.py --rounds 1 --seconds 3   # a smoke run

Linux only (SO_REUSEPORT, /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PG_DSN = os.environ.get("UFTP_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")
APPLICATION = "uftp-bench-workers"
DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
CONGESTION_POINTS = 10
CONNECTIONS = 10
TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Run:
    workers: int
    #: "" for this checkout, " base" for `--baseline`'s.
    code: str
    round_trips: int
    errors: int
    seconds: float
    #: CPU seconds in the window: DSO, CRO (all workers), PostgreSQL backends (None: unread)
    cpu_dso: float
    cpu_cro: float
    cpu_pg: float | None
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.round_trips / self.seconds

    def per_round_trip(self, cpu: float | None) -> str:
        if cpu is None or not self.round_trips:
            return "   -  "
        return f"{1000 * cpu / self.round_trips:6.2f}"


# -- processes --------------------------------------------------------------------------------


def with_application(dsn: str, schema: str) -> str:
    """The store URL of `schema`, its connections named for pg_stat_activity."""
    joiner = "&" if "?" in dsn else "?"
    return f"{dsn}{joiner}application_name={APPLICATION}&schema={schema}"


def update(**metadata: Any) -> Any:
    from adapter.uftp.messages import (
        DSOPortfolioUpdate,
        DSOPortfolioUpdateCongestionPoint,
        DSOPortfolioUpdateConnection,
        RedispatchBy,
    )

    start = date(2024, 1, 1)
    points = tuple(
        DSOPortfolioUpdateCongestionPoint(
            entity_address=f"ea1.2024-01.nl.example-grid:cp-{p}",
            start_period=start,
            mutex_offers_supported=False,
            day_ahead_redispatch_by=RedispatchBy.DSO,
            connections=tuple(
                DSOPortfolioUpdateConnection(f"ean.{p:06d}{c:012d}", start)
                for c in range(CONNECTIONS)
            ),
        )
        for p in range(CONGESTION_POINTS)
    )
    return DSOPortfolioUpdate(time_zone="Europe/Amsterdam", congestion_points=points, **metadata)


def participant(role_name: str, secret: bytes, store_url: str, per_peer: int | None) -> Any:
    from adapter.directory import StaticDirectory
    from adapter.keys import PrivateKeys
    from adapter.participant import Participant
    from adapter.router import HandlerContext, Router
    from adapter.settings import Limits
    from adapter.store import open_store
    from adapter.uftp.messages import (
        DSOPortfolioUpdate,
        DSOPortfolioUpdateResponse,
        PayloadResponse,
        Role,
    )

    role = Role(role_name)
    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def handle(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
        assert sum(len(cp.connections) for cp in message.congestion_points) > 0
        return DSOPortfolioUpdateResponse()

    return Participant(
        domain=CRO if role is Role.CRO else DSO,
        role=role,
        keys=PrivateKeys(secret),
        store=open_store(store_url),
        directory=StaticDirectory([]),
        router=router if role is Role.CRO else None,
        # No rate limit nor per-sender cap: the load is one peer's. A per-peer cap of 16 is
        # `serve`'s (the configuration's default): on a shared store, each delivery then
        # takes and gives back one of the peer's advisory-lock slots.
        limits=Limits(
            rate_per_sender=math.inf, handlers_per_sender=None, deliveries_per_peer=per_peer
        ),
    )


def use_code(code: str | None) -> None:
    """Run the `adapter` of checkout `code` in this process (None: this checkout's); before
    anything imports it."""
    if code is not None:
        sys.path.insert(0, code)


def cro_parent(
    conn: Connection,
    workers: int,
    secret: bytes,
    store_url: str,
    dso: Any,
    per_peer: int | None,
    code: str | None = None,
) -> None:
    """Bind one SO_REUSEPORT group per worker, fork the workers, report their pids and the
    URL, and stop them (SIGTERM) when told."""
    use_code(code)
    from adapter.listen import bind_workers

    logging.basicConfig(level=logging.WARNING)
    guard, groups = bind_workers("127.0.0.1", 0, workers)
    port = groups[0][0].getsockname()[1]
    pids = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                for other, group in enumerate(groups):
                    if other != index:
                        for sock in group:
                            sock.close()
                asyncio.run(cro_worker(groups[index], secret, store_url, dso, per_peer))
            except BaseException:
                logging.exception("CRO worker failed")
                status = 1
            finally:
                os._exit(status)
        pids.append(pid)
    for sock in (s for group in groups for s in group):
        sock.close()
    conn.send((f"http://127.0.0.1:{port}/shapeshifter/api/v3/message", pids))
    conn.recv()  # stop
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        os.waitpid(pid, 0)
    if guard is not None:
        guard.close()
    conn.send("stopped")


async def cro_worker(
    sockets: list[Any], secret: bytes, store_url: str, dso: Any, per_peer: int | None
) -> None:
    cro = participant("CRO", secret, store_url, per_peer)
    cro.directory.add(dso)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await cro.start(sockets=sockets)
    await stop.wait()
    await cro.stop()


def dso_process(
    conn: Connection, secret: bytes, store_url: str, per_peer: int | None, code: str | None = None
) -> None:
    use_code(code)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_dso(conn, secret, store_url, per_peer))


async def _dso(conn: Connection, secret: bytes, store_url: str, per_peer: int | None) -> None:
    dso = participant("DSO", secret, store_url, per_peer)
    await dso.start()
    conn.send(dso.url())
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "peer":
            dso.directory.add(args[0])
            conn.send("ok")
        elif command == "run":
            conn.send(await _load(dso, *args))
        elif command == "stop":
            break
    await dso.stop()
    conn.send("stopped")


async def _load(
    dso: Any, concurrency: int, warmup: float, seconds: float
) -> tuple[list[float], int]:
    """`concurrency` tasks, each one round trip after the other; the latencies of those that
    ran inside the window after `warmup`, and how many failed there."""
    from adapter.uftp.messages import Result

    message = update()
    start = time.perf_counter() + warmup
    end = start + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (began := time.perf_counter()) < end:
            try:
                response = await dso.request(message, to=CRO, timeout=30)
                ok = response.result is Result.ACCEPTED
            except Exception:
                ok = False
            ended = time.perf_counter()
            if began >= start and ended <= end:
                if ok:
                    latencies.append(ended - began)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


# -- measuring --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of `pid` (all its threads), or None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def total(pids: list[int]) -> float | None:
    values = [cpu_seconds(pid) for pid in pids]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


async def backend_pids() -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APPLICATION
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def drop(schemas: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def one_run(
    workers: int,
    concurrency: int,
    warmup: float,
    seconds: float,
    per_peer: int | None,
    code: str | None = None,
) -> Run:
    from adapter.directory import Peer
    from adapter.keys import generate
    from adapter.uftp.messages import Role

    ctx = multiprocessing.get_context("spawn")
    tag = uuid.uuid4().hex[:8]
    schemas = [f"bench_w_dso_{tag}", f"bench_w_cro_{tag}"]
    dso_keys, cro_keys = generate(), generate()
    dso_here, dso_there = ctx.Pipe()
    dso = ctx.Process(
        target=dso_process,
        args=(dso_there, dso_keys.signing, with_application(PG_DSN, schemas[0]), per_peer, code),
    )
    dso.start()
    if not dso_here.poll(60):  # it died starting (a baseline of another API, say)
        dso.kill()
        raise RuntimeError("the DSO process did not start: see its traceback above")
    dso_url = dso_here.recv()
    dso_peer = Peer(DSO, Role.DSO, dso_url, (dso_keys.public.signing,))
    cro_here, cro_there = ctx.Pipe()
    cro = ctx.Process(
        target=cro_parent,
        args=(
            cro_there,
            workers,
            cro_keys.signing,
            with_application(PG_DSN, schemas[1]),
            dso_peer,
            per_peer,
            code,
        ),
    )
    cro.start()
    cro_url, cro_pids = cro_here.recv()
    dso_here.send(("peer", Peer(CRO, Role.CRO, cro_url, (cro_keys.public.signing,))))
    dso_here.recv()
    time.sleep(1.0)  # the workers listen and open their stores
    try:
        dso_here.send(("run", concurrency, warmup, seconds))
        time.sleep(warmup)
        backends = asyncio.run(backend_pids())
        before = (cpu_seconds(dso.pid or 0), total(cro_pids), total(backends))
        time.sleep(seconds)
        after = (cpu_seconds(dso.pid or 0), total(cro_pids), total(backends))
        latencies, errors = dso_here.recv()
    finally:
        dso_here.send(("stop",))
        dso_here.recv()
        cro_here.send("stop")
        cro_here.recv()
        dso.join()
        cro.join()
        asyncio.run(drop(schemas))

    def spent(index: int) -> float | None:
        start, end = before[index], after[index]
        return None if start is None or end is None else end - start

    return Run(
        workers,
        "" if code is None else " base",
        len(latencies),
        errors,
        seconds,
        spent(0) or 0.0,
        spent(1) or 0.0,
        spent(2),
        latencies,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="each configuration this often")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--per-peer",
        type=int,
        default=16,
        help="deliveries_per_peer of both sides (default 16, as serve's; 0: no cap, no locks)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of another version (`git archive` of a commit): each configuration "
        "also runs on its adapter, interleaved with this one's",
    )
    args = parser.parse_args()
    codes: list[str | None] = [None]
    if args.baseline:
        codes.append(str(args.baseline.resolve()))
    if sys.platform != "linux":
        print("Linux only (SO_REUSEPORT, /proc)", file=sys.stderr)
        return 2
    print(
        f"PostgreSQL at {PG_DSN}; {os.cpu_count()} CPUs; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"10 x 10 update, concurrency {args.concurrency}, {args.seconds:g} s per run, "
        f"deliveries_per_peer {args.per_peer or 'none'}"
    )
    print(
        "workers       round trips/s   p50 ms   p99 ms   CPU ms per round trip: "
        "DSO    CRO     PG DSO+CRO"
    )
    runs: list[Run] = []
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for workers in args.workers:
            for code in codes:
                run = one_run(
                    workers,
                    args.concurrency,
                    args.warmup,
                    args.seconds,
                    args.per_peer or None,
                    code,
                )
                runs.append(run)
                loads.append(os.getloadavg()[0])
                ordered = sorted(run.latencies) or [float("nan")]
                p50 = 1000 * ordered[len(ordered) // 2]
                p99 = 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                print(
                    f"{workers:7}{run.code:5}  {run.throughput:13.1f}   {p50:6.1f}   {p99:6.1f}"
                    f"                        {run.per_round_trip(run.cpu_dso)} "
                    f"{run.per_round_trip(run.cpu_cro)} {run.per_round_trip(run.cpu_pg)} "
                    f"{run.per_round_trip(run.cpu_dso + run.cpu_cro)}"
                    + (f"   ({run.errors} failed)" if run.errors else ""),
                    flush=True,
                )
    print("medians [min-max over the rounds]:")
    for workers in args.workers:
        for label in ("", " base") if args.baseline else ("",):
            mine = [r for r in runs if r.workers == workers and r.code == label]

            def median_ms(values: list[float | None], mine: list[Run] = mine) -> str:
                known = [1000 * v / r.round_trips for v, r in zip(values, mine, strict=True) if v]
                if not known:
                    return "   -  "
                return f"{statistics.median(known):.2f} [{min(known):.2f}-{max(known):.2f}]"

            rates = [r.throughput for r in mine]
            print(
                f"{workers:7}{label:5}  {statistics.median(rates):.1f} "
                f"[{min(rates):.0f}-{max(rates):.0f}] round trips/s;  CPU ms per round trip: "
                f"DSO {median_ms([r.cpu_dso for r in mine])}  "
                f"CRO {median_ms([r.cpu_cro for r in mine])}  "
                f"PG {median_ms([r.cpu_pg for r in mine])}  "
                f"DSO+CRO {median_ms([r.cpu_dso + r.cpu_cro for r in mine])}"
            )
    print(f"load average (1 min) over the run: {min(loads):.2f}-{max(loads):.2f}")
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
