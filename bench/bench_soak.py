"""Soak: 50 DSOs publishing to one CRO; the CRO's own cost, and nothing lost or handled twice.

The CRO runs as a user runs it (``python -m adapter serve --config cro.toml``, the register
handlers on its SQLite file) in its own process. Beside it, in a process of its own,
shapeshifter-uftp's CRO service (which stores nothing and keeps no register: it answers every
DSOPortfolioUpdate Accepted) takes the same load in the same run, for comparison.

The senders are made cheap, so that what is measured is the CRO: 50 DSO domains, each with its
own signing key and its own endpoint port, in `--processes` processes of their own. Before
anything is timed, each sender process builds and signs every envelope it may send (a distinct
MessageID each, alternating between two sets of connections so that every update changes the
register, TimeStamps in sending order) for each CRO. In the window it only POSTs them with a
bare aiohttp client, one after the other per sender (the next once the previous one is
answered), retrying what a sender must retry (connection errors, 5xx, 404, 408, 419, 429);
its endpoint only reads each response's reference MessageID and answers 200. The responses
are verified and decoded after the window.

The two CROs take turns in slices of `--slice` seconds, the order alternating, until each has
had `--seconds`; each first gets a warm-up slice that is not measured. After a slice the
senders start nothing new and wait for their requests in flight. Each process's CPU time is
read from /proc/<pid>/stat before and after each slice.

Printed for each CRO: its **CPU time per round trip** (one update handled and answered; per
slice, median and range) and **how busy it was** (CPU time over wall time: 100% is one core),
then throughput, p50/p99 latency (send to response received), how busy the sender processes
were (well below 100%: the senders are not the limit), peak memory, and the failures of the
warm-up apart from the measured ones (shapeshifter-uftp's service refuses the first messages
that arrive at once with HTTP 400, "No class found matching root": a start-up race of its
xsdata parser).

Then, for ours, every store is read after the CRO has stopped:

* lost: a request the CRO acknowledged (HTTP 200) that it did not store and handle, or did
  not answer, or whose response the sender did not receive;
* duplicated: a request applied to the register more than once, or answered by the CRO with
  more than one response; or anything in the CRO that no sender sent.

For theirs, which stores nothing, the same from the senders' side only (acknowledged, and
answered once). Exit status 1 when anything of ours was lost or duplicated, or a measured
request of ours failed.

    .venv/bin/python bench/bench_soak.py                  # 20 s each, 5 s slices
    .venv/bin/python bench/bench_soak.py --seconds 10 --slice 2.5 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

OURS = "ours"
THEIRS = "theirs"
CRO_DOMAINS = {OURS: "cro.soak.test", THEIRS: "theirs.cro.soak.test"}
START = date(2024, 1, 1)
REQUEST = "DSOPortfolioUpdate"
RESPONSE = "DSOPortfolioUpdateResponse"
PATH = "/shapeshifter/api/v3/message"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
#: What a sender retries, as this adapter's outbox does: temporary by the spec.
RETRY_STATUSES = frozenset({404, 408, 419, 429, 500, 502, 503, 504})
#: Pause after a slice before the CPU clocks are read: the CRO's last commits belong to it.
SETTLE = 0.3
#: Retries tuned for loopback: a busy sender is tried again within a second, not minutes.
DELIVERY_TOML = """\
[delivery]
deadline_seconds = 3600
request_timeout_seconds = 30
backoff_initial_seconds = 0.05
backoff_max_seconds = 1.0
"""
BODY = re.compile(rb'\sBody="([^"]*)"')
REFERENCE = re.compile(rb'(?:ReferenceMessageID|DSOPortfolioUpdateResponseMessageID)="([^"]+)"')


@dataclass(frozen=True)
class Sender:
    index: int
    domain: str
    port: int
    secret: bytes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


@dataclass(frozen=True)
class Target:
    """One CRO the senders publish to."""

    name: str
    domain: str
    url: str


# --- the senders: pre-signed envelopes, a bare client, a bare endpoint ------------------------


def sender_domain(index: int) -> str:
    return f"dso{index:02d}.soak.test"


def update_for(index: int, round_: int, connections: int) -> Any:
    from adapter.uftp.messages import (
        DSOPortfolioUpdate,
        DSOPortfolioUpdateCongestionPoint,
        DSOPortfolioUpdateConnection,
        RedispatchBy,
    )

    variant = round_ % 2
    return DSOPortfolioUpdate(
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ea1.2024-01.nl.example:soak-{index:02d}",
                start_period=START,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(
                    DSOPortfolioUpdateConnection(f"ean.{index:04d}{variant:02d}{j:012d}", START)
                    for j in range(connections)
                ),
            ),
        ),
    )


def envelopes_for(
    sender: Sender, target: Target, count: int, connections: int
) -> deque[tuple[str, bytes]]:
    """`count` signed updates from `sender` to `target`, (MessageID, SignedMessage) each, in
    sending order: TimeStamps a millisecond apart, so that none is older than the one before
    ("Subordinate sequence number")."""
    from adapter.uftp import codec, envelope
    from adapter.uftp.messages import Role

    first = datetime.now(UTC)
    templates = [update_for(sender.index, variant, connections) for variant in (0, 1)]
    built: deque[tuple[str, bytes]] = deque()
    for n in range(count):
        message = replace(
            templates[n % 2],
            version="3.1.0",
            sender_domain=sender.domain,
            recipient_domain=target.domain,
            time_stamp=first + timedelta(milliseconds=n),
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
        )
        inner = codec.encode(message)
        built.append(
            (message.message_id, envelope.seal(inner, sender.secret, sender.domain, Role.DSO))
        )
    return built


def reference_in(document: bytes) -> str | None:
    """The reference MessageID of a response, read cheaply: no parse, no signature check
    (both come after the window, in `decode_response`)."""
    body = BODY.search(document)
    if body is None:
        return None
    with contextlib.suppress(ValueError):
        found = REFERENCE.search(base64.b64decode(body.group(1)))
        return found.group(1).decode() if found else None
    return None


@dataclass
class SliceReport:
    """What the senders of one process saw in one slice."""

    latencies: list[float] = field(default_factory=list)
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    exhausted: int = 0

    def merge(self, other: SliceReport) -> None:
        self.latencies += other.latencies
        self.completed += other.completed
        self.errors.update(other.errors)
        self.retried.update(other.retried)
        self.acknowledged += other.acknowledged
        self.exhausted += other.exhausted


def sender_process(
    conn: Connection, senders: list[Sender], targets: list[Target], options: dict[str, Any]
) -> None:
    logging.basicConfig(level=logging.ERROR, format="sender: %(levelname)s: %(name)s: %(message)s")
    asyncio.run(_senders(conn, senders, targets, options))


async def _senders(
    conn: Connection, senders: list[Sender], targets: list[Target], options: dict[str, Any]
) -> None:
    import aiohttp
    from aiohttp import web

    began = time.perf_counter()
    envelopes = {
        target.name: {
            sender.domain: envelopes_for(sender, target, options["count"], options["connections"])
            for sender in senders
        }
        for target in targets
    }
    build_seconds = time.perf_counter() - began
    loop = asyncio.get_running_loop()
    waiters: dict[str, asyncio.Future[float]] = {}
    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        document = await request.read()
        received.append(document)
        waiter = waiters.pop(reference_in(document) or "", None)
        if waiter is not None and not waiter.done():
            waiter.set_result(time.perf_counter())
        return web.Response(text="OK\n")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post(PATH, receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for sender in senders:
        await web.TCPSite(runner, "127.0.0.1", sender.port).start()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
    )

    async def deliver(url: str, body: bytes, deadline: float, report: SliceReport) -> str | None:
        """POST until a 200 (None), a refusal or the deadline (what went wrong)."""
        delay = 0.05
        while True:
            try:
                async with session.post(url, data=body, headers=HEADERS) as response:
                    await response.read()
                    status: int | None = response.status
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, problem = None, type(exc).__name__
            if status == 200:
                return None
            if status is not None and status not in RETRY_STATUSES:
                return problem
            if time.perf_counter() + delay > deadline:
                return f"not delivered in time: {problem}"
            report.retried[problem] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def run_slice(target: Target, seconds: float) -> SliceReport:
        report = SliceReport()
        end = time.perf_counter() + seconds

        async def one(sender: Sender) -> None:
            queue = envelopes[target.name][sender.domain]
            while (began := time.perf_counter()) < end:
                if not queue:
                    report.exhausted += 1
                    return
                message_id, body = queue.popleft()
                waiter = waiters[message_id] = loop.create_future()  # the answer may come first
                deadline = began + options["timeout"]
                error = await deliver(target.url, body, deadline, report)
                if error is None:
                    report.acknowledged.append((sender.domain, message_id))
                    try:
                        ended = await asyncio.wait_for(waiter, deadline - time.perf_counter())
                    except TimeoutError:
                        error = f"no response within {options['timeout']:g} s"
                if error is not None:
                    waiters.pop(message_id, None)
                    report.errors[error] += 1
                    continue
                report.completed += 1
                if ended <= end:
                    report.latencies.append(ended - began)

        await asyncio.gather(*(one(sender) for sender in senders))
        return report

    conn.send({"build_seconds": build_seconds, "envelopes": options["count"] * len(senders)})
    targets_by_name = {target.name: target for target in targets}
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "slice":
            name, seconds = args
            conn.send(await run_slice(targets_by_name[name], seconds))
        elif command == "finish":
            await asyncio.sleep(args[0])  # responses to requests that timed out, if any
            conn.send(received)
            break
    await session.close()
    await runner.cleanup()


# --- shapeshifter-uftp's CRO ------------------------------------------------------------------


class Refusals(logging.Handler):
    """Counts the messages their service refused, with the reason it logs (a sender only sees
    "HTTP 400 Bad Request"), instead of printing every one."""

    PREFIX = "The original transport error is "

    def __init__(self, counts: Counter[str], lock: threading.Lock) -> None:
        super().__init__()  # (its own `lock` is logging's: another name here)
        self.counts, self.counts_lock = counts, lock

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(self.PREFIX):
            with self.counts_lock:
                self.counts[f"their CRO refused: {text.removeprefix(self.PREFIX)[:100]}"] += 1


def their_cro_process(
    conn: Connection, domain: str, secret: bytes, peers: dict[str, tuple[str, bytes]]
) -> None:
    """Their CRO service, answering every DSOPortfolioUpdate Accepted; `peers` maps each DSO
    domain to (endpoint, public key)."""
    logging.basicConfig(level=logging.WARNING)
    from shapeshifter_uftp import ShapeshifterCroService
    from shapeshifter_uftp import uftp as ss

    keys = {d: base64.b64encode(key).decode() for d, (_, key) in peers.items()}
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    class SoakCro(ShapeshifterCroService):  # type: ignore[misc]  # untyped package
        def process_dso_portfolio_update(self, message: Any) -> None:
            response = ss.DsoPortfolioUpdateResponse(
                conversation_id=message.conversation_id,
                dso_portfolio_update_message_id=message.message_id,
                result=ss.AcceptedRejected.ACCEPTED,
            )
            self.dso_client(message.sender_domain).send_dso_portfolio_update_response(response)

        def process_dso_portfolio_query(self, message: Any) -> None: ...
        def process_agr_portfolio_update(self, message: Any) -> None: ...
        def process_agr_portfolio_query(self, message: Any) -> None: ...

    service = SoakCro(
        domain,
        base64.b64encode(secret).decode(),
        key_lookup_function=lambda d, role: keys.get(d),
        endpoint_lookup_function=lambda d, role: peers[d][0] if d in peers else None,
        host="127.0.0.1",
        port=0,
    )
    service.server.config.access_log = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    their_log = logging.getLogger("shapeshifter-uftp")
    their_log.setLevel(logging.WARNING)
    their_log.handlers = [Refusals(refused, lock)]
    their_log.propagate = False
    service.run_in_thread()
    port = service.server.servers[0].sockets[0].getsockname()[1]
    conn.send(f"http://127.0.0.1:{port}{PATH}")
    while True:
        command = conn.recv()
        if command == "refused":
            with lock:
                conn.send(Counter(refused))
        elif command == "stop":
            break
    service.stop()
    conn.send("stopped")


# --- counting -----------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    handled: int = 0
    answered: int = 0
    rejected: int = 0
    lost: int = 0
    duplicated: int = 0
    details: list[str] = field(default_factory=list)


def read_only(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def decode_response(document: bytes, keys: dict[str, bytes]) -> tuple[str, str, str, str]:
    """(CRO domain, response MessageID, reference MessageID, Result) of a response envelope,
    its signature checked with the key of the CRO that sent it."""
    from adapter.uftp import codec, envelope

    signed = envelope.parse_envelope(document)
    message = codec.decode(envelope.open_sealed(signed.sealed, [keys[signed.sender_domain]]))
    return (
        signed.sender_domain,
        message.message_id,
        message.reference_message_id,  # type: ignore[attr-defined]
        str(message.result),  # type: ignore[attr-defined]
    )


def responses_by_request(
    documents: Iterable[bytes], keys: dict[str, bytes]
) -> dict[str, dict[str, set[str]]]:
    """CRO domain -> request MessageID -> the distinct response MessageIDs received for it (a
    response delivered again is the same MessageID: one answer)."""
    answers: dict[str, dict[str, set[str]]] = {domain: {} for domain in keys}
    for document in documents:
        cro, response_id, reference, _ = decode_response(document, keys)
        answers[cro].setdefault(reference, set()).add(response_id)
    return answers


def count_ours(
    sent: set[tuple[str, str]], received: dict[str, set[str]], cro_store: Path, cro_key: bytes
) -> Tally:
    tally = Tally(requests=len(sent))
    with read_only(cro_store) as conn:
        inbound = {
            (sender, message_id): status
            for sender, message_id, status in conn.execute(
                "SELECT sender_domain, message_id, status FROM inbound WHERE message_type = ?",
                (REQUEST,),
            )
        }
        applied = Counter(
            {
                (sender, message_id): n
                for sender, message_id, n in conn.execute(
                    "SELECT sender_domain, message_id, count(*) FROM cro_update "
                    "GROUP BY sender_domain, message_id"
                )
            }
        )
        answers: Counter[tuple[str, str]] = Counter()
        results: dict[tuple[str, str], str] = {}
        for recipient, blob in conn.execute(
            "SELECT o.recipient_domain, e.envelope FROM outbound AS o "
            "JOIN outbound_envelope AS e ON e.message_id = o.message_id "
            "WHERE o.message_type = ?",
            (RESPONSE,),
        ):
            _, _, reference, result = decode_response(bytes(blob), {CRO_DOMAINS[OURS]: cro_key})
            answers[(recipient, reference)] += 1
            results[(recipient, reference)] = result

    for key in sorted(sent):
        handled = inbound.get(key) == "handled"
        got = len(received.get(key[1], ()))
        tally.handled += handled
        tally.answered += got >= 1
        if not handled or answers[key] == 0 or got == 0:
            tally.lost += 1
            tally.details.append(
                f"lost {key}: CRO inbound {inbound.get(key)}, CRO answers {answers[key]}, "
                f"answers received {got}"
            )
        if applied[key] > 1 or answers[key] > 1 or got > 1:
            tally.duplicated += 1
            tally.details.append(
                f"twice {key}: applied {applied[key]}, CRO answers {answers[key]}, "
                f"answers received {got}"
            )
        if results.get(key, "Accepted") != "Accepted":
            tally.rejected += 1
    # In the CRO without a matching acknowledged request: the register holds what nobody sent.
    phantoms = (set(applied) | set(inbound)) - sent
    tally.duplicated += len(phantoms)
    tally.details.extend(f"in the CRO but sent by nobody: {key}" for key in sorted(phantoms))
    return tally


def count_theirs(sent: set[tuple[str, str]], received: dict[str, set[str]]) -> Tally:
    """What the senders can tell of a CRO that stores nothing: answered, and answered once."""
    tally = Tally(requests=len(sent))
    for key in sorted(sent):
        got = len(received.get(key[1], ()))
        tally.answered += got >= 1
        tally.lost += got == 0
        tally.duplicated += got > 1
    return tally


# --- measuring processes --------------------------------------------------------------------


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Slice:
    """One slice of one CRO: what the senders saw, and the CPU time of each process."""

    target: str
    seconds: float
    report: SliceReport
    #: CPU seconds of each CRO in the slice: the target's, and the other's background work
    #: (a checkpoint, a delivery that trails its own slice).
    cpu: dict[str, float]
    senders_cpu: float
    wall: float

    @property
    def cpu_per_round_trip(self) -> float:
        completed = self.report.completed
        return self.cpu[self.target] / completed if completed else math.nan


# --- setup and the run ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_cro_config(root: Path, port: int, senders: list[Sender], public: dict[str, str]) -> Path:
    peers = "".join(
        f"""
[[peers]]
domain = "{s.domain}"
role = "DSO"
endpoint = "{s.url}"
public_keys = "{public[s.domain]}"
"""
        for s in senders
    )
    path = root / "cro.toml"
    path.write_text(
        f"""\
[participant]
domain = "{CRO_DOMAINS[OURS]}"
role = "CRO"
signing_key = "{root / "cro.key"}"
listen = "127.0.0.1:{port}"
store = "sqlite:{root / "cro.sqlite3"}"
versions = ["3.1.0"]

{DELIVERY_TOML}
[cro]
mode = "closed"
{peers}""",
        "utf-8",
    )
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stop_cro(cro: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM our CRO and wait for it: its exit status (killed after `timeout`)."""
    cro.send_signal(signal.SIGTERM)
    try:
        return cro.wait(timeout)
    except subprocess.TimeoutExpired:
        cro.kill()
        return cro.wait()


class Run:
    """The processes of one run and the slices they go through."""

    def __init__(self, cro_pids: dict[str, int], workers: list[tuple[Any, Connection]]) -> None:
        self.cro_pids = cro_pids
        self.workers = workers

    def slice(self, target: str, seconds: float) -> Slice:
        sender_pids = [worker.pid for worker, _ in self.workers]
        cro0 = {name: cpu_seconds(pid) for name, pid in self.cro_pids.items()}
        senders0 = sum(map(cpu_seconds, sender_pids))
        began = time.perf_counter()
        for _, pipe in self.workers:
            pipe.send(("slice", target, seconds))
        report = SliceReport()
        for _, pipe in self.workers:
            report.merge(pipe.recv())
        time.sleep(SETTLE)
        wall = time.perf_counter() - began
        cpu = {name: cpu_seconds(pid) - cro0[name] for name, pid in self.cro_pids.items()}
        senders_cpu = sum(map(cpu_seconds, sender_pids)) - senders0
        return Slice(target, seconds, report, cpu, senders_cpu, wall)


def figures(name: str, slices: list[Slice]) -> dict[str, Any]:
    """One CRO's figures over the measured slices. Its CPU time counts whole: in its own
    slices, and what it spent in the other CRO's slices (background work of its own)."""
    own = [s for s in slices if s.target == name]
    completed = sum(s.report.completed for s in own)
    cpu = sum(s.cpu[name] for s in own)
    background = sum(s.cpu[name] for s in slices if s.target != name)
    wall = sum(s.wall for s in own)
    latencies = [x for s in own for x in s.report.latencies]
    seconds = sum(s.seconds for s in own)
    return {
        "cro_cpu_ms_per_round_trip": round((cpu + background) / completed * 1000, 3),
        "slices_cpu_ms_per_round_trip": [round(s.cpu_per_round_trip * 1000, 3) for s in own],
        "background_cpu_s": round(background, 2),
        "cro_busy": round(cpu / wall, 3),
        "slices_busy": [round(s.cpu[name] / s.wall, 3) for s in own],
        "senders_busy": round(sum(s.senders_cpu for s in own) / wall, 3),
        "senders_cpu_ms_per_round_trip": round(
            sum(s.senders_cpu for s in own) / completed * 1000, 3
        ),
        "throughput_per_s": round(len(latencies) / seconds, 1),
        "round_trips": len(latencies),
        "with_drains": completed,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def describe(title: str, f: dict[str, Any], slices: list[Slice], processes: int) -> list[str]:
    per_trip, busy = f["slices_cpu_ms_per_round_trip"], f["slices_busy"]
    lines = [
        f"  {title}:",
        f"    CRO CPU per round trip   {f['cro_cpu_ms_per_round_trip']:.2f} ms "
        f"(slices {min(per_trip):.2f}-{max(per_trip):.2f}; "
        f"{f['background_cpu_s']:.2f} s CPU in the other CRO's slices included)",
        f"    CRO busy                 {f['cro_busy']:.0%} of one core "
        f"(slices {min(busy):.0%}-{max(busy):.0%}); peak memory {f['peak_rss_mib']:.1f} MiB",
        f"    round trips              {f['throughput_per_s']:.1f}/s in the slices "
        f"({f['round_trips']}; {f['with_drains']} with the drains); p50 {f['p50_ms']:.1f} ms, "
        f"p99 {f['p99_ms']:.1f} ms",
        f"    senders busy             {f['senders_busy']:.0%} of one core in {processes} "
        f"process(es), {f['senders_cpu_ms_per_round_trip']:.2f} ms per round trip",
    ]
    retried: Counter[str] = Counter()
    exhausted = 0
    for s in slices:
        retried.update(s.report.retried)
        exhausted += s.report.exhausted
    if retried:
        lines.append(f"    retried                  {dict(retried)}")
    if exhausted:
        lines.append(
            f"    out of envelopes         {exhausted} sender(s) ran out before a slice ended: "
            "raise --budget"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from nacl.bindings import crypto_sign_keypair

    from adapter.keys import generate, write_private

    root = Path(tempfile.mkdtemp(prefix="soak-", dir=args.store_dir))
    public: dict[str, str] = {}
    peers: dict[str, tuple[str, bytes]] = {}  # what their CRO knows of each sender
    senders: list[Sender] = []
    for index in range(args.senders):
        domain = sender_domain(index)
        keys = generate()
        public[domain] = keys.public.to_cs1()
        senders.append(Sender(index, domain, free_port(), keys.signing))
        peers[domain] = (senders[-1].url, keys.public.signing)
    cro_keys = generate()
    write_private(root / "cro.key", cro_keys)
    their_public, their_secret = crypto_sign_keypair()
    cro_port = free_port()
    config = write_cro_config(root, cro_port, senders, public)
    rounds = max(1, math.ceil(args.seconds / args.slice))
    per_sender = math.ceil(args.budget * (rounds * args.slice + args.warmup))

    log = (root / "cro.log").open("wb")
    cro = subprocess.Popen(
        [sys.executable, "-m", "adapter", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    context = multiprocessing.get_context("spawn")
    their_pipe, their_end = context.Pipe()
    theirs = context.Process(
        target=their_cro_process, args=(their_end, CRO_DOMAINS[THEIRS], their_secret, peers)
    )
    theirs.start()
    workers: list[tuple[Any, Connection]] = []
    slices: list[Slice] = []
    warmups: dict[str, Slice] = {}
    status = -1
    peaks: dict[str, float] = {}
    try:
        assert cro.stdout is not None
        line = cro.stdout.readline().decode()
        if not line.startswith("serving"):
            print(f"our CRO did not start: {line!r}; see {root / 'cro.log'}", file=sys.stderr)
            return 1
        targets = [
            Target(OURS, CRO_DOMAINS[OURS], f"http://127.0.0.1:{cro_port}{PATH}"),
            Target(THEIRS, CRO_DOMAINS[THEIRS], their_pipe.recv()),
        ]
        options = {"connections": args.connections, "timeout": args.timeout, "count": per_sender}
        for n in range(args.processes):
            parent, child = context.Pipe()
            worker = context.Process(
                target=sender_process, args=(child, senders[n :: args.processes], targets, options)
            )
            worker.start()
            workers.append((worker, parent))
        ready = [pipe.recv() for _, pipe in workers]
        print(
            f"soak: {args.senders} senders in {args.processes} process(es) -> our CRO "
            f"(adapter serve, SQLite) and theirs (shapeshifter-uftp), {rounds} slice(s) of "
            f"{args.slice:g} s each, interleaved, after {args.warmup:g} s of warm-up each; "
            f"{args.connections} connections per update; "
            f"{sum(r['envelopes'] for r in ready)} envelopes per CRO pre-signed in "
            f"{max(r['build_seconds'] for r in ready):.1f} s; "
            f"{multiprocessing.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        assert theirs.pid is not None
        measured = Run({OURS: cro.pid, THEIRS: theirs.pid}, workers)
        for target in (OURS, THEIRS):
            warmups[target] = measured.slice(target, args.warmup)
        for round_ in range(rounds):
            for target in (OURS, THEIRS) if round_ % 2 == 0 else (THEIRS, OURS):
                slices.append(measured.slice(target, args.slice))
        for _, pipe in workers:
            pipe.send(("finish", 1.0))
        received = [document for _, pipe in workers for document in pipe.recv()]
        for worker, _ in workers:
            worker.join(timeout=30)
        their_pipe.send("refused")
        their_refused: Counter[str] = their_pipe.recv()
        peaks = {OURS: peak_rss_mib(cro.pid), THEIRS: peak_rss_mib(theirs.pid)}
    finally:
        for worker, _ in workers:
            if worker.is_alive():
                worker.kill()
        if theirs.is_alive():
            with contextlib.suppress(OSError, EOFError):
                their_pipe.send("stop")
                their_pipe.recv()
            theirs.join(10)
            if theirs.is_alive():
                theirs.kill()
        if cro.returncode is None:
            status = stop_cro(cro, timeout=30)
        log.close()

    cro_public = {CRO_DOMAINS[OURS]: cro_keys.public.signing, CRO_DOMAINS[THEIRS]: their_public}
    answers = responses_by_request(received, cro_public)
    sent = {
        name: {
            key
            for s in [*slices, warmups[name]]
            if s.target == name
            for key in s.report.acknowledged
        }
        for name in (OURS, THEIRS)
    }
    tallies = {
        OURS: count_ours(
            sent[OURS],
            answers[CRO_DOMAINS[OURS]],
            root / "cro.sqlite3",
            cro_public[CRO_DOMAINS[OURS]],
        ),
        THEIRS: count_theirs(sent[THEIRS], answers[CRO_DOMAINS[THEIRS]]),
    }
    by_target = {name: [s for s in slices if s.target == name] for name in (OURS, THEIRS)}
    summary = {name: figures(name, slices) for name in (OURS, THEIRS)}
    print(f"  (load average at the end: {os.getloadavg()[0]:.2f})")
    for name, title in (
        (OURS, "ours (adapter serve, SQLite register)"),
        (THEIRS, "theirs (shapeshifter-uftp 2.4, stores nothing)"),
    ):
        summary[name]["peak_rss_mib"] = round(peaks.get(name, math.nan), 1)
        print("\n".join(describe(title, summary[name], by_target[name], args.processes)))
    ratio = (
        summary[THEIRS]["cro_cpu_ms_per_round_trip"] / summary[OURS]["cro_cpu_ms_per_round_trip"]
    )
    print(f"  theirs/ours CRO CPU per round trip: {ratio:.2f}x")

    print("failures:")
    for name in (OURS, THEIRS):
        warm = warmups[name].report
        extra = their_refused if name == THEIRS else Counter()
        print(
            f"  {name} warm-up (not measured): {warm.completed} round trips, "
            + (f"failed: {dict(warm.errors)}" if warm.errors else "none failed")
        )
        if extra:
            print(f"    their CRO's log, whole run: {dict(extra)}")
        errors: Counter[str] = Counter()
        for s in by_target[name]:
            errors.update(s.report.errors)
        print(f"  {name} measured: " + (f"failed: {dict(errors)}" if errors else "none failed"))
    ours_errors = sum(sum(s.report.errors.values()) for s in by_target[OURS])

    print("stores and answers (ours: the CRO's store and what the senders received):")
    for name in (OURS, THEIRS):
        tally = tallies[name]
        handled = f"{tally.handled} handled by the CRO, " if name == OURS else ""
        print(
            f"  {name}: {tally.requests} requests acknowledged, {handled}{tally.answered} "
            f"answered, {tally.rejected} rejected; lost {tally.lost}, duplicated {tally.duplicated}"
        )
        for line in tally.details[:20]:
            print(f"    {line}")
    print(f"  our CRO exit status {status}")
    for name in (OURS, THEIRS):
        summary[name].update(lost=tallies[name].lost, duplicated=tallies[name].duplicated)
    print(json.dumps(summary))
    if args.keep:
        print(f"  stores kept in {root}")
    else:
        for path in sorted(root.iterdir()):
            path.unlink()
        root.rmdir()
    ours_tally = tallies[OURS]
    failed = ours_tally.lost or ours_tally.duplicated or ours_errors or status != 0
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per CRO (20)")
    parser.add_argument("--slice", type=float, default=5.0, help="seconds per slice (5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per CRO (2 s)")
    parser.add_argument("--senders", type=int, default=50, help="DSO domains (50)")
    parser.add_argument("--processes", type=int, default=1, help="sender processes (1)")
    parser.add_argument("--connections", type=int, default=10, help="per update (10)")
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="envelopes pre-signed per sender, CRO and second (20: above what a CRO answers)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per request (60 s)")
    parser.add_argument("--store-dir", help="where the stores go (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the store and logs")
    args = parser.parse_args()
    if not 1 <= args.processes <= args.senders:
        parser.error("--processes must be between 1 and --senders")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
