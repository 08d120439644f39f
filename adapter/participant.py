"""One UFTP participant: endpoint, handlers, outbox and the correlation of requests with their
responses, tied together.

    participant = Participant.from_config(load_config("config/dso.toml"))
    async with participant:
        response = await participant.request(update, to="cro.example.com")

Responses are asynchronous in UFTP (message-transport-mechanism.md, "Awaiting reply"): a
request is answered by a separate signed POST from the peer, correlated by ConversationID
and the reference to the request's MessageID. `request()` hides that behind one await;
`send()` is fire-and-forget. A response that arrives when nobody awaits it any more still
reaches its handler, if one is registered.

Several processes may run one participant on one PostgreSQL store (``serve --workers N``, or
several hosts behind a load balancer). Each message still to be worked on then has one owner
(the store's claims, renewed here every third of the store's lease); a response wakes the
`request()` that awaits it in whichever process it arrives (`adapter.waiters`); and the
messages a dead process acknowledged but did not handle are taken over, after its claims
lapse, by the one process that holds the store's "recovery" singleton (`Coordinator`), which
passes to another process when its holder dies. One process per SQLite store: the store
refuses a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from aiohttp import web

from . import assemble, listen
from .assemble import TlsContexts
from .bulk import LARGE_MESSAGES
from .client import Client, DeliveryResult
from .config import Config
from .directory import Directory, Peer
from .errors import DeliveryFailed as DeliveryFailed  # defined here before adapter.errors
from .errors import ResponseTimeout as ResponseTimeout
from .errors import UnknownPeer as UnknownPeer
from .keys import PrivateKeys
from .limits import PerKeyLimit
from .ops.observer import NULL_OBSERVER, Observer
from .outbox import Outbox
from .rotation import KeyRing
from .router import HandlerContext, Router
from .server import THREAD_THRESHOLD, Endpoint, Received
from .settings import Delivery, Limits, ListenAddress
from .store.base import (
    EventRecord,
    InboundRecord,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
    StorageError,
    Store,
)
from .store.coordination import Coordinator
from .uftp import answers, codec, envelope
from .uftp.answers import accepted as accepted  # its old home: importable from here still
from .uftp.answers import rejected
from .uftp.errors import InvalidXml, KeyLookupFailed, Reason, Rejection
from .uftp.identifiers import new_id, new_message_id
from .uftp.inbound import message_path
from .uftp.messages import (
    RESPONSE_TYPES,
    PayloadMessage,
    PayloadRequest,
    PayloadResponse,
    Role,
    TestMessage,
    TestMessageResponse,
)
from .uftp.retry import Backoff
from .waiters import Matcher, matcher_for

if TYPE_CHECKING:
    from .bus.journal import EventJournal
    from .bus.port import BusHealth
    from .oauth2 import Credentials

log = logging.getLogger(__name__)

M = TypeVar("M", bound=PayloadMessage)
R = TypeVar("R", bound=PayloadResponse)


class BusAttachment(Protocol):
    """What the participant asks of a message-bus bridge (`adapter.bus.bridge.BusBridge`).

    A Protocol rather than the class: the bridge drives the participant (it composes and
    stores the messages its commands ask for), so the participant may not import it back.
    `adapter.run.participant_for` builds the bridge of a [bus] table and passes it in."""

    def attach(self, participant: Participant) -> EventJournal: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> BusHealth: ...

    async def inbound_events(
        self, message: PayloadMessage, inner_xml: bytes, sender_role: Role
    ) -> Sequence[EventRecord]: ...

    async def outcome_events(
        self, record: OutboundRecord, status: OutboundStatus, detail: str
    ) -> Sequence[EventRecord]: ...

    def answers(self, received: Received) -> bool: ...

    def await_answer(self, received: Received) -> None: ...


#: What handling a message may meet that is our fault, not its sender's: the store failing
#: (disk full, database down: `StorageError`) or the operating system (a full disk or an
#: unreachable service in a handler's own I/O). Such a message is never rejected for it: it
#: stays unfinished and is handled again, with backoff, while the process runs.
#: A peer's keys or endpoint that DNS cannot give now (`KeyLookupFailed`) wait alike.
OUR_FAULTS: tuple[type[Exception], ...] = (StorageError, OSError, KeyLookupFailed)
#: Unhandled messages taken over at once: the handler slots bound how many run.
RECOVERY_BATCH = 1000
#: How long `stop()` lets the news of deliveries that ended while stopping go out.
STOP_NEWS_SECONDS = 2.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Participant:
    """One UFTP participant: who it is (`domain`, `role`, `keys`, the `versions` it speaks),
    where it keeps its messages (`store`), who its peers are (`directory`), what it answers
    (`router`), and how it runs, as settings objects with one default each
    (`adapter.settings`): where it listens, how it delivers and retries (`Delivery`), what
    a peer may take of it (`Limits`), and its TLS contexts (`TlsContexts`; None: plain
    HTTP, and the system's CAs for the peers' certificates)."""

    def __init__(
        self,
        *,
        domain: str,
        role: Role,
        keys: PrivateKeys | KeyRing,
        store: Store,
        directory: Directory,
        versions: tuple[str, ...] = ("3.1.0",),
        router: Router | None = None,
        listen: ListenAddress | None = None,
        delivery: Delivery | None = None,
        limits: Limits | None = None,
        tls: TlsContexts | None = None,
        clock: Callable[[], datetime] = utc_now,
        bus: BusAttachment | None = None,
    ) -> None:
        self.domain = domain
        self.role = role
        self.versions = versions
        self.router = router if router is not None else Router()
        self.store = store
        self.directory = directory
        #: What we sign with; a `KeyRing` follows a key rotation (`adapter.rotation`).
        self._keys = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        self._clock = clock
        address = listen or ListenAddress()
        self._host, self._port = address.host, address.port
        self.delivery = delivery = delivery or Delivery()
        self.limits = limits = limits or Limits()
        self._server_ssl = tls.server if tls is not None else None
        self._client = Client(delivery, ssl_context=tls.client if tls is not None else None)
        #: What the processes sharing the store coordinate (in memory for one process).
        self.coordinator: Coordinator = store.coordinator()
        self.outbox = Outbox(
            store,
            self._client,
            delivery,
            clock,
            self._on_delivery_final,
            peer_slots=self.coordinator.peer_slots(limits.deliveries_per_peer),
        )
        self._endpoint = Endpoint(
            domain=domain,
            role=role,
            versions=versions,
            directory=directory,
            store=store,
            clock=clock,
            on_received=self._on_received,
            limits=limits,
        )
        self._handler_slots = asyncio.Semaphore(delivery.handler_concurrency)
        #: One sender's share of those slots, so that a noisy peer leaves some.
        self._sender_slots = PerKeyLimit(limits.handlers_per_sender)
        self._handler_tasks: set[asyncio.Task[None]] = set()
        #: Handling that met one of `OUR_FAULTS` waits here to be tried again, by (sender,
        #: MessageID); the schedule is the outbox's.
        self._handling_retries: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._retry_schedule = Backoff(
            delivery.backoff_initial_seconds, delivery.backoff_max_seconds
        )
        self._rng = random.Random()
        self._running = False
        #: Our requests awaiting their responses: here, or in any process of the store.
        self.waiters: Matcher = matcher_for(self.coordinator, store)
        #: Taking over what dead processes left unhandled: one process of the store at a time.
        self._recovery = self.coordinator.singleton("recovery")
        #: (sender, MessageID) of the messages this process is handling or will handle again.
        self._in_hand: set[tuple[str, str]] = set()
        #: Renewing claims, taking over unhandled messages.
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._listening: list[asyncio.Server] = []
        #: The message-bus bridge (adapter.bus), when one is configured: it writes events
        #: with the endpoint's and the outbox's transactions and answers requests it takes.
        self.bus = bus
        self.journal: EventJournal | None = None
        if bus is not None:
            self.journal = bus.attach(self)
            self._endpoint.events = bus.inbound_events
            self._endpoint.bus_health = bus.health
            self.outbox.events = bus.outcome_events
        self._endpoint.settles = self._settles
        self._observer: Observer = NULL_OBSERVER

    @property
    def observer(self) -> Observer:
        """What is told of this participant's work (`adapter.ops.metrics` measures it)."""
        return self._observer

    @observer.setter
    def observer(self, observer: Observer) -> None:
        self._observer = self._endpoint.observer = self.outbox.observer = observer

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        router: Router | None = None,
        store: Store | None = None,
        bus: BusAttachment | None = None,
    ) -> Participant:
        """A participant as the configuration file describes it (with its [bus] bridge)."""
        settings = config.participant
        tls = assemble.tls_contexts(config)
        directory = assemble.directory_for(config, ssl_context=tls.client)
        participant = cls(
            domain=settings.domain,
            role=settings.role,
            keys=assemble.key_ring(settings),
            store=store
            or assemble.new_store(settings, lease_seconds=config.delivery.lease_seconds),
            directory=directory,
            versions=settings.versions,
            router=router,
            listen=settings.listen,
            delivery=config.delivery,
            limits=config.limits,
            tls=tls,
            bus=bus,
        )
        # OAuth2 (adapter.oauth2): our tokens for the peers that want one, theirs checked.
        participant._client.credentials = assemble.credentials_for(
            config, directory, ssl_context=tls.client
        )
        participant._endpoint.bearer = assemble.bearer_check(config, ssl_context=tls.client)
        return participant

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, *, sockets: list[socket.socket] | None = None) -> None:
        """Open the store, bind the port, then deliver, recover and serve.

        The store is opened first: a SQLite store in use by another process refuses (see
        `adapter.store.sqlite`), naming it. The port is bound before anything is sent or
        handled: a participant that cannot listen (`listen.CannotListen`: the port is taken,
        say by another instance on the same store) fails having sent nothing, and closes
        what it opened. `sockets`, if given, are listening already (a worker of
        ``serve --workers``, whose parent bound them) and are used instead.

        What a previous run (or a dead process) acknowledged but did not finish is claimed
        before the endpoint accepts a connection, if this process holds the store's recovery
        singleton; a message arriving now is claimed by this process as it is stored, so it
        cannot be taken for one of them and handled twice.
        """
        await self.store.open()
        try:
            if sockets is None:
                sockets = listen.bind(self._host, self._port)
        except BaseException:
            await self.store.close()
            raise
        try:
            self._port = sockets[0].getsockname()[1]
            await self.coordinator.start()
            self._runner = self._endpoint.runner()
            await self._runner.setup()
            unfinished = await self._claim_unfinished()
            await self._client.start()
            self._running = True
            await self.outbox.start()
            if self.bus is not None:
                await self.bus.start()
            for record in unfinished:
                self._recover_later(record)
            self._listening = await self._endpoint.listen(self._runner, sockets, self._server_ssl)
            self._start_background(self._renew_claims())
            self._start_background(self._take_over_unhandled())
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.stop()
            raise
        self._endpoint.serving = True
        log.info("%s %s listening on %s", self.role, self.domain, self.url())

    async def stop(self) -> None:
        """Stop serving; in-flight handlers finish, pending deliveries stay in the store.

        The outbox stops first, so that no new POST starts while we wind down: responses the
        finishing handlers queue wait in the store for the next start. Messages waiting to be
        handled again after a fault of ours stay unfinished in the store, for the next start."""
        self._endpoint.serving = False
        self._running = False
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for timer in self._handling_retries.values():
            timer.cancel()
        self._handling_retries.clear()
        if self.bus is not None:
            await self.bus.stop()  # no new commands; unpublished events wait in the store
        await self.outbox.stop()
        for server in self._listening:
            server.close()  # no new connections; the runner closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for server in self._listening:
            await server.wait_closed()
        self._listening = []
        if self._handler_tasks:
            await asyncio.gather(*list(self._handler_tasks), return_exceptions=True)
        if self._background:  # news of deliveries that ended meanwhile, told while we can
            await asyncio.wait(list(self._background), timeout=STOP_NEWS_SECONDS)
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._client.close()
        await self.waiters.close()
        self._in_hand.clear()
        await self.coordinator.close()
        await self.store.close()  # releases its claims: other processes take them at once

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def credentials(self) -> Credentials | None:
        """The OAuth2 tokens our POSTs carry, by endpoint (`adapter.oauth2`)."""
        return self._client.credentials

    def reload_keys(self) -> None:
        """Read our key files again (SIGHUP): `keys activate` may have replaced NAME.key."""
        self._keys.reload()

    def url(self, version: str | None = None) -> str:
        """Our message endpoint, as peers should be configured to reach it."""
        major = int((version or self.versions[0]).split(".")[0])
        scheme = "https" if self._server_ssl else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}{message_path(major)}"

    @property
    def port(self) -> int:
        return self._port

    # -- sending --------------------------------------------------------------------------------

    async def send(self, message: M, to: str, *, role: Role | None = None) -> M:
        """Queue `message` durably for `to` and return it with its metadata filled in.

        Raises `UnknownPeer` when `to` is not a configured peer for this message type.
        """
        peer = await self._peer_for(to, role, type(message))
        filled = self._fill(message, peer.domain)
        await self.outbox.submit(self._outbound(filled, peer))
        return filled

    async def request(
        self,
        message: PayloadRequest[R],
        to: str,
        *,
        role: Role | None = None,
        timeout: float = 60.0,
    ) -> R:
        """Send `message` and wait for the response that answers it, of the type the request
        names (a DSOPortfolioUpdate is answered by a DSOPortfolioUpdateResponse, and a type
        checker knows it).

        Raises `DeliveryFailed` when the message cannot be delivered, `ResponseTimeout` when
        no response arrives within `timeout` seconds.
        """
        peer = await self._peer_for(to, role, type(message))
        filled = self._fill(message, peer.domain)
        future = self.waiters.expect(filled, peer.domain)
        try:
            await self.outbox.submit(self._outbound(filled, peer))
            # One loop timer that ends the wait, rather than an `asyncio.timeout` around it
            # (a context object, and the task's cancellation and its undoing, per request).
            timer = asyncio.get_running_loop().call_later(
                timeout, _time_out, future, filled, timeout
            )
            try:
                return filled.response_from(await future)
            finally:
                timer.cancel()
        finally:
            self.waiters.forget(filled)

    async def withdraw(self, message_id: str) -> OutboundRecord | None:
        """Stop delivering a message we sent, if it has not been delivered yet; its record
        after (status CANCELLED if it was withdrawn, else how its delivery ended). A POST on
        the wire is let finish first. None for an unknown MessageID.

        For a sender that stops waiting (`request` raised `ResponseTimeout`): a message
        still being retried would otherwise arrive, and be acted on, later without anyone
        being told."""
        return await self.outbox.withdraw(message_id)

    async def compose(
        self,
        message: PayloadMessage,
        to: str,
        *,
        role: Role | None = None,
        version: str | None = None,
        conversation_id: str | None = None,
        reference_message_id: str | None = None,
        command_id: str | None = None,
    ) -> OutboundRecord:
        """`message` for `to` with its metadata filled, sealed, but not yet stored: for a
        sender that stores it in a transaction of its own (the bus bridge, with its command,
        whose id `command_id` the record carries).

        Raises `UnknownPeer` as `send` does."""
        peer = await self._peer_for(to, role, type(message))
        filled = answers.fill(
            message,
            version=version or message.version or self.versions[0],
            sender_domain=self.domain,
            recipient_domain=peer.domain,
            time_stamp=self._clock(),
            message_id=new_message_id(),
            conversation_id=conversation_id or message.conversation_id or new_id(),
        )
        if (
            reference_message_id
            and isinstance(filled, PayloadResponse)
            and filled.reference_message_id != reference_message_id
        ):
            filled = dataclasses.replace(filled, reference_message_id=reference_message_id)
        return self._outbound(filled, peer, command_id=command_id)

    async def _peer_for(self, domain: str, role: Role | None, kind: type[PayloadMessage]) -> Peer:
        roles = (
            {role} if role is not None else kind.recipient_roles & self.directory.roles_of(domain)
        )
        if not roles:
            # A source that asks the network (DNS) knows a domain's roles once asked.
            found = [await self.directory.lookup(domain, r) for r in sorted(kind.recipient_roles)]
            roles = {peer.role for peer in found if peer is not None}
        if len(roles) == 1:
            peer = await self.directory.lookup(domain, next(iter(roles)))
            if peer is not None:
                return peer
        wanted = f" as {role}" if role else ""
        raise UnknownPeer(f"no peer {domain}{wanted} configured to receive {kind.xml_name}")

    def _fill(self, message: M, recipient: str) -> M:
        """The message with the metadata of a request we send now: its composer's Version
        and ConversationID if it chose them, else the Version we send and a new
        conversation."""
        return answers.fill(
            message,
            version=message.version or self.versions[0],
            sender_domain=self.domain,
            recipient_domain=recipient,
            time_stamp=self._clock(),
            message_id=new_message_id(),
            conversation_id=message.conversation_id or new_id(),
        )

    def _outbound(
        self, message: PayloadMessage, peer: Peer, *, command_id: str | None = None
    ) -> OutboundRecord:
        # Not validated again here: the codec writes only what the models allow, and a
        # schema problem in our data shows as the peer's HTTP 400, which `_on_delivery_final`
        # then explains by validating the sent message locally.
        inner = codec.encode(message, validate=False)
        log.debug("outbound %s body: %r", message.message_id, inner)
        now = self._clock()
        sealed = envelope.seal(inner, self._keys.signing(now), self.domain, self.role)
        reference = message.reference_message_id if isinstance(message, PayloadResponse) else ""
        return OutboundRecord(
            message_id=message.message_id,
            recipient_domain=peer.domain,
            recipient_role=peer.role.value,
            message_type=message.xml_name,
            conversation_id=message.conversation_id,
            reference_message_id=reference or None,
            endpoint=peer.endpoint,
            envelope=sealed,
            created_at=now,
            deadline=self.outbox.new_deadline(now),
            next_attempt_at=now,
            command_id=command_id,
        )

    def _on_delivery_final(
        self, record: OutboundRecord, status: OutboundStatus, result: DeliveryResult
    ) -> None:
        if status is OutboundStatus.DELIVERED:
            return
        if result.status == 400:
            problem = _schema_problem(record)
            if problem:
                result = dataclasses.replace(result, detail=f"{result.detail} [{problem}]")
        log.error(
            "delivery of %s %s to %s failed for good: %s",
            record.message_type,
            record.message_id,
            record.recipient_domain,
            result.detail or record.last_error,
        )
        error = DeliveryFailed(record.message_id, status, result)
        if not self.waiters.fail_here(record.message_id, error):
            # Awaited in another process, perhaps (it added the message; this one took it
            # over): tell the others.
            self._start_background(self.waiters.fail(record.message_id, error))

    # -- receiving ------------------------------------------------------------------------------

    def _on_received(self, received: Received) -> Awaitable[None] | None:
        """Called by the endpoint once a message is stored, before the sender gets its 200;
        the endpoint awaits what it returns before it writes the 200.

        That is one turn of the event loop, in which the handling just scheduled takes its
        first step (the handler, and its response submitted to the store), so that a
        response is on its way to the store before the 200 wakes the sender up: the 200
        only tells the sender to mark its message delivered, while the response is what it
        waits for. Written first, the 200 would have the sender's process and ours compete
        for a core at that moment, with our response behind it. The handling itself stays
        after the store: it was scheduled only now. Not for a large message, whose handler
        may work for a long while before it first pauses: its sender gets its 200 first.
        Nor for a response, which has no response of its own to start: its handling wakes
        the `request()` waiting for it, and its sender, waiting for the 200 to mark its
        message delivered, comes first (a caller of `request()` then finds it so)."""
        if received.outcome is SaveOutcome.ALREADY_SUBMITTED:
            return None  # handled (or being handled) already; the first response stands
        if received.outcome is SaveOutcome.DUPLICATE_IDENTIFIER and isinstance(
            received.message, PayloadResponse
        ):
            # A response is never answered, so a Duplicate Identifier has nobody to go to;
            # and this copy is not stored: the first, which is, stands, and this one is not
            # believed (handed to no waiter or handler).
            log.warning(
                "ignoring a %s from %s: its MessageID came before with other content",
                received.message.xml_name,
                received.sender_domain,
            )
            log.debug("ignored copy of %s", received.message.message_id)
            return None
        if received.outcome is SaveOutcome.NEW:  # (a Duplicate Identifier is not stored)
            self._in_hand.add((received.sender_domain, received.message.message_id))
        self._schedule_handling(self._handle(received))
        answered = isinstance(received.message, PayloadRequest)
        small = len(received.envelope) <= THREAD_THRESHOLD
        return asyncio.sleep(0) if answered and small else None

    def _settles(self, message: PayloadMessage, sender_domain: str) -> bool:
        """Whether `message` may be stored handled at once (`Endpoint.settles`): a response
        whose only handling is in this process's memory, so that a crash before it loses
        nothing that handling it again would give back.

        That is a response with no handler of ours to call and no retry of its request to
        end in the store (`Outbox.answered`), whose resolving (`Matcher.resolve`) is this
        process's alone: waking a `request()` of this process, which dies with it, or nothing
        at all (sent with `send`, or a command's message: the bus hears of it by the event
        stored with it). A response that another process of a shared store may await is
        stored unfinished and finished after its handling, as every request is: that process
        must hear of it even if this one dies first. One statement to the store instead of
        two, for the commonest message a participant receives."""
        if not isinstance(message, PayloadResponse):
            return False
        if self.router.handler_for(type(message)) is not None:
            return False
        reference = message.reference_message_id
        if reference and self.outbox.awaits_retry(reference):
            return False
        return self.waiters.resolves_in_memory(message, sender_domain)

    def _schedule_handling(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    def _start_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` until it ends or the participant stops; an error is logged."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background task of the participant failed", exc_info=task.exception())

    async def _claim_unfinished(self) -> list[InboundRecord]:
        """The unhandled messages nobody holds, claimed, if this process runs the store's
        recovery; none otherwise."""
        if not await self._recovery.try_acquire():
            return []
        return await self.store.claim_unfinished_inbound(RECOVERY_BATCH)

    def _recover_later(self, record: InboundRecord) -> None:
        key = (record.sender_domain, record.message_id)
        if key in self._in_hand:
            return  # ours already (its claim lapsed while the event loop was stalled)
        self._in_hand.add(key)
        self._schedule_handling(self._recover(record))

    async def _renew_claims(self) -> None:
        """Renew the store's claims every third of its lease, so that they last while this
        process lives: a renewal that fails leaves two more before they lapse."""
        interval = self.store.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.renew_claims()
            except StorageError as exc:
                log.warning("cannot renew this process's claims in the store: %s", exc)

    async def _take_over_unhandled(self) -> None:
        """Every quarter of the store's lease: ask for the recovery singleton if another
        process holds it; holding it, take over what a dead process left unhandled once its
        claims lapsed."""
        interval = self.store.lease.total_seconds() / 4
        while True:
            await asyncio.sleep(interval)
            try:
                records = await self._claim_unfinished()
            except StorageError as exc:
                log.warning("cannot look for unhandled messages in the store: %s", exc)
                continue
            if records:
                log.info("taking over unhandled messages of a process that died: %d", len(records))
            for record in records:
                self._recover_later(record)

    async def _recover(self, record: InboundRecord) -> None:
        """Handle a message a previous run acknowledged but did not finish handling."""
        signed = envelope.parse_envelope(record.envelope)
        inner = signed.sealed[envelope.SIGNATURE_BYTES :]  # verified before it was stored
        message = codec.decode(inner, bulk=LARGE_MESSAGES)
        log.info("recovering an unfinished %s from %s", message.xml_name, record.sender_domain)
        log.debug("recovering %s", message.message_id)
        await self._handle(
            Received(
                message=message,
                sender_domain=record.sender_domain,
                sender_role=Role(record.sender_role),
                envelope=record.envelope,
                inner_xml=inner,
                received_at=record.received_at,
                # Joined by the server from `rules.protocol_rejections`, fixed texts of ours
                # with no "; " in them: the split gives them back exactly.
                rejections=tuple(record.rejection.split("; ")) if record.rejection else (),
                outcome=SaveOutcome.NEW,
            )
        )

    async def _handle(self, received: Received, failures: int = 0) -> None:
        """Handle `received` and queue its response; never raises.

        A fault of ours (`OUR_FAULTS`: the register write or `finish_inbound` failing on a
        full disk, say) leaves the message unfinished and tries it again after a backoff
        delay, for as long as the process runs: the sender already has its 200, and a copy
        it sends again is "Already Submitted", so this is what answers it in the end.
        Anything else is a bug: logged, and the message is tried again at the next start.
        """
        message = received.message
        if self.bus is not None and self.bus.answers(received):
            self.bus.await_answer(received)  # the operator's systems answer, on the bus
            return
        key = (received.sender_domain, message.message_id)
        # The sender's slot first: its messages waiting for one hold no global slot.
        async with self._sender_slots.hold(received.sender_domain), self._handler_slots:
            started = time.perf_counter()
            outcome = "error"
            try:
                await self._handle_once(received)
                outcome = "ok"
                if failures:
                    log.warning(
                        "%s from %s handled after %d failures of ours",
                        message.xml_name,
                        received.sender_domain,
                        failures,
                    )
                self._in_hand.discard(key)
                return
            except OUR_FAULTS as exc:
                fault: Exception = exc
                outcome = "fault"
            except Exception:
                log.exception(
                    "handling a %s from %s failed", message.xml_name, received.sender_domain
                )
                log.debug("the %s that failed is %s", message.xml_name, message.message_id)
                # It stays unfinished in the store, and held by this process while it runs:
                # handled again at the next start, or by another process after this one.
                return
            finally:
                self._observer.handled(message.xml_name, outcome, time.perf_counter() - started)
        self._retry_handling(received, failures + 1, fault)

    async def _handle_once(self, received: Received) -> None:
        message = received.message
        response = await self._respond(received)
        outbound = None
        if response is not None:
            peer = await self.directory.lookup(received.sender_domain, received.sender_role)
            if peer is None:
                raise UnknownPeer(f"{received.sender_domain} is no longer configured")
            outbound = self._outbound(response, peer)
        if received.outcome is SaveOutcome.DUPLICATE_IDENTIFIER:
            # The conflicting copy is not stored as an inbound message (its key belongs
            # to the original); only the rejection goes out.
            if outbound is not None:
                await self.outbox.submit(outbound)
            return
        if not received.settled:  # (a settled message has no response: `_settles`)
            await self.store.finish_inbound(received.sender_domain, message.message_id, outbound)
        if outbound is not None:
            self.outbox.deliver_now(outbound)

    def _retry_handling(self, received: Received, failures: int, fault: Exception) -> None:
        """Try `received` again later: it met a fault of ours for the `failures`-th time."""
        message = received.message
        if not self._running:
            log.error(
                "handling %s from %s failed for a fault of ours while stopping (%s): it stays "
                "unfinished, to be handled at the next start",
                message.xml_name,
                received.sender_domain,
                fault,
            )
            return
        delay = self._retry_schedule.delay(failures, self._rng)
        # Not the peer's fault: nothing is answered meanwhile, and the text is ours to log.
        log.error(
            "handling %s from %s failed for a fault of ours (%s: %s); it stays unfinished and "
            "is tried again in %.1f s (failure %d)",
            message.xml_name,
            received.sender_domain,
            type(fault).__name__,
            fault,
            delay,
            failures,
        )
        log.debug("the message that met a fault of ours: %s", message.message_id)
        key = (received.sender_domain, message.message_id)
        self._handling_retries[key] = asyncio.get_running_loop().call_later(
            delay, self._handle_again, key, received, failures
        )

    def _handle_again(self, key: tuple[str, str], received: Received, failures: int) -> None:
        self._handling_retries.pop(key, None)
        if self._running:
            self._schedule_handling(self._handle(received, failures))

    async def _respond(self, received: Received) -> PayloadResponse | None:
        """Run the handler stage; the response to send, metadata complete, or None."""
        message = received.message
        if isinstance(message, PayloadResponse):
            if received.rejections:
                # A response is never answered; one that fails the protocol checks (another
                # sender inside than outside, not addressed to us, ...) is kept, not believed.
                log.warning(
                    "ignoring a %s from %s: %s",
                    message.xml_name,
                    received.sender_domain,
                    "; ".join(received.rejections),
                )
                log.debug("ignored %s", message.message_id)
                return None
            if message.reference_message_id:
                self.outbox.answered(message.reference_message_id, received.sender_domain)
            # Here, or in the process that awaits it (a failure to tell it is our fault).
            await self.waiters.resolve(message, received.sender_domain)
            await self._call_handler(received)
            return None
        if received.outcome is SaveOutcome.DUPLICATE_IDENTIFIER:
            reasons: tuple[str, ...] = (Reason.DUPLICATE_IDENTIFIER,)
        elif received.rejections:
            reasons = received.rejections
        else:
            try:
                response = await self._call_handler(received)
            except Rejection as rejection:
                reasons = rejection.reasons
            except OUR_FAULTS:
                raise  # not the sender's fault: `_handle` tries again, nothing is answered
            except Exception:
                log.exception(
                    "the handler of a %s from %s raised", message.xml_name, received.sender_domain
                )
                log.debug("the %s it raised for is %s", message.xml_name, message.message_id)
                reasons = (Reason.INVALID_MESSAGE,)
            else:
                return self._complete_response(response, received)
        # The reasons may name connections (personal data): their text only at debug.
        log.info(
            "rejecting a %s from %s (%d reasons)",
            message.xml_name,
            received.sender_domain,
            len(reasons),
        )
        log.debug("rejection reasons for %s: %s", message.message_id, "; ".join(reasons))
        return self._complete_response(rejected(message, reasons), received)

    async def _call_handler(self, received: Received) -> PayloadResponse | None:
        message = received.message
        handler = self.router.handler_for(type(message))
        if handler is None:
            if isinstance(message, PayloadResponse):
                return None
            if isinstance(message, TestMessage):
                return TestMessageResponse()
            raise Rejection(Reason.INVALID_MESSAGE)
        context = HandlerContext(
            sender_domain=received.sender_domain,
            sender_role=received.sender_role,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            envelope=received.envelope,
            inner_xml=received.inner_xml,
            received_at=received.received_at,
            participant=self,
        )
        return await handler(message, context)

    def _complete_response(
        self, response: PayloadResponse | None, received: Received
    ) -> PayloadResponse:
        """Give a handler's response the metadata of an answer to `received`."""
        request = received.message
        expected = RESPONSE_TYPES[type(request)]
        if response is not None and type(response) is not expected:
            log.error(
                "handler for %s returned %s instead of %s",
                request.xml_name,
                type(response).__name__,
                expected.__name__,
            )
            response = rejected(request, (Reason.INVALID_MESSAGE,))
        return answers.answer(
            request,
            response,
            sender_domain=self.domain,
            recipient_domain=received.sender_domain,
            versions=self.versions,
            time_stamp=self._clock(),
            message_id=new_message_id(),
        )


def _time_out(
    future: asyncio.Future[PayloadResponse], request: PayloadMessage, timeout: float
) -> None:
    """End the wait of `request()` for the response to `request`: none came in time."""
    if not future.done():
        future.set_exception(
            ResponseTimeout(
                f"no response to {request.xml_name} {request.message_id} within {timeout:g} s",
                request.message_id,
            )
        )


def _schema_problem(record: OutboundRecord) -> str | None:
    """Why our own sent message is not schema-valid, if it is not (checked only after a 400).

    Some rejections cannot be written schema-valid at all: the XSD requires a Rejected
    AGRPortfolioQueryResponse to carry a DSO-View with a congestion point and a connection.
    Such a response is still sent, as every request must be answered
    (message-validation.md); a strict peer answers 400, and this says why.
    """
    try:
        sealed = envelope.parse_envelope(record.envelope).sealed
        codec.decode(sealed[envelope.SIGNATURE_BYTES :], bulk=LARGE_MESSAGES)
    except InvalidXml as exc:
        return f"checked here: {exc.detail}"
    return None
