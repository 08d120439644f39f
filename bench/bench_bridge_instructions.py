"""The bus bridge's own cost in instructions (callgrind), where CPU time is too noisy to tell.

bench_bus.py's "UFTP -> bus, in-memory port" row is the bridge's own cost (events built,
stored with their message, handed to the relay, published to the in-memory port, marked), but
on a shared 2-core machine a slice's CPU time moves by more than that cost between rounds.
Instructions do not: this runs the same UFTP path (a DSO and a CRO of ours in one process,
SQLite stores on /dev/shm, a TestMessage request and its response, the CRO with or without
the in-memory bridge) under ``valgrind --tool=callgrind``, `--messages` messages one after
another, each done when its response came back and, with the bridge, both its events were
published. Each configuration runs twice, with `--messages` and three times as many; the
difference divided by the extra messages is the instructions per message, without the start
and imports. Printed: per configuration, millions of instructions per message, and the
bridge's extra over the path without it (this checkout, and `--baseline DIR` beside it).

Instructions are not time (a cache miss or a syscall costs more than its count says), and the
path runs one message at a time, not at bench_bus.py's rate: batching under load is not
measured here. What it does resolve is a change of the bridge's own work.

    .venv/bin/python bench/bench_bridge_instructions.py [--messages 20] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CRO, DSO = "cro.bench.test", "dso.bench.test"


async def _path(kind: str, messages: int) -> None:
    """`messages` round trips, one after another, the CRO with the bridge if `kind` is
    "memory"."""
    from adapter.bus.bridge import BusBridge
    from adapter.bus.events import CloudEvent
    from adapter.bus.memory import MemoryBus
    from adapter.settings import Delivery, Limits
    from adapter.testing.network import Network
    from adapter.uftp.messages import Role, TestMessage

    loop = asyncio.get_running_loop()
    published = 0
    wanted = 0
    waiter: asyncio.Future[None] | None = None

    class CountingBus(MemoryBus):
        async def publish(self, event: CloudEvent, route: str) -> None:
            nonlocal published
            published += 1
            if waiter is not None and not waiter.done() and published >= wanted:
                waiter.set_result(None)

    network = Network(Path(tempfile.mkdtemp(prefix="bench-bridge-", dir="/dev/shm")))
    bridge = BusBridge(CountingBus(), consume=False) if kind == "memory" else None
    unbounded = Limits(rate_per_sender=math.inf, handlers_per_sender=64, deliveries_per_peer=64)
    delivery = Delivery(handler_concurrency=64)
    cro = network.create(CRO, Role.CRO, delivery=delivery, limits=unbounded, bus=bridge)
    dso = network.create(DSO, Role.DSO, delivery=delivery, limits=unbounded)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    for index in range(messages):
        await dso.request(TestMessage(), to=CRO, timeout=120)
        if bridge is not None:
            wanted = 2 * (index + 1)  # in.TestMessage and the response's outcome
            if published < wanted:
                waiter = loop.create_future()
                await waiter
        await asyncio.sleep(0.01)
    await network.close()


def _count(code: str | None, kind: str, messages: int) -> int:
    """The instructions of one run under callgrind."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(HERE),
        "--run",
        kind,
        "--messages",
        str(messages),
    ]
    env = {**os.environ, "PYTHONPATH": code or str(HERE.parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--baseline", type=Path, metavar="DIR")
    parser.add_argument("--run", choices=["none", "memory"], help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.run:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(HERE.parents[1])))
        import logging

        logging.basicConfig(level=logging.ERROR)
        asyncio.run(_path(options.run, options.messages))
        return 0
    few, many = options.messages, 3 * options.messages
    codes: list[tuple[str, str | None]] = [("this checkout", None)]
    if options.baseline:
        codes.append(("baseline", str(options.baseline.resolve())))
    print(f"load average {os.getloadavg()[0]:.2f}; {few} and {many} messages per run", flush=True)
    per: dict[tuple[str, str], float] = {}
    for label, code in codes:
        for kind in ("none", "memory"):
            counts: list[Any] = [_count(code, kind, n) for n in (few, many)]
            per[label, kind] = (counts[1] - counts[0]) / (many - few) / 1e6
            print(f"  {label:14} {kind:7} {per[label, kind]:6.2f} M instructions/message")
    for label, _ in codes:
        extra = per[label, "memory"] - per[label, "none"]
        print(
            f"  {label:14} bridge {extra:+.2f} M/message "
            f"({extra / per[label, 'none']:+.0%} over the path without it)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
