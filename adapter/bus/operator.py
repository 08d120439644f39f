"""The operator's view of the bus from the command line: `bus tail` and `bus send`.

Both talk to the broker of a participant's [bus] table directly, as any of the operator's
systems would, not through a running adapter: `tail` binds a queue of its own (exclusive,
gone when it stops) to the events exchange; `send` publishes one command with a publisher
confirm. RabbitMQ only for now.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any, TextIO

from adapter.bus.events import JSON_CONTENT_TYPE, XML_CONTENT_TYPE, from_amqp
from adapter.config import BusSettings

__all__ = ["send", "tail"]


def nats_filter(prefix: str, pattern: str) -> str:
    """The NATS subject filter under `prefix` for the AMQP topic `pattern` that routing keys
    are matched with (``*`` one word, ``#`` any number: on NATS only as the last word).

    >>> nats_filter("uftp.events", "in.#")
    'uftp.events.in.>'
    """
    words = pattern.split(".")
    for index, word in enumerate(words):
        if not word or (word not in ("*", "#") and any(c in word for c in "*#> \t\r\n")):
            raise ValueError(f"routing-key pattern {pattern!r}: words separated by dots")
        if word == "#" and index < len(words) - 1:
            raise ValueError(f"routing-key pattern {pattern!r}: on NATS '#' only at the end")
    return ".".join([prefix, *(">" if word == "#" else word for word in words)])


def _require_amqp(settings: BusSettings) -> None:
    if not settings.url.startswith(("amqp://", "amqps://")):
        raise ValueError("bus tail and bus send speak RabbitMQ (amqp://) only so far")


async def tail(
    settings: BusSettings,
    *,
    pattern: str = "#",
    count: int | None = None,
    out: TextIO = sys.stdout,
    ready: asyncio.Event | None = None,
) -> int:
    """Print each event as it passes (routing key, type, id, then its UFTP attributes);
    stop after `count` events, or when cancelled. How many it printed."""
    _require_amqp(settings)
    import aio_pika

    connection = await aio_pika.connect_robust(
        settings.url, client_properties={"connection_name": "uftp-adapter bus tail"}
    )
    printed = 0
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, pattern)
        if ready is not None:
            ready.set()
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    attributes = from_amqp(message.headers or {}, message.content_type)
                    details = " ".join(
                        f"{name}={attributes[name]}"
                        for name in (
                            "uftpsender",
                            "uftprecipient",
                            "uftpmessageid",
                            "correlationid",
                            "causationid",
                            "commandid",
                        )
                        if attributes.get(name)
                    )
                    print(
                        f"{message.routing_key} {attributes.get('type', '?')} "
                        f"id={attributes.get('id', '?')} {details}".rstrip(),
                        file=out,
                        flush=True,
                    )
                printed += 1
                if count is not None and printed >= count:
                    break
    return printed


async def send(
    settings: BusSettings,
    body: bytes,
    *,
    json: bool = False,
    to: str,
    role: str | None = None,
    command_id: str | None = None,
    answers: str | None = None,
) -> str:
    """Put the UFTP message `body` (XML, or with `json` its JSON form) on the bus as a command
    for `to`; its id (new unless given), once the broker confirmed it."""
    _require_amqp(settings)
    import aio_pika

    command_id = command_id or str(uuid.uuid4())
    headers: dict[str, Any] = {"cloudEvents_uftprecipient": to}
    if role:
        headers["cloudEvents_uftprecipientrole"] = role
    if answers:
        headers["cloudEvents_causationid"] = answers
    content_type = JSON_CONTENT_TYPE if json else XML_CONTENT_TYPE
    connection = await aio_pika.connect(
        settings.url, client_properties={"connection_name": "uftp-adapter bus send"}
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            settings.commands_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=command_id,
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers,
            ),
            routing_key="send",
            mandatory=True,
        )
    return command_id
