"""The broker side of the bridge tests, on RabbitMQ or on NATS JetStream, behind one face:
the [bus] table of a participant with names of its own, a sink of the events it publishes,
a producer of commands, and the dead letters. A test written against `BrokerSide` runs on
both brokers (the `bus_broker` fixture of conftest), which is how the bridge is shown to
keep one contract on either.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Protocol

import aio_pika
import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from adapter.bus.bridge import BusBridge, bus_for
from adapter.bus.events import XML_CONTENT_TYPE, CloudEvent, from_amqp, from_nats
from adapter.bus.nats import MSG_ID, NatsBus
from adapter.bus.operator import nats_filter
from adapter.bus.rabbitmq import Topology
from adapter.config import Config
from tests.bus.tools import EventSink
from tests.test_config import parse, valid


class BrokerSide(Protocol):
    """What a test drives of the broker, whichever it is."""

    #: "rabbitmq" or "nats".
    kind: str
    #: The broker's URL, as a [bus] table names it.
    url: str

    def bus_table(self) -> dict[str, Any]:
        """The [bus] table of a participant on this broker, with this test's names."""

    async def sink(self, pattern: str = "#") -> EventSink:
        """Every event published under the routing-key `pattern` (AMQP topic syntax) from now
        on, deduplicated by event id."""

    async def send_command(
        self, command_id: str, body: bytes, *, transport_id: str | None = None, **attributes: str
    ) -> None:
        """Put a command on the bus: `attributes` as CloudEvents attributes, ``id`` =
        `command_id`, the transport's own message id `transport_id` (a new one if None), so
        that two publications of one command are two messages to the broker."""

    async def dead_letters(self) -> list[str]:
        """The command ids of the dead letters that arrived since the last call."""

    async def cleanup(self) -> None: ...


def config(side: BrokerSide, *, answered: tuple[str, ...] = (), **changes: Any) -> Config:
    """A configuration whose [bus] table is that of `side` (with `changes`) and whose
    [handlers] bus lists `answered`, parsed and checked as a file is."""
    tables: dict[str, Any] = {"bus": {**side.bus_table(), **changes}}
    if answered:
        tables["handlers"] = {"bus": list(answered)}
    return parse({**valid(), **tables})


def bridge(side: BrokerSide, *, answered: tuple[str, ...] = (), **changes: Any) -> BusBridge:
    """The bridge `serve` builds from such a configuration (`BusBridge.from_config`), only
    quicker to retry."""
    configured = config(side, answered=answered, **changes)
    settings = configured.bus
    assert settings is not None
    return BusBridge(
        bus_for(settings, name=f"test {uuid.uuid4().hex[:8]}"),
        answered=configured.handlers.bus,
        answer_within_seconds=settings.answer_within_seconds,
        consume=settings.commands,
        relay_poll_seconds=0.05,
        relay_backoff_max_seconds=0.5,
    )


class RabbitSide:
    """Exchanges and queues of this test alone on the shared RabbitMQ, deleted afterwards."""

    kind = "rabbitmq"

    def __init__(self, url: str, connection: Any) -> None:
        prefix = f"test.{uuid.uuid4().hex[:10]}"
        self.url = url
        self.connection = connection
        self.topology = Topology(
            events_exchange=f"{prefix}.events",
            commands_exchange=f"{prefix}.commands",
            commands_queue=f"{prefix}.commands",
            dead_letter_exchange=f"{prefix}.dead",
            dead_letter_queue=f"{prefix}.dead",
            delivery_limit=3,
            prefetch=8,
        )

    def bus_table(self) -> dict[str, Any]:
        t = self.topology
        return {
            "url": self.url,
            "exchange": t.events_exchange,
            "commands_exchange": t.commands_exchange,
            "commands_queue": t.commands_queue,
            "dead_letter_exchange": t.dead_letter_exchange,
            "dead_letter_queue": t.dead_letter_queue,
            "delivery_limit": t.delivery_limit,
            "prefetch": t.prefetch,
        }

    async def sink(self, pattern: str = "#") -> EventSink:
        return await EventSink.bind(self.connection, self.topology.events_exchange, pattern)

    async def send_command(
        self, command_id: str, body: bytes, *, transport_id: str | None = None, **attributes: str
    ) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            self.topology.commands_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        headers = {f"cloudEvents_{k}": v for k, v in {"id": command_id, **attributes}.items()}
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=transport_id or str(uuid.uuid4()),
                content_type=XML_CONTENT_TYPE,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="send",
        )
        await channel.close()

    async def dead_letters(self) -> list[str]:
        channel = await self.connection.channel()
        queue = await channel.declare_queue(
            self.topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        ids = []
        while (message := await queue.get(fail=False)) is not None:
            ids.append(from_amqp(message.headers or {}, message.content_type).get("id", ""))
            await message.ack()
        await channel.close()
        return ids

    async def cleanup(self) -> None:
        t = self.topology
        channel = await self.connection.channel()
        for queue in (t.commands_queue, t.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (t.events_exchange, t.commands_exchange, t.dead_letter_exchange):
            await channel.exchange_delete(exchange)
        await channel.close()


class NatsSide:
    """Streams and subjects of this test alone on the shared NATS server, deleted afterwards.
    The streams are declared as the adapter declares them, so that a sink may start first."""

    kind = "nats"

    def __init__(self, url: str, client: Client) -> None:
        token = uuid.uuid4().hex[:10]
        self.url = url
        self.client = client
        self.js = client.jetstream(timeout=10)
        self.names = {
            "exchange": f"t{token}.events",
            "commands_exchange": f"t{token}.commands",
            "dead_letter_exchange": f"t{token}.dead",
            "stream": f"T{token}_UFTP",
            "commands_stream": f"T{token}_COMMANDS",
            "dead_stream": f"T{token}_DEAD",
        }
        self._subscriptions: list[Any] = []
        self._dead_seen = 0

    def bus_table(self) -> dict[str, Any]:
        return {"url": self.url, "delivery_limit": 3, "prefetch": 8, **self.names}

    async def declare(self) -> None:
        settings = config(self).bus
        assert settings is not None
        bus = bus_for(settings)
        assert isinstance(bus, NatsBus)
        await bus.connect()
        await bus.close()

    async def sink(self, pattern: str = "#") -> EventSink:
        sink = EventSink()
        prefix = self.names["exchange"] + "."

        async def on_message(message: Msg) -> None:
            attributes = from_nats(message.headers or {})
            event = CloudEvent.from_attributes(attributes, message.data)
            sink.add(message.subject.removeprefix(prefix), event)

        self._subscriptions.append(
            await self.js.subscribe(
                nats_filter(self.names["exchange"], pattern),
                stream=self.names["stream"],
                cb=on_message,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        )
        return sink

    async def send_command(
        self, command_id: str, body: bytes, *, transport_id: str | None = None, **attributes: str
    ) -> None:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": command_id,
            "ce-source": "urn:test:planner",
            "ce-datacontenttype": "text/xml;%20charset=utf-8",
            **{f"ce-{k}": v for k, v in attributes.items()},
            MSG_ID: transport_id or str(uuid.uuid4()),
        }
        await self.js.publish(f"{self.names['commands_exchange']}.send", body, headers=headers)

    async def dead_letters(self) -> list[str]:
        stream = self.names["dead_stream"]
        info = await self.js.stream_info(stream)
        ids = []
        for sequence in range(
            max(info.state.first_seq, self._dead_seen + 1), info.state.last_seq + 1
        ):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                letter = await self.js.get_msg(stream, sequence)
                ids.append(from_nats(letter.headers or {}).get("id", ""))
            self._dead_seen = sequence
        return ids

    async def cleanup(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for key in ("stream", "commands_stream", "dead_stream"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(self.names[key])
