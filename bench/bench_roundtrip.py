"""Round trips per second: a DSO's DSOPortfolioUpdate answered by a CRO, ours against theirs.

One round trip: the DSO sends a 10 x 10 DSOPortfolioUpdate (10 congestion points of 10
connections each), the CRO verifies it, handles it and sends its DSOPortfolioUpdateResponse,
and the DSO receives that response. Both configurations run CRO and DSO as separate OS
processes on loopback, so each side can have a core of its own:

(A) ours:   this adapter on both sides, each participant with its SQLite store (WAL,
            synchronous as the store sets it) in a temporary directory. The DSO process drives
            `Participant.request()` from N concurrent tasks; a round trip ends when the
            request returns the correlated response.
(B) theirs: shapeshifter-uftp 2.4 on both sides: their CRO service in one process; their DSO
            service and their DSO client in the other, driven from N threads. A round trip
            runs from the client's send to their DSO service's
            process_dso_portfolio_update_response for the same ConversationID.

Each configuration runs at concurrency 1 and 10, first warming up, then measuring for a fixed
time; throughput counts the round trips completed inside the measured window. The target:
ours at least 10x theirs at concurrency 10.

    .venv/bin/python bench/bench_roundtrip.py            # 8 s per configuration
    .venv/bin/python bench/bench_roundtrip.py --quick    # 2 s smoke run
    .venv/bin/python bench/bench_roundtrip.py --profile /tmp/prof   # + a cProfile'd run of ours

Besides throughput and p50/p99 latency, each configuration shows the CPU time each process
spent per round trip (all its threads, warm-up included) and how busy the process was, and for
ours the SQLite commits per round trip. A process well below 100% busy is waiting: ours mostly
on fsync'd commits. Keep in mind that shapeshifter-uftp stores nothing, while ours commits
durably before each HTTP 200 and before each send; `--store-dir /dev/shm` shows ours without
the cost of fsync (same settings, on a RAM disk).

With --profile, an extra run of ours at concurrency 10 (after the measured ones, so that the
profiler's overhead does not skew them) profiles the event-loop thread of both processes with
cProfile, prints the top functions, and leaves the .pstats files in the directory.

Exit status: 0 on PASS without failed round trips, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import logging
import multiprocessing
import pstats
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
CONGESTION_POINTS = 10
CONNECTIONS = 10
CONCURRENCIES = (1, 10)
TARGET_RATIO = 10.0
#: Loggers that would print per message or per request.
NOISY_LOGGERS = ("shapeshifter-uftp", "uvicorn", "uvicorn.error", "uvicorn.access")


@dataclasses.dataclass(frozen=True)
class Load:
    concurrency: int
    warmup: float
    duration: float


@dataclasses.dataclass
class Outcome:
    """What one measured run produced."""

    latencies: list[float]
    errors: int
    duration: float
    #: Round trips completed in the whole run, warm-up included.
    total: int
    #: SQLite write transactions in the whole run, per process (ours only).
    commits: dict[str, int] = dataclasses.field(default_factory=dict)
    #: CPU seconds (all threads) each process spent in the whole run, and its wall time.
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    wall: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.duration

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the workload: N workers, each one round trip after the other --------------------------


class Window:
    """The measured window after warm-up; collects round trips that end inside it."""

    def __init__(self, load: Load) -> None:
        self.start = time.perf_counter() + load.warmup
        self.end = self.start + load.duration
        self.latencies: list[float] = []
        self.errors = 0
        self.total = 0
        self._lock = threading.Lock()

    def open(self, now: float) -> bool:
        return now < self.end

    def record(self, began: float, ended: float, ok: bool) -> None:
        with self._lock:
            self.total += 1
            if not ok:
                self.errors += 1
            elif self.start <= ended <= self.end:
                self.latencies.append(ended - began)

    def outcome(self, load: Load) -> Outcome:
        return Outcome(self.latencies, self.errors, load.duration, self.total)


def portfolio_rows() -> list[tuple[str, list[str]]]:
    """10 congestion points (EA1) with 10 connections (EAN) each."""
    return [
        (
            f"ea1.2024-01.nl.example-grid:cp-{point:02d}",
            [f"ean.8716859000{point:02d}{connection:06d}" for connection in range(CONNECTIONS)],
        )
        for point in range(CONGESTION_POINTS)
    ]


START = date(2024, 5, 1)


def our_update(**metadata: Any) -> Any:
    """The 10 x 10 DSOPortfolioUpdate as this adapter's model, with `metadata` filled."""
    from adapter.uftp.messages import (
        DSOPortfolioUpdate,
        DSOPortfolioUpdateCongestionPoint,
        DSOPortfolioUpdateConnection,
        RedispatchBy,
    )

    return DSOPortfolioUpdate(
        **metadata,
        time_zone="Europe/Amsterdam",
        congestion_points=tuple(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=point,
                start_period=START,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(DSOPortfolioUpdateConnection(ean, START) for ean in eans),
            )
            for point, eans in portfolio_rows()
        ),
    )


# --- (A) ours ------------------------------------------------------------------------------


def ours_process(conn: Connection, domain: str, role: str, secret: bytes, store: str) -> None:
    """A participant of ours serving until told to stop; the DSO also drives the load."""
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_ours(conn, domain, role, secret, store))


async def _ours(conn: Connection, domain: str, role_name: str, secret: bytes, store: str) -> None:
    from adapter.directory import StaticDirectory
    from adapter.keys import PrivateKeys
    from adapter.participant import Participant
    from adapter.router import HandlerContext, Router
    from adapter.store.sqlite import SqliteStore
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
        # "Handles": looks at every row, as a CRO recording the portfolio would.
        assert sum(len(cp.connections) for cp in message.congestion_points) > 0
        return DSOPortfolioUpdateResponse()

    sqlite_store = SqliteStore(store)
    participant = Participant(
        domain=domain,
        role=role,
        keys=PrivateKeys(secret),
        store=sqlite_store,
        directory=StaticDirectory([]),
        router=router if role is Role.CRO else None,
    )
    await participant.start()
    conn.send(participant.url())
    loop = asyncio.get_running_loop()
    profiler: cProfile.Profile | None = None
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "peer":
            directory = participant.directory
            assert isinstance(directory, StaticDirectory)
            directory.add(args[0])
            conn.send("ok")
        elif command == "run":
            (load,) = args
            conn.send(await _our_load(participant, load))
        elif command == "counters":
            conn.send(counters(sqlite_store.commits))
        elif command == "pragmas":
            conn.send(await sqlite_store.read(_pragmas))
        elif command == "profile":
            (path,) = args
            if path is None:
                profiler = cProfile.Profile()
                profiler.enable()
            elif profiler is not None:
                profiler.disable()
                profiler.dump_stats(path)
                profiler = None
            conn.send("ok")
        elif command == "stop":
            break
    await participant.stop()
    conn.send("stopped")


async def _our_load(participant: Any, load: Load) -> Outcome:
    from adapter.uftp.messages import Result

    update = our_update()
    window = Window(load)

    async def worker() -> None:
        while window.open(began := time.perf_counter()):
            try:
                response = await participant.request(update, to=CRO, timeout=30)
                ok = response.result is Result.ACCEPTED
            except Exception:
                logging.exception("round trip failed")
                ok = False
            window.record(began, time.perf_counter(), ok)

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return window.outcome(load)


def _pragmas(connection: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: connection.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "fullfsync")
    }


class Pair:
    """A CRO and a DSO, each in a process of its own running `target(pipe, domain, *args)`,
    driven over pipes: `call` sends a command and returns the answer."""

    def __init__(self, name: str, target: Callable[..., None], args: dict[str, tuple[Any, ...]]):
        context = multiprocessing.get_context("spawn")
        self.pipes: dict[str, Connection] = {}
        self.processes: list[multiprocessing.process.BaseProcess] = []
        #: Each process's endpoint URL, which it sends first.
        self.urls: dict[str, str] = {}
        for domain in (CRO, DSO):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=target, args=(theirs, domain, *args[domain]), name=f"{name}-{domain}"
            )
            process.start()
            self.pipes[domain] = mine
            self.processes.append(process)
            self.urls[domain] = mine.recv()

    def call(self, domain: str, *command: Any) -> Any:
        self.pipes[domain].send(command)
        return self.pipes[domain].recv()

    def run(self, load: Load) -> Outcome:
        return measure(self.call, self.pipes, load)

    def stop(self) -> None:
        for domain in (DSO, CRO):
            self.call(domain, "stop")
        for process in self.processes:
            process.join(10)


class Ours(Pair):
    """Both of our participants, each in a process of its own."""

    def __init__(self, directory: Path) -> None:
        from adapter.directory import Peer
        from adapter.keys import generate
        from adapter.uftp.messages import Role

        self.store_paths = {CRO: directory / "cro.sqlite3", DSO: directory / "dso.sqlite3"}
        keys = {CRO: generate(), DSO: generate()}
        roles = {CRO: Role.CRO, DSO: Role.DSO}
        super().__init__(
            "ours",
            ours_process,
            {
                domain: (roles[domain].value, keys[domain].signing, str(self.store_paths[domain]))
                for domain in (CRO, DSO)
            },
        )
        for me, other in ((CRO, DSO), (DSO, CRO)):
            peer = Peer(other, roles[other], self.urls[other], (keys[other].public.signing,))
            self.call(me, "peer", peer)

    def profile(self, load: Load, directory: Path) -> dict[str, Path]:
        paths = {domain: directory / f"ours-{domain.split('.')[0]}.pstats" for domain in self.pipes}
        for domain in self.pipes:
            self.call(domain, "profile", None)
        self.call(DSO, "run", load)
        for domain, path in paths.items():
            self.call(domain, "profile", str(path))
        return paths

    def durability(self) -> str:
        lines = []
        for domain, path in self.store_paths.items():
            live = self.call(domain, "pragmas")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as fresh:
                (file_mode,) = fresh.execute("PRAGMA journal_mode").fetchone()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(live["synchronous"], "?")
            lines.append(
                f"  {domain}: store connection journal_mode={live['journal_mode']} "
                f"synchronous={live['synchronous']} ({sync}) fullfsync={live['fullfsync']}; "
                f"file {path.name} journal_mode={file_mode}"
            )
        return "\n".join(lines)


# --- (C) the floor: the same libraries, nothing else ------------------------------------------


def floor_process(conn: Connection, domain: str, role: str, secret: bytes) -> None:
    """What the libraries alone cost: aiohttp server and client, lxml parse and XSD validation
    of every message received, Ed25519 seal and open, our codec and envelope - and nothing
    else: no store (no durability at all), no outbox, no duplicate or protocol checks, no
    routing, no logging. An upper bound for any adapter built on these libraries, on this
    machine."""
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_floor(conn, domain, role, secret))


async def _floor(conn: Connection, domain: str, role_name: str, secret: bytes) -> None:
    import aiohttp
    from aiohttp import web

    from adapter.uftp import codec, envelope
    from adapter.uftp.messages import DSOPortfolioUpdateResponse, Result, Role

    role = Role(role_name)
    peer: dict[str, Any] = {}
    waiters: dict[str, asyncio.Future[Any]] = {}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    background: set[asyncio.Task[None]] = set()

    async def post(body: bytes) -> None:
        async with session.post(
            peer["url"], data=body, headers={"Content-Type": "text/xml; charset=utf-8"}
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")

    async def answer(request: Any) -> None:
        response = DSOPortfolioUpdateResponse(
            version=request.version,
            sender_domain=domain,
            recipient_domain=request.sender_domain,
            time_stamp=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            conversation_id=request.conversation_id,
            reference_message_id=request.message_id,
            result=Result.ACCEPTED,
        )
        inner = codec.encode(response, validate=False)
        await post(envelope.seal(inner, secret, domain, role))

    async def receive(request: web.Request) -> web.Response:
        signed = envelope.parse_envelope(await request.read())
        inner = envelope.open_sealed(signed.sealed, (peer["key"],))
        message = codec.decode(inner)
        if role is Role.CRO:
            assert sum(len(cp.connections) for cp in message.congestion_points) > 0
            task = asyncio.get_running_loop().create_task(answer(message))
            background.add(task)
            task.add_done_callback(background.discard)
        else:
            waiter = waiters.pop(message.reference_message_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        return web.Response(text="OK\n")

    app = web.Application()
    app.router.add_post("/shapeshifter/api/v3/message", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    conn.send(f"http://127.0.0.1:{port}/shapeshifter/api/v3/message")
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "peer":
            peer["url"], peer["key"] = args
            conn.send("ok")
        elif command == "run":
            (load,) = args
            conn.send(await _floor_load(domain, role, secret, post, waiters, load))
        elif command == "counters":
            conn.send(counters())
        elif command == "stop":
            break
    await session.close()
    await runner.cleanup()
    conn.send("stopped")


async def _floor_load(
    domain: str,
    role: Any,
    secret: bytes,
    post: Callable[[bytes], Any],
    waiters: dict[str, asyncio.Future[Any]],
    load: Load,
) -> Outcome:
    from adapter.uftp import codec, envelope
    from adapter.uftp.messages import Result

    template = our_update(version="3.1.0", sender_domain=domain, recipient_domain=CRO)
    window = Window(load)
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while window.open(began := time.perf_counter()):
            message = dataclasses.replace(
                template,
                time_stamp=datetime.now(UTC),
                message_id=str(uuid.uuid4()),
                conversation_id=str(uuid.uuid4()),
            )
            waiter = waiters[message.message_id] = loop.create_future()
            try:
                inner = codec.encode(message, validate=False)
                await post(envelope.seal(inner, secret, domain, role))
                response = await asyncio.wait_for(waiter, 30)
                ok = response.result is Result.ACCEPTED
            except Exception:
                logging.exception("round trip failed")
                waiters.pop(message.message_id, None)
                ok = False
            window.record(began, time.perf_counter(), ok)

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return window.outcome(load)


class Floor(Pair):
    """Two floor processes, CRO and DSO."""

    def __init__(self) -> None:
        from adapter.keys import generate
        from adapter.uftp.messages import Role

        keys = {CRO: generate(), DSO: generate()}
        roles = {CRO: Role.CRO, DSO: Role.DSO}
        super().__init__(
            "floor",
            floor_process,
            {domain: (roles[domain].value, keys[domain].signing) for domain in (CRO, DSO)},
        )
        for me, other in ((CRO, DSO), (DSO, CRO)):
            self.call(me, "peer", self.urls[other], keys[other].public.signing)


# --- (B) theirs ----------------------------------------------------------------------------


def their_process(conn: Connection, domain: str, role: str, secret: bytes) -> None:
    """Their CRO or DSO service serving until told to stop; the DSO also drives the load."""
    logging.basicConfig(level=logging.WARNING)
    from shapeshifter_uftp import ShapeshifterCroService, ShapeshifterDsoService
    from shapeshifter_uftp import uftp as ss

    book: dict[tuple[str, str], tuple[str, str]] = {}

    def key(peer_domain: str, peer_role: str) -> str | None:
        entry = book.get((peer_domain, str(peer_role)))
        return entry[1] if entry else None

    def endpoint(peer_domain: str, peer_role: str) -> str | None:
        entry = book.get((peer_domain, str(peer_role)))
        return entry[0] if entry else None

    #: ConversationID -> the event a waiting worker sleeps on.
    waiters: dict[str, threading.Event] = {}

    class BenchCro(ShapeshifterCroService):  # type: ignore[misc]  # untyped package
        def process_dso_portfolio_update(self, message: Any) -> None:
            assert sum(len(cp.connections) for cp in message.congestion_points) > 0
            response = ss.DsoPortfolioUpdateResponse(
                conversation_id=message.conversation_id,
                dso_portfolio_update_message_id=message.message_id,
                result=ss.AcceptedRejected.ACCEPTED,
            )
            self.dso_client(message.sender_domain).send_dso_portfolio_update_response(response)

        def process_dso_portfolio_query(self, message: Any) -> None: ...
        def process_agr_portfolio_update(self, message: Any) -> None: ...
        def process_agr_portfolio_query(self, message: Any) -> None: ...

    class BenchDso(ShapeshifterDsoService):  # type: ignore[misc]  # untyped package
        def process_dso_portfolio_update_response(self, message: Any) -> None:
            waiter = waiters.pop(message.conversation_id, None)
            if waiter is not None and message.result == ss.AcceptedRejected.ACCEPTED:
                waiter.set()

        def process_dso_portfolio_query_response(self, message: Any) -> None: ...
        def process_d_prognosis(self, message: Any) -> None: ...
        def process_flex_request_response(self, message: Any) -> None: ...
        def process_flex_offer(self, message: Any) -> None: ...
        def process_flex_order_response(self, message: Any) -> None: ...
        def process_flex_offer_revocation(self, message: Any) -> None: ...
        def process_flex_reservation_update_response(self, message: Any) -> None: ...
        def process_flex_settlement_response(self, message: Any) -> None: ...
        def process_metering(self, message: Any) -> None: ...

    kind = BenchCro if role == "CRO" else BenchDso
    service = kind(
        domain,
        b64encode(secret).decode(),
        key_lookup_function=key,
        endpoint_lookup_function=endpoint,
        host="127.0.0.1",
        port=0,
    )
    service.server.config.access_log = False
    _quiet()  # after their imports and uvicorn's Config, which set these loggers up
    service.run_in_thread()
    port = service.server.servers[0].sockets[0].getsockname()[1]
    conn.send(f"http://127.0.0.1:{port}/shapeshifter/api/v3/message")
    while True:
        command, *args = conn.recv()
        if command == "peer":
            peer_domain, peer_role, peer_url, peer_key = args
            book[(peer_domain, peer_role)] = (peer_url, b64encode(peer_key).decode())
            conn.send("ok")
        elif command == "run":
            (load,) = args
            conn.send(_their_load(service, ss, waiters, load))
        elif command == "counters":
            conn.send(counters())
        elif command == "stop":
            break
    service.stop()
    conn.send("stopped")


def _their_load(service: Any, ss: Any, waiters: dict[str, threading.Event], load: Load) -> Outcome:
    from xsdata.models.datatype import XmlDate

    start = XmlDate.from_date(START)
    template = ss.DsoPortfolioUpdate(
        time_zone="Europe/Amsterdam",
        congestion_points=[
            ss.DsoPortfolioUpdateCongestionPoint(
                entity_address=point,
                start_period=start,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=ss.RedispatchBy.DSO,
                connections=[
                    ss.DsoPortfolioUpdateConnection(entity_address=ean, start_period=start)
                    for ean in eans
                ],
            )
            for point, eans in portfolio_rows()
        ],
    )
    client = service.cro_client(CRO)
    window = Window(load)

    def worker() -> None:
        while window.open(began := time.perf_counter()):
            # Their client fills in (mutates) the metadata, so each send gets a fresh object.
            conversation = str(uuid.uuid4())
            message = dataclasses.replace(template, conversation_id=conversation)
            waiter = waiters[conversation] = threading.Event()
            try:
                client.send_dso_portfolio_update(message)
                ok = waiter.wait(timeout=30)
            except Exception:
                logging.exception("round trip failed")
                waiters.pop(conversation, None)
                ok = False
            window.record(began, time.perf_counter(), ok)

    threads = [threading.Thread(target=worker) for _ in range(load.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return window.outcome(load)


class Theirs(Pair):
    """Their CRO service in one process; their DSO service and client in another."""

    def __init__(self) -> None:
        from nacl.bindings import crypto_sign_keypair

        keys = {domain: crypto_sign_keypair() for domain in (CRO, DSO)}  # (public, secret)
        roles = {CRO: "CRO", DSO: "DSO"}
        super().__init__(
            "theirs",
            their_process,
            {domain: (roles[domain], keys[domain][1]) for domain in (CRO, DSO)},
        )
        for me, other in ((CRO, DSO), (DSO, CRO)):
            self.call(me, "peer", other, roles[other], self.urls[other], keys[other][0])


def counters(commits: int = 0) -> dict[str, float]:
    """What a process reports before and after a run."""
    return {"commits": commits, "cpu": time.process_time(), "wall": time.perf_counter()}


def measure(call: Callable[..., Any], processes: Iterable[str], load: Load) -> Outcome:
    """Run `load` on the DSO, with each process's counters read before and after."""
    before = {domain: call(domain, "counters") for domain in processes}
    outcome: Outcome = call(DSO, "run", load)
    after = {domain: call(domain, "counters") for domain in before}
    if any(counts["commits"] for counts in after.values()):
        outcome.commits = {d: int(after[d]["commits"] - before[d]["commits"]) for d in before}
    outcome.cpu = {d: after[d]["cpu"] - before[d]["cpu"] for d in before}
    outcome.wall = after[DSO]["wall"] - before[DSO]["wall"]
    return outcome


def _quiet() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# --- report --------------------------------------------------------------------------------


def describe(name: str, load: Load, outcome: Outcome) -> str:
    line = (
        f"{name:7} c={load.concurrency:<3} {outcome.throughput:9.1f} round trips/s   "
        f"p50 {outcome.percentile(0.50) * 1000:8.2f} ms   "
        f"p99 {outcome.percentile(0.99) * 1000:8.2f} ms   "
        f"n={len(outcome.latencies):<6} errors={outcome.errors}"
    )
    if outcome.total:
        cpu = " ".join(
            f"{short(domain)}={seconds / outcome.total * 1000:.2f} ms"
            f" ({seconds / outcome.wall:.0%})"
            for domain, seconds in outcome.cpu.items()
        )
        line += f"\n{'':13}CPU per round trip (and load of the process): {cpu}"
    if outcome.commits and outcome.total:
        commits = " ".join(
            f"{short(domain)}={count / outcome.total:.2f}"
            for domain, count in outcome.commits.items()
        )
        line += f"\n{'':13}SQLite commits per round trip: {commits}"
    return line


def short(domain: str) -> str:
    return domain.split(".")[0]


def print_profile(path: Path, title: str, limit: int) -> None:
    print(f"\n--- {title}: top {limit} by own time ({path}) ---")
    stats = pstats.Stats(str(path))
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)
    print(f"--- {title}: top {limit} by cumulative time ---")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)


def run_loads(name: str, pair: Pair, loads: list[Load]) -> dict[tuple[str, int], Outcome]:
    """Run each load on `pair`, printing as it goes, then stop it."""
    results = {}
    try:
        for load in loads:
            results[(name, load.concurrency)] = outcome = pair.run(load)
            print(describe(name, load, outcome), flush=True)
    finally:
        pair.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per configuration")
    parser.add_argument("--duration", type=float, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per configuration")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="also profile ours at c=10 into DIR"
    )
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the floor: the same libraries with no store and no adapter around them",
    )
    parser.add_argument(
        "--store-dir",
        type=Path,
        help="where our SQLite files go (default: a temporary directory under $TMPDIR); "
        "e.g. /dev/shm to see what fsync costs",
    )
    options = parser.parse_args(argv)
    duration = options.duration or (2.0 if options.quick else 8.0)
    warmup = options.warmup if options.warmup is not None else (0.5 if options.quick else 2.0)
    loads = [Load(c, warmup, duration) for c in CONCURRENCIES]
    print(
        f"round trip: DSOPortfolioUpdate {CONGESTION_POINTS} x {CONNECTIONS} -> CRO -> "
        f"DSOPortfolioUpdateResponse; {duration:g} s measured after {warmup:g} s warm-up; "
        f"{multiprocessing.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results: dict[tuple[str, int], Outcome] = {}

    with tempfile.TemporaryDirectory(prefix="bench-roundtrip-", dir=options.store_dir) as tmp:
        ours = Ours(Path(tmp))
        try:
            for load in loads:
                results[("ours", load.concurrency)] = outcome = ours.run(load)
                print(describe("ours", load, outcome), flush=True)
            print("SQLite durability in use (ours):")
            print(ours.durability())
            if options.profile:
                options.profile.mkdir(parents=True, exist_ok=True)
                paths = ours.profile(loads[-1], options.profile)
        finally:
            ours.stop()

    if options.floor:
        results.update(run_loads("floor", Floor(), loads))
    results.update(run_loads("theirs", Theirs(), loads))

    top = CONCURRENCIES[-1]
    ours_top, theirs_top = results[("ours", top)], results[("theirs", top)]
    ratio = ours_top.throughput / theirs_top.throughput if theirs_top.throughput else float("inf")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    errors = sum(outcome.errors for outcome in results.values())
    print(
        f"\nours/theirs at concurrency {top}: {ratio:.1f}x "
        f"(target >= {TARGET_RATIO:g}x): {verdict}"
        + (f"   ({errors} failed round trips)" if errors else "")
    )
    if options.floor:
        floor_top = results[("floor", top)]
        print(
            f"floor/theirs at concurrency {top}: "
            f"{floor_top.throughput / theirs_top.throughput:.1f}x (no store, no adapter: the "
            "most any adapter on these libraries can reach here); "
            f"ours/floor: {ours_top.throughput / floor_top.throughput:.0%}"
        )
    if options.profile:
        for domain, path in paths.items():
            print_profile(path, f"ours {domain} (profiled run, c={top})", options.profile_lines)
    return 0 if verdict == "PASS" and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
