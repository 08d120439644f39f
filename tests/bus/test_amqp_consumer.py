"""The commands' own AMQP consumer (`adapter.bus.amqp.CommandConsumer`): its settlements are
pamqp's frames byte for byte and it reads properties as pamqp reads them; against the real
broker it reads deliveries however the network splits them, hands over those that came with
its ConsumeOk, leaves what it did not settle to be delivered again, dead-letters a delivery
whose properties do not decode, and drops the connection on a frame it must not accept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pamqp.frame
import pytest
from pamqp import body as pamqp_body
from pamqp import commands as spec
from pamqp import header as pamqp_header

from adapter.bus.amqp import (
    MAX_BODY,
    CommandConsumer,
    ConfirmPublisher,
    Delivery,
    decode_properties,
    settlement,
)
from adapter.bus.port import Verdict
from tests.bus.conftest import AMQP_URL
from tests.conftest import eventually

# -- the encoding ----------------------------------------------------------------------------


def test_settlements_are_encoded_as_pamqp_encodes_them() -> None:
    for tag in (1, 255, 2**40 + 3, 2**63 - 1):  # pamqp encodes no larger tag
        assert settlement(Verdict.ACK, tag) == pamqp.frame.marshal(
            spec.Basic.Ack(delivery_tag=tag), 1
        )
        assert settlement(Verdict.REJECT, tag) == pamqp.frame.marshal(
            spec.Basic.Reject(delivery_tag=tag, requeue=False), 1
        )
        assert settlement(Verdict.REQUEUE, tag) == pamqp.frame.marshal(
            spec.Basic.Nack(delivery_tag=tag, requeue=True), 1
        )


def content_header(properties: spec.Basic.Properties) -> bytes:
    """The payload of a content header frame as pamqp marshals it."""
    frame = pamqp.frame.marshal(pamqp_header.ContentHeader(0, 10, properties), 1)
    return frame[7:-1]


async def dead_lettered(amqp: Any, queue: str) -> bool:
    return await count(amqp, f"{queue}.dead") == 1


def test_properties_are_decoded_as_pamqp_decodes_them() -> None:
    headers = {"cloudEvents_id": "c-\u20ac", "cloudEvents_uftprecipient": "d.example", "e": ""}
    every = {
        "content_type": "text/xml; charset=utf-8",
        "content_encoding": "identity",
        "headers": headers,
        "delivery_mode": 2,
        "priority": 7,
        "correlation_id": "corr",
        "reply_to": "back",
        "expiration": "60000",
        "message_id": "m-\U0001f600",
        "timestamp": datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        "message_type": "uftp.TestMessage",
        "user_id": "guest",
        "app_id": "an app",
    }
    cases: list[dict[str, Any]] = [
        {},
        every,
        {"message_id": "only"},
        {"headers": headers},
        {"headers": {}},
        {"content_type": "application/json", "priority": 1, "timestamp": every["timestamp"]},
        # Tables with other values: left to pamqp, to the same values.
        {"headers": {**headers, "count": 3, "ok": True, "n": {"a": "b"}, "x": [1, "y"]}},
        {"headers": {"when": every["timestamp"], "d": Decimal("1.5")}},
    ]
    for values in cases:
        frame = pamqp.frame.marshal(
            pamqp_header.ContentHeader(0, 10, spec.Basic.Properties(**values)), 1
        )
        _, _, theirs = pamqp.frame.unmarshal(frame)
        expected = theirs.properties
        ours = decode_properties(frame, 7 + 12, len(frame) - 1)
        assert ours == (expected.content_type, expected.message_id, expected.headers or {}), values
    # A long string that is not UTF-8 is kept as bytes, as pamqp keeps it.
    table = b"\x01kS\x00\x00\x00\x01\xff"
    flags = spec.Basic.Properties.flags["headers"]
    payload = flags.to_bytes(2, "big") + len(table).to_bytes(4, "big") + table
    frame = pamqp.frame.marshal(pamqp_header.ContentHeader(0, 10, spec.Basic.Properties()), 1)
    frame = frame[:3] + (12 + len(payload)).to_bytes(4, "big") + frame[7:19] + payload + b"\xce"
    _, _, theirs = pamqp.frame.unmarshal(frame)
    assert theirs.properties.headers == {"k": b"\xff"}
    assert decode_properties(payload, 0, len(payload)) == (None, None, {"k": b"\xff"})


def test_the_properties_kept_present_per_word_of_flags_are_each_messages_own() -> None:
    # `decode_properties` keeps which properties a word of flags says are present
    # (`_present`, 64 words): every combination of seven properties (128 words, more than
    # are kept), twice over, each with values of its own, decodes as pamqp decodes it.
    chosen = {
        "content_type": "text/xml; charset=utf-8",
        "headers": {"cloudEvents_uftprecipient": "d.example"},
        "delivery_mode": 2,
        "priority": 3,
        "message_id": "m-",
        "timestamp": datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        "app_id": "an app",
    }
    names = list(chosen)
    for round_ in range(2):
        for word in range(2 ** len(names)):
            values = {
                name: f"{value}{round_}.{word}" if isinstance(value, str) else value
                for bit, (name, value) in enumerate(chosen.items())
                if word & (1 << bit)
            }
            frame = pamqp.frame.marshal(
                pamqp_header.ContentHeader(0, 10, spec.Basic.Properties(**values)), 1
            )
            _, _, theirs = pamqp.frame.unmarshal(frame)
            expected = theirs.properties
            assert decode_properties(frame, 7 + 12, len(frame) - 1) == (
                expected.content_type,
                expected.message_id,
                expected.headers or {},
            ), values


def test_properties_that_do_not_decode_raise_value_error() -> None:
    good = content_header(spec.Basic.Properties(message_id="abc", headers={"k": "v"}))
    bad_utf8 = good.replace(b"abc", b"a\xffc")
    with pytest.raises(ValueError):
        decode_properties(bad_utf8, 12, len(bad_utf8))
    with pytest.raises(ValueError):  # the values run past the header's end
        decode_properties(good, 12, len(good) - 2)
    flags = spec.Basic.Properties.flags["message_id"] | 1  # a second word of flags
    with pytest.raises(ValueError):
        decode_properties(b"\x00" * 12 + flags.to_bytes(2, "big") + b"\x00\x00", 12, 16)
    # Tables nested as deep as a frame allows (6 octets a level), where pamqp recurses.
    table = b""
    for _ in range(20000):
        table = b"\x00F" + len(table).to_bytes(4, "big") + table
    flags = spec.Basic.Properties.flags["headers"]
    deep = flags.to_bytes(2, "big") + len(table).to_bytes(4, "big") + table
    with pytest.raises(ValueError, match="nested"):
        decode_properties(deep, 0, len(deep))


# -- against the broker ----------------------------------------------------------------------


@pytest.fixture
async def queue(amqp: Any) -> AsyncIterator[str]:
    """A commands queue of this test alone, dead-lettering to ``<name>.dead``."""
    name = f"test.consumer.{uuid.uuid4().hex[:10]}"
    channel = await amqp.channel()
    await channel.declare_queue(f"{name}.dead")
    await channel.declare_queue(
        name,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dead"},
    )
    try:
        yield name
    finally:
        for queue_name in (name, f"{name}.dead"):
            await channel.queue_delete(queue_name)
        await channel.close()


async def publish(amqp: Any, queue: str, body: bytes, **properties: Any) -> None:
    channel = await amqp.channel(publisher_confirms=True)
    await channel.default_exchange.publish(aio_pika.Message(body, **properties), routing_key=queue)
    await channel.close()


async def count(amqp: Any, queue: str) -> int:
    channel = await amqp.channel()
    declared = await channel.declare_queue(queue, passive=True)
    await channel.close()
    return int(declared.declaration_result.message_count)


class Handler:
    """Keeps what it is handed and answers `verdict`, or waits for `release` first."""

    def __init__(self, verdict: Verdict = Verdict.ACK, hold: bool = False) -> None:
        self.verdict = verdict
        self.deliveries: list[Delivery] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, delivery: Delivery) -> Verdict:
        self.deliveries.append(delivery)
        await self.release.wait()
        return self.verdict


async def open_consumer(queue: str, handler: Handler, prefetch: int = 16) -> CommandConsumer:
    return await CommandConsumer.open(
        AMQP_URL,
        queue,
        handler,
        prefetch=prefetch,
        consumer_tag=f"test.{uuid.uuid4().hex}",
        name=f"test {queue}",
    )


async def test_deliveries_split_anywhere_by_the_network_are_read_whole(
    amqp: Any, queue: str
) -> None:
    """What the broker sends, handed to the reader one octet at a time (as TCP may split
    it), with bodies of no frame, one and several frames: each delivery is read whole, with
    its properties, and acknowledged."""
    handler = Handler()
    consumer = await open_consumer(queue, handler)
    whole = consumer.data_received

    def in_octets(data: bytes) -> None:
        for n in range(len(data)):
            whole(data[n : n + 1])

    consumer.data_received = in_octets  # type: ignore[method-assign]
    bodies = [b"", b"<TestMessage/>", bytes(range(256)) * 1100]  # the last: 3 frames
    assert len(bodies[-1]) > 2 * consumer.frame_max
    try:
        for n, body in enumerate(bodies):
            await publish(
                amqp,
                queue,
                body,
                message_id=f"m-{n}",
                content_type="text/xml; charset=utf-8",
                headers={"cloudEvents_uftprecipient": "d.example", "n": n},
            )
        await eventually(lambda: len(handler.deliveries) == len(bodies), timeout=10)
        for n, (delivery, body) in enumerate(zip(handler.deliveries, bodies, strict=True)):
            assert delivery.body == body
            assert delivery.message_id == f"m-{n}"
            assert delivery.content_type == "text/xml; charset=utf-8"
            assert delivery.headers == {"cloudEvents_uftprecipient": "d.example", "n": n}
            assert not delivery.redelivered
        assert consumer.consuming
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0  # every one acknowledged


async def test_deliveries_that_come_with_the_consume_ok_are_handled(amqp: Any, queue: str) -> None:
    """Commands waiting in the queue arrive right behind Basic.ConsumeOk, while the consumer
    is still opening: each is handled and settled like any other."""
    for n in range(20):
        await publish(amqp, queue, b"%d" % n, message_id=f"m-{n}")
    handler = Handler()
    consumer = await open_consumer(queue, handler, prefetch=20)
    try:
        await eventually(lambda: len(handler.deliveries) == 20, timeout=10)
        await asyncio.sleep(0.2)
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0


async def test_what_is_not_settled_when_the_connection_ends_is_delivered_again(
    amqp: Any, queue: str
) -> None:
    handler = Handler(hold=True)
    consumer = await open_consumer(queue, handler)
    await publish(amqp, queue, b"one", message_id="m-1")
    await eventually(lambda: len(handler.deliveries) == 1, timeout=10)
    consumer.abort()  # the connection lost while the command is being carried out
    assert not consumer.consuming
    assert "aborted" in await asyncio.wait_for(consumer.stopped, 5)
    handler.release.set()  # its verdict comes too late: nothing is written
    await asyncio.sleep(0.1)
    again = Handler()
    consumer = await open_consumer(queue, again)
    try:
        await eventually(lambda: len(again.deliveries) == 1, timeout=10)
        assert again.deliveries[0].message_id == "m-1"
        assert again.deliveries[0].redelivered
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0


async def test_verdicts_settle_by_reject_to_the_dead_letters_and_by_requeue(
    amqp: Any, queue: str
) -> None:
    handler = Handler(Verdict.REQUEUE)
    consumer = await open_consumer(queue, handler)
    try:
        await publish(amqp, queue, b"again", message_id="m-1")
        await eventually(lambda: len(handler.deliveries) >= 2, timeout=10)
        assert handler.deliveries[1].redelivered
        handler.verdict = Verdict.REJECT
        await eventually(lambda: dead_lettered(amqp, queue), timeout=10)
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0


async def test_a_delivery_whose_properties_do_not_decode_is_handed_over_malformed(
    amqp: Any, queue: str
) -> None:
    """A message id that is not UTF-8 (the broker passes it on as it came): handed to the
    handler marked malformed (to be refused), settled by its verdict; the connection
    stays."""
    publisher = await ConfirmPublisher.open(AMQP_URL, "", name="test bad properties", timeout=5)
    good = spec.Basic.Properties(message_id="ab").marshal()
    try:
        await publisher.publish(queue, good.replace(b"ab", b"\xff\xfe"), b"<x/>", "bad")
        await publisher.publish(queue, good, b"<y/>", "ab")
    finally:
        await publisher.close()
    handler = Handler(Verdict.REJECT)
    consumer = await open_consumer(queue, handler)
    try:
        await eventually(lambda: len(handler.deliveries) == 2, timeout=10)
        bad, fine = handler.deliveries
        assert bad.malformed is not None and "undecodable properties" in bad.malformed
        assert bad.message_id is None
        assert fine.malformed is None and fine.body == b"<y/>" and fine.message_id == "ab"
        await eventually(lambda: count(amqp, f"{queue}.dead"), timeout=10)
        assert consumer.consuming
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0


async def test_a_body_above_the_limit_is_not_kept(amqp: Any, queue: str) -> None:
    """A body of three frames above the consumer's limit: its frames are read and not
    kept, the delivery handed over marked malformed with its properties; one at the limit is
    kept whole; the connection stays."""
    limit = 1000
    await publish(amqp, queue, b"x" * 300_000, message_id="big")
    await publish(amqp, queue, b"y" * limit, message_id="fits")
    handler = Handler(Verdict.REJECT)
    consumer = await CommandConsumer.open(
        AMQP_URL,
        queue,
        handler,
        prefetch=4,
        consumer_tag=f"test.{uuid.uuid4().hex}",
        name=f"test {queue}",
        max_body=limit,
    )
    try:
        await eventually(lambda: len(handler.deliveries) == 2, timeout=10)
        big, fits = handler.deliveries
        assert big.message_id == "big" and big.body == b""
        assert big.malformed == f"the body exceeds {limit} bytes"
        assert fits.malformed is None and fits.body == b"y" * limit
        assert consumer.consuming
    finally:
        await consumer.close()


async def test_frames_the_consumer_must_not_accept_drop_its_connection(queue: str) -> None:
    """A frame beyond the agreed size (its header and end octet counted), content without a
    delivery, a body larger than any RabbitMQ sends: read no further, and say it no longer
    consumes."""
    header = spec.Basic.Deliver(consumer_tag="t", delivery_tag=1, exchange="", routing_key="q")
    deliver = pamqp.frame.marshal(header, 1)
    huge = pamqp.frame.marshal(
        pamqp_header.ContentHeader(0, MAX_BODY + 1, spec.Basic.Properties()), 1
    )
    for frames in (
        b"\x01\x00\x01" + (131072 + 1).to_bytes(4, "big"),
        # frame_max counts the frame's 8 octets of header and end too (4.2.3): 1 too many.
        b"\x01\x00\x01" + (131072 - 7).to_bytes(4, "big"),
        b"\x03\x00\x01\x00\x00\x00\x01x\xce",
        deliver + huge,
        deliver + deliver,
    ):
        handler = Handler()
        consumer = await open_consumer(queue, handler)
        try:
            consumer.data_received(frames)
            assert not consumer.consuming, frames
            assert consumer.stopped.done()
        finally:
            await consumer.close()
        assert handler.deliveries == []


async def test_nothing_after_the_brokers_connection_close_is_handled(queue: str) -> None:
    """A delivery read in the same segment behind the broker's Connection.Close is for a
    connection that is gone: it is not carried out (its ack could never be written)."""
    handler = Handler()
    consumer = await open_consumer(queue, handler)
    close = spec.Connection.Close(
        reply_code=320, reply_text="CONNECTION_FORCED", class_id=0, method_id=0
    )
    deliver = spec.Basic.Deliver(
        consumer_tag=consumer.consumer_tag, delivery_tag=1, exchange="", routing_key=queue
    )
    content = pamqp_header.ContentHeader(0, 4, spec.Basic.Properties(message_id="late"))
    frames = b"".join(
        (
            pamqp.frame.marshal(close, 0),
            pamqp.frame.marshal(deliver, 1),
            pamqp.frame.marshal(content, 1),
            pamqp.frame.marshal(pamqp_body.ContentBody(b"<x/>"), 1),
        )
    )
    try:
        consumer.data_received(frames)
        assert not consumer.consuming
        assert "320" in await asyncio.wait_for(consumer.stopped, 5)
        await asyncio.sleep(0.1)
        assert handler.deliveries == []
    finally:
        await consumer.close()


def delivery_frames(consumer: CommandConsumer, tag: int, queue: str) -> bytes:
    """A delivery of 4 octets with tag `tag`, as the broker would send it to `consumer`."""
    deliver = spec.Basic.Deliver(
        consumer_tag=consumer.consumer_tag, delivery_tag=tag, exchange="", routing_key=queue
    )
    content = pamqp_header.ContentHeader(0, 4, spec.Basic.Properties(message_id=f"m-{tag}"))
    return b"".join(
        (
            pamqp.frame.marshal(deliver, 1),
            pamqp.frame.marshal(content, 1),
            pamqp.frame.marshal(pamqp_body.ContentBody(b"<x/>"), 1),
        )
    )


async def test_a_delivery_beyond_the_prefetch_drops_the_connection(amqp: Any, queue: str) -> None:
    """The broker sends no more unsettled deliveries than the prefetch (Basic.Qos): one more
    is a broken peer, which would make us run handlers without bound. The connection is
    dropped (what it delivered comes again); the one within the prefetch was handed over."""
    handler = Handler(hold=True)
    consumer = await open_consumer(queue, handler, prefetch=1)
    try:
        consumer.data_received(delivery_frames(consumer, 1, queue))
        await eventually(lambda: len(handler.deliveries) == 1)
        assert consumer.consuming
        consumer.data_received(delivery_frames(consumer, 2, queue))
        assert not consumer.consuming
        await asyncio.sleep(0.1)
        assert [d.delivery_tag for d in handler.deliveries] == [1]
    finally:
        handler.release.set()
        await consumer.close()
    # From the broker, each delivered once the one before is settled: all within it.
    for n in range(5):
        await publish(amqp, queue, b"%d" % n, message_id=f"m-{n}")
    handler = Handler()
    consumer = await open_consumer(queue, handler, prefetch=1)
    try:
        await eventually(lambda: len(handler.deliveries) == 5, timeout=10)
        assert consumer.consuming
    finally:
        await consumer.close()
    assert await count(amqp, queue) == 0


async def test_nothing_delivered_after_the_brokers_cancel_or_our_close_is_handled(
    queue: str,
) -> None:
    """A delivery read behind the broker's Basic.Cancel, or while `close` waits for the
    broker's CloseOk, is for a consumer that no longer settles: it is not carried out (the
    broker delivers it again), and no handler is left running after `close`."""

    handler = Handler()
    consumer = await open_consumer(queue, handler)
    cancel = spec.Basic.Cancel(consumer_tag=consumer.consumer_tag)
    try:
        consumer.data_received(pamqp.frame.marshal(cancel, 1) + delivery_frames(consumer, 1, queue))
        assert consumer.cancelled
        assert not consumer.consuming
        await asyncio.sleep(0.1)
        assert handler.deliveries == []
    finally:
        await consumer.close()

    handler = Handler()
    consumer = await open_consumer(queue, handler)
    closing = asyncio.create_task(consumer.close())
    await asyncio.sleep(0)  # close() has begun, its CloseOk not read yet
    consumer.data_received(delivery_frames(consumer, 1, queue))
    await closing
    await asyncio.sleep(0.1)
    assert handler.deliveries == []
