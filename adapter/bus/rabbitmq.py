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

The topology is declared through aio-pika's robust connection, which after a loss reconnects
and declares the events exchange again. The commands are consumed on a third connection
(named as the port's, with `` commands`` after it), through
`adapter.bus.amqp.CommandConsumer` rather than aio-pika: taking a command in through aiormq
cost about 500 µs of CPU, most of it aiormq's tasks and frame objects per delivery, and costs
a fraction of that there. A keeper task opens that connection again after a loss, and after
the broker cancelled the consumer (its queue deleted) declares the queue again first.
Whether the consumer really is registered is checked, not assumed (`health`): only one whose
Basic.ConsumeOk came on a connection still open, and not cancelled since, counts, and
`/health` shows one that is not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, compress
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from adapter.bus.amqp import (
    UINT16,
    UINT32,
    ChannelRefused,
    CommandConsumer,
    ConfirmPublisher,
    Delivery,
)
from adapter.bus.events import AMQP_PREFIX, CloudEvent, from_amqp, to_amqp
from adapter.bus.port import BusHealth, BusUnavailable, Command, CommandHandler, Verdict
from adapter.settings import DEFAULT_MAX_BODY_BYTES

__all__ = ["RabbitBus", "Topology"]

log = logging.getLogger(__name__)

#: AMQP delivery mode 2: the broker writes the message to disk (a durable queue keeps it).
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


_ONLY_STR = frozenset({str})


def string_table(
    table: Mapping[str, object], *, prefix: str = "", leave_out: str = ""
) -> bytes | None:
    """`table` as an AMQP field table, byte for byte as pamqp encodes it (keys sorted, each
    a short string, each value a long string ``S``), when every value is a string and every
    key short enough to go as it is; else None. pamqp's general encoder, with its type tests
    and calls per value, took about as long as the rest of a publication's encoding (43 µs
    against 8 µs with a loop of our own, for an event's 12 headers). Here the keys' part of
    the table is kept per set of keys (`_layout`), and the values are encoded, measured and
    put between the names by C functions (`map`, `zip`, `join`), with no Python step per
    header: an event's 14 headers took some 660 opcodes with that loop, and take 85.

    Each key goes with `prefix` before it, `leave_out` left out: an event's attributes make
    the table of the headers `to_amqp` names after them (``cloudEvents_<name>``, all but
    ``datacontenttype``) without those headers made first (one prefix sorts as the names)."""
    layout = _layout(prefix, leave_out, tuple(table))
    if layout is None:
        return None
    keys, names = layout
    values: list[Any] = list(map(table.__getitem__, keys))
    if not _ONLY_STR.issuperset(map(type, values)):  # `str` only, as pamqp's ``S``
        return None
    encoded = list(map(str.encode, values))
    lengths = map(UINT32.pack, map(len, encoded))
    # Each header's name (and type), its value's length, its value.
    body = b"".join(chain.from_iterable(zip(names, lengths, encoded, strict=True)))
    return UINT32.pack(len(body)) + body


@functools.lru_cache(maxsize=256)
def _layout(
    prefix: str, leave_out: str, keys: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[bytes, ...]] | None:
    """How `string_table` encodes a table of `keys` (in the order the table holds them):
    the keys in pamqp's order (sorted, `leave_out` left out), and each as the table has it
    before its value (`prefix` and the key as a short string, then the type ``S``); None
    when a key is too long to go as it is.

    Kept for the sets of keys in use: an event of a kind has the same keys as the last (the
    journal makes them in one order), a few dozen sets in all; past the bound the oldest is
    made again when next needed. Only names are kept, never a value."""
    kept = tuple(key for key in sorted(keys) if key != leave_out)
    names = []
    for key in kept:
        encoded_name = (prefix + key).encode("utf-8")
        if len(encoded_name) > 128:  # pamqp truncates such a name (with a warning): let it
            return None
        names.append(b"%c%bS" % (len(encoded_name), encoded_name))
    return kept, tuple(names)


_UINT64 = struct.Struct(">Q").pack


#: The property flags of an event's properties (pamqp's ``Basic.Properties.flags``).
_FLAGS = aiormq.spec.Basic.Properties.flags
_ALWAYS = _FLAGS["headers"] | _FLAGS["delivery_mode"] | _FLAGS["timestamp"]
_PERSISTENT_OCTET = b"%c" % PERSISTENT
#: The flags of the properties `_properties` sets when given, in the order of its arguments.
_GIVEN = tuple(_FLAGS[name] for name in ("content_type", "message_id", "message_type", "app_id"))


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
    if table is not None:
        encoded = _properties(table, content_type, message_id, timestamp, message_type, app_id)
        if encoded is not None:
            return encoded
    return aiormq.spec.Basic.Properties(
        headers=dict(headers),  # type: ignore[arg-type]
        content_type=content_type,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        timestamp=timestamp,
        message_type=message_type,
        app_id=app_id,
    ).marshal()


def properties_of(event: CloudEvent, app_id: str) -> bytes:
    """`event_properties` of `event` with the headers and content type `to_amqp` makes of it
    (message id and type its own), the headers' table encoded straight from its attributes:
    the headers are made only where pamqp encodes them."""
    attributes = event.attributes()
    table = string_table(attributes, prefix=AMQP_PREFIX, leave_out="datacontenttype")
    if table is not None:
        content_type = attributes["datacontenttype"]
        encoded = _properties(table, content_type, event.id, event.time, event.type, app_id)
        if encoded is not None:
            return encoded
    headers, content_type = to_amqp(event)
    return event_properties(headers, content_type, event.id, event.time, event.type, app_id)


def _properties(
    table: bytes,
    content_type: str,
    message_id: str,
    timestamp: datetime,
    message_type: str,
    app_id: str,
) -> bytes | None:
    """The properties of `event_properties`, the headers given as their encoded `table`; None
    when a value is of a kind left to pamqp."""
    strings = (content_type, message_id, message_type, app_id)
    if timestamp.utcoffset() is None or not _ONLY_STR.issuperset(map(type, strings)):
        return None
    encoded = tuple(map(str.encode, strings))
    if max(map(len, encoded)) > 255:  # not a short string
        return None
    content, ident, kind, app = encoded
    # pamqp leaves out a property whose value is empty: the flags of those that are not.
    flags = _ALWAYS | sum(compress(_GIVEN, encoded))
    return b"".join(
        (
            UINT16.pack(flags),
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
    """The `Bus` port on RabbitMQ: aio-pika's robust connection for the topology, a
    `ConfirmPublisher`'s connection for the events, a `CommandConsumer`'s for the commands."""

    def __init__(
        self,
        url: str,
        topology: Topology | None = None,
        *,
        name: str = "uftp-adapter",
        publish_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        max_command_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._url = url
        self.topology = topology or Topology()
        self._name = name
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        #: A command body above it is not kept: the bridge refuses the command.
        self._max_command_bytes = max_command_bytes
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consumer: CommandConsumer | None = None
        self._handler: CommandHandler | None = None
        self._publisher: ConfirmPublisher | None = None
        self._publisher_opening: asyncio.Lock | None = None
        #: Attempts to open the events connection that ended (opened or failed).
        self._publisher_attempts = 0
        self._publisher_failure = ""
        self._keeper: asyncio.Task[None] | None = None
        #: Consumers the broker no longer delivers to, until their connection is dropped and
        #: their handlers have ended (`CommandConsumer.retire`).
        self._retired: dict[CommandConsumer, asyncio.Task[None]] = {}
        #: Times the robust connection came back after a loss.
        self.reconnects = 0
        #: Times the events connection was opened again after a loss.
        self.publisher_reopens = 0
        #: Times the commands connection was opened again after a loss or a cancellation.
        self.consumer_reopens = 0

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
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.close()
        retired, self._retired = self._retired, {}
        for old in retired:  # their handlers cancelled, their connection dropped
            await old.close()
        await asyncio.gather(*retired.values(), return_exceptions=True)
        if publisher is not None:
            await publisher.close()
        if connection is not None:
            await connection.close()
        self._channel = None

    async def publish(self, event: CloudEvent, route: str) -> None:
        publisher = self._publisher
        if publisher is None or publisher.is_closed:
            publisher = await self._publisher_now()
        # Returned messages are matched to their publication by message id (as aiormq does,
        # which gave one to a message without); an event always has an id.
        properties = properties_of(event, self._name)
        # Mandatory, persistent, on a confirming channel: returns with the broker's ack;
        # raises Unroutable on a Basic.Return, BusUnavailable on a nack, a timeout or a loss.
        await publisher.publish(route, properties, event.data, event.id)

    async def consume(self, handler: CommandHandler) -> None:
        if self._connection is None:
            raise BusUnavailable("not connected")
        await self._declare_commands()
        self._handler = handler
        self._consumer = await self._open_consumer()
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep_consuming(self._consumer), name="bus-consumer"
        )
        log.info("bus: consuming commands from %s", self.topology.commands_queue)

    async def _declare_commands(self) -> None:
        """Declare the commands' exchange and quorum queue, the dead-letter exchange and its
        queue, and their bindings (idempotent), on a channel of aio-pika's opened for it and
        closed after: a robust channel kept open would keep every declaration made on it, to
        make again after each reconnection, one more copy per cancelled consumer."""
        assert self._connection is not None
        t = self.topology
        channel = await self._connection.channel()
        try:
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
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _open_consumer(self) -> CommandConsumer:
        try:
            return await CommandConsumer.open(
                self._url,
                self.topology.commands_queue,
                self._on_delivery,
                prefetch=self.topology.prefetch,
                # A new tag each time: none that a connection cut short left can clash.
                consumer_tag=f"uftp-adapter.{uuid.uuid4().hex}",
                name=f"{self._name} commands",
                connect_timeout=self._publish_timeout,
                max_body=self._max_command_bytes,
            )
        except ChannelRefused as exc:
            raise ChannelRefused(f"{redact(self._url)}: {exc}", exc.reply_code) from None
        except BusUnavailable as exc:
            raise BusUnavailable(f"{redact(self._url)}: {exc}") from None

    async def _keep_consuming(self, consumer: CommandConsumer) -> None:
        """Open the commands connection again whenever the broker no longer delivers to the
        one open: after it was lost or closed, trying again every `reconnect_interval` until
        it is back, and after the broker cancelled the consumer (its queue deleted) or
        refused it for want of its queue (404), having declared the queue again first;
        `health` says meanwhile that it is not consuming."""
        while True:
            why = await consumer.stopped
            declare = consumer.cancelled
            self._retire(consumer)
            log.warning("bus: the commands connection was %s; consuming again", why)
            while True:
                try:
                    if declare:
                        await self._declare_commands()
                        declare = False
                    consumer = await self._open_consumer()
                    break
                except Exception as exc:  # whatever it was, giving up would leave us deaf
                    declare = declare or (isinstance(exc, ChannelRefused) and exc.reply_code == 404)
                    log.warning("bus: could not consume commands again (%s); retrying", exc)
                    await asyncio.sleep(self._reconnect_interval)
            self._consumer = consumer
            self.consumer_reopens += 1
            log.info("bus: consuming commands again from %s", self.topology.commands_queue)

    def _retire(self, consumer: CommandConsumer) -> None:
        """Drop the connection of `consumer`, which the broker no longer delivers to, and
        keep it until its handlers have ended, for `close` to end them."""
        retired = self._retired
        task = asyncio.get_running_loop().create_task(
            consumer.retire(), name="bus-consumer-retired"
        )
        retired[consumer] = task
        task.add_done_callback(lambda _: retired.pop(consumer, None))

    async def _on_delivery(self, delivery: Delivery) -> Verdict:
        """A command for the handler; its verdict settles it (`CommandConsumer` writes the
        settlement on the connection the command came on)."""
        handler = self._handler
        if handler is None:  # closing: left unsettled, so delivered again
            raise asyncio.CancelledError
        headers = delivery.headers
        command = Command(
            attributes=from_amqp(headers, delivery.content_type),
            data=delivery.body,
            message_id=delivery.message_id,
            redelivered=delivery.redelivered,
            headers=_other_headers(headers) if headers else {},
            malformed=delivery.malformed,
        )
        return await handler(command)  # what it raises `CommandConsumer` requeues

    def health(self) -> BusHealth:
        connection = self._connection
        connected = (
            connection is not None
            and not connection.is_closed
            and bool(getattr(connection, "connected", asyncio.Event()).is_set())
        )
        consumer = self._consumer
        consuming = connected and consumer is not None and consumer.consuming
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


def _other_headers(headers: Mapping[str, object]) -> dict[str, str]:
    return {
        key: str(value)
        for key, value in headers.items()
        if not key.startswith(("cloudEvents_", "cloudEvents:"))
    }
