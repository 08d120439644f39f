"""Where the wall time of one round trip at concurrency 1 goes: a time line of both processes.

    .venv/bin/python bench/trace_roundtrip.py [--seconds S] [--store-dir DIR] [--loop-commit]
        [--200-first]

Runs our CRO and DSO as bench_roundtrip.py does (two processes, SQLite stores with
`synchronous=FULL`, a 10 x 10 DSOPortfolioUpdate), with timestamps taken at the steps of a
round trip: the DSO's `request()`, its outbox commit, the POST, the CRO's receipt, store and
commit, its 200, the handler, the response's commit and POST, the DSO's receipt and commit of
it, and the waiter woken. Each step is a function wrapped in the process that runs it (the
COMMIT on the store's commit thread included); `time.perf_counter` is the system's monotonic
clock, shared by both processes, so their events fall on one time line.

Printed: for each event, in the order of a round trip, its median offset from the start of
`request()` over the round trips traced, the gap since the event before it, and the CPU its
process spent since its own previous event (`time.process_time`: all its threads). A gap with
little CPU is waiting: an fsync, a thread hand-off, a wake-up, or a core that other work held.
Above it, the median time the COMMIT's thread spent waiting for a core during a COMMIT (the
kernel's run delay, /proc/self/task/*/schedstat). `--loop-commit` runs the COMMIT on the
event loop instead of the store's commit thread; `--200-first` writes the 200 before a
received message's handling starts, as before (and as for large messages). Wall times depend
on the machine's load: compare runs taken one after the other, several times.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import itertools
import pickle
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_roundtrip as bench

#: (event, perf_counter) of this process, in order.
EVENTS: list[tuple[str, float, float]] = []


def _wrap(owner: Any, name: str, label: str, *, static: bool = False) -> None:
    original = inspect.getattr_static(owner, name)
    fn = original.__func__ if isinstance(original, staticmethod) else original

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            EVENTS.append((f"{label} >", time.perf_counter(), time.process_time()))
            try:
                return await fn(*args, **kwargs)
            finally:
                EVENTS.append((f"{label} <", time.perf_counter(), time.process_time()))

    else:

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            EVENTS.append((f"{label} >", time.perf_counter(), time.process_time()))
            try:
                return fn(*args, **kwargs)
            finally:
                EVENTS.append((f"{label} <", time.perf_counter(), time.process_time()))

    setattr(owner, name, staticmethod(traced) if static else traced)


def _instrument(role: str) -> None:
    from adapter import connections, participant, server, waiters
    from adapter.client import Client
    from adapter.outbox import Outbox
    from adapter.store import sqlite

    side = role.lower()
    _wrap(participant.Participant, "request", f"{side} request")
    _wrap(Outbox, "submit", f"{side} outbox.submit")
    _wrap(Outbox, "_attempt", f"{side} outbox.attempt")
    _wrap(Client, "_post", f"{side} POST")
    _wrap(sqlite.SqliteStore, "_stage_writes", f"{side} stage writes")
    _wrap(sqlite.SqliteStore, "save_inbound", f"{side} save_inbound")
    _wrap(sqlite.SqliteStore, "add_outbound", f"{side} add_outbound")
    _wrap(sqlite.SqliteStore, "finish_inbound", f"{side} finish_inbound")
    _wrap(sqlite.SqliteStore, "record_attempt", f"{side} record_attempt")
    _wrap(sqlite.SqliteStore, "_commit", f"{side} COMMIT", static=True)
    _wrap(server.Endpoint, "handle_post", f"{side} handle_post")
    _wrap(participant.Participant, "_handle", f"{side} handle")
    _wrap(participant.Participant, "_call_handler", f"{side} handler")
    _wrap(waiters.Waiters, "resolve_here", f"{side} waiter resolved")
    original = connections._Connection.data_received

    def data_received(self: Any, data: bytes) -> None:
        EVENTS.append((f"{side} bytes in", time.perf_counter(), time.process_time()))
        original(self, data)

    connections._Connection.data_received = data_received  # type: ignore[method-assign]
    _wrap(connections._Connection, "connection_made", f"{side} connection opened")
    commit = sqlite.SqliteStore._commit

    def waited(conn: Any, size: int) -> Any:
        # How long this thread waited for a core during the COMMIT (schedstat's run delay).
        path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        before = int(Path(path).read_text().split()[1])
        try:
            return commit(conn, size)
        finally:
            delay = (int(Path(path).read_text().split()[1]) - before) / 1e9
            EVENTS.append((f"{side} COMMIT run delay", delay, 0.0))

    sqlite.SqliteStore._commit = staticmethod(waited)  # type: ignore[method-assign]


def traced_process(
    conn: Connection,
    domain: str,
    role: str,
    secret: bytes,
    store: str,
    variant: bench.Variant,
    out: str,
    ok_first: bool,
) -> None:
    _instrument(role)
    if ok_first:
        from adapter import participant

        # Every message "large" where the order is decided: the name the participant reads
        # (its own binding, made by `from .server import THREAD_THRESHOLD`). The server's
        # own, which puts a large body's envelope on a thread, stays: that order is all
        # --200-first asks for, as before the 200 came last. Set through the module's
        # namespace, as the name is not one the module exports.
        vars(participant)["THREAD_THRESHOLD"] = -1
    try:
        bench.ours_process(conn, domain, role, secret, store, variant)
    finally:
        Path(out).write_bytes(pickle.dumps(EVENTS))


class Traced(bench.Pair):
    def __init__(self, directory: Path, variant: bench.Variant, ok_first: bool) -> None:
        from adapter.directory import Peer
        from adapter.keys import generate
        from adapter.uftp.messages import Role

        keys = {bench.CRO: generate(), bench.DSO: generate()}
        roles = {bench.CRO: Role.CRO, bench.DSO: Role.DSO}
        self.outputs = {d: directory / f"{d}.trace" for d in (bench.CRO, bench.DSO)}
        super().__init__(
            "traced",
            traced_process,
            {
                d: (
                    roles[d].value,
                    keys[d].signing,
                    str(directory / f"{d}.sqlite3"),
                    variant,
                    str(self.outputs[d]),
                    ok_first,
                )
                for d in (bench.CRO, bench.DSO)
            },
        )
        for me, other in ((bench.CRO, bench.DSO), (bench.DSO, bench.CRO)):
            peer = Peer(other, roles[other], self.urls[other], (keys[other].public.signing,))
            self.call(me, "peer", peer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--store-dir", default=None)
    parser.add_argument("--loop-commit", action="store_true", help="the COMMIT on the event loop")
    parser.add_argument(
        "--200-first",
        dest="ok_first",
        action="store_true",
        help="write the 200 before the handling starts, as large messages do",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
        pair = Traced(Path(tmp), bench.Variant(commit_off_loop=not args.loop_commit), args.ok_first)
        pair.run(bench.Load(10, 1.0))  # warm-up
        outcome = pair.run(bench.Load(1, args.seconds))
        pair.stop()
        events = []
        for path in pair.outputs.values():
            events += pickle.loads(path.read_bytes())
    delays = defaultdict(list)
    for name, value, _ in events:
        if name.endswith("run delay"):
            delays[name].append(value * 1000)
    events = [e for e in events if not e[0].endswith("run delay")]
    for name, values in sorted(delays.items()):
        print(f"{name}: median {statistics.median(values):.3f} ms")
    events.sort(key=lambda e: e[1])
    cpu = sum(outcome.cpu[d] for d in (bench.CRO, bench.DSO)) / max(outcome.completed, 1)
    # Cut the time line at each `request()`'s start, after the warm-up.
    starts = [i for i, (name, *_) in enumerate(events) if name == "dso request >"]
    starts = starts[-outcome.completed :]
    trips = [events[a:b] for a, b in itertools.pairwise(starts)]
    offsets: dict[str, list[float]] = defaultdict(list)
    #: CPU of the event's process since its previous event in the trip.
    cpus: dict[str, list[float]] = defaultdict(list)
    for trip in trips:
        t0 = trip[0][1]
        seen: Counter[str] = Counter()
        last_cpu: dict[str, float] = {}
        for name, t, c in trip:
            seen[name] += 1
            key = name if seen[name] == 1 else f"{name} #{seen[name]}"
            side = name.split()[0]
            offsets[key].append((t - t0) * 1000)
            cpus[key].append((c - last_cpu.get(side, c)) * 1000)
            last_cpu[side] = c
    rows = sorted(offsets, key=lambda k: statistics.median(offsets[k]))
    print(
        f"{len(trips)} round trips at concurrency 1; {outcome.completed / outcome.duration:.1f}/s;"
        f" CPU per round trip (both processes) {cpu * 1000:.2f} ms"
    )
    print("  offset ms  (+gap)   CPU of its side since its previous event  event  [range]")
    previous = 0.0
    for key in rows:
        if len(offsets[key]) < len(trips) / 2:
            continue
        median = statistics.median(offsets[key])
        print(
            f"  {median:8.3f}  (+{median - previous:6.3f})  cpu {statistics.median(cpus[key]):6.3f}"
            f"  {key}  [{min(offsets[key]):.2f}-{max(offsets[key]):.2f}] n={len(offsets[key])}"
        )
        previous = median


if __name__ == "__main__":
    main()
