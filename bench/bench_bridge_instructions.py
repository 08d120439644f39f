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
and imports. The runs have one hash seed (``PYTHONHASHSEED=0``: the same dict and set
layouts each time); what still varies is where the path's timers fall (the relay's 50 ms
marks, the store's deferred window, the relay's poll), a few hundredths of a million per
message. Printed: per configuration, millions of instructions per message, and the bridge's
extra over the path without it (this checkout, and `--baseline DIR` beside it).

The commands configurations, ``commands-rabbitmq`` and ``commands-nats``, are bench_bus.py's
"bus -> UFTP (commands)" rows: the same pair, the DSO with a bridge that consumes commands
from RabbitMQ or NATS JetStream, no bus on the CRO. Names (exchanges and queues, or subjects
and streams, of the run's own), producer, consumer of the events and cleanup are
bench_bus.py's (`Names`, `command_publisher`, `subscribe_events`, `tidy`). A producer
process of its own, not under callgrind, puts one command at a time (a TestMessage for the
CRO) on the commands exchange or subject and waits for both of its events
(``outcome.delivered``, ``in.TestMessageResponse``) before the next; it fails the run unless
it saw exactly one of each per command. The adapter's process only serves, until the
producer is done. Counted is thus the adapter's own work: the command taken in, carried out
and acknowledged, the round trip, the events stored and published with confirms (PubAcks);
the broker and the producer are outside the count. The run's exchanges and queues, or
streams, are deleted after it, also when it failed (a deletion that failed is printed, not
raised over the run's error). Each one's extra over the path without a bus (`none`) is printed
as the bridge's is: issue 12's target for those rows is under +25%. `--kinds` picks
configurations (`none` always: the others are measured against it); RabbitMQ must be
reachable at `--amqp-url`, NATS with JetStream at `--nats-url`.

Instructions are not time (a cache miss or a syscall costs more than its count says), and the
path runs one message at a time, not at bench_bus.py's rate: batching under load is not
measured here. What it does resolve is a change of the bridge's own work.

    .venv/bin/python bench/bench_bridge_instructions.py [--messages 20] [--baseline DIR]
        [--kinds none,memory,commands-rabbitmq,commands-nats]
        [--amqp-url amqp://guest:guest@127.0.0.1:5672/] [--nats-url nats://127.0.0.1:4222]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CRO, DSO = "cro.bench.test", "dso.bench.test"
KINDS = ("none", "memory", "commands-rabbitmq", "commands-nats")
#: The broker of each commands configuration (bench_bus.py's names for it).
BROKERS = {"commands-rabbitmq": "rabbitmq", "commands-nats": "nats"}
AMQP_URL, NATS_URL = "amqp://guest:guest@127.0.0.1:5672/", "nats://127.0.0.1:4222"
#: How long a run under callgrind, or a command's events, may take before the run failed.
RUN_TIMEOUT = 900.0
EVENT_TIMEOUT = 120.0


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

    network_folder = Path(tempfile.mkdtemp(prefix="bench-bridge-", dir="/dev/shm"))
    network = Network(network_folder)
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
    shutil.rmtree(network_folder, ignore_errors=True)


def _names(kind: str, token: str) -> Any:
    """bench_bus.py's broker names of one commands run (its URLS set by `main`)."""
    from bench_bus import Names  # no adapter on import: this process's path stays

    return Names(BROKERS[kind], token)


async def _commands_path(kind: str, token: str) -> None:
    """The DSO's side of a commands configuration, under callgrind: a bridge consuming
    commands from the broker, serving until standard input ends (the producer is done)."""
    from adapter.bus.bridge import BusBridge, bus_for
    from adapter.settings import Delivery, Limits
    from adapter.testing.network import Network
    from adapter.uftp.messages import Role

    loop = asyncio.get_running_loop()
    folder = Path(tempfile.mkdtemp(prefix="bench-bridge-", dir="/dev/shm"))
    network = Network(folder)
    settings = _names(kind, token).settings(commands=True)
    bridge = BusBridge(bus_for(settings, name="bench dso"), consume=True)
    unbounded = Limits(rate_per_sender=math.inf, handlers_per_sender=64, deliveries_per_peer=64)
    delivery = Delivery(handler_concurrency=64)
    cro = network.create(CRO, Role.CRO, delivery=delivery, limits=unbounded)
    dso = network.create(DSO, Role.DSO, delivery=delivery, limits=unbounded, bus=bridge)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    deadline = loop.time() + EVENT_TIMEOUT
    while not bridge.health().consuming:
        if loop.time() > deadline:
            raise TimeoutError(f"the bridge is not consuming: {bridge.health().detail}")
        await asyncio.sleep(0.05)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    await reader.read()  # until the end: the producer saw every command's events
    await network.close()
    shutil.rmtree(folder, ignore_errors=True)


async def _produce(kind: str, token: str, messages: int) -> None:
    """The operator's side, outside callgrind: `messages` commands one after another, each
    once both events of the one before were seen (bench_bus.py's producer and consumer)."""
    from bench_bus import command_publisher, subscribe_events

    names = _names(kind, token)
    loop = asyncio.get_running_loop()
    routes: list[str] = []
    wanted = 0
    waiter: asyncio.Future[None] = loop.create_future()

    def on_event(route: str) -> None:
        routes.append(route)
        if len(routes) >= wanted and not waiter.done():
            waiter.set_result(None)

    close_events = await subscribe_events(names, on_event)
    publish, close = await command_publisher(names)
    try:
        for index in range(messages):
            waiter = loop.create_future()
            wanted = 2 * (index + 1)  # outcome.delivered, in.TestMessageResponse
            await publish()
            await asyncio.wait_for(waiter, EVENT_TIMEOUT)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # an event too many would come in meanwhile
    finally:
        await close()
        await close_events()
    expected = {"outcome.delivered": messages, "in.TestMessageResponse": messages}
    got = {route: routes.count(route) for route in set(routes)}
    if got != expected:
        raise RuntimeError(f"events {got}, expected {expected}")


def _callgrind(code: str | None, *arguments: str) -> tuple[list[str], dict[str, str]]:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(HERE),
        *arguments,
    ]
    # A fixed hash seed: the same dict and set layouts in every run, one variance less.
    env = {**os.environ, "PYTHONPATH": code or str(HERE.parents[1]), "PYTHONHASHSEED": "0"}
    return command, env


def _collected(stderr: str) -> int:
    found = re.search(r"Collected : (\d+)", stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{stderr[-2000:]}")
    return int(found.group(1))


def _count(code: str | None, kind: str, messages: int, urls: list[str]) -> int:
    """The instructions of one run under callgrind."""
    if kind in BROKERS:
        return _count_commands(code, kind, messages, urls)
    command, env = _callgrind(code, "--run", kind, "--messages", str(messages))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return _collected(done.stderr)


def _count_commands(code: str | None, kind: str, messages: int, urls: list[str]) -> int:
    """The adapter's process under callgrind, the producer beside it (not counted); the
    run's exchanges and queues, or streams, deleted after it whatever happened."""
    from bench_bus import tidy

    token = uuid.uuid4().hex[:12]
    command, env = _callgrind(code, "--run", kind, "--token", token, *urls)
    with tempfile.TemporaryFile("w+") as stderr:
        adapter = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
        try:
            assert adapter.stdin is not None and adapter.stdout is not None
            if adapter.stdout.readline().strip() != "ready":
                adapter.wait(RUN_TIMEOUT)
                stderr.seek(0)
                raise RuntimeError(f"the adapter did not start:\n{stderr.read()[-2000:]}")
            producer = [sys.executable, str(HERE), "--produce", kind, "--token", token, *urls]
            producer += ["--messages", str(messages)]
            subprocess.run(producer, check=True, timeout=RUN_TIMEOUT)
            adapter.stdin.close()
            if adapter.wait(RUN_TIMEOUT) != 0:
                stderr.seek(0)
                raise RuntimeError(f"the adapter failed:\n{stderr.read()[-2000:]}")
        finally:
            if adapter.poll() is None:
                adapter.kill()
                adapter.wait()
            tidy(_names(kind, token))  # not to hide why the run failed, if it did
        stderr.seek(0)
        return _collected(stderr.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--baseline", type=Path, metavar="DIR")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"which of {', '.join(KINDS)} (all)"
    )
    parser.add_argument("--amqp-url", default=AMQP_URL)
    parser.add_argument("--nats-url", default=NATS_URL)
    parser.add_argument("--run", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--produce", choices=list(BROKERS), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    urls = ["--amqp-url", options.amqp_url, "--nats-url", options.nats_url]
    import bench_bus  # its names and clients, on these brokers

    bench_bus.URLS.update(rabbitmq=options.amqp_url, nats=options.nats_url)
    if options.produce:
        asyncio.run(_produce(options.produce, options.token, options.messages))
        return 0
    if options.run:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(HERE.parents[1])))
        import logging

        logging.basicConfig(level=logging.ERROR)
        if options.run in BROKERS:
            asyncio.run(_commands_path(options.run, options.token))
        else:
            asyncio.run(_path(options.run, options.messages))
        return 0
    kinds = [kind.strip() for kind in options.kinds.split(",") if kind.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown or "none" not in kinds:
        parser.error(f"--kinds: none and any of {', '.join(KINDS[1:])}")
    few, many = options.messages, 3 * options.messages
    codes: list[tuple[str, str | None]] = [("this checkout", None)]
    if options.baseline:
        codes.append(("baseline", str(options.baseline.resolve())))
    print(f"load average {os.getloadavg()[0]:.2f}; {few} and {many} messages per run", flush=True)
    per: dict[tuple[str, str], float] = {}
    for label, code in codes:
        for kind in kinds:
            counts: list[Any] = [_count(code, kind, n, urls) for n in (few, many)]
            per[label, kind] = (counts[1] - counts[0]) / (many - few) / 1e6
            print(
                f"  {label:14} {kind:17} {per[label, kind]:6.2f} M instructions/message",
                flush=True,
            )
    for label, _ in codes:
        for kind in (kind for kind in kinds if kind != "none"):
            extra = per[label, kind] - per[label, "none"]
            print(
                f"  {label:14} {kind:17} {extra:+.2f} M/message "
                f"({extra / per[label, 'none']:+.0%} over the path without a bus)"
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
