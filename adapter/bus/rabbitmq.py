"""The bus port on RabbitMQ, through aio-pika (the ``rabbitmq`` extra).

Topology (the documented defaults, declared on connect, idempotently):

* events: a durable topic exchange (``uftp.events``); every event is published to it
  persistent, ``mandatory``, on a channel with publisher confirms, so `publish` returns once
  the broker has the event in every queue it routes to, and raises `Unroutable` when it came
  back for want of a binding. The events go on a connection of their own (named as the
  port's, with `` events`` after it), through `adapter.bus.amqp.ConfirmPublisher` rather than
  aio-pika: a confirmed publication cost 200-400 µs of CPU through aiormq's general
  machinery and costs a fraction of that there (that module says why and what else was
  measured). Once that connection is lost, the next `publish` opens another;
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
from typing import cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage

from adapter.bus.amqp import ConfirmPublisher
from adapter.bus.events import CloudEvent, from_amqp, to_amqp
from adapter.bus.port import BusHealth, BusUnavailable, Command, CommandHandler, Verdict

__all__ = ["RabbitBus", "Topology"]

log = logging.getLogger(__name__)

#: AMQP delivery mode 2: the broker writes the message to disk (a durable queue keeps it).
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


_UINT32 = struct.Struct(">I").pack


#: Each header name as a field table encodes it before its value: the name as a short
#: string, then the type ``S``. The names are the CloudEvents attributes the journal writes, a
#: handful; the bound only keeps odd events from growing it.
_HEADER_NAMES: dict[str, bytes] = {}
_HEADER_NAMES_MAX = 256


def string_table(table: Mapping[str, object]) -> bytes | None:
    """`table` as an AMQP field table, byte for byte as pamqp encodes it (keys sorted, each
    a short string, each value a long string ``S``), when every value is a string and every
    key short enough to go as it is; else None. pamqp's general encoder, with its type tests
    and calls per value, took about as long as the rest of a publication's encoding (43 µs
    against 8 µs with this, for an event's 12 headers, and 3.6 µs with the names' encoding
    kept from one event to the next); the CloudEvents headers are all strings."""
    parts: list[bytes] = []
    names = _HEADER_NAMES
    for key in sorted(table):
        value = table[key]
        if type(value) is not str:
            return None
        name = names.get(key)
        if name is None:
            encoded_name = key.encode("utf-8")
            if len(encoded_name) > 128:  # pamqp truncates such a name (with a warning): let it
                return None
            name = b"%c%bS" % (len(encoded_name), encoded_name)
            if len(names) < _HEADER_NAMES_MAX:
                names[key] = name
        encoded = value.encode("utf-8")
        parts += (name, _UINT32(len(encoded)), encoded)
    body = b"".join(parts)
    return _UINT32(len(body)) + body


_UINT16 = struct.Struct(">H").pack
_UINT64 = struct.Struct(">Q").pack


#: The property flags of an event's properties (pamqp's ``Basic.Properties.flags``).
_FLAGS = aiormq.spec.Basic.Properties.flags
_ALWAYS = _FLAGS["headers"] | _FLAGS["delivery_mode"] | _FLAGS["timestamp"]
_PERSISTENT_OCTET = b"%c" % PERSISTENT


def event_properties(
    headers: Mapping[str, object],
    content_type: str,
    message_id: str,
    timestamp: datetime,
    message_type: str,
    app_id: str,
) -> bytes:
    """An event's AMQP properties (persistent), encoded as pamqp's ``Basic.Properties.marshal``
    encodes the same (a test compares them): straight from the values, without building
    pamqp's object; through it when a value is of a kind left to pamqp."""
    table = string_table(headers) if type(headers) is dict else None
    offset = timestamp.utcoffset()
    encoded = [
        value.encode("utf-8") if type(value) is str else b"\xff" * 256
        for value in (content_type, message_id, message_type, app_id)
    ]
    if table is None or offset is None or max(map(len, encoded)) > 255:
        return aiormq.spec.Basic.Properties(
            headers=dict(headers),  # type: ignore[arg-type]
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=message_id,
            timestamp=timestamp,
            message_type=message_type,
            app_id=app_id,
        ).marshal()
    content, ident, kind, app = encoded
    flags = _ALWAYS
    # pamqp leaves out a property whose value is empty.
    if content:
        flags |= _FLAGS["content_type"]
    if ident:
        flags |= _FLAGS["message_id"]
    if kind:
        flags |= _FLAGS["message_type"]
    if app:
        flags |= _FLAGS["app_id"]
    return b"".join(
        (
            _UINT16(flags),
            b"%c%b" % (len(content), content) if content else b"",
            table,
            _PERSISTENT_OCTET,
            b"%c%b" % (len(ident), ident) if ident else b"",
            _UINT64(int(timestamp.timestamp())),
            b"%c%b" % (len(kind), kind) if kind else b"",
            b"%c%b" % (len(app), app) if app else b"",
        )
    )


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
    """The `Bus` port on RabbitMQ: aio-pika's robust connection for the topology and the
    command consumer, a `ConfirmPublisher`'s connection for the events."""

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
        self._publisher: ConfirmPublisher | None = None
        self._publisher_opening: asyncio.Lock | None = None
        #: Attempts to open the events connection that ended (opened or failed).
        self._publisher_attempts = 0
        self._publisher_failure = ""
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        #: The channel (aiormq's) the broker confirmed our consumer on.
        self._registered_on: aiormq.Channel | None = None
        #: Times the robust connection came back after a loss.
        self.reconnects = 0
        #: Times the events connection was opened again after a loss.
        self.publisher_reopens = 0

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
            channel = await connection.channel()
            await channel.declare_exchange(
                self.topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            publisher = await self._open_publisher()
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel, self._publisher = connection, channel, publisher
        self._publisher_opening = asyncio.Lock()
        connection.reconnect_callbacks.add(self._on_reconnect)
        log.info("bus: connected to %s", redact(self._url))

    async def _open_publisher(self) -> ConfirmPublisher:
        try:
            return await ConfirmPublisher.open(
                self._url,
                self.topology.events_exchange,
                name=f"{self._name} events",
                timeout=self._publish_timeout,
                # A publication waits no longer for a connection than for its confirm.
                connect_timeout=self._publish_timeout,
            )
        except BusUnavailable as exc:
            raise BusUnavailable(f"{redact(self._url)}: {exc}") from None

    async def _publisher_now(self) -> ConfirmPublisher:
        """The events connection, opened again if it was lost (once, for every publication
        waiting for it)."""
        lock = self._publisher_opening
        if lock is None:
            raise BusUnavailable("not connected")
        attempts = self._publisher_attempts
        async with lock:
            publisher = self._publisher
            if publisher is None or publisher.is_closed:
                if self._publisher_attempts != attempts:
                    # Another publication tried while this one waited, and failed: do not
                    # try once more per waiting publication (each up to the connect timeout).
                    raise BusUnavailable(f"the events connection: {self._publisher_failure}")
                try:
                    publisher = await self._open_publisher()
                except BusUnavailable as exc:
                    self._publisher_failure = str(exc)
                    raise
                finally:  # counted once over: those who waited for it see it
                    self._publisher_attempts += 1
                if self._publisher_opening is not lock:  # closed meanwhile
                    await publisher.close()
                    raise BusUnavailable("not connected")
                self._publisher = publisher
                self.publisher_reopens += 1
                log.info("bus: events connection to %s opened again", redact(self._url))
            return publisher

    def _on_reconnect(self, *_: object) -> None:
        self.reconnects += 1
        log.info("bus: reconnected to %s (%d)", redact(self._url), self.reconnects)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        publisher, self._publisher = self._publisher, None
        self._publisher_opening = None
        self._handler = None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if publisher is not None:
            await publisher.close()
        if connection is not None:
            await connection.close()
        self._channel = self._consumer_channel = None
        self._consumer_tag = None
        self._registered_on = None

    async def publish(self, event: CloudEvent, route: str) -> None:
        publisher = self._publisher
        if publisher is None or publisher.is_closed:
            publisher = await self._publisher_now()
        headers, content_type = to_amqp(event)
        # Returned messages are matched to their publication by message id (as aiormq does,
        # which gave one to a message without); an event always has an id.
        message_id = event.id
        properties = event_properties(
            headers, content_type, message_id, event.time, event.type, self._name
        )
        # Mandatory, persistent, on a confirming channel: returns with the broker's ack;
        # raises Unroutable on a Basic.Return, BusUnavailable on a nack, a timeout or a loss.
        await publisher.publish(route, properties, event.data, message_id)

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
        publisher = self._publisher
        if publisher is not None and publisher.blocked is not None:
            # A resource alarm: the events wait in the store (the relay retries), and the
            # operator must know why (the broker's reason, e.g. "low on memory").
            detail += f", the broker blocks publishing: {publisher.blocked}"
        return BusHealth(connected, consuming, detail)

    def _consumer_registered(self) -> bool:
        """Whether the broker delivers to our consumer now: it confirmed the consumer on a
        channel that is still open (a lost connection closes it, and aio-pika opens another)
        and has not cancelled it since (a Basic.Cancel removes the tag)."""
        channel = self._consumer_channel
        raw = self._registered_on
        return (
            channel is not None
            and not channel.is_closed
            and raw is not None
            and not raw.is_closed
            and self._consumer_tag in raw.consumers
        )


def _other_headers(headers: Mapping[str, object]) -> dict[str, str]:
    return {
        key: str(value)
        for key, value in headers.items()
        if not key.startswith(("cloudEvents_", "cloudEvents:"))
    }
