"""The bus bridge of one participant: events out through the store's outbox and the relay,
commands in from the broker, and requests answered by the operator's systems.

    bridge = BusBridge.from_config(config)          # or BusBridge(MemoryBus(), ...)
    participant = Participant.from_config(config, bus=bridge)

The participant starts and stops it. What the bridge adds to the participant:

* events: the endpoint asks `inbound_events` for the events of an accepted message and
  stores them with it; the outbox asks `outcome_events` when a delivery ends; the CRO register
  asks `journal.register_change` when it applies an update. All are written in the store
  transaction of what they report; the `Relay` publishes them.
* commands: a command is a UFTP payload message (XML or its JSON form) in CloudEvents binary
  mode, its recipient in ``uftprecipient`` (``uftprecipientrole`` where the domain has several
  roles), its id (``id``, else the AMQP message-id) the idempotency key. It is filled in,
  signed and stored with its id in one transaction, and only then acknowledged; a command
  whose id is known is acknowledged and nothing is sent. An invalid one is rejected without
  requeue (dead-lettered) and an ``error.command`` event says why.
* bus-answered requests: for the request types configured so (``[handlers] bus``), nothing
  answers in-process: the request event goes out, and the response comes back as a command
  with ``causationid`` = the request's MessageID. It must answer an open request of that
  peer, of the matching type, within ``answer_within_seconds``; after that the request is
  closed unanswered and an ``error.deadline`` event says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lxml import etree

from adapter.bus.events import json_to_element
from adapter.bus.journal import EventFormat, EventJournal
from adapter.bus.port import Bus, BusHealth, BusUnavailable, Command, Verdict
from adapter.bus.relay import Relay
from adapter.config import NATS_SCHEMES
from adapter.settings import DEFAULT_MAX_BODY_BYTES
from adapter.store.base import (
    CommandOf,
    DuplicateCommand,
    EventRecord,
    InboundStatus,
    NotOpen,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
)
from adapter.uftp import codec
from adapter.uftp.errors import AdapterError, InvalidXml
from adapter.uftp.identifiers import new_id
from adapter.uftp.messages import MESSAGE_TYPES, PayloadMessage, PayloadResponse, Role
from adapter.uftp.xml import parse_xml

if TYPE_CHECKING:
    from adapter.config import BusSettings, Config
    from adapter.participant import Participant
    from adapter.server import Received

__all__ = ["BusBridge", "InvalidCommand"]

log = logging.getLogger(__name__)

#: Seconds between two attempts to reach the broker at start (the relay backs off itself).
CONNECT_RETRY_SECONDS = 2.0

#: What a command's TimeStamp and MessageID are while its schema is checked, when it left
#: them out: of the form the schema wants (xs:dateTime, a UUID), replaced when it is sent.
_PLACEHOLDER_TIME = "2000-01-01T00:00:00+00:00"
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


class InvalidCommand(AdapterError):
    """A command that can never be carried out as it stands: dead-lettered, with a reason."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusBridge:
    """See the module docstring. One per participant."""

    def __init__(
        self,
        bus: Bus,
        *,
        format: EventFormat = EventFormat.XML,
        answered: Sequence[str] = (),
        answer_within_seconds: float = 3600.0,
        consume: bool = True,
        max_command_bytes: int = 32 * 1024 * 1024,
        relay_poll_seconds: float = 1.0,
        relay_backoff_max_seconds: float = 15.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.bus = bus
        self.format = format
        #: Request types (XML names) the operator's systems answer through the bus.
        self.answered = frozenset(answered)
        self._answer_within = timedelta(seconds=answer_within_seconds)
        self._consume = consume
        self._max_command_bytes = max_command_bytes
        self._relay_poll = relay_poll_seconds
        self._relay_backoff_max = relay_backoff_max_seconds
        self._clock = clock
        self._participant: Participant | None = None
        self.journal: EventJournal | None = None
        self.relay: Relay | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._deadlines: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._expiring: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: Config) -> BusBridge:
        """The bridge a configuration's [bus] and [handlers] describe."""
        settings = config.bus
        if settings is None:
            raise ValueError("the configuration has no [bus] table")
        return cls(
            bus_for(
                settings,
                name=f"uftp-adapter {config.participant.domain}",
                max_command_bytes=config.limits.max_body_bytes,
            ),
            format=EventFormat(settings.format.value),
            answered=config.handlers.bus,
            answer_within_seconds=settings.answer_within_seconds,
            consume=settings.commands,
            max_command_bytes=config.limits.max_body_bytes,
        )

    # -- wiring (called by the participant) ---------------------------------------------------

    def attach(self, participant: Participant) -> EventJournal:
        """Bind to `participant`; the journal its endpoint, outbox and register write with."""
        self._participant = participant
        self.journal = EventJournal(
            domain=participant.domain, role=participant.role, format=self.format, clock=self._clock
        )
        return self.journal

    @property
    def participant(self) -> Participant:
        if self._participant is None:
            raise RuntimeError("the bus bridge is not attached to a participant")
        return self._participant

    async def start(self) -> None:
        """Start relaying and consuming; a broker that is away is waited for in the
        background, never a reason not to start."""
        store = self.participant.store
        self.relay = Relay(
            store,
            self.bus,
            poll_seconds=self._relay_poll,
            backoff_max=self._relay_backoff_max,
            clock=self._clock,
        )
        store.listen_events(self.relay.wake)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._connect_then_run(), name="bus-bridge")
        ]

    async def stop(self) -> None:
        for timer in self._deadlines.values():
            timer.cancel()
        self._deadlines.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._expiring, return_exceptions=True)
        self._tasks = []
        await self.bus.close()

    async def _connect_then_run(self) -> None:
        while True:
            try:
                await self.bus.connect()
                if self._consume:
                    await self.bus.consume(self.handle_command)
                break
            except BusUnavailable as exc:
                log.warning("bus: %s; trying again in %g s", exc, CONNECT_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    await self.bus.close()
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
        assert self.relay is not None
        await self.relay.run()

    def health(self) -> BusHealth:
        """The bus as `/health` shows it: the adapter's view plus the relay's state."""
        health = self.bus.health()
        relay = self.relay.state if self.relay is not None else "not started"
        alive = health.connected and (health.consuming or not self._consume)
        return BusHealth(health.connected, alive, f"{health.detail}; relay {relay}")

    # -- events -------------------------------------------------------------------------------

    async def inbound_events(
        self, message: PayloadMessage, inner_xml: bytes, sender_role: Role
    ) -> Sequence[EventRecord]:
        """The event of an inbound message accepted for handling; a response to a message a
        command sent names that command (the store finds it as it stores the event: no look-up
        of its own on the way of every response)."""
        assert self.journal is not None
        command_of = None
        if isinstance(message, PayloadResponse):
            # A 3.x TestMessageResponse names no request: its conversation does.
            command_of = (
                CommandOf(message_id=message.reference_message_id)
                if message.reference_message_id
                else CommandOf(conversation_id=message.conversation_id)
            )
        return [
            self.journal.inbound(message, inner_xml, sender_role=sender_role, command_of=command_of)
        ]

    async def outcome_events(
        self, record: OutboundRecord, status: OutboundStatus, detail: str
    ) -> Sequence[EventRecord]:
        """The outcome event of a delivery that ended; the record names its command."""
        assert self.journal is not None
        return [self.journal.outcome(record, status, detail, command_id=record.command_id)]

    # -- requests answered on the bus ---------------------------------------------------------

    def answers(self, received: Received) -> bool:
        """Whether the operator's systems answer `received` through the bus (then the
        participant leaves it open, and `await_answer` watches its deadline)."""
        message = received.message
        return (
            message.xml_name in self.answered
            and not isinstance(message, PayloadResponse)
            and not received.rejections
            and received.outcome is SaveOutcome.NEW
        )

    def await_answer(self, received: Received) -> None:
        """Close the request with an ``error.deadline`` event if no answer came in time."""
        key = (received.sender_domain, received.message.message_id)
        deadline = received.received_at + self._answer_within
        delay = max(0.0, (deadline - self._clock()).total_seconds())
        loop = asyncio.get_running_loop()
        self._deadlines[key] = loop.call_later(delay, self._expire, received)

    def _expire(self, received: Received) -> None:
        key = (received.sender_domain, received.message.message_id)
        self._deadlines.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._close_unanswered(received))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _close_unanswered(self, received: Received) -> None:
        assert self.journal is not None
        message = received.message
        event = self.journal.error(
            "deadline",
            f"{message.xml_name} {message.message_id} from {received.sender_domain} was not "
            f"answered within {self._answer_within.total_seconds():g} s; it is closed unanswered",
            extensions={
                "correlationid": message.conversation_id,
                "causationid": message.message_id,
                "uftpsender": received.sender_domain,
                "uftpsenderrole": received.sender_role,
            },
            key=f"deadline:{received.sender_domain}:{message.message_id}",
        )
        try:
            await self.participant.store.finish_inbound(
                received.sender_domain, message.message_id, None, events=[event], require_open=True
            )
        except NotOpen:
            return  # answered meanwhile
        except Exception:
            log.exception("bus: could not close unanswered %s", message.message_id)
            return
        log.warning(
            "bus: %s %s from %s not answered in time; closed",
            message.xml_name,
            message.message_id,
            received.sender_domain,
        )

    # -- commands -----------------------------------------------------------------------------

    async def handle_command(self, command: Command) -> Verdict:
        """Carry out one command; the verdict the bus adapter settles it with. Returns only
        once what the command asked for is committed (or known to have been)."""
        try:
            return await self._carry_out(command)
        except InvalidCommand as exc:
            return await self._refuse(command, str(exc))
        except DuplicateCommand:
            log.info("bus: command %s was carried out before; acknowledged", command.id)
            if command.id:
                await self._resume(command.id)
            return Verdict.ACK
        except Exception:
            # Our fault (the store, a bug): the command is not to blame, the broker redelivers
            # it (up to its delivery limit).
            log.exception("bus: command %s failed here; requeued", command.id)
            return Verdict.REQUEUE

    async def _resume(self, command_id: str) -> None:
        """Deliver the message of a command carried out before, if it still waits for it.

        The first delivery of the command may have been cut off between the commit and the
        hand-over to the outbox (its consumer cancelled as the broker connection closed): the
        message is then stored and claimed by this process, but nobody attempts it until the
        claim lapses. The broker's redelivery is the moment to notice."""
        store, outbox = self.participant.store, self.participant.outbox
        try:
            message_id = await store.command_message(command_id)
            record = None if message_id is None else await store.get_outbound(message_id)
        except Exception:  # the store: the message keeps its claim and the poller takes it
            log.exception("bus: could not look up the message of command %s", command_id)
            return
        if record is not None and record.status is OutboundStatus.PENDING:
            outbox.resume(record)  # no-op when it is scheduled or under way already

    async def _refuse(self, command: Command, reason: str) -> Verdict:
        assert self.journal is not None
        log.warning("bus: command %s refused: %s", command.id, reason)
        extensions = {
            key: command.attributes[key]
            for key in ("type", "uftprecipient", "correlationid", "causationid")
            if command.attributes.get(key)
        }
        if "type" in extensions:
            extensions["commandtype"] = extensions.pop("type")
        event = self.journal.error(
            "command",
            reason,
            command_id=command.id,
            extensions=extensions,
            key=f"error.command:{command.id}" if command.id else None,
        )
        try:
            await self.participant.store.add_events([event])
        except Exception:
            log.exception("bus: could not store the error event of command %s", command.id)
            return Verdict.REQUEUE
        return Verdict.REJECT

    async def _carry_out(self, command: Command) -> Verdict:
        participant = self.participant
        if command.malformed is not None:
            raise InvalidCommand(command.malformed)
        command_id = command.id
        if not command_id:
            raise InvalidCommand("the command has no id (CloudEvents id or message-id)")
        # No look-up of the id first: the store refuses a known one in the transaction that
        # would carry the command out (DuplicateCommand), which also settles two deliveries
        # of one command handled at once.
        recipient = command.attributes.get("uftprecipient", "").strip().lower()
        if not recipient:
            raise InvalidCommand("the command names no recipient (uftprecipient)")
        role_text = command.attributes.get("uftprecipientrole")
        try:
            role = Role(role_text.upper()) if role_text else None
        except ValueError:
            raise InvalidCommand(f"uftprecipientrole {role_text!r} is not a UFTP role") from None
        root = self._parse(command)
        kind = MESSAGE_TYPES.get(str(root.tag))
        if kind is None:
            raise InvalidCommand(f"<{root.tag}> is not a UFTP message type this adapter sends")
        declared = command.attributes.get("type")
        if declared and declared != f"uftp.{kind.xml_name}":
            raise InvalidCommand(f"type {declared!r} does not match the body's {kind.xml_name}")
        if issubclass(kind, PayloadResponse):
            return await self._answer(command_id, command, root, kind, recipient)
        self._fill_placeholders(root, kind, recipient, command)
        message = self._decode(root)
        try:
            record = await participant.compose(
                message,
                recipient,
                role=role,
                conversation_id=command.attributes.get("correlationid") or None,
                command_id=command_id,
            )
        except LookupError as exc:  # UnknownPeer
            raise InvalidCommand(str(exc)) from None
        await participant.store.add_outbound(record)
        participant.outbox.deliver_now(record)
        log.info(
            "bus: command %s -> %s %s to %s",
            command_id,
            record.message_type,
            record.message_id,
            recipient,
        )
        return Verdict.ACK

    async def _answer(
        self,
        command_id: str,
        command: Command,
        root: etree._Element,
        kind: type[PayloadMessage],
        recipient: str,
    ) -> Verdict:
        """A response from the operator's systems to a request answered on the bus."""
        participant = self.participant
        request_id = command.attributes.get("causationid")
        if not request_id:
            raise InvalidCommand(f"a {kind.xml_name} needs causationid: the request it answers")
        request = await participant.store.get_inbound(recipient, request_id)
        assert issubclass(kind, PayloadResponse)
        if request is None or request.message_type != kind.request_type.xml_name:
            raise InvalidCommand(
                f"no {kind.request_type.xml_name} {request_id} from {recipient} to answer"
            )
        if request.status is not InboundStatus.RECEIVED:
            if await participant.store.command_message(command_id) is not None:
                raise DuplicateCommand(command_id)  # this command answered it
            raise InvalidCommand(f"{request_id} from {recipient} is not open (answered or expired)")
        if self._clock() > request.received_at + self._answer_within:
            raise InvalidCommand(f"the deadline to answer {request_id} has passed")
        version = (
            request.version if request.version in participant.versions else participant.versions[0]
        )
        self._fill_placeholders(
            root, kind, recipient, command, version=version, reference=request_id
        )
        message = self._decode(root)
        try:
            record = await participant.compose(
                message,
                recipient,
                role=Role(request.sender_role),
                version=version,
                conversation_id=request.conversation_id,
                reference_message_id=request_id,
                command_id=command_id,
            )
        except LookupError as exc:
            raise InvalidCommand(str(exc)) from None
        try:
            await participant.store.finish_inbound(recipient, request_id, record, require_open=True)
        except NotOpen:
            raise InvalidCommand(f"{request_id} from {recipient} is not open") from None
        timer = self._deadlines.pop((recipient, request_id), None)
        if timer is not None:
            timer.cancel()
        participant.outbox.deliver_now(record)
        log.info("bus: command %s answers %s with %s", command_id, request_id, record.message_id)
        return Verdict.ACK

    def _parse(self, command: Command) -> etree._Element:
        if len(command.data) > self._max_command_bytes:
            raise InvalidCommand(f"the body exceeds {self._max_command_bytes} bytes")
        content_type = command.attributes.get("datacontenttype", "").split(";")[0].strip().lower()
        try:
            if content_type in ("application/json", "text/json"):
                return json_to_element(command.data)
            if content_type in ("", "text/xml", "application/xml"):
                return parse_xml(command.data)
        except InvalidXml as exc:
            raise InvalidCommand(exc.detail) from None
        raise InvalidCommand(f"content type {content_type!r}: expected text/xml or JSON")

    def _fill_placeholders(
        self,
        root: etree._Element,
        kind: type[PayloadMessage],
        recipient: str,
        command: Command,
        *,
        version: str | None = None,
        reference: str | None = None,
    ) -> None:
        """Give the metadata the command may leave out a value, so that the schema can judge
        the rest; the participant replaces it all when it sends (`Participant.compose`).

        The TimeStamp and MessageID it replaces whatever they are: fixed values of the right
        form do here (no clock read, no random id that is thrown away). The ConversationID
        is kept when the command has no ``correlationid``: a new conversation's id, then."""
        participant = self.participant
        wanted = version or root.get("Version") or participant.versions[0]
        root.set("Version", wanted)
        get, put = root.get, root.set
        if get("SenderDomain") is None:
            put("SenderDomain", participant.domain)
        if get("RecipientDomain") is None:
            put("RecipientDomain", recipient)
        if get("TimeStamp") is None:
            put("TimeStamp", _PLACEHOLDER_TIME)
        if get("MessageID") is None:
            put("MessageID", _PLACEHOLDER_ID)
        if get("ConversationID") is None:
            put("ConversationID", command.attributes.get("correlationid") or new_id())
        if reference is not None and issubclass(kind, PayloadResponse):
            attribute = "ReferenceMessageID" if codec.is_draft(wanted) else kind.v3_reference
            if attribute is not None:
                root.set(attribute, reference)

    @staticmethod
    def _decode(root: etree._Element) -> PayloadMessage:
        try:
            return codec.decode_element(root)
        except InvalidXml as exc:
            raise InvalidCommand(f"not a valid UFTP message: {exc.detail}") from None


def bus_for(
    settings: BusSettings,
    *,
    name: str = "uftp-adapter",
    max_command_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Bus:
    """The bus adapter for a [bus] url (its driver is imported only then). The RabbitMQ
    adapter keeps no command body above `max_command_bytes` (the bridge refuses it)."""
    scheme = settings.url.split("://", 1)[0]
    if scheme in ("amqp", "amqps"):
        from adapter.bus.rabbitmq import RabbitBus, Topology

        topology = Topology(
            events_exchange=settings.exchange,
            commands_exchange=settings.commands_exchange,
            commands_queue=settings.commands_queue,
            dead_letter_exchange=settings.dead_letter_exchange,
            dead_letter_queue=settings.dead_letter_queue,
            delivery_limit=settings.delivery_limit,
            prefetch=settings.prefetch,
        )
        return RabbitBus(settings.url, topology, name=name, max_command_bytes=max_command_bytes)
    if scheme in NATS_SCHEMES:
        from adapter.bus.nats import NatsBus

        # The RabbitMQ names of the defaults spell the NATS subject prefixes as well.
        return NatsBus(
            settings.url,
            stream=settings.stream,
            events_subject=settings.exchange,
            commands_stream=settings.commands_stream,
            commands_subject=settings.commands_exchange,
            dead_stream=settings.dead_stream,
            dead_subject=settings.dead_letter_exchange,
            max_deliver=settings.delivery_limit,
            batch=settings.prefetch,
            name=name,
        )
    raise ValueError(f"no bus adapter for {scheme}:// (RabbitMQ: amqp://, NATS: nats://)")
