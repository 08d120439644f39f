"""What the bus bridge costs: UFTP with and without it, beside a bare aio-pika loop.

One process runs a DSO and a CRO participant on loopback (SQLite stores in a temporary
folder) and a consumer of the bus, against the RabbitMQ at --url (unique exchange and queue
names, deleted afterwards). Rows, each with messages per second (wall clock, until the last
event or delivery is seen) and the process's CPU per message:

- **bare aio-pika**: publish N messages with confirms (windows of 100) to a topic exchange
  and consume them from a bound queue: what the broker and the client library cost alone.
- **UFTP, no bus**: the DSO sends N TestMessages; done when the DSO has stored every
  TestMessageResponse. The UFTP path by itself.
- **UFTP -> bus (events)**: the same with a bus on the CRO; done when the consumer has every
  ``in.TestMessage`` and ``outcome.delivered`` event (2 per message).
- **bus -> UFTP (commands)**: N commands (a TestMessage each) published to the DSO's commands
  queue; done when every resulting message was delivered and its response stored.

    .venv/bin/python bench/bench_bus.py [--messages 1000] [--url amqp://...]

The target of issue 12: the bridge costs less than 25% more CPU per message than the UFTP path
without it, and the bus is not the bottleneck below 1,000 messages a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapter.bus.bridge import BusBridge
from adapter.bus.rabbitmq import RabbitBus, Topology
from adapter.config import DeliverySettings
from adapter.directory import Peer, StaticDirectory
from adapter.keys import generate
from adapter.participant import Participant
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role, TestMessage

CRO, DSO = "cro.bench.test", "dso.bench.test"
WINDOW = 50


def topology(prefix: str) -> Topology:
    return Topology(
        events_exchange=f"{prefix}.events",
        commands_exchange=f"{prefix}.commands",
        commands_queue=f"{prefix}.commands",
        dead_letter_exchange=f"{prefix}.dead",
        dead_letter_queue=f"{prefix}.dead",
        prefetch=64,
    )


async def timed(work: Callable[[], Awaitable[None]], messages: int) -> tuple[float, float]:
    """(messages per second, CPU ms per message) of `work`."""
    started, cpu = time.perf_counter(), time.process_time()
    await work()
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return messages / wall, used / messages * 1000


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 300) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        await asyncio.sleep(0.01)


async def bare(url: str, messages: int, names: Topology) -> tuple[float, float]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=200)
        queue = await consumer.declare_queue(exclusive=True)
        await queue.bind(names.events_exchange, "#")
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            received += 1
            await message.ack()

        await queue.consume(on_message)
        body = b"<TestMessage/>" * 30

        async def work() -> None:
            for start in range(0, messages, 100):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                body,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                headers={"cloudEvents_id": str(uuid.uuid4())},
                            ),
                            routing_key="in.TestMessage",
                            mandatory=True,
                        )
                        for _ in range(min(100, messages - start))
                    )
                )
            await wait_for(lambda: received >= messages)

        return await timed(work, messages)


class Pair:
    """A DSO and a CRO that know each other, either with a bus."""

    def __init__(self, folder: Path, *, dso_bus: BusBridge | None, cro_bus: BusBridge | None):
        keys = {DSO: generate(), CRO: generate()}
        delivery = DeliverySettings(handler_concurrency=64)
        self.dso, self.cro = (
            Participant(
                domain=domain,
                role=role,
                keys=keys[domain],
                store=SqliteStore(folder / f"{domain}-{uuid.uuid4().hex[:6]}.sqlite3"),
                directory=StaticDirectory([]),
                delivery=delivery,
                rate_limit=None,
                handlers_per_sender=64,
                deliveries_per_peer=64,
                bus=bus,
            )
            for domain, role, bus in ((DSO, Role.DSO, dso_bus), (CRO, Role.CRO, cro_bus))
        )
        self._keys = keys

    async def __aenter__(self) -> Pair:
        await self.cro.start()
        await self.dso.start()
        for me, other in ((self.dso, self.cro), (self.cro, self.dso)):
            assert isinstance(me.directory, StaticDirectory)
            me.directory.add(
                Peer(
                    other.domain,
                    other.role,
                    other.url(),
                    (self._keys[other.domain].public.signing,),
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dso.stop()
        await self.cro.stop()

    async def responses(self) -> int:
        def count(conn: Any) -> int:
            row = conn.execute(
                "SELECT count(*) FROM inbound WHERE message_type = 'TestMessageResponse'"
            ).fetchone()
            return int(row[0])

        return await self.dso.store.read(count)  # type: ignore[attr-defined]


def count_events(url: str, exchange: str, counter: Any, ready: Any) -> None:
    """The operator's consumer, in a process of its own: its CPU is not the adapter's."""

    async def consume() -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(events, "#")
        ready.set()
        async with queue.iterator(no_ack=True) as messages:
            async for _ in messages:
                with counter.get_lock():
                    counter.value += 1

    asyncio.run(consume())


class Consumer:
    """Counts the events on one exchange, from another process."""

    def __init__(self, url: str, exchange: str) -> None:
        self._counter: Any = multiprocessing.Value("l", 0)
        ready = multiprocessing.Event()
        self._process = multiprocessing.Process(
            target=count_events, args=(url, exchange, self._counter, ready), daemon=True
        )
        self._process.start()
        if not ready.wait(30):
            raise RuntimeError("the consumer process did not start")

    @property
    def received(self) -> int:
        return int(self._counter.value)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join()


async def uftp(
    folder: Path, messages: int, url: str | None, names: Topology
) -> tuple[float, float]:
    cro_bus = None
    consumer: Consumer | None = None
    if url is not None:
        cro_bus = BusBridge(RabbitBus(url, names, name="bench cro"), consume=False)
        consumer = Consumer(url, names.events_exchange)
    try:
        async with Pair(folder, dso_bus=None, cro_bus=cro_bus) as pair:
            if cro_bus is not None:
                await wait_for(lambda: cro_bus.health().connected, 30)

            async def work() -> None:
                for start in range(0, messages, WINDOW):
                    await asyncio.gather(
                        *(
                            pair.dso.send(TestMessage(), to=CRO)
                            for _ in range(min(WINDOW, messages - start))
                        )
                    )
                await wait_for(lambda: pair.responses())

                async def done() -> bool:
                    if await pair.responses() < messages:
                        return False
                    return consumer is None or consumer.received >= 2 * messages

                await wait_for(done)

            return await timed(work, messages)
    finally:
        if consumer is not None:
            consumer.stop()


async def commands(folder: Path, messages: int, url: str, names: Topology) -> tuple[float, float]:
    dso_bus = BusBridge(RabbitBus(url, names, name="bench dso"))
    consumer = Consumer(url, names.events_exchange)  # its outcome and response events
    async with Pair(folder, dso_bus=dso_bus, cro_bus=None) as pair:
        await wait_for(lambda: dso_bus.health().consuming, 30)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(names.commands_exchange)
            bodies = [
                aio_pika.Message(
                    b"<TestMessage/>",
                    message_id=str(uuid.uuid4()),
                    content_type="text/xml; charset=utf-8",
                    headers={"cloudEvents_uftprecipient": CRO},
                )
                for _ in range(messages)
            ]

            async def work() -> None:
                for start in range(0, messages, 100):
                    await asyncio.gather(
                        *(
                            exchange.publish(m, routing_key="send")
                            for m in bodies[start : start + 100]
                        )
                    )

                async def done() -> bool:
                    return await pair.responses() >= messages and consumer.received >= 2 * messages

                await wait_for(done)

            try:
                return await timed(work, messages)
            finally:
                consumer.stop()


async def cleanup(url: str, names: Topology) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in (names.commands_queue, names.dead_letter_queue):
            with contextlib.suppress(Exception):
                await channel.queue_delete(queue)
        for exchange in (
            names.events_exchange,
            names.commands_exchange,
            names.dead_letter_exchange,
        ):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(exchange)


async def run(args: argparse.Namespace) -> int:
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            rows.append(
                (
                    "bare aio-pika publish+consume",
                    *await bare(args.url, args.messages, topology(prefix + ".bare")),
                )
            )
            rows.append(
                (
                    "UFTP, no bus",
                    *await uftp(folder, args.messages, None, topology(prefix + ".none")),
                )
            )
            rows.append(
                (
                    "UFTP -> bus (events)",
                    *await uftp(folder, args.messages, args.url, topology(prefix + ".events")),
                )
            )
            rows.append(
                (
                    "bus -> UFTP (commands)",
                    *await commands(
                        folder, args.messages, args.url, topology(prefix + ".commands")
                    ),
                )
            )
    finally:
        for part in ("bare", "none", "events", "commands"):
            await cleanup(args.url, topology(f"{prefix}.{part}"))
    print(f"{args.messages} messages each, one process (DSO, CRO, consumer), SQLite stores")
    print(f"{'row':34} {'msg/s':>8} {'CPU ms/msg':>11}")
    for name, rate, cpu in rows:
        print(f"{name:34} {rate:8.0f} {cpu:11.2f}")
    base = rows[1][2]
    extra = (rows[2][2] - base) / base * 100
    print(f"bridge CPU per message over the UFTP path: {extra:+.0f}% (target < +25%)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
