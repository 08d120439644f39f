"""A DSO in its own OS process, for the crash tests: a burst of portfolio updates, then wait.

    python -m tests.resilience.dso_driver --config dso.toml --count 40 --connections 800 \
        --time-stamp 2026-01-01T00:00:00+00:00

Starts a DSO `Participant` from the configuration, queues `--count` DSOPortfolioUpdates
with `send()` (fire-and-forget: each is durable once `send()` returns), and then runs until
SIGTERM, printing JSON lines on stdout:

* ``{"event": "started", "port": P}`` once it listens;
* ``{"event": "sent", "index": I, "message_id": ID}`` after each `send()` returned;
* ``{"event": "burst", "count": N}`` when the burst is queued;
* ``{"event": "progress", "requests": R, "delivered": D, "pending": P, "attempts": A,
  "answered": N, "tried": T}`` whenever those counts change, read from its own store
  (requests in the outbox, delivered with a 200, still pending, delivery attempts made,
  requests with a stored response, requests tried at least once);
* ``{"event": "done", "requests": R}`` once every request in its store has a response;
* ``{"event": "stopped"}`` after a clean stop.

Started again on the same store with ``--count 0`` it sends nothing new: its outbox resumes
the pending deliveries and it waits for the responses still missing.

Update `I` registers its own congestion point ``...:cp-I`` with `--connections` connections
of its own, so no two updates conflict and each is applied (Accepted) exactly once. Every
update carries the same TimeStamp (the participant's clock is frozen at `--time-stamp`): the
CRO applies concurrent updates in arrival order, and an update stamped earlier than one
already applied would be rejected as "Subordinate sequence number" (an equal one is not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import signal
import sqlite3
from datetime import date, datetime
from pathlib import Path

from adapter.assemble import load_keys
from adapter.config import SqliteStoreSettings as SqliteSettings
from adapter.config import load_config
from adapter.directory import Peer, StaticDirectory
from adapter.participant import Participant
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
    Result,
    Role,
)
from tests.resilience.stores import SenderView, read_sender

START = date(2024, 1, 1)


def portfolio_update(index: int, connections: int) -> DSOPortfolioUpdate:
    """Update `index`: one congestion point of its own with `connections` of its own."""
    return DSOPortfolioUpdate(
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ea1.2024-01.nl.example:cp-{index}",
                start_period=START,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(
                    DSOPortfolioUpdateConnection(f"ean.{index:06d}{j:012d}", START)
                    for j in range(connections)
                ),
            ),
        ),
    )


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def build(config_path: Path, time_stamp: datetime) -> tuple[Participant, SqliteStore, str]:
    """The DSO of the configuration, its store, and the domain of its one CRO peer."""
    config = load_config(config_path)
    settings = config.participant
    if settings.role is not Role.DSO or not isinstance(settings.store, SqliteSettings):
        raise SystemExit(f"{config_path}: expected a DSO with a SQLite store")
    store = SqliteStore(settings.store.path)
    peers = [Peer(p.domain, p.role, p.endpoint, p.signing_keys, p.barred) for p in config.peers]
    [cro] = [peer.domain for peer in peers if peer.role is Role.CRO]
    participant = Participant(
        domain=settings.domain,
        role=settings.role,
        keys=load_keys(settings),
        store=store,
        directory=StaticDirectory(peers),
        versions=settings.versions,
        listen=settings.listen,
        delivery=config.delivery,
        # The clock is frozen: the CRO's TimeStamps, on its own clock, are not checked.
        limits=dataclasses.replace(
            config.limits, time_stamp_future_seconds=math.inf, time_stamp_past_seconds=math.inf
        ),
        clock=lambda: time_stamp,
    )
    return participant, store, cro


async def report_progress(
    store: SqliteStore, burst_done: asyncio.Event, stop: asyncio.Event, poll: float
) -> None:
    cache: dict[str, tuple[str, Result, str]] = {}
    last: tuple[int, ...] | None = None
    done = False

    def read(conn: sqlite3.Connection) -> SenderView:
        return read_sender(conn, cache)

    while not stop.is_set():
        view = await store.read(read)
        answers = view.answers()
        answered = sum(1 for request in view.requests if answers[request])
        state = (
            len(view.requests),
            view.delivered,
            view.pending,
            sum(view.attempts.values()),
            answered,
            sum(1 for request in view.requests if view.attempts[request]),
        )
        if state != last:
            last = state
            emit(
                "progress",
                requests=state[0],
                delivered=state[1],
                pending=state[2],
                attempts=state[3],
                answered=state[4],
                tried=state[5],
            )
        if not done and burst_done.is_set() and view.requests and answered == len(view.requests):
            done = True
            emit("done", requests=len(view.requests))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    participant, store, cro = build(args.config, datetime.fromisoformat(args.time_stamp))
    await participant.start()
    emit("started", port=participant.port)
    burst_done = asyncio.Event()
    progress = asyncio.create_task(report_progress(store, burst_done, stop, args.poll))
    try:
        # Built before the burst, so that the burst is as quick as the sending itself.
        updates = [portfolio_update(i, args.connections) for i in range(args.count)]
        for index, update in enumerate(updates):
            if stop.is_set():
                break
            filled = await participant.send(update, to=cro)
            emit("sent", index=index, message_id=filled.message_id)
        emit("burst", count=args.count)
        burst_done.set()
        await stop.wait()
    finally:
        stop.set()
        await progress
        await participant.stop()
    emit("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--connections", type=int, default=800)
    parser.add_argument("--time-stamp", required=True, help="the frozen clock, ISO with offset")
    parser.add_argument("--poll", type=float, default=0.01, help="progress poll interval (s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="dso-driver: %(levelname)s: %(name)s: %(message)s",
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
