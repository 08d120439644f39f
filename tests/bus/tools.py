"""What the bus tests use around the adapter: a consumer that counts what reaches the
bus (deduplicating by event id, as the README tells consumers to), the broker's own tool to
close the adapter's connections, and a TCP proxy that plays a network outage."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from adapter.bus.events import CloudEvent, from_amqp


@dataclass
class EventSink:
    """Every event that reaches one queue bound to the events exchange."""

    events: dict[str, tuple[str, CloudEvent]] = field(default_factory=dict)
    copies: Counter[str] = field(default_factory=Counter)
    order: list[str] = field(default_factory=list)

    @classmethod
    async def bind(cls, connection: Any, exchange: str, pattern: str = "#") -> EventSink:
        sink = cls()
        channel = await connection.channel()
        # Declared as the adapter declares it, so that the consumer may start first.
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, pattern)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            attributes = from_amqp(message.headers or {}, message.content_type)
            sink.add(
                message.routing_key or "", CloudEvent.from_attributes(attributes, message.body)
            )
            await message.ack()

        await queue.consume(on_message)
        return sink

    def add(self, route: str, event: CloudEvent) -> None:
        """One delivery of `event` under `route`; a copy of an event seen is only counted."""
        self.copies[event.id] += 1
        if event.id not in self.events:
            self.events[event.id] = (route, event)
            self.order.append(event.id)

    def routes(self) -> list[str]:
        return [self.events[event_id][0] for event_id in self.order]

    def of(self, route: str) -> list[CloudEvent]:
        return [self.events[i][1] for i in self.order if self.events[i][0] == route]

    @property
    def duplicates(self) -> int:
        return sum(self.copies.values()) - len(self.copies)


async def close_connections(name: str) -> int:
    """Close the broker's connections whose client named itself `name` (rabbitmqctl, as root
    here); how many it closed. Other clients of the broker are left alone."""

    def run() -> int:
        listing = subprocess.run(
            [
                "rabbitmqctl",
                "list_connections",
                "-q",
                "--no-table-headers",
                "pid",
                "client_properties",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        closed = 0
        for line in listing.splitlines():
            if f'{{"connection_name","{name}"}}' in line:
                pid = line.split("\t", 1)[0]
                subprocess.run(
                    ["rabbitmqctl", "close_connection", pid, "closed by the test"],
                    capture_output=True,
                    check=True,
                )
                closed += 1
        return closed

    return await asyncio.to_thread(run)


class Proxy:
    """A TCP proxy to the broker that can cut every connection and refuse new ones."""

    def __init__(self, target_port: int = 5672) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close the listener and every open connection: the broker is gone."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes.discard(writer)
        self._pipes.discard(up_writer)
