"""The bridge's guarantees on the real RabbitMQ under faults: the broker's connections
closed under load, a network outage, a consumer that must come back. Each fault test counts
what the operator's consumer saw against what the store holds: lost must be 0; duplicates,
which at-least-once allows, are counted and removed by event id. (What the bridge does on
either broker without faults: test_bridge_brokers.py.)"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import aio_pika
import aiohttp

from adapter.bus.bridge import BusBridge
from adapter.bus.events import XML_CONTENT_TYPE
from adapter.bus.rabbitmq import RabbitBus, Topology
from adapter.participant import Participant
from adapter.uftp.messages import Result, Role
from tests.bus.conftest import AMQP_URL
from tests.bus.test_bridge_events import CRO, DSO, update
from tests.bus.tools import EventSink, Proxy, close_connections
from tests.conftest import Network, eventually

log = logging.getLogger(__name__)


def rabbit_bridge(topology: Topology, name: str, url: str = AMQP_URL, **options: Any) -> BusBridge:
    bus = RabbitBus(url, topology, name=name, reconnect_interval=0.3, publish_timeout=5)
    return BusBridge(bus, relay_poll_seconds=0.05, relay_backoff_max_seconds=0.5, **options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def cro_on_rabbit(
    network: Network, topology: Topology, name: str, **options: Any
) -> Participant:
    from adapter.config import CroSettings
    from adapter.cro import cro_router
    from adapter.store import register_for

    cro = network.create(CRO, Role.CRO, bus=rabbit_bridge(topology, name, **options))
    assert cro.journal is not None
    register = register_for(cro.store, events=cro.journal.register_change)
    cro.router.include(cro_router(register, CroSettings()))
    return cro


async def publish_command(
    amqp: Any, topology: Topology, command_id: str, body: bytes, **attributes: str
) -> None:
    channel = await amqp.channel()
    exchange = await channel.get_exchange(topology.commands_exchange)
    headers = {f"cloudEvents_{k}": v for k, v in attributes.items()}
    await exchange.publish(
        aio_pika.Message(
            body,
            message_id=command_id,
            content_type=XML_CONTENT_TYPE,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key="send",
    )
    await channel.close()


async def stored_events(participant: Participant) -> set[str]:
    def ids(conn: Any) -> set[str]:
        return {row[0] for row in conn.execute("SELECT event_id FROM bus_events")}

    return await participant.store.read(ids)  # type: ignore[attr-defined]


async def all_published(participant: Participant) -> bool:
    return await participant.store.unpublished_events(1) == []


async def pending(participant: Participant) -> list[tuple[str, int, str]]:
    return [
        (r.message_id, r.attempts, str(r.next_attempt_at))
        for r in await participant.store.pending_outbound()
    ]


def figures(name: str, stored: set[str], sink: EventSink) -> tuple[int, int]:
    lost = len(stored - set(sink.events))
    print(f"\n{name}: {len(stored)} events, lost {lost}, duplicated {sink.duplicates}")
    return lost, sink.duplicates


# -- faults -----------------------------------------------------------------------------------


async def test_connections_closed_under_load_lose_no_event(
    network: Network, amqp: Any, topology: Topology
) -> None:
    sink = await EventSink.bind(amqp, topology.events_exchange)
    name = unique("cro-load")
    cro = await cro_on_rabbit(network, topology, name)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: cro.bus is not None and cro.bus.health().connected)

    messages = 300
    closed = closed_events = 0

    async def chaos() -> None:
        nonlocal closed, closed_events
        for _ in range(3):
            await asyncio.sleep(0.7)
            # The events' own connection (adapter.bus.amqp), opened again by the next publish.
            closed_events += await close_connections(f"{name} events")
            closed += await close_connections(name)

    killer = asyncio.ensure_future(chaos())
    for start in range(0, messages, 25):
        await asyncio.gather(*(dso.send(update(1 + (start + i) % 3), to=CRO) for i in range(25)))
        await asyncio.sleep(0.05)
    await killer
    assert closed >= 2, "the test closed the adapter's connection under load"
    assert closed_events >= 1, "the test closed the events connection under load"

    async def settled() -> bool:
        outcomes = len(sink.of("outcome.delivered"))
        return outcomes == messages and await all_published(cro)

    await eventually(settled, timeout=90)
    await eventually(lambda: cro.bus is not None and cro.bus.health().connected, timeout=10)
    stored = await stored_events(cro)
    # The message and its outcome, and the register change of each one accepted (sent 25 at
    # once, an update that reaches the register after a newer one is rejected as a
    # "Subordinate sequence number", and changes nothing).
    registered = len(sink.of("register.dso-portfolio"))
    assert len(stored) == 2 * messages + registered and registered > 0
    lost, _ = figures("connections closed under load", stored, sink)
    assert lost == 0
    assert len(sink.of("in.DSOPortfolioUpdate")) == messages


async def test_commands_under_connection_closes_are_carried_out_once_each(
    network: Network, amqp: Any, topology: Topology
) -> None:
    name = unique("dso-cmd")
    dso = network.create(DSO, Role.DSO, bus=rabbit_bridge(topology, name))
    cro = await cro_on_rabbit(
        network, Topology(events_exchange=unique("unused")), unique("cro"), consume=False
    )
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming)

    commands = 200
    ids = [f"cmd-{n}" for n in range(commands)]

    async def chaos() -> int:
        closed = 0
        for _ in range(3):
            await asyncio.sleep(0.5)
            # The consumer's own connection (adapter.bus.amqp), and aio-pika's.
            closed += await close_connections(f"{name} commands")
            await close_connections(name)
        return closed

    killer = asyncio.ensure_future(chaos())
    for command_id in ids:  # each twice: a producer retrying after a lost confirm
        for _ in range(2):
            await publish_command(amqp, topology, command_id, b"<TestMessage/>", uftprecipient=CRO)
    closed = await killer
    assert closed >= 2, "the test closed the commands connection under load"

    async def inbound_tests() -> int:
        def count(conn: Any) -> int:
            return int(
                conn.execute(
                    "SELECT count(*) FROM inbound WHERE message_type = 'TestMessage'"
                ).fetchone()[0]
            )

        return await cro.store.read(count)  # type: ignore[attr-defined]

    async def done() -> bool:
        known = [await dso.store.command_message(i) for i in ids]
        return all(known) and await inbound_tests() == commands

    try:
        await eventually(done, timeout=90)
    except AssertionError:
        missing = [i for i in ids if await dso.store.command_message(i) is None]
        channel = await amqp.channel()
        queue = await channel.declare_queue(topology.commands_queue, passive=True)
        result = queue.declaration_result
        await channel.close()
        raise AssertionError(
            f"not carried out: {missing}; UFTP messages at the CRO {await inbound_tests()}; "
            f"queue: {result.message_count} ready, {result.consumer_count} consumers; "
            f"bus: {dso.bus.health() if dso.bus else None}; the DSO's pending messages "
            f"(id, attempts, due): {await pending(dso)}"
        ) from None
    await asyncio.sleep(1)
    sent = await inbound_tests()
    print(
        f"\ncommands under connection closes: {commands} commands sent twice each, "
        f"{closed} connection closes, {sent} UFTP messages: lost {commands - sent}, "
        f"duplicated {max(0, sent - commands)}"
    )
    assert sent == commands


async def test_the_relay_catches_up_after_a_network_outage_and_health_tells(
    network: Network, amqp: Any, topology: Topology
) -> None:
    proxy = Proxy()
    await proxy.start()
    sink = await EventSink.bind(amqp, topology.events_exchange)
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    cro = await cro_on_rabbit(network, topology, unique("cro-outage"), url=url)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: cro.bus is not None and cro.bus.health().consuming)
    health = cro.url().replace("/shapeshifter/api/v3/message", "/health")

    async with aiohttp.ClientSession() as session:
        async with session.get(health + "/bus") as reply:
            assert reply.status == 200

        await proxy.cut()
        messages = 40
        for n in range(messages):  # the peer is served as ever: 200 and an Accepted
            response = await dso.request(update(1 + n % 3), to=CRO, timeout=10)
            assert response.result is Result.ACCEPTED
        async with session.get(health) as reply:
            assert reply.status == 200
            assert "bus: " in await reply.text()
        async with session.get(health + "/bus") as reply:
            assert reply.status == 503
        assert len(await cro.store.unpublished_events(1000)) >= 2 * messages

        await asyncio.sleep(1.0)
        await proxy.restore()

        async def settled() -> bool:
            return len(sink.of("outcome.delivered")) == messages and await all_published(cro)

        await eventually(settled, timeout=60)
        await eventually(lambda: cro.bus is not None and cro.bus.health().consuming, timeout=15)
        async with session.get(health + "/bus") as reply:
            assert reply.status == 200
    stored = await stored_events(cro)
    lost, _ = figures("network outage", stored, sink)
    assert lost == 0
    await proxy.cut()


async def test_the_consumer_comes_back_after_its_connection_is_killed(
    network: Network, amqp: Any, topology: Topology
) -> None:
    name = unique("dso-consumer")
    dso = network.create(DSO, Role.DSO, bus=rabbit_bridge(topology, name))
    cro = await cro_on_rabbit(
        network, Topology(events_exchange=unique("unused")), unique("cro"), consume=False
    )
    await network.start(cro, dso)
    network.introduce(cro, dso)
    assert dso.bus is not None
    await eventually(lambda: dso.bus.health().consuming)  # type: ignore[union-attr]
    rabbit = dso.bus.bus
    assert isinstance(rabbit, RabbitBus)
    for round_ in range(2):
        assert await close_connections(f"{name} commands") == 1
        await eventually(lambda n=round_ + 1: rabbit.consumer_reopens == n, timeout=20)
        await eventually(lambda: dso.bus.health().consuming, timeout=20)  # type: ignore[union-attr]
        # Registered with the broker, not only in our books: a command is carried out.
        channel = await amqp.channel()
        queue = await channel.declare_queue(topology.commands_queue, passive=True)
        assert queue.declaration_result.consumer_count == 1
        await channel.close()
        await publish_command(
            amqp, topology, f"after-kill-{round_}", b"<TestMessage/>", uftprecipient=CRO
        )

        async def carried_out(command_id: str = f"after-kill-{round_}") -> bool:
            return await dso.store.command_message(command_id) is not None

        await eventually(carried_out, timeout=10)
