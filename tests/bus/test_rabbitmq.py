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
from tests.bus.conftest import AMQP_URL


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
    seen: list[Command] = []
    requeued: set[str] = set()

    async def handler(command: Command) -> Verdict:
        seen.append(command)
        if command.id == "bad":
            return Verdict.REJECT
        if command.id == "later" and "later" not in requeued:
            requeued.add("later")
            return Verdict.REQUEUE
        return Verdict.ACK

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
        dead_letter = await dead.get(timeout=5)
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
