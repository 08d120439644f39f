"""What the bus tests use around the adapter: a command handler that records what it is
handed, a consumer that counts what reaches the bus (deduplicating by event id, as the README
tells consumers to), a CRO's event journal and a TestMessage for it, the broker's own tool to
close the adapter's connections, a TCP proxy that plays a network outage, and a RabbitMQ node
of the test's own that it may stop and start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika

from adapter.bus.events import CloudEvent, from_amqp
from adapter.bus.journal import EventJournal
from adapter.bus.port import Command, Verdict
from adapter.uftp.messages import Role, TestMessage


def cro_journal() -> EventJournal:
    """The event journal of cro.example.com (a CRO), its clock stopped at 2024-05-01 UTC."""
    return EventJournal(
        domain="cro.example.com", role=Role.CRO, clock=lambda: datetime(2024, 5, 1, tzinfo=UTC)
    )


def dso_test_message() -> TestMessage:
    """A UFTP 3.0.0 TestMessage from dso.example.com to cro.example.com: message m-1 of
    conversation c-1."""
    return replace(
        TestMessage(),
        version="3.0.0",
        sender_domain="dso.example.com",
        recipient_domain="cro.example.com",
        message_id="m-1",
        conversation_id="c-1",
    )


@dataclass
class Recorder:
    """A command handler that records each command it is handed (and when), and answers with
    `decide(command)` when given, else with the verdicts it is given in turn, then ACK. With a
    `gate` it holds every command until the gate is set."""

    verdicts: list[Verdict] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    gate: asyncio.Event | None = None
    decide: Callable[[Command], Verdict] | None = None

    async def __call__(self, command: Command) -> Verdict:
        self.commands.append(command)
        self.times.append(time.monotonic())
        if self.gate is not None:
            await self.gate.wait()
        if self.decide is not None:
            return self.decide(command)
        return self.verdicts.pop(0) if self.verdicts else Verdict.ACK

    @property
    def ids(self) -> list[str]:
        """The ids of the commands handed over, in order ("" for one without)."""
        return [command.id or "" for command in self.commands]


@dataclass
class EventSink:
    """Every event that reaches one queue bound to the events exchange."""

    events: dict[str, tuple[str, CloudEvent]] = field(default_factory=dict)
    copies: Counter[str] = field(default_factory=Counter)
    order: list[str] = field(default_factory=list)

    @classmethod
    async def bind(
        cls, connection: Any, exchange: str, pattern: str = "#", *, durable: str | None = None
    ) -> EventSink:
        """`durable`: the name of a durable queue to read from, which keeps the events
        across a broker restart (with a robust `connection`, the sink consumes it again
        once the broker is back); else an exclusive queue of the connection's lifetime."""
        sink = cls()
        channel = await connection.channel()
        # Declared as the adapter declares it, so that the consumer may start first.
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        if durable is None:
            queue = await channel.declare_queue(exclusive=True)
        else:
            queue = await channel.declare_queue(
                durable, durable=True, arguments={"x-queue-type": "quorum"}
            )
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


@dataclass
class Link:
    """One connection through a `Proxy`, and which side ended it."""

    #: Set: what the client sends is dropped instead of passed on (the broker hears nothing
    #: more from it, and answers nothing); what the broker sends still reaches the client.
    muted: bool = False
    #: The client closed or dropped its socket, before the broker's side ended.
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: The broker's side ended first (the proxy then drops the client's socket).
    broker_closed: asyncio.Event = field(default_factory=asyncio.Event)


class Proxy:
    """A TCP proxy to the broker that can cut every connection and refuse new ones, mute a
    connection's client (`Link.muted`), and tell which side ended a connection (`links`, in
    the order they were accepted)."""

    def __init__(self, target_port: int = 5672) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.links: list[Link] = []

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
        link = Link()
        self.links.append(link)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool
        ) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    if from_client and link.muted:
                        continue
                    sink.write(data)
                    await sink.drain()
            ended, other = (
                (link.client_closed, link.broker_closed)
                if from_client
                else (link.broker_closed, link.client_closed)
            )
            if not other.is_set():
                ended.set()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._pipes.discard(writer)
        self._pipes.discard(up_writer)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: The server's own scripts: as root, /usr/sbin's wrappers would switch to the rabbitmq
#: user and its Erlang cookie, the shared broker's; these run as the caller, with the
#: cookie of the HOME we give them.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """A RabbitMQ node of the test's own, which it may stop, start and close every
    connection of: its own node name, AMQP and distribution ports, data, logs, config and
    Erlang cookie in `root`. The shared broker (and its other clients) never notice.

    A start takes 5-15 s on this machine (an Erlang VM and the broker's boot), a stop a few
    seconds; `rabbitmqctl` costs about a second each. Data survives a stop/start (the same
    mnesia directory), as it does for a broker restarted in production."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"uftp-test-{os.getpid()}-{self.port}@localhost"
        home = root / "home"
        for folder in (home, root / "mnesia", root / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\n")
        (root / "rabbitmq-env.conf").write_text("")  # not the shared broker's
        (root / "enabled_plugins").write_text("[].\n")  # no management listener to clash
        self.pid_file = root / "node.pid"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @staticmethod
    def available() -> str | None:
        """None when a private node can be run here; else why not."""
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            return f"no {RABBITMQ_BIN}/rabbitmq-server"
        return None

    @staticmethod
    def require() -> None:
        """Skip the test when a private node cannot be run here; fail it instead where the
        broker is required (CI), as the shared broker's tests do."""
        import pytest

        from tests.bus.conftest import AMQP_REQUIRED

        problem = PrivateRabbit.available()
        if problem is not None:
            if AMQP_REQUIRED:
                pytest.fail(f"a private RabbitMQ node is required here: {problem}")
            pytest.skip(problem)

    def ctl(self, *args: str, timeout: float = 90) -> str:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)}: status {result.returncode}: "
                f"{result.stdout[-500:]}{result.stderr[-500:]}"
            )
        return result.stdout

    def _start(self) -> None:
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=self.env,
            check=True,
            timeout=30,
            capture_output=True,
        )
        # `wait` returns once the pid file is there and the broker has booted.
        self.ctl("wait", str(self.pid_file), "--timeout", "90", timeout=120)

    def _stop(self) -> None:
        # Given the pid file, `stop` returns only once the node's process has ended.
        self.ctl("stop", str(self.pid_file), timeout=120)

    async def start(self) -> float:
        """Start the node; the seconds it took."""
        began = time.monotonic()
        await asyncio.to_thread(self._start)
        return time.monotonic() - began

    async def stop(self) -> float:
        """Stop the node (as `rabbitmqctl stop` does in production); the seconds it took."""
        began = time.monotonic()
        await asyncio.to_thread(self._stop)
        return time.monotonic() - began

    async def close_all_connections(self) -> int:
        """`rabbitmqctl close_all_connections` on this node; how many it had open."""

        def run() -> int:
            listing = self.ctl("list_connections", "-q", "--no-table-headers", "pid")
            self.ctl("close_all_connections", "closed by the test")
            return len([line for line in listing.splitlines() if line.strip()])

        return await asyncio.to_thread(run)

    def kill(self) -> None:
        """End the node however it is (the test's cleanup)."""
        with contextlib.suppress(Exception):
            self._stop()
