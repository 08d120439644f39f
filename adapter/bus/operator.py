"""The operator's view of the bus from the command line: `bus tail` and `bus send`.

Both talk to the broker of a participant's [bus] table directly, as any of the operator's
systems would, not through a running adapter. `tail` reads the events as they pass and
leaves nothing behind: on RabbitMQ a queue of its own (exclusive, gone when it stops) bound
to the events exchange; on NATS JetStream an ephemeral ordered consumer of the events stream
that starts at the next event. `send` publishes one command and returns once the broker has
it: a publisher confirm on RabbitMQ, the commands stream's acknowledgement on NATS (with the
command id as ``Nats-Msg-Id``, so that sending it again within the stream's duplicate window
stores it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any, TextIO

from adapter.bus.events import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    InvalidEvent,
    from_amqp,
    from_nats,
    nats_headers,
)
from adapter.bus.port import BusUnavailable
from adapter.config import NATS_SCHEMES, BusSettings

__all__ = ["nats_filter", "send", "tail"]

#: The attributes `tail` prints after the routing key, the type and the id.
_SHOWN = (
    "uftpsender",
    "uftprecipient",
    "uftpmessageid",
    "correlationid",
    "causationid",
    "commandid",
)
#: Seconds to reach the broker, and for each of its answers.
_TIMEOUT = 10.0


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


def _on_nats(settings: BusSettings) -> bool:
    return settings.url.split("://", 1)[0] in NATS_SCHEMES


def _line(route: str, attributes: Mapping[str, str]) -> str:
    details = " ".join(f"{name}={attributes[name]}" for name in _SHOWN if attributes.get(name))
    return (
        f"{route} {attributes.get('type', '?')} id={attributes.get('id', '?')} {details}".rstrip()
    )


async def tail(
    settings: BusSettings,
    *,
    pattern: str = "#",
    count: int | None = None,
    out: TextIO | None = None,
    ready: asyncio.Event | None = None,
) -> int:
    """Print each event as it passes (routing key, type, id, then its UFTP attributes);
    stop after `count` events, or when cancelled. How many it printed. `pattern` matches
    routing keys as an AMQP topic does (on NATS, ``#`` only as the last word). Raises
    `BusUnavailable` when the broker (or, on NATS, the events stream) is not there. Prints
    to `out`, by default the `sys.stdout` of the moment (not of the import)."""
    events = (
        _nats_events(settings, pattern) if _on_nats(settings) else _amqp_events(settings, pattern)
    )
    printed = 0
    async with contextlib.aclosing(events):
        async for route, attributes in events:
            if route is None:  # subscribed: what follows is printed
                if ready is not None:
                    ready.set()
                continue
            print(_line(route, attributes), file=out or sys.stdout, flush=True)
            printed += 1
            if count is not None and printed >= count:
                break
    return printed


#: What `_amqp_events` and `_nats_events` yield: (routing key, attributes) per event, after
#: a first (None, {}) once they listen.
_Events = AsyncGenerator[tuple[str | None, Mapping[str, str]], None]


async def _amqp_events(settings: BusSettings, pattern: str) -> _Events:
    import aio_pika
    import aiormq

    try:
        connection = await aio_pika.connect_robust(
            settings.url,
            client_properties={"connection_name": "uftp-adapter bus tail"},
            timeout=_TIMEOUT,
        )
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        raise BusUnavailable(f"cannot connect to RabbitMQ: {exc}") from None
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, pattern)
        yield None, {}
        async with queue.iterator(no_ack=True) as messages:
            async for message in messages:
                yield (
                    message.routing_key or "",
                    from_amqp(message.headers or {}, message.content_type),
                )


async def _nats_events(settings: BusSettings, pattern: str) -> _Events:
    import nats.errors
    import nats.js.errors
    from nats.js.api import DeliverPolicy

    from adapter.bus.nats import open_connection

    subject = nats_filter(settings.exchange, pattern)
    nc = await open_connection(_servers(settings), name="uftp-adapter bus tail", timeout=_TIMEOUT)
    try:
        js = nc.jetstream(timeout=_TIMEOUT)
        try:
            subscription = await js.subscribe(
                subject,
                stream=settings.stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        except nats.js.errors.NotFoundError:
            raise BusUnavailable(
                f"NATS has no stream {settings.stream} (the adapter creates it when it starts)"
            ) from None
        except (nats.errors.Error, OSError) as exc:
            raise BusUnavailable(f"NATS: cannot read {settings.stream}: {exc!r}") from None
        yield None, {}
        prefix = settings.exchange + "."
        while True:
            message = await subscription.next_msg(timeout=None)
            try:
                attributes = from_nats(message.headers or {})
            except InvalidEvent as exc:  # not from the adapter: say so, go on
                attributes = {"type": f"? ({exc})"}
            yield message.subject.removeprefix(prefix), attributes
    finally:
        await nc.close()


def _servers(settings: BusSettings) -> list[str]:
    return [part.strip() for part in settings.url.split(",") if part.strip()]


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
    for `to`; its id (new unless given), once the broker confirmed it. Raises
    `BusUnavailable` when the broker cannot take it."""
    command_id = command_id or str(uuid.uuid4())
    attributes = {"uftprecipient": to}
    if role:
        attributes["uftprecipientrole"] = role
    if answers:
        attributes["causationid"] = answers
    content_type = JSON_CONTENT_TYPE if json else XML_CONTENT_TYPE
    if _on_nats(settings):
        await _send_nats(settings, body, command_id, content_type, attributes)
    else:
        await _send_amqp(settings, body, command_id, content_type, attributes)
    return command_id


async def _send_amqp(
    settings: BusSettings,
    body: bytes,
    command_id: str,
    content_type: str,
    attributes: Mapping[str, str],
) -> None:
    import aio_pika
    import aiormq

    headers: dict[str, Any] = {f"cloudEvents_{k}": v for k, v in attributes.items()}
    try:
        connection = await aio_pika.connect(
            settings.url,
            client_properties={"connection_name": "uftp-adapter bus send"},
            timeout=_TIMEOUT,
        )
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        raise BusUnavailable(f"cannot connect to RabbitMQ: {exc}") from None
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            settings.commands_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        try:
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
                timeout=_TIMEOUT,
            )
        except aiormq.exceptions.PublishError:  # returned: nothing bound
            raise BusUnavailable(
                f"no queue takes commands from {settings.commands_exchange} (the adapter "
                f"declares {settings.commands_queue} when it starts)"
            ) from None


async def _send_nats(
    settings: BusSettings,
    body: bytes,
    command_id: str,
    content_type: str,
    attributes: Mapping[str, str],
) -> None:
    import nats.errors
    import nats.js.errors

    from adapter.bus.nats import MSG_ID, open_connection

    headers = nats_headers({"datacontenttype": content_type, **attributes})
    headers[MSG_ID] = command_id  # the command id, and JetStream's de-duplication key
    subject = f"{settings.commands_exchange}.send"
    nc = await open_connection(_servers(settings), name="uftp-adapter bus send", timeout=_TIMEOUT)
    try:
        await nc.jetstream(timeout=_TIMEOUT).publish(
            subject, body, headers=headers, stream=settings.commands_stream
        )
    except nats.js.errors.NoStreamResponseError:
        raise BusUnavailable(
            f"NATS has no stream for {subject} (the adapter creates "
            f"{settings.commands_stream} when it starts)"
        ) from None
    except nats.errors.MaxPayloadError as exc:
        raise ValueError(f"the message is too large for this NATS server: {exc}") from None
    except nats.js.errors.APIError as exc:  # e.g. the subject is another stream's
        raise BusUnavailable(f"NATS refused the command on {subject}: {exc}") from None
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS: {exc!r}") from None
    finally:
        await nc.close()
