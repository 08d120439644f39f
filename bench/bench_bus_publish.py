"""What a broker's port spends on one event, as the relay publishes at a low rate.

bench_bus.py's rows hold the whole UFTP path (7 ms a message and more on the shared
machine), in which the port's share of an event (a few tens of microseconds that a change
moves) is lost in the spread. This measures the port alone, on events built as the relay is
handed them (`EventJournal.inbound`, then `CloudEvent.from_attributes`, as the relay does):

* ``properties``: `to_amqp` and the encoding of the event's AMQP properties (the content
  header) as `publish` encodes them (`event_properties` where the code has it), best of
  7 x 2,000 on the process's CPU clock; on NATS (``--broker nats``) `to_nats` and the
  ``Nats-Msg-Id`` header, the headers `NatsBus.publish` hands on;
* ``publish``: `RabbitBus.publish` (`NatsBus.publish`) of one event after another, each
  awaiting its confirm (the stream's PubAck) - one conversation's chain in a relay round -,
  CPU per event over `--events`, median of `--rounds`.

Each measurement runs in a fresh process; with `--baseline DIR` (a checkout, e.g.
``git archive main adapter | tar -x -C DIR``) that code's process runs after this one's,
`--runs` times, interleaved, and the per-run ratio is printed.

    .venv/bin/python bench/bench_bus_publish.py [--broker nats] [--baseline DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def handing() -> Callable[[int], Any]:
    """A maker of events as the relay is handed them (`EventJournal.inbound`, then
    `CloudEvent.from_attributes`), the `n`th in conversation ``c-n``; from the adapter on
    `sys.path` (this code's or the baseline's)."""
    from adapter.bus.events import CloudEvent
    from adapter.bus.journal import EventJournal
    from adapter.uftp.messages import Role, TestMessage

    journal = EventJournal(domain="cro.bench.test", role=Role.CRO, clock=lambda: datetime.now(UTC))

    def handed(n: int) -> CloudEvent:
        message = dataclasses.replace(
            TestMessage(),
            version="3.0.0",
            sender_domain="dso.bench.test",
            recipient_domain="cro.bench.test",
            message_id=str(uuid.uuid4()),
            conversation_id=f"c-{n}",
        )
        record = journal.inbound(message, b"<TestMessage/>" * 20, sender_role=Role.DSO)
        return CloudEvent.from_attributes(record.attributes, record.data)

    return handed


async def timed(bus: Any, handed: Callable[[int], Any], rounds: int, events: int) -> list[float]:
    """CPU per event of `bus.publish`, one event after another (each awaiting its confirm),
    for each of `rounds` batches of `events`."""
    per_event = []
    for _ in range(rounds):
        batch = [handed(n) for n in range(events)]
        start = time.process_time()
        for event in batch:
            await bus.publish(event, "in.TestMessage")
        per_event.append((time.process_time() - start) / events)
    return per_event


def measure(code: str, url: str, rounds: int, events: int) -> dict[str, float]:
    """In this process, on the adapter found in `code`: µs per event's properties and per
    confirmed publication."""
    sys.path.insert(0, code)
    if url.startswith("nats"):
        return measure_nats(url, rounds, events)
    from adapter.bus import rabbitmq
    from adapter.bus.events import to_amqp
    from adapter.bus.rabbitmq import RabbitBus, Topology

    handed = handing()

    sample = handed(0)
    # The module as an older checkout has it (`code`), which mypy cannot know: it checks
    # against today's, where `_EventProperties` is gone.
    old_rabbitmq: Any = rabbitmq

    def properties() -> bytes:
        headers, content_type = to_amqp(sample)
        # What `publish` encodes them with: `event_properties` since the events have their
        # own publisher (adapter.bus.amqp), before that pamqp's object with our encoder.
        encode = getattr(rabbitmq, "event_properties", None)
        if encode is not None:
            return bytes(
                encode(headers, content_type, sample.id, sample.time, sample.type, "uftp-adapter")
            )
        marshalled: bytes = old_rabbitmq._EventProperties(  # the code before event_properties
            headers=dict(headers),
            content_type=content_type,
            delivery_mode=2,
            message_id=sample.id,
            timestamp=sample.time,
            message_type=sample.type,
            app_id="uftp-adapter cro.bench.test",
        ).marshal()
        return marshalled

    best = min(timeit.repeat(properties, number=2000, repeat=7, timer=time.process_time))

    async def publish() -> list[float]:
        import aio_pika

        exchange = f"bench.publish.{uuid.uuid4().hex[:8]}"
        bus = RabbitBus(url, Topology(events_exchange=exchange))
        await bus.connect()
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, arguments={"x-max-length": 100})
        await queue.bind(exchange, "#")
        try:
            return await timed(bus, handed, rounds, events)
        finally:
            await bus.close()
            await channel.exchange_delete(exchange)
            await connection.close()

    return {
        "properties": best / 2000 * 1e6,
        "publish": statistics.median(asyncio.run(publish())) * 1e6,
    }


def measure_nats(url: str, rounds: int, events: int) -> dict[str, float]:
    """`measure` on the NATS port: a stream of its own, deleted at the end."""
    from adapter.bus.events import to_nats
    from adapter.bus.nats import MSG_ID, NatsBus

    handed = handing()

    sample = handed(0)

    def properties() -> dict[str, str]:
        headers = to_nats(sample)
        headers[MSG_ID] = sample.id
        return headers

    best = min(timeit.repeat(properties, number=2000, repeat=7, timer=time.process_time))

    async def publish() -> list[float]:
        token = uuid.uuid4().hex[:8]
        bus = NatsBus(
            url,
            stream=f"BP{token}",
            events_subject=f"bp{token}.events",
            commands_stream=f"BP{token}_COMMANDS",
            commands_subject=f"bp{token}.commands",
            dead_stream=f"BP{token}_DEAD",
            dead_subject=f"bp{token}.dead",
            consumer=f"bp{token}",
        )
        await bus.connect()
        js = bus._js
        assert js is not None
        try:
            return await timed(bus, handed, rounds, events)
        finally:
            for stream in (bus.stream, bus.commands_stream, bus.dead_stream):
                await js.delete_stream(stream)
            await bus.close()

    return {
        "properties": best / 2000 * 1e6,
        "publish": statistics.median(asyncio.run(publish())) * 1e6,
    }


def run(code: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", code, "--broker", args.broker]
    command += ["--amqp-url", args.amqp_url, "--nats-url", args.nats_url]
    command += ["--rounds", str(args.rounds), "--events", str(args.events)]
    output = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="DIR", help="another checkout to measure beside")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--broker", choices=("rabbitmq", "nats"), default="rabbitmq")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url = args.nats_url if args.broker == "nats" else args.amqp_url
        print(json.dumps(measure(args.child, url, args.rounds, args.events)))
        return
    codes = {"this": str(HERE)}
    if args.baseline:
        codes["baseline"] = str(Path(args.baseline).resolve())
    print(f"{args.broker}, {args.runs} runs; load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':>4} {'code':>9} {'properties us':>14} {'publish us/event':>17}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for number in range(1, args.runs + 1):
        for name, code in codes.items():
            figures = run(code, args)
            results[name].append(figures)
            print(
                f"{number:>4} {name:>9} {figures['properties']:>14.1f} {figures['publish']:>17.0f}"
            )
    if args.baseline:
        for key in ("properties", "publish"):
            ratios = [
                f"{ours[key] / theirs[key] - 1:+.0%}"
                for ours, theirs in zip(results["this"], results["baseline"], strict=True)
            ]
            print(f"this over baseline, {key}, per run: {' / '.join(ratios)}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
