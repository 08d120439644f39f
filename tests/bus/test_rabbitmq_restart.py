"""The bridge on a RabbitMQ node of the test's own (`tests.bus.tools.PrivateRabbit`), for the
faults that take the whole broker: every connection closed at once
(`rabbitmqctl close_all_connections`) and the broker stopped and started, both under load.
The shared broker is never touched. Each test prints its figures (messages, events, lost,
duplicated) and asserts lost = 0; duplicates are what at-least-once allows, removed here by
event id as the README tells consumers to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from adapter.bus.rabbitmq import RabbitBus, Topology
from adapter.participant import Participant
from adapter.uftp.errors import Reason
from adapter.uftp.messages import Result, Role
from tests.bus.test_bridge_events import CRO, DSO, update
from tests.bus.test_rabbitmq_e2e import (
    all_published,
    cro_on_rabbit,
    figures,
    publish_command,
    stored_events,
    unique,
)
from tests.bus.tools import EventSink, PrivateRabbit
from tests.conftest import Network, eventually

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TOPOLOGY = Topology(delivery_limit=3, prefetch=8)  # the documented names: the node is ours


@pytest.fixture
async def rabbit(tmp_path: Path) -> AsyncIterator[PrivateRabbit]:
    """A fresh RabbitMQ node of this test alone, stopped afterwards."""
    PrivateRabbit.require()
    node = PrivateRabbit(tmp_path / "rabbit")
    seconds = await node.start()
    print(f"\nprivate RabbitMQ node {node.node} on port {node.port}: started in {seconds:.1f} s")
    try:
        yield node
    finally:
        await asyncio.to_thread(node.kill)


@pytest.fixture
async def operator(rabbit: PrivateRabbit) -> AsyncIterator[Any]:
    """The operator's robust connection to the node: it comes back after a restart."""
    connection = await aio_pika.connect_robust(rabbit.url, reconnect_interval=0.3, timeout=10)
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


class Load:
    """The DSO keeps sending portfolio updates to the CRO, `width` at a time, and checks
    that every one is answered: whatever the broker does, the peer is served. Sent at once,
    updates may reach the register out of the order of their TimeStamps; the CRO then
    rejects the older one as a "Subordinate sequence number" (contract-phase.md), which is
    no failure here: any other rejection is."""

    def __init__(self, dso: Participant, width: int = 5) -> None:
        self.dso = dso
        self.width = width
        self.sent = 0
        self.accepted = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _one(self, n: int) -> None:
        try:
            response = await self.dso.request(update(1 + n % 3), to=CRO, timeout=30)
        except Exception as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return
        if response.result is Result.ACCEPTED:
            self.accepted += 1
        elif response.rejection_reason != Reason.SUBORDINATE_SEQUENCE_NUMBER:
            self.failures.append(repr(response))

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.gather(*(self._one(self.sent + i) for i in range(self.width)))
            self.sent += self.width

    async def stop(self) -> int:
        self._stop.set()
        assert self._task is not None
        await self._task
        return self.sent


async def bus_status(session: aiohttp.ClientSession, participant: Participant) -> int:
    health = participant.url().replace("/shapeshifter/api/v3/message", "/health")
    async with session.get(health) as reply:  # the endpoint stays healthy throughout
        assert reply.status == 200, await reply.text()
    async with session.get(health + "/bus") as reply:
        return reply.status


async def settle(cro: Participant, sink: EventSink, messages: int) -> None:
    async def settled() -> bool:
        return len(sink.of("outcome.delivered")) == messages and await all_published(cro)

    await eventually(settled, timeout=120)


async def command_carried_out(
    operator: Any, cro: Participant, dso: Participant, command_id: str
) -> None:
    """A command put on the CRO's queue now is consumed and sent: the consumer is back for
    real, not only in the adapter's view of itself."""
    await publish_command(operator, TOPOLOGY, command_id, b"<TestMessage/>", uftprecipient=DSO)

    async def sent() -> bool:
        return await cro.store.command_message(command_id) is not None

    await eventually(sent, timeout=30)

    async def arrived() -> bool:
        def count(conn: Any) -> int:
            return int(
                conn.execute(
                    "SELECT count(*) FROM inbound WHERE message_type = 'TestMessage'"
                ).fetchone()[0]
            )

        return await dso.store.read(count) >= 1  # type: ignore[attr-defined]

    await eventually(arrived, timeout=30)


async def test_the_broker_stopped_and_started_under_load_loses_nothing_and_consumes_again(
    network: Network, rabbit: PrivateRabbit, operator: Any
) -> None:
    sink = await EventSink.bind(operator, TOPOLOGY.events_exchange, durable="test.sink")
    cro = await cro_on_rabbit(network, TOPOLOGY, unique("cro-restart"), url=rabbit.url)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    assert cro.bus is not None
    await eventually(lambda: cro.bus.health().consuming, timeout=20)  # type: ignore[union-attr]
    rabbit_bus = cro.bus.bus
    assert isinstance(rabbit_bus, RabbitBus)

    load = Load(dso)
    async with aiohttp.ClientSession() as session:
        assert await bus_status(session, cro) == 200
        load.start()
        await eventually(lambda: load.sent >= 30, timeout=30)
        before_stop = load.sent
        stopped_in = await rabbit.stop()
        before_outage = load.sent
        # While the broker is away: the peer is still answered, /health/bus says so.
        assert await bus_status(session, cro) == 503
        await eventually(lambda: load.sent >= before_outage + 30, timeout=30)
        during_outage = load.sent - before_stop
        unpublished = len(await cro.store.unpublished_events(10_000))
        began = time.monotonic()
        started_in = await rabbit.start()
        await eventually(lambda: cro.bus.health().consuming, timeout=60)  # type: ignore[union-attr]
        back_in = time.monotonic() - began
        assert await bus_status(session, cro) == 200
        await asyncio.sleep(0.5)
        messages = await load.stop()
    assert load.failures == []

    await settle(cro, sink, messages)
    stored = await stored_events(cro)
    # The message and its outcome, and a register change for each one accepted.
    assert len(stored) == 2 * messages + load.accepted
    assert len(sink.of("register.dso-portfolio")) == load.accepted > 0
    lost, duplicated = figures("RabbitMQ stopped and started under load", stored, sink)
    print(
        f"  {messages} messages ({load.accepted} accepted), {during_outage} of them while the "
        f"broker stopped or was down "
        f"({unpublished} events waiting in the store); stop took {stopped_in:.1f} s, start "
        f"{started_in:.1f} s, the consumer registered again {back_in:.1f} s after the start "
        f"began; reconnects {rabbit_bus.reconnects}; peers' failures {len(load.failures)}"
    )
    assert lost == 0
    assert set(sink.events) == stored
    assert rabbit_bus.reconnects >= 1
    await command_carried_out(operator, cro, dso, "after-restart")


async def test_every_connection_closed_under_load_loses_nothing_and_doubles_no_command(
    network: Network, rabbit: PrivateRabbit, operator: Any
) -> None:
    sink = await EventSink.bind(operator, TOPOLOGY.events_exchange, durable="test.sink")
    cro = await cro_on_rabbit(network, TOPOLOGY, unique("cro-close-all"), url=rabbit.url)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    assert cro.bus is not None
    await eventually(lambda: cro.bus.health().consuming, timeout=20)  # type: ignore[union-attr]

    commands = 100
    load = Load(dso)
    load.start()
    closes: list[int] = []

    async def chaos() -> None:
        for _ in range(3):
            await asyncio.sleep(0.8)
            closes.append(await rabbit.close_all_connections())

    republished = 0

    async def produce() -> None:
        nonlocal republished
        for n in range(commands):  # each twice: a producer retrying after a lost confirm
            for _ in range(2):
                while True:
                    try:
                        await publish_command(
                            operator, TOPOLOGY, f"cmd-{n}", b"<TestMessage/>", uftprecipient=DSO
                        )
                        break
                    except Exception:  # our own connection was closed too: publish again
                        republished += 1
                        await asyncio.sleep(0.2)

    producer = asyncio.ensure_future(produce())
    await chaos()
    messages = await load.stop()
    await producer
    assert load.failures == []
    assert len(closes) == 3 and all(count >= 2 for count in closes), closes

    async def tests_arrived() -> int:
        def count(conn: Any) -> int:
            return int(
                conn.execute(
                    "SELECT count(*) FROM inbound WHERE message_type = 'TestMessage'"
                ).fetchone()[0]
            )

        return await dso.store.read(count)  # type: ignore[attr-defined]

    async def commands_done() -> bool:
        known = [await cro.store.command_message(f"cmd-{n}") for n in range(commands)]
        return all(known) and await tests_arrived() == commands

    await eventually(commands_done, timeout=120)
    # Every outcome of the commands' TestMessages is an event as well.
    await settle(cro, sink, messages + commands)
    await asyncio.sleep(1)
    sent = await tests_arrived()
    stored = await stored_events(cro)
    # Each update, its outcome, its register change if accepted; each command's message,
    # its outcome and its response.
    assert len(stored) == 2 * messages + load.accepted + 2 * commands
    lost, duplicated = figures("every connection closed under load", stored, sink)
    print(
        f"  {messages} UFTP messages in and {commands} commands (each published twice) "
        f"while close_all_connections closed {closes} connections; {sent} UFTP messages "
        f"sent for the commands: lost {commands - sent}, duplicated "
        f"{max(0, sent - commands)}; the test's producer published again {republished} times"
    )
    assert lost == 0
    assert set(sink.events) == stored
    assert sent == commands
