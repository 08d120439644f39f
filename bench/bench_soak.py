"""Soak: 50 DSOs publishing to one CRO for a while; nothing may be lost or handled twice.

The CRO runs as a user runs it (``python -m adapter serve --config cro.toml``, the register
handlers on its SQLite file) in its own process. The senders are 50 DSO participants, each
with its own domain, signing key, SQLite store and endpoint, spread over `--processes`
processes. Each sender publishes its own congestion point with `Participant.request()`, one
DSOPortfolioUpdate after the other (a new one once the previous one is answered), alternating
between two sets of connections so that every update changes the register.

After `--seconds` the senders stop starting requests, wait for the ones in flight, and stop;
then the CRO is stopped and every store is read:

* lost: a request a sender's outbox holds (durable once `request()` queued it) that the CRO
  did not store and handle, or whose response the sender did not store;
* duplicated: a request applied to the register more than once, answered more than once by
  the CRO, or whose answer the sender stored more than once; or anything in the CRO that no
  sender sent.

Printed: round trips and throughput (those completed within the measured window), p50/p99
latency of `request()` (send to correlated response), the CRO's peak memory (ru_maxrss of the
child, from wait4) and CPU time, and the counts above. Exit status 1 when anything was lost or
duplicated, or a request failed.

    .venv/bin/python bench/bench_soak.py                 # 20 s, 50 senders, 1 process
    .venv/bin/python bench/bench_soak.py --seconds 15 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

CRO = "cro.soak.test"
START = date(2024, 1, 1)
REQUEST = "DSOPortfolioUpdate"
RESPONSE = "DSOPortfolioUpdateResponse"
#: Retries tuned for loopback: a busy CRO is tried again within a second, not minutes.
DELIVERY_TOML = """\
[delivery]
deadline_seconds = 3600
request_timeout_seconds = 30
backoff_initial_seconds = 0.05
backoff_max_seconds = 1.0
"""


@dataclass(frozen=True)
class Sender:
    index: int
    domain: str
    port: int
    key: str
    store: str


@dataclass
class SenderReport:
    """What one sender process saw, from the client side."""

    latencies: list[float] = field(default_factory=list)
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0


# --- the senders ----------------------------------------------------------------------------


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


def sender_process(
    conn: Connection, senders: list[Sender], cro_url: str, cro_key: str, args: dict[str, Any]
) -> None:
    logging.basicConfig(level=logging.ERROR, format="sender: %(levelname)s: %(name)s: %(message)s")
    report = asyncio.run(_senders(conn, senders, cro_url, cro_key, args))
    conn.send(
        {
            "latencies": report.latencies,
            "completed": report.completed,
            "errors": dict(report.errors),
            "unfinished": report.unfinished,
        }
    )


async def _senders(
    conn: Connection, senders: list[Sender], cro_url: str, cro_key: str, args: dict[str, Any]
) -> SenderReport:
    from adapter.config import DeliverySettings
    from adapter.directory import Peer, StaticDirectory
    from adapter.keys import load_private
    from adapter.participant import Participant
    from adapter.store.sqlite import SqliteStore
    from adapter.uftp.envelope import parse_cs1
    from adapter.uftp.messages import Role

    cro_peer = Peer(CRO, Role.CRO, cro_url, (parse_cs1(cro_key).signing,))
    delivery = DeliverySettings(
        deadline_seconds=3600, backoff_initial_seconds=0.05, backoff_max_seconds=1.0
    )
    participants = [
        Participant(
            domain=sender.domain,
            role=Role.DSO,
            keys=load_private(sender.key),
            store=SqliteStore(sender.store),
            directory=StaticDirectory([cro_peer]),
            delivery=delivery,
            port=sender.port,
        )
        for sender in senders
    ]
    for participant in participants:
        await participant.start()
    loop = asyncio.get_running_loop()
    conn.send("ready")
    seconds = await loop.run_in_executor(None, conn.recv)  # the go signal: the window length
    report = SenderReport()
    window_start = time.perf_counter()
    window_end = window_start + seconds

    async def run(sender: Sender, participant: Participant) -> None:
        round_ = 0
        while time.perf_counter() < window_end:
            message = update_for(sender.index, round_, args["connections"])
            round_ += 1
            began = time.perf_counter()
            try:
                await participant.request(message, to=CRO, timeout=args["timeout"])
            except Exception as exc:  # counted and reported, never hidden
                report.errors[type(exc).__name__] += 1
                continue
            ended = time.perf_counter()
            report.completed += 1
            if ended <= window_end:
                report.latencies.append(ended - began)

    tasks = [asyncio.create_task(run(s, p)) for s, p in zip(senders, participants, strict=True)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + args["drain"])
    report.unfinished = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for participant in participants:
        await participant.stop()
    return report


# --- counting from the stores ---------------------------------------------------------------


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


def reference_of(blob: bytes) -> tuple[str, str]:
    """(reference MessageID, Result) of a stored response envelope."""
    from adapter.uftp import codec, envelope

    signed = envelope.parse_envelope(blob)
    message = codec.decode(signed.sealed[envelope.SIGNATURE_BYTES :])
    return message.reference_message_id, str(message.result)  # type: ignore[attr-defined]


def count(senders: list[Sender], cro_store: Path) -> Tally:
    tally = Tally()
    sent: set[tuple[str, str]] = set()
    stored_answers: Counter[tuple[str, str]] = Counter()
    for sender in senders:
        with read_only(sender.store) as conn:
            for (message_id,) in conn.execute(
                "SELECT message_id FROM outbound WHERE message_type = ?", (REQUEST,)
            ):
                sent.add((sender.domain, message_id))
            for (blob,) in conn.execute(
                "SELECT e.envelope FROM inbound AS i JOIN inbound_envelope AS e "
                "ON e.sender_domain = i.sender_domain AND e.message_id = i.message_id "
                "WHERE i.message_type = ?",
                (RESPONSE,),
            ):
                reference, _ = reference_of(bytes(blob))
                stored_answers[(sender.domain, reference)] += 1
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
            reference, result = reference_of(bytes(blob))
            answers[(recipient, reference)] += 1
            results[(recipient, reference)] = result

    tally.requests = len(sent)
    for key in sent:
        handled = inbound.get(key) == "handled"
        tally.handled += handled
        tally.answered += stored_answers[key] >= 1
        if not handled or stored_answers[key] == 0 or answers[key] == 0:
            tally.lost += 1
            tally.details.append(
                f"lost {key}: CRO inbound {inbound.get(key)}, CRO answers {answers[key]}, "
                f"stored answers {stored_answers[key]}"
            )
        if applied[key] > 1 or answers[key] > 1 or stored_answers[key] > 1:
            tally.duplicated += 1
            tally.details.append(
                f"twice {key}: applied {applied[key]}, CRO answers {answers[key]}, "
                f"stored answers {stored_answers[key]}"
            )
        if results.get(key, "Accepted") != "Accepted":
            tally.rejected += 1
    # Applied without a matching request: the register holds what nobody sent.
    phantoms = (set(applied) | set(inbound)) - sent
    tally.duplicated += len(phantoms)
    tally.details.extend(f"in the CRO but sent by nobody: {key}" for key in sorted(phantoms))
    return tally


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
endpoint = "http://127.0.0.1:{s.port}/shapeshifter/api/v3/message"
public_keys = "{public[s.domain]}"
"""
        for s in senders
    )
    path = root / "cro.toml"
    path.write_text(
        f"""\
[participant]
domain = "{CRO}"
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


def stop_and_measure(cro: subprocess.Popen[bytes], timeout: float) -> tuple[int, float, float]:
    """SIGTERM the CRO, reap it with wait4: (exit status, peak RSS in KiB, CPU seconds)."""
    cro.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(cro.pid, os.WNOHANG)
        if pid == cro.pid:
            break
        if time.monotonic() > deadline:
            cro.kill()
            pid, status, usage = os.wait4(cro.pid, 0)
            break
        time.sleep(0.05)
    cro.returncode = os.waitstatus_to_exitcode(status)
    return cro.returncode, float(usage.ru_maxrss), usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> int:
    from adapter.keys import generate, write_private

    root = Path(tempfile.mkdtemp(prefix="soak-", dir=args.store_dir))
    public: dict[str, str] = {}
    senders: list[Sender] = []
    for index in range(args.senders):
        domain = sender_domain(index)
        key = root / f"{domain}.key"
        keys = generate()
        write_private(key, keys)
        public[domain] = keys.public.to_cs1()
        senders.append(
            Sender(index, domain, free_port(), str(key), str(root / f"{domain}.sqlite3"))
        )
    cro_keys = generate()
    write_private(root / "cro.key", cro_keys)
    cro_port = free_port()
    config = write_cro_config(root, cro_port, senders, public)
    cro_url = f"http://127.0.0.1:{cro_port}/shapeshifter/api/v3/message"

    log = (root / "cro.log").open("wb")
    cro = subprocess.Popen(
        [sys.executable, "-m", "adapter", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[Any, Connection]] = []
    try:
        assert cro.stdout is not None
        line = cro.stdout.readline().decode()
        if not line.startswith("serving"):
            print(f"the CRO did not start: {line!r}; see {root / 'cro.log'}", file=sys.stderr)
            return 1
        options = {"connections": args.connections, "timeout": args.timeout, "drain": args.drain}
        for n in range(args.processes):
            mine = senders[n :: args.processes]
            parent, child = context.Pipe()
            worker = context.Process(
                target=sender_process,
                args=(child, mine, cro_url, cro_keys.public.to_cs1(), options),
            )
            worker.start()
            workers.append((worker, parent))
        for _, pipe in workers:
            if pipe.recv() != "ready":
                raise RuntimeError("a sender process did not start")
        started = time.perf_counter()
        for _, pipe in workers:
            pipe.send(args.seconds)
        reports = [pipe.recv() for _, pipe in workers]
        elapsed = time.perf_counter() - started
        for worker, _ in workers:
            worker.join(timeout=30)
    finally:
        for worker, _ in workers:
            if worker.is_alive():
                worker.kill()
        if cro.returncode is None:
            status, peak_kib, cpu = stop_and_measure(cro, timeout=30)
        log.close()

    latencies = [x for report in reports for x in report["latencies"]]
    completed = sum(report["completed"] for report in reports)
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    unfinished = sum(report["unfinished"] for report in reports)
    tally = count(senders, root / "cro.sqlite3")

    print(
        f"soak: {args.senders} senders in {args.processes} process(es) -> 1 CRO process, "
        f"{args.seconds:g} s, {args.connections} connections per update"
    )
    print(
        f"  round trips in the window: {len(latencies)} "
        f"({len(latencies) / args.seconds:.1f}/s); {completed} in all, "
        f"{elapsed:.1f} s with the drain"
    )
    print(
        f"  latency: p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(latencies, default=float('nan')) * 1000:.1f} ms"
    )
    print(
        f"  CRO: peak memory (ru_maxrss) {peak_kib / 1024:.1f} MiB, CPU {cpu:.1f} s, exit {status}"
    )
    print(
        f"  stores: {tally.requests} requests sent, {tally.handled} handled by the CRO, "
        f"{tally.answered} answered, {tally.rejected} rejected"
    )
    print(f"  client: {dict(errors) or 'no'} errors, {unfinished} senders unfinished at the end")
    print(f"  lost: {tally.lost}")
    print(f"  duplicated: {tally.duplicated}")
    for line in tally.details[:20]:
        print(f"    {line}")
    summary = {
        "senders": args.senders,
        "seconds": args.seconds,
        "round_trips": len(latencies),
        "throughput_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "cro_peak_rss_mib": round(peak_kib / 1024, 1),
        "requests": tally.requests,
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "rejected": tally.rejected,
        "errors": sum(errors.values()),
    }
    print(json.dumps(summary))
    if args.keep:
        print(f"  stores kept in {root}")
    else:
        for path in sorted(root.iterdir()):
            path.unlink()
        root.rmdir()
    failed = tally.lost or tally.duplicated or errors or unfinished or status != 0
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window (20)")
    parser.add_argument("--senders", type=int, default=50, help="DSO participants (50)")
    parser.add_argument("--processes", type=int, default=1, help="sender processes (1)")
    parser.add_argument("--connections", type=int, default=10, help="per update (10)")
    parser.add_argument("--timeout", type=float, default=60.0, help="request() timeout (60 s)")
    parser.add_argument("--drain", type=float, default=60.0, help="wait for in-flight (60 s)")
    parser.add_argument("--store-dir", help="where the stores go (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and logs")
    args = parser.parse_args()
    if not 1 <= args.processes <= args.senders:
        parser.error("--processes must be between 1 and --senders")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
