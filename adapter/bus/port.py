"""The bus port: what the bridge needs from a message broker, and nothing about which one.

Two guarantees of the bridge rest on this contract, so every adapter (RabbitMQ in
`adapter.bus.rabbitmq`, NATS JetStream, the in-memory one for unit tests) must keep it:

* `publish` returns only once the broker has taken responsibility for the event (a publisher
  confirm, a JetStream ack). Until then the event stays unpublished in the store, which is
  what makes a broker outage cost nothing but delay. It raises `BusUnavailable` for anything
  that may pass (no connection, a lost confirm, a nack, a timeout): the relay waits and
  publishes again, so an event may reach the bus twice but never zero times. It raises
  `Unroutable` when the broker took the event but had nowhere to put it (a mandatory publish
  that came back): an error of the deployment, reported, never silence.
* A command is acknowledged to the broker only after the handler returned its `Verdict`, and
  the handler returns only once what the command asked for is committed to the store. A crash
  in between makes the broker deliver the command again; the command's id makes that second
  delivery a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from adapter.bus.events import CloudEvent
from adapter.uftp.errors import AdapterError

__all__ = [
    "Bus",
    "BusError",
    "BusHealth",
    "BusUnavailable",
    "Command",
    "CommandHandler",
    "Unroutable",
    "Verdict",
]


class BusError(AdapterError):
    """Base of the errors a bus adapter raises on purpose."""


class BusUnavailable(BusError):
    """The broker cannot take the event now (unreachable, connection lost, confirm lost or
    negative, timeout). Temporary: publish again later."""


class Unroutable(BusError):
    """A mandatory publish came back: no queue or stream is bound for its routing key."""

    def __init__(self, route: str, detail: str = "") -> None:
        self.route = route
        super().__init__(f"no route for {route!r}" + (f": {detail}" if detail else ""))


class Verdict(StrEnum):
    """What the command handler decided; the adapter settles the delivery accordingly."""

    #: Done (or done before: a duplicate). Acknowledge.
    ACK = "ack"
    #: Never acceptable as it stands: reject without requeue, so it is dead-lettered.
    REJECT = "reject"
    #: Could not be handled now through no fault of the command (our store is down): requeue.
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Command:
    """One delivery from the commands queue, in the bus-neutral form the bridge reads.

    `attributes` are the CloudEvents attributes the message carried in binary mode, their
    binding prefix removed, with ``datacontenttype`` taken from the transport's content type
    (see `adapter.bus.events`). `message_id` is the transport's own message id (AMQP
    ``message_id``, a NATS ``Nats-Msg-Id``), used as the command id when ``id`` is absent.
    """

    attributes: Mapping[str, str]
    data: bytes
    message_id: str | None = None
    #: The broker says it delivered this message before (to us or another consumer).
    redelivered: bool = False
    #: Transport headers that are not CloudEvents attributes (for diagnostics only).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Why the transport could not read the message whole (properties that do not decode, a
    #: body above the limit, then not kept), else None: the bridge refuses such a command.
    malformed: str | None = None

    @property
    def id(self) -> str | None:
        """The idempotency key: the CloudEvents id, else the transport's message id."""
        return self.attributes.get("id") or self.message_id or None


CommandHandler = Callable[[Command], Awaitable[Verdict]]


@dataclass(frozen=True, slots=True)
class BusHealth:
    """What `/health` shows of the bus."""

    #: A connection to the broker is open now.
    connected: bool
    #: Our command consumer is registered with the broker now (False when none was asked for).
    consuming: bool
    detail: str = ""


class Bus(Protocol):
    """A message broker, as the bridge uses it. See the module docstring for the contract."""

    async def connect(self) -> None:
        """Connect and declare what the adapter's defaults need (exchanges, queues, streams).

        Raises `BusUnavailable` when the broker cannot be reached; the caller retries."""

    async def close(self) -> None:
        """Stop consuming and disconnect. Unsettled commands are redelivered by the broker."""

    async def publish(self, event: CloudEvent, route: str) -> None:
        """Publish `event` under `route` (e.g. ``in.DSOPortfolioUpdate``) in binary mode and
        return once the broker confirmed it. Raises `BusUnavailable` or `Unroutable`."""

    async def consume(self, handler: CommandHandler) -> None:
        """Start delivering commands to `handler`, one verdict per delivery; settle each only
        after `handler` returned. Keeps consuming across reconnections until `close`."""

    def health(self) -> BusHealth: ...
