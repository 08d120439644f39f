"""What the bus bridge costs: UFTP with and without it, on RabbitMQ and NATS JetStream, beside
each broker's bare client loop and the relay catching up on a backlog.

Every configuration runs in an OS process of its own, started first and kept for the whole
run; the operator's systems (a consumer of the events, a producer of commands) run in further
processes, so that their CPU is not the adapter's. Configurations:

- **UFTP, no bus**: a DSO and a CRO of ours in one process (SQLite stores in a temporary
  folder), the DSO sending `--rate` TestMessages a second as requests, each done when its
  TestMessageResponse returned. The UFTP path by itself.
- **UFTP -> bus**: the same with a bus on the CRO; done when the consumer has also seen both
  events of each message (``in.TestMessage`` and the outcome of the response).
- **UFTP -> bus, in-memory port**: the same with the bridge on the in-memory bus port, each
  publication counted and dropped: the bridge's own cost (events built, stored with their
  message, read back and marked by the relay) without a broker's client library. The
  difference to **UFTP -> bus** is what publishing with that client costs.
- **bus -> UFTP (commands)**: the producer puts `--rate` commands a second (a TestMessage
  each) on the DSO's commands queue or subject; each is done when the consumer has seen both
  of its events (``outcome.delivered``, ``in.TestMessageResponse``): sent, answered, stored.
- **bare**: the broker's client library alone in one process, as fast as it goes: publish
  with confirms (aio-pika; nats-py's JetStream publish and its PubAck), `--window` at a
  time, and consume what was published. The yardstick of the broker and the library.
- **relay backlog**: `--backlog` events written to a store while no relay runs (a broker
  outage), then the relay started: how fast it catches up, read back from the store,
  published with confirms, marked published, seen by the consumer.

The UFTP configurations are offered the same rate, so that CPU per message compares like
with like: how much work a commit or a broker round trip carries depends on how much else
arrives meanwhile (group commit, batched publication), so a configuration run flat out, or
one whose loop is longer, would be judged at another load. The bare loop and the relay's
catch-up run flat out: they say how far the bus goes.

After one warm-up slice each, the configurations take turns in slices of `--slice` seconds,
round-robin for `--rounds` rounds, the order rotated every round: a load on the (shared)
machine that comes and goes falls on each alike. Before every round but the first, each
configuration's process is replaced by a new one (warmed up with a slice of at most 1 s): a
process carries a bias of its own (two of the same code measured 10-15% apart over a whole
run, every round the same sign), which only new processes turn into noise the rounds
average. A slice starts work until its end and then waits for what it started to finish; it
reports the messages it completed and the CPU its process spent from start to finish
(`time.process_time`, all threads).

Printed first: **CPU per message of the adapter's process**, the median of the slices
[min-max], and per round the bridge's CPU over the UFTP path without it: its median [min-max],
the 95% confidence interval of that median (distribution-free, from the order statistics of
the rounds), and each round's figure. The target of issue 12, under +25% for events and for
commands on each broker, is judged on that interval: PASS when all of it is under the target,
FAIL when none of it is, UNDECIDED when the rounds cannot tell (the median alone moved by more
than the margin between runs of 4-8 rounds; at 95% the interval needs 6 rounds at least, and
narrows with more: `--rounds 20`, `--kinds events,commands` to spend them on the rows judged).
Then messages (events) per second, and whether the bus can be the bottleneck below 1,000
messages a second: the bare loop and the relay's catch-up against 1,000 messages (2,000
events) a second, and the bridge's CPU per message at that rate.

    .venv/bin/python bench/bench_bus.py [--brokers rabbitmq,nats] [--rate 100] [--rounds 5]
    .venv/bin/python bench/bench_bus.py --quick
    .venv/bin/python bench/bench_bus.py --rate 40 --rounds 20 --kinds events,commands  # verdict
    .venv/bin/python bench/bench_bus.py --store-dir /dev/shm  # without the cost of fsync
    .venv/bin/python bench/bench_bus.py --profile /tmp/prof    # + cProfile'd slices

With --profile, one more slice of each bridge configuration runs under cProfile after the
measured ones (its overhead skews nothing measured) and the top functions are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import functools
import logging
import math
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the clients' types, for the bare configurations' attributes
    import aio_pika
    from aio_pika.abc import AbstractConnection, AbstractExchange
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

if __name__ in ("__main__", "__mp_main__"):  # run, not imported: an importer picks the adapter
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CRO, DSO = "cro.bench.test", "dso.bench.test"
URLS = {"rabbitmq": "amqp://guest:guest@127.0.0.1:5672/", "nats": "nats://127.0.0.1:4222"}
TARGET_EXTRA = 0.25
#: How sure the verdict on the target is to be: the confidence of the median's interval.
CONFIDENCE = 0.95
#: The rate below which the bus must never be the bottleneck (issue 12), and its events.
RATE = 1000
EVENTS_PER_MESSAGE = 2
#: The configurations `--kinds` picks from; the UFTP path without a bus always runs.
KINDS = ("memory", "events", "commands", "relay", "bare")
#: How long a slice may take to finish what it started before the run is called failed.
DRAIN_TIMEOUT = 120.0


@dataclasses.dataclass
class Outcome:
    """One slice of one configuration."""

    completed: int
    cpu: float
    wall: float

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / self.completed if self.completed else float("nan")

    @property
    def rate(self) -> float:
        return self.completed / self.wall if self.wall else float("nan")


@dataclasses.dataclass(frozen=True)
class Load:
    """What one slice asks of a configuration."""

    seconds: float
    #: Messages a second offered to the UFTP configurations.
    rate: float
    #: Publications in flight at once in the bare loop.
    window: int
    #: Events the relay finds waiting.
    backlog: int


@dataclasses.dataclass(frozen=True)
class Names:
    """The broker names of one configuration: its own exchanges/subjects and queues/streams."""

    broker: str
    token: str

    def settings(self, *, commands: bool) -> Any:
        from adapter.config import BusSettings

        if self.broker == "rabbitmq":
            prefix = f"bench.{self.token}"
            return BusSettings(
                url=URLS["rabbitmq"],
                exchange=f"{prefix}.events",
                commands_exchange=f"{prefix}.commands",
                commands_queue=f"{prefix}.commands",
                dead_letter_exchange=f"{prefix}.dead",
                dead_letter_queue=f"{prefix}.dead",
                prefetch=64,
                commands=commands,
            )
        return BusSettings(
            url=URLS["nats"],
            exchange=f"b{self.token}.events",
            commands_exchange=f"b{self.token}.commands",
            dead_letter_exchange=f"b{self.token}.dead",
            stream=f"B{self.token}_UFTP",
            commands_stream=f"B{self.token}_COMMANDS",
            dead_stream=f"B{self.token}_DEAD",
            prefetch=64,
            commands=commands,
        )


def bridge(names: Names, *, commands: bool, name: str) -> Any:
    from adapter.bus.bridge import BusBridge, bus_for

    return BusBridge(bus_for(names.settings(commands=commands), name=name), consume=commands)


async def wait_for(condition: Callable[[], bool], timeout: float = DRAIN_TIMEOUT) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("a slice did not finish what it started in time")
        await asyncio.sleep(0.005)


async def reach(count: Callable[[], int], target: int) -> None:
    """Wait until `count()` reaches `target`."""
    try:
        await wait_for(lambda: count() >= target)
    except TimeoutError:
        raise TimeoutError(f"counted {count()} of {target} in time") from None


# --- the adapter's processes -------------------------------------------------------------------


def adapter_process(
    conn: Connection, kind: str, names: Names | None, seen: Any, tmp: str, code: str | None
) -> None:
    """One configuration, serving slices until told to stop. `seen` counts the events the
    consumer process received for this configuration; `code` is the checkout whose
    `adapter` package it runs (None: this one)."""
    if code is not None:
        sys.path.insert(0, code)  # before anything imports the adapter
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_adapter(conn, kind, names, seen, Path(tmp)))


async def _adapter(conn: Connection, kind: str, names: Names | None, seen: Any, tmp: Path) -> None:
    from adapter.directory import Peer, StaticDirectory
    from adapter.keys import generate
    from adapter.participant import Participant
    from adapter.settings import Delivery, Limits
    from adapter.store.sqlite import SqliteStore
    from adapter.uftp.messages import Role

    loop = asyncio.get_running_loop()
    if kind == "bare":
        assert names is not None
        await _bare(conn, names)
        return
    if kind == "relay":
        assert names is not None
        await _relay(conn, names, seen, tmp)
        return
    keys = {DSO: generate(), CRO: generate()}
    buses = _bridges(kind, names)
    if kind == "memory":  # the bridge without a broker: every event counted as published
        seen = _Counter()
        buses[CRO] = _memory_bridge(seen)
    assert names is not None or kind in ("none", "memory")
    delivery = Delivery(handler_concurrency=64)
    dso, cro = (
        Participant(
            domain=domain,
            role=role,
            keys=keys[domain],
            # A file of its own: two stores on one file would share their outbox.
            store=SqliteStore(tmp / f"{kind}-{uuid.uuid4().hex[:8]}-{domain}.sqlite3"),
            directory=StaticDirectory([]),
            delivery=delivery,
            limits=Limits(rate_per_sender=math.inf, handlers_per_sender=64, deliveries_per_peer=64),
            bus=buses[domain],
        )
        for domain, role in ((DSO, Role.DSO), (CRO, Role.CRO))
    )
    await cro.start()
    await dso.start()
    for me, other in ((dso, cro), (cro, dso)):
        assert isinstance(me.directory, StaticDirectory)
        me.directory.add(
            Peer(other.domain, other.role, other.url(), (keys[other.domain].public.signing,))
        )
    for bus in buses.values():
        if bus is not None:
            await wait_for(functools.partial(_consuming, bus), 30)
    conn.send("ready")
    profiler: cProfile.Profile | None = None
    started = (0.0, 0.0, 0)
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "run":  # the UFTP configurations drive their own load
            (load,) = args
            counted = seen if kind in ("events", "memory") else None
            conn.send(await _uftp_slice(dso, counted, load, _health(buses[CRO])))
        elif command == "begin":  # commands: the producer drives, we count
            started = (time.process_time(), time.perf_counter(), seen.value)
            conn.send("ok")
        elif command == "finish":
            (commands,) = args
            cpu, wall, base = started
            await reach(lambda: seen.value, base + EVENTS_PER_MESSAGE * commands)
            conn.send(Outcome(commands, time.process_time() - cpu, time.perf_counter() - wall))
        elif command == "profile":
            profiler = _profile(profiler, args[0])
            conn.send("ok")
        elif command == "stop":
            break
    await dso.stop()
    await cro.stop()
    conn.send("stopped")


def _bridges(kind: str, names: Names | None) -> dict[str, Any]:
    """Each side's bus bridge: the DSO's for the commands, the CRO's for the events; none
    for the other configurations (which have no broker names)."""
    if kind not in ("commands", "events"):
        return {DSO: None, CRO: None}
    assert names is not None
    return {
        DSO: bridge(names, commands=True, name="bench dso") if kind == "commands" else None,
        CRO: bridge(names, commands=False, name="bench cro") if kind == "events" else None,
    }


def _consuming(bus: Any) -> bool:
    """Whether `bus` (a bridge) consumes already."""
    consuming: bool = bus.health().consuming
    return consuming


class _Counter:
    """What `seen` is for the in-memory configuration: a count in this process."""

    value = 0


def _memory_bridge(seen: _Counter) -> Any:
    """A bridge whose bus is the in-memory port, each publication counted and dropped: what
    the bridge costs of itself (events built and stored, the relay), without a broker's
    client."""
    from adapter.bus.bridge import BusBridge
    from adapter.bus.memory import MemoryBus

    class CountingBus(MemoryBus):
        async def publish(self, event: Any, route: str) -> None:
            seen.value += 1

    return BusBridge(CountingBus(), consume=False)


async def paced(load: Load, start: Callable[[], Coroutine[Any, Any, Any]]) -> int:
    """Start `load.rate` a second of `start()` for `load.seconds`, each on schedule whatever
    the others do (an open loop); how many, once all have returned."""
    loop = asyncio.get_running_loop()
    count = round(load.rate * load.seconds)
    began = loop.time()
    tasks: list[asyncio.Task[Any]] = []
    for index in range(count):
        delay = began + index / load.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(start()))
    await asyncio.gather(*tasks)
    return count


async def _uftp_slice(dso: Any, seen: Any, load: Load, health: Callable[[], str] = str) -> Outcome:
    from adapter.uftp.messages import TestMessage

    cpu, wall = time.process_time(), time.perf_counter()
    base = seen.value if seen is not None else 0
    completed = await paced(load, lambda: dso.request(TestMessage(), to=CRO, timeout=120))
    if seen is not None:
        try:
            await reach(lambda: seen.value, base + EVENTS_PER_MESSAGE * completed)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {health()}") from None
    return Outcome(completed, time.process_time() - cpu, time.perf_counter() - wall)


def _health(bus: Any) -> Callable[[], str]:
    return (lambda: str(bus.health().detail)) if bus is not None else str


def _profile(profiler: cProfile.Profile | None, path: str | None) -> cProfile.Profile | None:
    if path is None:  # CPU time, not wall time: waiting for fsync or the broker is free
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        return profiler
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(path)
    return None


async def _relay(conn: Connection, names: Names, seen: Any, tmp: Path) -> None:
    """The relay of a store that holds a backlog: how fast it catches up."""
    from adapter.bus.bridge import bus_for
    from adapter.bus.journal import EventJournal
    from adapter.bus.relay import Relay
    from adapter.store.sqlite import SqliteStore
    from adapter.uftp import codec
    from adapter.uftp.messages import Role, TestMessage

    loop = asyncio.get_running_loop()
    store = SqliteStore(tmp / f"relay-{names.token}.sqlite3")
    await store.open()
    bus = bus_for(names.settings(commands=False), name="bench relay")
    await bus.connect()
    journal = EventJournal(domain=CRO, role=Role.CRO, clock=lambda: datetime_now())
    conn.send("ready")
    profiler: cProfile.Profile | None = None
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "run":
            (load,) = args
            backlog = load.backlog  # the slice lasts until it is published
            for start in range(0, backlog, 500):
                records = []
                for _ in range(min(500, backlog - start)):
                    message = _test_message(TestMessage)
                    inner = codec.encode(message, validate=False)
                    records.append(journal.inbound(message, inner, sender_role=Role.DSO))
                await store.add_events(records)
            base = seen.value
            cpu, wall = time.process_time(), time.perf_counter()
            relay = Relay(store, bus, poll_seconds=0.05)
            task = loop.create_task(relay.run())
            await reach(lambda: seen.value, base + backlog)
            await _drained(store)
            outcome = Outcome(backlog, time.process_time() - cpu, time.perf_counter() - wall)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            conn.send(outcome)
        elif command == "profile":
            profiler = _profile(profiler, args[0])
            conn.send("ok")
        elif command == "stop":
            break
    await bus.close()
    await store.close()
    conn.send("stopped")


async def _drained(store: Any) -> None:
    """Wait until the relay marked every event published (its last round's write)."""
    while await store.unpublished_events(1):  # noqa: ASYNC110 - nothing to wait on but the store
        await asyncio.sleep(0.005)


def datetime_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _test_message(kind: Any) -> Any:
    return kind(
        version="3.1.0",
        sender_domain=DSO,
        recipient_domain=CRO,
        time_stamp=datetime_now(),
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
    )


async def _bare(conn: Connection, names: Names) -> None:
    """The client library alone: publish with confirms, consume, in one process."""
    loop = asyncio.get_running_loop()
    client = await (
        _BareRabbit.open(names) if names.broker == "rabbitmq" else _BareNats.open(names)
    )
    conn.send("ready")
    body = b"<TestMessage/>" * 30
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "run":
            (load,) = args
            cpu, wall = time.process_time(), time.perf_counter()
            base = client.received
            published = 0
            end = wall + load.seconds
            while time.perf_counter() < end:
                await asyncio.gather(*(client.publish(body) for _ in range(load.window)))
                published += load.window
            await reach(lambda: client.received, base + published)
            conn.send(Outcome(published, time.process_time() - cpu, time.perf_counter() - wall))
        elif command == "stop":
            break
    await client.close()
    conn.send("stopped")


class _BareRabbit:
    """aio-pika alone: publish with confirms, consume every event (`open` sets it up)."""

    received = 0
    connection: AbstractConnection
    exchange: AbstractExchange
    #: aio-pika's names, looked up once at `open` (aio-pika is imported there).
    message: type[aio_pika.Message]
    persistent: aio_pika.DeliveryMode

    @classmethod
    async def open(cls, names: Names) -> _BareRabbit:
        import aio_pika

        self = cls()
        settings = names.settings(commands=False)
        self.connection = await aio_pika.connect(settings.url)
        channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await channel.declare_exchange(
            settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consumer = await self.connection.channel()
        await consumer.set_qos(prefetch_count=500)
        queue = await consumer.declare_queue(exclusive=True)
        await queue.bind(settings.exchange, "#")

        async def on_message(message: Any) -> None:
            self.received += 1

        await queue.consume(on_message, no_ack=True)
        self.message = aio_pika.Message
        self.persistent = aio_pika.DeliveryMode.PERSISTENT
        return self

    async def publish(self, body: bytes) -> None:
        await self.exchange.publish(
            self.message(
                body, delivery_mode=self.persistent, headers={"cloudEvents_id": str(uuid.uuid4())}
            ),
            routing_key="in.TestMessage",
            mandatory=True,
        )

    async def close(self) -> None:
        await self.connection.close()


class _BareNats:
    """nats-py alone: publish to JetStream, consume every event (`open` sets it up)."""

    received = 0
    nc: NatsClient
    js: JetStreamContext
    subject: str

    @classmethod
    async def open(cls, names: Names) -> _BareNats:
        import nats
        from nats.js.api import DeliverPolicy, StorageType, StreamConfig

        self = cls()
        settings = names.settings(commands=False)
        self.nc = await nats.connect(settings.url)
        self.js = self.nc.jetstream(timeout=10)
        self.subject = f"{settings.exchange}.in.TestMessage"
        await self.js.add_stream(
            StreamConfig(
                name=settings.stream,
                subjects=[f"{settings.exchange}.>"],
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )

        async def on_message(message: Any) -> None:
            self.received += 1

        await self.js.subscribe(
            f"{settings.exchange}.>",
            stream=settings.stream,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        return self

    async def publish(self, body: bytes) -> None:
        await self.js.publish(self.subject, body, headers={"Nats-Msg-Id": str(uuid.uuid4())})

    async def close(self) -> None:
        await self.nc.close()


# --- the operator's systems: a consumer of events, a producer of commands ----------------------


def consumer_process(conn: Connection, broker: str, counted: list[tuple[Names, Any]]) -> None:
    """Counts the events of each configuration in `counted` into its shared counter."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_consume(conn, broker, counted))


async def _consume(conn: Connection, broker: str, counted: list[tuple[Names, Any]]) -> None:
    loop = asyncio.get_running_loop()
    closers: list[Callable[[], Awaitable[Any]]] = []
    for names, counter in counted:

        def count(_: str, counter: Any = counter) -> None:
            counter.value += 1  # one writer: this process

        closers.append(await subscribe_events(names, count))
    conn.send("ready")
    while True:
        command, *_ = await loop.run_in_executor(None, conn.recv)
        if command == "cpu":
            conn.send(time.process_time())

        elif command == "stop":
            break
    for close in closers:
        await close()
    conn.send("stopped")


async def subscribe_events(
    names: Names, on_event: Callable[[str], None]
) -> Callable[[], Awaitable[Any]]:
    """The operator's consumer of a configuration's events: `on_event` gets the route of each
    (``in.TestMessage``, ``outcome.delivered``, ...) from now on. Returns what closes it."""
    settings = names.settings(commands=True)
    if names.broker == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(settings.url)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        events = await channel.declare_exchange(
            settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(events, "#")

        async def on_amqp(message: Any) -> None:
            on_event(message.routing_key)

        await queue.consume(on_amqp, no_ack=True)
        return connection.close
    import nats
    from nats.js.api import DeliverPolicy

    from adapter.bus.bridge import bus_for

    declare = bus_for(settings, name="bench declare")  # the streams, as the adapter
    await declare.connect()
    await declare.close()
    nc = await nats.connect(settings.url)
    prefix = len(settings.exchange) + 1

    async def on_nats(message: Any) -> None:
        on_event(message.subject[prefix:])

    await nc.jetstream().subscribe(
        f"{settings.exchange}.>",
        stream=settings.stream,
        cb=on_nats,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    return nc.close


def amqp_command() -> Any:
    """One command as the operator's systems put it on RabbitMQ: a TestMessage for the CRO,
    a new id (message-id) each time."""
    import aio_pika

    return aio_pika.Message(
        b"<TestMessage/>",
        message_id=str(uuid.uuid4()),
        content_type="text/xml; charset=utf-8",
        headers={"cloudEvents_uftprecipient": CRO},
    )


def producer_process(conn: Connection, names: Names, seen: Any) -> None:
    """Publishes commands for the commands configuration at the rate it is asked."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_produce(conn, names, seen))


async def _produce(conn: Connection, names: Names, seen: Any) -> None:
    loop = asyncio.get_running_loop()
    publish, close = await command_publisher(names)
    conn.send("ready")
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        if command == "run":
            (load,) = args
            conn.send(await paced(load, publish))
        elif command == "stop":
            break
    await close()
    conn.send("stopped")


async def command_publisher(
    names: Names,
) -> tuple[Callable[[], Coroutine[Any, Any, Any]], Callable[[], Awaitable[Any]]]:
    """The operator's producer of commands for a configuration: what publishes one (a
    TestMessage for the CRO, a new id each time, returning on the broker's confirm), and
    what closes it."""
    settings = names.settings(commands=True)
    if names.broker == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(settings.url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.commands_exchange)

        async def publish() -> None:
            await exchange.publish(amqp_command(), routing_key="send")

        return publish, connection.close
    import nats

    nc = await nats.connect(settings.url)
    js = nc.jetstream(timeout=10)

    async def publish_nats() -> None:
        await js.publish(
            f"{settings.commands_exchange}.send",
            b"<TestMessage/>",
            headers={
                "Nats-Msg-Id": str(uuid.uuid4()),
                "ce-datacontenttype": "text/xml;%20charset=utf-8",
                "ce-uftprecipient": CRO,
            },
        )

    return publish_nats, nc.close


# --- the run ---------------------------------------------------------------------------------


class Process:
    """A process of this benchmark, driven over a pipe."""

    def __init__(self, target: Callable[..., None], *args: Any, name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, *args), name=name)
        self.process.start()
        if not self.pipe.poll(60) or self.pipe.recv() != "ready":
            raise RuntimeError(f"{name} did not start")

    def call(self, *command: Any) -> Any:
        self.pipe.send(command)
        return self.pipe.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.call("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


@dataclasses.dataclass
class Configuration:
    """One row: its process (and, for commands, its producer)."""

    name: str
    kind: str
    broker: str
    process: Process
    producer: Process | None = None
    #: Starts the configuration's process anew (each round but the first).
    start: Callable[[], Process] | None = None

    def renew(self) -> None:
        """Stop the process and start another for the same configuration."""
        assert self.start is not None
        self.process.stop()
        self.process = self.start()

    def run(self, load: Load) -> Outcome:
        if self.kind == "commands":
            assert self.producer is not None
            self.process.call("begin")
            published = self.producer.call("run", load)
            outcome: Outcome = self.process.call("finish", published)
            return outcome
        return self.process.call("run", load)  # type: ignore[no-any-return]

    def profile(self, path: Path, load: Load) -> Path:
        self.process.call("profile", None)
        self.run(load)
        self.process.call("profile", str(path))
        return path


async def cleanup(names: Names) -> None:
    """Delete a configuration's exchanges and queues, or streams: every one that is there,
    then raise if any could not be (one that is missing already is not a failure)."""
    settings = names.settings(commands=True)
    failed: list[str] = []
    if names.broker == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(settings.url)
        async with connection:
            for kind, name in (
                ("queue", settings.commands_queue),
                ("queue", settings.dead_letter_queue),
                ("exchange", settings.exchange),
                ("exchange", settings.commands_exchange),
                ("exchange", settings.dead_letter_exchange),
            ):
                try:  # a channel each: the broker closes the channel of a failed one
                    channel = await connection.channel()
                    delete = channel.queue_delete if kind == "queue" else channel.exchange_delete
                    await delete(name)
                    await channel.close()
                except Exception as exc:
                    failed.append(f"{kind} {name}: {exc!r}")
    else:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(settings.url)
        try:
            js = nc.jetstream()
            for stream in (settings.stream, settings.commands_stream, settings.dead_stream):
                try:
                    await js.delete_stream(stream)
                except NotFoundError:
                    pass
                except Exception as exc:
                    failed.append(f"stream {stream}: {exc!r}")
        finally:
            await nc.close()
    if failed:
        raise RuntimeError(f"could not delete {'; '.join(failed)}")


def tidy(names: Names) -> None:
    """`cleanup` after a run, whatever became of it: a failure is printed, not raised over
    the run's own outcome or error."""
    try:
        asyncio.run(cleanup(names))
    except Exception as exc:
        print(f"  {names.broker} {names.token}: not all deleted: {exc!r}", flush=True)


def rotated(names: list[str], round_: int) -> list[str]:
    shift = round_ % len(names)
    return names[shift:] + names[:shift]


def spread(values: list[float], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    low, mid, high = (v * scale for v in (min(values), statistics.median(values), max(values)))
    return f"{fmt.format(mid)} [{fmt.format(low)}-{fmt.format(high)}]"


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of `values`: the order
    statistics X(k) and X(n+1-k), k the largest for which the median falls outside with a
    chance of at most 1 - `confidence` (each is below it with probability 1/2, so the
    count below it is binomial). The rounds' ratios are skewed and have outliers (a slice
    that met a load of the machine's own), which is why the median, and why not a normal
    interval around a mean. (-inf, inf) when there are too few values for `confidence`
    (5 or fewer at 95%)."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    below = 0.0  # P(Binomial(n, 1/2) <= k - 1)
    k = 0
    while k < n // 2:
        below += math.comb(n, k) / 2**n
        if below > tail:
            break
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return ordered[k - 1], ordered[n - k]


def judge(extra: list[float]) -> str:
    """PASS when the whole confidence interval of the median is under the target, FAIL when
    it is all at or above it, else UNDECIDED: the rounds cannot tell, more of them might."""
    low, high = median_interval(extra)
    if high < TARGET_EXTRA:
        return "PASS"
    if low >= TARGET_EXTRA:
        return "FAIL"
    return "UNDECIDED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="rabbitmq,nats", help="rabbitmq, nats or both")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s slices")
    parser.add_argument("--rounds", type=int, help="slices per configuration (5)")
    parser.add_argument("--slice", type=float, help="seconds per slice (2)")
    parser.add_argument("--rate", type=float, default=100, help="UFTP messages/s offered (100)")
    parser.add_argument("--window", type=int, default=100, help="bare loop: in flight (100)")
    parser.add_argument("--backlog", type=int, default=2000, help="relay backlog events (2000)")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"configurations besides the UFTP path without a bus ({','.join(KINDS)})",
    )
    parser.add_argument("--amqp-url", default=URLS["rabbitmq"])
    parser.add_argument("--nats-url", default=URLS["nats"])
    parser.add_argument(
        "--store-dir",
        type=Path,
        help="where the SQLite stores go (default: a temporary directory under $TMPDIR); "
        "e.g. /dev/shm to leave out what fsync costs",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of another version (e.g. `git worktree add` or `git archive` of a "
        "commit): its adapter runs beside this one's, in the same slices",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile into DIR")
    parser.add_argument("--profile-lines", type=int, default=35)
    options = parser.parse_args(argv)
    URLS["rabbitmq"], URLS["nats"] = options.amqp_url, options.nats_url
    brokers = [b.strip() for b in options.brokers.split(",") if b.strip()]
    if brokers == ["both"]:
        brokers = ["rabbitmq", "nats"]
    unknown = set(brokers) - set(URLS)
    if unknown:
        parser.error(f"--brokers: {', '.join(sorted(unknown))}: expected rabbitmq, nats or both")
    kinds = {k.strip() for k in options.kinds.split(",") if k.strip()}
    if kinds - set(KINDS):
        parser.error(f"--kinds: {', '.join(sorted(kinds - set(KINDS)))}: expected {KINDS}")
    rounds = options.rounds or (2 if options.quick else 5)
    seconds = options.slice or (1.0 if options.quick else 2.0)
    logging.basicConfig(level=logging.ERROR)
    print(
        f"{rounds} rounds of {seconds:g} s slices, {options.rate:g} messages/s offered, "
        f"backlog {options.backlog} events; stores in "
        f"{options.store_dir or tempfile.gettempdir()}; {multiprocessing.cpu_count()} CPUs; Python "
        f"{sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    load = Load(seconds, options.rate, options.window, options.backlog)
    warm_up = dataclasses.replace(load, seconds=min(seconds, 1.0))
    context = multiprocessing.get_context("spawn")
    configurations: dict[str, Configuration] = {}
    helpers: list[Process] = []
    all_names: list[Names] = []
    results: dict[str, list[Outcome]] = {}
    consumer_cpu: dict[str, float] = {}
    paths: dict[str, Path] = {}
    codes: list[tuple[str, str | None]] = [("", None)]
    if options.baseline:
        codes.append((" (baseline)", str(options.baseline.resolve())))
    with tempfile.TemporaryDirectory(prefix="bench-bus-", dir=options.store_dir) as tmp:
        try:
            for suffix, code in codes:
                for kind, label in (
                    ("none", "UFTP, no bus"),
                    ("memory", "UFTP -> bus, in-memory port"),
                ):
                    if kind != "none" and kind not in kinds:
                        continue
                    key = kind + ("-base" if code else "")

                    def start(kind: str = kind, code: str | None = code, key: str = key) -> Process:
                        return Process(adapter_process, kind, None, None, tmp, code, name=key)

                    configurations[key] = Configuration(
                        label + suffix, kind, "", start(), start=start
                    )
            for broker in brokers:
                variants = [
                    (kind, suffix, code)
                    for suffix, code in codes
                    for kind in ("events", "commands", "relay", "bare")
                    if kind in kinds
                    and not (code and kind == "bare")  # the library alone: no code of ours
                ]
                if not variants:
                    continue
                names = {
                    (kind, code): Names(broker, uuid.uuid4().hex[:8]) for kind, _, code in variants
                }
                all_names.extend(names.values())
                seen = {variant: context.Value("q", 0, lock=False) for variant in names}
                consumer = Process(
                    consumer_process,
                    broker,
                    [(names[v], seen[v]) for v in names if v[0] != "bare"],
                    name=f"consumer-{broker}",
                )
                helpers.append(consumer)
                for kind, suffix, code in variants:
                    key = f"{kind}-{broker}" + ("-base" if code else "")
                    variant = (kind, code)

                    def start_named(
                        kind: str = kind,
                        code: str | None = code,
                        key: str = key,
                        named: Names = names[variant],
                        counter: Any = seen[variant],
                    ) -> Process:
                        return Process(adapter_process, kind, named, counter, tmp, code, name=key)

                    label = {
                        "events": f"UFTP -> bus, {broker}",
                        "commands": f"bus -> UFTP (commands), {broker}",
                        "relay": f"relay backlog, {broker} (events)",
                        "bare": f"bare {broker} publish+consume",
                    }[kind] + suffix
                    configurations[key] = Configuration(
                        label, kind, broker, start_named(), start=start_named
                    )
                    if kind == "commands":
                        producer = Process(
                            producer_process, names[variant], seen[variant], name=f"producer-{key}"
                        )
                        helpers.append(producer)
                        configurations[key].producer = producer
            order = list(configurations)
            results = {key: [] for key in order}
            consumer_before = {
                p.process.name: p.call("cpu") for p in helpers if "consumer" in p.process.name
            }
            for key in order:  # warm-up
                configurations[key].run(load)
            for round_ in range(rounds):
                if round_:
                    # A process's CPU per message carries a bias of its own (its memory
                    # layout, its hash seed: two processes of the same code measured 10-15%
                    # apart over a whole run), which rounds of the same processes never
                    # average out: new processes each round turn it into noise they do.
                    for key in order:
                        configurations[key].renew()
                        configurations[key].run(warm_up)
                for key in rotated(order, round_):
                    outcome = configurations[key].run(load)
                    results[key].append(outcome)
                print(f"  round {round_ + 1}/{rounds} done", flush=True)
            consumer_cpu = {
                p.process.name: p.call("cpu") - consumer_before[p.process.name]
                for p in helpers
                if "consumer" in p.process.name
            }
            if options.profile:
                options.profile.mkdir(parents=True, exist_ok=True)
                for key in order:
                    if configurations[key].kind in (
                        "none",
                        "memory",
                        "events",
                        "commands",
                        "relay",
                    ):
                        paths[key] = configurations[key].profile(
                            options.profile / f"{key}.pstats", load
                        )
        finally:
            for configuration in configurations.values():
                configuration.process.stop()
            for helper in helpers:
                helper.stop()
            for names_ in all_names:
                tidy(names_)
    report(configurations, results, consumer_cpu)
    for key, path in paths.items():
        print(f"\n--- {configurations[key].name}: top {options.profile_lines} by own time ---")
        stats = pstats.Stats(str(path))
        stats.sort_stats(pstats.SortKey.TIME).print_stats(options.profile_lines)
        print(f"--- {configurations[key].name}: top {options.profile_lines} by cumulative ---")
        stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(options.profile_lines)
    return 0


def report(
    configurations: dict[str, Configuration],
    results: dict[str, list[Outcome]],
    consumer_cpu: dict[str, float],
) -> None:
    print(
        "\nCPU per message of the adapter's process (relay: per event), median of the slices "
        "[min-max], and messages (events) per second, pooled"
    )
    print(f"  {'configuration':44} {'CPU ms/msg':>22} {'msg/s':>8}  slices msg/s")
    for key, configuration in configurations.items():
        slices = results[key]
        pooled = sum(o.completed for o in slices) / sum(o.wall for o in slices)
        print(
            f"  {configuration.name:44} {spread([o.cpu_per_message for o in slices], 1000):>22} "
            f"{pooled:8.0f}  {min(o.rate for o in slices):.0f}-{max(o.rate for o in slices):.0f}"
        )

    def without_bus(key: str) -> list[Outcome]:
        return results["none-base" if key.endswith("-base") else "none"]

    print(
        "\nThe bridge's CPU per message over the UFTP path without it, per round: median "
        f"[min-max], {CONFIDENCE:.0%} confidence interval of the median"
    )
    verdicts = []
    for key, configuration in configurations.items():
        if configuration.kind not in ("memory", "events", "commands"):
            continue
        extra = [
            o.cpu_per_message / b.cpu_per_message - 1
            for o, b in zip(results[key], without_bus(key), strict=True)
        ]
        judged = ""
        if configuration.kind in ("events", "commands") and not key.endswith("-base"):
            # Both ways are the bridge (issue 12): events out and commands in, each broker.
            verdict = judge(extra)
            verdicts.append(verdict)
            under = sum(e < TARGET_EXTRA for e in extra)
            judged = f": {verdict}, {under} of {len(extra)} rounds under"
        low, high = median_interval(extra)
        interval = f"{low:+.0%}..{high:+.0%}" if math.isfinite(low) else "too few rounds"
        print(
            f"  {configuration.name:44} {spread(extra, 100, '{:+.0f}%'):>22} "
            f"{interval:>14} (target < +{TARGET_EXTRA:.0%}{judged})"
        )
        print(f"  {'':44} rounds {' '.join(f'{e:+.0%}' for e in extra)}")
    if "none-base" in results:
        print("\nThis checkout's CPU per message over the baseline's, per round: median [min-max]")
        for key, configuration in configurations.items():
            if f"{key}-base" in results:
                change = [
                    o.cpu_per_message / b.cpu_per_message - 1
                    for o, b in zip(results[key], results[f"{key}-base"], strict=True)
                ]
                print(f"  {configuration.name:44} {spread(change, 100, '{:+.0f}%'):>22}")
    print(f"\nCan the bus be the bottleneck below {RATE:,} messages/s?")
    for key, configuration in configurations.items():
        slices = results[key]
        rate = statistics.median(o.rate for o in slices)
        if configuration.kind == "bare":
            print(
                f"  {configuration.name:44} {rate:6.0f} msg/s: "
                f"{'above' if rate >= RATE else 'BELOW'} {RATE:,}"
            )
        elif configuration.kind == "relay":
            need = RATE * EVENTS_PER_MESSAGE
            print(
                f"  {configuration.name:44} {rate:6.0f} events/s: "
                f"{'above' if rate >= need else 'BELOW'} the {need:,} events/s of {RATE:,} "
                f"messages/s, at {statistics.median(o.cpu_per_message for o in slices) * need:.0%} "
                "of a core"
            )
        elif configuration.kind in ("memory", "events", "commands"):
            bridge_cpu = statistics.median(
                o.cpu_per_message - b.cpu_per_message
                for o, b in zip(slices, without_bus(key), strict=True)
            )
            path = statistics.median(b.cpu_per_message for b in without_bus(key))
            # What the bridge's own CPU would take at that rate, beside what the UFTP path
            # without it takes: the process runs out of cores on the path long before.
            print(
                f"  {configuration.name:44} bridge CPU {bridge_cpu * 1000:+.2f} ms/msg at the rate "
                f"offered: {bridge_cpu * RATE:.0%} of a core at {RATE:,} messages/s, the UFTP path "
                f"without it {path * RATE:.0%}"
            )
    for name, cpu in consumer_cpu.items():
        print(f"  ({name}: {cpu:.1f} s CPU over the measured slices, not counted above)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    overall = (
        "not judged (no events or commands rows)"
        if not verdicts
        else "PASS"
        if set(verdicts) == {"PASS"}
        else "FAIL"
        if "FAIL" in verdicts
        else "UNDECIDED (more rounds)"
    )
    print(f"The bridge within the target, events and commands, on every broker: {overall}")


if __name__ == "__main__":
    raise SystemExit(main())
