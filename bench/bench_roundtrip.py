"""CPU per round trip: a DSO's DSOPortfolioUpdate answered by a CRO, ours against theirs.

One round trip: the DSO sends a 10 x 10 DSOPortfolioUpdate (10 congestion points of 10
connections each), the CRO verifies it, handles it and sends its DSOPortfolioUpdateResponse,
and the DSO receives that response. Every configuration runs CRO and DSO as separate OS
processes on loopback, so each side can have a core of its own:

(A) ours:   this adapter on both sides, each participant with its SQLite store (WAL,
            synchronous as the store sets it) in a temporary directory. The DSO process drives
            `Participant.request()` from N concurrent tasks; a round trip ends when the
            request returns the correlated response.
(C) floor:  the libraries alone: aiohttp server and client, seal and open, parse and XSD
            validation of every message received, the codec's model build, and nothing else
            (no store, no outbox, no checks, no routing, no logging). Not a usable
            participant: the least any adapter on these libraries can spend, on this machine.
(B) theirs: shapeshifter-uftp 2.4 on both sides: their CRO service in one process; their DSO
            service and their DSO client in the other, driven from N threads. A round trip
            runs from the client's send to their DSO service's
            process_dso_portfolio_update_response for the same ConversationID.

All six processes start first. Each configuration then gets one warm-up slice, and then the
configurations take turns in short slices (`--slice` seconds), round-robin, for `--rounds`
rounds at each concurrency (1 and 10), the order rotated every round. A load on the machine
that comes and goes thus falls on every configuration alike, instead of on whichever ran while
it lasted (run one after the other, the same code measured 2.9x and 0.8x).

The result leads with the **CPU time per round trip, summed over both processes**: each
process reads its own CPU clock (all its threads, `time.process_time`) before and after a
slice and reports over its pipe; the sum is divided by the round trips completed in the
slice. Time a process spends waiting (for fsync, for the peer, or for a core that another
program holds) is not in it, so it barely moves with the machine's load, where throughput
does. Ratios of it between configurations are given per round (the two slices of a ratio ran
seconds apart) as the median and range over the rounds, each configuration also against the
floor. Throughput (round trips ending inside the slice, per second) and p50/p99 latency come
second. Errors of the warm-up slices are reported apart: shapeshifter-uftp's service answers
the first requests that arrive at once with HTTP 400 ("No class found matching root": its
shared xsdata parser builds its class index on first use, and concurrent first uses race),
which is start-up, not steady state. An error in a measured slice is a failure.

The targets (issue 13): ours spends at most 2.5 ms of CPU per round trip (both processes) at
concurrency 10, and completes at least twice theirs' round trips per second at concurrency 1.
Keep in mind that shapeshifter-uftp stores nothing, while ours commits durably before each
HTTP 200 and before each send; `--store-dir /dev/shm` shows ours without the cost of fsync
(same settings, on a RAM disk).

`--variants uvloop,loopcommit` runs ours a second and third time beside itself, in the same
rounds, with one lever switched: on uvloop, or with the SQLite COMMIT on the event loop as
before. `--baseline DIR` runs another checkout's adapter the same way (configuration "base"),
e.g. the version before a change: `git archive main adapter | tar -x -C DIR`.

    .venv/bin/python bench/bench_roundtrip.py            # 5 rounds of 2 s slices
    .venv/bin/python bench/bench_roundtrip.py --quick    # 2 rounds of 1 s slices
    .venv/bin/python bench/bench_roundtrip.py --profile /tmp/prof   # + a cProfile'd run of ours

With --profile, an extra slice of ours at concurrency 10 (after the measured ones, so that the
profiler's overhead does not skew them) profiles the event-loop thread of both processes with
cProfile, prints the top functions, and leaves the .pstats files in the directory.

Exit status: 0 when ours meets both targets without failed round trips in the measured
slices, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import pstats
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from base64 import b64encode
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypedDict

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
CONGESTION_POINTS = 10
CONNECTIONS = 10
CONCURRENCIES = (1, 10)
CONFIGURATIONS = ("ours", "floor", "theirs")
#: Targets of issue 13: ours at most 2.5 ms of CPU per round trip (both processes) at
#: concurrency 10, and at concurrency 1 at least twice theirs in round trips per second.
TARGET_CPU = 0.0025
TARGET_SERIAL_THROUGHPUT = 2.0
#: The width of a configuration's name in the report.
WIDTH = 15
#: How long a DSO waits for the response to one update before it counts as an error (p99 is
#: well under a second; a lost response holds its worker this long).
RESPONSE_TIMEOUT = 10.0
#: Pause after a slice before the CPU clocks are read: work that trails the last round trip
#: (ours: the CRO marking its response delivered) belongs to the slice.
SETTLE = 0.2
#: Loggers that would print per message or per request.
NOISY_LOGGERS = ("shapeshifter-uftp", "uvicorn", "uvicorn.error", "uvicorn.access")


@dataclasses.dataclass(frozen=True)
class Load:
    concurrency: int
    duration: float


@dataclasses.dataclass
class Outcome:
    """What one slice produced."""

    #: Latencies of the round trips that ended inside the slice.
    latencies: list[float]
    #: Round trips completed, including those that ended after the slice (the DSO waits for
    #: every round trip it started): all of them are in the CPU counters.
    completed: int
    #: Failed round trips, by kind.
    errors: Counter[str]
    duration: float
    #: SQLite write transactions in the slice, per process (ours only).
    commits: dict[str, int] = dataclasses.field(default_factory=dict)
    #: CPU seconds (all threads) each process spent in the slice, and the slice's wall time.
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    wall: float = 0.0
    #: Seconds each process's threads were ready to run but waited for a core (the kernel's
    #: run delay): the share of the wall time that the machine's other work put there.
    waited: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Why, where a process knows (theirs: a message it refused, a response it failed to send).
    causes: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.duration

    @property
    def cpu_per_round_trip(self) -> float:
        """CPU seconds of both processes per completed round trip."""
        return sum(self.cpu.values()) / self.completed if self.completed else float("nan")


# --- the workload: N workers, each one round trip after the other --------------------------


class Window:
    """One slice: round trips start until its end; those that end inside it are timed."""

    def __init__(self, load: Load) -> None:
        self.duration = load.duration
        self.start = time.perf_counter()
        self.end = self.start + load.duration
        self.latencies: list[float] = []
        self.completed = 0
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def open(self, now: float) -> bool:
        return now < self.end

    def record(self, began: float, ended: float, error: str | None) -> None:
        with self._lock:
            if error is not None:
                self.errors[error] += 1
                return
            self.completed += 1
            if ended <= self.end:
                self.latencies.append(ended - began)

    def outcome(self) -> Outcome:
        return Outcome(self.latencies, self.completed, self.errors, self.duration)


def error_kind(exc: BaseException) -> str:
    """A failed round trip's kind: the exception, with its HTTP status and detail if any."""
    text = " ".join(str(exc).split())
    status = re.search(r"HTTP (\d{3}):?\s*(.*)", text)
    if status:
        detail = status.group(2)
        with contextlib.suppress(ValueError, KeyError, TypeError):  # FastAPI's JSON detail
            detail = str(json.loads(detail)["detail"])
        text = f"HTTP {status.group(1)} {detail}"
    else:
        text = re.sub(r"https?://\S+", "<url>", text)
    return f"{type(exc).__name__}: {text[:100]}" if text else type(exc).__name__


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


@dataclasses.dataclass(frozen=True)
class Variant:
    """How one configuration of ours runs: which checkout's adapter, on which event loop,
    with the SQLite COMMIT on the store's commit thread or on the event loop."""

    #: A checkout whose `adapter` package runs instead of this one's (None: this one).
    code: str | None = None
    event_loop: str = "asyncio"
    commit_off_loop: bool = True


class StoreOptions(TypedDict, total=False):
    """The `SqliteStore` options a variant passes (none at all for the defaults)."""

    commit_off_loop: bool


#: The variants of ours that `--variants` adds, each a lever switched against "ours".
VARIANTS: dict[str, Variant] = {
    "uvloop": Variant(event_loop="uvloop"),
    "loopcommit": Variant(commit_off_loop=False),
}


def ours_process(
    conn: Connection, domain: str, role: str, secret: bytes, store: str, variant: Variant
) -> None:
    """A participant of ours serving until told to stop; the DSO also drives the load."""
    if variant.code is not None:
        sys.path.insert(0, variant.code)  # before anything imports the adapter
    logging.basicConfig(level=logging.WARNING)
    if variant.event_loop == "uvloop":
        import uvloop

        uvloop.run(_ours(conn, domain, role, secret, store, variant))
    else:
        asyncio.run(_ours(conn, domain, role, secret, store, variant))


async def _ours(
    conn: Connection, domain: str, role_name: str, secret: bytes, store: str, variant: Variant
) -> None:
    from adapter.directory import StaticDirectory
    from adapter.keys import PrivateKeys
    from adapter.participant import Participant
    from adapter.router import HandlerContext, Router
    from adapter.settings import Limits
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

    # A baseline checkout's store may not know the switch: it is left out when on.
    options: StoreOptions = {} if variant.commit_off_loop else {"commit_off_loop": False}
    sqlite_store = SqliteStore(store, **options)
    participant = Participant(
        domain=domain,
        role=role,
        keys=PrivateKeys(secret),
        store=sqlite_store,
        directory=StaticDirectory([]),
        router=router if role is Role.CRO else None,
        # The load is one peer's: no rate limit nor caps, as the other side has none.
        limits=Limits(rate_per_sender=math.inf, handlers_per_sender=None, deliveries_per_peer=None),
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
                # CPU time of the event-loop thread: on a busy machine, wall time would
                # count the waits for a core as well.
                profiler = cProfile.Profile(time.thread_time)
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
            error = None
            try:
                response = await participant.request(update, to=CRO, timeout=RESPONSE_TIMEOUT)
                if response.result is not Result.ACCEPTED:
                    error = f"Rejected: {response.rejection_reason}"
            except Exception as exc:
                error = error_kind(exc)
            window.record(began, time.perf_counter(), error)

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return window.outcome()


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
            with contextlib.suppress(OSError, EOFError):  # the process is gone already
                self.call(domain, "stop")
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


class Ours(Pair):
    """Both of our participants, each in a process of its own."""

    def __init__(self, directory: Path, name: str = "ours", variant: Variant = Variant()) -> None:
        from adapter.directory import Peer
        from adapter.keys import generate
        from adapter.uftp.messages import Role

        directory = directory / name
        directory.mkdir()
        self.store_paths = {CRO: directory / "cro.sqlite3", DSO: directory / "dso.sqlite3"}
        keys = {CRO: generate(), DSO: generate()}
        roles = {CRO: Role.CRO, DSO: Role.DSO}
        super().__init__(
            name,
            ours_process,
            {
                domain: (
                    roles[domain].value,
                    keys[domain].signing,
                    str(self.store_paths[domain]),
                    variant,
                )
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
        # The DSO's request (here at the CRO) or the CRO's response: read by its own kind's
        # fields, as the floor checks nothing (`decode` says only "a message").
        message: Any = codec.decode(inner)
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
            error = None
            try:
                inner = codec.encode(message, validate=False)
                await post(envelope.seal(inner, secret, domain, role))
                response = await asyncio.wait_for(waiter, RESPONSE_TIMEOUT)
                if response.result is not Result.ACCEPTED:
                    error = f"Rejected: {response.rejection_reason}"
            except TimeoutError:
                error = f"no response within {RESPONSE_TIMEOUT:g} s"
            except Exception as exc:
                error = error_kind(exc)
            if error is not None:
                waiters.pop(message.message_id, None)
            window.record(began, time.perf_counter(), error)

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return window.outcome()


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
    #: Messages this process refused, and (the CRO) responses it failed to send, which the DSO
    #: only sees as a response that never comes.
    answering: Counter[str] = Counter()
    answering_lock = threading.Lock()

    class BenchCro(ShapeshifterCroService):  # type: ignore[misc]  # untyped package
        def process_dso_portfolio_update(self, message: Any) -> None:
            assert sum(len(cp.connections) for cp in message.congestion_points) > 0
            response = ss.DsoPortfolioUpdateResponse(
                conversation_id=message.conversation_id,
                dso_portfolio_update_message_id=message.message_id,
                result=ss.AcceptedRejected.ACCEPTED,
            )
            try:
                self.dso_client(message.sender_domain).send_dso_portfolio_update_response(response)
            except Exception as exc:  # their service logs it and drops the response
                with answering_lock:  # their inbound thread pool
                    answering[f"the CRO's response: {error_kind(exc)}"] += 1
                raise

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
    their_log = logging.getLogger("shapeshifter-uftp")
    their_log.setLevel(logging.WARNING)
    their_log.handlers = [Refusals(short(domain), answering, answering_lock)]
    their_log.propagate = False
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
            with answering_lock:
                conn.send(counters(causes=answering))
        elif command == "stop":
            break
    service.stop()
    conn.send("stopped")


class Refusals(logging.Handler):
    """Counts the messages their service refused, with the reason it logs (the client only
    sees "HTTP 400 Bad Request"), instead of printing every one."""

    PREFIX = "The original transport error is "

    def __init__(self, name: str, counts: Counter[str], lock: threading.Lock) -> None:
        super().__init__()  # (its own `name` and `lock` are logging's: other names here)
        self.party, self.counts, self.counts_lock = name, counts, lock

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(self.PREFIX):
            reason = text.removeprefix(self.PREFIX)[:100]
            with self.counts_lock:
                self.counts[f"the {self.party} refused: {reason}"] += 1


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
            error = None
            try:
                client.send_dso_portfolio_update(message)
                if not waiter.wait(timeout=RESPONSE_TIMEOUT):
                    error = f"no response within {RESPONSE_TIMEOUT:g} s"
            except Exception as exc:
                error = error_kind(exc)
            if error is not None:
                waiters.pop(conversation, None)
            window.record(began, time.perf_counter(), error)

    threads = [threading.Thread(target=worker) for _ in range(load.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return window.outcome()


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


def counters(commits: int = 0, causes: Counter[str] | None = None) -> dict[str, Any]:
    """What a process reports before and after a slice: its own CPU clock covers all its
    threads (uvicorn's, the thread pools', the event loop's), and so does its run delay."""
    return {
        "commits": commits,
        "cpu": time.process_time(),
        "wall": time.perf_counter(),
        "waited": run_delay(),
        "causes": Counter(causes or {}),
    }


def run_delay() -> float:
    """Seconds the threads of this process have spent ready to run, waiting for a core
    (Linux: the second field of /proc/self/task/*/schedstat); 0.0 where there is none.
    A thread that ended meanwhile takes its share with it: the pools here live as long as
    the process."""
    total = 0
    for path in Path("/proc/self/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(path.read_text().split()[1])
    return total / 1e9


def measure(call: Callable[..., Any], processes: Iterable[str], load: Load) -> Outcome:
    """Run `load` on the DSO, with each process's counters read before and after."""
    before = {domain: call(domain, "counters") for domain in processes}
    outcome: Outcome = call(DSO, "run", load)
    time.sleep(SETTLE)
    after = {domain: call(domain, "counters") for domain in before}
    if any(counts["commits"] for counts in after.values()):
        outcome.commits = {d: int(after[d]["commits"] - before[d]["commits"]) for d in before}
    outcome.cpu = {d: after[d]["cpu"] - before[d]["cpu"] for d in before}
    outcome.wall = after[DSO]["wall"] - before[DSO]["wall"]
    outcome.waited = {d: after[d]["waited"] - before[d]["waited"] for d in before}
    for domain in before:
        outcome.causes.update(after[domain]["causes"] - before[domain]["causes"])
    return outcome


def _quiet() -> None:
    # Every failed round trip is counted and reported by kind; their per-failure log lines
    # (the warm-up's HTTP 400s above all) would only bury the report.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


# --- report --------------------------------------------------------------------------------


def short(domain: str) -> str:
    return domain.split(".")[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def spread(values: list[float], scale: float = 1.0, unit: str = "x") -> str:
    """median [min-max]"""
    low, mid, high = (v * scale for v in (min(values), statistics.median(values), max(values)))
    return f"{mid:.2f}{unit} [{low:.2f}-{high:.2f}]"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe_cpu(name: str, slices: list[Outcome]) -> str:
    """CPU per round trip of both processes: median over the slices, and each process's
    share and load, pooled."""
    completed = sum(o.completed for o in slices)
    wall = sum(o.wall for o in slices)
    domains = slices[0].cpu.keys()
    parts = " + ".join(
        f"{short(d)} {ms(sum(o.cpu[d] for o in slices) / completed)} "
        f"({sum(o.cpu[d] for o in slices) / wall:.0%} busy)"
        for d in domains
    )
    cpu = spread([o.cpu_per_round_trip for o in slices], 1000, " ms")
    line = f"    {name:{WIDTH}} {cpu:24} {parts}"
    if slices[0].commits:
        commits = " ".join(
            f"{short(d)}={sum(o.commits[d] for o in slices) / completed:.2f}" for d in domains
        )
        line += f"; SQLite commits per round trip {commits}"
    return line


def describe_throughput(name: str, slices: list[Outcome]) -> str:
    latencies = [x for o in slices for x in o.latencies]
    pooled = len(latencies) / sum(o.duration for o in slices)
    completed = sum(o.completed for o in slices)
    waited = sum(sum(o.waited.values()) for o in slices) / completed if completed else 0.0
    return (
        f"    {name:{WIDTH}} {pooled:7.1f} round trips/s "
        f"(slices {min(o.throughput for o in slices):.0f}-{max(o.throughput for o in slices):.0f})"
        f"   p50 {ms(percentile(latencies, 0.50)):>9}   p99 {ms(percentile(latencies, 0.99)):>9}"
        f"   n={len(latencies)}   waited for a core {ms(waited)}"
    )


def ratios(a: list[Outcome], b: list[Outcome]) -> list[float]:
    """CPU per round trip of a over b, round by round (slices of one round ran together)."""
    return [x.cpu_per_round_trip / y.cpu_per_round_trip for x, y in zip(a, b, strict=True)]


def speedups(a: list[Outcome], b: list[Outcome]) -> list[float]:
    """Round trips/s of a over b, round by round."""
    return [x.throughput / y.throughput for x, y in zip(a, b, strict=True) if y.throughput]


def describe_errors(outcomes: dict[str, list[Outcome]]) -> list[str]:
    """Failed round trips by kind, and below them what the CRO saw go wrong."""
    lines: list[str] = []
    for name, slices in outcomes.items():
        errors: Counter[str] = Counter()
        causes: Counter[str] = Counter()
        for outcome in slices:
            errors.update(outcome.errors)
            causes.update(outcome.causes)
        lines.extend(f"    {name:{WIDTH}} {n} x {kind}" for kind, n in errors.most_common())
        lines.extend(f"    {name:{WIDTH}}   {n} x {kind}" for kind, n in causes.most_common())
    return lines


def print_profile(path: Path, title: str, limit: int) -> None:
    print(f"\n--- {title}: top {limit} by own time ({path}) ---")
    stats = pstats.Stats(str(path))
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)
    print(f"--- {title}: top {limit} by cumulative time ---")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)


# --- the run -------------------------------------------------------------------------------


def load_average() -> str:
    """The machine's 1-minute load average: how much else ran beside the benchmark."""
    return f"{os.getloadavg()[0]:.2f}"


def rotated(names: tuple[str, ...] | list[str], round_: int) -> list[str]:
    """The configurations in this round's order: each one leads in turn."""
    shift = round_ % len(names)
    return list(names[shift:]) + list(names[:shift])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s slices")
    parser.add_argument("--rounds", type=int, help="slices per configuration and concurrency (5)")
    parser.add_argument("--slice", type=float, help="seconds per slice (2)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per configuration (2)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="also profile ours at c=10 into DIR"
    )
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument(
        "--store-dir",
        type=Path,
        help="where our SQLite files go (default: a temporary directory under $TMPDIR); "
        "e.g. /dev/shm to see what fsync costs",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated variants of ours to run beside it, each with one lever switched: "
        "uvloop (ours on uvloop), loopcommit (the SQLite COMMIT on the event loop, as before)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of another version (`git archive` of a commit, say): its adapter "
        "runs as configuration 'base' beside ours, in the same rounds",
    )
    options = parser.parse_args(argv)
    rounds = options.rounds or (2 if options.quick else 5)
    seconds = options.slice or (1.0 if options.quick else 2.0)
    warmup = options.warmup or (1.0 if options.quick else 2.0)
    top = CONCURRENCIES[-1]
    variants: dict[str, Variant] = {}
    for name in filter(None, (v.strip() for v in options.variants.split(","))):
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        variants[f"ours-{name}"] = VARIANTS[name]
    if options.baseline:
        variants["base"] = Variant(code=str(options.baseline.resolve()))
    names = [CONFIGURATIONS[0], *variants, *CONFIGURATIONS[1:]]
    print(
        f"round trip: DSOPortfolioUpdate {CONGESTION_POINTS} x {CONNECTIONS} -> CRO -> "
        f"DSOPortfolioUpdateResponse; {rounds} rounds of {seconds:g} s slices per configuration "
        f"and concurrency, interleaved, after {warmup:g} s of warm-up at c={top}; "
        f"{multiprocessing.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"load average {load_average()}",
        flush=True,
    )
    results: dict[tuple[str, int], list[Outcome]] = {
        (name, c): [] for name in names for c in CONCURRENCIES
    }
    warmups: dict[str, list[Outcome]] = {}
    loads: list[float] = [os.getloadavg()[0]]

    with tempfile.TemporaryDirectory(prefix="bench-roundtrip-", dir=options.store_dir) as tmp:
        pairs: dict[str, Pair] = {}
        try:
            pairs["ours"] = ours = Ours(Path(tmp))
            for name, variant in variants.items():
                pairs[name] = Ours(Path(tmp), name, variant)
            pairs["floor"] = Floor()
            pairs["theirs"] = Theirs()
            for name, pair in pairs.items():
                warmups[name] = [pair.run(Load(top, warmup))]
            for round_ in range(rounds):
                for concurrency in CONCURRENCIES:
                    for name in rotated(names, round_):
                        outcome = pairs[name].run(Load(concurrency, seconds))
                        results[(name, concurrency)].append(outcome)
                loads.append(os.getloadavg()[0])
                print(f"  round {round_ + 1}/{rounds} done", flush=True)
            durability = ours.durability()
            if options.profile:
                options.profile.mkdir(parents=True, exist_ok=True)
                paths = ours.profile(Load(top, seconds), options.profile)
        finally:
            for pair in pairs.values():
                pair.stop()

    print(
        "\nCPU per round trip, CRO and DSO processes together: median of the slices "
        "[min-max]; then each process's share (pooled) and how busy it was"
    )
    for concurrency in CONCURRENCIES:
        print(f"  c={concurrency}")
        for name in names:
            print(describe_cpu(name, results[(name, concurrency)]))
    print("\nRatios of CPU per round trip, per round: median [min-max]")
    for concurrency in CONCURRENCIES:
        ours_, floor_, theirs_ = (results[(name, concurrency)] for name in CONFIGURATIONS)
        print(
            f"  c={concurrency:<3} theirs/ours {spread(ratios(theirs_, ours_))}   "
            f"ours/floor {spread(ratios(ours_, floor_))}   "
            f"theirs/floor {spread(ratios(theirs_, floor_))}"
        )
        for name in variants:
            print(f"        {name}/ours {spread(ratios(results[(name, concurrency)], ours_))}")
    print(
        "\nThroughput (round trips ending inside the slices, pooled), latency, and the time "
        "both processes' threads were ready to run but waited for a core, per round trip"
    )
    for concurrency in CONCURRENCIES:
        print(f"  c={concurrency}")
        for name in names:
            print(describe_throughput(name, results[(name, concurrency)]))
        ours_, theirs_ = results[("ours", concurrency)], results[("theirs", concurrency)]
        line = f"    per round: ours/theirs {spread(speedups(ours_, theirs_))}"
        for name in variants:
            line += f"   {name}/ours {spread(speedups(results[(name, concurrency)], ours_))}"
        print(line)
    print("SQLite durability in use (ours):")
    print(durability)

    print(f"load average (1 min) over the run: {spread(loads, unit='')}")
    warm = describe_errors(warmups)
    print(
        "\nwarm-up, not measured: "
        + ", ".join(f"{name} {slices[0].completed} round trips" for name, slices in warmups.items())
        + (", failed:" if warm else ", none failed")
    )
    for line in warm:
        print(line)
    measured = describe_errors(
        {name: [o for c in CONCURRENCIES for o in results[(name, c)]] for name in names}
    )
    print("measured slices: " + ("failed round trips:" if measured else "no failed round trips"))
    for line in measured:
        print(line)

    verdicts = targets(results, [name for name in names if name.startswith("ours")])
    if options.profile:
        for domain, path in paths.items():
            print_profile(path, f"ours {domain} (profiled slice, c={top})", options.profile_lines)
    return 0 if verdicts["ours"] and not measured else 1


def targets(results: dict[tuple[str, int], list[Outcome]], ours: list[str]) -> dict[str, bool]:
    """Print each configuration of ours against the targets; whether it met them all."""
    top, serial = CONCURRENCIES[-1], CONCURRENCIES[0]
    print("\nTargets (issue 13):")
    met: dict[str, bool] = {}
    for name in ours:
        cpu = statistics.median(o.cpu_per_round_trip for o in results[(name, top)])
        throughput = statistics.median(
            x.throughput / y.throughput
            for x, y in zip(results[(name, serial)], results[("theirs", serial)], strict=True)
        )
        cheap, fast = cpu <= TARGET_CPU, throughput >= TARGET_SERIAL_THROUGHPUT
        print(
            f"  {name:{WIDTH}} CPU per round trip at c={top} {ms(cpu)} (target <= "
            f"{ms(TARGET_CPU)}): {'PASS' if cheap else 'FAIL'};   round trips/s at c={serial} "
            f"{throughput:.2f}x theirs, median of the rounds (target >= "
            f"{TARGET_SERIAL_THROUGHPUT:g}x): {'PASS' if fast else 'FAIL'}"
        )
        met[name] = cheap and fast
    return met


if __name__ == "__main__":
    sys.exit(main())
