"""The RabbitMQ adapter against the real broker: confirmed, persistent, mandatory publishing
in CloudEvents binary mode; the declared command topology; settling by verdict."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import pamqp.encode
import pytest

from adapter.bus.events import XML_CONTENT_TYPE, CloudEvent, from_amqp, to_amqp
from adapter.bus.port import BusUnavailable, Command, Unroutable, Verdict
from adapter.bus.rabbitmq import RabbitBus, Topology, string_table
from adapter.uftp.messages import Role
from tests.bus.conftest import AMQP_URL
from tests.bus.tools import Proxy, Recorder, cro_journal, dso_test_message
from tests.conftest import eventually


def event(n: int = 1) -> CloudEvent:
    return CloudEvent(
        id=f"e-{n}",
        source="urn:uftp:CRO:cro.example.com",
        type="uftp.DSOPortfolioUpdate",
        time=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        datacontenttype=XML_CONTENT_TYPE,
        data=b"<DSOPortfolioUpdate/>",
        extensions={"correlationid": "c-1"},
    )


async def bound_queue(amqp: Any, exchange: str, pattern: str = "#") -> Any:
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, pattern)
    return queue


async def next_message(queue: Any, timeout: float = 10.0) -> Any:
    """The next message on `queue`, waiting for it: `Queue.get` is one Basic.Get, which finds
    the queue empty if the broker has not routed the message yet (a dead letter, say, which
    the broker routes after the consumer's reject, after the handler was called)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await queue.get(fail=False, timeout=5)
        if message is not None:
            return message
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no message on {queue.name} within {timeout} s")
        await asyncio.sleep(0.05)


async def test_events_are_published_confirmed_persistent_and_in_binary_mode(
    amqp: Any, topology: Topology
) -> None:
    bus = RabbitBus(AMQP_URL, topology)
    await bus.connect()
    try:
        queue = await bound_queue(amqp, topology.events_exchange, "in.*")
        await bus.publish(event(), "in.DSOPortfolioUpdate")
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.routing_key == "in.DSOPortfolioUpdate"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == XML_CONTENT_TYPE
        assert message.body == b"<DSOPortfolioUpdate/>"
        assert message.headers["cloudEvents_id"] == "e-1"
        attributes = from_amqp(message.headers, message.content_type)
        assert CloudEvent.from_attributes(attributes, message.body) == event()
        with pytest.raises(Unroutable):  # mandatory: nobody is bound for outcome.*
            await bus.publish(event(2), "outcome.delivered")
    finally:
        await bus.close()


async def test_an_unreachable_broker_is_bus_unavailable() -> None:
    bus = RabbitBus("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(BusUnavailable):
        await bus.connect()
    with pytest.raises(BusUnavailable):
        await bus.publish(event(), "in.X")


async def test_commands_are_settled_by_verdict_and_rejected_ones_dead_lettered(
    amqp: Any, topology: Topology
) -> None:
    bus = RabbitBus(AMQP_URL, topology)
    await bus.connect()
    requeued: set[str] = set()

    def verdict(command: Command) -> Verdict:
        if command.id == "bad":
            return Verdict.REJECT
        if command.id == "later" and "later" not in requeued:
            requeued.add("later")
            return Verdict.REQUEUE
        return Verdict.ACK

    handler = Recorder(decide=verdict)
    seen = handler.commands
    await bus.consume(handler)
    try:
        assert bus.health().consuming
        channel = await amqp.channel()
        commands = await channel.get_exchange(topology.commands_exchange)
        for name in ("good", "bad", "later"):
            await commands.publish(
                aio_pika.Message(
                    b"<x/>", message_id=name, headers={"cloudEvents_uftprecipient": "d.example"}
                ),
                routing_key="send",
            )
        dead = await channel.get_queue(topology.dead_letter_queue)
        for _ in range(100):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.05)
        assert sorted(c.id or "" for c in seen) == ["bad", "good", "later", "later"]
        assert seen[0].attributes["uftprecipient"] == "d.example"
        dead_letter = await next_message(dead)
        assert dead_letter.message_id == "bad"
        await dead_letter.ack()
        # A quorum queue: declaring it as a classic one is refused by the broker.
        other = await amqp.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await other.declare_queue(
                topology.commands_queue,
                durable=True,
                arguments={
                    "x-queue-type": "classic",
                    "x-delivery-limit": topology.delivery_limit,
                    "x-dead-letter-exchange": topology.dead_letter_exchange,
                },
            )
    finally:
        await bus.close()
    assert not bus.health().connected


async def test_a_command_above_the_body_limit_reaches_the_handler_malformed_and_bodiless(
    amqp: Any, topology: Topology
) -> None:
    """The port's limit on a command body (the bridge's ``max_body_bytes``) bounds what the
    consumer keeps: a command above it comes to the handler, which refuses it, without its
    body and saying why; its id and attributes are read."""
    bus = RabbitBus(AMQP_URL, topology, max_command_bytes=64)
    await bus.connect()
    handler = Recorder(decide=lambda command: Verdict.REJECT if command.malformed else Verdict.ACK)
    seen = handler.commands
    await bus.consume(handler)
    try:
        channel = await amqp.channel()
        commands = await channel.get_exchange(topology.commands_exchange)
        recipient = {"cloudEvents_uftprecipient": "d.example"}
        for name, size in (("big", 65), ("fits", 64)):
            await commands.publish(
                aio_pika.Message(b"x" * size, message_id=name, headers=recipient),
                routing_key="send",
            )
        await eventually(lambda: len(seen) == 2, timeout=10)
        big, fits = seen
        assert big.id == "big" and big.data == b"" and big.attributes["uftprecipient"]
        assert big.malformed == "the body exceeds 64 bytes"
        assert fits.malformed is None and fits.data == b"x" * 64
        dead = await channel.get_queue(topology.dead_letter_queue)
        dead_letter = await next_message(dead)
        assert dead_letter.message_id == "big" and dead_letter.body == b"x" * 65
        await dead_letter.ack()
    finally:
        await bus.close()


async def test_a_consumer_the_broker_cancelled_is_reported_and_registered_again(
    amqp: Any, topology: Topology
) -> None:
    """The commands queue deleted under the consumer: the broker cancels it (Basic.Cancel),
    `health` says so, and the adapter declares the queue again and consumes from it on a
    new commands connection."""
    bus = RabbitBus(AMQP_URL, topology, reconnect_interval=0.2)
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    try:
        assert bus.health().consuming
        channel = await amqp.channel()
        gone = asyncio.get_running_loop().create_future()

        def cancelled(*_: object) -> None:
            if not gone.done():
                gone.set_result(bus.health())

        consumer = bus._consumer
        assert consumer is not None
        consumer.stopped.add_done_callback(cancelled)
        await channel.queue_delete(topology.commands_queue, if_unused=False, if_empty=False)
        # At the cancellation, before anything was done about it: not consuming, and said so.
        health = await asyncio.wait_for(gone, 10)
        assert health.connected and not health.consuming
        assert health.detail == "connected, consumer not registered"
        await eventually(lambda: bus.health().consuming, timeout=10)
        assert consumer.cancelled and bus._consumer is not consumer
        assert bus.consumer_reopens == 1
        commands = await channel.get_exchange(topology.commands_exchange)
        await commands.publish(aio_pika.Message(b"<x/>", message_id="after"), routing_key="send")
        await eventually(lambda: bool(handler.commands), timeout=10)
        assert handler.ids == ["after"]
    finally:
        await bus.close()


async def test_a_cancelled_consumer_is_dropped_and_its_handlers_ended_by_close(
    amqp: Any, topology: Topology
) -> None:
    """The consumer the broker cancelled while a command was being carried out: its
    connection is dropped once it is replaced, the handler keeps running, and `close` ends
    it (it is not left running behind a closed port)."""
    bus = RabbitBus(AMQP_URL, topology, reconnect_interval=0.2)
    await bus.connect()
    started = asyncio.Event()
    ended: list[str] = []

    async def handler(command: Command) -> Verdict:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(command.id or "")
        return Verdict.ACK

    await bus.consume(handler)
    try:
        channel = await amqp.channel()
        commands = await channel.get_exchange(topology.commands_exchange)
        await commands.publish(aio_pika.Message(b"<x/>", message_id="held"), routing_key="send")
        await asyncio.wait_for(started.wait(), 10)
        old = bus._consumer
        assert old is not None
        await channel.queue_delete(topology.commands_queue, if_unused=False, if_empty=False)
        await eventually(lambda: bus.consumer_reopens == 1, timeout=10)
        await eventually(lambda: old._lost.done(), timeout=5)  # its connection is gone
        assert ended == []  # its handler still runs
        assert old in bus._retired
    finally:
        await bus.close()
    assert ended == ["held"]
    assert bus._retired == {}


async def test_a_retired_consumer_whose_close_is_not_answered_is_dropped_all_the_same(
    amqp: Any, topology: Topology
) -> None:
    """The broker cancelled the consumer, and the CloseOk to its Connection.Close never
    comes (here nothing the adapter writes on that connection reaches the broker any more):
    a moment later its socket is dropped all the same, not left open until the broker's
    heartbeat timeout, minutes later. The new consumer is not disturbed."""
    proxy = Proxy(int(AMQP_URL.rsplit(":", 1)[-1].strip("/") or 5672))
    await proxy.start()
    bus = RabbitBus(f"amqp://guest:guest@127.0.0.1:{proxy.port}/", topology, reconnect_interval=0.2)
    await bus.connect()
    handler = Recorder()
    try:
        before = len(proxy.links)
        await bus.consume(handler)
        (commands_link,) = proxy.links[before:]  # the commands connection, its own
        old = bus._consumer
        assert old is not None
        commands_link.muted = True
        channel = await amqp.channel()
        await channel.queue_delete(topology.commands_queue, if_unused=False, if_empty=False)
        await eventually(lambda: bus.consumer_reopens == 1, timeout=10)
        await asyncio.wait_for(commands_link.client_closed.wait(), 5)  # 1 s for a CloseOk
        assert not commands_link.broker_closed.is_set()
        assert old._lost.done() and old not in bus._retired
        commands = await channel.get_exchange(topology.commands_exchange)
        await commands.publish(aio_pika.Message(b"<x/>", message_id="after"), routing_key="send")
        await eventually(lambda: bool(handler.commands), timeout=10)
        assert handler.ids == ["after"]
    finally:
        await bus.close()
        await proxy.cut()


async def test_a_queue_lost_while_the_broker_was_out_of_reach_is_declared_again(
    amqp: Any, topology: Topology
) -> None:
    """The commands queue gone while the adapter could not reach the broker (a node that came
    back without its data): no Basic.Cancel tells, and consuming it again is refused (404).
    The adapter declares the queue again and consumes from it."""
    proxy = Proxy()
    await proxy.start()
    bus = RabbitBus(f"amqp://guest:guest@127.0.0.1:{proxy.port}/", topology, reconnect_interval=0.2)
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    try:
        assert bus.health().consuming
        await proxy.cut()
        await eventually(lambda: not bus.health().consuming, timeout=10)
        channel = await amqp.channel()
        await channel.queue_delete(topology.commands_queue, if_unused=False, if_empty=False)
        await proxy.restore()
        await eventually(lambda: bus.health().consuming, timeout=15)
        assert bus.consumer_reopens == 1
        commands = await channel.get_exchange(topology.commands_exchange)
        await commands.publish(aio_pika.Message(b"<x/>", message_id="after"), routing_key="send")
        await eventually(lambda: bool(handler.commands), timeout=10)
        assert handler.ids == ["after"]
    finally:
        await bus.close()
        await proxy.cut()


def test_event_headers_are_encoded_as_pamqp_encodes_them() -> None:
    headers, _ = to_amqp(event())
    tables: list[dict[str, object]] = [
        {**headers, "cloudEvents_correlationid": "conv-\u20ac\U0001f600", "cloudEvents_x": ""},
        {},
    ]
    for table in tables:
        assert string_table(table) == pamqp.encode.field_table(table)
    # Anything else goes through pamqp's own encoder.
    assert string_table({"count": 1}) is None
    assert string_table({"n" * 129: "long name"}) is None


def journal_event() -> CloudEvent:
    """An event as the journal builds it and the relay is handed it (some of its values were
    given as `Role`s)."""
    record = cro_journal().inbound(dso_test_message(), b"<TestMessage/>", sender_role=Role.DSO)
    return CloudEvent.from_attributes(record.attributes, record.data)


def test_the_headers_of_a_journal_event_take_the_plain_string_encoder() -> None:
    headers, _ = to_amqp(journal_event())
    assert headers["cloudEvents_uftpsenderrole"] == "DSO"
    assert all(type(value) is str for value in headers.values())
    assert string_table(headers) == pamqp.encode.field_table(headers)
