"""The bus port on RabbitMQ, through aio-pika (the ``rabbitmq`` extra).

Topology (the documented defaults, declared on connect, idempotently):

* events: a durable topic exchange (``uftp.events``); every event is published to it
  persistent, ``mandatory``, on a channel with publisher confirms, so `publish` returns once
  the broker has the event in every queue it routes to, and raises `Unroutable` when it came
  back for want of a binding;
* commands: a durable topic exchange (``uftp.commands``) and, bound to it with ``#``, a quorum
  queue (``uftp.commands``) with ``x-delivery-limit`` and the dead-letter exchange
  (``uftp.dead``, topic) whose queue ``uftp.dead`` collects rejected commands and those
  redelivered too often.

The connection is aio-pika's robust one: after a loss it reconnects, reopens the channels and
declares and binds the queues again. The command consumer is the adapter's own, on aiormq's
channel underneath (`RabbitBus._register` says why): the adapter registers it again after a
reopened channel or a cancellation by the broker. Whether it really is registered is checked,
not assumed (`health`): only a consumer the broker confirmed on the channel open now counts,
and `/health` shows one that is not.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage

from adapter.bus.events import CloudEvent, from_amqp, to_amqp
from adapter.bus.port import BusHealth, BusUnavailable, Command, CommandHandler, Unroutable, Verdict

__all__ = ["RabbitBus", "Topology"]

log = logging.getLogger(__name__)

#: AMQP delivery mode 2: the broker writes the message to disk (a durable queue keeps it).
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


_UINT32 = struct.Struct(">I").pack


def string_table(table: Mapping[str, object]) -> bytes | None:
    """`table` as an AMQP field table, byte for byte as pamqp encodes it (keys sorted, each
    a short string, each value a long string ``S``), when every value is a string and every
    key short enough to go as it is; else None. pamqp's general encoder, with its type tests
    and calls per value, took about as long as the rest of a publication's encoding (43 µs
    against 24 µs with this, for an event's 13 headers); the CloudEvents headers are all
    strings."""
    parts = []
    for key, value in sorted(table.items()):
        if type(value) is not str:
            return None
        name = key.encode("utf-8")
        if len(name) > 128:  # pamqp truncates such a name (with a warning): let it
            return None
        encoded = value.encode("utf-8")
        parts.append(b"%c%bS%b%b" % (len(name), name, _UINT32(len(encoded)), encoded))
    body = b"".join(parts)
    return _UINT32(len(body)) + body


_UINT16 = struct.Struct(">H").pack
_UINT64 = struct.Struct(">Q").pack


class _EventProperties(aiormq.spec.Basic.Properties):
    """The properties of an event, encoded here rather than by pamqp's per-value encoders
    (type look-up, type test and call for each property, then the same for each header):
    the same bytes (a test compares them), for the value types an event's properties have;
    anything else goes to pamqp's encoder."""

    def marshal(self) -> bytes:
        encoded = _properties(self)
        return encoded if encoded is not None else super().marshal()


#: The properties whose AMQP type is ``shortstr``.
_SHORT_STRINGS = frozenset(
    name
    for name in aiormq.spec.Basic.Properties.__slots__
    if getattr(aiormq.spec.Basic.Properties, f"_{name}") == "shortstr"
)


def _properties(properties: aiormq.spec.Basic.Properties) -> bytes | None:
    """`properties` as pamqp's `marshal` encodes them (the flags, then each property set,
    in the order of the flags), or None when one is of a type left to pamqp."""
    flags = 0
    parts: list[bytes] = []
    for name in properties.__slots__:
        value = getattr(properties, name)
        if value is None or value == "":  # pamqp's test for a property that is not set
            continue
        flags |= properties.flags[name]
        kind = type(value)
        if name == "headers":
            table = string_table(value) if kind is dict else None
            if table is None:
                return None
            parts.append(table)
        elif kind is str and name in _SHORT_STRINGS:
            encoded = value.encode("utf-8")
            if len(encoded) > 255:
                return None  # pamqp refuses it: let it say so
            parts.append(b"%c%b" % (len(encoded), encoded))
        elif kind is int and name in ("delivery_mode", "priority") and 0 <= value <= 255:
            parts.append(b"%c" % value)
        elif kind is datetime and name == "timestamp" and value.utcoffset() is not None:
            parts.append(_UINT64(int(value.timestamp())))
        else:
            return None
    return _UINT16(flags) + b"".join(parts)


@dataclass(frozen=True, slots=True)
class Topology:
    """The names and limits of what the adapter declares on the broker."""

    events_exchange: str = "uftp.events"
    commands_exchange: str = "uftp.commands"
    commands_queue: str = "uftp.commands"
    dead_letter_exchange: str = "uftp.dead"
    dead_letter_queue: str = "uftp.dead"
    delivery_limit: int = 5
    prefetch: int = 16


def redact(url: str) -> str:
    """`url` without its password, for logs."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


#: What a lost connection or channel raises in aio-pika/aiormq (besides OSError).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    TimeoutError,
    RuntimeError,  # aio-pika: "Connection closed", "Channel closed"
    aiormq.exceptions.AMQPError,
)


class RabbitBus:
    """The `Bus` port on one RabbitMQ connection: a confirming channel for events, another
    for the consumer."""

    def __init__(
        self,
        url: str,
        topology: Topology | None = None,
        *,
        name: str = "uftp-adapter",
        publish_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
    ) -> None:
        self._url = url
        self.topology = topology or Topology()
        self._name = name
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consumer_channel: AbstractRobustChannel | None = None
        self._consumer_tag: str | None = None
        self._handler: CommandHandler | None = None
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        #: The channel (aiormq's) the broker confirmed our consumer on.
        self._registered_on: aiormq.abc.AbstractChannel | None = None
        #: Times the robust connection came back after a loss.
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"RabbitBus({redact(self._url)!r})"

    async def connect(self) -> None:
        try:
            connection = await aio_pika.connect_robust(
                self._url,
                client_properties={"connection_name": self._name},
                reconnect_interval=self._reconnect_interval,
                timeout=10,
            )
        except _CONNECTION_ERRORS as exc:
            raise BusUnavailable(f"cannot connect to {redact(self._url)}: {exc}") from None
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.declare_exchange(
                self.topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel = connection, channel
        connection.reconnect_callbacks.add(self._on_reconnect)
        log.info("bus: connected to %s", redact(self._url))

    def _on_reconnect(self, *_: object) -> None:
        self.reconnects += 1
        log.info("bus: reconnected to %s (%d)", redact(self._url), self.reconnects)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._handler = None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if connection is not None:
            await connection.close()
        self._channel = self._consumer_channel = None
        self._consumer_tag = None
        self._registered_on = None

    async def publish(self, event: CloudEvent, route: str) -> None:
        channel = self._channel
        if channel is None or self._connection is None:
            raise BusUnavailable("not connected")
        headers, content_type = to_amqp(event)
        # Straight to the channel's protocol layer (aiormq), as aio-pika's Exchange.publish
        # would after building a Message of its own: the properties are built once, here.
        # The publish is mandatory on a confirming channel: it returns with the broker's ack.
        properties = _EventProperties(
            headers=dict(headers),
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=event.id,
            timestamp=event.time,
            message_type=event.type,
            app_id=self._name,
        )
        try:
            # Raises while the robust connection has no channel open (it is reconnecting).
            # (aiormq's Channel: its abstract base does not declare `wait`.)
            raw = cast(aiormq.Channel, await channel.get_underlay_channel())
            confirm = await raw.basic_publish(
                event.data,
                exchange=self.topology.events_exchange,
                routing_key=route,
                properties=properties,
                mandatory=True,
                timeout=self._publish_timeout,
                # Return on the broker's confirm, without first waiting for aiormq's writer
                # to drain the socket: one hand-over between tasks less per event. What is
                # in flight is bounded by the relay (one event per conversation at a time,
                # at most a batch of them), and all of it is in memory anyway.
                wait=False,
            )
        except aiormq.exceptions.PublishError as exc:  # Basic.Return: mandatory, no route
            raise Unroutable(route, str(getattr(exc.frame, "reply_text", ""))) from None
        except aiormq.exceptions.DeliveryError as exc:  # Basic.Nack: the broker failed
            raise BusUnavailable(f"the broker refused {route}: {exc}") from None
        except _CONNECTION_ERRORS as exc:
            raise BusUnavailable(f"publishing {route}: {type(exc).__name__}: {exc}") from None
        if not isinstance(confirm, aiormq.spec.Basic.Ack):
            # A confirming channel answers every publish with an ack, a nack (raised above)
            # or a return (raised above): anything else is not a confirm.
            raise BusUnavailable(f"publishing {route}: no confirm from the broker ({confirm!r})")

    async def consume(self, handler: CommandHandler) -> None:
        if self._connection is None:
            raise BusUnavailable("not connected")
        t = self.topology
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=t.prefetch)
        dead = await channel.declare_exchange(
            t.dead_letter_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead_queue = await channel.declare_queue(
            t.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead, "#")
        commands = await channel.declare_exchange(
            t.commands_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            t.commands_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": t.delivery_limit,
                "x-dead-letter-exchange": t.dead_letter_exchange,
            },
        )
        await queue.bind(commands, "#")
        self._handler = handler
        self._consumer_channel = channel
        await self._register()
        channel.reopen_callbacks.add(self._on_reopen)
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep_consuming(), name="bus-consumer"
        )
        log.info("bus: consuming commands from %s", t.commands_queue)

    async def _register(self) -> None:
        """Register our consumer on the channel open now, unless it is there already.

        On aiormq's channel itself, not through aio-pika's queue: aio-pika wraps each
        delivery in an IncomingMessage (a dozen attribute writes through a locking
        __setattr__) and hands it to the callback in a second task, which was a fifth of a
        command's intake. Its robust channel still restores the queue, its bindings and the
        prefetch after a reconnection; re-registering the consumer is ours (`_keep_consuming`).
        """
        channel = self._consumer_channel
        if channel is None:
            return
        # Once aio-pika has restored the channel: it opens the new one first and declares
        # and binds the queue on it after; a consumer before the binding hears nothing.
        await channel.ready()
        raw = cast(aiormq.Channel, await channel.get_underlay_channel())
        if raw is self._registered_on and self._consumer_tag in raw.consumers:
            return
        raw.on_consumer_cancel_callbacks.add(self._on_cancelled)
        self._registered_on = None
        # A new tag each time: one that an attempt cut short left behind can never clash.
        tag = self._consumer_tag = f"uftp-adapter.{uuid.uuid4().hex}"
        await raw.basic_consume(
            self.topology.commands_queue, self._on_delivery, no_ack=False, consumer_tag=tag
        )
        # Only now, with the broker's ConsumeOk: aiormq lists the tag as soon as it asks.
        self._registered_on = raw

    def _on_reopen(self, *_: object) -> None:
        self._wake.set()

    def _on_cancelled(self, frame: aiormq.spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self._consumer_tag:
            self._registered_on = None  # gone: aiormq forgets the tag, and so does `health`
            self._wake.set()

    async def _keep_consuming(self) -> None:
        """Register the consumer again whenever it is gone from the channel open now: after
        aio-pika reopened the channel (a reconnection) or the broker cancelled it (its queue
        deleted), trying again until it is back; `health` says meanwhile that it is not."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._register()
            except Exception as exc:  # whatever it was, giving up would leave us deaf
                log.warning("bus: could not consume commands again (%r); retrying", exc)
                await asyncio.sleep(self._reconnect_interval)
                self._wake.set()

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        handler = self._handler
        if handler is None:  # closing
            return
        properties = message.header.properties
        headers = properties.headers or {}
        delivery = cast(aiormq.spec.Basic.Deliver, message.delivery)
        command = Command(
            attributes=from_amqp(headers, properties.content_type),
            data=message.body,
            message_id=properties.message_id,
            redelivered=bool(delivery.redelivered),
            headers=_other_headers(headers),
        )
        try:
            verdict = await handler(command)
        except Exception:
            log.exception("bus: the command handler failed; the command is requeued")
            verdict = Verdict.REQUEUE
        # Settled on the channel it came on (a delivery tag belongs to one channel), without
        # waiting for aiormq's writer to drain the socket: AMQP has no answer to an ack, so
        # that wait confirmed nothing; a settlement lost with the connection is a redelivery.
        channel = message.channel
        tag = cast(int, delivery.delivery_tag)  # a Basic.Deliver always carries one
        try:
            if verdict is Verdict.ACK:
                await channel.basic_ack(tag, wait=False)
            elif verdict is Verdict.REJECT:
                await channel.basic_reject(tag, requeue=False, wait=False)
            else:
                await channel.basic_nack(tag, requeue=True, wait=False)
        except _CONNECTION_ERRORS as exc:
            # The channel went away: the broker delivers the command again, and its id makes
            # that delivery a no-op if it was carried out.
            log.warning("bus: could not settle a command (%s); it will be redelivered", exc)

    def health(self) -> BusHealth:
        connection = self._connection
        connected = (
            connection is not None
            and not connection.is_closed
            and bool(getattr(connection, "connected", asyncio.Event()).is_set())
        )
        consuming = connected and self._consumer_registered()
        if connection is None:
            detail = "not connected"
        elif not connected:
            detail = "reconnecting"
        elif self._handler is not None and not consuming:
            detail = "connected, consumer not registered"
        else:
            detail = "connected" + (", consuming commands" if consuming else "")
        return BusHealth(connected, consuming, detail)

    def _consumer_registered(self) -> bool:
        """Whether the broker delivers to our consumer now: its tag is on the channel that
        is open now (aio-pika swaps the underlying channel on reconnect)."""
        channel = self._consumer_channel
        if channel is None or self._consumer_tag is None or channel.is_closed:
            return False
        underlay: Any = getattr(channel, "_channel", None)
        raw = getattr(underlay, "channel", None)
        consumers: Mapping[str, Any] = getattr(raw, "consumers", {})
        return (
            raw is not None
            and not raw.is_closed
            and self._consumer_tag in consumers  # a broker's Basic.Cancel removes it
            and raw is self._registered_on
        )


def _other_headers(headers: Mapping[str, object]) -> dict[str, str]:
    return {
        key: str(value)
        for key, value in headers.items()
        if not key.startswith(("cloudEvents_", "cloudEvents:"))
    }
