"""What taking a command off the bus costs, before the bridge does anything with it.

One process per broker holds the adapter's bus port (`RabbitBus`, `NatsBus`) consuming its
commands queue or stream with a handler that only says ACK; another process, bench_bus.py's
command producer itself, publishes `--rate` commands a second to it (a TestMessage each, with
its headers). Names, producer, process and cleanup are bench_bus.py's. The consumer's CPU per
command (`time.process_time`, from the first publication of a slice until the last command was
handed to the handler, idle waits included) is the client library's share of a command's cost:
reading the delivery, turning it into a `Command`, settling it. bench_bus.py's "bus -> UFTP
(commands)" row holds this beside the bridge's own work (parse, check, compose, sign, store)
and the two events each command makes.

With `--baseline DIR` (a checkout, e.g. `git archive main adapter | tar -x -C DIR`) the same
runs on that code too, slices interleaved, and the ratio per round is printed. With
`--profile DIR`, one more slice of each consumer runs under cProfile (CPU time) after the
measured ones, and the top functions are printed.

    .venv/bin/python bench/bench_commands_intake.py [--brokers both] [--rate 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_bus import Load, Names, Process, producer_process, tidy


def consumer_process(conn: Connection, broker: str, token: str, code: str | None) -> None:
    if code is not None:
        sys.path.insert(0, code)  # before anything imports the adapter
    asyncio.run(_consume(conn, broker, token))


async def _consume(conn: Connection, broker: str, token: str) -> None:
    from adapter.bus.bridge import bus_for
    from adapter.bus.port import Command, Verdict

    loop = asyncio.get_running_loop()
    bus = bus_for(Names(broker, token).settings(commands=True), name="bench intake")
    await bus.connect()
    handled = 0
    target = 0
    reached = loop.create_future()

    async def handler(command: Command) -> Verdict:
        nonlocal handled, reached
        handled += 1
        if handled >= target and not reached.done():
            reached.set_result(None)
        return Verdict.ACK

    await bus.consume(handler)
    conn.send("ready")
    profiler: cProfile.Profile | None = None
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "begin":
            count, profile = args
            target, reached = handled + count, loop.create_future()
            if profile is not None:  # CPU time, as measured: waiting for the broker is free
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
            started = time.process_time()
            conn.send("ok")
        elif command == "finish":
            await asyncio.wait_for(reached, 120)
            cpu = time.process_time() - started
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
                profiler = None
            conn.send(cpu)
        elif command == "stop":
            break
    await bus.close()
    conn.send("stopped")


def spread(values: list[float], fmt: str) -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="both", help="rabbitmq, nats or both")
    parser.add_argument("--rate", type=float, default=40.0, help="commands/s offered (40)")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice (3)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout to compare")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile into DIR")
    parser.add_argument("--profile-lines", type=int, default=35)
    options = parser.parse_args(argv)
    brokers = ["rabbitmq", "nats"] if options.brokers == "both" else options.brokers.split(",")
    codes: list[tuple[str, str | None]] = [("", None)]
    if options.baseline:
        codes.append((" (baseline)", str(options.baseline.resolve())))
    count = round(options.rate * options.slice)
    # The producer's slice: `count` commands at the rate (window and backlog are not its).
    load = Load(seconds=options.slice, rate=options.rate, window=0, backlog=0)
    print(
        f"{options.rounds} rounds of {count} commands at {options.rate:g}/s; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows: dict[str, tuple[Process, Process, Names]] = {}
    results: dict[str, list[float]] = {}
    profiles: dict[str, Path] = {}
    try:
        for broker in brokers:
            for suffix, code in codes:
                names = Names(broker, uuid.uuid4().hex[:8])
                key = f"{broker}{suffix}"
                consumer = Process(consumer_process, broker, names.token, code, name=key)
                producer = Process(producer_process, names, None, name=f"producer-{key}")
                rows[key] = (consumer, producer, names)
        order = list(rows)
        results = {key: [] for key in order}
        for round_ in range(options.rounds + 1):  # the first is a warm-up
            shift = round_ % len(order)
            for key in order[shift:] + order[:shift]:
                consumer, producer, _ = rows[key]
                consumer.call("begin", count, None)
                published = producer.call("run", load)
                if published != count:  # (not an assert: under -O the slice would not run)
                    raise RuntimeError(f"{key}: the producer published {published} of {count}")
                cpu = consumer.call("finish")
                if round_:
                    results[key].append(cpu / count)
        if options.profile:  # after the measured slices: its overhead skews none of them
            options.profile.mkdir(parents=True, exist_ok=True)
            for key, (consumer, producer, _) in rows.items():
                path = options.profile / f"{key.replace(' ', '-').strip('()')}.pstats"
                consumer.call("begin", count, str(path.resolve()))
                producer.call("run", load)
                consumer.call("finish")
                profiles[key] = path
    finally:
        for consumer, producer, names in rows.values():
            consumer.stop()
            producer.stop()
            tidy(names)
    print("\nCPU per command of the consuming process, median of the rounds [min-max]")
    for key, values in results.items():
        print(f"  {key:24} {spread([v * 1e6 for v in values], '{:.0f}')} us")
    if options.baseline:
        print("\nThis checkout over the baseline, per round: median [min-max]")
        for broker in brokers:
            ours, theirs = results[broker], results[f"{broker} (baseline)"]
            change = [a / b - 1 for a, b in zip(ours, theirs, strict=True)]
            print(f"  {broker:24} {spread([c * 100 for c in change], '{:+.0f}%')}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    for key, path in profiles.items():
        stats = pstats.Stats(str(path))
        print(f"\n--- {key}: top {options.profile_lines} by own time ---")
        stats.sort_stats(pstats.SortKey.TIME).print_stats(options.profile_lines)
        print(f"--- {key}: top {options.profile_lines} by cumulative ---")
        stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(options.profile_lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
